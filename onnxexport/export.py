"""``onnx_export.py``: a trained model → the files MoeVoiceStudio / DragonianLib load.

    checkpoints/<name>/model.pth + config.json
      → checkpoints/<name>/<name>_SoVits.onnx          the synthesizer (onnxexport.synthesizer)
      → checkpoints/<name>.json                        MoeVoiceStudio model config (§16.1 fields)
      → checkpoints/<name>/<name>.dragonian.json       DragonianLib SoftVitsSvcV4 hyper-parameters
      (--cluster) checkpoints/<name>/KMeans.npy or Index-<i>.index
      (--encoder) checkpoints/hubert/<encoder>.onnx    the speech encoder (onnxexport.encoder)

The ``.onnx`` also carries ``sovits.*`` metadata (hop, sampling rate, speakers and their
``emb_g`` rows, input order, the SHA-256 of the checkpoint's weights), which our ONNX Runtime
backend reads; other programs ignore it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.fingerprint import checkpoint_sha256
from onnxexport.loading import ExportError, load_synthesizer
from onnxexport.synthesizer import GraphSpec, SynthesizerOnnx, export_onnx, speaker_rows

logger = logging.getLogger(__name__)

FORMAT = "so-vits-svc-4.1-onnx-v1"  # metadata tag; part of the backend cache key


@dataclass
class ExportResult:
    onnx_path: Path
    spec: GraphSpec
    seconds: float
    files: list[Path] = field(default_factory=list)


def _finish(data: bytes, meta: dict[str, str], hop: int, fed: bool) -> bytes:
    """Add ``metadata_props``, move the source draws into the graph unless ``fed``, and check
    the model (``onnx.checker``)."""
    import onnx

    from onnxexport.graph import randomize_source_inputs

    model = onnx.load_from_string(data)
    if not fed:
        model = randomize_source_inputs(model, hop)
    # the output's dynamic axes under the reference export's names (shape inference may give
    # both the same symbol)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    for i, d in enumerate(dims):
        if i != 1:
            d.dim_param = f"Tanhaudio_dim_{i}"
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_synthesizer_file(
    model_path: str | os.PathLike,
    config_path: str | os.PathLike,
    out_path: str | os.PathLike,
    fed: bool = False,
) -> ExportResult:
    """Export the synthesizer of ``model_path`` (any checkpoint: training, compressed, merged) to
    ``out_path`` (written atomically). By default the file has 4.1's inputs (MoeVoiceStudio);
    ``fed=True`` keeps the ``sine_phase`` / ``sine_noise`` inputs (see :mod:`onnxexport.graph`)."""
    from common.atomic import atomic_open

    t0 = time.perf_counter()
    net, hps = load_synthesizer(model_path, config_path)
    spk = dict(hps.get("spk") or {})
    try:
        rows = speaker_rows(spk, net.emb_g.num_embeddings)
    except ValueError as e:
        raise ExportError(f"{config_path}: {e}") from None
    hop = int(hps.data.hop_length)
    module = SynthesizerOnnx(net, spk, hop)
    meta = {
        "sovits.format": FORMAT,
        "sovits.sampling_rate": str(int(hps.data.sampling_rate)),
        "sovits.hop": str(int(hps.data.hop_length)),
        "sovits.speakers": json.dumps(list(spk)),
        "sovits.speaker_rows": json.dumps(rows or [0]),
        "sovits.inputs": json.dumps(
            list(module.spec.input_names if fed else module.spec.moevs_input_names)
        ),
        "sovits.speech_encoder": str(hps.model.get("speech_encoder") or ""),
        # which weights this graph holds: compared where the file is loaded for a checkpoint
        # (onnxexport.fit.check_onnx_fits)
        "sovits.checkpoint_sha256": checkpoint_sha256(model_path),
        "sovits.checkpoint": Path(model_path).name,
    }
    data = _finish(export_onnx(module), meta, hop, fed)
    with atomic_open(out_path, "wb") as f:
        f.write(data)
    return ExportResult(Path(out_path), module.spec, time.perf_counter() - t0, [Path(out_path)])


def export_model(
    name: str, root: str | os.PathLike = "checkpoints", cluster: str | os.PathLike | None = None
) -> ExportResult:
    """The reference flow for ``-n NAME`` (see the module docstring); returns what was written."""
    from onnxexport.moevs import (
        dragonian_card,
        export_index,
        export_kmeans,
        moevs_config,
        write_json,
    )

    root = Path(root)
    folder = root / name
    model_path, config_path = folder / "model.pth", folder / "config.json"
    if not folder.is_dir():
        raise ExportError(
            f"{folder}: folder not found; put the model there as {model_path} and {config_path} "
            "(so-vits-svc 4.1 layout)"
        )
    for p, what in ((model_path, "the generator checkpoint (G_*.pth, a compressed or merged one "
                     "works too) renamed to model.pth"), (config_path, "the model's config.json")):  # fmt: skip
        if not p.is_file():
            raise ExportError(f"{p}: not found; copy {what} there")
    result = export_synthesizer_file(model_path, config_path, folder / f"{name}_SoVits.onnx")
    from onnxexport.loading import load_config_checked

    hps = load_config_checked(config_path)
    moevs = moevs_config(name, hps, result.spec)
    if cluster is not None:
        cluster = Path(cluster)
        spk = dict(hps.get("spk") or {})
        try:
            if cluster.suffix == ".npz":
                export_index(cluster, spk, folder)
                moevs["Cluster"] = "Index"
                result.files += [folder / f"Index-{i}.index" for i in range(len(spk))]
            else:
                moevs["Cluster"] = "KMeans"
                moevs["KMeansLength"] = export_kmeans(cluster, spk, folder)
                result.files.append(folder / "KMeans.npy")
        except (OSError, ValueError, RuntimeError) as e:
            raise ExportError(str(e)) from None
    write_json(root / f"{name}.json", moevs)
    card = folder / f"{name}.dragonian.json"
    write_json(card, dragonian_card(name, hps, result.spec))
    result.files += [root / f"{name}.json", card]
    return result


DIFFUSION_MODEL, DIFFUSION_CONFIG = "diffusion.pt", "diffusion.yaml"


def export_diffusion_model(
    name: str,
    root: str | os.PathLike = "checkpoints",
    model_path: str | os.PathLike | None = None,
    config_path: str | os.PathLike | None = None,
):
    """``-n NAME --diffusion``: ``checkpoints/NAME/diffusion.pt`` + ``diffusion.yaml`` (or the
    given paths) → ``checkpoints/NAME/NAME_{encoder,denoise,pred,after}.onnx`` (sovits-4.1.md
    §16.3, :mod:`onnxexport.diffusion`). Returns :class:`onnxexport.diffusion.DiffusionExport`."""
    from onnxexport.diffusion import export_diffusion

    model_path, config_path = diffusion_paths(name, root, model_path, config_path)
    return export_diffusion(model_path, config_path, Path(root) / name, name)


def diffusion_paths(
    name: str,
    root: str | os.PathLike = "checkpoints",
    model_path: str | os.PathLike | None = None,
    config_path: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """The diffusion checkpoint and config ``-n NAME --diffusion`` exports; missing ones raise
    :class:`diffusion.DiffusionFileError`."""
    from diffusion.unit2mel import DiffusionFileError

    folder = Path(root) / name
    model_path = Path(model_path) if model_path else folder / DIFFUSION_MODEL
    config_path = Path(config_path) if config_path else folder / DIFFUSION_CONFIG
    for p, what in ((model_path, "the diffusion checkpoint (logs/44k/diffusion/model_*.pt)"),
                    (config_path, "its config (logs/44k/diffusion/config.yaml or "
                     "configs/diffusion.yaml)")):  # fmt: skip
        if not p.is_file():
            raise DiffusionFileError(f"{p}: not found", f"copy {what} there")
    return model_path, config_path


def check_diffusion_beside(
    name: str, root: str | os.PathLike, model_path=None, config_path=None
) -> None:
    """``-n NAME --diffusion`` with a so-vits model: the diffusion model must fit it (speech encoder,
    units, rate, hop, speaker ids; :func:`diffusion.fit.check_diffusion_fits`). From the configs,
    before anything is exported."""
    from diffusion.fit import check_diffusion_fits
    from diffusion.unit2mel import load_config as load_diffusion_config
    from onnxexport.loading import load_config_checked

    model_path, config_path = diffusion_paths(name, root, model_path, config_path)
    sovits_config = Path(root) / name / "config.json"
    check_diffusion_fits(load_diffusion_config(config_path), load_config_checked(sovits_config),
                         model_path, config_path, sovits_config,
                         hint="give the diffusion model trained for this voice with "
                         "--diffusion_model/--diffusion_config")  # fmt: skip
