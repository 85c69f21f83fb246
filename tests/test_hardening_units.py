"""Unit tests of the hardening pieces: checkpoint fit check, config validation, run_main,
folder lock, feature-file check, resample naming, training skipping a bad item."""

from __future__ import annotations

import copy
import errno
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from common import checkpoint
from common.cli import EXIT_INTERNAL, os_error_line, run_main
from common.config_check import load_diffusion_config, validate_config, validate_diffusion_config
from common.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "configs_template"


# -- checkpoint fit ---------------------------------------------------------------------------------
def _net(n_spk=2, width=4, extra=0):
    mods = {"emb_g": torch.nn.Embedding(n_spk, 3), "pre": torch.nn.Linear(width, 4)}
    mods.update({f"x{i}": torch.nn.Linear(1, 1, bias=False) for i in range(extra)})
    return torch.nn.ModuleDict(mods)


def test_fit_tolerates_speaker_count_and_a_handful_of_missing_keys(tmp_path, caplog):
    checkpoint.save_checkpoint(_net(n_spk=5), None, 1e-4, 1, tmp_path / "G.pth")
    dst = _net(n_spk=2, extra=checkpoint.HANDFUL)
    with caplog.at_level(logging.WARNING):
        checkpoint.load_checkpoint(tmp_path / "G.pth", dst)
    assert (
        "another n_speakers" in caplog.text and "x0.weight is not in the checkpoint" in caplog.text
    )


def test_fit_refuses_more_missing_keys_a_reshaped_key_or_a_discriminator(tmp_path):
    checkpoint.save_checkpoint(_net(), None, 1e-4, 1, tmp_path / "G.pth")
    before = {k: v.clone() for k, v in _net(extra=checkpoint.HANDFUL + 1).state_dict().items()}
    dst = _net(extra=checkpoint.HANDFUL + 1)
    dst.load_state_dict(before)
    with pytest.raises(
        checkpoint.CheckpointMismatchError,
        match=r"G.pth: does not fit the model built from c.json: 5 of 8 keys missing",
    ):
        checkpoint.load_checkpoint(tmp_path / "G.pth", dst, config="c.json")
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in before.items())  # untouched
    with pytest.raises(
        checkpoint.CheckpointMismatchError, match=r"pre.weight \(4, 4\) in the file vs \(4, 8\)"
    ):
        checkpoint.load_checkpoint(tmp_path / "G.pth", _net(width=8))
    d = {"model": {"discs.0.conv_post.weight": torch.zeros(1)}}
    torch.save(d, tmp_path / "D.pth")
    with pytest.raises(checkpoint.CheckpointMismatchError, match="discriminator checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "D.pth", _net())
    # experts: --allow_partial loads what fits
    net = _net(width=8)
    checkpoint.load_checkpoint(tmp_path / "G.pth", net, allow_partial=True)
    assert torch.equal(
        net.emb_g.weight, checkpoint.safe_load(tmp_path / "G.pth")["model"]["emb_g.weight"]
    )


def test_release_checkpoint_without_enc_q_loads(tmp_path):
    src = torch.nn.ModuleDict(
        {"pre": torch.nn.Linear(2, 2), "enc_q": torch.nn.Sequential(*[torch.nn.Linear(2, 2)] * 8)}
    )
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("enc_q.")}
    torch.save({"model": state}, tmp_path / "rel.pth")
    checkpoint.load_checkpoint(tmp_path / "rel.pth", src)


# -- config validation ----------------------------------------------------------------------------
def _template():
    return json.loads((TEMPLATES / "config_template.json").read_text())


def test_templates_pass_every_purpose():
    for name in ("config_template.json", "config_tiny_template.json"):
        cfg = json.loads((TEMPLATES / name).read_text())
        for purpose in ("train", "infer", "features"):
            validate_config(cfg, name, purpose)
    load_diffusion_config(TEMPLATES / "diffusion_template.yaml", config=_template())


def _set(cfg, dotted, value):
    *parents, last = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value


