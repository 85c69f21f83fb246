"""Bad configs and clashing runs (issue 20, items 1-3): diffusion.yaml / visemes.json /
train.max_frames checked like config.json; a config that trains to NaN stops with one line and
writes no NaN checkpoint (train.py, train_diff.py, train_visemes.py); train_diff.py and
train_visemes.py refuse a second run on one folder; import_llf.py and record.py never replace a
take without --overwrite; onnx_export.py removes a killed export's temporaries.

Exit codes through :func:`common.cli.run_main` (in this process, as each script's ``__main__``
does) or as real subprocesses where that is cheap. ``BAD_INPUT_TABLE=table.md`` appends one
table row per checked case.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from common.cli import run_main
from tests.conftest import ROOT, run_script

ONE_LINE = re.compile(r"^\S[^\n]*: \S[^\n]*$")
TINY_DIFF = {"n_layers": 2, "n_chans": 16, "n_hidden": 8}


def _table(kind: str, script: str, rc: int, line: str) -> None:
    path = os.environ.get("BAD_INPUT_TABLE")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"| {kind} | {script} | {rc} | {line[:140].replace('|', '/')} |\n")


def invoke(module: str, args, cwd: Path, capfd, monkeypatch) -> tuple[int, str, str]:
    """``run_main(<module>.main, args)`` in ``cwd``; the root logger is restored afterwards
    (the trainers replace its handlers)."""
    monkeypatch.chdir(cwd)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    capfd.readouterr()
    try:
        rc = run_main(importlib.import_module(module).main, [str(a) for a in args])
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)
    out, err = capfd.readouterr()
    return rc, out, err


def check_one_line(rc: int, err: str, want_rc: int, *needles: str, kind="", script="") -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == want_rc, (rc, err)
    assert lines and "Traceback" not in err, err
    line = lines[-1]
    assert ONE_LINE.match(line), err
    for n in needles:
        assert n in line, (n, line)
    _table(kind, script, rc, line)
    return line


def _finite(path: Path) -> bool:
    ck = torch.load(path, weights_only=True)
    return all(bool(torch.isfinite(v).all()) for v in ck["model"].values() if v.is_floating_point())


# ----------------------------------------------------------------------------------------------
# diffusion.yaml
# ----------------------------------------------------------------------------------------------
def _diff_config(spk=None, **train) -> dict:
    cfg = yaml.safe_load((ROOT / "configs_template" / "diffusion_template.yaml").read_text())
    cfg["data"].update(encoder="hubertsoft", encoder_out_channels=8)
    cfg["model"].update(TINY_DIFF, n_spk=len(spk or {"a": 0}))
    cfg["spk"] = dict(spk or {"a": 0})
    cfg["device"] = "cpu"
    cfg["train"].update(train)
    return cfg


def _set(cfg: dict, dotted: str, value) -> dict:
    node = cfg
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return cfg


class _Deleted:
    def __repr__(self) -> str:
        return "<deleted>"


_DELETE = _Deleted()
DIFF_BAD = [
    ("train.amp_dtype", "fp8", "fp32 or fp16 or bf16"),
    ("train.amp_dtype", True, "fp32 or fp16 or bf16"),
    ("train.interval_val", 0, "integer >= 1"),
    ("train.interval_log", -5, "integer >= 1"),
    ("train.interval_force_save", 0, "integer >= 1"),
    ("train.decay_step", 0, "integer >= 1"),
    ("train.gamma", 0, "(0, 1]"),
    ("train.gamma", float("nan"), "(0, 1]"),
    ("train.lr", -1e-4, "> 0"),
    ("train.weight_decay", -1, ">= 0"),
    ("train.batch_size", 0, "integer >= 1"),
    ("train.epochs", "many", "integer >= 1"),
    ("train.num_workers", -1, ">= 0"),
    ("train.save_opt", "yes", "true or false"),
    ("data.duration", 0, "> 0"),
    ("data.duration", 0.001, "shorter than one frame"),
    ("data.block_size", 0, "integer >= 1"),
    ("data.training_files", "", "a file path"),
    ("env.expdir", "", "a folder path"),
    ("env.expdir", _DELETE, "is missing"),
    ("env", _DELETE, "is missing"),
    ("infer.method", "euler", "dpm-solver"),
    ("infer.speedup", 0, "integer >= 1"),
    ("device", "tpu", "'cpu' or 'cuda'"),
    ("vocoder.type", "hifigan", "nsf-hifigan or nsf-hifigan-log10"),
    ("train.cache_device", "gpu", "'cpu' or 'cuda'"),
    ("model.k_step_max", 2000, "larger than model.timesteps"),
    ("model.n_chans", 0, "integer >= 1"),
    ("spk.a", 3, "[0, model.n_spk"),
]


@pytest.mark.parametrize("key,value,needle", DIFF_BAD, ids=[f"{k}={v!r}" for k, v, _ in DIFF_BAD])
def test_train_diff_bad_config_values(tmp_path, capfd, monkeypatch, key, value, needle):
    cfg = _diff_config(spk={"a": 0, "b": 1})
    _set(cfg, key, value)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    rc, _, err = invoke("train_diff", ["-c", "bad.yaml", "--device", "cpu"], tmp_path, capfd,
                        monkeypatch)  # fmt: skip
    check_one_line(rc, err, 1, "bad.yaml", key.split(".")[-1] if key != "env" else "env", needle,
                   kind=f"diffusion {key}={value!r}", script="train_diff.py")  # fmt: skip
    assert not (tmp_path / "logs").exists()  # nothing written


def test_diffusion_template_and_fixtures_still_pass():
    from common.config_check import validate_diffusion_config

    cfg = yaml.safe_load((ROOT / "configs_template" / "diffusion_template.yaml").read_text())
    for purpose in ("train", "infer", "features"):
        validate_diffusion_config(cfg, "t.yaml", purpose)


def test_train_diff_bad_flags(tmp_path, capfd, monkeypatch):
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(_diff_config()))
    for args, needle in ((["--max_steps", "0"], "--max_steps 0"),
                         (["--num_workers", "-2"], "--num_workers -2")):  # fmt: skip
        rc, _, err = invoke("train_diff", ["-c", "d.yaml", *args], tmp_path, capfd, monkeypatch)
        check_one_line(rc, err, 2, needle, kind=f"flag {' '.join(args)}", script="train_diff.py")
    if not torch.cuda.is_available():
        rc, _, err = invoke("train_diff", ["-c", "d.yaml", "--device", "cuda"], tmp_path, capfd,
                            monkeypatch)  # fmt: skip
        check_one_line(rc, err, 2, "--device cuda", "CUDA is not available",
                       kind="--device cuda without CUDA", script="train_diff.py")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# train.py: train.max_frames
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,needle", [(-1, "integer >= 0"), ("80", "integer >= 0"),
                                          (1.5, "integer >= 0"), (2, "shorter than one training")])  # fmt: skip
def test_train_max_frames(tmp_path, capfd, monkeypatch, value, needle):
    from training.synthetic import tiny_config

    cfg = tiny_config({"a": 0}, segment_frames=4, max_frames=value)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    rc, _, err = invoke("train", ["-c", "c.json", "-m", "x"], tmp_path, capfd, monkeypatch)
    check_one_line(rc, err, 1, "c.json", "train.max_frames", needle,
                   kind=f"train.max_frames={value!r}", script="train.py")  # fmt: skip
    assert not (tmp_path / "logs").exists()


# ----------------------------------------------------------------------------------------------
# visemes.json and the visemes trainer
# ----------------------------------------------------------------------------------------------
VIS_TRAIN = {"learning_rate": 2e-3, "batch_size": 2, "segment_frames": 32, "max_steps": 3,
             "log_interval": 1, "eval_interval": 1, "keep_ckpts": 0}  # fmt: skip
VIS_MODEL = {"hidden": 8, "n_blocks": 2, "kernel_size": 3, "dropout": 0.0}


def _write_prepared(root: Path, name: str, channels: int = 6, frames: int = 120, seed: int = 0):
    """A prepared take as motion/prepare_visemes.py writes it: z, bs, mask, loud."""
    rng = np.random.default_rng(seed)
    prefix = root / "dataset" / "visemes" / name
    prefix.parent.mkdir(parents=True, exist_ok=True)
    np.save(f"{prefix}.z.npy", rng.normal(size=(channels, frames)).astype(np.float32))
    np.save(f"{prefix}.bs.npy", rng.uniform(0, 1, (frames, 61)).astype(np.float32))
    np.save(f"{prefix}.mask.npy", np.ones(frames, bool))
    np.save(f"{prefix}.loud.npy", rng.uniform(-60, -10, frames).astype(np.float32))
    return f"dataset/visemes/{name}"


def _visemes_root(root: Path, **train) -> Path:
    lines = [_write_prepared(root, f"t{i}", seed=i) for i in range(3)]
    (root / "filelists").mkdir(exist_ok=True)
    (root / "filelists" / "train_visemes.txt").write_text("\n".join(lines[:2]) + "\n")
    (root / "filelists" / "val_visemes.txt").write_text(lines[2] + "\n")
    cfg = {"data": {"training_files": "filelists/train_visemes.txt",
                    "validation_files": "filelists/val_visemes.txt"},
           "model": dict(VIS_MODEL), "train": {**VIS_TRAIN, **train}}  # fmt: skip
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "visemes.json").write_text(json.dumps(cfg))
    return root


VIS_BAD = [
    ("train.learning_rate", 0, "> 0"),
    ("train.batch_size", 0, "integer >= 1"),
    ("train.segment_frames", -32, "integer >= 1"),
    ("train.max_steps", 0, "integer >= 1"),
    ("train.eval_interval", 0, "integer >= 1"),
    ("train.log_interval", 2.5, "integer >= 1"),
    ("train.keep_ckpts", -1, ">= 0"),
    ("train.velocity_weight", -1, ">= 0"),
    ("train.rotations", "yes", "true or false"),
    ("model.hidden", 0, "integer >= 1"),
    ("model.kernel_size", 4, "odd integer"),
    ("model.dropout", 1.0, "[0, 1)"),
    ("data.training_files", _DELETE, "is missing"),
]


@pytest.mark.parametrize("key,value,needle", VIS_BAD, ids=[f"{k}={v!r}" for k, v, _ in VIS_BAD])
def test_train_visemes_bad_config_values(tmp_path, capfd, monkeypatch, key, value, needle):
    root = _visemes_root(tmp_path)
    cfg = json.loads((root / "configs" / "visemes.json").read_text())
    (root / "configs" / "bad.json").write_text(json.dumps(_set(cfg, key, value)))
    rc, _, err = invoke("train_visemes", ["-c", "configs/bad.json", "-m", "v"], root, capfd,
                        monkeypatch)  # fmt: skip
    check_one_line(rc, err, 1, "bad.json", key, needle, "prepare_visemes.py",
                   kind=f"visemes {key}={value!r}", script="train_visemes.py")  # fmt: skip
    assert not (root / "logs").exists()


def test_train_visemes_bad_files_and_flags(tmp_path, capfd, monkeypatch):
    root = _visemes_root(tmp_path)
    (root / "configs" / "notjson.json").write_text("{not json")
    (root / "configs" / "list.json").write_text("[1, 2]")
    cases = [
        (["-c", "configs/none.json"], 1, ["none.json", "not found"], "missing config"),
        (["-c", "configs/notjson.json"], 1, ["notjson.json", "not valid JSON"], "not JSON"),
        (["-c", "configs/list.json"], 1, ["list.json", "JSON object"], "JSON array"),
        (["--max_steps", "0"], 2, ["--max_steps 0", ">= 1"], "--max_steps 0"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], 2, ["--device cuda"], "--device cuda without CUDA"))
    for args, want, needles, kind in cases:
        rc, _, err = invoke("train_visemes", ["-m", "v", *args], root, capfd, monkeypatch)
        check_one_line(rc, err, want, *needles, kind=kind, script="train_visemes.py")
    # a take prepared with another voice model (z channels), an empty list, no face frames
    other = _write_prepared(root, "other", channels=9)
    lst = root / "filelists" / "train_visemes.txt"
    good = lst.read_text()
    for text, needle, kind in ((good + other + "\n", "9 z channels", "takes of two voice models"),
                               ("\n", "no training takes", "empty take list")):  # fmt: skip
        lst.write_text(text)
        rc, _, err = invoke("train_visemes", ["-m", "v"], root, capfd, monkeypatch)
        check_one_line(rc, err, 1, needle, kind=kind, script="train_visemes.py")
    lst.write_text(good)
    for name in ("t0", "t1"):
        np.save(root / "dataset" / "visemes" / f"{name}.mask.npy", np.zeros(120, bool))
    rc, _, err = invoke("train_visemes", ["-m", "v"], root, capfd, monkeypatch)
    check_one_line(rc, err, 1, "no usable face frames", kind="no tracked face frames",
                   script="train_visemes.py")  # fmt: skip
    assert not list(root.glob("logs/v/V_*.pth"))


def test_train_visemes_resume_with_another_model_config(tmp_path, capfd, monkeypatch):
    root = _visemes_root(tmp_path, max_steps=1)
    rc, _, err = invoke("train_visemes", ["-m", "v", "--device", "cpu"], root, capfd, monkeypatch)
    assert rc == 0, err
    assert _finite(root / "logs" / "v" / "V_1.pth")
    cfg = json.loads((root / "configs" / "visemes.json").read_text())
    cfg["model"]["hidden"] = 12
    cfg["train"]["max_steps"] = 2
    (root / "configs" / "visemes.json").write_text(json.dumps(cfg))
    rc, _, err = invoke("train_visemes", ["-m", "v", "--device", "cpu"], root, capfd, monkeypatch)
    check_one_line(rc, err, 1, "V_1.pth", "does not fit", "visemes.json",
                   kind="resume: checkpoint of another model section", script="train_visemes.py")  # fmt: skip
    assert not (root / "logs" / "v" / "V_2.pth").exists()


# ----------------------------------------------------------------------------------------------
# NaN: one line, no NaN checkpoint
# ----------------------------------------------------------------------------------------------
def test_train_visemes_nan_stops_without_nan_checkpoint(tmp_path):
    root = _visemes_root(tmp_path, learning_rate=1e30, max_steps=3)
    proc = run_script([ROOT / "train_visemes.py", "-m", "v", "--device", "cpu"], cwd=root,
                      check=False)  # fmt: skip
    line = check_one_line(proc.returncode, proc.stderr, 1, "visemes.json", "training diverged",
                          "lower train.learning_rate", kind="visemes lr 1e30 (NaN)",
                          script="train_visemes.py")  # fmt: skip
    assert "step" in line
    saved = list((root / "logs" / "v").glob("V_*.pth"))
    assert all(_finite(p) for p in saved)
    assert not list((root / "logs" / "v").glob(".*.tmp"))


def test_check_weights_refuses_a_nan_model(tmp_path):
    from common.divergence import TrainingDiverged, check_loss, check_weights
    from common.errors import ConfigError

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    check_weights([net], "c.json", 5, "lower x")
    with torch.no_grad():
        net[1].running_var[1] = float("inf")
    with pytest.raises(TrainingDiverged, match=r"c.json: training diverged: 1.running_var") as e:
        check_weights([net], "c.json", 5, "lower x")
    assert isinstance(e.value, ConfigError) and "\n" not in str(e.value)
    check_loss(1.5, "c.json", 1, "h")
    with pytest.raises(TrainingDiverged, match=r"the loss is nan at step 7 \(h; "):
        check_loss(math.nan, "c.json", 7, "h")


def test_diffusion_save_checkpoint_refuses_nan_weights(tmp_path):
    from common.divergence import TrainingDiverged
    from common.hparams import HParams
    from diffusion.trainer import save_checkpoint
    from diffusion.unit2mel import build_unit2mel

    cfg = _diff_config()
    cfg["env"]["expdir"] = str(tmp_path)
    args = HParams(**cfg)
    net = build_unit2mel(args, 16)
    opt = torch.optim.AdamW(net.parameters())
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    save_checkpoint(net, opt, scaler, args, 1, 0, 1, 1, "d.yaml")
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="d.yaml: training diverged: .* at step 2"):
        save_checkpoint(net, opt, scaler, args, 2, 0, 2, 1, "d.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_1.pt"]


def test_train_py_nan_loss_counts(tmp_path):
    from common.divergence import TrainingDiverged
    from training.trainer import FP16_BAD_STEPS, _non_finite_losses

    ok = {"loss_gen_all": torch.tensor(1.0), "loss_disc_all": torch.tensor(2.0)}
    bad = {"loss_gen_all": torch.tensor(float("nan")), "loss_disc_all": torch.tensor(2.0)}
    plain = torch.amp.GradScaler("cpu", enabled=False)
    assert _non_finite_losses(ok, 3, plain, "c.json", 1, "h") == 0
    with pytest.raises(
        TrainingDiverged, match="c.json: training diverged: the loss is nan at step 4"
    ):
        _non_finite_losses(bad, 0, plain, "c.json", 4, "h")
    scaled = torch.amp.GradScaler("cpu", enabled=True)  # fp16: the scaler skips a few such steps
    n = 0
    for _ in range(FP16_BAD_STEPS - 1):
        n = _non_finite_losses(bad, n, scaled, "c.json", 4, "h")
    with pytest.raises(TrainingDiverged):
        _non_finite_losses(bad, n, scaled, "c.json", 4, "h")


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    from training.synthetic import tiny_config, write_training_set

    root = tmp_path_factory.mktemp("trainset")
    info = write_training_set(root, n_speakers=1, files_per_speaker=2, duration=0.6, ssl_dim=32)
    cfg = tiny_config(info["spk"], ssl_dim=32, learning_rate=1e30, eval_interval=1)
    (root / "configs").mkdir()
    (root / "configs" / "nan.json").write_text(json.dumps(cfg))
    return root


def test_train_py_nan_stops_without_nan_checkpoint(train_set):
    proc = run_script([ROOT / "train.py", "-c", "configs/nan.json", "-m", "nan", "--device", "cpu",
                       "--max_steps", "3", "--num_workers", "0"], cwd=train_set, check=False)  # fmt: skip
    check_one_line(proc.returncode, proc.stderr, 1, "nan.json", "training diverged",
                   "lower train.learning_rate", kind="train.py lr 1e30 (NaN)", script="train.py")  # fmt: skip
    saved = list((train_set / "logs" / "nan").glob("[GD]_*.pth"))
    assert all(_finite(p) for p in saved)


# ----------------------------------------------------------------------------------------------
# train_diff.py on real features: data.duration vs the clips, NaN, two runs on one folder
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def diff_set(tmp_path_factory):
    from tests.diffusion_fixtures import write_diffusion_training_set

    root = tmp_path_factory.mktemp("diffbad")
    info = write_diffusion_training_set(root, k_step_max=0)
    cfg = info["config"]
    cfg["model"]["k_step_max"] = 100  # shallow-only: validation samples 2 steps
    cfg["infer"]["speedup"] = 50
    (root / "configs" / "diffusion.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _diff_variant(root: Path, name: str, data=None, **train) -> str:
    cfg = yaml.safe_load((root / "configs" / "diffusion.yaml").read_text())
    cfg["env"]["expdir"] = f"logs/44k/{name}"
    cfg["train"].update(train)
    cfg["data"].update(data or {})
    (root / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return f"configs/{name}.yaml"


def test_train_diff_duration_longer_than_every_clip(diff_set, capfd, monkeypatch):
    cfg = _diff_variant(diff_set, "long", data={"duration": 30})
    rc, _, err = invoke("train_diff", ["-c", cfg, "--device", "cpu", "--max_steps", "1"], diff_set,
                        capfd, monkeypatch)  # fmt: skip
    check_one_line(rc, err, 1, "long.yaml", "data.duration is 30", "lower data.duration",
                   kind="data.duration > every clip", script="train_diff.py")  # fmt: skip
    assert not list((diff_set / "logs" / "44k" / "long").glob("model_*.pt"))


def test_train_diff_features_that_do_not_fit(diff_set, tmp_path, capfd, monkeypatch):
    cfg = _diff_variant(diff_set, "wide", data={"encoder_out_channels": 16})
    rc, _, err = invoke("train_diff", ["-c", cfg, "--device", "cpu", "--max_steps", "1"], diff_set,
                        capfd, monkeypatch)  # fmt: skip
    check_one_line(rc, err, 1, "wide.yaml", "data.encoder_out_channels is 16", "8 channels",
                   kind="units of another encoder width", script="train_diff.py")  # fmt: skip
    work = tmp_path / "w"
    for sub in ("dataset", "filelists", "configs", "pretrain"):
        shutil.copytree(diff_set / sub, work / sub)
    first = (work / "filelists" / "train.txt").read_text().split()[0]
    (work / (first + ".aug_vol.npy")).write_bytes(b"\x93NUMPY garbage")
    rc, _, err = invoke("train_diff", ["-c", "configs/diffusion.yaml", "--device", "cpu",
                                       "--max_steps", "1"], work, capfd, monkeypatch)  # fmt: skip
    check_one_line(rc, err, 1, "aug_vol.npy", "preprocess_hubert_f0.py --use_diff",
                   kind="corrupt feature file", script="train_diff.py")  # fmt: skip
    assert not list(work.glob("logs/**/model_*.pt"))


def test_train_diff_nan_stops_without_nan_checkpoint(diff_set):
    cfg = _diff_variant(diff_set, "nan", lr=1e30, interval_val=1)
    proc = run_script([ROOT / "train_diff.py", "-c", cfg, "--device", "cpu", "--max_steps", "3"],
                      cwd=diff_set, check=False)  # fmt: skip
    check_one_line(proc.returncode, proc.stderr, 1, "nan.yaml", "training diverged", "lower train.lr",
                   kind="diffusion lr 1e30 (NaN)", script="train_diff.py")  # fmt: skip
    saved = list((diff_set / "logs" / "44k" / "nan").glob("model_*.pt"))
    assert all(_finite(p) for p in saved)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), proc.communicate()[1] if proc.poll() is not None else "timed out"


def _start(args, cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def test_two_train_diff_runs_on_one_folder(diff_set, capfd, monkeypatch):
    cfg = _diff_variant(diff_set, "busy", interval_val=2)
    exp = diff_set / "logs" / "44k" / "busy"
    first = _start([ROOT / "train_diff.py", "-c", cfg, "--device", "cpu", "--max_steps", "4"],
                   diff_set, {"SOVITS_DIFF_STEP_SLEEP": "1.5"})  # fmt: skip
    try:
        _wait_for(exp / "config.yaml", first)  # written once the first run holds the folder
        rc, _, err = invoke("train_diff", ["-c", cfg, "--device", "cpu", "--max_steps", "4"],
                            diff_set, capfd, monkeypatch)  # fmt: skip
        check_one_line(rc, err, 1, "busy", "another train_diff run is using this folder",
                       kind="second run on one expdir", script="train_diff.py")  # fmt: skip
        out, errs = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, errs
    # model_2.pt was pruned by the first run itself (not a multiple of interval_force_save)
    assert sorted(p.name for p in exp.glob("model_*.pt")) == ["model_4.pt"]
    assert all(_finite(p) for p in exp.glob("model_*.pt"))
    assert torch.load(exp / "model_4.pt", weights_only=True)["global_step"] == 4
    assert (exp / "log_info.txt").read_text().count("loss:") == 4  # the second did not train


def test_two_train_visemes_runs_on_one_folder(tmp_path, capfd, monkeypatch):
    root = _visemes_root(tmp_path, max_steps=4, eval_interval=2)
    out = root / "logs" / "v"
    out.mkdir(parents=True)
    (out / ".V_9.pth.abc123.tmp").write_bytes(b"left by a killed run")
    first = _start([ROOT / "train_visemes.py", "-m", "v", "--device", "cpu"], root,
                   {"SOVITS_VISEMES_STEP_SLEEP": "1.5"})  # fmt: skip
    try:
        _wait_for(out / "V_2.pth", first)
        rc, _, err = invoke("train_visemes", ["-m", "v", "--device", "cpu"], root, capfd,
                            monkeypatch)  # fmt: skip
        check_one_line(rc, err, 1, "logs/v", "another train_visemes run is using this folder",
                       kind="second run on one folder", script="train_visemes.py")  # fmt: skip
        _, errs = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, errs
    assert {"V_2.pth", "V_4.pth"} <= {p.name for p in out.glob("V_*.pth")}
    assert all(_finite(p) for p in out.glob("V_*.pth"))
    assert torch.load(out / "V_4.pth", weights_only=True)["iteration"] == 4
    assert not list(out.glob(".*.tmp"))  # the stale temporary went at the start


# ----------------------------------------------------------------------------------------------
# takes: import_llf.py and record.py never replace a take without --overwrite
# ----------------------------------------------------------------------------------------------
def _llf_csv(path: Path, rows: int = 20, seed: int = 0) -> Path:
    from motion.channels import NAMES

    rng = np.random.default_rng(seed)
    lines = ["Timecode,BlendshapeCount," + ",".join(NAMES)]
    for k in range(rows):
        vals = ",".join(f"{x:.4f}" for x in rng.uniform(0, 1, 61))
        lines.append(f"10:00:00:{k:02d}.0,61,{vals}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_llf_keeps_an_existing_take(tmp_path, capfd, monkeypatch):
    a, b = _llf_csv(tmp_path / "a.csv", 20, 0), _llf_csv(tmp_path / "b.csv", 30, 1)
    sf.write(tmp_path / "a.wav", np.zeros(44100, np.float32), 44100)
    (tmp_path / "notes.csv").write_text("name,age\nx,1\n")
    mod = "motion.import_llf"
    rc, _, err = invoke(mod, [a, "--audio", "a.wav", "--out", "take"], tmp_path, capfd, monkeypatch)
    assert rc == 0, err
    before = (tmp_path / "take" / "take.json").read_bytes()
    cases = [
        ([b, "--audio", "a.wav", "--out", "take"], 2, ["take: a take is already there", "--overwrite"],
         "existing take, no --overwrite"),
        ([b, "--audio", "a.wav", "--out", "t2", "--fps", "0"], 2, ["--fps 0"], "--fps 0"),
        ([b, "--audio", "a.wav", "--out", "t2", "--offset_ms", "nan"], 2, ["--offset_ms nan"],
         "--offset_ms nan"),
        (["notes.csv", "--audio", "a.wav", "--out", "t2"], 1, ["notes.csv", "Timecode"],
         "not a Live Link Face CSV"),
        ([b, "--audio", "none.wav", "--out", "t2"], 1, ["none.wav"], "missing audio"),
    ]  # fmt: skip
    for args, want, needles, kind in cases:
        rc, _, err = invoke(mod, args, tmp_path, capfd, monkeypatch)
        check_one_line(rc, err, want, *needles, kind=kind, script="motion/import_llf.py")
    assert (tmp_path / "take" / "take.json").read_bytes() == before
    assert not (tmp_path / "t2" / "take.json").exists()
    proc = run_script([ROOT / "motion" / "import_llf.py", b, "--audio", "a.wav", "--out", "take",
                       "--overwrite"], cwd=tmp_path)  # fmt: skip
    assert "saved take take" in proc.stdout
    from motion.take import load_take

    assert len(load_take(tmp_path / "take").values) == 30  # replaced by b.csv


def test_record_keeps_an_existing_take(tmp_path, capfd, monkeypatch):
    sf.write(tmp_path / "cue.wav", np.zeros(4410, np.float32), 44100)
    (tmp_path / "take").mkdir()
    (tmp_path / "take" / "take.json").write_text('{"format": "svc-motion-take"}')
    from tests.test_motion_capture import _free_port

    free = _free_port()
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    mod = "motion.record"
    try:
        cases = [
            (["--out", "take", "--wav", "cue.wav"], 2, ["take: a take is already there"],
             "existing take, no --overwrite"),
            (["--listen", "localhost:x", "--out", "t2"], 2, ["--listen 'localhost:x'", "HOST:PORT"],
             "--listen without a port number"),
            (["--listen", "127.0.0.1:70000", "--out", "t2"], 2, ["out of range"], "port 70000"),
            (["--duration", "0", "--out", "t2"], 2, ["--duration 0"], "--duration 0"),
            (["--listen", f"127.0.0.1:{port}", "--out", "t2", "--wav", "cue.wav"], 1,
             ["cannot listen"], "port in use"),
            (["--listen", f"127.0.0.1:{free}", "--out", "t2", "--wav", "none.wav"], 1, ["none.wav"],
             "missing --wav"),
        ]  # fmt: skip
        try:
            import sounddevice  # noqa: F401
        except (ImportError, OSError):
            cases.append((["--listen", f"127.0.0.1:{free}", "--out", "t2"], 1, ["sounddevice"],
                          "no microphone support"))  # fmt: skip
        for args, want, needles, kind in cases:
            rc, _, err = invoke(mod, args, tmp_path, capfd, monkeypatch)
            check_one_line(rc, err, want, *needles, kind=kind, script="motion/record.py")
    finally:
        busy.close()
    assert (tmp_path / "take" / "take.json").read_text() == '{"format": "svc-motion-take"}'
    assert not (tmp_path / "t2" / "take.json").exists()
    proc = run_script([ROOT / "motion" / "record.py", "--listen", f"127.0.0.1:{free}", "--out", "take",
                       "--wav", "cue.wav", "--duration", "0.3", "--overwrite"], cwd=tmp_path)  # fmt: skip
    assert "saved take take" in proc.stdout
    assert json.loads((tmp_path / "take" / "take.json").read_text())["source"] == "udp"


# ----------------------------------------------------------------------------------------------
# onnx_export.py: stale temporaries, one export per folder
# ----------------------------------------------------------------------------------------------
def test_onnx_export_removes_stale_temporaries(tmp_path, capfd, monkeypatch):
    from common.locking import folder_lock

    ck = tmp_path / "checkpoints"
    (ck / "m").mkdir(parents=True)
    stale = [ck / "m" / ".m_SoVits.onnx.k2j3.tmp", ck / ".m.json.x9z.tmp",
             ck / "m" / ".m.dragonian.json.q1.tmp"]  # fmt: skip
    for p in stale:
        p.write_bytes(b"cut short")
    keep = [ck / ".other.json.abc.tmp", ck / "m" / "notes.txt"]  # another model's; not a temporary
    for p in keep:
        p.write_bytes(b"x")
    with folder_lock(ck / "m", "onnx_export", wait=False):  # an export running on m
        rc, _, err = invoke("onnxexport.cli", ["-n", "m"], tmp_path, capfd, monkeypatch)
        check_one_line(rc, err, 1, "another onnx_export run", kind="second export of one model",
                       script="onnx_export.py")  # fmt: skip
        assert all(p.exists() for p in stale)  # not touched while the other run holds the folder
    proc = run_script([ROOT / "onnx_export.py", "-n", "m"], cwd=tmp_path, check=False)
    check_one_line(proc.returncode, proc.stderr, 1, "model.pth: not found",
                   kind="stale temporaries + no model.pth", script="onnx_export.py")  # fmt: skip
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    shutil.rmtree(ck / "m")
    proc = run_script([ROOT / "onnx_export.py", "-n", "m"], cwd=tmp_path, check=False)
    check_one_line(proc.returncode, proc.stderr, 1, "folder not found",
                   kind="no model folder", script="onnx_export.py")  # fmt: skip
    assert not (ck / "m").exists()  # the lock did not create it


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--max_steps", "0"], "--max_steps 0: must be >= 1"),
        (["--log_interval", "0"], "--log_interval 0: must be >= 1"),
        (["--eval_interval", "-3"], "--eval_interval -3: must be >= 1"),
        (["--keep_ckpts", "-1"], "--keep_ckpts -1: must be >= 0"),
        (["--num_workers", "-2"], "--num_workers -2: must be >= 0"),
        (["--grad_clip_norm", "nan"], "--grad_clip_norm nan: must be a finite number"),
        (["--grad_clip_value", "-1"], "--grad_clip_value -1.0: must be a finite number"),
    ],
)
def test_train_py_flags_out_of_range_are_one_line(flags, says, tmp_path, monkeypatch, capfd):
    """train.py's own flags are checked before anything is read (exit 2, one line, no files)."""
    import train

    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    rc = run_main(train.main, ["-m", "44k", *flags])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(says), err
    assert not list(tmp_path.iterdir())
