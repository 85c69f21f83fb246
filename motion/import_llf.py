"""Import a Live Link Face app recording (``*_cal.csv`` / ``*_raw.csv`` + its audio) as a take.

    python motion/import_llf.py MySlate_7_iPhone_cal.csv --audio MySlate_7_iPhone.mov --out takes/slate7
    python motion/import_llf.py testset.csv --audio audio.wav --out takes/neurosync

The CSV header is ``Timecode,BlendshapeCount,<61 names>``; columns are mapped by header NAME
(the app's export swaps JawLeft/JawRight and MouthLeft/MouthRight relative to the stream order).
Timecodes ``HH:MM:SS:FF.fff`` (FF frames at ``--fps``, .fff the sub-frame) become seconds; row 0 is
taken to line up with audio sample 0 (the app starts both together), shifted by ``--offset_ms``;
``prepare_visemes.py`` then estimates the remaining lag per take. Rows with a repeated timecode are
dropped (counted in the summary). The audio is a wav/flac or, where a decoder is installed
(audioread + ffmpeg), the ``.mov``'s own track.

``--fps`` must be in 1..1000 and ``--offset_ms`` within +-1 hour (NaN/inf refused, exit 2). A value
cell that is NaN, infinite or beyond float32 (|x| > 3.4e38) stops the import with the row and
column named; a row whose timecode does not parse (or whose frame field is NaN) is skipped and
counted as ``unreadable_rows``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.errors import InputError, UsageError  # noqa: E402
from motion.channels import INDEX, N_VALUES, NAMES  # noqa: E402
from motion.take import Take, save_take  # noqa: E402

MAX_FPS = 1000.0
MAX_OFFSET_MS = 3_600_000.0  # one hour
_F32_MAX = float(np.finfo(np.float32).max)


class LLFImportError(InputError):
    """The CSV is not a Live Link Face export; the message names the file and the problem."""


def check_fps(fps: float, flag: str = "--fps") -> float:
    """``fps`` if it is a usable timecode rate (1..1000 frames/s), else :class:`UsageError`."""
    if not (1.0 <= fps <= MAX_FPS):  # also NaN
        raise UsageError(f"{flag} {fps}: out of range; the timecode frame rate is 1..{MAX_FPS:.0f} "
                         "(the app records at 60, 30 or 24)")  # fmt: skip
    return float(fps)


def check_offset_ms(offset_ms: float) -> float:
    if not (abs(offset_ms) <= MAX_OFFSET_MS):  # also NaN
        raise UsageError(f"--offset_ms {offset_ms}: out of range; give milliseconds within "
                         f"+-{MAX_OFFSET_MS:.0f} (one hour)")  # fmt: skip
    return float(offset_ms)


def parse_timecode(tc: str, fps: float) -> tuple[float, int, float]:
    """``HH:MM:SS:FF.fff`` → ``(seconds, frame number since 00:00:00:00, sub-frame)``."""
    parts = tc.strip().split(":")
    if len(parts) != 4:
        raise ValueError(f"timecode {tc!r} is not HH:MM:SS:FF.fff")
    h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
    ff = float(parts[3])
    if not (math.isfinite(ff) and ff >= 0):
        raise ValueError(f"timecode {tc!r}: frame field is not a number >= 0")
    whole = int(ff)
    frame = int(round((h * 3600 + m * 60 + s) * fps)) + whole
    return h * 3600 + m * 60 + s + ff / fps, frame, ff - whole


def read_llf_csv(path: str | Path, fps: float = 60.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(values [N, 61] float32 in stream order, seconds [N] float64, info)``."""
    path = Path(path)
    check_fps(fps)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise LLFImportError(f"{path}: unreadable ({e})") from None
    if not rows or len(rows) < 2:
        raise LLFImportError(f"{path}: no data rows")
    header = [h.strip() for h in rows[0]]
    if not header or header[0].lower() != "timecode":
        raise LLFImportError(f"{path}: first column is {header[:1]}, expected 'Timecode' "
                           "(is this a Live Link Face CSV export?)")  # fmt: skip
    cols = {}
    for j, h in enumerate(header):
        if h in INDEX:
            cols[INDEX[h]] = j
    missing = [NAMES[i] for i in range(N_VALUES) if i not in cols]
    if len(missing) == N_VALUES:
        raise LLFImportError(f"{path}: no Live Link blendshape column names in the header")
    values, secs, frames, subs = [], [], [], []
    bad = 0
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        try:
            sec, frame, sub = parse_timecode(row[0], fps)
            v = np.zeros(N_VALUES, np.float32)
            for i, j in cols.items():
                x = float(row[j])
                if not abs(x) <= _F32_MAX:  # NaN, inf, or inf once stored as float32
                    raise LLFImportError(f"{path}: row {number}, column {NAMES[i]}: {row[j].strip()!r} "
                                         "is not a finite 32-bit number (fix or delete that row)")  # fmt: skip
                v[i] = x
        except LLFImportError:
            raise
        except (ValueError, IndexError):
            bad += 1
            continue
        values.append(v)
        secs.append(sec)
        frames.append(frame)
        subs.append(sub)
    if not values:
        raise LLFImportError(f"{path}: no readable data rows")
    secs_a = np.array(secs)
    if np.any(np.diff(secs_a) < -3600):  # crossed midnight
        secs_a = np.where(secs_a < secs_a[0], secs_a + 86400, secs_a)
    order = np.argsort(secs_a, kind="stable")
    keep = np.ones(len(order), bool)
    keep[1:] = np.diff(secs_a[order]) > 1e-6
    order = order[keep]
    info = {"rows": len(values), "unreadable_rows": bad, "repeated_timecodes": int((~keep).sum()),
            "missing_columns": missing, "first_timecode": rows[1][0] if len(rows) > 1 else None,
            "frames": np.array(frames)[order], "sub_frames": np.array(subs)[order]}  # fmt: skip
    return np.stack(values)[order], secs_a[order], info


