"""Small tensor helpers shared by the generator, the flows and the training loop.

Masks are ``[B, T]`` booleans (``sequence_mask``) or ``[B, 1, T]`` floats built from them.
Weight norm is the *legacy* ``torch.nn.utils.weight_norm`` (``weight_g``/``weight_v`` with
``bias`` first in the state dict), which is what so-vits-svc 4.1 checkpoints hold
(sovits-4.1.md §9); :func:`weight_norm` wraps it without the deprecation warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

LRELU_SLOPE = 0.1


# --------------------------------------------------------------------------------------------
# init helpers
# --------------------------------------------------------------------------------------------
def init_weights(m: nn.Module, mean: float = 0.0, std: float = 0.01) -> None:
    """``normal_(mean, std)`` on the ``weight`` of every conv-like module (for ``Module.apply``).

    On a module that already carries weight norm, ``m.weight`` is recomputed on every forward
    from ``weight_g``/``weight_v``, so this has no lasting effect there (as in the reference); it
    still draws from the RNG.
    """
    name = m.__class__.__name__
    if "Depthwise_Separable" in name:
        m.depth_conv.weight.data.normal_(mean, std)
        m.point_conv.weight.data.normal_(mean, std)
    elif "Conv" in name and isinstance(getattr(m, "weight", None), torch.Tensor):
        m.weight.data.normal_(mean, std)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of an odd kernel: ``(k·d − d) / 2``."""
    return int((kernel_size * dilation - dilation) / 2)


def convert_pad_shape(pad_shape: Sequence[Sequence[int]]) -> list[int]:
    """``[[l0, r0], [l1, r1], …]`` (first dim first) → the flat, last-dim-first list ``F.pad`` wants."""
    return [p for pair in reversed(pad_shape) for p in pair]


# --------------------------------------------------------------------------------------------
# weight norm
# --------------------------------------------------------------------------------------------
def weight_norm(module: nn.Module, name: str = "weight", dim: int = 0) -> nn.Module:
    """Legacy weight norm (``weight_g``/``weight_v``), as in the reference checkpoints.

    Modules that know how to weight-norm themselves (``Depthwise_Separable_Conv1D``) expose a
    ``weight_norm()`` method and are delegated to (likewise ``remove_weight_norm()`` below).
    """
    own = getattr(module, "weight_norm", None)
    if callable(own):
        own()
        return module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.nn.utils.weight_norm(module, name=name, dim=dim)


def has_weight_norm(module: nn.Module, name: str = "weight") -> bool:
    from torch.nn.utils.weight_norm import WeightNorm

    return any(
        isinstance(h, WeightNorm) and h.name == name for h in module._forward_pre_hooks.values()
    )


def remove_weight_norm(module: nn.Module, name: str = "weight") -> nn.Module:
    """Fold ``weight_g``/``weight_v`` back into ``weight``; a no-op if there is no weight norm."""
    own = getattr(module, "remove_weight_norm", None)
    if callable(own):
        own()
        return module
    if has_weight_norm(module, name):
        torch.nn.utils.remove_weight_norm(module, name)
    return module


