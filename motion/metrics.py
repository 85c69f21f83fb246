"""Lip-sync metrics (validation and bench/motion_eval.py) and the loudness→jawOpen baseline.

All take ``[T, 61]`` arrays on the z grid (86.13 fps) and a frame mask ``[T]``.

- per-channel Pearson correlation and MAE for the mouth shapes (:data:`MOUTH_METRIC`);
- lip-closure hit rate: true closures are runs of ≥ 2 frames with lip aperture
  ``JawOpen − MouthClose < 0.05``; a hit is a predicted aperture below 0.1 somewhere within
  ±2 frames (23 ms) of the run;
- residual lag (ms): the shift between predicted and true JawOpen (sub-frame cross-correlation);
- the loudness baseline: ``JawOpen ≈ a·loudness_dB + b`` fitted by least squares on the training
  frames; a model must beat its held-out correlation.
"""

from __future__ import annotations

import numpy as np

from motion.channels import INDEX, JAW_OPEN, MOUTH_CLOSE, MOUTH_METRIC
from motion.lag import estimate_lag
from motion.voice import FPS


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def closures(aperture: np.ndarray, thr: float = 0.05, min_frames: int = 2) -> list[tuple[int, int]]:
    """Runs ``[start, end)`` where the aperture stays below ``thr`` for ≥ ``min_frames``."""
    closed = np.concatenate([[False], aperture < thr, [False]])
    edges = np.flatnonzero(np.diff(closed.astype(int)))
    runs = list(zip(edges[::2], edges[1::2]))
    return [(int(a), int(b)) for a, b in runs if b - a >= min_frames]


def lip_closure_hit_rate(pred: np.ndarray, true: np.ndarray, tol: int = 2,
                         thr_pred: float = 0.1) -> tuple[float | None, int]:  # fmt: skip
    """``(hit rate or None without closures, number of true closures)``."""
    ap_t = true[:, JAW_OPEN] - true[:, MOUTH_CLOSE]
    ap_p = pred[:, JAW_OPEN] - pred[:, MOUTH_CLOSE]
    runs = closures(ap_t)
    if not runs:
        return None, 0
    hits = sum(ap_p[max(0, a - tol) : b + tol].min() < thr_pred for a, b in runs)
    return hits / len(runs), len(runs)


def residual_lag_ms(pred_jaw: np.ndarray, true_jaw: np.ndarray, fps: float = FPS) -> float:
    t = np.arange(len(true_jaw)) / fps
    lag, _ = estimate_lag(t, pred_jaw, true_jaw, t, max_lag=0.2, step=1 / fps)
    return lag * 1000.0


def fit_loudness_baseline(loud: np.ndarray, jaw: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(a, b)`` for ``jaw ≈ a·loud + b``."""
    a, b = np.polyfit(np.asarray(loud, np.float64), np.asarray(jaw, np.float64), 1)
    return float(a), float(b)


def evaluate(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None,
             loud: np.ndarray | None = None, baseline: tuple[float, float] | None = None) -> dict:  # fmt: skip
    """Metrics for one take (masked frames dropped; the lag uses the whole sequence)."""
    m = np.ones(len(true), bool) if mask is None else np.asarray(mask, bool)
    out: dict = {"frames": int(m.sum())}
    for name in MOUTH_METRIC:
        c = INDEX[name]
        out[f"corr/{name}"] = pearson(pred[m, c], true[m, c])
        out[f"mae/{name}"] = float(np.mean(np.abs(pred[m, c] - true[m, c])))
    hit, n = lip_closure_hit_rate(pred[m], true[m])
    out["lip_closure_hit_rate"] = hit
    out["lip_closures"] = n
    out["residual_lag_ms"] = residual_lag_ms(pred[:, JAW_OPEN], true[:, JAW_OPEN])
    if loud is not None and baseline is not None:
        base = baseline[0] * np.asarray(loud)[m] + baseline[1]
        out["baseline_corr/JawOpen"] = pearson(base, true[m, JAW_OPEN])
        out["baseline_mae/JawOpen"] = float(
            np.mean(np.abs(np.clip(base, 0, 1) - true[m, JAW_OPEN]))
        )
    return out


def mean_metrics(per_take: list[dict]) -> dict:
    """Frame-weighted mean of each metric over takes (None values skipped)."""
    keys = {k for d in per_take for k in d if k not in ("frames", "lip_closures", "take")}
    out = {}
    for k in sorted(keys):
        pairs = [(d[k], d["frames"]) for d in per_take if d.get(k) is not None]
        if pairs:
            w = sum(f for _, f in pairs)
            out[k] = sum(v * f for v, f in pairs) / max(w, 1)
    out["lip_closures"] = sum(d.get("lip_closures", 0) for d in per_take)
    return out
