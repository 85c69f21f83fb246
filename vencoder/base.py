"""What every speech encoder shares: device choice, input checks, checkpoint lookup, strict loading.

A speech encoder turns 16 kHz audio into content units (sovits-4.1.md §6)::

    enc = get_speech_encoder("vec768l12", device="cpu")
    units = enc.encoder(wav16k)          # wav16k: torch float [L] or [L, 2]  ->  [1, C, T16]

Checkpoint files are untrusted: ``.pt``/``.pth`` files are read only with
:func:`common.checkpoint.safe_load` (``weights_only=True`` with a short allow-list).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from common.errors import UserError


class EncoderError(RuntimeError):
    """A speech encoder could not be built from its files (wrong format, unsupported variant)."""


class MissingCheckpointError(UserError, FileNotFoundError):
    """The encoder's checkpoint file (or model folder) is not where it is expected (one line: the
    path, where to get it; each script adds what avoids it)."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → ``cuda`` when available, else ``cpu`` (the reference's default)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def require_file(path: str | os.PathLike, encoder_name: str, how_to_get: str) -> Path:
    """Return ``path`` if it exists, else raise one clear :class:`MissingCheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise MissingCheckpointError(
            f"{path}: speech encoder {encoder_name!r} needs this file, which does not exist. "
            f"Where to get it: {how_to_get}; put it at that path"
        )
    return path


def prepare_wav(wav, min_samples: int = 0, name: str = "speech encoder") -> torch.Tensor:
    """Check and flatten the input: float ``[L]``, or ``[L, 2]`` averaged over channels (§6)."""
    wav = torch.as_tensor(wav)
    if wav.dim() == 2:  # [L, channels]
        wav = wav.mean(-1)
    if wav.dim() != 1:
        raise ValueError(f"{name}: expected audio of shape [L] or [L, 2], got {tuple(wav.shape)}")
    if not wav.is_floating_point():
        raise ValueError(f"{name}: expected float audio in [-1, 1], got dtype {wav.dtype}")
    if wav.shape[0] < min_samples:
        raise ValueError(
            f"{name}: audio too short ({wav.shape[0]} samples at 16 kHz; needs at least "
            f"{min_samples}, i.e. {min_samples / 16:.0f} ms)"
        )
    return wav.float()


_MATMUL_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


class SpeechEncoder(ABC):
    """Base class: ``.name``, ``.dim`` (C), ``.device`` and ``.encoder(wav16k) -> [1, C, T16]``."""

    name: str = ""
    dim: int = 0
    #: ``"bf16"``: the torch network runs under CPU autocast (waveform checks, log-mel and the
    #: returned units stay fp32; :mod:`common.precision`). ONNX / CTranslate2 encoders ignore it.
    #: Set it with :meth:`set_precision`.
    precision: str = "fp32"

    def __init__(self, device: str | torch.device | None = None):
        self.device = resolve_device(device)
        #: keys the loader found missing / left over; both are empty for every encoder that loads.
        self.load_report = LoadReport()

    @abstractmethod
    def encoder(self, wav) -> torch.Tensor:
        """16 kHz float audio ``[L]`` or ``[L, 2]`` → units ``[1, C, T16]`` on ``self.device``."""

    def set_precision(self, precision: str) -> None:
        """``"fp32"`` or ``"bf16"``. On the CPU, bf16 also casts the weights of the network's
        linear and convolution layers to bf16 once, in place (no per-call weight casts under
        autocast); norms, embeddings and buffers stay fp32, so the residual stream that adds up
        the layers' outputs stays fp32 where the model keeps it so. After that, fp32 needs the
        encoder loaded again.
        """
        from common.precision import check, uses_bf16

        check(precision)
        model = getattr(self, "model", None)
        if isinstance(model, nn.Module):
            layers = [m for m in model.modules() if isinstance(m, _MATMUL_LAYERS)]
            cast = any(m.weight.dtype == torch.bfloat16 for m in layers)
            if precision == "fp32" and cast:
                raise ValueError(
                    f"{self.name}: weights already cast to bf16; load it again for fp32"
                )
            if uses_bf16(precision, self.device) and not cast:
                for m in layers:
                    m.to(torch.bfloat16)
                self._prepare_bf16(model)
                _own_memory(model)
        self.precision = precision

    def _prepare_bf16(self, model: nn.Module) -> None:
        """Layout changes that pay off once the weights are bf16 (subclasses); none by default."""
        return None

    def net_autocast(self) -> torch.autocast:
        """The region the network runs in (a no-op unless ``precision`` is bf16 on the CPU)."""
        from common.precision import autocast

        return autocast(self.precision, self.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={self.device})"


# ----------------------------------------------------------------------------- state-dict helpers


@dataclass
class LoadReport:
    """Which file keys were used, and which model keys were missing / file keys left over."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _own_memory(model: nn.Module) -> None:
    """Copy the tensors that still point into the memory-mapped checkpoint file (checkpoints
    are loaded with ``mmap``), so that the mapping, whose pages the bf16 cast has read in, is
    released: a ContentVec in bf16 holds 0.2 GB instead of 0.6 GB."""
    for m in model.modules():
        for p in m._parameters.values():
            if p is not None and p.dtype != torch.bfloat16:
                p.data = p.data.clone()
        for name, b in m._buffers.items():
            if b is not None:
                m._buffers[name] = b.clone()


