"""Anti-aliased SnakeBeta activation for ``vocoder_name="nsf-snake-hifigan"`` (sovits-4.1.md §8.2).

``SnakeAlias(channels)``: 2× upsample with a Kaiser-windowed sinc filter (kernel 12, cutoff 0.25,
half-width 0.3, replicate padding), SnakeBeta with log-scale ``alpha``/``beta``
(``x + 1/(exp(β)+1e-9)·sin²(x·exp(α))``), then a 2× low-pass downsample with the same filter.

State keys per activation: ``act.alpha``, ``act.beta`` (``[channels]``, zero-initialised),
``upsample.filter`` and ``downsample.lowpass.filter`` (buffers ``[1, 1, 12]``). The reference also
built grouped conv modules holding copies of the filters in Python tuples (not in the state dict);
here the filters are applied functionally, which computes the same thing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["kaiser_sinc_filter1d", "UpSample1d", "LowPassFilter1d", "DownSample1d",
           "SnakeBeta", "SnakeAlias"]  # fmt: skip


def kaiser_sinc_filter1d(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass filter ``[1, 1, kernel_size]``, normalised to sum 1.

    ``cutoff`` and ``half_width`` (of the transition band) are in cycles per sample (0.5 is
    Nyquist). The window's β follows Kaiser's design formulas for the attenuation reachable with
    this length and transition width. Even kernels are centred between two taps.
    """
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95  # dB
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta)
    if kernel_size % 2 == 0:
        t = torch.arange(-half, half) + 0.5
    else:
        t = torch.arange(kernel_size) - half
    if cutoff == 0:
        return torch.zeros(1, 1, kernel_size)
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    """Upsample ``[B, C, T] -> [B, C, ratio·T]`` by zero-stuffing and the sinc filter."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None, channels: int | None = None):
        super().__init__()
        self.ratio = ratio
        self.channels = channels
        self.kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.stride = ratio
        self.pad = self.kernel_size // ratio - 1
        self.pad_left = self.pad * self.stride + (self.kernel_size - self.stride) // 2
        self.pad_right = self.pad * self.stride + (self.kernel_size - self.stride + 1) // 2
        self.register_buffer(
            "filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, self.kernel_size)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.channels or x.shape[1]  # a fixed count keeps the ONNX conv kernel static
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(
            x, self.filter.to(x.dtype).expand(c, -1, -1), stride=self.stride, groups=c
        )
        return x[..., self.pad_left : x.shape[-1] - self.pad_right]


class LowPassFilter1d(nn.Module):
    """Depthwise low-pass filter with replicate padding and an optional stride."""

    def __init__(
        self,
        cutoff: float = 0.5,
        half_width: float = 0.6,
        stride: int = 1,
        padding: bool = True,
        padding_mode: str = "replicate",
        kernel_size: int = 12,
        channels: int | None = None,
    ):
        super().__init__()
        self.channels = channels
        if cutoff < 0.0:
            raise ValueError("Minimum cutoff must be larger than zero.")
        if cutoff > 0.5:
            raise ValueError("A cutoff above 0.5 does not make sense.")
        self.kernel_size = kernel_size
        self.even = kernel_size % 2 == 0
        self.pad_left = kernel_size // 2 - int(self.even)
        self.pad_right = kernel_size // 2
        self.stride = stride
        self.padding = padding
        self.padding_mode = padding_mode
        self.register_buffer("filter", kaiser_sinc_filter1d(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.channels or x.shape[1]
        if self.padding:
            x = F.pad(x, (self.pad_left, self.pad_right), mode=self.padding_mode)
        return F.conv1d(x, self.filter.to(x.dtype).expand(c, -1, -1), stride=self.stride, groups=c)


class DownSample1d(nn.Module):
    """Low-pass and decimate ``[B, C, ratio·T] -> [B, C, T]``."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None, channels: int | None = None):
        super().__init__()
        self.ratio = ratio
        self.kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.lowpass = LowPassFilter1d(
            cutoff=0.5 / ratio,
            half_width=0.6 / ratio,
            stride=ratio,
            kernel_size=self.kernel_size,
            channels=channels,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class SnakeBeta(nn.Module):
    """``x + 1/(β+1e-9)·sin²(α·x)`` per channel; with ``logscale`` α, β are stored as logs."""

    def __init__(self, channels: int, alpha: float = 1.0, logscale: bool = True):
        super().__init__()
        self.logscale = logscale
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init * alpha)
        self.beta = nn.Parameter(init.clone() * alpha)
        self.no_div_by_zero = 1e-9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.unsqueeze(0).unsqueeze(-1)
        beta = self.beta.unsqueeze(0).unsqueeze(-1)
        if self.logscale:
            alpha = torch.exp(alpha)
            beta = torch.exp(beta)
        return x + (1.0 / (beta + self.no_div_by_zero)) * torch.pow(torch.sin(x * alpha), 2)


class SnakeAlias(nn.Module):
    """Anti-aliased SnakeBeta: upsample ×2, SnakeBeta, low-pass downsample ×2."""

    def __init__(
        self,
        channels: int,
        up_ratio: int = 2,
        down_ratio: int = 2,
        up_kernel_size: int = 12,
        down_kernel_size: int = 12,
    ):
        super().__init__()
        self.act = SnakeBeta(channels, logscale=True)
        self.upsample = UpSample1d(up_ratio, up_kernel_size, channels)
        self.downsample = DownSample1d(down_ratio, down_kernel_size, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))
