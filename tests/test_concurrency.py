"""Two runs of one step on one folder, and kill -9 during k-means / index training."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from common.atomic import torch_save
from common.features import feature_problem
from common.synthetic import DEMO_SINGERS, write_dataset
from tests.conftest import ROOT, run_script

ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def start(args, cwd, log):
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd, env=ENV, stdout=log,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip


def run_two(args, cwd, tmp_path, name):
    """Start the same command twice at once; wait for both; return their outputs."""
    logs = [open(tmp_path / f"{name}_{i}.log", "w+") for i in range(2)]
    procs = [start(args, cwd, log) for log in logs]
    outs = []
    for p, log in zip(procs, logs):
        assert p.wait(timeout=600) == 0, (log.seek(0), log.read())[1]
        log.seek(0)
        outs.append(log.read())
        log.close()
    for out in outs:
        assert "Traceback" not in out and " 0 failed" in out and "error" not in out.lower(), out
    return outs


def done_count(out: str, what: str) -> tuple[int, int]:
    m = re.search(rf"^{what}: (\d+) done, (\d+) already up to date", out, re.M)
    return int(m.group(1)), int(m.group(2))


def test_two_concurrent_resample_and_feature_runs(tmp_path):
    """Both finish with exit 0; every output is valid; no file is done twice (the second waits
    for the first, then finds everything up to date); no temporary file is left."""
    from tests.infer_fixtures import infer_config, write_pretrain

    n = 8
    write_dataset(tmp_path / "dataset_raw", DEMO_SINGERS, files_per_singer=n // 2, duration=1.5)
    outs = run_two([ROOT / "resample.py", "--num_processes", "1"], tmp_path, tmp_path, "resample")
    counts = [done_count(o, "resample") for o in outs]
    assert sum(d for d, _ in counts) == n and all(d + s == n for d, s in counts), outs
    wavs = sorted((tmp_path / "dataset" / "44k").rglob("*.wav"))
    assert len(wavs) == n
    for w in wavs:
        info = sf.info(w)
        assert info.samplerate == 44100 and info.subtype == "PCM_16" and info.frames > 44100

    write_pretrain(tmp_path / "pretrain")  # tiny hubert-soft, ssl_dim 8
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.json").write_text(json.dumps(infer_config()))
    feats = ["--f0_predictor", "pm", "-c", "configs/config.json"]
    outs = run_two([ROOT / "preprocess_hubert_f0.py", *feats], tmp_path, tmp_path, "features")
    counts = [done_count(o, "features") for o in outs]
    assert sum(d for d, _ in counts) == n and all(d + s == n for d, s in counts), outs
    for w in wavs:
        frames = sf.info(w).frames
        for p in (f"{w}.soft.pt", f"{w}.f0.npy", str(w).replace(".wav", ".spec.pt")):
            assert feature_problem(p, frames, 8) is None, p
    assert not list(tmp_path.rglob("*.tmp"))


def _features(root, speakers: dict[str, int], dim: int = 64) -> None:
    """``root/<spk>/*.wav.soft.pt``: ``speakers[spk]`` frames of random ``dim``-wide units."""
    g = torch.Generator().manual_seed(0)
    for spk, frames in speakers.items():
        (root / spk).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            torch_save(
                torch.randn(1, dim, frames // 4, generator=g), root / spk / f"{i}.wav.soft.pt"
            )


def _killed_then_rerun(tmp_path, args, running: str, output_name: str):
    """kill -9 the step once its log shows ``running``: the final file is never half-written;
    the re-run removes the temporary a killed write left (planted here) and finishes."""
    data, out = tmp_path / "dataset" / "44k", tmp_path / "logs" / "44k"
    _features(data, {"alto": 400, "bass": 4000})
    out.mkdir(parents=True)
    (out / f".{output_name}.x1y2z3.tmp").write_bytes(b"half a file")  # a kill during a save
    args = [a.format(data=data, out=out, root=tmp_path) for a in args]
    log_path = tmp_path / "step.log"
    with open(log_path, "w") as log:
        proc = start(args, tmp_path, log)
        deadline = time.time() + 300
        while time.time() < deadline and running not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "the kill should land while the step is running"
    assert not (out / output_name).exists()
    run_script(args, cwd=tmp_path)
    assert not list(out.glob("*.tmp"))
    return out / output_name


@pytest.mark.slow
def test_kmeans_killed_then_rerun(tmp_path):
    from cluster import get_cluster_model

    args = [str(ROOT / "cluster" / "train_cluster.py"), "--dataset", "{data}", "--output", "{out}",
            "--n_clusters", "50"]  # fmt: skip
    path = _killed_then_rerun(tmp_path, args, "train kmeans for alto", "kmeans_50.pt")
    model = get_cluster_model(path)
    assert set(model) == {"alto", "bass"} and model["bass"].cluster_centers_.shape == (50, 64)


@pytest.mark.slow
def test_index_killed_then_rerun(tmp_path):
    from cluster.feature_index import load_feature_index
    from training.synthetic import tiny_config

    (tmp_path / "config.json").write_text(json.dumps(tiny_config({"alto": 0, "bass": 1})))
    args = [str(ROOT / "train_index.py"), "--root_dir", "{data}", "-c", "{root}/config.json",
            "--output_dir", "{out}", "--seed", "0"]  # fmt: skip
    path = _killed_then_rerun(tmp_path, args, "index alto feature", "feature_and_index.npz")
    idx = load_feature_index(path)
    assert set(idx) == {0, 1} and idx[1].ntotal == 4000
    assert np.isfinite(idx[0].rows).all()
