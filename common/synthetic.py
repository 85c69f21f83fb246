"""Synthetic, voice-like test data with known f0: used by the tests and the demo (no downloads).

Each "singer" is a harmonic source (a glottal-like 1/k roll-off) with vibrato and pitch glides,
shaped by singer-specific formants, plus breath noise and short silences. The f0 track is known
exactly, so f0 predictors can be checked against it.

Also writes a set of bad inputs that every batch tool must survive (see :func:`write_bad_inputs`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

SR = 44100
HOP = 512


@dataclass(frozen=True)
class Singer:
    """A synthetic voice: base pitch range [Hz] and formant centres/bandwidths [Hz]."""

    name: str
    f0_low: float
    f0_high: float
    formants: tuple[tuple[float, float], ...] = field(
        default=((700, 110), (1200, 120), (2600, 160))
    )
    breathiness: float = 0.02


DEMO_SINGERS = (
    Singer("alto", 180.0, 420.0, ((800, 100), (1150, 110), (2800, 170)), 0.015),
    Singer("bass", 85.0, 220.0, ((520, 90), (900, 110), (2300, 150)), 0.03),
)


def f0_contour(
    duration: float, singer: Singer, rng: np.random.Generator, sr: int = SR
) -> np.ndarray:
    """Sample-level f0 [Hz], shape ``[round(duration·sr)]``: notes with glides and vibrato."""
    n = int(round(duration * sr))
    n_notes = max(2, int(duration / 0.6))
    # Notes on a log scale inside the singer's range; each note glides into the next.
    notes = np.exp(rng.uniform(np.log(singer.f0_low), np.log(singer.f0_high), n_notes))
    edges = np.linspace(0, n, n_notes + 1).astype(int)
    f0 = np.empty(n)
    glide = int(0.08 * sr)
    for i in range(n_notes):
        a, b = edges[i], edges[i + 1]
        f0[a:b] = notes[i]
        if i > 0:  # glide from the previous note over the first 80 ms
            g = min(glide, b - a)
            f0[a : a + g] = np.geomspace(notes[i - 1], notes[i], g)
    t = np.arange(n) / sr
    rate = rng.uniform(4.5, 6.5)
    depth = rng.uniform(0.01, 0.03)  # ±1-3 % vibrato
    return f0 * (1.0 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))


def _formant_filter(x: np.ndarray, formants, sr: int) -> np.ndarray:
    y = np.zeros_like(x)
    for centre, bw in formants:
        r = np.exp(-np.pi * bw / sr)
        theta = 2 * np.pi * centre / sr
        b = [1 - r]
        a = [1.0, -2 * r * np.cos(theta), r * r]
        y += scipy.signal.lfilter(b, a, x)
    return y


def sing(
    duration: float, singer: Singer, seed: int = 0, sr: int = SR, silence: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise one phrase. Returns ``(wav [L] float32 peak 0.8, f0 [L] Hz, 0 where silent)``."""
    rng = np.random.default_rng(seed)
    f0 = f0_contour(duration, singer, rng, sr)
    n = len(f0)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    n_harm = int(min(40, (sr / 2 - 200) / singer.f0_high))
    src = np.zeros(n)
    for k in range(1, n_harm + 1):
        alive = (k * f0) < (sr / 2 - 500)  # no aliasing
        src += alive * np.sin(k * phase) / k
    voice = _formant_filter(src, singer.formants, sr)
    voice /= np.max(np.abs(voice)) + 1e-9
    breath = scipy.signal.lfilter([1, -0.9], [1], rng.standard_normal(n)) * singer.breathiness
    env = np.ones(n)
    if silence:  # short silences between phrases, with 20 ms fades
        for start in rng.uniform(0.25, 0.75, 1) * n:
            a = int(start)
            b = min(n, a + int(rng.uniform(0.15, 0.3) * sr))
            env[a:b] = 0.0
        env = scipy.signal.fftconvolve(env, np.hanning(int(0.02 * sr)) / (0.01 * sr), mode="same")
        env = np.clip(env, 0.0, 1.0)
    wav = (voice + breath) * env
    wav = 0.8 * wav / (np.max(np.abs(wav)) + 1e-9)
    f0_true = np.where(env > 0.5, f0, 0.0)
    return wav.astype(np.float32), f0_true


