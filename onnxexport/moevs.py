"""The files that sit beside an exported model for MoeVoiceStudio and DragonianLib.

- :func:`moevs_config`: ``checkpoints/<name>.json``, exactly the fields so-vits-svc 4.1's
  ``onnx_export.py`` writes (sovits-4.1.md §16.1): ``Folder``, ``Name``, ``Type``, ``Rate``,
  ``Hop``, ``Hubert``, ``SoVits4``, ``SoVits3``, ``CharaMix``, ``Volume``, ``HiddenSize``,
  ``Characters``, ``Cluster``.
- :func:`dragonian_card`: ``checkpoints/<name>/<name>.dragonian.json``, the hyper-parameters
  DragonianLib's ``SoftVitsSvcV4`` is constructed with (``HParams``: model paths, output sampling
  rate, units dim, hop, speaker count, volume / speaker-embedding / speaker-mix flags, and the
  ``NoiseDims`` / ``WindowSize`` extended parameters).
- :func:`export_kmeans` / :func:`export_index`: the cluster files MoeVoiceStudio reads from the
  model folder: ``KMeans.npy`` (float32 ``[n_speakers, KMeansLength, HiddenSize]``, codebook ``i``
  = the ``i``-th name of ``Characters``), or ``Index-<i>.index`` (one faiss index per speaker, same
  numbering). MoeVoiceStudio then needs ``"Cluster": "KMeans"`` (or ``"Index"``) and, for k-means,
  ``"KMeansLength"`` in the JSON: those two keys are added only when a cluster is exported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from onnxexport.synthesizer import GraphSpec

#: MoeVoiceStudio encoder file stems (``hubert/<stem>.onnx``) for our speech-encoder names.
MOEVS_ENCODERS = {
    "vec768l12": "vec-768-layer-12",
    "vec256l9": "vec-256-layer-9",
    "hubertsoft": "hubert-soft",
    "vec768l12-onnx": "vec-768-layer-12",
    "vec768l9-onnx": "vec-768-layer-9",
    "vec256l9-onnx": "vec-256-layer-9",
    "vec256l12-onnx": "vec-256-layer-12",
    "hubertsoft-onnx": "hubert-soft",
}


def hubert_name(speech_encoder: str | None, units_dim: int) -> str:
    """The ``Hubert`` field: MoeVoiceStudio's file stem for the config's encoder.

    The reference wrote ``vec-{C}-layer-12`` for C = 768 and ``vec-{C}-layer-9`` otherwise, which
    names the wrong encoder for hubertsoft (it got ``vec-256-layer-9``). Here the known encoders get
    their own stem; an encoder MoeVoiceStudio has no file for (cnhubertlarge, dphubert, wavlmbase+)
    gets its own name, which is the file ``onnx_export.py --encoder`` writes; a config without
    ``speech_encoder`` (4.0) keeps the reference rule.
    """
    if speech_encoder in MOEVS_ENCODERS:
        return MOEVS_ENCODERS[speech_encoder]
    if speech_encoder:
        return str(speech_encoder)
    return f"vec-{units_dim}-layer-12" if units_dim == 768 else f"vec-{units_dim}-layer-9"


def moevs_config(name: str, hps, spec: GraphSpec) -> dict:
    """``checkpoints/<name>.json`` (§16.1 fields, in that order)."""
    return {
        "Folder": name,
        "Name": name,
        "Type": "SoVits",
        "Rate": int(hps.data.sampling_rate),
        "Hop": int(hps.data.hop_length),
        "Hubert": hubert_name(hps.model.get("speech_encoder"), spec.units_dim),
        "SoVits4": True,
        "SoVits3": False,
        "CharaMix": spec.speaker_mix,
        "Volume": spec.volume,
        "HiddenSize": spec.units_dim,
        "Characters": list((hps.get("spk") or {}).keys()),
        "Cluster": "",
    }


def dragonian_card(name: str, hps, spec: GraphSpec) -> dict:
    """DragonianLib ``SoftVitsSvcV4`` hyper-parameters for ``<name>_SoVits.onnx``."""
    return {
        "ModelType": "SoftVitsSvcV4",
        "ModelPaths": {"Model": f"{name}_SoVits.onnx"},
        "OutputSamplingRate": int(hps.data.sampling_rate),
        "UnitsDim": spec.units_dim,
        "HopSize": int(hps.data.hop_length),
        "SpeakerCount": spec.n_speakers,
        "HasVolumeEmbedding": spec.volume,
        "HasSpeakerEmbedding": not spec.speaker_mix,
        "HasSpeakerMixLayer": spec.speaker_mix,
        "SpecMax": 2.0,
        "SpecMin": -12.0,
        "F0Bin": 256,
        "F0Max": 1100.0,
        "F0Min": 50.0,
        "ExtendedParameters": {"NoiseDims": str(spec.noise_dim), "WindowSize": "2048"},
        "Inputs": list(spec.moevs_input_names),
        "Encoder": f"{hubert_name(hps.model.get('speech_encoder'), spec.units_dim)}.onnx",
    }


def write_json(path: str | os.PathLike, data: Mapping) -> None:
    from common.atomic import write_text

    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# cluster files
# ---------------------------------------------------------------------------------------------
def export_kmeans(
    kmeans_path: str | os.PathLike, spk: Mapping[str, int], out_dir: str | Path
) -> int:
    """``kmeans_10000.pt`` → ``<out_dir>/KMeans.npy``; returns KMeansLength.

    Every speaker of ``spk`` must have centres. A speaker trained with fewer centres than the
    largest is padded by repeating its own centres (the nearest centre, and so the result, does
    not change).
    """
    from cluster import get_cluster_model
    from common.atomic import save_npy

    models = get_cluster_model(kmeans_path)
    missing = [s for s in spk if s not in models]
    if missing:
        raise ValueError(
            f"{kmeans_path}: no cluster centres for speaker(s) {missing} (it has {list(models)})"
        )
    centers = [models[s].cluster_centers_ for s in spk]
    k = max(c.shape[0] for c in centers)
    out = np.stack([np.resize(c, (k, c.shape[1])) for c in centers]).astype(np.float32)
    save_npy(Path(out_dir) / "KMeans.npy", out)
    return k


def export_index(index_path: str | os.PathLike, spk: Mapping[str, int], out_dir: str | Path) -> int:
    """``feature_and_index.npz`` → ``<out_dir>/Index-<i>.index`` (``i`` = position in ``spk``)."""
    import faiss

    from cluster.feature_index import load_feature_index
    from common.atomic import atomic_path

    indexes = load_feature_index(index_path)
    missing = [name for name, sid in spk.items() if sid not in indexes]
    if missing:
        raise ValueError(f"{index_path}: no index for speaker(s) {missing}")
    for i, sid in enumerate(spk.values()):
        with atomic_path(Path(out_dir) / f"Index-{i}.index") as tmp:
            faiss.write_index(indexes[sid].index, str(tmp))
    return len(spk)
