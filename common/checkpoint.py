"""Checkpoint I/O that never runs code from a file.

Every ``.pt``/``.pth`` a user hands us is untrusted. Files are read with
``torch.load(weights_only=True)`` and a short allow-list of plain types that real files carry:

- numpy arrays and dtypes (``kmeans_10000.pt`` stores ``cluster_centers_`` as ``np.ndarray``);
- fairseq's ``Dictionary`` (inside ContentVec/HuBERT ``task_state``), mapped to an inert stand-in
  that keeps nothing.

Anything else a pickle asks for is refused with :class:`CheckpointError` before it can run.

The so-vits-svc checkpoint dict is ``{"model", "iteration", "optimizer", "learning_rate"}``
(sovits-4.1.md §11); :func:`save_checkpoint` writes it atomically and :func:`load_checkpoint`
has the reference's forgiving semantics (missing or shape-mismatched keys keep their fresh value,
one warning line each), which is what fine-tuning from a pretrained ``G_0``/``D_0`` relies on.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.atomic import torch_save

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read safely (missing, corrupt, or asks to run code)."""


class FairseqDictionaryStandIn:
    """Inert stand-in for ``fairseq.data.dictionary.Dictionary``: it discards its state."""

    def __setstate__(self, state: Any) -> None:  # noqa: D401 - pickle protocol
        pass


def _numpy_globals() -> list:
    """The numpy globals a pickled ``np.ndarray`` refers to (numpy 1.x and 2.x names)."""
    out: list = [np.ndarray, np.dtype]
    out += [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")]
    out += [np.float32, np.float64, np.int64, np.int32]
    from numpy._core import multiarray

    out.append(multiarray._reconstruct)
    out.append((multiarray._reconstruct, "numpy.core.multiarray._reconstruct"))
    out.append((multiarray.scalar, "numpy.core.multiarray.scalar"))
    out.append(multiarray.scalar)
    return out


SAFE_GLOBALS: list = [
    (FairseqDictionaryStandIn, "fairseq.data.dictionary.Dictionary"),
    *_numpy_globals(),
]


def safe_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` and the allow-list above.

    Raises :class:`CheckpointError` naming the file when it is missing, not a torch file, or
    asks for a global outside the allow-list (which is never imported or called).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            try:  # memory-map zip checkpoints: unused parts (optimizer state) are never read
                return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e) and "zipfile" not in str(e):
                    raise
                return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (bad zip), EOFError, ...
        text = str(e)
        msg = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        if "Weights only load failed" in text:
            m = re.search(
                r"(unsupported GLOBAL [\w.]+|Unsupported global: GLOBAL [\w.]+"
                r"|Trying to call reduce for [^\n]+|Can only [^\n]+)",
                text,
            )
            if m:
                raise CheckpointError(
                    f"{path}: refused to load: the file asks to run code or build an object "
                    f"that is not plain data ({m.group(1)}); nothing from it was run"
                ) from None
            m = re.search(r"WeightsUnpickler error: \s*([^\n]+)", text)
            msg = m.group(1) if m else "unreadable pickle data"
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({msg})") from None


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a leading ``module.`` (DDP / DataParallel) from every key."""
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    learning_rate: float,
    iteration: int,
    path: str | os.PathLike,
) -> None:
    """Write ``{"model", "iteration", "optimizer", "learning_rate"}`` atomically (reference layout)."""
    torch_save(
        {
            "model": _unwrap(model).state_dict(),
            "iteration": int(iteration),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "learning_rate": float(learning_rate),
        },
        path,
    )


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    skip_optimizer: bool = False,
) -> tuple[torch.nn.Module, torch.optim.Optimizer | None, float, int]:
    """Load a so-vits-svc checkpoint into ``model`` (and ``optimizer``).

    Returns ``(model, optimizer, learning_rate, iteration)`` like the reference. For every key
    of the model's own state dict: a missing key, or one whose shape differs (e.g. ``emb_g`` with
    another ``n_speakers``), keeps the model's fresh value and logs one warning line. Extra keys in
    the file are ignored. Values are cast to the model's dtype (the reference instead cast the model
    to the file's dtype, which made half checkpoints unusable on CPU).
    """
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a so-vits-svc checkpoint (no 'model' entry)")
    saved = strip_module_prefix(ckpt["model"])
    net = _unwrap(model)
    own = net.state_dict()
    new_state = {}
    for key, fresh in own.items():
        value = saved.get(key)
        if value is None:
            logger.warning("%s: %s is not in the checkpoint; keeping its initial value", path, key)
            new_state[key] = fresh
        elif value.shape != fresh.shape:
            logger.warning(
                "%s: %s has shape %s in the checkpoint but %s in the model; keeping its initial value",
                path,
                key,
                tuple(value.shape),
                tuple(fresh.shape),
            )
            new_state[key] = fresh
        else:
            new_state[key] = value.to(dtype=fresh.dtype)
    net.load_state_dict(new_state)
    if optimizer is not None and not skip_optimizer and ckpt.get("optimizer") is not None:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as e:
            logger.warning("%s: optimizer state does not fit (%s); starting it fresh", path, e)
    iteration = int(ckpt.get("iteration", 0) or 0)
    learning_rate = float(ckpt.get("learning_rate", 0.0) or 0.0)
    logger.info("Loaded checkpoint %s (iteration %d)", path, iteration)
    return model, optimizer, learning_rate, iteration


def _step_of(path: str) -> int:
    m = re.search(r"_(\d+)\.pth$", os.path.basename(path))
    return int(m.group(1)) if m else -1


def latest_checkpoint_path(dir_path: str | os.PathLike, pattern: str = "G_*.pth") -> str | None:
    """The checkpoint with the largest step number in its file name, or None when there is none.

    The reference concatenated every digit of the whole path, which broke on folders with digits.
    """
    files = [f for f in glob.glob(os.path.join(dir_path, pattern)) if _step_of(f) >= 0]
    return max(files, key=_step_of) if files else None


def clean_checkpoints(dir_path: str | os.PathLike, n_ckpts_to_keep: int = 3) -> None:
    """Keep the newest ``n`` of each of ``G_*.pth`` and ``D_*.pth`` (by step); ``*_0.pth`` stay.

    ``n == 0`` keeps everything (reference ``keep_ckpts``).
    """
    if n_ckpts_to_keep <= 0:
        return
    for prefix in ("G", "D"):
        files = sorted(glob.glob(os.path.join(dir_path, f"{prefix}_*.pth")), key=_step_of)
        files = [f for f in files if _step_of(f) > 0]
        for f in files[:-n_ckpts_to_keep]:
            os.remove(f)
