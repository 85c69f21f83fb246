"""The newcomer's path (issue 21): the README's "short version" of "Using it on your own voices"
runs as written on a fresh folder with nothing downloaded; what a newcomer reads along the way is
true (the step a release file was taken at, the last step of a training run, the inputs of the
ONNX file); missing pretrained files name the flag that avoids them; long training clips are
named; the synthesizer's output carries no DC offset."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shlex

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import ROOT, run_script

README = ROOT / "README.md"
SECTION = "## Using it on your own voices"
SHORT = "### The short version"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def short_version_commands() -> list[list[str]]:
    """The commands of the README's short version, as a user types them (comments dropped)."""
    section = _section()
    block = _bash_blocks(section[section.index(SHORT) :])[0]
    lines = [ln.strip() for ln in block.splitlines()]
    return [shlex.split(ln) for ln in lines if ln and not ln.startswith("#")]


def test_every_python_command_of_the_section_names_a_script_that_exists():
    """Every ``python X.py`` / ``python -m pkg.mod`` line of the section's bash blocks points at
    a real script or module (the flows below step 1 carry [optional] flags, so only the short
    version is run)."""
    seen = 0
    for block in _bash_blocks(_section()):
        for line in block.splitlines():
            words = line.split()
            if not words or words[0] != "python":
                continue
            seen += 1
            if words[1] == "-m":
                target = ROOT / (words[2].replace(".", "/") + ".py")
            else:
                target = ROOT / words[1]
            assert target.is_file(), f"README: {line.strip()} names {target}, which is missing"
    assert seen >= 10


def _singers():
    from common.synthetic import DEMO_SINGERS

    alto, bass = DEMO_SINGERS
    return [dataclasses.replace(alto, name="alice"), dataclasses.replace(bass, name="bob")]


def test_readme_short_version_runs_as_written(tmp_path):
    """A fresh folder (no ``pretrain/``), two synthetic singers named as in the README and a song
    in ``raw/``: the README's commands run one after the other, ``python`` being this interpreter
    and ``train.py`` given the documented ``--max_steps 2`` (else it trains until stopped)."""
    from common.synthetic import sing, write_dataset

    commands = short_version_commands()
    scripts = [c[1] for c in commands]
    assert c_ok(commands), commands
    assert scripts == ["resample.py", "preprocess_flist_config.py", "preprocess_hubert_f0.py",
                       "train.py", "inference_main.py"]  # fmt: skip
    write_dataset(tmp_path / "dataset_raw", _singers(), files_per_singer=3, duration=2.0)
    (tmp_path / "raw").mkdir()
    sf.write(tmp_path / "raw" / "song.wav", sing(2.5, _singers()[0], seed=99)[0], 44100,
             subtype="PCM_16")  # fmt: skip
    env = {"SOVITS_PRETRAIN": str(tmp_path / "pretrain"), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    logs = {}
    for cmd in commands:
        args = [ROOT / cmd[1], *cmd[2:]]
        if cmd[1] == "train.py":
            args += ["--max_steps", "2"]
        proc = run_script(args, tmp_path, env=env)
        logs[cmd[1]] = proc.stdout + proc.stderr
    assert not (tmp_path / "pretrain").exists()
    cfg = json.loads((tmp_path / "configs" / "config.json").read_text())
    assert cfg["model"]["speech_encoder"] == "whisper-ppg-ct2"
    assert list(cfg["spk"]) == ["alice", "bob"]
    # the training log's last step is the last checkpoint's (item 6: it said one more)
    assert sorted(p.name for p in (tmp_path / "logs" / "44k").glob("G_*.pth")) == ["G_0.pth",
                                                                                  "G_1.pth"]  # fmt: skip
    train_log = (tmp_path / "logs" / "44k" / "train.log").read_text()
    assert "Training stopped at step 1 (epoch" in train_log and "G_1.pth)" in train_log
    # -m logs/44k: the newest checkpoint, and the loader says its step
    infer_log = logs["inference_main.py"]
    assert "using its newest checkpoint logs/44k/G_1.pth" in infer_log, infer_log
    assert "(step 1" in infer_log, infer_log
    out = tmp_path / "results" / "song.wav_0key_alice_sovits_fcpe.flac"
    y, sr = sf.read(out)
    assert sr == 44100 and len(y) == sf.info(tmp_path / "raw" / "song.wav").frames
    assert np.isfinite(y).all() and abs(float(y.mean())) < 2e-3

    # a file the install does not ship: one line naming it and the flag that avoids it
    proc = run_script([ROOT / "inference_main.py", *commands[-1][2:], "-eh"], tmp_path, env=env,
                      check=False)  # fmt: skip
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and err, proc.stderr
    assert "pretrain/nsf_hifigan/" in err[-1] and "or convert without -eh" in err[-1], err[-1]
    assert "Traceback" not in proc.stderr


def c_ok(commands) -> bool:
    """Each command is ``python <script>.py ...``, typed as a user would."""
    return all(len(c) >= 2 and c[0] == "python" and c[1].endswith(".py") for c in commands)


# -- release files: the step they were taken at ----------------------------------------------------
def _tiny(tmp_path):
    from tests.infer_fixtures import write_random_checkpoint
    from training.synthetic import tiny_config

    cfg = tiny_config({"a": 0}, ssl_dim=8)
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(cfg))
    return cfg, cfg_path, write_random_checkpoint


