"""A fingerprint of a so-vits-svc generator's weights, to tell which model a derived file belongs to.

Files made from a voice model record it: an exported ``*_SoVits.onnx`` (``sovits.checkpoint_sha256``
in its metadata, :mod:`onnxexport.fit`) and a visemes checkpoint (``visemes.voice_sha256``,
:mod:`motion.predict`). Where such a file is used with a checkpoint, the two are compared.
"""

from __future__ import annotations

import os

import torch

WEIGHTS_HASH_TAG = b"sovits-weights-v1"


def state_sha256(state: dict) -> str:
    """SHA-256 (hex) of a generator's weights: every tensor but the posterior encoder's
    (``enc_q.*``, which compress_model.py drops and conversion does not use), by sorted key, as
    float32 (integers as they are), with its key and shape. The same weights give the same hash
    whether they come from a training checkpoint, a copy or a compressed (fp32) file."""
    import hashlib

    h = hashlib.sha256(WEIGHTS_HASH_TAG)
    for k in sorted(state):
        v = state[k]
        if k.startswith("enc_q.") or not isinstance(v, torch.Tensor):
            continue
        t = v.detach().cpu()
        t = (t.float() if t.is_floating_point() else t).contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.numpy().tobytes() if t.dim() == 0 else t.numpy())
    return h.hexdigest()


def checkpoint_sha256(model_path: str | os.PathLike) -> str:
    """:func:`state_sha256` of a so-vits-svc checkpoint file (read with ``safe_load``)."""
    from common.checkpoint import CheckpointError, safe_load, strip_module_prefix

    ckpt = safe_load(model_path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{model_path}: not a so-vits-svc checkpoint (no 'model' entry)")
    return state_sha256(strip_module_prefix(ckpt["model"]))
