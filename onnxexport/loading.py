"""Read a so-vits-svc generator for export, refusing a checkpoint that does not fit its config.

:func:`load_synthesizer` is the one place the exporter (and the ONNX Runtime backend's on-the-fly
export) builds a model from files. Unlike training's forgiving loader, a tensor of another shape or
a missing one is an error: an exported file with silently re-initialised layers would only be
noticed by ear. The one allowed gap is the posterior encoder (``enc_q.*``), which
``compress_model.py`` drops and which is not part of the exported graph.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from common.errors import InputError


class ExportError(InputError):
    """A user-facing problem with the files to export (one line: file, problem, what to do);
    a :class:`common.errors.UserError` and a ``ValueError``."""


def _build(hps) -> torch.nn.Module:
    from models import SynthesizerTrn

    try:
        return SynthesizerTrn(
            hps.data.filter_length // 2 + 1,
            hps.train.segment_size // hps.data.hop_length,
            **hps.model.to_dict(),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ExportError(f"the config does not describe a so-vits-svc model ({e})") from None


def load_config_checked(config_path: str | os.PathLike):
    """The config as ``HParams``; :class:`ExportError` naming the file if it is not a so-vits one."""
    from common.hparams import load_config

    try:
        hps = load_config(config_path)
    except (OSError, ValueError) as e:
        raise ExportError(str(e)) from None
    for section in ("data", "model", "train"):
        if section not in hps:
            raise ExportError(
                f"{config_path}: not a so-vits-svc config (no '{section}' section); pass the "
                "config.json the model was trained with"
            )
    return hps


def load_synthesizer(model_path: str | os.PathLike, config_path: str | os.PathLike):
    """``(net_g float32 eval, hps)`` from a training, compressed (also ``-hf``) or merged
    checkpoint and its config. Raises :class:`ExportError` with one line on any mismatch."""
    from common.checkpoint import CheckpointError, safe_load, strip_module_prefix

    model_path, config_path = Path(model_path), Path(config_path)
    hps = load_config_checked(config_path)
    try:
        net = _build(hps)
    except ExportError as e:
        raise ExportError(f"{config_path}: {e}") from None
    try:
        ckpt = safe_load(model_path)
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ExportError(f"{model_path}: not a so-vits-svc checkpoint (no 'model' entry)")
    saved = strip_module_prefix(ckpt["model"])
    own = net.state_dict()
    missing = [k for k in own if k not in saved and not k.startswith("enc_q.")]
    wrong = [k for k in own if k in saved and tuple(saved[k].shape) != tuple(own[k].shape)]
    if wrong or missing:
        what = []
        if wrong:
            k = wrong[0]
            what.append(f"{len(wrong)} tensor(s) of another shape, e.g. {k} "
                        f"{list(saved[k].shape)} in the file but {list(own[k].shape)} for the config")  # fmt: skip
        if missing:
            what.append(f"{len(missing)} tensor(s) missing, e.g. {missing[0]}")
        raise ExportError(
            f"{model_path} does not fit {config_path}: {'; '.join(what)}. Use the config.json the "
            "model was trained with"
        )
    state = {k: saved[k].to(own[k].dtype) if k in saved else v for k, v in own.items()}
    net.load_state_dict(state)
    return net.float().eval().requires_grad_(False), hps
