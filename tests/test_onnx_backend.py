"""ONNX Runtime use of exported files: a consumer that knows nothing of this project (inputs by
position, as DragonianLib builds them), ``inference_main.py --backend onnx`` against the torch
backend, and ``onnx_export.py --encoder`` against the torch encoder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import ROOT, run_script

# Runs with `python -I` from a folder outside the repository: numpy + onnxruntime only.
CONSUMER = r"""
import json, sys
import numpy as np
import onnxruntime as ort

try:
    import models  # noqa: F401  (must not be importable: this consumer knows nothing of the project)
    sys.exit("the project is importable from the consumer")
except ImportError:
    pass

model_path, card_path, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
card = json.load(open(card_path))
sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
ins = sess.get_inputs()
expected = 5 + (card["HasSpeakerEmbedding"] or card["HasSpeakerMixLayer"]) + card["HasVolumeEmbedding"]
assert len(ins) == expected, (len(ins), expected)
rng = np.random.default_rng(0)
sr, hop, dim = card["OutputSamplingRate"], card["HopSize"], card["UnitsDim"]
noise_dims = int(card["ExtendedParameters"]["NoiseDims"])
assert ins[0].shape[-1] == dim and ins[4].shape[1] == noise_dims
# units at the encoder's rate (16 kHz, hop 320) for `frames` output frames
unit_frames = int(frames * hop / sr * 16000 / 320) + 1
units = rng.standard_normal((1, unit_frames, dim)).astype(np.float32)
t = np.arange(frames)
f0 = (200.0 * 2 ** (np.sin(t / 9.0) / 6)).astype(np.float32)[None]
mel2ph = (np.floor(t * unit_frames / frames) + 1).astype(np.int64)[None]
uv = np.ones((1, frames), np.float32)
noise = (rng.standard_normal((1, noise_dims, frames)) * 0.4).astype(np.float32)
feeds = [units, f0, mel2ph, uv, noise]
if card["HasSpeakerMixLayer"]:
    mix = rng.random((frames, card["SpeakerCount"])).astype(np.float32)
    feeds.append(mix / mix.sum(1, keepdims=True))
elif card["HasSpeakerEmbedding"]:
    feeds.append(np.array([0], np.int64))
if card["HasVolumeEmbedding"]:
    feeds.append(rng.random((1, frames)).astype(np.float32) * 0.2)
audio = sess.run(None, {i.name: v for i, v in zip(ins, feeds)})[0]
assert audio.shape == (1, 1, frames * hop), audio.shape
assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
print(json.dumps({"inputs": [i.name for i in ins], "samples": int(audio.shape[-1])}))
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The tiny inference work folder (tests/infer_fixtures.py) with the model also placed as
    checkpoints/m/{model.pth, config.json} and exported with onnx_export.py (+ --encoder)."""
    from tests.infer_fixtures import make_workdir

    root = tmp_path_factory.mktemp("onnx_backend")
    info = make_workdir(root)
    ck = root / "checkpoints" / "m"
    ck.mkdir(parents=True)
    (ck / "model.pth").write_bytes((root / "logs" / "44k" / "G_0.pth").read_bytes())
    (ck / "config.json").write_bytes((root / "logs" / "44k" / "config.json").read_bytes())
    proc = run_script([ROOT / "onnx_export.py", "-n", "m", "--encoder", "--cluster",
                       "logs/44k/kmeans_10000.pt"], cwd=root)  # fmt: skip
    assert "wrote checkpoints/hubert/hubert-soft.onnx" in proc.stdout, proc.stdout
    return root, info


def test_pure_onnxruntime_consumer(work, tmp_path):
    root, _ = work
    for frames in (40, 173):
        (tmp_path / "consumer.py").write_text(CONSUMER)
        proc = subprocess.run(
            [sys.executable, "-I", str(tmp_path / "consumer.py"),
             str(root / "checkpoints" / "m" / "m_SoVits.onnx"),
             str(root / "checkpoints" / "m" / "m.dragonian.json"), str(frames)],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["inputs"] == ["c", "f0", "mel2ph", "uv", "noise", "sid"]
        assert out["samples"] == frames * 512


def test_moevs_json_with_cluster(work):
    root, _ = work
    moevs = json.loads((root / "checkpoints" / "m.json").read_text())
    assert moevs["Cluster"] == "KMeans" and moevs["Hubert"] == "hubert-soft"
    assert moevs["Characters"] == ["alto", "bass"] and moevs["CharaMix"] is True
    km = np.load(root / "checkpoints" / "m" / "KMeans.npy", allow_pickle=False)
    assert km.shape == (2, moevs["KMeansLength"], moevs["HiddenSize"])


def _snr(a, b):
    return float(10 * np.log10((a**2).sum() / max(((a - b) ** 2).sum(), 1e-30)))


@pytest.fixture(scope="module")
def torch_outputs(work):
    """The torch backend's conversions of raw/song.wav, keyed by case."""
    from inference.cli import load_spk_mix_map
    from inference.infer_tool import Svc

    root, _ = work
    with _cwd(root):
        svc = Svc("logs/44k/G_0.pth", "logs/44k/config.json", "cpu", spk_mix_enable=True, **SVC_KW)
        out = {}
        for case in CASES:
            args, kw = _case_args(case, load_spk_mix_map)
            out[case] = svc.slice_inference("raw/song.wav", *args, **kw)
        return out


