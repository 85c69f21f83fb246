"""The shallow-diffusion model as the four ONNX graphs MoeVoiceStudio runs (sovits-4.1.md §16.3).

4.1's ``diffusion/onnx_export.py`` splits :class:`diffusion.Unit2Mel` into four files, named
``<prefix>_encoder.onnx``, ``_denoise.onnx``, ``_pred.onnx`` and ``_after.onnx`` (opset 16,
batch 1, ``M`` = mel bins (128), ``H`` = ``n_hidden`` (256), ``C`` = units dim):

==========  ==============================================  =====================  ===============
graph       inputs (in this order)                          output                 dynamic axes
==========  ==============================================  =====================  ===============
_encoder    ``hubert`` f32 ``[1, T_c, C]``,                 ``mel_pred`` f32        hubert 1,
            ``mel2ph`` i64 ``[1, T]``, ``f0`` f32 ``[1, T]``  ``[1, H, T]`` (the     mel2ph 1, f0 1,
            (Hz), ``volume`` f32 ``[1, T]``,                condition)             volume 1,
            ``spk_mix`` f32 ``[T, n_spk]``                                         spk_mix 0
_denoise    ``noise`` f32 ``[1, 1, M, T]``, ``time`` i64     ``noise_pred``          noise 3,
            ``[1]``, ``condition`` f32 ``[1, H, T]``         ``[1, 1, M, T]``       condition 2
_pred       ``noise`` ``[1, 1, M, T]``, ``noise_pred``       ``noise_pred_o``        noise 3,
            ``[1, 1, M, T]``, ``time`` i64 ``[1]``,          ``[1, 1, M, T]``       noise_pred 3
            ``time_prev`` i64 ``[1]``
_after      ``x`` f32 ``[1, 1, M, T]``                       ``mel_out`` ``[1, T, M]``  x 3
==========  ==============================================  =====================  ===============

- ``_encoder``: frame ``t`` takes unit ``mel2ph[t]`` of ``hubert`` (1-based; 0 = a zero frame,
  as the synthesizer graph), then ``unit_embed + f0_embed(log(1 + f0/700)) + volume_embed``
  plus, with ``n_spk > 1``, ``spk_mix @ spk_embed.weight`` (per-frame speaker weights, columns in
  speaker-id order). A one-speaker model ignores ``spk_mix`` (``[T, 1]``); the input is kept so
  every file takes the same inputs by position.
- ``_denoise``: the WaveNet denoiser (predicted noise at diffusion step ``time``).
- ``_pred``: the PLMS / DDIM transfer from step ``time`` to ``time_prev`` given a (combined)
  noise estimate: ``√ā_prev·(x/√ā_t + (√((1−ā_prev)/ā_prev) − √((1−ā_t)/ā_t))·ε)`` with ``ā`` the
  model's ``alphas_cumprod``. Despite its name, ``noise_pred_o`` is the next ``x``.
- ``_after``: ``x [1, 1, M, T]`` → the mel ``[1, T, M]`` (``denorm_spec``).

A consumer runs ``_encoder`` once, then for ``t`` in ``reversed(range(0, k_step, speedup))``
``_denoise`` (and, for PLMS, its Adams–Bashforth combination of the last noises) and ``_pred``
with ``time_prev = max(t − speedup, 0)``, then ``_after``: that is
:func:`diffusion.samplers.pndm` (or ``ddim``). The model has no weight norm (nothing to fold).
``_encoder`` carries ``sovits.diffusion.*`` metadata (mel bins, timesteps, ``k_step_max``,
``spec_min`` / ``spec_max``, speakers, sampling rate, hop, encoder) that other programs ignore.
"""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from diffusion.samplers import ddim_step

__all__ = ["GRAPHS", "OPSET", "DiffusionExport", "export_diffusion", "diffusion_modules"]

OPSET = 16

#: graph suffix → (input names in order, output name, dynamic axes), as §16.3.
GRAPHS: dict[str, tuple[tuple[str, ...], str, dict[str, list[int]]]] = {
    "encoder": (("hubert", "mel2ph", "f0", "volume", "spk_mix"), "mel_pred",
                {"hubert": [1], "mel2ph": [1], "f0": [1], "volume": [1], "spk_mix": [0]}),
    "denoise": (("noise", "time", "condition"), "noise_pred", {"noise": [3], "condition": [2]}),
    "pred": (("noise", "noise_pred", "time", "time_prev"), "noise_pred_o",
             {"noise": [3], "noise_pred": [3]}),
    "after": (("x",), "mel_out", {"x": [3]}),
}  # fmt: skip


class EncoderOnnx(nn.Module):
    """``(hubert [1, T_c, C], mel2ph [1, T], f0 [1, T], volume [1, T], spk_mix [T, n_spk])`` →
    the condition ``[1, H, T]`` (:meth:`diffusion.Unit2Mel.condition`, transposed)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, hubert, mel2ph, f0, volume, spk_mix):
        m = self.model
        units = torch.nn.functional.pad(hubert, (0, 0, 1, 0))
        idx = mel2ph.unsqueeze(2).expand(-1, -1, units.shape[-1])
        units = torch.gather(units, 1, idx)  # [1, T, C]
        x = m.unit_embed(units) + m.f0_embed((1 + f0.unsqueeze(-1) / 700).log())
        x = x + m.volume_embed(volume.unsqueeze(-1))
        if m.spk_embed is not None:
            x = x + torch.matmul(spk_mix, m.spk_embed.weight).unsqueeze(0)
        return x.transpose(1, 2)


class PredOnnx(nn.Module):
    """``(x, eps, time [1], time_prev [1])`` → the DDIM / PLMS transfer of ``x`` to ``time_prev``."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().clone().float())

    def forward(self, noise, noise_pred, time, time_prev):
        ac = self.alphas_cumprod
        return ddim_step(noise, noise_pred, ac[time], ac[time_prev])


