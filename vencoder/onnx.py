"""MoeSS ONNX speech encoders (vec256l9-onnx, vec256l12-onnx, vec768l9-onnx, vec768l12-onnx,
hubertsoft-onnx), run with onnxruntime as so-vits-svc 4.1 does.

The graph takes the 16 kHz waveform as float32 ``[1, 1, L]`` under its first input name
(``source`` in the MoeSS files) and returns ``[1, T, C]`` as its first output (``embed``), which is
transposed to ``[1, C, T]``. Nothing is padded here: hubert-soft's ±40-sample pad, if any, is
inside the graph. ONNX files are protobuf, not pickle: loading one runs no Python code.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from vencoder.base import EncoderError, SpeechEncoder, prepare_wav

logger = logging.getLogger(__name__)


class OnnxEncoder(SpeechEncoder):
    def __init__(self, path: str | os.PathLike, dim: int, device=None, name: str = "onnx"):
        super().__init__(device)
        import onnxruntime

        self.name = name
        self.dim = dim
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            else:
                logger.warning(
                    "%s: this onnxruntime has no CUDA provider; running on the CPU", name
                )
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=providers
            )
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EncoderError(f"{path}: not a usable ONNX model ({first})") from None
        inputs = self.session.get_inputs()
        if not inputs:
            raise EncoderError(f"{path}: the ONNX graph has no inputs")
        self.input_name = inputs[0].name

    @torch.no_grad()
    def encoder(self, wav) -> torch.Tensor:
        wav = prepare_wav(wav, name=self.name)
        feed = {self.input_name: wav.cpu().numpy().astype(np.float32).reshape(1, 1, -1)}
        out = self.session.run(None, feed)[0]
        if out.ndim != 3 or out.shape[0] != 1 or out.shape[2] != self.dim:
            raise EncoderError(
                f"{self.name}: the ONNX model returned shape {tuple(out.shape)}, expected "
                f"[1, T, {self.dim}]"
            )
        return torch.from_numpy(np.ascontiguousarray(out)).transpose(1, 2).to(self.device)