SVC_KW = dict(cluster_model_path="logs/44k/kmeans_10000.pt", pretrain_dir="pretrain")
CASES = ("alto", "bass_cluster_loudness", "mix")


def _case_args(case, load_mix):
    """``slice_inference`` arguments: (spk, tran, slice_db, ratio, auto_f0, noise) + keywords."""
    kw = dict(f0_predictor="dio")
    if case == "alto":
        return ("alto", 0, -40, 0, False, 0.4), kw
    if case == "bass_cluster_loudness":
        return ("bass", 0, -40, 0.5, False, 0.4), dict(kw, loudness_envelope_adjustment=0.3)
    return (load_mix("spkmix.py")[0], 0, -40, 0, False, 0.4), dict(kw, use_spk_mix=True)


class _cwd:
    def __init__(self, path):
        self.path, self.old = path, None

    def __enter__(self):
        import os

        self.old = os.getcwd()
        os.chdir(self.path)

    def __exit__(self, *exc):
        import os

        os.chdir(self.old)


def test_backend_onnx_equals_torch(work, torch_outputs):
    """Svc(backend="onnx") exporting on first use into logs/44k/onnx_cache/, with a speaker,
    k-means and the loudness envelope, and with a dynamic mix: same length, SNR ≥ 60 dB against
    the torch backend."""
    from inference.cli import load_spk_mix_map
    from inference.infer_tool import Svc

    root, info = work
    with _cwd(root):
        svc = Svc("logs/44k/G_0.pth", "logs/44k/config.json", "cpu", spk_mix_enable=True,
                  backend="onnx", **SVC_KW)  # fmt: skip
        assert list(Path("logs/44k/onnx_cache").glob("G_0-*_SoVits.onnx"))
        for case in CASES[1:]:
            args, kw = _case_args(case, load_spk_mix_map)
            b = svc.slice_inference("raw/song.wav", *args, **kw)
            a = torch_outputs[case]
            assert len(a) == len(b) == info["inputs"]["song.wav"][0]
            print(f"backend onnx vs torch ({case}): SNR {_snr(a, b):.1f} dB")
            assert _snr(a, b) >= 60


