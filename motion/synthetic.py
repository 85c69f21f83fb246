"""Synthetic faces for tests and the demo: a face that sings along with a synthetic singer.

The singer sings vowel syllables (a e i o u, each with its own formants); the jaw follows the
vowel (open for /a/, nearly shut for /i/ and /u/) and a little the pitch (wider on high notes), and
is nearly shut in the rests between phrases, where the lips close (MouthClose = JawOpen, so the
lip aperture JawOpen − MouthClose is 0: a bilabial closure). Funnel/pucker follow rounded vowels,
smiles spread vowels, brows drift, eyes blink at random. Frames are sampled at ``fps`` with timing
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


def face_curves(wav: np.ndarray, f0: np.ndarray, art: np.ndarray, f0_range: tuple[float, float],
                sr: int = SR, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(curve times [F] s, values [F, 61])`` on a 2.9 ms grid, aligned with the audio.

    ``art`` ``[L, 3]``: per-sample jaw openness, lip rounding and lip spreading of the vowel sung.
    """
    rng = np.random.default_rng(seed)
    env_db, t = loudness_envelope(wav, sr)
    hop = int(round((t[1] - t[0]) * sr))
    loud = np.clip((env_db + 40.0) / 40.0, 0, 1)  # 0 below -40 dB, 1 at peak
    ts = np.arange(len(f0)) / sr
    f0_t = np.interp(t, ts, f0)
    opening, rounding, spreading = (np.interp(t, ts, art[:, k]) for k in range(3))
    lo, hi = f0_range
    pitch = np.where(f0_t > 0, np.clip(np.log(np.maximum(f0_t, 1) / lo) / np.log(hi / lo), 0, 1), 0)
    n = int(0.04 * sr / hop)  # 40 ms symmetric smoothing (no lag of its own)
    sounding = _smooth((loud > 0.15).astype(float), n)
    jaw = _smooth(sounding * (0.08 + 0.7 * opening + 0.15 * pitch), n)
    silent = 1 - sounding
    jaw = np.clip(jaw * sounding + 0.06 * silent, 0, 1)
    v = np.zeros((len(t), N_VALUES))
    v[:, INDEX["JawOpen"]] = jaw
    v[:, INDEX["MouthClose"]] = silent * jaw  # lips sealed in the rests
    v[:, INDEX["MouthFunnel"]] = 0.5 * _smooth(rounding * sounding, n)
    v[:, INDEX["MouthPucker"]] = 0.4 * _smooth(rounding * (1 - opening) * sounding, n)
    for side in ("Left", "Right"):
        v[:, INDEX[f"MouthSmile{side}"]] = 0.1 + 0.4 * _smooth(spreading * sounding, n)
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


# vowels: formants (Hz, bandwidth) and articulation (jaw openness, lip rounding, lip spreading)
VOWELS = {
    "a": (((800, 100), (1200, 110), (2700, 170)), (1.0, 0.0, 0.2)),
    "e": (((500, 90), (1800, 120), (2600, 160)), (0.5, 0.0, 0.7)),
    "i": (((300, 80), (2300, 130), (3000, 180)), (0.1, 0.0, 1.0)),
    "o": (((500, 90), (900, 100), (2500, 160)), (0.55, 0.8, 0.0)),
    "u": (((320, 80), (800, 100), (2400, 160)), (0.15, 1.0, 0.0)),
}


def phrases(duration: float, singer, n: int = 3, seed: int = 0):
    """``n`` sung phrases of vowel syllables (0.25-0.6 s each, every one peak-normalised, so the
    loudness says little about the vowel) separated by 0.2-0.4 s rests.

    Returns ``(wav [L] float32, f0 [L] Hz, art [L, 3])`` with ``art`` the sung vowel's jaw
    openness, lip rounding and spreading per sample (0 in rests).
    """
    from dataclasses import replace

    from common.synthetic import sing

    rng = np.random.default_rng(seed)
    names = sorted(VOWELS)
    wavs, f0s, arts = [], [], []
    total, k = 0, 0
    for p in range(n):
        end = int(duration * SR * (p + 1) / n)
        while total < end - int(0.1 * SR):
            vowel = VOWELS[names[rng.integers(len(names))]]
            d = min(rng.uniform(0.25, 0.6), (end - total) / SR)
            w, f = sing(d, replace(singer, formants=vowel[0]), seed=seed * 100 + k, silence=False)
            k += 1
            fade = np.clip(
                np.minimum(np.arange(len(w)), len(w) - np.arange(len(w))) / (0.015 * SR), 0, 1
            )
            wavs.append(w * fade)
            f0s.append(f)
            arts.append(np.tile(vowel[1], (len(w), 1)))
            total += len(w)
        if p < n - 1:
            rest = int(rng.uniform(0.2, 0.4) * SR)
            wavs.append(np.zeros(rest, np.float32))
            f0s.append(np.zeros(rest))
            arts.append(np.zeros((rest, 3)))
            total += rest
    wav = np.concatenate(wavs).astype(np.float32)
    return wav, np.concatenate(f0s), np.concatenate(arts)


def write_takes(root: str | os.PathLike, singers, n_per_singer: int = 3, duration: float = 4.0,
                lag: float = 0.0, seed: int = 0) -> list[Path]:  # fmt: skip
    """Write take folders ``root/<singer>_<i>/`` (audio + synthetic face); returns them."""
    out = []
    for s_idx, singer in enumerate(singers):
        for i in range(n_per_singer):
            sd = seed + 100 * s_idx + i
            wav, f0, art = phrases(duration, singer, seed=sd)
            t, curves = face_curves(wav, f0, art, (singer.f0_low, singer.f0_high), seed=sd)
            stamps, vals = sample_face(t, curves, len(wav) / SR, lag=lag, seed=sd)
            take = Take(values=vals, t=stamps,
                        meta={"source": "synthetic", "timing": f"synthetic, lag {lag * 1e3} ms"})  # fmt: skip
            out.append(save_take(Path(root) / f"{singer.name}_{i:02d}", take, wav, SR))
    return out
