"""Face-to-audio lag per take: cross-correlate mouth opening with the audio loudness (fixes §9.3).

The lag ``L`` (s) is the shift that best lines the face up with the sound: the face value at
time ``t + L`` goes with the audio at ``t`` (``L > 0``: the face stream is late). It is searched on
a 2.9 ms grid (hop 128 at 44.1 kHz) over ±``max_lag`` and refined to sub-grid precision with a
parabola through the correlation peak. Real faces move slightly before the sound (the jaw opens
before a vowel); that anticipation is part of what the estimate measures.
"""

from __future__ import annotations

import numpy as np

from motion.channels import INDEX

ENV_HOP = 128
ENV_WIN = 1024


def loudness_envelope(wav: np.ndarray, sr: int, hop: int = ENV_HOP, win: int = ENV_WIN,
                      floor_db: float = -60.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Log-RMS envelope: ``(dB [F] relative to the peak, floored at floor_db; centre times [F] s)``."""
    wav = np.asarray(wav, np.float64)
    if len(wav) < win:
        wav = np.pad(wav, (0, win - len(wav)))
    n = 1 + (len(wav) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(wav[idx] ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms / (rms.max() + 1e-12) + 1e-12)
    return np.maximum(db, floor_db), (hop * np.arange(n) + win / 2) / sr


def mouth_opening(values: np.ndarray) -> np.ndarray:
    """``[N]``: JawOpen + mean(MouthLowerDown L/R) − MouthClose, from ``[N, 61]`` values."""
    v = np.asarray(values, np.float64)
    lower = 0.5 * (v[:, INDEX["MouthLowerDownLeft"]] + v[:, INDEX["MouthLowerDownRight"]])
    return v[:, INDEX["JawOpen"]] + lower - v[:, INDEX["MouthClose"]]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def estimate_lag(
    t_face: np.ndarray, face: np.ndarray, env: np.ndarray, env_t: np.ndarray,
    max_lag: float = 0.3, step: float | None = None,
) -> tuple[float, float]:  # fmt: skip
    """``(lag s, peak correlation)`` of a face signal ``face`` at times ``t_face`` vs ``env``."""
    t_face = np.asarray(t_face, np.float64)
    face = np.asarray(face, np.float64)
    if len(t_face) < 8:
        return 0.0, 0.0
    step = step or float(np.median(np.diff(env_t)))
    k = int(np.ceil(max_lag / step))
    lags = step * np.arange(-k, k + 1)
    # only audio times where every candidate shift stays inside the face span
    inside = (env_t - lags[0] >= t_face[0]) & (env_t + lags[-1] <= t_face[-1])
    if inside.sum() < 16:
        return 0.0, 0.0
    e, te = env[inside], env_t[inside]
    r = np.array([_corr(e, np.interp(te + lag, t_face, face)) for lag in lags])
    i = int(np.argmax(r))
    frac = 0.0
    if 0 < i < len(r) - 1:
        den = r[i - 1] - 2 * r[i] + r[i + 1]
        if den < 0:
            frac = 0.5 * (r[i - 1] - r[i + 1]) / den
    return float(lags[i] + frac * step), float(r[i])
