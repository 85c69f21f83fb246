"""The self-supervised speech encoders built on :class:`vencoder.wav2vec2.Wav2Vec2Model`.

| name | file reader | output (§6) |
|---|---|---|
| vec768l12 | fairseq (ContentVec) | layer 12 output |
| vec256l9 | fairseq (ContentVec) | layer 9 output → ``final_proj`` |
| cnhubertlarge | fairseq (Chinese HuBERT large) | last layer + final ``encoder.layer_norm`` (pre-LN) |
| wavlmbase+ | WavLM | last layer; waveform layer-normed only if ``cfg.normalize`` |
| dphubert | DPHuBERT | last layer; waveform layer-normed only if ``normalize_waveform`` |
| hubertsoft | bshall hubert-soft | zero-pad 40 samples each side, last layer → ``final_proj`` |

None of them normalises the waveform otherwise: Chinese HuBERT's ``task.normalize=True`` is
ignored, as in so-vits-svc.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F

from common.checkpoint import safe_load
from vencoder.base import EncoderError, SpeechEncoder, load_strict, prepare_wav
from vencoder.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model


class Wav2Vec2Encoder(SpeechEncoder):
    """A :class:`Wav2Vec2Model` read from a checkpoint, with a layer / projection choice."""

    def __init__(
        self,
        path: str | os.PathLike,
        reader: Callable[[object, str], tuple[Wav2Vec2Config, dict, set[str]]],
        name: str,
        device=None,
        output_layer: int | None = None,
        use_final_proj: bool = False,
        pad: int = 0,
        allow_unexpected: bool = False,
    ):
        super().__init__(device)
        self.name = name
        source = str(path)
        config, state, unused = reader(safe_load(path), source)
        with torch.device("meta"):
            model = Wav2Vec2Model(config)
        if use_final_proj and model.final_proj is None:
            raise EncoderError(f"{source}: {name} needs final_proj, which the file does not have")
        if output_layer is not None and output_layer > model.num_layers:
            raise EncoderError(
                f"{source}: {name} uses layer {output_layer} but the model has "
                f"{model.num_layers} layers"
            )
        self.load_report = load_strict(
            model, state, source, ignore=unused.__contains__, allow_unexpected=allow_unexpected
        )
        self.model = model.to(self.device).eval()
        self.config = config
        self.output_layer = output_layer
        self.use_final_proj = use_final_proj
        self.pad = pad
        # WavLM cfg.normalize / DPHuBERT normalize_waveform; fairseq files never set it (so-vits
        # ignores their task.normalize).
        self.normalize = config.normalize_waveform
        self.dim = config.final_proj_dim if use_final_proj else config.embed_dim
        self.min_samples = max(config.receptive_field() - 2 * pad, 1)

    def _prepare_bf16(self, model) -> None:
        # NHWC strided convolutions: 0.30 -> 0.11 s for the 512-ch stride-2 layer on 10 s in bf16
        # (2-core Xeon with AMX, loaded machine); NCHW bf16 gained little over fp32 there
        for block in model.feature_extractor.conv_layers:
            block.time_major = True

    @torch.no_grad()
    def encoder(self, wav) -> torch.Tensor:
        wav = prepare_wav(wav, self.min_samples, self.name).to(self.device)
        if self.pad:
            wav = F.pad(wav, (self.pad, self.pad))
        if self.normalize:
            wav = F.layer_norm(wav, wav.shape)
        with self.net_autocast():
            x = self.model(wav.unsqueeze(0), self.output_layer)
            if self.use_final_proj:
                x = self.model.final_proj(x)
        return x.float().transpose(1, 2)
