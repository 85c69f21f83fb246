"""Does a diffusion model fit a so-vits-svc model? Checked from the two configs, before any work.

Shallow diffusion (``inference_main.py -shd``, the web UI, ``onnx_export.py --diffusion`` beside a
so-vits model) feeds the diffusion model the so-vits model's units and mel frames. Both must come
from the same speech encoder (name and unit width), the same sampling rate and hop, and a speaker
name must have the same id in both. Otherwise the conversion fails halfway (a matrix of the wrong
width) or, worse, sounds wrong without an error. :func:`check_diffusion_fits` raises
:class:`DiffusionMismatchError` (one line naming both files and what to do).
"""

from __future__ import annotations

import os
from typing import Any

from common.checkpoint import CheckpointMismatchError

__all__ = ["DiffusionMismatchError", "check_diffusion_fits", "check_diffusion_speaker"]

HINT = (
    "use the diffusion model trained for this voice (-dm/-dc), or train one with train_diff.py "
    "on this model's data set"
)


class DiffusionMismatchError(CheckpointMismatchError):
    """A diffusion model and a so-vits-svc model that do not belong together."""


def _get(section: Any, key: str, default: Any = None) -> Any:
    if section is None:
        return default
    value = section.get(key) if hasattr(section, "get") else getattr(section, key, None)
    return default if value is None else value


def check_diffusion_fits(
    diffusion_args: Any,
    sovits_hps: Any,
    diffusion_model_path: str | os.PathLike,
    diffusion_config_path: str | os.PathLike,
    config_path: str | os.PathLike,
    hint: str = HINT,
) -> None:
    """Compare a diffusion config (``diffusion_args``: ``data.encoder``, ``data.encoder_out_channels``,
    ``data.sampling_rate``, ``data.block_size``, ``spk``) with a so-vits config (``sovits_hps``:
    ``model.speech_encoder``, ``model.ssl_dim``, ``data.sampling_rate``, ``data.hop_length``,
    ``spk``); both are ``HParams`` or dicts. Raises :class:`DiffusionMismatchError`."""
    d_data, s_data = _get(diffusion_args, "data"), _get(sovits_hps, "data")
    s_model = _get(sovits_hps, "model")
    where = f"{diffusion_model_path} ({diffusion_config_path}) does not fit {config_path}"
    encoder = _get(d_data, "encoder")
    width = _get(d_data, "encoder_out_channels")
    s_encoder = _get(s_model, "speech_encoder", "vec768l12")
    s_width = _get(s_model, "ssl_dim", 256)
    if width is not None and int(width) != int(s_width):
        raise DiffusionMismatchError(
            f"{where}: the diffusion model takes {width}-channel units ({encoder}), the so-vits "
            f"model {s_width}-channel units ({s_encoder})",
            hint,
        )
    if encoder and encoder != s_encoder:
        raise DiffusionMismatchError(
            f"{where}: the diffusion model was trained on {encoder!r} units, the so-vits model on "
            f"{s_encoder!r}",
            hint,
        )
    pairs = (("sampling rate", "sampling_rate", "sampling_rate", " Hz"),
             ("hop", "block_size", "hop_length", " samples"))  # fmt: skip
    for what, d_key, s_key, unit in pairs:
        mine, theirs = _get(d_data, d_key), _get(s_data, s_key)
        if mine is not None and theirs is not None and int(mine) != int(theirs):
            raise DiffusionMismatchError(
                f"{where}: {what} {mine}{unit} (data.{d_key}) but the so-vits model's is "
                f"{theirs}{unit} (data.{s_key})",
                hint,
            )
    d_spk = dict(_get(diffusion_args, "spk", {}) or {})
    s_spk = dict(_get(sovits_hps, "spk", {}) or {})
    for name, sid in s_spk.items():
        if name in d_spk and int(d_spk[name]) != int(sid):
            raise DiffusionMismatchError(
                f"{where}: speaker {name!r} is id {d_spk[name]} in the diffusion config but "
                f"{sid} in the so-vits config, so the diffusion model would sing another speaker",
                hint,
            )


def check_diffusion_speaker(n_spk: int, sid: int, speaker: Any, diffusion_model_path: str) -> None:
    """A multi-speaker diffusion model (``n_spk > 1``) has no embedding for id ``sid >= n_spk``."""
    from common.errors import InputError

    if n_spk > 1 and not 0 <= sid < n_spk:
        raise InputError(
            f"{diffusion_model_path}: the diffusion model has {n_spk} speakers (ids 0..{n_spk - 1}); "
            f"speaker {speaker!r} is id {sid}",
            "choose another speaker with -s, or a diffusion model trained with this one (-dm/-dc)",
        )
