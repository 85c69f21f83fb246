"""Face frames → the z grid: bad-frame masking and time-based resampling (fixes §9.1, §9.4, §9.10)."""

from __future__ import annotations

import numpy as np

from motion.channels import N_BLENDSHAPES


def bad_frames(values: np.ndarray) -> tuple[np.ndarray, dict]:
    """``(bad [N] bool, counts)``: non-finite, tracking lost, or frozen frames.

    - non-finite: any NaN/inf value;
    - tracking lost: all 52 blendshapes exactly 0 (the app sends zeros without a face);
    - frozen: all 61 values exactly equal to the previous frame's (a stalled sender repeats;
      a live face never repeats 61 floats exactly). The first frame of a run stays good.
    """
    v = np.asarray(values, np.float64)
    nonfinite = ~np.isfinite(v).all(axis=1)
    lost = np.all(np.nan_to_num(v[:, :N_BLENDSHAPES], nan=1.0) == 0, axis=1)
    frozen = np.zeros(len(v), bool)
    if len(v) > 1:
        frozen[1:] = np.all(v[1:] == v[:-1], axis=1)
    bad = nonfinite | lost | frozen
    return bad, {"non_finite": int(nonfinite.sum()), "tracking_lost": int(lost.sum()),
                 "frozen": int((frozen & ~lost & ~nonfinite).sum())}  # fmt: skip


def resample_to_grid(t: np.ndarray, values: np.ndarray, good: np.ndarray, grid: np.ndarray,
                     max_gap: float = 0.05) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Linear interpolation of the good frames onto ``grid`` (s): ``(targets [G, 61], mask [G])``.

    A grid point is masked (False) outside the face span, or when the nearest good frame on
    either side is more than ``max_gap`` s away (a drop-out, tracking loss, or a bad stretch).
    """
    t = np.asarray(t, np.float64)[good]
    v = np.asarray(values, np.float64)[good]
    out = np.zeros((len(grid), v.shape[1] if v.ndim == 2 else 61), np.float32)
    if len(t) < 2:
        return out, np.zeros(len(grid), bool)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    for c in range(v.shape[1]):
        out[:, c] = np.interp(grid, t, v[:, c])
    right = np.clip(np.searchsorted(t, grid), 1, len(t) - 1)
    gap_lo = grid - t[right - 1]
    gap_hi = t[right] - grid
    mask = (grid >= t[0]) & (grid <= t[-1])
    mask &= (np.minimum(gap_lo, gap_hi) <= max_gap) & (t[right] - t[right - 1] <= 2 * max_gap)
    return out, mask
