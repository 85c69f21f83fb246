"""``GaussianDiffusion``: the DDPM around the WaveNet denoiser (sovits-4.1.md §13).

Linear betas ``linspace(1e-4, max_beta, timesteps)``; the derived float32 schedules are
registered buffers (they are in the state dict, as in 4.1). Mels are normalised to [-1, 1] with
``spec_min = -12``, ``spec_max = 2``.

- training: ``forward(cond [B, T, H], gt_spec [B, T, M], infer=False) -> MSE(ε, ε̂)`` with
  ``t ~ U{0 … k_step-1}``;
- inference: ``forward(cond, gt_spec=None|[B, T, M], infer=True, infer_speedup, method, k_step)
  -> mel [B, T, M]``: from ``q(x_{k_step−1} | norm(gt_spec))`` (shallow diffusion) or from
  noise at ``k_step_max`` steps, then :func:`diffusion.samplers.sample`.

All noise comes from ``generator`` when one is given (reproducible conversions), drawn as 4.1
draws it: the noise added to a mel (training, shallow start) is ``randn_like`` of the transposed
``[B, 1, M, T]`` view, so a 4.1 model gives 4.1's output for the same seed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffusion.samplers import sample

__all__ = ["GaussianDiffusion", "BUFFER_NAMES"]

BUFFER_NAMES = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
)  # fmt: skip


def _schedules(timesteps: int, max_beta: float) -> dict[str, np.ndarray]:
    """The DDPM tables in float64 (cast to float32 buffers)."""
    betas = np.linspace(1e-4, max_beta, timesteps)
    alphas = 1.0 - betas
    ac = np.cumprod(alphas, axis=0)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    return {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
        "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
    }


class GaussianDiffusion(nn.Module):
    def __init__(
        self,
        denoise_fn: nn.Module,
        out_dims: int = 128,
        timesteps: int = 1000,
        k_step: int = 1000,
        max_beta: float = 0.02,
        spec_min: float = -12,
        spec_max: float = 2,
    ):
        super().__init__()
        self.denoise_fn = denoise_fn
        self.out_dims = out_dims
        self.num_timesteps = int(timesteps)
        self.k_step = int(k_step)
        for name, value in _schedules(self.num_timesteps, max_beta).items():
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32))
        self.register_buffer("spec_min", torch.FloatTensor([spec_min])[None, None, :out_dims])
        self.register_buffer("spec_max", torch.FloatTensor([spec_max])[None, None, :out_dims])

    # -- helpers --------------------------------------------------------------------------------
    def norm_spec(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.spec_min) / (self.spec_max - self.spec_min) * 2 - 1

    def denorm_spec(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2 * (self.spec_max - self.spec_min) + self.spec_min

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``√ᾱ_t·x0 + √(1−ᾱ_t)·noise`` (``t [B]`` long)."""
        shape = (-1,) + (1,) * (x_start.dim() - 1)
        return (self.sqrt_alphas_cumprod[t].view(shape) * x_start
                + self.sqrt_one_minus_alphas_cumprod[t].view(shape) * noise)  # fmt: skip

    def buffers_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in BUFFER_NAMES}

    # -- training / inference -------------------------------------------------------------------
    def forward(
        self,
        condition: torch.Tensor,
        gt_spec: torch.Tensor | None = None,
        infer: bool = True,
        infer_speedup: int = 10,
        method: str | None = "dpm-solver",
        k_step: int = 300,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        cond = condition.transpose(1, 2)  # [B, H, T]
        b, device = cond.shape[0], cond.device

        dtype = torch.promote_types(cond.dtype, torch.float32)  # noise and x stay fp32 under AMP

        def randn(shape):
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)

        def randn_like(x0):
            """4.1's ``torch.randn_like(x0)`` on the transposed view ``x0 [B, 1, M, T]`` (strides
            of ``[B, T, M]``): the draw keeps those strides, and torch fills a non-contiguous
            tensor element by element in memory order, so the numbers (not only their order)
            differ from a contiguous ``randn`` of the same seed."""
            return torch.empty_like(x0, dtype=dtype).normal_(generator=generator)

        if not infer:
            x0 = self.norm_spec(gt_spec).transpose(1, 2)[:, None, :, :]  # [B, 1, M, T]
            t = torch.randint(0, self.k_step, (b,), device=device, generator=generator)
            noise = randn_like(x0)
            x_noisy = self.q_sample(x0, t, noise)
            return F.mse_loss(noise, self.denoise_fn(x_noisy, t, cond))

        shape = (b, 1, self.out_dims, cond.shape[2])
        if gt_spec is None:
            t = self.k_step
            x = randn(shape)
        else:
            t = int(k_step)
            x0 = self.norm_spec(gt_spec).transpose(1, 2)[:, None, :, :]
            x = self.q_sample(x0, torch.full((b,), t - 1, device=device, dtype=torch.long),
                              randn_like(x0))  # fmt: skip
        projected = self.denoise_fn.project_cond(cond)

        def eps(x_t: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
            return self.denoise_fn.forward_projected(x_t, step, projected)

        x = sample(method, eps, x, self.buffers_dict(), t, int(infer_speedup), generator)
        return self.denorm_spec(x.squeeze(1).transpose(1, 2))  # [B, T, M]
