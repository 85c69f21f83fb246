"""common/: atomic writes, config access, audio I/O, safe checkpoint I/O."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from common import atomic, checkpoint, features
from common.audio import AudioError, load_audio, save_wav_int16, trim_silence
from common.hparams import HParams, InferHParams, load_config


class Evil:
    """Unpickling this would create a marker file (through os.system)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "a.txt"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError), atomic.atomic_open(target, "w") as f:
        f.write("new, half written")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]  # temp file removed


def test_save_npy_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError):
        atomic.save_npy(tmp_path / "x.npy", np.array([np.zeros(2), 1.0], dtype=object))


def test_hparams_attribute_access_and_infer_defaults(tmp_path):
    cfg = {"train": {"batch_size": 6}, "model": {"ssl_dim": 768}, "spk": {"a": 0}}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    hps = load_config(tmp_path / "c.json")
    assert hps.train.batch_size == 6 and hps["model"]["ssl_dim"] == 768
    assert hps.to_dict() == cfg
    with pytest.raises(AttributeError):
        _ = hps.model.vol_embedding
    ihps = load_config(tmp_path / "c.json", infer=True)
    assert isinstance(ihps, InferHParams)
    assert ihps.model.vol_embedding is None and ihps.data is None
    assert HParams(a={"b": 1}).a.b == 1


def test_load_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_config(tmp_path / "missing.json")


def test_load_audio_errors(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(os.urandom(5000))
    nan = np.zeros(1000, np.float32)
    nan[10] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    for name, why in [("empty.wav", "empty"), ("junk.wav", "not a readable"), ("nan.wav", "NaN")]:
        with pytest.raises(AudioError, match=why) as e:
            load_audio(tmp_path / name)
        assert name in str(e.value)


def test_load_audio_mono_resample_and_int16_roundtrip(tmp_path):
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 200 * t), np.zeros_like(t)], 1).astype(np.float32) * 0.5
    sf.write(tmp_path / "s.wav", stereo, 8000, subtype="PCM_24")
    wav, sr = load_audio(tmp_path / "s.wav", sr=44100)
    assert sr == 44100 and wav.ndim == 1 and abs(len(wav) - 44100) <= 1
    assert 0.2 < np.abs(wav).max() < 0.3  # channel average of 0.5 and 0
    save_wav_int16(tmp_path / "o.wav", wav, sr)
    info = sf.info(tmp_path / "o.wav")
    assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")


def test_trim_matches_librosa():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    y = np.concatenate([np.zeros(7000), rng.normal(0, 0.3, 20000), 1e-4 * rng.normal(size=9000)])
    y = y.astype(np.float32)
    expected, _ = librosa.effects.trim(y, top_db=40)
    assert np.array_equal(trim_silence(y, 40), expected)


def test_checkpoint_roundtrip(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    path = tmp_path / "G_10.pth"
    checkpoint.save_checkpoint(model, opt, 1e-4, 7, path)
    raw = checkpoint.safe_load(path)
    assert set(raw) == {"model", "iteration", "optimizer", "learning_rate"}
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-4)
    _, _, lr, it = checkpoint.load_checkpoint(path, fresh, opt2)
    assert (lr, it) == (1e-4, 7)
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert opt2.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])


