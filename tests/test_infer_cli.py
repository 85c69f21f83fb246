"""inference_main.py end to end (subprocess), with a random-init 4.1-layout checkpoint and with a
checkpoint written by our train.py: flags of §2.8, output names, rate, length, determinism."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import ROOT, run_script
from tests.infer_fixtures import SPK, make_workdir

MAIN = ROOT / "inference_main.py"
BASE = ["-m", "logs/44k/G_0.pth", "-c", "logs/44k/config.json"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("infer_work")
    info = make_workdir(root)
    from modules.f0.rmvpe import E2E0  # a random RMVPE in the real file format

    torch.manual_seed(0)
    torch.save({"model": E2E0(4, 1, (2, 2)).state_dict()}, root / "pretrain" / "rmvpe.pt")
    return root, info


def expected_len(info, name):
    n, sr = info["inputs"][name]
    return round(n * 44100 / sr)


def convert(root, *args, check=True):
    return run_script([MAIN, *BASE, *map(str, args)], cwd=root, check=check)


def check_output(root, info, out_name, in_name):
    path = root / "results" / out_name
    assert path.is_file(), sorted(p.name for p in (root / "results").iterdir())
    data, sr = sf.read(path)
    assert sr == 44100 and data.ndim == 1
    assert abs(len(data) - expected_len(info, in_name)) <= 512
    assert np.isfinite(data).all()
    return data


def test_defaults_many_inputs_and_trans_fill(work):
    root, info = work
    proc = convert(
        root, "-n", "song", "st48.flac", "low.ogg", "-t", "0", "3", "-s", "alto", "-wf", "wav"
    )
    assert "wrote results/" in proc.stderr
    # -t is padded with its first value (fill_a_to_b): low.ogg gets 0
    a = check_output(root, info, "song_0key_alto_sovits_pm.wav", "song.wav")
    check_output(root, info, "st48.flac_3key_alto_sovits_pm.wav", "st48.flac")
    check_output(root, info, "low.ogg_0key_alto_sovits_pm.wav", "low.ogg")
    assert a[: int(3.0 * 44100)].std() > 1e-4  # the voiced part is not silent
    assert np.all(a[int(3.5 * 44100) :] == 0)  # the trailing silence chunk is zeros


def test_same_seed_is_bit_identical_other_seed_is_not(work, tmp_path):
    root, info = work
    outs = []
    for seed in (7, 7, 8):
        args = [
            "-n",
            "low.ogg",
            "-s",
            "bass",
            "-wf",
            "wav",
            "--seed",
            seed,
            "-cl",
            "1",
            "-lg",
            "0.3",
        ]
        convert(root, *args)
        path = root / "results" / "low.ogg_0key_bass_sovits_pm.wav"
        outs.append(path.read_bytes())
        path.unlink()
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


@pytest.mark.parametrize(
    "f0p",
    ["dio", "harvest", "fcpe", pytest.param("crepe", marks=pytest.mark.slow),
     pytest.param("rmvpe", marks=pytest.mark.slow)],
)  # fmt: skip
def test_each_f0_predictor(work, f0p):
    root, info = work
    convert(root, "-n", "low.ogg", "-s", "alto", "-f0p", f0p, "-t", "-2", "-ft", "0.1")
    check_output(root, info, f"low.ogg_-2key_alto_sovits_{f0p}.flac", "low.ogg")


def test_clip_crossfade_kmeans_loudness(work):
    root, info = work
    convert(root, "-n", "song", "-s", "bass", "-cl", "1", "-lg", "0.25", "-lgr", "0.5", "-cr", "0.5",
            "-lea", "0", "-p", "0.2", "-wf", "flac")  # fmt: skip
    check_output(root, info, "song_0key_bass_0.5_sovits_pm.flac", "song.wav")


def test_retrieval_enhancer_auto_f0(work):
    root, info = work
    convert(
        root,
        "-n",
        "st48.flac",
        "-s",
        "1",
        "-fr",
        "-cr",
        "0.7",
        "-eh",
        "-eak",
        "2",
        "-a",
        "-wf",
        "wav",
    )
    check_output(root, info, "st48.flac_auto_1_0.7_sovits_pm.wav", "st48.flac")


def test_reference_pickle_index_path(work, tmp_path):
    """-fr with a -cm that is a hostile .pkl: refused with the rebuild hint, nothing run."""
    root, _ = work
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch PWNED",))

    bad = tmp_path / "feature_and_index.pkl"
    bad.write_bytes(pickle.dumps({0: Evil()}))
    proc = convert(root, "-n", "song", "-s", "alto", "-fr", "-cr", "0.5", "-cm", bad, check=False)
    assert proc.returncode == 1 and "train_index.py" in proc.stderr
    assert not (root / "PWNED").exists()


def test_speaker_mix(work):
    root, info = work
    convert(root, "-n", "song", "-usm", "-cl", "2", "-lg", "0.5", "-lea", "0.5")
    check_output(root, info, "song_0key_spk_mix_sovits_pm.flac", "song.wav")


def test_errors_are_clear(work):
    root, _ = work
    proc = convert(root, "-n", "song", "-s", "alto", "-shd", check=False)  # no diffusion model
    assert proc.returncode == 1 and "logs/44k/diffusion/model_0.pt" in proc.stderr
    proc = convert(root, "-n", "song", "-s", "nobody", check=False)
    assert proc.returncode == 1 and "not in the speaker list" in proc.stderr
    proc = convert(root, "-n", "song", "-s", "2", check=False)  # ids are 0..1
    assert proc.returncode == 1 and "not in the speaker list" in proc.stderr
    proc = convert(root, "-n", "missing", "-s", "alto", check=False)
    assert proc.returncode == 1 and "raw/missing.wav" in proc.stderr
    proc = convert(root, "-n", "song", "-s", "alto", "-cr", "0.5", "-cm", "nope.pt", check=False)
    assert proc.returncode == 1 and "nope.pt: not found" in proc.stderr
    proc = convert(root, "-n", "song", "-s", "alto", "-wf", "xyz", check=False)
    assert proc.returncode == 2 and "xyz" in proc.stderr


@pytest.mark.slow
def test_vol_embedding_model(tmp_path):
    make_workdir(tmp_path, vol_embedding=True)
    convert(tmp_path, "-n", "low.ogg", "-s", "alto", "-wf", "wav")
    data, sr = sf.read(tmp_path / "results" / "low.ogg_0key_alto_sovits_pm.wav")
    assert sr == 44100 and np.isfinite(data).all()


@pytest.mark.slow
def test_checkpoint_from_train_py(work, tmp_path):
    """Train one step with our train.py on a synthetic set, then convert with its G_0.pth."""
    from tests.infer_fixtures import infer_config
    from training.synthetic import write_training_set

    root, info = work
    ds = write_training_set(tmp_path, n_speakers=2, files_per_speaker=2, duration=1.0, ssl_dim=8)
    cfg = infer_config()
    cfg["spk"] = ds["spk"]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.json").write_text(json.dumps(cfg))
    run_script([ROOT / "train.py", "-c", "configs/config.json", "-m", "44k", "--max_steps", "1",
                "--eval_interval", "1", "--device", "cpu", "--num_workers", "0"], cwd=tmp_path)  # fmt: skip
    g = tmp_path / "logs" / "44k" / "G_0.pth"
    assert g.is_file()
    for sub in ("pretrain", "raw"):
        shutil.copytree(root / sub, tmp_path / sub, dirs_exist_ok=True)
    spk = next(iter(ds["spk"]))
    run_script([MAIN, "-m", g, "-c", tmp_path / "logs" / "44k" / "config.json", "-n", "song", "-s", spk],
               cwd=tmp_path)  # fmt: skip
    data, sr = sf.read(tmp_path / "results" / f"song_0key_{spk}_sovits_pm.flac")
    assert sr == 44100 and abs(len(data) - expected_len(info, "song.wav")) <= 512


def test_spk_names_match_config(work):
    _, info = work
    assert info["config"]["spk"] == SPK
