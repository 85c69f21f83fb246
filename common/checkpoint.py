"""Checkpoint I/O that never runs code from a file.

Every ``.pt``/``.pth`` a user hands us is untrusted. Files are read with
``torch.load(weights_only=True)`` and a short allow-list of plain types that real files carry:

- numpy arrays and dtypes (``kmeans_10000.pt`` stores ``cluster_centers_`` as ``np.ndarray``);
- fairseq's ``Dictionary`` (inside ContentVec/HuBERT ``task_state``), mapped to an inert stand-in
  that keeps nothing.

Anything else a pickle asks for is refused with :class:`CheckpointError` before it can run.

The so-vits-svc checkpoint dict is ``{"model", "iteration", "optimizer", "learning_rate"}``
(sovits-4.1.md §11); :func:`save_checkpoint` writes it atomically. :func:`load_checkpoint` keeps
the reference's forgiving semantics only where they are meant: ``emb_g`` of another shape
(fine-tuning a pretrained ``G_0`` with another speaker count) and the ``enc_q`` keys a release
file lacks keep their fresh values with a warning. A checkpoint that does not fit the config
(another config, a D given as G) is an error (:func:`check_checkpoint_fit`, the one fit check
every loader uses; the reference silently re-initialised the keys, §18.4).
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.atomic import torch_save
from common.errors import UserError

logger = logging.getLogger(__name__)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file could not be read safely (missing, corrupt, or asks to run code)."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the model its config builds (another config, or a D as G)."""


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
        what = (
            "is a folder, not a checkpoint file" if path.is_dir() else "checkpoint file not found"
        )
        raise CheckpointError(f"{path}: {what}", "check the path")
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
        msg = msg.split(". ")[0].rstrip(".")  # torch adds paragraphs of advice
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({msg})",
            "the file is damaged or not a checkpoint; copy or download it again",
        ) from None


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


HANDFUL = 4  # missing / unexpected keys tolerated before a checkpoint counts as foreign
SPEAKER_KEYS = ("emb_g.weight",)  # may differ in shape: fine-tuning with another speaker count
OPTIONAL_PREFIXES = ("enc_q.",)  # release files (compress_model.py) drop the posterior encoder
ALLOW_PARTIAL_HINT = (
    "use the config.json saved with this model (logs/<model>/config.json), or the matching "
    "checkpoint; experts: --allow_partial loads it anyway"
)


@dataclasses.dataclass
class CheckpointFit:
    """How a checkpoint's ``model`` dict fits the model a config builds (key lists)."""

    missing: list[str]  # in the model, not in the file (optional prefixes excluded)
    unexpected: list[str]  # in the file, not in the model
    reshaped: list[tuple[str, tuple, tuple]]  # (key, file shape, model shape), speaker keys excl.
    speaker: list[tuple[str, tuple, tuple]]  # speaker keys of another shape (n_speakers differs)
    optional_missing: list[str]  # e.g. enc_q.* of a release file
    n_model_keys: int

    @property
    def n_problems(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.reshaped)

    def first_mismatches(self, n: int = 3) -> str:
        items = [f"{k} {tuple(a)} in the file vs {tuple(b)}" for k, a, b in self.reshaped]
        items += [f"{k} missing" for k in self.missing]
        items += [f"{k} unexpected" for k in self.unexpected]
        more = len(items) - n
        return "; ".join(items[:n]) + (f"; and {more} more" if more > 0 else "")


def _shape(v: Any) -> tuple | None:
    return tuple(v.shape) if isinstance(v, torch.Tensor) else None


def check_checkpoint_fit(
    path: str | os.PathLike,
    saved: dict[str, Any],
    expected: dict[str, Any],
    against: str,
    *,
    allow_partial: bool = False,
    optional_prefixes: tuple[str, ...] = OPTIONAL_PREFIXES,
    max_mismatches: int = HANDFUL,
) -> CheckpointFit:
    """Compare a checkpoint's ``model`` dict with the state dict (or key → tensor) it must fill.

    Raises :class:`CheckpointMismatchError` (one line naming ``path``, ``against`` — e.g. "the
    model built from configs/config.json" — and the first mismatches) when the file is a
    discriminator where a generator is expected (or the reverse), when any key other than the
    speaker embedding has another shape, or when more than ``max_mismatches`` keys are missing or
    unexpected. ``allow_partial`` turns those errors into the returned report (the caller warns).
    A different ``emb_g`` shape (another n_speakers) is never an error.
    """
    if not all(isinstance(v, torch.Tensor) for v in saved.values()):
        bad = next(k for k, v in saved.items() if not isinstance(v, torch.Tensor))
        raise CheckpointError(
            f"{path}: not a so-vits-svc checkpoint ('model' entry {bad!r} is not a tensor)",
            "give a G_*.pth written by train.py or compress_model.py",
        )
    saved_is_d = any(k.startswith("discs.") for k in saved)
    model_is_d = any(k.startswith("discs.") for k in expected)
    if saved_is_d != model_is_d and not allow_partial:
        if saved_is_d:
            raise CheckpointMismatchError(
                f"{path}: this is a discriminator checkpoint (D_*.pth) but a generator is "
                f"needed for {against}",
                "give the generator G_*.pth of the same step",
            )
        raise CheckpointMismatchError(
            f"{path}: this is a generator checkpoint (G_*.pth) but a discriminator is needed "
            f"for {against}",
            "give the discriminator D_*.pth of the same step",
        )
    fit = CheckpointFit([], [], [], [], [], len(expected))
    for key, fresh in expected.items():
        value = saved.get(key)
        if value is None:
            opt = key.startswith(optional_prefixes)
            (fit.optional_missing if opt else fit.missing).append(key)
        elif _shape(value) != _shape(fresh):
            row = (key, _shape(value), _shape(fresh))
            (fit.speaker if key in SPEAKER_KEYS else fit.reshaped).append(row)
    fit.unexpected = [k for k in saved if k not in expected]
    foreign = fit.reshaped or len(fit.missing) + len(fit.unexpected) > max_mismatches
    if foreign and not allow_partial:
        raise CheckpointMismatchError(
            f"{path}: does not fit {against}: {len(fit.missing)} of {fit.n_model_keys} keys "
            f"missing, {len(fit.reshaped)} of another shape, {len(fit.unexpected)} unexpected "
            f"(first: {fit.first_mismatches()})",
            ALLOW_PARTIAL_HINT,
        )
    return fit


