"""Synthetic faces for tests and the demo: a face that sings along with a synthetic singer.

The jaw follows the voice: open while sound is loud, wider on high notes (singers open more on
high pitches), nearly shut in silences, where the lips close (MouthClose = JawOpen, so the lip
aperture JawOpen − MouthClose is 0: a bilabial closure). Funnel/pucker follow low notes, smiles
follow the phrase, brows drift, eyes blink at random. Frames are sampled at ``fps`` with timing
jitter and can be delayed by a known ``lag`` (the face stream late by ``lag`` s).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.signal

from motion.channels import INDEX, N_VALUES
from motion.lag import loudness_envelope
from motion.take import Take, save_take

SR = 44100


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    w = np.hanning(max(3, n))
    return scipy.signal.fftconvolve(x, w / w.sum(), mode="same")


def face_curves(wav: np.ndarray, f0: np.ndarray, f0_range: tuple[float, float], sr: int = SR,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(curve times [F] s, values [F, 61])`` on a 2.9 ms grid, aligned with the audio."""
    rng = np.random.default_rng(seed)
    env_db, t = loudness_envelope(wav, sr)
    hop = int(round((t[1] - t[0]) * sr))
    loud = np.clip((env_db + 40.0) / 40.0, 0, 1)  # 0 below -40 dB, 1 at peak
    f0_t = np.interp(t, np.arange(len(f0)) / sr, f0)
    lo, hi = f0_range
    voiced = f0_t > 0
    pitch = np.where(voiced, np.clip(np.log(np.maximum(f0_t, 1) / lo) / np.log(hi / lo), 0, 1), 0)
    n = int(0.04 * sr / hop)  # 40 ms symmetric smoothing (no lag of its own)
    jaw = _smooth(loud * (0.15 + 0.65 * _smooth(pitch, 3 * n)), n)
    silent = _smooth((loud < 0.15).astype(float), n)
    jaw = np.clip(jaw * (1 - silent) + 0.03 * silent, 0, 1)
    v = np.zeros((len(t), N_VALUES))
    v[:, INDEX["JawOpen"]] = jaw
    v[:, INDEX["MouthClose"]] = silent * jaw  # lips sealed in silence
    low = _smooth((1 - pitch) * loud, 3 * n)
    v[:, INDEX["MouthFunnel"]] = 0.4 * low
    v[:, INDEX["MouthPucker"]] = 0.3 * low
    for side in ("Left", "Right"):
        v[:, INDEX[f"MouthSmile{side}"]] = 0.2 + 0.1 * _smooth(pitch, 20 * n)
        v[:, INDEX[f"MouthLowerDown{side}"]] = 0.5 * jaw
        v[:, INDEX[f"BrowOuterUp{side}"]] = 0.3 * _smooth(pitch * loud, 30 * n)
    v[:, INDEX["BrowInnerUp"]] = 0.2 + 0.1 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6))
    for start in rng.uniform(0, t[-1], max(1, int(t[-1] / 3))):  # blinks
        k = (t >= start) & (t < start + 0.12)
        v[k, INDEX["EyeBlinkLeft"]] = v[k, INDEX["EyeBlinkRight"]] = 0.9
    v[:, INDEX["HeadYaw"]] = 0.05 * np.sin(2 * np.pi * 0.2 * t)
    v[:, :52] = np.clip(v[:, :52] + rng.normal(0, 0.003, (len(t), 52)), 0, 1)
    return t, v


def sample_face(t: np.ndarray, curves: np.ndarray, duration: float, fps: float = 60.0,
                lag: float = 0.0, jitter: float = 0.002, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Frames as a phone would send them: ``(frame times [N] s, values [N, 61] float32)``.

    Frame ``k`` is stamped ``k/fps + jitter`` and shows the face of audio time ``stamp − lag``.
    """
    rng = np.random.default_rng(seed)
    stamps = np.arange(int(duration * fps)) / fps + rng.uniform(
        -jitter, jitter, int(duration * fps)
    )
    stamps = np.sort(stamps)
    src = stamps - lag
    vals = np.stack([np.interp(src, t, curves[:, c]) for c in range(curves.shape[1])], 1)
    return stamps, vals.astype(np.float32)


def write_takes(root: str | os.PathLike, singers, n_per_singer: int = 3, duration: float = 4.0,
                lag: float = 0.0, seed: int = 0) -> list[Path]:  # fmt: skip
    """Write take folders ``root/<singer>_<i>/`` (audio + synthetic face); returns them."""
    from common.synthetic import sing

    out = []
    for s_idx, singer in enumerate(singers):
        for i in range(n_per_singer):
            sd = seed + 100 * s_idx + i
            wav, f0 = sing(duration, singer, seed=sd)
            t, curves = face_curves(wav, f0, (singer.f0_low, singer.f0_high), seed=sd)
            stamps, vals = sample_face(t, curves, len(wav) / SR, lag=lag, seed=sd)
            take = Take(values=vals, t=stamps,
                        meta={"source": "synthetic", "timing": f"synthetic, lag {lag * 1e3} ms"})  # fmt: skip
            out.append(save_take(Path(root) / f"{singer.name}_{i:02d}", take, wav, SR))
    return out