def test_inference_main_backend_onnx(work, torch_outputs):
    """The CLI with --backend onnx and the file onnx_export.py wrote: same output name and length
    as the torch backend, same audio; -a is refused in one line."""
    root, info = work
    args = [ROOT / "inference_main.py", "-m", "logs/44k/G_0.pth", "-c", "logs/44k/config.json",
            "-n", "song.wav", "-s", "alto", "-f0p", "dio", "-wf", "wav"]  # fmt: skip
    run_script(
        [*args, "--backend", "onnx", "--onnx_model", "checkpoints/m/m_SoVits.onnx"], cwd=root
    )
    # the torch backend's output name for these flags (inference/cli.py output_name)
    onnx_audio, sr = sf.read(root / "results" / "song.wav_0key_alto_sovits_dio.wav")
    torch_audio = torch_outputs["alto"]
    assert len(onnx_audio) == len(torch_audio) == info["inputs"]["song.wav"][0] and sr == 44100
    snr = _snr(torch_audio, onnx_audio)
    print(f"inference_main.py --backend onnx (16-bit wav) vs torch backend: SNR {snr:.1f} dB")
    assert snr >= 50  # 16-bit file against the float output
    proc = run_script([*args, "--backend", "onnx", "-a"], cwd=root, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("-a ")
    assert "Traceback" not in proc.stderr


def _encoder_parity(path: Path, enc, lengths) -> None:
    """MoeVoiceStudio's names (``source`` [1, 1, L] → ``embed`` [1, T, C]) and the torch
    encoder's units from the same file, at each length."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["source"]
    assert [o.name for o in sess.get_outputs()] == ["embed"]
    for n in lengths:
        wav = torch.from_numpy(np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1)
        want = enc.encoder(wav).transpose(1, 2).numpy()
        got = sess.run(None, {"source": wav.numpy().reshape(1, 1, -1)})[0]
        assert got.shape == want.shape
        snr = _snr(want, got)
        print(f"{path.name} L={n}: max|diff| {np.abs(got - want).max():.2e}, SNR {snr:.1f} dB")
        assert snr >= 60


def test_encoder_export_parity(work):
    """checkpoints/hubert/hubert-soft.onnx from onnx_export.py --encoder."""
    from vencoder import get_speech_encoder

    root, _ = work
    enc = get_speech_encoder("hubertsoft", "cpu", root / "pretrain")
    _encoder_parity(root / "checkpoints" / "hubert" / "hubert-soft.onnx", enc, (16000, 27361))


@pytest.mark.parametrize("name", ["vec768l12", "vec256l9"])
def test_contentvec_encoder_export(tmp_path, name):
    """vec-768-layer-12.onnx / vec-256-layer-9.onnx from a tiny ContentVec file in fairseq's
    format (the reference layout in tests/data/formats)."""
    from onnxexport.encoder import export_encoder
    from tests.vencoder_checkpoints import TINY_CONTENTVEC, reference_json, write_fairseq_hubert
    from vencoder import get_speech_encoder

    ref = reference_json("checkpoint_best_legacy_500.json")
    pt = tmp_path / "checkpoint_best_legacy_500.pt"
    write_fairseq_hubert(pt, ref, TINY_CONTENTVEC, [str(i) for i in range(500)])
    path, _ = export_encoder(name, tmp_path / "hubert", pt)
    expected = {"vec768l12": "vec-768-layer-12.onnx", "vec256l9": "vec-256-layer-9.onnx"}
    assert path.name == expected[name]
    _encoder_parity(path, get_speech_encoder(name, "cpu", path=pt), (16000, 23457))


def test_faiss_index_export(work, tmp_path):
    """feature_and_index.npz → Index-<i>.index, i = position in the config's spk (faiss files)."""
    import faiss

    from cluster.feature_index import load_feature_index
    from onnxexport.moevs import export_index

    root, info = work
    spk = info["config"]["spk"]
    src = root / "logs" / "44k" / "feature_and_index.npz"
    assert export_index(src, spk, tmp_path) == len(spk)
    ours = load_feature_index(src)
    for i, sid in enumerate(spk.values()):
        index = faiss.read_index(str(tmp_path / f"Index-{i}.index"))
        assert index.ntotal == ours[sid].ntotal and index.d == ours[sid].index.d
        np.testing.assert_array_equal(index.reconstruct_n(0, index.ntotal), ours[sid].rows)
