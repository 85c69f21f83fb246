"""The pretrained openvpi NSF-HiFiGAN (``pretrain/nsf_hifigan/``, sovits-4.1.md §8.3).

Files: ``config.json`` next to ``model``, a torch file ``{"generator": state_dict}`` with
weight-norm parameters (``weight_g``/``weight_v``). It is read with
:func:`common.checkpoint.safe_load` (no code from the file ever runs), loaded strictly (a missing
or unexpected key is an error naming the keys), weight norm is folded, and it runs in eval mode.

:class:`Vocoder` is the shallow-diffusion vocoder (``diffusion/vocoder.Vocoder``): mel extraction
with :class:`modules.mel_processing.NsfMel` and mel + f0 → audio. Types ``"nsf-hifigan"`` and
``"nsf-hifigan-log10"`` (mel × 0.434294 before the generator).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.checkpoint import CheckpointError, safe_load
from common.errors import InputError
from common.hparams import HParams
from vdecoder.nsf_hifigan import NsfHifiGanGenerator
from vdecoder.weight_norm import fold_weight_norm

logger = logging.getLogger(__name__)

DEFAULT_NSF_HIFIGAN = "pretrain/nsf_hifigan/model"
VOCODER_TYPES = ("nsf-hifigan", "nsf-hifigan-log10")
LOG10_SCALE = 0.434294


class VocoderMissing(InputError, FileNotFoundError):
    """The NSF-HiFiGAN files are not there (one line: the file and where it comes from; each
    script adds the flag that avoids it)."""


_HOWTO = (
    "download openvpi's nsf_hifigan_20221211.zip and unzip its files into pretrain/nsf_hifigan/ "
    "(config.json and model)"
)

__all__ = [
    "DEFAULT_NSF_HIFIGAN",
    "VOCODER_TYPES",
    "model_file",
    "load_nsf_config",
    "load_nsf_hifigan",
    "save_nsf_hifigan",
    "Vocoder",
    "VocoderMissing",
    "default_device",
]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def model_file(model_path: str | os.PathLike) -> Path:
    """``model_path`` itself, or ``model_path/model`` when a folder is given."""
    p = Path(model_path)
    return p / "model" if p.is_dir() else p


def load_nsf_config(model_path: str | os.PathLike) -> HParams:
    """The ``config.json`` beside the model file (attribute and item access)."""
    path = model_file(model_path).parent / "config.json"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise VocoderMissing(f"{path}: NSF-HiFiGAN config not found; {_HOWTO}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the NSF-HiFiGAN config must be a JSON object")
    missing = [k for k in ("num_mels", "sampling_rate", "hop_size", "upsample_rates",
                           "upsample_kernel_sizes", "upsample_initial_channel",
                           "resblock_kernel_sizes", "resblock_dilation_sizes") if k not in data]  # fmt: skip
    if missing:
        raise ValueError(f"{path}: NSF-HiFiGAN config lacks {', '.join(missing)}")
    return HParams(**data)


def load_nsf_hifigan(
    model_path: str | os.PathLike = DEFAULT_NSF_HIFIGAN, device: Any = "cpu"
) -> tuple[NsfHifiGanGenerator, HParams]:
    """Build the generator from ``config.json``, load ``model['generator']``, fold weight norm.

    Returns ``(generator, h)``, the generator in eval mode on ``device``. Raises
    :class:`FileNotFoundError` for missing files and :class:`CheckpointError` for a file that is
    not a plain-data torch file or whose keys/shapes do not match the config.
    """
    h = load_nsf_config(model_path)
    path = model_file(model_path)
    if not path.is_file():
        raise VocoderMissing(f"{path}: NSF-HiFiGAN model not found; {_HOWTO}")
    generator = NsfHifiGanGenerator.from_openvpi(h)
    ckpt = safe_load(path, map_location="cpu")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("generator"), dict):
        raise CheckpointError(f"{path}: not an NSF-HiFiGAN checkpoint (no 'generator' entry)")
    state = ckpt["generator"]
    if not any(k.endswith(".weight_g") for k in state):
        fold_weight_norm(generator)  # a file saved with weight norm already removed
    own = generator.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the generator does not match {path.parent / 'config.json'}: "
            f"missing keys {missing[:8]}{' …' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}"
        )
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
             for k, v in own.items() if tuple(state[k].shape) != tuple(v.shape)]  # fmt: skip
    if wrong:
        raise CheckpointError(f"{path}: shape mismatch: {'; '.join(wrong[:8])}")
    generator.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    generator.fold_weight_norm()
    generator.eval().requires_grad_(False)
    return generator.to(device), h


def save_nsf_hifigan(
    generator: NsfHifiGanGenerator, config: dict, folder: str | os.PathLike
) -> Path:
    """Write ``folder/config.json`` and ``folder/model`` (``{"generator": state_dict}``) in the
    openvpi layout. Returns the model path. (Used to make test fixtures.)"""
    from common.atomic import torch_save, write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
    path = folder / "model"
    torch_save({"generator": generator.state_dict()}, path)
    return path


def _resample_torch(audio: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """Resample ``[..., L]`` with :func:`common.audio.resample`; keeps device and dtype."""
    if int(sr_in) == int(sr_out):
        return audio
    from common.audio import resample

    x = audio.detach().to("cpu", torch.float32).numpy()
    shape = x.shape
    y = resample(x.reshape(-1, shape[-1]), int(sr_in), int(sr_out))
    y = np.ascontiguousarray(y).reshape(*shape[:-1], -1)
    return torch.from_numpy(y).to(device=audio.device, dtype=audio.dtype)


class Vocoder:
    """NSF-HiFiGAN mel vocoder (reference ``diffusion/vocoder.Vocoder``).

    - ``extract(audio [B, L], sample_rate, keyshift=0) -> mel [B, T, num_mels]`` (audio resampled
      to ``vocoder_sample_rate`` first when needed);
    - ``infer(mel [B, T, num_mels], f0 [B, T', 1]) -> audio [B, 1, T·hop]`` (``f0[:, :T, 0]``);
    - ``dimension`` (128), ``vocoder_sample_rate`` (44100), ``vocoder_hop_size`` (512).

    The config is read at construction; the generator is loaded on first use (:meth:`load`).
    """

    def __init__(
        self,
        vocoder_type: str = "nsf-hifigan",
        vocoder_ckpt: str | os.PathLike = DEFAULT_NSF_HIFIGAN,
        device: Any = None,
    ):
        if vocoder_type not in VOCODER_TYPES:
            raise ValueError(f"Unknown vocoder {vocoder_type!r}; expected one of {VOCODER_TYPES}")
        from modules.mel_processing import NsfMel

        self.vocoder_type = vocoder_type
        self.vocoder_ckpt = str(vocoder_ckpt)
        self.device = torch.device(device if device is not None else default_device())
        self.h = load_nsf_config(vocoder_ckpt)
        self.mel = NsfMel.from_config(self.h)
        self.vocoder_sample_rate = int(self.h.sampling_rate)
        self.vocoder_hop_size = int(self.h.hop_size)
        self.dimension = int(self.h.num_mels)
        self.mel_scale = LOG10_SCALE if vocoder_type == "nsf-hifigan-log10" else 1.0
        self.model: NsfHifiGanGenerator | None = None

    def load(self) -> NsfHifiGanGenerator:
        if self.model is None:
            logger.info("Loading NSF-HiFiGAN from %s", self.vocoder_ckpt)
            self.model, _ = load_nsf_hifigan(self.vocoder_ckpt, device=self.device)
        return self.model

    def to(self, device: Any) -> Vocoder:
        self.device = torch.device(device)
        if self.model is not None:
            self.model.to(self.device)
        return self

    def extract(self, audio: torch.Tensor, sample_rate: int, keyshift: float = 0) -> torch.Tensor:
        """Log-mel ``[B, T, num_mels]`` of ``audio`` ``[B, L]`` at ``sample_rate``."""
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        audio = _resample_torch(audio, sample_rate, self.vocoder_sample_rate)
        return self.mel.get_mel(audio, keyshift=keyshift).transpose(1, 2)

    @torch.no_grad()
    def infer(self, mel: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, T·hop]`` from ``mel [B, T, num_mels]`` and ``f0 [B, ≥T, 1]`` (Hz)."""
        model = self.load()
        if f0.dim() == 2:
            f0 = f0.unsqueeze(-1)
        t = mel.size(1)
        if f0.size(1) < t:
            raise ValueError(f"f0 has {f0.size(1)} frames, the mel {t}")
        dtype = next(model.parameters()).dtype
        f0 = f0[:, :t, 0].to(self.device, torch.float32)
        c = mel.transpose(1, 2).to(self.device, dtype)
        if self.mel_scale != 1.0:
            c = self.mel_scale * c
        return model(c, f0)

    __call__ = infer
