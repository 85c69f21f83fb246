"""Stream a face track to Unreal (Live Link Face, ARKit packets v6) while playing its audio.

    python motion/svc2ue.py results/song.blendshapes.npy --audio results/song.flac
    python motion/svc2ue.py track.blendshapes.npy --audio song.wav --target 192.168.1.20:11111 \\
        --rate 60 --latency-ms 120 --blinks --loop 0

In Unreal: Live Link window → Source → "Apple ARKit Face Support" (Live Link Face) listens on
port 11111; the subject appears under ``--subject`` (default SVC).

Fixes motion.md §9.14-16: frame numbers increase (counted from the time of day, like a timecode)
and the packet carries the true rate (44100/512 for 86.13 fps tracks, or 60/1 with ``--rate 60``,
resampled by time); frames are scheduled on a monotonic clock from the audio start, shifted by
``--latency-ms`` (positive: the face later, to match a slow audio output or renderer), not a
magic 700 ms. Blendshapes are clamped to 0..1; head/eye rotations are sent as 0 unless
``--rotations``. ``--blinks`` adds one 150 ms blink at a random moment inside every 4 s window.
``--loop N`` plays N times (0: until Ctrl-C). A track with NaN/infinite values or no frames is
refused (exit 1); ``--rate`` must be 1..1000 fps, ``--loop`` >= 0 and ``--latency-ms`` within
+-10000 (exit 2). Audio is played with sounddevice when installed,
else the stream keeps the same timing silently. Ctrl-C stops cleanly.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from motion.channels import EYE_BLINK, N_BLENDSHAPES, N_VALUES  # noqa: E402
from motion.livelink import encode, rate_fraction  # noqa: E402
from motion.voice import FPS  # noqa: E402


def load_track(path: str) -> tuple[np.ndarray, float]:
    """``(values [T, 61] float32, fps)`` from a ``.blendshapes.npy`` (86.13 fps) or an LLF CSV."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        from motion.import_llf import read_llf_csv

        values, secs, _ = read_llf_csv(p)
        fps = (len(secs) - 1) / (secs[-1] - secs[0]) if len(secs) > 1 else FPS
        return values, float(fps)
    try:
        values = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{p}: not a readable .npy track ({e})") from None
    if values.ndim != 2 or values.shape[1] != N_VALUES:
        raise ValueError(f"{p}: expected [T, {N_VALUES}] values, got {values.shape}")
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise ValueError(f"{p}: values are {values.dtype}, expected float32 numbers")
    if len(values) == 0:
        raise ValueError(f"{p}: the track has no frames")
    values = values.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise ValueError(f"{p}: {bad.size} frame(s) hold NaN or infinite values (first: frame "
                         f"{bad[0]}); regenerate the track")  # fmt: skip
    return values, FPS


MAX_RATE = 1000.0
MAX_LATENCY_MS = 10_000.0


def check_args(args) -> None:
    """Refuse out-of-range flags before anything is read (one line, exit 2)."""
    from common.errors import UsageError
    from motion.record import parse_hostport

    if args.rate is not None and not (1.0 <= args.rate <= MAX_RATE):  # also NaN
        raise UsageError(f"--rate {args.rate}: out of range; the send rate is 1..{MAX_RATE:.0f} "
                         "fps (e.g. 60), or leave it out for the track's own")  # fmt: skip
    if args.loop < 0:
        raise UsageError(f"--loop {args.loop}: out of range; plays N >= 1 times, 0 = until Ctrl-C")
    if not abs(args.latency_ms) <= MAX_LATENCY_MS:
        raise UsageError(f"--latency-ms {args.latency_ms}: out of range; give milliseconds within "
                         f"+-{MAX_LATENCY_MS:.0f}")  # fmt: skip
    try:
        parse_hostport(args.target)
    except ValueError as e:
        raise UsageError(f"--target {e}") from None
    for flag, text in (("--subject", args.subject), ("--device_id", args.device_id)):
        if len(text.encode("utf-8")) > 255:
            raise UsageError(f"{flag}: {len(text.encode('utf-8'))} bytes; at most 255")


def resample(values: np.ndarray, fps: float, rate: float) -> np.ndarray:
    """Time-based linear resampling from ``fps`` to ``rate`` frames/s."""
    if abs(fps - rate) < 1e-9 or len(values) < 2:
        return values
    n = int(np.floor((len(values) - 1) / fps * rate)) + 1
    src, dst = np.arange(len(values)) / fps, np.arange(n) / rate
    return np.stack([np.interp(dst, src, values[:, c]) for c in range(values.shape[1])], 1).astype(
        np.float32
    )