BAD = [
    ("model.n_speakers", 0, "model.n_speakers is 0"),
    ("model.n_speakers", 2, "spk.nen is 2, but model.n_speakers is 2"),
    ("train.batch_size", "6", "train.batch_size is '6'"),
    ("train.learning_rate", -1, "train.learning_rate is -1"),
    ("train.betas", [0.8], "train.betas is [0.8]"),
    ("data.hop_length", 256, "model.upsample_rates [8, 8, 2, 2, 2] multiply to 512"),
    ("data.win_length", 4096, "data.win_length (4096) is larger"),
    ("model.upsample_kernel_sizes", [16, 16, 4, 4], "model.upsample_kernel_sizes has 4 entries"),
    ("model.ssl_dim", KeyError, "model.ssl_dim is missing"),
    (
        "model.speech_encoder",
        "vec999",
        "model.speech_encoder is 'vec999', not a known speech encoder",
    ),
    ("model.p_dropout", 1.5, "model.p_dropout is 1.5"),
    ("model.n_heads", 5, "model.n_heads (5) must divide"),
    ("model.resblock", "3", "model.resblock is '3'"),
    ("model.vol_embedding", "yes", "model.vol_embedding is 'yes'"),
    ("data.unit_interpolate_mode", "cubic", "data.unit_interpolate_mode is 'cubic'"),
    ("train.segment_size", 10000, "train.segment_size (10000) must be a multiple"),
    ("spk", {}, "spk must be a non-empty map"),
    ("spk", {"a": -1}, "spk.a is -1"),
]


@pytest.mark.parametrize("key,value,says", BAD, ids=[b[0] + "=" + repr(b[1]) for b in BAD])
def test_config_mistakes_name_the_file_and_key(key, value, says):
    cfg = _template()
    _set(cfg, key, value)
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, "configs/config.json", "train")
    msg = str(e.value)
    assert (
        msg.startswith("configs/config.json: ")
        and says in msg
        and "\n" not in msg
        and msg.endswith(")")
    )


def test_infer_accepts_a_4_0_config_without_the_new_keys():
    cfg = _template()
    for k in ("speech_encoder", "vol_embedding", "use_automatic_f0_prediction", "vocoder_name"):
        del cfg["model"][k]
    del cfg["data"]["unit_interpolate_mode"]
    del cfg["train"]["c_mel"]
    validate_config(cfg, "c.json", "infer")
    with pytest.raises(ConfigError, match="train.c_mel is missing"):
        validate_config(cfg, "c.json", "train")


def test_diffusion_config_must_agree_with_config_json():
    import yaml

    d = yaml.safe_load((TEMPLATES / "diffusion_template.yaml").read_text())
    for key, value, says in [("data.encoder_out_channels", 256, "model.ssl_dim in config.json is 768"),
                             ("model.n_spk", 0, "model.n_spk is 0"),
                             ("model.k_step_max", 2000, "model.k_step_max (2000) is larger"),
                             ("data.block_size", 256, "data.hop_length in config.json is 512")]:  # fmt: skip
        bad = copy.deepcopy(d)
        _set(bad, key, value)
        with pytest.raises(ConfigError, match=f"^diffusion.yaml: {key} ") as e:
            validate_diffusion_config(bad, "diffusion.yaml", "train", _template())
        assert says in str(e.value)


# -- run_main -------------------------------------------------------------------------------------
def test_run_main_exit_codes_and_lines(capsys):
    def usage(argv):
        raise UsageError("-x 3: out of range", "use 0..1")

    def disk_full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "out/a.wav")

    def bug(argv):
        raise ZeroDivisionError("division by zero")

    assert run_main(usage, []) == 2
    assert capsys.readouterr().err == "-x 3: out of range (use 0..1)\n"
    assert run_main(disk_full, []) == 1
    assert capsys.readouterr().err.startswith("out/a.wav: no space left on device (free some disk")
    assert run_main(bug, []) == EXIT_INTERNAL
    assert "this is a bug; run again with --debug" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):
        run_main(bug, ["--debug"])
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", "x")) == (
        "x: permission denied (check the file's permissions)"
    )


# -- folder lock ----------------------------------------------------------------------------------
def test_folder_lock_waits_or_refuses(tmp_path):
    import subprocess
    import sys

    from common.locking import FolderBusy, folder_lock

    code = ("import sys, time; sys.path.insert(0, %r); from common.locking import folder_lock\n"
            "with folder_lock(%r, 'train', own_file=True):\n    print('held', flush=True); time.sleep(30)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code % (str(ROOT), str(tmp_path))],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy, match="another train run is using this folder"):
            with folder_lock(tmp_path, "train", wait=False, own_file=True):
                pass
        with folder_lock(tmp_path, "kmeans", wait=False, own_file=True):  # another step: free
            pass
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path, "train", wait=False, own_file=True):  # released by the kill
        pass


