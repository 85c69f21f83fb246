"""``Unit2Mel``: units + f0 + volume (+ speaker, + pitch-shift) → mel by diffusion (§13).

Condition (``n_hidden`` = 256): ``unit_embed(units) + f0_embed(log(1 + f0/700)) +
volume_embed(vol)``, plus ``aug_shift_embed(aug_shift/5)`` (pitch-augmented training items) and,
with ``n_spk > 1``, the speaker embedding. State-dict keys, order, shapes and dtypes are those of
4.1 (``aug_shift_embed`` before ``spk_embed``; the diffusion buffers included).

Speakers: ``spk_id`` is a long ``[B, 1]`` (0-based, as so-vits-svc passes it) or, for a dynamic
speaker mix, float weights ``[T, n_spk]`` (or ``[B, T, n_spk]``): the embedding is then the
weighted sum of the rows, per frame. (4.1's mix path read a missing attribute and added a
``[B, H, N]`` tensor to ``[B, T, H]``; §18.7.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.errors import InputError, UsageError, UserError
from diffusion.gaussian import GaussianDiffusion
from diffusion.wavenet import WaveNet

logger = logging.getLogger(__name__)

__all__ = [
    "Unit2Mel", "build_unit2mel", "load_unit2mel", "load_model_vocoder", "DiffusionFileError",
]  # fmt: skip


class DiffusionFileError(UserError, FileNotFoundError):
    """A diffusion model or config is missing or unreadable (message names file and remedy)."""


class Unit2Mel(nn.Module):
    def __init__(
        self,
        input_channel: int,
        n_spk: int,
        use_pitch_aug: bool = False,
        out_dims: int = 128,
        n_layers: int = 20,
        n_chans: int = 384,
        n_hidden: int = 256,
        timesteps: int = 1000,
        k_step_max: int = 1000,
    ):
        super().__init__()
        self.unit_embed = nn.Linear(input_channel, n_hidden)
        self.f0_embed = nn.Linear(1, n_hidden)
        self.volume_embed = nn.Linear(1, n_hidden)
        self.aug_shift_embed = nn.Linear(1, n_hidden, bias=False) if use_pitch_aug else None
        self.n_spk = int(n_spk or 1)
        self.spk_embed = nn.Embedding(self.n_spk, n_hidden) if self.n_spk > 1 else None
        self.timesteps = int(timesteps) if timesteps is not None else 1000
        k = int(k_step_max) if k_step_max else 0
        self.k_step_max = k if 0 < k < self.timesteps else self.timesteps
        self.n_hidden = n_hidden
        self.decoder = GaussianDiffusion(
            WaveNet(out_dims, n_layers, n_chans, n_hidden), out_dims=out_dims,
            timesteps=self.timesteps, k_step=self.k_step_max,
        )  # fmt: skip

    def condition(self, units, f0, volume, spk_id=None, aug_shift=None) -> torch.Tensor:
        """``units [B, T, C]``, ``f0 [B, T, 1]`` Hz, ``volume [B, T, 1]`` → ``[B, T, H]``."""
        x = self.unit_embed(units) + self.f0_embed((1 + f0 / 700).log()) + self.volume_embed(volume)
        if self.spk_embed is not None and spk_id is not None:
            if spk_id.is_floating_point():  # a per-frame mix [T, n_spk] / [B, T, n_spk]
                mix = spk_id if spk_id.dim() == 3 else spk_id.unsqueeze(0)
                if mix.shape[-1] != self.n_spk:
                    raise ValueError(
                        f"speaker mix has {mix.shape[-1]} speakers; the diffusion model has {self.n_spk}"
                    )
                x = x + torch.matmul(mix.to(x.dtype), self.spk_embed.weight)
            else:
                x = x + self.spk_embed(spk_id.long().reshape(x.shape[0], -1))
        if self.aug_shift_embed is not None and aug_shift is not None:
            x = x + self.aug_shift_embed(aug_shift / 5)
        return x

    def forward(
        self,
        units: torch.Tensor,
        f0: torch.Tensor,
        volume: torch.Tensor,
        spk_id: torch.Tensor | None = None,
        aug_shift: torch.Tensor | None = None,
        gt_spec: torch.Tensor | None = None,
        infer: bool = True,
        infer_speedup: int = 10,
        method: str | None = "dpm-solver",
        k_step: int = 300,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Training (``infer=False``): the diffusion loss against ``gt_spec [B, T, M]``.
        Inference: the mel ``[B, T, M]``; ``gt_spec`` given = shallow diffusion of ``k_step``."""
        if infer:
            if gt_spec is not None and k_step > self.k_step_max:
                raise UsageError(
                    f"k_step {k_step} is larger than this diffusion model's k_step_max "
                    f"{self.k_step_max}; use -ks {self.k_step_max} or less"
                )
            if gt_spec is None and self.k_step_max != self.timesteps:
                raise InputError(
                    f"this diffusion model was trained for shallow diffusion only (k_step_max "
                    f"{self.k_step_max}); it cannot convert alone (-od); use -shd"
                )
        cond = self.condition(units, f0, volume, spk_id, aug_shift)
        return self.decoder(cond, gt_spec=gt_spec, infer=infer, infer_speedup=infer_speedup,
                            method=method, k_step=k_step, generator=generator)  # fmt: skip