def checkpoint_step(ckpt: dict, path: str | os.PathLike | None = None) -> int | None:
    """The training step a checkpoint was taken at: ``train_state.global_step`` (train.py), the
    ``step`` of a release file (compress_model.py), else the ``<step>`` of a ``G_<step>.pth`` file
    name; None when none of them is there (a 4.1 release or pretrained file)."""
    ts = ckpt.get("train_state")
    for value in (ts.get("global_step") if isinstance(ts, dict) else None, ckpt.get("step")):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return int(value)
    m = re.fullmatch(r"G_(\d+)\.pth", os.path.basename(str(path or "")))
    return int(m.group(1)) if m else None


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    skip_optimizer: bool = False,
    *,
    config: str | os.PathLike | None = None,
    allow_partial: bool = False,
    optional_prefixes: tuple[str, ...] = OPTIONAL_PREFIXES,
) -> tuple[torch.nn.Module, torch.optim.Optimizer | None, float, int]:
    """Load a so-vits-svc checkpoint into ``model`` (and ``optimizer``).

    Returns ``(model, optimizer, learning_rate, iteration)`` like the reference. The file must fit
    the model (:func:`check_checkpoint_fit`; ``config`` names the config in the message): a
    checkpoint of another config, or a D given as G, raises :class:`CheckpointMismatchError`
    before anything is changed, unless ``allow_partial``. What may differ keeps the model's fresh
    value with a warning: ``emb_g`` of another shape (fine-tuning with another ``n_speakers``),
    the ``enc_q.*`` keys a release file lacks (one line), and up to a handful of other missing
    keys (one line each). Extra keys in the file are ignored. Values are cast to the model's dtype
    (the reference instead cast the model to the file's dtype, which made half checkpoints
    unusable on CPU).
    """
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(
            f"{path}: not a so-vits-svc checkpoint (no 'model' entry)",
            "give a G_*.pth written by train.py or compress_model.py",
        )
    saved = strip_module_prefix(ckpt["model"])
    net = _unwrap(model)
    own = net.state_dict()
    against = f"the model built from {config}" if config else f"the {type(net).__name__} model"
    fit = check_checkpoint_fit(path, saved, own, against, allow_partial=allow_partial,
                               optional_prefixes=optional_prefixes)  # fmt: skip
    if fit.optional_missing:
        prefixes = sorted({k.split(".")[0] for k in fit.optional_missing})
        logger.info("%s: %d %s keys not in the file (a release checkpoint); they keep their "
                    "initial values (not used for conversion)", path, len(fit.optional_missing),
                    "/".join(prefixes))  # fmt: skip
    for key in fit.missing:
        logger.warning("%s: %s is not in the checkpoint; keeping its initial value", path, key)
    for key, file_shape, model_shape in fit.speaker + fit.reshaped:
        logger.warning(
            "%s: %s has shape %s in the checkpoint but %s in the model; keeping its initial value%s",
            path, key, file_shape, model_shape,
            " (another n_speakers: fine-tuning re-initialises the speaker embedding)"
            if key in SPEAKER_KEYS else "",
        )  # fmt: skip
    if fit.unexpected and allow_partial:
        logger.warning("%s: %d keys of the file are not in the model and were ignored (first: %s)",
                       path, len(fit.unexpected), ", ".join(fit.unexpected[:3]))  # fmt: skip
    bad = {k for k, _, _ in fit.speaker + fit.reshaped}
    new_state = {}
    for key, fresh in own.items():
        value = saved.get(key)
        if value is None or key in bad:
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
    step = checkpoint_step(ckpt, path)
    if step is not None:
        epoch = f", epoch {iteration}" if iteration > 0 else ""  # a release keeps 0 from 4.1's tool
        logger.info("Loaded checkpoint %s (step %d%s)", path, step, epoch)
    else:
        logger.info("Loaded checkpoint %s (epoch %d; no training step recorded in the file)",
                    path, iteration)  # fmt: skip
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
