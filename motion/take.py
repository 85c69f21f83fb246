"""The take format: one folder per take, plain arrays + JSON, no pickles.

    <take>/audio.wav     the take's audio (any rate/channels soundfile writes; usually 44.1 kHz mono)
    <take>/frames.npz    arrays, one row per face frame (np.load(..., allow_pickle=False)):
        values     float32 [N, 61]  Live Link values in motion.channels.NAMES (stream) order
        t          float64 [N]      face time in seconds on the audio clock: 0 = audio sample 0
        arrival    float64 [N]      host monotonic arrival time in s (NaN for imported takes)
        frame      int64   [N]      sender frame number (Live Link frame time / CSV timecode frame)
        sub_frame  float32 [N]      sender sub-frame (fraction of a frame)
        rate       int32   [N, 2]   sender frame rate numerator, denominator
    <take>/take.json     {"format": "svc-motion-take", "version": 1, "names": [61 names],
                          "source": "udp" | "llf_csv", "audio": "audio.wav",
                          "audio_start_host": host monotonic time of audio sample 0 (udp) or null,
                          "timing": how t was derived, "summary": {...}, ...}

``take.json`` is written last, so a folder without it is an unfinished take. Every file is written
atomically. ``t`` is what alignment uses; the raw sender frame time and the host arrival time are
kept so a take can be re-timed later.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.atomic import atomic_path, write_text
from motion.channels import N_VALUES, NAMES

FORMAT = "svc-motion-take"
VERSION = 1


class TakeError(ValueError):
    """A take folder is missing or malformed; the message starts with the path."""


@dataclass
class Take:
    values: np.ndarray  # float32 [N, 61]
    t: np.ndarray  # float64 [N], s on the audio clock
    arrival: np.ndarray | None = None  # float64 [N], host monotonic s
    frame: np.ndarray | None = None  # int64 [N]
    sub_frame: np.ndarray | None = None  # float32 [N]
    rate: np.ndarray | None = None  # int32 [N, 2]
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def audio_path(self) -> Path:
        assert self.path is not None
        return self.path / self.meta.get("audio", "audio.wav")

    @property
    def name(self) -> str:
        return self.path.name if self.path else "take"


def save_take(folder: str | os.PathLike, take: Take, audio: np.ndarray | None, sr: int) -> Path:
    """Write ``take`` (and ``audio`` ``[L]`` or ``[L, C]`` at ``sr``, unless None) to ``folder``."""
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(take.values)
    if take.values.shape != (n, N_VALUES):
        raise ValueError(f"values must be [N, {N_VALUES}], got {take.values.shape}")
    nan = np.full(n, np.nan)
    arrays = {
        "values": np.asarray(take.values, np.float32),
        "t": np.asarray(take.t, np.float64),
        "arrival": np.asarray(take.arrival if take.arrival is not None else nan, np.float64),
        "frame": np.asarray(take.frame if take.frame is not None else np.arange(n), np.int64),
        "sub_frame": np.asarray(
            take.sub_frame if take.sub_frame is not None else np.zeros(n), np.float32
        ),
        "rate": np.asarray(take.rate if take.rate is not None else np.zeros((n, 2)), np.int32),
    }
    with atomic_path(folder / "frames.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    if audio is not None:
        with atomic_path(folder / "audio.wav") as tmp:
            sf.write(tmp, audio, sr, format="WAV", subtype="PCM_16")
    meta = {"format": FORMAT, "version": VERSION, "names": list(NAMES), "audio": "audio.wav"}
    meta.update({k: v for k, v in take.meta.items() if k not in ("format", "version", "names")})
    write_text(folder / "take.json", json.dumps(meta, indent=2, default=_json_default) + "\n")
    take.path = folder
    take.meta = meta
    return folder


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON: {type(o).__name__}")


def load_take(folder: str | os.PathLike) -> Take:
    """Read a take folder; raises :class:`TakeError` with one line naming the problem."""
    folder = Path(folder)
    meta_path = folder / "take.json"
    if not meta_path.is_file():
        raise TakeError(f"{folder}: not a take (no take.json; record or import one first)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TakeError(f"{meta_path}: unreadable JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise TakeError(f"{meta_path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if list(meta.get("names", [])) != list(NAMES):
        raise TakeError(f"{meta_path}: channel names differ from the 61 Live Link names")
    try:
        with np.load(folder / "frames.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise TakeError(f"{folder / 'frames.npz'}: unreadable ({e})") from None
    for key in ("values", "t"):
        if key not in arrays:
            raise TakeError(f"{folder / 'frames.npz'}: no '{key}' array")
    values = arrays["values"].astype(np.float32)
    n = len(values)
    if values.ndim != 2 or values.shape[1] != N_VALUES:
        raise TakeError(f"{folder / 'frames.npz'}: values are {values.shape}, expected [N, 61]")
    for key, arr in arrays.items():
        if len(arr) != n:
            raise TakeError(f"{folder / 'frames.npz'}: '{key}' has {len(arr)} rows, values {n}")
    take = Take(
        values=values,
        t=arrays["t"].astype(np.float64),
        arrival=arrays.get("arrival"),
        frame=arrays.get("frame"),
        sub_frame=arrays.get("sub_frame"),
        rate=arrays.get("rate"),
        meta=meta,
        path=folder,
    )
    if not take.audio_path.is_file():
        raise TakeError(f"{take.audio_path}: the take's audio is missing")
    return take


def find_takes(root: str | os.PathLike) -> list[Path]:
    """Take folders under ``root`` (itself, or its sub-folders at any depth), sorted."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob("take.json"))
