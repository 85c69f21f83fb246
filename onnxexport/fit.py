"""Does an exported ``*_SoVits.onnx`` belong to the checkpoint and config it is run with?

``onnx_export.py`` records in the file's ``metadata_props`` the SHA-256 of the checkpoint's weights
(``sovits.checkpoint_sha256``, :func:`onnxexport.loading.state_sha256`), the checkpoint's file name,
and what the config said (hop, sampling rate, speech encoder, speakers). Where the ONNX Runtime
backend loads a file for a checkpoint (``inference_main.py --backend onnx --onnx_model``),
:func:`check_onnx_fits` compares them before any audio is read:

- another checkpoint's weights → :class:`OnnxMismatchError` naming both files (re-export);
- another config (units width, hop, sampling rate, speech encoder, speakers) → the same error;
- a file without the hash (exported before it was recorded, or by another exporter) still loads,
  with one warning that it cannot be checked.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from common.checkpoint import CheckpointMismatchError
from common.errors import InputError

logger = logging.getLogger(__name__)

HASH_KEY = "sovits.checkpoint_sha256"


class OnnxFileError(InputError):
    """An ONNX file that cannot be read (missing, truncated, not ONNX, not a synthesizer)."""


class OnnxMismatchError(CheckpointMismatchError):
    """An ONNX file exported from another checkpoint or config than the one it is used with."""


def _hint(onnx_path: str) -> str:
    return (
        f"re-export it from this checkpoint and config (onnx_export.py), or leave out "
        f"--onnx_model to export it automatically; {onnx_path} is not changed"
    )


def check_onnx_fits(
    meta: dict[str, str],
    units_dim: int,
    onnx_path: str | os.PathLike,
    model_path: str | os.PathLike,
    config_path: str | os.PathLike,
    hps: Any,
) -> None:
    """Compare an ONNX file's metadata (``meta``: ``custom_metadata_map``) and units width with the
    checkpoint ``model_path`` and its config ``hps`` (``HParams`` of ``config_path``).
    Raises :class:`OnnxMismatchError`; logs a warning for a file without the weights hash."""
    from common.fingerprint import checkpoint_sha256

    onnx_path, model_path, config_path = str(onnx_path), str(model_path), str(config_path)
    ssl_dim = int(hps.model.get("ssl_dim") or 256)
    if units_dim != ssl_dim:
        raise OnnxMismatchError(
            f"{onnx_path}: does not fit {config_path}: the graph takes {units_dim}-channel units, "
            f"the config's model.ssl_dim is {ssl_dim}",
            _hint(onnx_path),
        )
    pairs = [
        ("sovits.hop", "data.hop_length", hps.data.get("hop_length")),
        ("sovits.sampling_rate", "data.sampling_rate", hps.data.get("sampling_rate")),
        ("sovits.speech_encoder", "model.speech_encoder", hps.model.get("speech_encoder")),
    ]
    for key, cfg_key, value in pairs:
        mine = meta.get(key)
        if mine and value is not None and str(mine) != str(value):
            raise OnnxMismatchError(
                f"{onnx_path}: does not fit {config_path}: exported with {cfg_key} {mine}, "
                f"the config has {value}",
                _hint(onnx_path),
            )
    if "sovits.speakers" in meta and "sovits.speaker_rows" in meta:
        try:
            names = json.loads(meta["sovits.speakers"])
            exported = dict(zip(names, json.loads(meta["sovits.speaker_rows"]))) if names else {}
        except (ValueError, TypeError):
            exported = None
        spk = {str(k): int(v) for k, v in (hps.get("spk") or {}).items()}
        if exported is not None and exported and spk and exported != spk:
            raise OnnxMismatchError(
                f"{onnx_path}: does not fit {config_path}: exported for the speakers {exported}, "
                f"the config has {spk}",
                _hint(onnx_path),
            )
    recorded = meta.get(HASH_KEY)
    if not recorded:
        logger.warning(
            "%s: no checkpoint hash in the file (exported before it was recorded, or by another "
            "program): cannot check that it belongs to %s; re-export it with onnx_export.py to "
            "have it checked",
            onnx_path,
            model_path,
        )
        return
    actual = checkpoint_sha256(model_path)
    if actual != recorded:
        source = meta.get("sovits.checkpoint") or "another checkpoint"
        raise OnnxMismatchError(
            f"{onnx_path}: exported from another checkpoint ({source}, weights sha256 "
            f"{recorded[:12]}...) than {model_path} (weights sha256 {actual[:12]}...)",
            _hint(onnx_path),
        )
