"""Inference-time speed-up of the NSF-HiFiGAN convolutions, applied from outside the model.

The decoder (94 % of the synthesizer's FLOPs) is a stack of 1-D convolutions over long signals
(up to 440 k samples for 10 s of audio) with few channels (512 → 16). PyTorch runs ``conv1d`` on
CPU as an NCHW oneDNN convolution, which is slow for these shapes. :func:`channels_last_convs`
rewrites every ``Conv1d`` / ``ConvTranspose1d`` of a module (the generator's decoder) as an
*equivalent stride-1 convolution* run by ``conv2d`` on ``[B, C, 1, L]`` in the channels-last
(NHWC) layout, where oneDNN uses its blocked kernels (and AMX for bf16):

- a plain convolution: the same weights (re-strided in place; same ``state_dict``);
- a transposed convolution (upsampling by ``u``): ``u`` polyphase components computed as one
  convolution with ``u·C_out`` output channels and ``ceil(k/u)`` taps; the phases interleave by
  a free reshape of the time-major result;
- a strided convolution (the noise branches, ``C_in = 1``, stride ``s``): the input viewed as
  ``s`` channels at the output rate (a free reshape), then a convolution with ``ceil(k/s)`` taps.

Both rewrites use the same products as the original (only the summation order changes), so the
output equals the plain model's to float rounding (max |Δ| ≈ 1e-6 on the template model).
Activations stay time-major between layers; elementwise ops keep that layout.

``tile``: oneDNN builds a kernel for every new signal length, and for bf16 (AMX) that costs up to
0.3 s per layer — more than the layer's run time — every time a slice of a new length arrives.
With ``tile=W`` each convolution runs on fixed-width windows (``W`` outputs plus the kernel's
halo, zero-padded at the ends, batched), so every slice reuses the same kernels. Same results;
costs one extra copy of each layer's input.

Weight norm must be folded first; call after moving the module to its device. :func:`undo`
restores the plain modules.
"""

from __future__ import annotations

import math
import types

import torch
import torch.nn.functional as F
from torch import nn