def shape_for_unreal(values: np.ndarray, rotations: bool = False) -> np.ndarray:
    out = np.array(values, np.float32, copy=True)
    out[:, :N_BLENDSHAPES] = np.clip(out[:, :N_BLENDSHAPES], 0.0, 1.0)
    out[:, N_BLENDSHAPES:] = np.clip(out[:, N_BLENDSHAPES:], -1.0, 1.0) if rotations else 0.0
    return out


def add_blinks(values: np.ndarray, rate: float, seed: int = 0, every: float = 4.0) -> np.ndarray:
    """One 150 ms blink (up-down ramp to 1.0) at a random moment inside each ``every`` s window."""
    rng = np.random.default_rng(seed)
    out = values.copy()
    dur = len(values) / rate
    ramp = np.hanning(max(3, int(round(0.15 * rate))))
    for w0 in np.arange(0.0, dur, every):
        start = int((w0 + rng.uniform(0.2, every - 0.4)) * rate)
        seg = slice(start, min(len(out), start + len(ramp)))
        for c in EYE_BLINK:
            out[seg, c] = np.maximum(out[seg, c], ramp[: seg.stop - seg.start])
    return out


def stream(values: np.ndarray, rate: float, target: tuple[str, int], audio=None, sr: int = 44100,
           latency_ms: float = 0.0, loops: int = 1, device_id: str = "svc2ue", subject: str = "SVC",
           ) -> int:  # fmt: skip
    """Send the frames on schedule (optionally playing ``audio``); returns frames sent."""
    sd = None
    if audio is not None:
        try:
            import sounddevice as sd
        except (ImportError, OSError):
            sd = None
    num, den = rate_fraction(rate)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    frame0 = int((time.time() % 86400) * num / den)
    duration = max(len(values) / rate, (len(audio) / sr) if audio is not None else 0.0)
    sent = 0
    loop = 0
    try:
        while loops == 0 or loop < loops:
            start = time.monotonic()
            if sd is not None:
                sd.play(audio, sr)
                start += float(sd.get_stream().latency)
            start += latency_ms / 1000.0
            for i, row in enumerate(values):
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sock.sendto(encode(row, frame0 + sent, 0.0, (num, den), device_id, subject), target)
                sent += 1
            rest = start - latency_ms / 1000.0 + duration - time.monotonic()
            if rest > 0:
                time.sleep(rest)
            loop += 1
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        if sd is not None:
            sd.stop()
        sock.close()
    return sent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("track", help="<name>.blendshapes.npy (86.13 fps) or a Live Link Face CSV")
    p.add_argument(
        "--audio", default=None, help="the matching audio (played if sounddevice exists)"
    )
    p.add_argument("--target", default="127.0.0.1:11111", help="HOST:PORT of Unreal's Live Link")
    p.add_argument("--rate", type=float, default=None,
                   help="send rate in fps (default: the track's own, 86.13; e.g. 60)")  # fmt: skip
    p.add_argument("--latency-ms", "--latency_ms", dest="latency_ms", type=float, default=0.0,
                   help="face offset after the audio start (ms; may be negative)")  # fmt: skip
    p.add_argument("--blinks", action="store_true", help="inject a blink every ~4 s")
    p.add_argument("--rotations", action="store_true", help="send head/eye rotations (else 0)")
    p.add_argument("--loop", type=int, default=1, help="times to play (0 = until Ctrl-C)")
    p.add_argument("--subject", default="SVC", help="Live Link subject name")
    p.add_argument("--device_id", default="svc2ue", help="device id in the packets")
    p.add_argument("--seed", type=int, default=0, help="blink placement seed")
    args = p.parse_args(argv)
    check_args(args)
    from common.audio import AudioError, load_audio
    from motion.record import parse_hostport

    try:
        values, fps = load_track(args.track)
        target = parse_hostport(args.target)
        audio, sr = load_audio(args.audio) if args.audio else (None, 44100)
    except (ValueError, OSError, AudioError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rate = args.rate or fps
    if not 1.0 <= rate <= MAX_RATE:
        print(f"error: {args.track}: the track's own rate is {rate:.4g} fps; give --rate "
              f"(1..{MAX_RATE:.0f})", file=sys.stderr)  # fmt: skip
        return 1
    values = shape_for_unreal(resample(values, fps, rate), args.rotations)
    if args.blinks:
        values = add_blinks(values, rate, args.seed)
    num, den = rate_fraction(rate)
    print(f"streaming {len(values)} frames at {num}/{den} fps to {target[0]}:{target[1]} "
          f"(subject {args.subject}); Ctrl-C stops", flush=True)  # fmt: skip
    sent = stream(values, rate, target, audio, sr, args.latency_ms, args.loop, args.device_id,
                  args.subject)  # fmt: skip
    print(f"sent {sent} frames")
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
