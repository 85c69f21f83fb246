"""Pitch conventions shared by preprocessing, training and inference (sovits-4.1.md §5.4).

Frames are 512 samples at 44.1 kHz (about 86.13 frames/s). ``f0`` in Hz, ``uv`` 1.0 = voiced.
"""

from __future__ import annotations

import numpy as np
import torch

F0_BIN = 256
F0_MIN = 50.0
F0_MAX = 1100.0
F0_MEL_MIN = 1127.0 * np.log(1 + F0_MIN / 700.0)
F0_MEL_MAX = 1127.0 * np.log(1 + F0_MAX / 700.0)


def f0_to_coarse(f0: torch.Tensor) -> torch.Tensor:
    """Quantise f0 [Hz] to 256 mel-spaced bins (``[B, T]`` float → long).

    Same values as the reference, including its quirk: f0 ≤ 50 Hz → 1 and f0 above ~1103 Hz → 0
    (checkpoints were trained with it, so it is kept; §18.1).
    """
    f0_mel = 1127.0 * (1 + f0 / 700.0).log()
    a = (F0_BIN - 2) / (F0_MEL_MAX - F0_MEL_MIN)
    b = F0_MEL_MIN * a - 1.0
    f0_mel = torch.where(f0_mel > 0, f0_mel * a - b, f0_mel)
    f0_coarse = torch.round(f0_mel).long()
    f0_coarse = f0_coarse * (f0_coarse > 0)
    f0_coarse = f0_coarse + ((f0_coarse < 1) * 1)
    f0_coarse = f0_coarse * (f0_coarse < F0_BIN)
    return f0_coarse


def interpolate_f0(
    f0: np.ndarray, hop: int = 512, sr: int = 44100
) -> tuple[np.ndarray, np.ndarray]:
    """Fill unvoiced (0) frames by linear interpolation over voiced ones.

    Returns ``(f0_interp, uv)`` with ``uv = (f0 > 0)`` as float32. Edges take the first/last voiced
    value; a single voiced frame gives a constant; none gives zeros (reference behaviour).
    """
    f0 = np.asarray(f0, dtype=np.float64).copy()
    f0[~np.isfinite(f0)] = 0.0
    uv = (f0 > 0).astype(np.float32)
    voiced = np.nonzero(uv)[0]
    if len(voiced) == 0:
        return np.zeros_like(f0), uv
    if len(voiced) == 1:
        return np.full_like(f0, f0[voiced[0]]), uv
    t = np.arange(len(f0)) * hop / sr
    f0 = np.interp(t, t[voiced], f0[voiced], left=f0[voiced[0]], right=f0[voiced[-1]])
    return f0, uv


def resize_f0(x: np.ndarray, target_len: int) -> np.ndarray:
    """Linear resize of an f0 track to ``target_len`` frames, ignoring unvoiced (< 0.001) values."""
    source = np.array(x, dtype=np.float64)
    source[source < 0.001] = np.nan
    target = np.interp(
        np.arange(0, len(source) * target_len, len(source)) / target_len,
        np.arange(0, len(source)),
        source,
    )
    return np.nan_to_num(target)


def f0_to_lf0(f0: torch.Tensor) -> torch.Tensor:
    """Log-f0 used by the f0 decoder: ``2595·log10(1+f0/700)/500``."""
    return 2595.0 * torch.log10(1.0 + f0 / 700.0) / 500.0


def lf0_to_f0(lf0: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`f0_to_lf0`."""
    return 700.0 * (torch.pow(10.0, lf0 * 500.0 / 2595.0) - 1.0)


def normalize_f0(
    lf0: torch.Tensor, x_mask: torch.Tensor, uv: torch.Tensor, random_scale: bool = True
) -> torch.Tensor:
    """Remove the per-utterance voiced mean of ``lf0`` ``[B, 1, T]``; training scales by U(0.8, 1.2).

    ``uv`` is ``[B, T]``. No voiced frame gives a divisor of 9999 (reference). Raises instead of
    exiting the process when the result has NaN (the reference called ``exit(0)``).
    """
    uv_sum = torch.sum(uv, dim=1, keepdim=True)
    uv_sum[uv_sum == 0] = 9999
    means = torch.sum(lf0[:, 0, :] * uv, dim=1, keepdim=True) / uv_sum
    if random_scale:
        # Drawn on the CPU generator, as the reference does, then moved.
        factor = torch.empty(lf0.shape[0], 1).uniform_(0.8, 1.2).to(lf0.device)
    else:
        factor = torch.ones(lf0.shape[0], 1, device=lf0.device)
    out = (lf0 - means.unsqueeze(-1)) * factor.unsqueeze(-1)
    if torch.isnan(out).any():
        raise FloatingPointError("normalize_f0 produced NaN (check the f0 input)")
    return out * x_mask
