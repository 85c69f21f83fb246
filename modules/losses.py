"""GAN / VAE losses of the so-vits-svc training step (sovits-4.1.md §11).

Every input is cast to float32 first (training may run the nets under autocast).

- ``feature_loss``       = 2 · Σ_discriminators Σ_layers mean|fmap_r − fmap_g| (fmap_r detached)
- ``discriminator_loss`` = Σ mean((1 − D(y))²) + mean(D(ŷ)²)  (LSGAN)
- ``generator_loss``     = Σ mean((1 − D(ŷ))²)
- ``kl_loss``            = Σ((logs_p − logs_q − ½) + ½(z_p − m_p)²·exp(−2·logs_p))·mask / Σ mask
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def feature_loss(
    fmap_r: Sequence[Sequence[torch.Tensor]], fmap_g: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    loss = 0
    for dr, dg in zip(fmap_r, fmap_g):
        for rl, gl in zip(dr, dg):
            rl = rl.float().detach()
            gl = gl.float()
            loss = loss + torch.mean(torch.abs(rl - gl))
    return loss * 2


def discriminator_loss(
    disc_real_outputs: Sequence[torch.Tensor], disc_generated_outputs: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, list[float], list[float]]:
    """Returns ``(loss, r_losses, g_losses)``; the per-discriminator terms are Python floats."""
    loss = 0
    r_losses: list[float] = []
    g_losses: list[float] = []
    for dr, dg in zip(disc_real_outputs, disc_generated_outputs):
        dr = dr.float()
        dg = dg.float()
        r_loss = torch.mean((1 - dr) ** 2)
        g_loss = torch.mean(dg**2)
        loss = loss + (r_loss + g_loss)
        r_losses.append(r_loss.item())
        g_losses.append(g_loss.item())
    return loss, r_losses, g_losses


def generator_loss(
    disc_outputs: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Returns ``(loss, gen_losses)``; the per-discriminator terms stay tensors."""
    loss = 0
    gen_losses: list[torch.Tensor] = []
    for dg in disc_outputs:
        dg = dg.float()
        l_ = torch.mean((1 - dg) ** 2)
        gen_losses.append(l_)
        loss = loss + l_
    return loss, gen_losses


def kl_loss(
    z_p: torch.Tensor,
    logs_q: torch.Tensor,
    m_p: torch.Tensor,
    logs_p: torch.Tensor,
    z_mask: torch.Tensor,
) -> torch.Tensor:
    """VITS KL term. z_p, logs_q: ``[B, C, T]``; m_p, logs_p: ``[B, C, T]``; z_mask ``[B, 1, T]``."""
    z_p = z_p.float()
    logs_q = logs_q.float()
    m_p = m_p.float()
    logs_p = logs_p.float()
    z_mask = z_mask.float()

    kl = logs_p - logs_q - 0.5
    kl = kl + 0.5 * ((z_p - m_p) ** 2) * torch.exp(-2.0 * logs_p)
    kl = torch.sum(kl * z_mask)
    return kl / torch.sum(z_mask)


__all__ = ["discriminator_loss", "feature_loss", "generator_loss", "kl_loss"]
