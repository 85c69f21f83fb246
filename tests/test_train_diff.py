"""train_diff.py on a tiny synthetic set with every --use_diff feature (sovits-4.1.md §13):
data set crops and augmentation, SIGKILL then an exact resume, checkpoint pruning, TensorBoard,
fine-tuning from a reference-layout model_0.pt, one-line errors, torchrun DDP (slow)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from common.hparams import HParams
from tests.conftest import ROOT, run_script
from tests.diffusion_fixtures import write_diffusion, write_diffusion_training_set

TRAIN = ROOT / "train_diff.py"


@pytest.fixture(scope="module")
def dset(tmp_path_factory):
    root = tmp_path_factory.mktemp("difftrain")
    info = write_diffusion_training_set(root, k_step_max=0)
    cfg = info["config"]
    cfg["model"]["k_step_max"] = 100  # shallow-only: validation samples 2 steps
    (root / "configs" / "diffusion.yaml").write_text(yaml.safe_dump(cfg))
    return root, info


def _config(root, name, **train):
    cfg = yaml.safe_load((root / "configs" / "diffusion.yaml").read_text())
    cfg["env"]["expdir"] = f"logs/44k/{name}"
    cfg["train"].update(train)
    path = root / "configs" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return f"configs/{name}.yaml"


def _train(root, cfg, *extra, check=True, env=None):
    return run_script([TRAIN, "-c", cfg, "--device", "cpu", *extra], cwd=root, check=check, env=env)


def test_dataset_crops_and_augmentation(dset, monkeypatch):
    from diffusion.data import DiffusionDataset, collate

    root, info = dset
    monkeypatch.chdir(root)
    args = HParams(**yaml.safe_load((root / "configs" / "diffusion.yaml").read_text()))
    ds = DiffusionDataset(args.data.training_files, args, train=True, seed=1)
    frames = int(0.5 / (512 / 44100))
    shifts = set()
    for epoch in range(6):
        ds.epoch = epoch
        for i in range(len(ds)):
            it = ds[i]
            assert it["mel"].shape == (frames, 128) and it["units"].shape == (frames, 8)
            assert it["f0"].shape == it["volume"].shape == (frames, 1)
            assert int(it["spk_id"]) == info["spk"][os.path.basename(os.path.dirname(it["name"]))]
            shifts.add(float(it["aug_shift"]))
            ds.epoch = epoch
            assert torch.equal(ds[i]["mel"], it["mel"])  # same (epoch, index): same crop
    assert 0.0 in shifts and len(shifts) > 2  # both plain and key-shifted items
    b = collate([ds[0], ds[1]])
    assert b["mel"].shape == (2, frames, 128) and b["aug_shift"].shape == (2, 1, 1)


def test_sigkill_then_exact_resume(dset):
    root, _ = dset
    straight = _config(root, "straight")
    _train(root, straight, "--max_steps", "10")
    done = root / "logs/44k/straight"
    assert sorted(p.name for p in done.glob("model_*.pt")) == [
        "model_10.pt",
        "model_8.pt",
    ]  # 4 pruned
    ref = torch.load(done / "model_10.pt", weights_only=True)
    assert {"global_step", "model", "optimizer"} <= set(ref) and ref["global_step"] == 10
    assert (done / "log_info.txt").read_text().count("loss:") == 10
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(done / "logs"), size_guidance={"images": 0, "audio": 0})
    ea.Reload()
    assert {"train/loss", "train/lr", "validation/loss"} <= set(ea.Tags()["scalars"])
    assert any(t.endswith("/spec") for t in ea.Tags()["images"])
    assert any(t.endswith("/pred.wav") for t in ea.Tags()["audio"])

    killed = _config(root, "killed")
    exp = root / "logs/44k/killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOVITS_DIFF_STEP_SLEEP": "0.5"}
    proc = subprocess.Popen([sys.executable, str(TRAIN), "-c", killed, "--device", "cpu",
                             "--max_steps", "10"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None and not (exp / "model_4.pt").exists():
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    steps = sorted(int(p.stem.split("_")[1]) for p in exp.glob("model_*.pt"))
    assert steps and steps[-1] < 10
    out = _train(root, killed, "--max_steps", "10")
    assert f"Resuming from logs/44k/killed/model_{steps[-1]}.pt (step {steps[-1]}" in out.stdout
    assert f"step: {steps[-1] + 1} |" in out.stdout and f"step: {steps[-1]} |" not in out.stdout
    got = torch.load(exp / "model_10.pt", weights_only=True)
    for k, v in ref["model"].items():
        assert torch.equal(v, got["model"][k]), k  # the resumed run is bit-identical


def test_finetune_from_reference_model_0(dset):
    root, _ = dset
    cfg = _config(root, "ft", interval_val=1000)
    write_diffusion(root, {"alto": 0}, name="ft", k_step_max=100)  # 1 speaker: no spk_embed
    out = _train(root, cfg, "--max_steps", "2")
    assert "Resuming from logs/44k/ft/model_0.pt (step 0, with optimizer state)" in out.stdout
    assert "spk_embed.weight" in out.stdout  # re-initialised (missing in the 1-speaker model)
    ck = torch.load(root / "logs/44k/ft/model_2.pt", weights_only=True)
    assert ck["global_step"] == 2 and "spk_embed.weight" in ck["model"]
    assert (root / "logs/44k/ft/model_0.pt").exists()


def test_missing_features_and_bad_config_are_one_line(dset, tmp_path):
    root, info = dset
    work = tmp_path / "w"
    shutil.copytree(root / "dataset", work / "dataset")
    shutil.copytree(root / "filelists", work / "filelists")
    shutil.copytree(root / "configs", work / "configs")
    victim = work / (info["train"][0] + ".mel.npy")
    victim.unlink()
    proc = _train(work, "configs/diffusion.yaml", "--max_steps", "1", check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1, proc.stderr
    assert "mel.npy: missing" in err[0] and "preprocess_hubert_f0.py --use_diff" in err[0]
    proc = _train(work, "configs/none.yaml", check=False)
    assert proc.returncode == 1 and "none.yaml" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_torchrun_two_ranks_gloo(dset):
    root, _ = dset
    cfg = _config(root, "ddp", interval_val=1000, batch_size=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           str(TRAIN), "-c", cfg, "--device", "cpu", "--max_steps", "3"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert torch.load(root / "logs/44k/ddp/model_3.pt", weights_only=True)["global_step"] == 3


def test_amp_bf16_training_step_and_shallow_sampling():
    """amp_dtype bf16 on the CPU: the loss is finite and gradients flow; sampling under autocast
    keeps the diffusion state in fp32."""
    from diffusion import Unit2Mel

    torch.manual_seed(0)
    m = Unit2Mel(8, 2, True, 16, 2, 16, 8, 1000, 0)
    units, f0, vol = torch.randn(2, 20, 8), torch.full((2, 20, 1), 200.0), torch.rand(2, 20, 1)
    mel = torch.randn(2, 20, 16) - 5
    g = torch.Generator().manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m(units, f0, vol, torch.LongTensor([[0], [1]]), torch.zeros(2, 1, 1), gt_spec=mel,
                 infer=False, generator=g)  # fmt: skip
        loss.backward()
        m.eval()
        out = m(units, f0, vol, torch.LongTensor([[0], [1]]), gt_spec=mel, k_step=50, infer_speedup=10,
                method="dpm-solver++", generator=g)  # fmt: skip
    assert (
        torch.isfinite(loss) and m.decoder.denoise_fn.output_projection.weight.grad.abs().sum() > 0
    )
    assert out.dtype == torch.float32 and out.shape == mel.shape and torch.isfinite(out).all()
