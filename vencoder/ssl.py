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
from vencoder.wav2vec2 import EPS, Wav2Vec2Config, Wav2Vec2Model


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
    def whole_file_stats(self, wav, block_s: float = 10.0) -> dict:
        """What one pass of :meth:`encoder` over ``wav [L16]`` normalises with, for encoding the
        file window by window (:func:`preprocess.long_inputs.encode_chunked`): ``"wave"``: the
        waveform's ``(mean, var)`` when the model layer-norms it; ``"conv0"``: the first
        convolution's ``(mean [C], var [C])`` over time when its GroupNorm normalises each
        channel ("group_norm" extractor mode). The convolution is local, so it runs over blocks
        of ``block_s`` seconds and their moments are pooled in float64 (Chan et al.): the whole
        file's statistics in one block's memory."""
        wav = prepare_wav(wav, self.min_samples, self.name).to(self.device)
        if self.pad:
            wav = F.pad(wav, (self.pad, self.pad))
        stats = {"wave": None, "conv0": None}
        if self.normalize:
            var, mean = torch.var_mean(wav.double(), dim=0, unbiased=False)
            stats["wave"] = (mean, var)
            wav = ((wav - mean) / torch.sqrt(var + EPS)).float()
        block = self.model.feature_extractor.conv_layers[0]
        if block.norm_kind != "group_norm":
            return stats
        _, k, hop = self.config.conv_layers[0]
        n_frames = (len(wav) - k) // hop + 1
        step = max(1, int(block_s * 16000) // hop)
        n, mean, m2 = 0, 0.0, 0.0
        with self.net_autocast():
            for a in range(0, n_frames, step):
                nb = min(step, n_frames - a)
                y = block.conv_out(wav[a * hop : (a + nb - 1) * hop + k][None, None])[0]
                var_b, mean_b = torch.var_mean(y.float(), dim=1, unbiased=False)  # [C] each
                mean_b, m2_b = mean_b.double(), var_b.double() * nb
                delta, total = mean_b - mean, n + nb
                mean = mean + delta * (nb / total)
                m2 = m2 + m2_b + delta**2 * (n * nb / total)
                n = total
        stats["conv0"] = (mean, m2 / n)
        return stats

    @torch.no_grad()
    def encoder(self, wav, stats: dict | None = None) -> torch.Tensor:
        """``wav [L16]`` → ``[1, C, T16]``. ``stats``: :meth:`whole_file_stats` of the file that
        ``wav`` is a window of, to normalise with instead of the window's own statistics."""
        wav = prepare_wav(wav, self.min_samples, self.name).to(self.device)
        if self.pad:
            wav = F.pad(wav, (self.pad, self.pad))
        stats = stats or {"wave": None, "conv0": None}
        if self.normalize and stats["wave"] is not None:
            mean, var = stats["wave"]
            wav = ((wav - mean) / torch.sqrt(var + EPS)).float()
        elif self.normalize:
            wav = F.layer_norm(wav, wav.shape)
        with self.net_autocast():
            x = self.model(wav.unsqueeze(0), self.output_layer, stats["conv0"])
            if self.use_final_proj:
                x = self.model.final_proj(x)
        return x.float().transpose(1, 2)