# -- inputs ---------------------------------------------------------------------------------------
def test_resample_names_colliding_inputs_apart():
    from preprocess.resample import plan_outputs

    files = ["in/s/a.wav", "in/s/a.flac", "in/s/A.mp3", "in/s/b.wav", "in/s/B.WAV", "in/t/a.wav"]
    out, failed = plan_outputs(files, "in", "out")
    assert out == {"in/s/a.wav": "out/s/a.wav", "in/s/a.flac": "out/s/a_flac.wav",
                   "in/s/A.mp3": "out/s/A_mp3.wav", "in/s/B.WAV": "out/s/B.wav",
                   "in/s/b.wav": "out/s/b_wav.wav", "in/t/a.wav": "out/t/a.wav"}  # fmt: skip
    assert not failed
    out, failed = plan_outputs(["in/s/a.wav", "in/s/a.flac", "in/s/a_flac.wav"], "in", "out")
    assert list(failed) == ["in/s/a_flac.wav"] and "rename one of them" in failed["in/s/a_flac.wav"]


def test_unreadable_speaker_folder_is_skipped_with_the_reason(tmp_path, monkeypatch):
    from preprocess import resample

    for spk in ("ok", "locked"):
        (tmp_path / spk).mkdir()
        (tmp_path / spk / "x.wav").write_bytes(b"")
    real = os.listdir

    def listdir(path):
        if str(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(resample.os, "listdir", listdir)
    problems = {}
    files = resample.find_inputs(str(tmp_path), problems)
    assert files == [str(tmp_path / "ok" / "x.wav")]
    assert problems == {str(tmp_path / "locked"): "folder skipped: permission denied"}


# -- feature files ----------------------------------------------------------------------------------
def test_feature_problem_finds_corrupt_and_foreign_files(tmp_path):
    from common.atomic import save_npy, torch_save
    from common.features import feature_problem, save_f0

    n = 44100  # 86 frames
    w = str(tmp_path / "x.wav")
    torch_save(torch.randn(1, 8, 50), w + ".soft.pt")
    save_f0(w + ".f0.npy", np.full(86, 200.0), np.ones(86))
    torch_save(torch.rand(1025, 83), str(tmp_path / "x.spec.pt"))
    save_npy(w + ".vol.npy", np.zeros(86, np.float32))
    assert all(feature_problem(p, n, 8) is None for p in
               (w + ".soft.pt", w + ".f0.npy", str(tmp_path / "x.spec.pt"), w + ".vol.npy"))  # fmt: skip
    assert "channels but the config's ssl_dim is 16" in feature_problem(w + ".soft.pt", n, 16)
    assert "another file's" in feature_problem(w + ".soft.pt", 10 * n, 8)
    assert "expected (2, 172)" in feature_problem(w + ".f0.npy", 2 * n)
    torch_save(torch.full((1, 8, 50), float("nan")), w + ".soft.pt")
    assert "NaN" in feature_problem(w + ".soft.pt", n, 8)
    Path(w + ".soft.pt").write_bytes(b"junk")
    assert "not a readable torch checkpoint" in feature_problem(w + ".soft.pt", n, 8)
    torch_save({"a": 1}, w + ".soft.pt")
    assert "not a tensor" in feature_problem(w + ".soft.pt", n, 8)
    np.save(w + ".f0.npy", np.asanyarray([np.zeros(3), 1.0], dtype=object), allow_pickle=True)
    assert "pickled" in feature_problem(w + ".f0.npy", n)
    assert feature_problem(w + ".mel.npy", n) == "missing"


def test_training_skips_a_bad_item_with_one_line(tmp_path, caplog):
    from common.hparams import HParams
    from data_utils import TextAudioSpeakerLoader
    from training.synthetic import tiny_config, write_training_set

    info = write_training_set(tmp_path, n_speakers=1, files_per_speaker=3, duration=0.5, ssl_dim=32)
    hps = HParams(**tiny_config(info["spk"], ssl_dim=32))
    paths = [str(tmp_path / p) for p in info["train"] + info["val"]]
    ds = TextAudioSpeakerLoader(paths, hps)
    bad = ds.audiopaths[0]
    Path(f"{bad}.soft.pt").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING):
        items = [ds[0] for _ in range(3)]
    assert all(it[0].shape[0] == 32 for it in items)  # the next good item stands in
    lines = [r.getMessage() for r in caplog.records if bad in r.getMessage()]
    assert (
        len(lines) == 1
        and "this item is skipped" in lines[0]
        and "preprocess_hubert_f0.py" in lines[0]
    )
