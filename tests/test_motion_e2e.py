"""Synthetic end-to-end: singing takes with generated faces → prepare → train → wav_to_visemes →
svc2ue over loopback; plus resume after kill -9. A tiny random-init voice model provides z."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import torch

from common.synthetic import DEMO_SINGERS
from motion import livelink
from motion.channels import JAW_OPEN
from motion.metrics import pearson
from motion.synthetic import write_takes
from tests.conftest import PYTHON, ROOT, run_script
from tests.infer_fixtures import infer_config, write_random_checkpoint
from tests.test_motion_capture import _free_port

TRAIN = {"learning_rate": 3e-3, "batch_size": 8, "segment_frames": 128, "log_interval": 50,
         "eval_interval": 150, "keep_ckpts": 2}  # fmt: skip
MODEL = {"hidden": 48, "n_blocks": 5}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    cfg = infer_config()
    (root / "voice.json").write_text(json.dumps(cfg))
    write_random_checkpoint(cfg, root / "G_0.pth")
    write_takes(root / "takes", DEMO_SINGERS[:1], n_per_singer=6, duration=5.0, lag=0.04)
    proc = run_script([ROOT / "motion" / "prepare_visemes.py", "--takes", "takes", "-m", "G_0.pth",
                       "-c", "voice.json", "-s", "alto", "--val", "2"], cwd=root)  # fmt: skip
    assert "4 train / 2 val takes" in proc.stdout
    for line in proc.stdout.splitlines()[1:7]:  # the injected 40 ms lag is found per take
        assert abs(float(line.split()[3]) - 40.0) < 10.0, line
    c = json.loads((root / "configs" / "visemes.json").read_text())
    c["train"].update(TRAIN)
    c["model"].update(MODEL)
    (root / "configs" / "visemes.json").write_text(json.dumps(c))
    return root


def _receiver(port: int, got: list, stop: threading.Event) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.settimeout(0.1)
    while not stop.is_set():
        try:
            got.append(s.recvfrom(2048)[0])
        except TimeoutError:
            pass
    s.close()


def test_end_to_end_prepare_train_convert_stream(prepared):
    root = prepared
    run_script([ROOT / "train_visemes.py", "-c", "configs/visemes.json", "-m", "face",
                "--max_steps", "450", "--device", "cpu"], cwd=root)  # fmt: skip
    val = json.loads((root / "logs" / "face" / "val_metrics.json").read_text())
    assert val["step"] == 450
    assert val["mean"]["corr/JawOpen"] >= 0.8, val["mean"]
    assert val["mean"]["corr/JawOpen"] > val["mean"]["baseline_corr/JawOpen"] + 0.1
    assert (root / "logs" / "face" / "V_best.pth").is_file()
    assert list((root / "logs" / "face").glob("events.out.tfevents.*"))
    # the checkpoint is plain data
    ck = torch.load(root / "logs" / "face" / "V_450.pth", weights_only=True)
    assert ck["iteration"] == 450 and ck["visemes"]["z_channels"] == 16
    from common.fingerprint import checkpoint_sha256  # which voice model's z it reads

    assert ck["visemes"]["voice_sha256"] == checkpoint_sha256(root / "G_0.pth")

    # a held-out take's audio through wav_to_visemes (voice model/speaker from the checkpoint)
    held = [line.strip() for line in (root / "filelists" / "val_visemes.txt").read_text().split()]
    corrs, base = [], []
    stats = ck["visemes"]["stats"]
    for prefix in held:
        name = prefix.split("/")[-1]
        wav = root / "takes" / name / "audio.wav"
        run_script([ROOT / "motion" / "wav_to_visemes.py", wav, "-v", "logs/face/V_450.pth"],
                   cwd=root)  # fmt: skip
        pred = np.load(root / "takes" / name / "audio.blendshapes.npy")
        true = np.load(root / f"{prefix}.bs.npy")
        mask = np.load(root / f"{prefix}.mask.npy")
        loud = np.load(root / f"{prefix}.loud.npy")
        assert pred.dtype == np.float32 and pred.shape == true.shape
        corrs.append(pearson(pred[mask, JAW_OPEN], true[mask, JAW_OPEN]))
        base.append(pearson(stats["baseline"][0] * loud[mask], true[mask, JAW_OPEN]))
        csv = (root / "takes" / name / "audio.blendshapes.csv").read_text().splitlines()
        assert (
            csv[0].startswith("Timecode,BlendshapeCount,EyeBlinkLeft") and len(csv) == len(pred) + 1
        )
    assert min(corrs) >= 0.8 and min(np.array(corrs) - np.array(base)) > 0.1, (corrs, base)

    # svc2ue: stream 1.5 s of the track at 60 fps to a loopback receiver that decodes everything
    short = root / "short.blendshapes.npy"
    np.save(short, pred[:130])
    port = _free_port()
    got: list = []
    stop = threading.Event()
    th = threading.Thread(target=_receiver, args=(port, got, stop))
    th.start()
    try:
        out = run_script([ROOT / "motion" / "svc2ue.py", short, "--target", f"127.0.0.1:{port}",
                          "--rate", "60", "--blinks"], cwd=root)  # fmt: skip
        time.sleep(0.3)
    finally:
        stop.set()
        th.join()
    packets = [livelink.decode(g) for g in got]  # raises on any malformed packet
    n = int(np.floor(129 / (44100 / 512) * 60)) + 1
    assert len(packets) == n and f"sent {n} frames" in out.stdout
    assert [p.frame for p in packets] == list(range(packets[0].frame, packets[0].frame + n))
    assert all((p.rate_num, p.rate_den) == (60, 1) for p in packets)
    jaw = np.array([p.values[JAW_OPEN] for p in packets])
    src = pred[:130, JAW_OPEN]
    np.testing.assert_allclose(jaw, np.interp(np.arange(n) / 60, np.arange(130) / (44100 / 512), src),
                               atol=1e-5)  # fmt: skip


@pytest.mark.slow  # subprocess-heavy; the default run keeps the in-process checks
def test_resume_after_kill_9(prepared):
    root = prepared
    args = [PYTHON, ROOT / "train_visemes.py", "-c", "configs/visemes.json", "-m", "killed",
            "--max_steps", "30", "--device", "cpu"]  # fmt: skip
    c = json.loads((root / "configs" / "visemes.json").read_text())
    c["train"].update(eval_interval=10)
    (root / "configs" / "visemes.json").write_text(json.dumps(c))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(list(map(str, args)), cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    first = root / "logs" / "killed" / "V_10.pth"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists()
    done = run_script(args[1:], cwd=root)
    assert "resumed from" in done.stderr and "V_" in done.stderr
    ck = torch.load(root / "logs" / "killed" / "V_30.pth", weights_only=True)
    assert ck["iteration"] == 30
    assert not list((root / "logs" / "killed").glob(".V_*.tmp"))
    c["train"].update(TRAIN)
    (root / "configs" / "visemes.json").write_text(json.dumps(c))