# --------------------------------------------------------------------------------------------
# masks and slicing
# --------------------------------------------------------------------------------------------
def sequence_mask(length: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """``[B]`` lengths → ``[B, max_length]`` bool mask (True inside the sequence)."""
    if max_length is None:
        max_length = int(length.max())
    x = torch.arange(max_length, dtype=length.dtype, device=length.device)
    return x.unsqueeze(0) < length.unsqueeze(1)


def subsequent_mask(length: int) -> torch.Tensor:
    """Causal mask ``[1, 1, T, T]`` (lower-triangular ones)."""
    return torch.tril(torch.ones(length, length)).unsqueeze(0).unsqueeze(0)


def _segment_index(ids_str: torch.Tensor, segment_size: int, length: int) -> torch.Tensor:
    ids_str = ids_str.to(torch.long)
    idx = ids_str.view(-1, 1) + torch.arange(segment_size, device=ids_str.device).view(1, -1)
    if idx.device.type == "cpu" and idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= length:
            raise ValueError(
                f"segment [{lo}, {hi}] out of range for a sequence of {length} frames "
                f"(segment_size {segment_size})"
            )
    return idx


def slice_segments(x: torch.Tensor, ids_str: torch.Tensor, segment_size: int = 4) -> torch.Tensor:
    """Per batch item ``b``, ``x[b, :, ids_str[b] : ids_str[b] + segment_size]`` → ``[B, C, S]``."""
    b, c, t = x.shape
    idx = _segment_index(ids_str.to(x.device), segment_size, t)
    return torch.gather(x, 2, idx.unsqueeze(1).expand(b, c, segment_size))


def slice_pitch_segments(
    x: torch.Tensor, ids_str: torch.Tensor, segment_size: int = 4
) -> torch.Tensor:
    """Per batch item ``b``, ``x[b, ids_str[b] : ids_str[b] + segment_size]`` → ``[B, S]``."""
    idx = _segment_index(ids_str.to(x.device), segment_size, x.shape[1])
    return torch.gather(x, 1, idx)


def _rand_ids(x: torch.Tensor, x_lengths, segment_size: int) -> torch.Tensor:
    b, _, t = x.size()
    if x_lengths is None:
        x_lengths = t
    ids_str_max = x_lengths - segment_size + 1
    # torch.rand on the CPU generator, then moved: the reference's RNG consumption.
    return (torch.rand([b]).to(device=x.device) * ids_str_max).to(dtype=torch.long)


def rand_slice_segments(
    x: torch.Tensor, x_lengths: torch.Tensor | int | None = None, segment_size: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``segment_size`` window per item: start ``floor(rand·(len − S + 1))``."""
    ids_str = _rand_ids(x, x_lengths, segment_size)
    return slice_segments(x, ids_str, segment_size), ids_str


def rand_slice_segments_with_pitch(
    x: torch.Tensor,
    pitch: torch.Tensor,
    x_lengths: torch.Tensor | int | None = None,
    segment_size: int = 4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same window of ``x [B, C, T]`` and ``pitch [B, T]``; returns ``(x_seg, pitch_seg, ids)``."""
    ids_str = _rand_ids(x, x_lengths, segment_size)
    ret = slice_segments(x, ids_str, segment_size)
    ret_pitch = slice_pitch_segments(pitch, ids_str, segment_size)
    return ret, ret_pitch, ids_str


# --------------------------------------------------------------------------------------------
# activations / misc
# --------------------------------------------------------------------------------------------
def fused_add_tanh_sigmoid_multiply(
    input_a: torch.Tensor, input_b: torch.Tensor, n_channels: int | torch.Tensor | Sequence[int]
) -> torch.Tensor:
    """WaveNet gate: ``tanh(a+b)[:, :n] * sigmoid(a+b)[:, n:]``.

    ``n_channels`` may be an int, or (reference style) a one-element IntTensor / list.
    """
    if isinstance(n_channels, torch.Tensor):
        n = int(n_channels.reshape(-1)[0])
    elif isinstance(n_channels, (list, tuple)):
        n = int(n_channels[0])
    else:
        n = int(n_channels)
    in_act = input_a + input_b
    t_act = torch.tanh(in_act[:, :n, :])
    s_act = torch.sigmoid(in_act[:, n:, :])
    return t_act * s_act


def shift_1d(x: torch.Tensor) -> torch.Tensor:
    """Shift right by one step along time (zero first frame)."""
    return F.pad(x, convert_pad_shape([[0, 0], [0, 0], [1, 0]]))[:, :, :-1]


def kl_divergence(m_p, logs_p, m_q, logs_q) -> torch.Tensor:
    """KL(P||Q) of diagonal Gaussians, element-wise."""
    kl = (logs_q - logs_p) - 0.5
    kl = kl + 0.5 * (torch.exp(2.0 * logs_p) + ((m_p - m_q) ** 2)) * torch.exp(-2.0 * logs_q)
    return kl


def clip_grad_value_(
    parameters: torch.Tensor | Iterable[torch.Tensor],
    clip_value: float | None,
    norm_type: float = 2,
) -> float:
    """Clamp gradients to ``±clip_value`` (no clamping when None) and return their total norm.

    With ``clip_value=None`` (what train.py passes) it only measures: §18.3.
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    parameters = [p for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if clip_value is not None:
        clip_value = float(clip_value)
    total_norm = 0.0
    for p in parameters:
        param_norm = p.grad.data.norm(norm_type)
        total_norm += param_norm.item() ** norm_type
        if clip_value is not None:
            p.grad.data.clamp_(min=-clip_value, max=clip_value)
    return total_norm ** (1.0 / norm_type)


# --------------------------------------------------------------------------------------------
# channel-first LayerNorm
# --------------------------------------------------------------------------------------------
class LayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``[B, C, T]`` (params ``gamma``/``beta``, eps 1e-5)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, -1)
        x = F.layer_norm(x, (self.channels,), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


__all__ = [
    "LRELU_SLOPE",
    "LayerNorm",
    "clip_grad_value_",
    "convert_pad_shape",
    "fused_add_tanh_sigmoid_multiply",
    "get_padding",
    "has_weight_norm",
    "init_weights",
    "kl_divergence",
    "rand_slice_segments",
    "rand_slice_segments_with_pitch",
    "remove_weight_norm",
    "sequence_mask",
    "shift_1d",
    "slice_pitch_segments",
    "slice_segments",
    "subsequent_mask",
    "weight_norm",
]