def test_compress_keeps_the_step_and_the_loader_says_it(tmp_path, caplog):
    from common.checkpoint import load_checkpoint, safe_load
    from compress_model import compress
    from models import SynthesizerTrn

    cfg, cfg_path, write = _tiny(tmp_path)
    g = tmp_path / "G_4400.pth"
    write(cfg, tmp_path / "random.pth")
    ckpt = safe_load(tmp_path / "random.pth")  # (memory-mapped: written to another file)
    ckpt["iteration"] = 37  # the epoch, as train.py writes it
    torch.save(ckpt, g)
    for half in (False, True):
        out = tmp_path / f"release_{half}.pth"
        compress(str(cfg_path), str(g), half, str(out))
        rel = safe_load(out)
        assert rel["step"] == 4400 and rel["iteration"] == 37
        net = SynthesizerTrn(1025, cfg["train"]["segment_size"] // 512, **cfg["model"])
        with caplog.at_level(logging.INFO, logger="common.checkpoint"):
            caplog.clear()
            load_checkpoint(out, net)
        assert f"Loaded checkpoint {out} (step 4400, epoch 37)" in caplog.text, caplog.text

    # train.py's own record wins over the file name; a 4.1 release says it has no step
    ckpt["train_state"] = {"global_step": 12}
    torch.save(ckpt, tmp_path / "renamed.pth")
    compress(str(cfg_path), str(tmp_path / "renamed.pth"), False, str(tmp_path / "r2.pth"))
    assert safe_load(tmp_path / "r2.pth")["step"] == 12
    old = {k: v for k, v in safe_load(tmp_path / "r2.pth").items() if k != "step"}  # 4.1 layout
    old["iteration"] = 0
    torch.save(old, tmp_path / "old_release.pth")
    with caplog.at_level(logging.INFO, logger="common.checkpoint"):
        caplog.clear()
        load_checkpoint(tmp_path / "old_release.pth", net)
    assert "no training step recorded" in caplog.text, caplog.text


def test_shipped_demo_voice_says_its_step():
    """pretrain/demo_voice/demo_voice.pth records the step of step.txt (it loaded as
    "iteration 0")."""
    from common.checkpoint import checkpoint_step, safe_load

    folder = ROOT / "pretrain" / "demo_voice"
    step = int((folder / "step.txt").read_text())
    assert checkpoint_step(safe_load(folder / "demo_voice.pth"), folder / "demo_voice.pth") == step


# -- onnx_export: what it prints is what the file takes --------------------------------------------
def test_onnx_export_prints_the_written_files_inputs(tmp_path):
    import onnx

    from tests.test_onnx_export import tiny_cfg, write_model

    write_model(tmp_path / "checkpoints" / "m", tiny_cfg({"a": 0, "b": 1}))
    proc = run_script([ROOT / "onnx_export.py", "-n", "m"], tmp_path)
    printed = re.search(r"inputs (.*) → audio", proc.stdout).group(1).split(", ")
    model = onnx.load(tmp_path / "checkpoints" / "m" / "m_SoVits.onnx")
    assert printed == [i.name for i in model.graph.input]


# -- missing pretrained files: the file, where it comes from, this script's flag -------------------
@pytest.mark.parametrize(
    "encoder, extra, needle",
    [
        ("vec768l12", [], "give the file with --encoder_path PATH, or leave --encoder out"),
        ("vec768l12", ["--encoder_path", "nope.pt"], "check --encoder_path, or leave --encoder out"),
        ("whisper-ppg-ct2", [], "cannot be exported to ONNX here"),
    ],
)  # fmt: skip
def test_onnx_export_encoder_missing_file_is_one_line_before_any_export(tmp_path, encoder, extra,
                                                                        needle):  # fmt: skip
    from training.synthetic import tiny_config

    folder = tmp_path / "checkpoints" / "m"
    folder.mkdir(parents=True)
    cfg = tiny_config({"a": 0}, ssl_dim=8)
    cfg["model"]["speech_encoder"] = encoder
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.pth").write_bytes(b"not looked at: the encoder is checked first")
    proc = run_script([ROOT / "onnx_export.py", "-n", "m", "--encoder", *extra], tmp_path,
                      check=False)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert needle in lines[0], lines[0]
    if encoder == "vec768l12":
        assert ("nope.pt" if extra else "pretrain/checkpoint_best_legacy_500.pt") in lines[0]
        assert "Where to get it: the ContentVec legacy release" in lines[0]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.pth"]


def test_eval_missing_rmvpe_names_the_shipped_predictor(tmp_path):
    wav = np.zeros(44100, np.float32)
    sf.write(tmp_path / "a.wav", wav, 44100)
    (tmp_path / "bank").mkdir()
    sf.write(tmp_path / "bank" / "b.wav", wav, 44100)
    proc = run_script([ROOT / "eval.py", "-o", "a.wav", "-s", "a.wav", "--target_bank", "bank",
                       "--out", "ev", "--f0_predictor", "rmvpe", "--no_asr", "--no_dnsmos"],
                      tmp_path, env={"SOVITS_PRETRAIN": str(tmp_path / "pretrain")},
                      check=False)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert "pretrain/rmvpe.pt" in lines[-1] and "--f0_predictor fcpe" in lines[-1], lines[-1]


# -- long training clips ----------------------------------------------------------------------------
def test_clips_longer_than_an_item_are_named(tmp_path, caplog, monkeypatch):
    """Listed clips longer than an item may be (train.max_frames, else 4.1's 800 frames) get one
    warning each, naming the file; the others none. Only the headers are read."""
    from common.hparams import HParams
    from data_utils import TextAudioSpeakerLoader
    from training.synthetic import tiny_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    for name, seconds in (("short.wav", 2.0), ("long.wav", 12.0)):
        sf.write(tmp_path / "a" / name, np.zeros(int(seconds * 44100), np.int16), 44100)
    paths = ["a/short.wav", "a/long.wav"]
    for max_frames, limit_s in ((None, 9.3), (431, 5.0), (1100, None)):
        cfg = tiny_config({"a": 0}, ssl_dim=8)
        cfg["train"].pop("max_frames", None)
        if max_frames:
            cfg["train"]["max_frames"] = max_frames
        with caplog.at_level(logging.WARNING, logger="data_utils"):
            caplog.clear()
            TextAudioSpeakerLoader(paths, HParams(**cfg))
        lines = [r.getMessage() for r in caplog.records]
        if limit_s is None:
            assert lines == []
            continue
        assert len(lines) == 1 and lines[0].startswith("a/long.wav: 12.0 s is longer"), lines
        assert f"({limit_s:.1f} s" in lines[0] and "slice long recordings" in lines[0]


# -- DC offset of the synthesizer's output ----------------------------------------------------------
def test_remove_dc_removes_offset_and_drift_and_keeps_the_voice():
    from inference.infer_tool import remove_dc

    sr = 44100
    t = np.arange(2 * sr) / sr
    tone = 0.3 * np.sin(2 * np.pi * 65.4 * t)  # C2, the lowest sung note
    drift = -0.05 + 0.01 * np.sin(2 * np.pi * 0.5 * t)
    y = remove_dc(torch.from_numpy((tone + drift).astype(np.float32)), sr).numpy()
    assert y.dtype == np.float32 and y.shape == t.shape
    middle = slice(sr // 4, -sr // 4)  # away from the edges
    assert abs(y[middle].mean()) < 1e-3
    gain_db = 20 * np.log10(np.std(y[middle]) / np.std(tone[middle]))
    assert -0.2 < gain_db < 0.05, gain_db
    # too short for the filter: the mean only
    short = remove_dc(torch.full((10,), 0.5), sr)
    assert torch.allclose(short, torch.zeros(10))