def test_load_checkpoint_keeps_fresh_values_for_missing_and_mismatched(tmp_path, caplog):
    src = torch.nn.ModuleDict({"emb_g": torch.nn.Embedding(5, 4), "pre": torch.nn.Linear(4, 4)})
    checkpoint.save_checkpoint(src, None, 1e-4, 1, tmp_path / "G_0.pth")
    dst = torch.nn.ModuleDict(
        {
            "emb_g": torch.nn.Embedding(2, 4),
            "pre": torch.nn.Linear(4, 4),
            "extra": torch.nn.Linear(2, 2),
        }
    )
    emb_before = dst.emb_g.weight.detach().clone()
    with caplog.at_level("WARNING"):
        checkpoint.load_checkpoint(tmp_path / "G_0.pth", dst)
    assert torch.equal(dst.emb_g.weight, emb_before)  # shape mismatch: re-initialised value kept
    assert torch.equal(dst.pre.weight, src.pre.weight)
    text = caplog.text
    assert (
        "emb_g.weight has shape (5, 4)" in text and "extra.weight is not in the checkpoint" in text
    )


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "G_1.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "x": Evil(marker)}, path)
    with pytest.raises(checkpoint.CheckpointError, match="refused to load"):
        checkpoint.safe_load(path)
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load_checkpoint(path, torch.nn.Linear(1, 1))
    assert not marker.exists()
    # Control: the same file really would run code if unpickled unsafely.
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    assert marker.exists()


def test_safe_load_reads_numpy_and_fairseq_dictionary(tmp_path):
    # A kmeans_10000.pt-like dict with numpy centres loads.
    km = {
        "spk": {
            "n_features_in_": 4,
            "_n_threads": 4,
            "cluster_centers_": np.ones((3, 4), np.float32),
        }
    }
    torch.save(km, tmp_path / "kmeans_10000.pt")
    out = checkpoint.safe_load(tmp_path / "kmeans_10000.pt")
    assert out["spk"]["cluster_centers_"].shape == (3, 4)

    # A fairseq-style task_state holding a Dictionary global loads through the inert stand-in.
    class Dictionary:
        def __init__(self):
            self.symbols = ["<s>"]

    Dictionary.__module__ = "fairseq.data.dictionary"
    Dictionary.__qualname__ = "Dictionary"
    names = ("fairseq", "fairseq.data", "fairseq.data.dictionary")
    for name in names:
        sys.modules[name] = type(sys)(name)
    sys.modules["fairseq.data.dictionary"].Dictionary = Dictionary
    try:
        torch.save(
            {"task_state": {"dictionaries": [Dictionary()]}, "model": {}}, tmp_path / "fs.pt"
        )
    finally:
        for name in names:
            del sys.modules[name]
    out = checkpoint.safe_load(tmp_path / "fs.pt")
    assert isinstance(out["task_state"]["dictionaries"][0], checkpoint.FairseqDictionaryStandIn)


def test_latest_and_clean_checkpoints(tmp_path):
    d = tmp_path / "logs 2024" / "44k"
    d.mkdir(parents=True)
    for step in (0, 800, 1600, 2400, 10000):
        for p in "GD":
            (d / f"{p}_{step}.pth").write_bytes(b"x")
    assert checkpoint.latest_checkpoint_path(d, "G_*.pth").endswith("G_10000.pth")
    checkpoint.clean_checkpoints(d, 2)
    assert sorted(os.listdir(d)) == sorted(f"{p}_{s}.pth" for p in "GD" for s in (0, 2400, 10000))


def test_f0_file_is_plain_and_legacy_is_detected(tmp_path):
    f0 = np.array([0.0, 220.0, 221.0], np.float32)
    features.save_f0(tmp_path / "a.wav.f0.npy", f0, f0 > 0)
    arr = np.load(tmp_path / "a.wav.f0.npy", allow_pickle=False)
    assert arr.dtype == np.float32 and arr.shape == (2, 3)
    got_f0, got_uv = features.load_f0(tmp_path / "a.wav.f0.npy")
    assert np.array_equal(got_f0, f0) and np.array_equal(got_uv, [0, 1, 1])
    legacy = np.asanyarray((np.zeros(3), np.ones(3)), dtype=object)
    np.save(tmp_path / "old.wav.f0.npy", legacy, allow_pickle=True)
    with pytest.raises(features.LegacyFeatureFile):
        features.load_f0(tmp_path / "old.wav.f0.npy")
    assert features.spec_path("d/x.wav") == "d/x.spec.pt"
