"""onnx_export.py: the graph's inputs/outputs equal the reference export's (``onnx_io.json``), the
MoeVoiceStudio JSON equals the reference's, and the shipped file computes what
``SynthesizerTrn.infer`` computes (same inputs, same seeded noise) for every variant and for
compressed and merged checkpoints; bad input gets one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import ROOT, run_script

IO = json.loads((ROOT / "tests" / "data" / "onnx_io.json").read_text())["variants"]
TEMPLATE_SPK = ["nyaru", "huiyu", "nen", "paimon", "yunhao"]
LENGTHS = (37, 200, 861)


def tiny_cfg(spk, ssl_dim=768, vol=False, vocoder="nsf-hifigan", encoder="vec768l12") -> dict:
    """The tiny config with the reference export's I/O sizes (units 768, noise 192)."""
    from training.synthetic import tiny_config

    cfg = tiny_config(dict(spk), ssl_dim=ssl_dim)
    cfg["model"].update(inter_channels=192, vol_embedding=vol, vocoder_name=vocoder,
                        speech_encoder=encoder)  # fmt: skip
    return cfg


def write_model(folder: Path, cfg: dict, seed: int = 0) -> Path:
    from tests.infer_fixtures import write_random_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    write_random_checkpoint(cfg, folder / "model.pth", seed=seed)
    return folder / "model.pth"