def import_take(csv_path, audio_path, out, fps: float = 60.0, offset_ms: float = 0.0,
                replace: bool = False) -> Take:  # fmt: skip
    """Write a take folder from an app export; returns the take. An existing take in ``out`` is
    an :class:`InputError` unless ``replace``; it is then replaced once both inputs have been
    read (its ``take.json`` goes first, so a crash leaves an unfinished take, never a mix)."""
    from common.audio import load_audio

    check_offset_ms(offset_ms)
    done = Path(out) / "take.json"
    if done.exists() and not replace:
        raise InputError(f"{out}: a take is already there", "choose another folder")
    values, secs, info = read_llf_csv(csv_path, fps)
    audio, sr = load_audio(audio_path)
    if done.exists():
        done.unlink()
    frames, subs = info.pop("frames"), info.pop("sub_frames")
    rate = np.tile(np.array([round(fps * 1000), 1000], np.int32), (len(values), 1))
    if float(fps).is_integer():
        rate[:] = (int(fps), 1)
    span = float(secs[-1] - secs[0])
    info.update({"frames_kept": len(values), "span_s": round(span, 3),
                 "effective_fps": round((len(values) - 1) / span, 3) if span > 0 else None,
                 "audio_s": round(len(audio) / sr, 3)})  # fmt: skip
    take = Take(
        values=values, t=secs - secs[0] + offset_ms / 1000.0, frame=frames, sub_frame=subs,
        rate=rate,
        meta={"source": "llf_csv", "csv": str(csv_path), "audio_source": str(audio_path),
              "timing": f"CSV timecodes, row 0 = audio sample 0, offset {offset_ms} ms",
              "summary": info},
    )  # fmt: skip
    save_take(out, take, audio, sr)
    return take


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("csv", help="the app's *_cal.csv or *_raw.csv export")
    p.add_argument("--audio", required=True, help="the take's audio: wav/flac, or the .mov")
    p.add_argument("--out", default=None, help="take folder (default takes/<csv name>)")
    p.add_argument("--fps", type=float, default=60.0, help="timecode frame rate (FF field)")
    p.add_argument("--offset_ms", type=float, default=0.0,
                   help="face time of row 0 relative to audio sample 0")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a take already in --out")
    args = p.parse_args(argv)
    check_fps(args.fps)
    check_offset_ms(args.offset_ms)
    out = Path(args.out or f"takes/{Path(args.csv).stem}")
    if (out / "take.json").exists():
        if not args.overwrite:
            raise UsageError(f"{out}: a take is already there",
                             "pass --overwrite to replace it, or choose another --out")  # fmt: skip
    take = import_take(args.csv, args.audio, out, args.fps, args.offset_ms, replace=args.overwrite)
    print(f"saved take {out}")
    print(json.dumps(take.meta["summary"], indent=2))
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
