"""A faster CPU path for the NSF-HiFiGAN convolutions, applied from outside the model.

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

Inference: fold weight norm first (the rewritten weights are computed once). Training
(``live=True``): weight-normed layers are rewritten too and their stride-1 weights are derived
from the live weight at every call (differentiable; no parameter is replaced, so the state dict
and the optimiser see the model as it is). Call after moving the module to its device.
:func:`undo` restores the plain modules.
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
def _strided_weight(w: torch.Tensor, s: int, taps: int) -> torch.Tensor:
    """A stride-``s`` ``[Co, 1, k]`` kernel as a stride-1 ``[Co, s, taps]`` one on the input viewed
    as ``s`` channels: ``U[co, b, a] = w[co, 0, a·s + b]`` (zero beyond ``k``)."""
    co, _, k = w.shape
    u = F.pad(w[:, 0, :], (0, taps * s - k))
    return channels_last_1d(u.view(co, taps, s).permute(0, 2, 1).contiguous())


def _deconv_weight(w: torch.Tensor, u: int, taps: int) -> torch.Tensor:
    """A transposed ``[Ci, Co, k]`` kernel (upsampling by ``u``) as ``u`` polyphase components
    in one stride-1 ``[u·Co, Ci, taps]`` kernel: ``V[r·Co + co, ci, j] = w[ci, co, (J−1−j)·u + r]``."""
    ci, co, k = w.shape
    wp = F.pad(w, (0, taps * u - k))
    v = wp.view(ci, co, taps, u).flip(2).permute(3, 1, 0, 2).reshape(u * co, ci, taps)
    return channels_last_1d(v.contiguous())


def _conv_forward(self: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 3:
        return type(self).forward(self, x)
    spec = self._fast
    if spec["kind"] == "plain":
        p = self.padding[0]
        return stride1_conv(x, channels_last_1d(self.weight), self.bias, self.dilation[0], p, p,
                            self._tile)  # fmt: skip
    # strided, C_in = 1: view the padded input as s channels at the output rate
    s, p, taps = spec["stride"], self.padding[0], spec["taps"]
    weight = spec["weight"] if spec["weight"] is not None else _strided_weight(self.weight, s, taps)
    B, _, L = x.shape
    l_out = (L + 2 * p - self.kernel_size[0]) // s + 1
    n = l_out + taps - 1
    xp = x.new_zeros(B, n * s)
    take = min(L, n * s - p)
    xp[:, p : p + take] = x[:, 0, :take]
    xs = xp.view(B, n, s).transpose(1, 2)  # [B, s, n], time-major
    return stride1_conv(xs, weight, self.bias, 1, 0, 0, self._tile)


def _deconv_forward(self: nn.ConvTranspose1d, x: torch.Tensor, output_size=None) -> torch.Tensor:
    if x.dim() != 3 or output_size is not None:
        return type(self).forward(self, x, output_size)
    spec = self._fast
    u, taps, co = spec["stride"], spec["taps"], self.out_channels
    B, _, L = x.shape
    if spec["weight"] is None:  # live: from the current (e.g. weight-normed) weight
        weight = _deconv_weight(self.weight, u, taps)
        bias = None if self.bias is None else self.bias.repeat(u)
    else:
        weight, bias = spec["weight"], spec["bias"]
    z = stride1_conv(x, weight, bias, 1, taps - 1, taps - 1, self._tile)  # [B, u·Co, L+J-1]
    full = z.transpose(1, 2).reshape(B, (L + taps - 1) * u, co)  # phases interleave (a view)
    p = self.padding[0]
    l_out = (L - 1) * u + self.kernel_size[0] - 2 * p + self.output_padding[0]
    return full[:, p : p + l_out].transpose(1, 2)


def _prepare(m: nn.Module, live: bool = False) -> dict | None:
    """The stride-1 form of ``m``, or None when it is kept as it is. ``live``: the stride-1
    weights are left to be derived from ``m.weight`` at every call (``"weight": None``)."""
    if m.padding_mode != "zeros" or isinstance(m.padding, str) or m.groups != 1:
        return None
    normed = hasattr(m, "weight_g") or hasattr(m, "parametrizations")
    if normed and not live:
        return None
    if not live and not isinstance(m.weight, nn.Parameter):
        return None
    k = m.kernel_size[0]
    if type(m) is nn.Conv1d:
        s = m.stride[0]
        if s == 1:
            return {"kind": "plain"}
        if m.in_channels != 1 or m.dilation[0] != 1:
            return None
        taps = math.ceil(k / s)
        weight = None if live else _strided_weight(m.weight.detach(), s, taps)
        return {"kind": "strided", "stride": s, "taps": taps, "weight": weight}
    if type(m) is nn.ConvTranspose1d:
        if m.dilation[0] != 1:
            return None
        u = m.stride[0]
        taps = math.ceil(k / u)
        if live:
            return {"kind": "deconv", "stride": u, "taps": taps, "weight": None, "bias": None}
        bias = None if m.bias is None else m.bias.detach().repeat(u)
        return {"kind": "deconv", "stride": u, "taps": taps,
                "weight": _deconv_weight(m.weight.detach(), u, taps), "bias": bias}  # fmt: skip
    return None


def channels_last_convs(module: nn.Module, tile: int | None = None, live: bool = False) -> int:
    """Rewrite every eligible 1-D (transposed) convolution in ``module``; returns how many.

    ``tile``: fixed window width (output samples) for every layer, or None (whole signal).
    ``live``: for training (see the module doc): weight-normed layers included, parameters
    untouched, stride-1 weights derived at every call. Calling again only changes ``tile``.
    """
    n = 0
    for m in module.modules():
        if type(m) not in (nn.Conv1d, nn.ConvTranspose1d):
            continue
        if getattr(m, "_fast", None) is not None:
            m._tile = tile
            n += 1
            continue
        spec = _prepare(m, live)
        if spec is None:
            continue
        if spec["kind"] == "plain" and not live:
            with torch.no_grad():
                m.weight = nn.Parameter(channels_last_1d(m.weight.detach()), requires_grad=False)
            spec["replaced"] = True
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
            if m._fast.get("replaced"):  # a plain layer whose weight was made channels-last
                m.weight = nn.Parameter(
                    m.weight.detach().contiguous(), requires_grad=m.weight.requires_grad
                )
            m._fast = None