VARIANTS = {
    "t_single": dict(spk={"a": 0}),
    "t_mix": dict(spk={n: i for i, n in enumerate(TEMPLATE_SPK)}),
    "t_vol": dict(spk={"a": 0}, vol=True),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``get(name)`` → the checkpoints folder with ``name`` exported by export_model: the three
    reference variants, a compressed (``-hf``, vec256 units) and a merged (whisper-ppg units)
    checkpoint. Exports happen on first use; ``times`` holds their durations."""
    from onnxexport.export import export_model

    root = tmp_path_factory.mktemp("onnx") / "checkpoints"
    times: dict[str, float] = {}

    def get(name: str) -> Path:
        if name not in times:
            BUILD[name](root)
            times[name] = export_model(name, root).seconds
        return root

    get.times = times
    return get


def _compressed(root: Path, name: str, cfg: dict, half: bool) -> None:
    from compress_model import compress

    g = write_model(root / f"{name}_train", cfg)
    (root / name).mkdir()
    (root / name / "config.json").write_text(json.dumps(cfg))
    compress(str(root / name / "config.json"), str(g), half, str(root / name / "model.pth"))


def _merged(root: Path, name: str, cfg: dict) -> None:
    from inference.merge import mix_model

    a = write_model(root / f"{name}_a", cfg, seed=1)
    b = write_model(root / f"{name}_b", cfg, seed=2)
    (root / name).mkdir()
    (root / name / "config.json").write_text(json.dumps(cfg))
    mix_model([a, b], [60, 40], "convex", root / name / "model.pth")


# t_single is a compressed -hf checkpoint and t_vol a merged one, so that the default run covers
# both kinds; the slow run adds a plain compressed vec256 model, a merged model with whisper-ppg
# units (1024) and the nsf-snake-hifigan decoder.
BUILD = {
    "t_single": lambda root: _compressed(root, "t_single", tiny_cfg(**VARIANTS["t_single"]), True),
    "t_mix": lambda root: write_model(root / "t_mix", tiny_cfg(**VARIANTS["t_mix"])),
    "t_vol": lambda root: _merged(root, "t_vol", tiny_cfg(**VARIANTS["t_vol"])),
    "t_compressed": lambda root: _compressed(
        root, "t_compressed", tiny_cfg({"a": 0, "b": 1}, ssl_dim=256, encoder="vec256l9"), False
    ),
    "t_merged": lambda root: _merged(
        root, "t_merged", tiny_cfg({"a": 0}, ssl_dim=1024, encoder="whisper-ppg")
    ),
    "t_snake": lambda root: write_model(
        root / "t_snake", tiny_cfg({"a": 0, "b": 1}, ssl_dim=256, vocoder="nsf-snake-hifigan")
    ),
}


def _io(value_infos) -> list[dict]:
    out = []
    for v in value_infos:
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        out.append({"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type),
                    "shape": dims})  # fmt: skip
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_graph_io_and_moevs_json_equal_the_reference(exported, variant):
    root = exported(variant)
    model = onnx.load(str(root / variant / f"{variant}_SoVits.onnx"))
    onnx.checker.check_model(model)
    ref = IO[variant]
    # names, order, dtypes, ranks, static sizes and dynamic axes (with their names)
    assert _io(model.graph.input) == ref["inputs"]
    assert _io(model.graph.output) == ref["outputs"]
    assert [[i.domain, i.version] for i in model.opset_import] == ref["opset"]
    ops = {n.op_type for n in model.graph.node}
    assert "ReduceL2" not in ops  # weight norm folded (the reference kept it)
    assert {"RandomUniform", "RandomNormalLike"} <= ops  # source noise drawn in the graph
    assert json.loads((root / f"{variant}.json").read_text()) == ref["moevs_json"]
    card = json.loads((root / variant / f"{variant}.dragonian.json").read_text())
    assert card["ModelType"] == "SoftVitsSvcV4" and card["UnitsDim"] == 768
    assert card["HasSpeakerMixLayer"] == (variant == "t_mix")
    assert card["HasVolumeEmbedding"] == (variant == "t_vol")
    assert card["SpeakerCount"] == len(VARIANTS[variant]["spk"])
    assert card["Inputs"] == [i["name"] for i in ref["inputs"]]


def _inputs(T: int, cfg: dict, seed: int):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T) / 86.13
    f0 = (220 * 2 ** (0.3 * torch.sin(2 * np.pi * 5 * t)))[None]
    uv = torch.ones(1, T)
    uv[:, T // 3 : T // 3 + max(T // 8, 2)] = 0  # an unvoiced stretch
    f0 = f0 * uv
    c = torch.randn(1, cfg["model"]["ssl_dim"], T, generator=g)
    vol = torch.rand(1, T, generator=g) * 0.2 if cfg["model"]["vol_embedding"] else None
    n_spk = len(cfg["spk"])
    if n_spk > 1:
        w = torch.rand(T, n_spk, generator=g)
        sid = w / w.sum(1, keepdim=True)
    else:
        sid = torch.LongTensor([[0]])
    return c, f0, uv, sid, vol


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / max(((ref - out) ** 2).sum(), 1e-30)))


def parity(folder: Path, lengths=LENGTHS) -> list[tuple[int, float, float]]:
    """ORT on the shipped file vs SynthesizerTrn.infer loaded as Svc loads it (weight norm kept)."""
    from common.checkpoint import load_checkpoint
    from models import SynthesizerTrn
    from onnxexport.runtime import OrtSynthesizer

    cfg = json.loads((folder / "config.json").read_text())
    net = SynthesizerTrn(cfg["data"]["filter_length"] // 2 + 1,
                         cfg["train"]["segment_size"] // cfg["data"]["hop_length"], **cfg["model"])  # fmt: skip
    load_checkpoint(folder / "model.pth", net)
    net.eval()
    if len(cfg["spk"]) > 1:
        net.EnableCharacterMix(len(cfg["spk"]))
    ort = OrtSynthesizer(folder / f"{folder.name}_SoVits.onnx", threads=2)
    assert ort.fed_source  # the shipped file was turned back into the fed form
    out = []
    for T in lengths:
        c, f0, uv, sid, vol = _inputs(T, cfg, seed=T)
        ref, _ = net.infer(c, f0, uv, g=sid, noice_scale=0.4, seed=1234, vol=vol)
        got, _ = ort.infer(c, f0, uv, g=sid, noice_scale=0.4, seed=1234, vol=vol)
        assert got.shape == ref.shape == (1, 1, T * 512)
        r, o = ref.numpy().ravel(), got.numpy().ravel()
        out.append((T, float(np.abs(r - o).max()), snr_db(r, o)))
    return out


def _check_parity(exported, variant, lengths):
    root = exported(variant)
    for T, maxdiff, snr in parity(root / variant, lengths):
        print(f"{variant} T={T}: max|diff| {maxdiff:.2e}, SNR {snr:.1f} dB "
              f"(export {exported.times[variant]:.1f} s)")  # fmt: skip
        assert snr >= 60, (variant, T, snr)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parity_with_torch_infer(exported, variant):
    _check_parity(exported, variant, (37, 200))


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(BUILD))
def test_parity_with_torch_infer_three_lengths(exported, variant):
    """The acceptance figures: 37, 200 and 861 frames for every variant."""
    _check_parity(exported, variant, LENGTHS)


def test_cluster_export_and_reference_json_fields(exported, tmp_path):
    """KMeans.npy [n_spk, K, C] in Characters order; the JSON gains Cluster/KMeansLength."""
    from common.atomic import torch_save
    from onnxexport.moevs import export_kmeans

    spk = {"b": 1, "a": 0}
    centers = {s: np.random.default_rng(i).standard_normal((7 - i, 4)).astype(np.float32)
               for i, s in enumerate(["a", "b"])}  # fmt: skip
    torch_save({s: {"n_features_in_": 4, "_n_threads": 1, "cluster_centers_": c}
                for s, c in centers.items()}, tmp_path / "kmeans_10000.pt")  # fmt: skip
    k = export_kmeans(tmp_path / "kmeans_10000.pt", spk, tmp_path)
    arr = np.load(tmp_path / "KMeans.npy", allow_pickle=False)
    assert k == 7 and arr.shape == (2, 7, 4) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[0, :6], centers["b"])  # codebook 0 = first name, "b"
    assert {tuple(r) for r in arr[0]} == {tuple(r) for r in centers["b"]}  # padded by repeats
    np.testing.assert_array_equal(arr[1], centers["a"])


def test_errors_are_one_line(exported, tmp_path):
    """The script with a checkpoint of another shape; the other cases through the same function
    in-process."""
    from onnxexport.export import export_model
    from onnxexport.loading import ExportError

    single = exported("t_single") / "t_single" / "model.pth"
    ck = tmp_path / "checkpoints"
    (ck / "badcfg").mkdir(parents=True)
    (ck / "badcfg" / "config.json").write_text('{"foo": 1}')
    (ck / "badcfg" / "model.pth").write_bytes(single.read_bytes())
    (ck / "shape").mkdir()
    (ck / "shape" / "config.json").write_text(json.dumps(tiny_cfg({"a": 0}, ssl_dim=256)))
    (ck / "shape" / "model.pth").write_bytes(single.read_bytes())
    (ck / "nomodel").mkdir()
    (ck / "notorch").mkdir()
    (ck / "notorch" / "config.json").write_text(json.dumps(tiny_cfg({"a": 0})))
    (ck / "notorch" / "model.pth").write_text("not a checkpoint")
    proc = run_script([ROOT / "onnx_export.py", "-n", "shape"], cwd=tmp_path, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "does not fit" in lines[0] and "Traceback" not in proc.stderr
    cases = {"missing": "folder not found", "nomodel": "model.pth: not found", "badcfg": "not a so-vits-svc config",
             "notorch": "not a readable torch checkpoint"}  # fmt: skip
    for name, text in cases.items():
        with pytest.raises(ExportError, match=text) as e:
            export_model(name, ck)
        assert "\n" not in str(e.value)
    assert not list(ck.rglob("*.onnx"))
