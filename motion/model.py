"""The visemes model: z ``[B, C, T]`` (86.13 fps) → 61 Live Link values ``[B, 61, T]`` (fixes §9.9-11).

- input normalisation by the training set's per-channel z mean/std (buffers in the state dict);
- temporal context from a stack of dilated residual convolutions, dilations 1, 2, 4, … (receptive
  field ``1 + (k−1)·(2^n − 1)`` frames: 125 = 1.45 s with the defaults k=5, n=5); they are
  translation-equivariant, so no positional encoding is needed and any length works. (An RNN
  was dropped: PyTorch's CPU GRU was ~100× slower than these convolutions for the same context.)
- bounded outputs: sigmoid for the 52 blendshapes (0–1), a linear head for the 9 rotations;
- masks: padded frames are zeroed before every convolution and never reach the loss.

≈ 0.3 M parameters with the defaults (hidden 96, 5 blocks).
"""

from __future__ import annotations

import torch
from torch import nn

from motion.channels import N_BLENDSHAPES, N_VALUES


class _Block(nn.Module):
    def __init__(self, ch: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(
            ch, ch, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2
        )
        self.proj = nn.Conv1d(ch, ch, 1)
        self.act = nn.LeakyReLU(0.1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.proj(self.drop(self.act(self.conv(self.act(x) * mask))))
        return (x + y) * mask


class VisemesNet(nn.Module):
    def __init__(self, z_channels: int, hidden: int = 96, n_blocks: int = 5, kernel_size: int = 5,
                 dropout: float = 0.1):  # fmt: skip
        super().__init__()
        self.register_buffer("z_mean", torch.zeros(z_channels, 1))
        self.register_buffer("z_std", torch.ones(z_channels, 1))
        self.pre = nn.Conv1d(z_channels, hidden, 1)
        self.blocks = nn.ModuleList(
            _Block(hidden, kernel_size, 2**i, dropout) for i in range(n_blocks)
        )
        self.out = nn.Conv1d(hidden, N_VALUES, 1)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``z [B, C, T]``, ``mask [B, 1, T]`` (1 = real frame) → values ``[B, 61, T]``."""
        if mask is None:
            mask = torch.ones_like(z[:, :1])
        x = self.pre((z - self.z_mean) / self.z_std) * mask
        for block in self.blocks:
            x = block(x, mask)
        y = self.out(x)
        shapes = torch.sigmoid(y[:, :N_BLENDSHAPES])
        return torch.cat([shapes, y[:, N_BLENDSHAPES:]], 1) * mask


def build(z_channels: int, model_cfg: dict) -> VisemesNet:
    keys = ("hidden", "n_blocks", "kernel_size", "dropout")
    return VisemesNet(z_channels, **{k: model_cfg[k] for k in keys if k in model_cfg})