def fold_weight_norm(state: dict[str, torch.Tensor], prefix: str, dim: int = 2) -> None:
    """Replace ``prefix.weight_g``/``prefix.weight_v`` by the effective ``prefix.weight``, in place.

    ``weight = g * v / ||v||`` with the norm over every dim except ``dim`` (old
    ``nn.utils.weight_norm``). The newer parametrization names (``parametrizations.weight.
    original0/1``) are folded the same way. Nothing happens when neither pair is present.
    """
    for g_key, v_key in (
        (f"{prefix}.weight_g", f"{prefix}.weight_v"),
        (
            f"{prefix}.parametrizations.weight.original0",
            f"{prefix}.parametrizations.weight.original1",
        ),
    ):
        if g_key in state and v_key in state:
            g = state.pop(g_key).float()
            v = state.pop(v_key).float()
            dims = [d for d in range(v.dim()) if d != dim]
            norm = v.pow(2).sum(dim=dims, keepdim=True).sqrt()
            state[f"{prefix}.weight"] = v * (g / norm)
            return


def rename_keys(
    state: dict[str, torch.Tensor], rules: Iterable[tuple[str, str]]
) -> dict[str, torch.Tensor]:
    """Apply regex ``(pattern, replacement)`` rules to each key (first matching rule wins)."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out = {}
    for key, value in state.items():
        for pattern, repl in compiled:
            if pattern.search(key):
                key = pattern.sub(repl, key)
                break
        out[key] = value
    return out


def load_strict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    ignore: Callable[[str], bool] = lambda k: False,
    allow_unexpected: bool = False,
) -> LoadReport:
    """Load ``state`` into ``model``; every model key must be there, every file key must be used.

    Keys for which ``ignore(key)`` is true (training-only tensors such as ``mask_emb``) are dropped
    first and listed in the report. Values are cast to the model's dtype (fp16 files up-cast) and
    assigned, so the model may be built on the ``meta`` device (no random init, no double memory).
    A missing key, a left-over key (unless ``allow_unexpected``) or a shape mismatch raises
    :class:`EncoderError` naming ``source``.
    """
    report = LoadReport()
    own = model.state_dict()
    used = {}
    for key, value in state.items():
        if ignore(key):
            report.ignored.append(key)
        elif key not in own:
            report.unexpected.append(key)
        else:
            used[key] = value
    report.missing = [k for k in own if k not in used]
    bad_shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in used.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    problems = []
    if report.missing:
        problems.append(f"missing keys {report.missing[:8]}" + (" ..." * (len(report.missing) > 8)))
    if report.unexpected and not allow_unexpected:
        problems.append(
            f"unexpected keys {report.unexpected[:8]}" + (" ..." * (len(report.unexpected) > 8))
        )
    if bad_shapes:
        problems.append(f"shape mismatches {bad_shapes[:4]}")
    if problems:
        raise EncoderError(f"{source}: does not fit the model ({'; '.join(problems)})")
    # assign=True: the file's tensors become the parameters (the model may be built on "meta").
    model.load_state_dict(
        {k: v.to(dtype=own[k].dtype).contiguous() for k, v in used.items()},
        strict=True,
        assign=True,
    )
    return report
