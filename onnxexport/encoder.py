"""``onnx_export.py --encoder``: the configured speech encoder as the ONNX file MoeVoiceStudio loads.

so-vits-svc 4.1 could not export its encoders (fairseq); users had to download the MoeSS-SUBModel
files. Here the encoder is read from the user's own checkpoint by our plain-torch code
(:mod:`vencoder`) and exported with MoeVoiceStudio's conventions
(``formats/moess-onnx-encoders.json``): one input ``source`` float32 ``[1, 1, L]`` (16 kHz mono,
``L`` dynamic), one output ``embed`` float32 ``[1, T, C]`` (``T`` dynamic, 20 ms frames), opset 16.
The graph does exactly what :meth:`vencoder.ssl.Wav2Vec2Encoder.encoder` does (hubert-soft's
40-sample padding and a waveform normalisation, where the encoder has them, are inside the graph).

========================  ===========================  ======
encoder (config)          file                         C
========================  ===========================  ======
vec768l12                 ``vec-768-layer-12.onnx``    768
vec256l9                  ``vec-256-layer-9.onnx``     256
hubertsoft                ``hubert-soft.onnx``         256
cnhubertlarge, dphubert   ``<name>.onnx``              1024 / 768
========================  ===========================  ======

Not exported: the Whisper encoders (their log-mel front end is not part of this graph), WavLM
(its relative-position buckets are computed from the length in Python, so a traced graph would
only work at one length) and the ``*-onnx`` encoders (they already are ONNX files).
"""

from __future__ import annotations

import io
import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from onnxexport.loading import ExportError
from onnxexport.moevs import hubert_name

EXPORTABLE = ("vec768l12", "vec256l9", "hubertsoft", "cnhubertlarge", "dphubert")
OPSET = 16


class EncoderOnnx(nn.Module):
    """``source [1, 1, L]`` → ``embed [1, T, C]`` around a loaded ``Wav2Vec2Encoder``."""

    def __init__(self, enc):
        super().__init__()
        self.model = enc.model.float().eval().requires_grad_(False)
        self.output_layer = enc.output_layer
        self.use_final_proj = enc.use_final_proj
        self.pad = int(enc.pad)
        self.normalize = bool(enc.normalize)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        wav = source.reshape(1, -1)
        if self.pad:
            wav = torch.nn.functional.pad(wav, (self.pad, self.pad))
        if self.normalize:  # F.layer_norm over the whole waveform, written length-agnostic
            mean = wav.mean(-1, keepdim=True)
            var = ((wav - mean) ** 2).mean(-1, keepdim=True)
            wav = (wav - mean) / torch.sqrt(var + 1e-5)
        x = self.model(wav, self.output_layer)
        if self.use_final_proj:
            x = self.model.final_proj(x)
        return x


def encoder_file_name(speech_encoder: str) -> str:
    return f"{hubert_name(speech_encoder, 0)}.onnx"


def export_encoder(
    speech_encoder: str,
    out_dir: str | os.PathLike,
    encoder_path: str | os.PathLike | None = None,
    pretrain_dir: str | os.PathLike = "pretrain",
) -> tuple[Path, float]:
    """Export ``speech_encoder`` read from ``encoder_path`` (default: its file under
    ``pretrain_dir``) to ``out_dir/<MoeVoiceStudio name>.onnx``; returns ``(path, seconds)``."""
    import onnx

    from common.atomic import atomic_open
    from common.checkpoint import CheckpointError
    from vencoder import EncoderError, get_speech_encoder

    if speech_encoder not in EXPORTABLE:
        raise ExportError(
            f"--encoder: speech encoder {speech_encoder!r} cannot be exported to ONNX here (exportable: "
            f"{', '.join(EXPORTABLE)}); see onnxexport/encoder.py"
        )
    t0 = time.perf_counter()
    try:
        enc = get_speech_encoder(speech_encoder, "cpu", pretrain_dir, path=encoder_path)
    except (OSError, EncoderError, CheckpointError) as e:
        raise ExportError(str(e)) from None
    module = EncoderOnnx(enc)
    buf = io.BytesIO()
    example = torch.zeros(1, 1, 16000)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), buf, input_names=["source"], output_names=["embed"],
            dynamic_axes={"source": [2], "embed": [1]}, opset_version=OPSET,
            do_constant_folding=True, dynamo=False,
        )  # fmt: skip
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    out = Path(out_dir) / encoder_file_name(speech_encoder)
    with atomic_open(out, "wb") as f:
        f.write(model.SerializeToString())
    return out, time.perf_counter() - t0