class AfterOnnx(nn.Module):
    """``x [1, 1, M, T]`` (normalised) → the mel ``[1, T, M]``."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.register_buffer("spec_min", decoder.spec_min.detach().clone())
        self.register_buffer("spec_max", decoder.spec_max.detach().clone())

    def forward(self, x):
        x = x.squeeze(1).transpose(1, 2)
        return (x + 1) / 2 * (self.spec_max - self.spec_min) + self.spec_min


def diffusion_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The four graph modules of a loaded :class:`diffusion.Unit2Mel` (float32, eval)."""
    model = model.float().eval().requires_grad_(False)
    dec = model.decoder
    return {
        "encoder": EncoderOnnx(model),
        "denoise": dec.denoise_fn,
        "pred": PredOnnx(dec.alphas_cumprod),
        "after": AfterOnnx(dec),
    }


def dummy_inputs(model: nn.Module, frames: int = 16, unit_frames: int = 12) -> dict[str, tuple]:
    """Example inputs for tracing each graph."""
    g = torch.Generator().manual_seed(0)
    units_dim = model.unit_embed.in_features
    m_bins, hidden = model.decoder.out_dims, model.n_hidden
    x = torch.randn(1, 1, m_bins, frames, generator=g)
    t, t_prev = torch.tensor([50], dtype=torch.long), torch.tensor([40], dtype=torch.long)
    return {
        "encoder": (
            torch.randn(1, unit_frames, units_dim, generator=g),
            (torch.arange(frames) * unit_frames // frames + 1).view(1, -1),
            torch.full((1, frames), 220.0),
            torch.full((1, frames), 0.1),
            torch.full((frames, model.n_spk), 1.0 / model.n_spk),
        ),
        "denoise": (x, t, torch.randn(1, hidden, frames, generator=g)),
        "pred": (x, torch.randn_like(x), t, t_prev),
        "after": (x,),
    }


def _trace(module: nn.Module, args: tuple, graph: str) -> bytes:
    names, output, axes = GRAPHS[graph]
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings
        torch.onnx.export(
            module, args, buf, input_names=list(names), output_names=[output],
            dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )  # fmt: skip
    return buf.getvalue()


def _keep_spk_mix(model_proto, n_spk: int) -> None:
    """Put back ``spk_mix`` (5th input) when the tracer dropped it (a one-speaker model)."""
    from onnx import TensorProto, helper

    if any(i.name == "spk_mix" for i in model_proto.graph.input):
        return
    info = helper.make_tensor_value_info(
        "spk_mix", TensorProto.FLOAT, ["spk_mix_dynamic_axes_1", n_spk]
    )
    model_proto.graph.input.append(info)


@dataclass
class DiffusionExport:
    files: dict[str, Path]  # graph → path
    seconds: float
    meta: dict[str, str] = field(default_factory=dict)


def _metadata(model: nn.Module, args) -> dict[str, str]:
    dec = model.decoder
    data = args.data
    spk = dict(args.get("spk") or {}) if hasattr(args, "get") else {}
    return {
        "sovits.diffusion.mel_bins": str(int(dec.out_dims)),
        "sovits.diffusion.timesteps": str(int(dec.num_timesteps)),
        "sovits.diffusion.k_step_max": str(int(dec.k_step)),
        "sovits.diffusion.spec_min": str(float(dec.spec_min.flatten()[0])),
        "sovits.diffusion.spec_max": str(float(dec.spec_max.flatten()[0])),
        "sovits.diffusion.n_spk": str(int(model.n_spk)),
        "sovits.diffusion.speakers": json.dumps(spk, ensure_ascii=False),
        "sovits.diffusion.units_dim": str(int(model.unit_embed.in_features)),
        "sovits.diffusion.hidden": str(int(model.n_hidden)),
        "sovits.sampling_rate": str(int(data.sampling_rate)),
        "sovits.hop": str(int(data.block_size)),
        "sovits.speech_encoder": str(data.get("encoder") or ""),
    }


def export_diffusion(
    model_path: str | os.PathLike,
    config_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    prefix: str,
) -> DiffusionExport:
    """Export ``model_path`` (a 4.1 diffusion checkpoint ``{global_step, model[, optimizer]}``)
    with its YAML to ``out_dir/<prefix>_{encoder,denoise,pred,after}.onnx`` (each written
    atomically, each passing ``onnx.checker``). A missing or foreign file is a one-line
    :class:`common.errors.UserError`."""
    import onnx

    from common.atomic import atomic_open
    from diffusion.unit2mel import load_unit2mel

    t0 = time.perf_counter()
    model, args = load_unit2mel(model_path, config_path)
    modules = diffusion_modules(model)
    dummies = dummy_inputs(model)
    meta = _metadata(model, args)
    blobs: dict[str, bytes] = {}
    for graph, module in modules.items():
        proto = onnx.load_from_string(_trace(module, dummies[graph], graph))
        if graph == "encoder":
            _keep_spk_mix(proto, model.n_spk)
            for k, v in meta.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = k, v
        onnx.checker.check_model(proto)
        blobs[graph] = proto.SerializeToString()
    out_dir = Path(out_dir)
    files = {}
    for graph, data in blobs.items():  # all traced before any file is written
        files[graph] = out_dir / f"{prefix}_{graph}.onnx"
        with atomic_open(files[graph], "wb") as f:
            f.write(data)
    return DiffusionExport(files, time.perf_counter() - t0, meta)
