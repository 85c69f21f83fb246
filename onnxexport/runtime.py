"""Run an exported synthesizer with ONNX Runtime, called like ``SynthesizerTrn.infer``.

:class:`OrtSynthesizer` takes the frame-rate tensors :class:`inference.infer_tool.Svc` prepares
(``c [1, C, T]``, ``f0``, ``uv``, a speaker id or a mix matrix, ``vol``) and builds the graph's
inputs: ``c`` transposed to ``[1, T, C]`` with ``mel2ph = 1..T`` (units already at frame rate), the
prior noise and the harmonic source's start phases and noise, all from :func:`seeded_draws`, which
draws exactly what ``infer`` draws for the same seed. So both backends give the same audio to float
rounding. Files written by ``onnx_export.py`` draw the source noise inside the graph; they are
turned back into the fed form on load (:func:`onnxexport.graph.restore_source_inputs`). A file
from another exporter keeps drawing it itself: same sound, not the same samples.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

HARMONICS = 9  # harmonic_num 8 + the fundamental


def seeded_draws(
    seed: int, frames: int, noise_dim: int, hop: int, noise_scale: float
) -> dict[str, np.ndarray]:
    """What ``SynthesizerTrn.infer(seed=seed)`` draws, in its order (sovits-4.1.md §9):
    prior noise ``randn [1, noise_dim, T]`` (× ``noise_scale``), start phases ``rand [1, 9]``,
    sine noise ``randn [1, T·hop, 9]``. From a private generator; the global RNG is untouched."""
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(1, noise_dim, frames, generator=g) * noise_scale
    phase = torch.rand(1, HARMONICS, generator=g)
    sine = torch.randn(1, frames * hop, HARMONICS, generator=g)
    return {"noise": noise.numpy(), "sine_phase": phase.numpy(), "sine_noise": sine.numpy()}


def session_options(threads: int | None = None, optimization: str = "all"):
    """``onnxruntime.SessionOptions`` with ``threads`` intra-op threads and a graph optimisation
    level (``disable``, ``basic``, ``extended``, ``all``)."""
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[optimization]
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return opts


REQUIRED_INPUTS = ("c", "f0", "mel2ph", "uv", "noise")
DAMAGED_HINT = "export it again with onnx_export.py, or copy it again"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _fed_form(model: str | os.PathLike | bytes):
    """``(what to give onnxruntime, the parsed model)``: the model with ``sine_phase`` /
    ``sine_noise`` as inputs when it is one of ours. A file that is missing, not ONNX, or not a
    so-vits-svc synthesizer raises :class:`onnxexport.fit.OnnxFileError`."""
    import onnx

    from onnxexport.fit import OnnxFileError
    from onnxexport.graph import restore_source_inputs

    name = "model" if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes) and not Path(model).is_file():
        what = "is a folder, not an ONNX file" if Path(model).is_dir() else "ONNX model not found"
        raise OnnxFileError(f"{name}: {what}", "make one with onnx_export.py, or check the path")
    try:
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError / OSError variants
        raise OnnxFileError(f"{name}: not a readable ONNX file, damaged or of another kind "
                            f"({_first_line(e)})", DAMAGED_HINT) from None  # fmt: skip
    init = {i.name for i in proto.graph.initializer}
    inputs = {i.name for i in proto.graph.input if i.name not in init}
    missing = [k for k in REQUIRED_INPUTS if k not in inputs]
    if missing:
        what = "damaged or empty" if not proto.graph.node else "not a so-vits-svc 4.x synthesizer"
        raise OnnxFileError(f"{name}: {what} (no input {', '.join(missing)})",
                            DAMAGED_HINT if not proto.graph.node else "give a *_SoVits.onnx from "
                            "onnx_export.py")  # fmt: skip
    fed = restore_source_inputs(proto)
    if fed is None:
        return (model if isinstance(model, bytes) else str(model)), proto
    return fed.SerializeToString(), proto


def _damaged(proto, name: str, error: Exception):
    """The error for a session that would not build: :class:`onnxexport.fit.OnnxFileError` when
    ``onnx.checker`` finds the model itself broken (a truncated file), else ``error`` (a bug)."""
    import onnx

    from onnxexport.fit import OnnxFileError

    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001 - ValidationError and protobuf errors
        return OnnxFileError(f"{name}: a damaged ONNX file ({_first_line(e)})", DAMAGED_HINT)
    return error


class OrtSynthesizer:
    """An exported ``*_SoVits.onnx`` (ours or any with 4.1's inputs) in an ONNX Runtime session.

    ``model``: a path or the model bytes. ``providers`` default to CUDA when the device is CUDA
    and this onnxruntime has it, else CPU.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        threads: int | None = None,
        optimization: str = "all",
        device: str = "cpu",
    ):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if (
            str(device).startswith("cuda")
            and "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        src, proto = _fed_form(model)
        self.path = "model" if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(
                src, session_options(threads, optimization), providers=providers
            )
        except Exception as e:  # noqa: BLE001 - onnxruntime's Fail / InvalidGraph / ...
            raise _damaged(proto, self.path, e) from e
        del proto
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.input_names = [i.name for i in self.session.get_inputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.meta = dict(meta)
        self.hop = int(meta.get("sovits.hop", 512))
        self.fed_source = "sine_noise" in inputs
        self.noise_dim = int(inputs["noise"].shape[1])
        self.units_dim = int(inputs["c"].shape[2])
        self.speaker_mix = "sid" in inputs and inputs["sid"].type == "tensor(float)"
        self.n_speakers = int(inputs["sid"].shape[1]) if self.speaker_mix else 1
        self.speaker_rows = json.loads(meta.get("sovits.speaker_rows", "null")) or list(
            range(self.n_speakers)
        )
        self.volume = "vol" in inputs

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One graph run; ``feeds`` by input name. Returns ``audio`` ``[1, 1, T·hop]``."""
        return self.session.run(None, {k: feeds[k] for k in self.input_names})[0]

    def speaker_input(self, g: torch.Tensor, frames: int) -> np.ndarray:
        """The ``sid`` input from what ``infer`` takes: an id (``[[sid]]``, ``[sid]``) or a mix
        matrix ``[T, n]`` (float) whose column ``k`` is speaker id ``k``."""
        if g.is_floating_point():
            if not self.speaker_mix:
                raise ValueError("this ONNX model has one speaker: it takes no speaker mix")
            cols = np.asarray(self.speaker_rows)
            mix = g.float().cpu().numpy()
            if mix.shape[1] <= cols.max():
                raise ValueError(f"speaker mix has {mix.shape[1]} columns; the model needs ids "
                                 f"up to {cols.max()}")  # fmt: skip
            return np.ascontiguousarray(mix[:, cols], dtype=np.float32)
        sid = int(g.reshape(-1)[0])
        if not self.speaker_mix:
            return np.array([sid], dtype=np.int64)
        if sid not in self.speaker_rows:
            raise ValueError(f"speaker id {sid} is not in this ONNX model ({self.speaker_rows})")
        onehot = np.zeros((frames, self.n_speakers), dtype=np.float32)
        onehot[:, self.speaker_rows.index(sid)] = 1.0
        return onehot

    def infer(
        self,
        c: torch.Tensor,
        f0: torch.Tensor,
        uv: torch.Tensor,
        g: torch.Tensor | None = None,
        noice_scale: float = 0.35,
        seed: int = 52468,
        predict_f0: bool = False,
        vol: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``SynthesizerTrn.infer`` through ONNX Runtime → ``(audio [1, 1, T·hop], f0 [1, T])``."""
        if predict_f0:
            raise ValueError(
                "automatic f0 prediction (-a) is not part of the ONNX graph (as in so-vits-svc "
                "4.1's export); use the torch backend for it"
            )
        frames = int(f0.shape[-1])
        draws = seeded_draws(seed, frames, self.noise_dim, self.hop, noice_scale)
        if not self.fed_source:
            del draws["sine_phase"], draws["sine_noise"]
        feeds = {
            "c": c.float().cpu().transpose(1, 2).contiguous().numpy(),
            "f0": f0.float().cpu().reshape(1, -1).numpy(),
            "mel2ph": np.arange(1, frames + 1, dtype=np.int64)[None],
            "uv": uv.float().cpu().reshape(1, -1).numpy(),
            "sid": self.speaker_input(g, frames),
            **draws,
        }
        if self.volume:
            if vol is None:
                raise ValueError("this model has a volume embedding: pass vol [1, T]")
            feeds["vol"] = vol.float().cpu().reshape(1, -1).numpy()
        audio = self.run(feeds)
        return torch.from_numpy(audio), f0


def cached_export(
    model_path: str | os.PathLike,
    config_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The fed-form ONNX file for ``model_path`` + ``config_path``, exported on first use.

    Cached as ``<cache_dir>/<model stem>-<key>_SoVits.onnx`` (default cache dir
    ``<model folder>/onnx_cache``); ``key`` is a SHA-256 of both files' bytes and the export
    format, so a changed checkpoint or config gets a new file.
    """
    import hashlib

    from onnxexport.export import FORMAT, export_synthesizer_file

    model_path, config_path = Path(model_path), Path(config_path)
    h = hashlib.sha256(FORMAT.encode())
    for p in (model_path, config_path):
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    cache = Path(cache_dir) if cache_dir else model_path.parent / "onnx_cache"
    out = cache / f"{model_path.stem}-{h.hexdigest()[:16]}_SoVits.onnx"
    if not out.is_file():
        logger.info("exporting %s to %s (first use; cached afterwards)", model_path, out)
        export_synthesizer_file(model_path, config_path, out, fed=True)
    return out


def load_backend(
    model_path: str | os.PathLike,
    config_path: str | os.PathLike,
    onnx_model: str | os.PathLike | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> OrtSynthesizer:
    """The ONNX Runtime synthesizer for :class:`inference.infer_tool.Svc` (``backend="onnx"``):
    ``onnx_model`` if given (checked against the checkpoint and config:
    :func:`onnxexport.fit.check_onnx_fits`), else :func:`cached_export` of the checkpoint. A
    damaged cache file is exported again, with a warning."""
    from onnxexport.fit import OnnxFileError, check_onnx_fits

    if onnx_model:
        synth = OrtSynthesizer(onnx_model, threads=threads, device=device)
        from common.hparams import load_config

        check_onnx_fits(synth.meta, synth.units_dim, onnx_model, model_path, config_path,
                        load_config(config_path))  # fmt: skip
        return synth
    path = cached_export(model_path, config_path)
    try:
        return OrtSynthesizer(path, threads=threads, device=device)
    except OnnxFileError as e:  # a damaged cache file (killed disk, copy): export it again
        logger.warning("%s: the cached ONNX file is damaged; exporting it again (%s)", path,
                       str(e).split(": ", 1)[-1].split(" (export it again")[0])  # fmt: skip
        path.unlink(missing_ok=True)
        return OrtSynthesizer(
            cached_export(model_path, config_path), threads=threads, device=device
        )
