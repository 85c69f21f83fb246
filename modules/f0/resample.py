"""Windowed-sinc resampler with the numbers of ``torchaudio.transforms.Resample``.

RMVPE and FCPE resample their input to 16 kHz with ``Resample(sr, 16000, lowpass_filter_width=128)``
(default ``sinc_interp_hann``, rolloff 0.99). torchaudio is not a dependency, so the same algorithm
is written out here (F0_MODELS.md §6):

- ``g = gcd(orig, new)``, ``o = orig/g``, ``n = new/g``, ``base = min(o, n)·rolloff``,
  ``W = ceil(width·o/base)``;
- kernel ``[n, 1, 2W+o]``: ``t = (−j/n) + (m−W)/o`` (first term in float32, second in float64),
  ``t ← clamp(t·base, ±width)``, ``k = sinc(t)·cos(πt/(2·width))²·base/o``, cast to float32;
- zero-pad W left and W+o right, ``conv1d(stride=o)``, interleave the n phases, keep
  ``ceil(n·L/o)`` samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_kernels: dict[tuple, tuple[torch.Tensor, int]] = {}


def sinc_resample_kernel(
    orig_freq: int,
    new_freq: int,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
    device=None,
) -> tuple[torch.Tensor, int]:
    """The float32 kernel ``[n, 1, 2W+o]`` and the width ``W`` (cached per arguments and device)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (int(orig_freq), int(new_freq), int(lowpass_filter_width), float(rolloff), str(device))
    hit = _kernels.get(key)
    if hit is not None:
        return hit
    g = math.gcd(int(orig_freq), int(new_freq))
    o, n = int(orig_freq) // g, int(new_freq) // g
    base = min(o, n) * rolloff
    width = math.ceil(lowpass_filter_width * o / base)
    idx = torch.arange(-width, width + o, dtype=torch.float64)[None, None] / o
    t = torch.arange(0, -n, -1)[:, None, None] / n + idx  # int/int -> float32, + float64
    t = t * base
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    scale = base / o
    kernels = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    kernels = kernels * window * scale
    kernels = kernels.to(dtype=torch.float32, device=device)
    _kernels[key] = (kernels, width)
    return kernels, width


def resample_sinc(
    waveform: torch.Tensor,
    orig_freq: int,
    new_freq: int,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
) -> torch.Tensor:
    """Resample the last axis of ``waveform`` (any leading shape) like torchaudio's Resample."""
    if int(orig_freq) == int(new_freq):
        return waveform
    kernel, width = sinc_resample_kernel(
        orig_freq, new_freq, lowpass_filter_width, rolloff, waveform.device
    )
    g = math.gcd(int(orig_freq), int(new_freq))
    o, n = int(orig_freq) // g, int(new_freq) // g
    shape = waveform.shape
    x = waveform.reshape(-1, shape[-1])
    num, length = x.shape
    x = F.pad(x, (width, width + o))
    y = F.conv1d(x[:, None], kernel.to(x.dtype), stride=o)
    y = y.transpose(1, 2).reshape(num, -1)
    target = math.ceil(n * length / o)
    y = y[..., :target]
    return y.reshape(shape[:-1] + y.shape[-1:])