def frame_f0(f0_samples: np.ndarray, hop: int = HOP) -> np.ndarray:
    """Sample-level f0 → frame-level ``[L // hop]`` (value at each frame's start sample)."""
    return f0_samples[: (len(f0_samples) // hop) * hop : hop].copy()


def write_dataset(
    root: str | os.PathLike,
    singers=DEMO_SINGERS,
    files_per_singer: int = 6,
    duration: float = 3.0,
    sr: int = SR,
    seed: int = 0,
) -> list[Path]:
    """Write ``root/<singer>/<singer>_<i>.wav`` (16-bit) plus ``.f0.csv`` (time_s, f0_hz) files."""
    root = Path(root)
    written = []
    for s_idx, singer in enumerate(singers):
        folder = root / singer.name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(files_per_singer):
            d = duration * (0.8 + 0.4 * ((i * 7919) % 10) / 10)
            wav, f0 = sing(d, singer, seed=seed + 1000 * s_idx + i, sr=sr)
            path = folder / f"{singer.name}_{i:02d}.wav"
            sf.write(path, wav, sr, subtype="PCM_16")
            ff = frame_f0(f0)
            times = np.arange(len(ff)) * HOP / sr
            np.savetxt(
                path.with_suffix(".f0.csv"),
                np.stack([times, ff], 1),
                delimiter=",",
                fmt="%.6f",
                header="time_s,f0_hz",
                comments="",
            )
            written.append(path)
    return written


# Bad inputs: file name (relative to the speaker folder) → why it must be rejected. ``None``
# marks inputs that are unusual but valid and must be converted.
BAD_INPUTS: dict[str, str | None] = {
    "empty.wav": "empty file",
    "silence.wav": "silent",
    "random_bytes.wav": "not a readable audio file",
    "nan_float.wav": "NaN",
    "short_0.1s.wav": "too short",
    "stereo_24bit.wav": None,
    "low_rate_8k.wav": None,
    "ünïcödé_名前.wav": None,
}


def write_bad_inputs(root: str | os.PathLike, speaker: str = "bad inputs", seed: int = 1) -> Path:
    """Write the bad-input set into ``root/<speaker>/`` (the default name has a space in it).

    The valid-but-unusual files (stereo 24-bit, 8 kHz, unicode name) are real singing, long
    enough to be used; the others are each broken in one way listed in :data:`BAD_INPUTS`.
    """
    folder = Path(root) / speaker
    folder.mkdir(parents=True, exist_ok=True)
    singer = Singer("odd", 150.0, 350.0)
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "silence.wav", np.zeros(SR * 2, np.float32), SR, subtype="PCM_16")
    (folder / "random_bytes.wav").write_bytes(np.random.default_rng(seed).bytes(40000))
    nan = sing(1.5, singer, seed=seed)[0]
    nan[1000:1100] = np.nan
    sf.write(folder / "nan_float.wav", nan, SR, subtype="FLOAT")
    sf.write(folder / "short_0.1s.wav", sing(0.1, singer, seed, silence=False)[0], SR)
    wav = sing(2.5, singer, seed=seed + 1)[0]
    stereo = np.stack([wav, 0.7 * wav], axis=1)
    sf.write(folder / "stereo_24bit.wav", stereo, SR, subtype="PCM_24")
    low = sing(2.5, singer, seed=seed + 2, sr=8000)[0]
    sf.write(folder / "low_rate_8k.wav", low, 8000, subtype="PCM_16")
    sf.write(folder / "ünïcödé_名前.wav", sing(2.5, singer, seed=seed + 3)[0], SR)
    return folder