def channels_last_1d(t: torch.Tensor) -> torch.Tensor:
    """Same values, time-major memory (``[B, C, L]`` with channel stride 1)."""
    if t.dim() != 3 or t.stride(1) == 1 or t.size(1) == 1:
        return t
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, L]`` → ``[B, L, C]`` contiguous (a view when ``x`` is already time-major)."""
    return x.transpose(1, 2).contiguous()


def _padded(x: torch.Tensor, left: int, take: int, total: int) -> torch.Tensor:
    """``[B, total, C]``: zeros, then ``x[:, :, :take]`` time-major from ``left``, then zeros
    (only the edges are zero-filled)."""
    B, C, _ = x.shape
    xp = x.new_empty(B, total, C)
    xp[:, :left].zero_()
    xp[:, left : left + take] = x[:, :, :take].transpose(1, 2)
    xp[:, left + take :].zero_()
    return xp


def stride1_conv(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    dilation: int,
    pad_left: int,
    pad_right: int,
    tile: int | None = None,
) -> torch.Tensor:
    """``conv1d(pad(x), w, b, dilation=dilation)`` in channels-last NHWC, optionally tiled.

    ``x`` ``[B, C, L]`` (any layout), ``w`` ``[Co, C, K]`` (channels-last strides preferred).
    Returns ``[B, Co, L_out]`` with time-major strides.
    """
    B, C, L = x.shape
    if torch.is_autocast_enabled("cpu") and x.device.type == "cpu":
        # the convolution would cast to bf16 anyway: cast first, so that the padding and tiling
        # copies below move half the bytes (same values)
        x = x.to(torch.get_autocast_dtype("cpu"))
    halo = dilation * (w.shape[-1] - 1)
    l_out = L + pad_left + pad_right - halo
    if l_out <= 0:
        raise ValueError("input shorter than the convolution's kernel")
    w4 = w.unsqueeze(2)
    if tile is None or l_out <= tile:
        if pad_left == pad_right:
            x4 = channels_last_1d(x).unsqueeze(2)
            return F.conv2d(x4, w4, b, 1, (0, pad_left), (1, dilation)).squeeze(2)
        xp = _padded(x, pad_left, L, pad_left + L + pad_right)
        return F.conv2d(xp.transpose(1, 2).unsqueeze(2), w4, b, 1, 0, (1, dilation)).squeeze(2)
    n = math.ceil(l_out / tile)
    span = tile + halo
    need = (n - 1) * tile + span
    xp = _padded(x, pad_left, min(L, need - pad_left), need)
    # overlapping windows [B·n, C, 1, span], materialised channels-last
    tiles = xp.as_strided((B, n, span, C), (need * C, tile * C, C, 1)).reshape(B * n, 1, span, C)
    y = F.conv2d(tiles.permute(0, 3, 1, 2), w4, b, 1, 0, (1, dilation))  # [B·n, Co, 1, tile]
    co = y.shape[1]
    y = y.permute(0, 2, 3, 1).reshape(B, n * tile, co)  # a view: y is channels-last
    return y[:, :l_out].transpose(1, 2)


# ------------------------------------------------------------------------------ rewritten layers
def _conv_forward(self: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 3:
        return type(self).forward(self, x)
    spec = self._fast
    if spec["kind"] == "plain":
        p = self.padding[0]
        return stride1_conv(x, self.weight, self.bias, self.dilation[0], p, p, self._tile)
    # strided, C_in = 1: view the padded input as s channels at the output rate
    s, p, taps = spec["stride"], self.padding[0], spec["taps"]
    B, _, L = x.shape
    l_out = (L + 2 * p - self.kernel_size[0]) // s + 1
    n = l_out + taps - 1
    xp = x.new_zeros(B, n * s)
    take = min(L, n * s - p)
    xp[:, p : p + take] = x[:, 0, :take]
    xs = xp.view(B, n, s).transpose(1, 2)  # [B, s, n], time-major
    return stride1_conv(xs, spec["weight"], self.bias, 1, 0, 0, self._tile)


def _deconv_forward(self: nn.ConvTranspose1d, x: torch.Tensor, output_size=None) -> torch.Tensor:
    if x.dim() != 3 or output_size is not None:
        return type(self).forward(self, x, output_size)
    spec = self._fast
    u, taps, co = spec["stride"], spec["taps"], self.out_channels
    B, _, L = x.shape
    z = stride1_conv(
        x, spec["weight"], spec["bias"], 1, taps - 1, taps - 1, self._tile
    )  # [B, u·Co, L+J-1]
    full = z.transpose(1, 2).reshape(B, (L + taps - 1) * u, co)  # phases interleave (a view)
    p = self.padding[0]
    l_out = (L - 1) * u + self.kernel_size[0] - 2 * p + self.output_padding[0]
    return full[:, p : p + l_out].transpose(1, 2)


def _prepare(m: nn.Module) -> dict | None:
    """The stride-1 form of ``m``, or None when it is kept as it is."""
    if m.padding_mode != "zeros" or isinstance(m.padding, str) or m.groups != 1:
        return None
    if (
        not isinstance(m.weight, nn.Parameter)
        or hasattr(m, "parametrizations")
        or hasattr(m, "weight_g")
    ):
        return None
    w = m.weight.detach()
    k = m.kernel_size[0]
    if type(m) is nn.Conv1d:
        s = m.stride[0]
        if s == 1:
            return {"kind": "plain"}
        if m.in_channels != 1 or m.dilation[0] != 1:
            return None
        taps = math.ceil(k / s)
        u = torch.zeros(m.out_channels, taps * s, dtype=w.dtype, device=w.device)
        u[:, :k] = w[:, 0, :]
        # U[co, b, a] = w[co, 0, a·s + b]
        weight = u.view(m.out_channels, taps, s).permute(0, 2, 1)
        return {
            "kind": "strided",
            "stride": s,
            "taps": taps,
            "weight": channels_last_1d(weight.contiguous()),
        }
    if type(m) is nn.ConvTranspose1d:
        if m.dilation[0] != 1:
            return None
        uu = m.stride[0]
        taps = math.ceil(k / uu)
        ci, co = m.in_channels, m.out_channels
        wp = torch.zeros(ci, co, taps * uu, dtype=w.dtype, device=w.device)
        wp[:, :, :k] = w
        # V[r·Co + co, ci, j] = w[ci, co, (J−1−j)·u + r]
        v = wp.view(ci, co, taps, uu).flip(2).permute(3, 1, 0, 2).reshape(uu * co, ci, taps)
        bias = None if m.bias is None else m.bias.detach().repeat(uu)
        return {"kind": "deconv", "stride": uu, "taps": taps, "weight": channels_last_1d(v.contiguous()),
                "bias": bias}  # fmt: skip
    return None


def channels_last_convs(module: nn.Module, tile: int | None = None) -> int:
    """Rewrite every eligible 1-D (transposed) convolution in ``module``; returns how many.

    ``tile``: fixed window width (output samples) for every layer, or None (whole signal).
    Calling again only changes ``tile``.
    """
    n = 0
    for m in module.modules():
        if type(m) not in (nn.Conv1d, nn.ConvTranspose1d):
            continue
        if getattr(m, "_fast", None) is not None:
            m._tile = tile
            n += 1
            continue
        spec = _prepare(m)
        if spec is None:
            continue
        if spec["kind"] == "plain":
            with torch.no_grad():
                m.weight = nn.Parameter(channels_last_1d(m.weight.detach()), requires_grad=False)
        m._fast = spec
        m._tile = tile
        m.forward = types.MethodType(_conv_forward if type(m) is nn.Conv1d else _deconv_forward, m)
        n += 1
    return n


def set_tile(module: nn.Module, tile: int | None) -> None:
    for m in module.modules():
        if getattr(m, "_fast", None) is not None:
            m._tile = tile


def undo(module: nn.Module) -> None:
    for m in module.modules():
        if getattr(m, "_fast", None) is not None:
            del m.forward
            m.weight = nn.Parameter(
                m.weight.detach().contiguous(), requires_grad=m.weight.requires_grad
            )
            m._fast = None
