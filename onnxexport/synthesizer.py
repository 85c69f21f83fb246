"""The so-vits-svc 4.1 synthesizer as an ONNX graph (sovits-4.1.md §16.1, ``onnx_io.json``).

:class:`SynthesizerOnnx` wraps a loaded :class:`models.SynthesizerTrn` (it reuses its modules; it
is not a second copy of the model) and computes exactly what ``SynthesizerTrn.infer`` computes,
with the inputs MoeVoiceStudio / DragonianLib feed, by position:

====  ========  ========  ==================================  =======================================
pos   name      dtype     shape                               meaning
====  ========  ========  ==================================  =======================================
0     c         float32   ``[1, T_c, C]`` (axes 0, 1 dynamic)  speech-encoder units at their own rate
1     f0        float32   ``[1, T]``                          f0 in Hz per frame (transposed already)
2     mel2ph    int64     ``[1, T]``                          1-based unit index per frame (0 = none)
3     uv        float32   ``[1, T]``                          1 = voiced
4     noise     float32   ``[1, inter_channels, T]``          prior noise: ``randn · noise_scale``
5     sid       int64     ``[1]``                             speaker id (models with 1 speaker)
5     sid       float32   ``[T, n_spk]`` (axis 0 dynamic)     per-frame speaker mix (≥ 2 speakers)
6     vol       float32   ``[1, T]``                          volume (only with ``vol_embedding``)
====  ========  ========  ==================================  =======================================

Output ``audio`` float32 ``[1, 1, T·hop]``. ``inter_channels`` is 192 in every so-vits-svc config.

What the wrapper adds around the model's own modules:

- ``mel2ph`` gather: a zero frame is put in front of ``c`` and frame ``t`` takes unit
  ``mel2ph[t]`` (``[1, C, T]`` after the gather);
- f0 → coarse pitch with :func:`modules.pitch.f0_to_coarse` (the model's own);
- the speaker mix as a matrix product ``sid @ speaker_map`` with ``speaker_map`` = ``emb_g`` rows
  in the config's ``spk`` order (so column ``i`` of ``sid`` is the ``i``-th name of ``spk``);
- the prior noise as an input: ``z = (m + noise·exp(logs))·mask``.

The harmonic source of the decoder draws random start phases ``[1, 9]`` and sine noise
``[1, T·hop, 9]``. The traced graph takes them as two extra inputs, ``sine_phase`` and
``sine_noise`` (after the others): our ONNX Runtime backend feeds them from the same seeded
generator as ``SynthesizerTrn.infer``, so both backends give the same audio to float rounding.
For MoeVoiceStudio, :mod:`onnxexport.graph` replaces the two inputs by RandomUniform /
RandomNormalLike nodes inside the graph (as in the reference export); nothing else differs, and
:func:`onnxexport.graph.restore_source_inputs` turns such a file back into the fed form.

Weight norm is folded before export; the posterior encoder and the f0 decoder are not in the
graph (``predict_f0`` is not exported, as in 4.1).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from modules.pitch import f0_to_coarse
from onnxexport.graph import SOURCE_INPUTS
from vdecoder.nsf_hifigan import SineGen

logger = logging.getLogger(__name__)

OPSET = 16
OUTPUT_NAME = "audio"


class FedSineGen(SineGen):
    """A :class:`SineGen` whose two random draws are supplied from outside.

    Set :attr:`fed` to ``(phase [B, dim], noise [B, L, dim])`` before a forward pass; with
    ``fed = None`` it draws like its parent.
    """

    fed: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def like(cls, gen: SineGen) -> FedSineGen:
        return cls(gen.sampling_rate, gen.harmonic_num, gen.sine_amp, gen.noise_std,
                   gen.voiced_threshold, gen.double)  # fmt: skip

    def start_phase(self, batch: int, device: torch.device) -> torch.Tensor:
        if self.fed is None:
            return super().start_phase(batch, device)
        return self.fed[0].clone()  # the caller zeroes column 0 in place

    def noise_like(self, sine_waves: torch.Tensor) -> torch.Tensor:
        if self.fed is None:
            return super().noise_like(sine_waves)
        return self.fed[1].to(sine_waves.dtype)


@dataclass(frozen=True)
class GraphSpec:
    """What a synthesizer graph takes: input names in order, dtypes, and whether it mixes."""

    input_names: tuple[str, ...]  # the traced graph's, ``sine_phase``/``sine_noise`` last
    units_dim: int
    noise_dim: int
    hop: int
    speaker_mix: bool
    n_speakers: int
    volume: bool

    @property
    def moevs_input_names(self) -> tuple[str, ...]:
        """The inputs of the file for MoeVoiceStudio / DragonianLib (no source inputs)."""
        return tuple(n for n in self.input_names if n not in SOURCE_INPUTS)

    @property
    def dynamic_axes(self) -> dict[str, list[int]]:
        axes = {"c": [0, 1], "f0": [1], "mel2ph": [1], "uv": [1], "noise": [2], "vol": [1],
                "sine_noise": [1]}  # fmt: skip
        if self.speaker_mix:
            axes["sid"] = [0]
        return {k: v for k, v in axes.items() if k in self.input_names}


def speaker_rows(spk: Mapping[str, int] | None, n_embeddings: int) -> list[int]:
    """``emb_g`` rows in the config's ``spk`` order (the mix matrix's column order).

    Raises ``ValueError`` for an id outside the embedding table.
    """
    rows = [int(v) for v in (spk or {}).values()]
    bad = [r for r in rows if not 0 <= r < n_embeddings]
    if bad:
        raise ValueError(
            f"speaker ids {bad} in the config's spk do not fit the model's {n_embeddings} speakers"
        )
    return rows


class SynthesizerOnnx(nn.Module):
    """``SynthesizerTrn.infer`` with MoeVoiceStudio's inputs (see the module docstring).

    ``net_g`` is taken over and changed in place (float32, eval, weight norm folded, posterior
    encoder and f0 decoder dropped): give it a model of its own. ``spk`` is the config's speaker
    map; two or more names give the speaker-mix input.
    """

    def __init__(
        self,
        net_g: nn.Module,
        spk: Mapping[str, int] | None,
        hop: int,
    ):
        super().__init__()
        net = net_g.float().eval().requires_grad_(False)
        net.remove_weight_norm()
        # not in the graph: the posterior encoder (training only) and the f0 decoder (not exported)
        net.enc_q = None
        if getattr(net, "f0_decoder", None) is not None:
            net.f0_decoder = None
        source = net.dec.m_source
        source.noise_branch = False  # the reference's unused draw; nothing depends on it
        source.l_sin_gen = FedSineGen.like(source.l_sin_gen)
        self.net = net

        rows = speaker_rows(spk, net.emb_g.num_embeddings) or [0]
        self.speaker_mix = len(rows) >= 2
        if self.speaker_mix:
            with torch.no_grad():
                smap = net.emb_g.weight[torch.tensor(rows)].detach().clone()
            self.register_buffer("speaker_map", smap, persistent=False)  # [n_spk, G]
        names = ["c", "f0", "mel2ph", "uv", "noise", "sid"]
        if net.vol_embedding:
            names.append("vol")
        names += SOURCE_INPUTS
        self.spec = GraphSpec(
            input_names=tuple(names),
            units_dim=int(net.ssl_dim),
            noise_dim=int(net.inter_channels),
            hop=int(hop),
            speaker_mix=self.speaker_mix,
            n_speakers=len(rows),
            volume=bool(net.vol_embedding),
        )

    # ------------------------------------------------------------------------------------------
    def speaker(self, sid: torch.Tensor) -> torch.Tensor:
        """``[1, G, 1]`` from an id ``[1]``, or ``[1, G, T]`` from a mix ``[T, n_spk]``."""
        if self.speaker_mix:
            return torch.matmul(sid, self.speaker_map).transpose(0, 1).unsqueeze(0)
        return self.net.emb_g(sid).unsqueeze(-1)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = dict(zip(self.spec.input_names, inputs))
        net = self.net
        c, f0, mel2ph, uv, noise = x["c"], x["f0"], x["mel2ph"], x["uv"], x["noise"]
        # units at their own rate → frames: frame t takes unit mel2ph[t] (1-based; 0 = zeros)
        c = torch.nn.functional.pad(c, (0, 0, 1, 0))
        idx = mel2ph.unsqueeze(2).expand(-1, -1, c.shape[-1])
        c = torch.gather(c, 1, idx).transpose(1, 2)  # [1, C, T]
        g = self.speaker(x["sid"])
        x_mask = torch.ones_like(uv).unsqueeze(1)  # [1, 1, T]
        h = net._prior_input(c, uv, x_mask, x.get("vol"))
        # TextEncoder.forward with the prior noise supplied
        enc = net.enc_p
        h = h + enc.f0_emb(f0_to_coarse(f0)).transpose(1, 2)
        h = enc.enc_(h * x_mask, x_mask)
        m, logs = torch.split(enc.proj(h) * x_mask, enc.out_channels, dim=1)
        z_p = (m + noise * torch.exp(logs)) * x_mask
        z = net.flow(z_p, x_mask, g=g, reverse=True)
        gen = net.dec.m_source.l_sin_gen
        gen.fed = (x["sine_phase"], x["sine_noise"])
        try:
            return net.dec(z * x_mask, g=g, f0=f0)
        finally:
            gen.fed = None

    # ------------------------------------------------------------------------------------------
    def dummy_inputs(self, frames: int = 200, unit_frames: int | None = None) -> tuple:
        """Example inputs (``frames`` frames; ``unit_frames`` units, default ``frames``)."""
        spec = self.spec
        t_c = frames if unit_frames is None else unit_frames
        g = torch.Generator().manual_seed(0)
        out = [
            torch.randn(1, t_c, spec.units_dim, generator=g),
            torch.full((1, frames), 220.0),
            (torch.arange(frames) * t_c // frames + 1).view(1, -1),
            torch.ones(1, frames),
            torch.randn(1, spec.noise_dim, frames, generator=g) * 0.4,
            torch.full((frames, spec.n_speakers), 1.0 / spec.n_speakers)
            if spec.speaker_mix
            else torch.zeros(1, dtype=torch.long),
        ]
        if spec.volume:
            out.append(torch.full((1, frames), 0.1))
        out += [
            torch.rand(1, 9, generator=g),
            torch.randn(1, frames * spec.hop, 9, generator=g),
        ]
        return tuple(out)


def export_onnx(module: SynthesizerOnnx, path: str | Path | None = None, frames: int = 16) -> bytes:
    """Trace ``module`` to an ONNX model (opset 16, TorchScript exporter); returns its bytes and
    writes them to ``path`` atomically when given.

    Opset 16 is what the reference used and what every ONNX Runtime since 1.11 runs; nothing here
    needs a newer one. The graph works for T ≥ 6 frames (the relative attention's padding branch
    is traced for those lengths).
    """
    import warnings

    from common.atomic import atomic_open

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings for Python-side shape checks
        torch.onnx.export(
            module,
            module.dummy_inputs(frames),
            buf,
            input_names=list(module.spec.input_names),
            output_names=[OUTPUT_NAME],
            dynamic_axes=module.spec.dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    data = buf.getvalue()
    if path is not None:
        with atomic_open(path, "wb") as f:
            f.write(data)
    return data