def build_unit2mel(args: Any, out_dims: int = 128) -> Unit2Mel:
    """``Unit2Mel`` from a diffusion config (``data.encoder_out_channels``, ``model.*``)."""
    m = args.model
    return Unit2Mel(
        args.data.encoder_out_channels, m.n_spk, m.use_pitch_aug, out_dims, m.n_layers, m.n_chans,
        m.n_hidden, m.timesteps, m.k_step_max,
    )  # fmt: skip


def load_config(path: str | os.PathLike, purpose: str = "infer"):
    """Read and validate a diffusion YAML (``common.config_check``) as
    :class:`common.hparams.HParams`; ``purpose`` is ``"train"`` or ``"infer"`` (one-line errors)."""
    from common.config_check import load_diffusion_config
    from common.hparams import HParams

    if not os.path.isfile(path):
        raise DiffusionFileError(f"{path}: diffusion config not found")
    return HParams(**load_diffusion_config(path, purpose))


def load_state(path: str | os.PathLike) -> dict:
    """The ``{global_step, model[, optimizer]}`` dict of a diffusion checkpoint (safe_load)."""
    from common.checkpoint import CheckpointError, safe_load

    if not os.path.isfile(path):
        raise DiffusionFileError(f"{path}: diffusion model not found")
    ckpt = safe_load(path, map_location="cpu")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: not a diffusion checkpoint (no 'model' entry)")
    return ckpt


def load_unit2mel(
    model_path: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
    out_dims: int | None = None,
):
    """``(Unit2Mel float32 in eval mode, config)`` without the vocoder; the config is
    ``config.yaml`` beside the model when ``config_path`` is None. ``out_dims`` (mel bins) is read
    from the checkpoint when None. Strict loading: a key or shape mismatch is an error naming keys.
    """
    from common.checkpoint import CheckpointError, strip_module_prefix

    if config_path is None:
        config_path = Path(model_path).parent / "config.yaml"
    args = load_config(config_path)
    state = strip_module_prefix(load_state(model_path)["model"])
    if out_dims is None:
        w = state.get("decoder.denoise_fn.input_projection.weight")
        out_dims = int(w.shape[1]) if w is not None and w.dim() == 3 else 128
    model = build_unit2mel(args, out_dims)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{model_path}: does not match {config_path}: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, shape differs {wrong[:5]}"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    model.eval().requires_grad_(False)
    return model, args


def load_model_vocoder(
    model_path: str | os.PathLike,
    device: Any = "cpu",
    config_path: str | os.PathLike | None = None,
    vocoder_ckpt: str | os.PathLike | None = None,
):
    """``(Unit2Mel in eval mode, Vocoder, config)``; the config is ``config.yaml`` beside the
    model when ``config_path`` is None. The vocoder path is ``vocoder.ckpt`` of the config unless
    ``vocoder_ckpt`` is given. Strict loading: a key or shape mismatch is an error naming keys."""
    from vdecoder.pretrained import Vocoder

    if config_path is None:
        config_path = Path(model_path).parent / "config.yaml"
    args = load_config(config_path)
    vocoder = Vocoder(args.vocoder.type, vocoder_ckpt or args.vocoder.ckpt, device=device)
    model, args = load_unit2mel(model_path, config_path, vocoder.dimension)
    model.to(device)
    logger.info("Loaded diffusion model %s (%s)", model_path, config_path)
    return model, vocoder, args
