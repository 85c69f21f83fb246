"""The WaveNet denoiser of shallow diffusion (sovits-4.1.md §13, ``diffusion/wavenet.py``).

``WaveNet(in_dims=128, n_layers=20, n_chans=512, n_hidden=256)(spec [B, 1, M, T], t [B],
cond [B, H, T]) -> noise [B, 1, M, T]``. ``t`` is the diffusion step (long, or float for the
DPM-Solver / UniPC continuous times). Every residual block has dilation 1.

The call signature is kept to ``(spec, t, cond)`` so the module can be exported to ONNX as it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SinusoidalPosEmb", "ResidualBlock", "WaveNet"]


class SinusoidalPosEmb(nn.Module):
    """``t [B] -> [B, dim]``: ``[sin(t·f_k), cos(t·f_k)]``, ``f_k = exp(-k·log(10000)/(dim/2 − 1))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        scale = math.log(10000) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=t.device) * -scale)
        arg = t.float()[:, None] * freqs[None, :]
        return torch.cat((arg.sin(), arg.cos()), dim=-1)


def _kaiming_conv1d(c_in: int, c_out: int, kernel_size: int = 1, **kw) -> nn.Conv1d:
    conv = nn.Conv1d(c_in, c_out, kernel_size, **kw)
    nn.init.kaiming_normal_(conv.weight)
    return conv


class ResidualBlock(nn.Module):
    """Gated residual block: ``x + step → conv(k3) + cond → σ(gate)·tanh(filter) → [res, skip]``."""

    def __init__(self, n_hidden: int, n_chans: int, dilation: int = 1):
        super().__init__()
        self.dilated_conv = nn.Conv1d(n_chans, 2 * n_chans, 3, padding=dilation, dilation=dilation)
        self.diffusion_projection = nn.Linear(n_chans, n_chans)
        self.conditioner_projection = nn.Conv1d(n_hidden, 2 * n_chans, 1)
        self.output_projection = nn.Conv1d(n_chans, 2 * n_chans, 1)

    def forward(self, x: torch.Tensor, cond_proj: torch.Tensor, step: torch.Tensor):
        """``x [B, C, T]``, ``cond_proj`` = ``conditioner_projection(cond)`` ``[B, 2C, T]``,
        ``step [B, C]`` → ``(x' [B, C, T], skip [B, C, T])``."""
        y = x + self.diffusion_projection(step).unsqueeze(-1)
        y = self.dilated_conv(y) + cond_proj
        gate, filt = torch.chunk(y, 2, dim=1)
        y = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = torch.chunk(y, 2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class WaveNet(nn.Module):
    def __init__(
        self, in_dims: int = 128, n_layers: int = 20, n_chans: int = 384, n_hidden: int = 256
    ):
        super().__init__()
        self.input_projection = _kaiming_conv1d(in_dims, n_chans, 1)
        self.diffusion_embedding = SinusoidalPosEmb(n_chans)
        self.mlp = nn.Sequential(
            nn.Linear(n_chans, n_chans * 4), nn.Mish(), nn.Linear(n_chans * 4, n_chans)
        )
        self.residual_layers = nn.ModuleList(
            [ResidualBlock(n_hidden, n_chans, 1) for _ in range(n_layers)]
        )
        self.skip_projection = _kaiming_conv1d(n_chans, n_chans, 1)
        self.output_projection = nn.Conv1d(n_chans, in_dims, 1)
        nn.init.zeros_(self.output_projection.weight)

    def project_cond(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """Every block's ``conditioner_projection(cond)``: the same for every diffusion step, so a
        sampler computes it once (:meth:`forward_projected`)."""
        return [layer.conditioner_projection(cond) for layer in self.residual_layers]

    def forward_projected(
        self, spec: torch.Tensor, t: torch.Tensor, cond_proj: list[torch.Tensor]
    ) -> torch.Tensor:
        x = F.relu(self.input_projection(spec.squeeze(1)))
        step = self.mlp(self.diffusion_embedding(t))
        skip = None
        for layer, cp in zip(self.residual_layers, cond_proj):
            x, s = layer(x, cp, step)
            skip = s if skip is None else skip + s
        x = skip / math.sqrt(len(self.residual_layers))
        x = F.relu(self.skip_projection(x))
        return self.output_projection(x)[:, None, :, :]

    def forward(self, spec: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``spec [B, 1, M, T]``, ``t [B]``, ``cond [B, H, T]`` → predicted noise ``[B, 1, M, T]``."""
        return self.forward_projected(spec, t, self.project_cond(cond))
