"""data_utils, train.py (single process, torchrun/gloo DDP, kill + resume, fine-tune) and
compress_model.py, run as a user would (subprocesses) on a tiny synthetic data set.

The discriminator has no size knobs (46.7 M parameters, a 560 MB D checkpoint with its AdamW
state), so every CPU step costs seconds: the runs here are kept to a handful of steps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from common.checkpoint import checkpoint_step, load_checkpoint, safe_load, save_checkpoint
from common.features import f0_path, save_f0, spec_path
from common.hparams import HParams
from tests.conftest import ROOT, run_script
from training.synthetic import tiny_config, write_training_set

TRAIN = ROOT / "train.py"
COMPRESS = ROOT / "compress_model.py"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """``dataset/44k/{alto,bass}`` (3 train + 1 val each), filelists and a tiny config."""
    root = tmp_path_factory.mktemp("train")
    info = write_training_set(root, n_speakers=2, files_per_speaker=4, duration=1.0, ssl_dim=32)
    cfg = tiny_config(info["spk"], ssl_dim=32)
    (root / "configs").mkdir()
    (root / "configs" / "config.json").write_text(json.dumps(cfg, indent=2))
    return root


def _hps(root: Path) -> HParams:
    return HParams(**json.loads((root / "configs" / "config.json").read_text()))


def _train(root, name, *extra, env=None, timeout=900, check=True):
    args = [TRAIN, "-c", "configs/config.json", "-m", name, "--num_workers", "0", *extra]
    return run_script(args, cwd=root, timeout=timeout, env=env, check=check)


def _steps(folder: Path, prefix: str) -> list[int]:
    out = []
    for p in folder.glob(f"{prefix}_*.pth"):
        m = re.fullmatch(rf"{prefix}_(\d+)\.pth", p.name)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def _build_g(cfg: dict):
    from models import SynthesizerTrn

    return SynthesizerTrn(
        cfg["data"]["filter_length"] // 2 + 1,
        cfg["train"]["segment_size"] // cfg["data"]["hop_length"],
        **cfg["model"],
    )


# ----------------------------------------------------------------------------------------------
# units + dataset
# ----------------------------------------------------------------------------------------------
def _reference_left(content: torch.Tensor, target_len: int) -> torch.Tensor:
    """The reference's loop, verbatim in behaviour (utils.repeat_expand_2d_left)."""
    src_len = content.shape[-1]
    target = torch.zeros([content.shape[0], target_len], dtype=torch.float)
    temp = torch.arange(src_len + 1) * target_len / src_len
    current_pos = 0
    for i in range(target_len):
        if i < temp[current_pos + 1]:
            target[:, i] = content[:, current_pos]
        else:
            current_pos += 1
            target[:, i] = content[:, current_pos]
    return target


@pytest.mark.parametrize("src,dst", [(10, 23), (50, 86), (7, 7), (86, 50), (3, 100), (171, 295)])
def test_repeat_expand_2d(src, dst):
    from training.units import repeat_expand_2d

    c = torch.randn(4, src)
    left = repeat_expand_2d(c, dst, "left")
    assert torch.equal(left, _reference_left(c, dst))
    nearest = repeat_expand_2d(c, dst, "nearest")
    assert nearest.shape == (4, dst)
    if dst >= src:  # §5.5: for upsampling 'left' and 'nearest' agree
        assert torch.equal(left, nearest)


def test_dataset_and_collate(workdir, monkeypatch):
    from data_utils import DatasetError, TextAudioCollate, TextAudioSpeakerLoader

    monkeypatch.chdir(workdir)
    hps = _hps(workdir)
    ds = TextAudioSpeakerLoader(hps.data.training_files, hps)
    assert len(ds) == 6
    c, f0, spec, wav, spk, uv, vol = ds[0]
    t = c.shape[1]
    assert c.shape == (32, t) and f0.shape == (t,) and uv.shape == (t,) and vol is None
    assert spec.shape == (1025, t) and wav.shape == (1, t * 512) and spk.shape == (1,)
    assert c.dtype == f0.dtype == spec.dtype == wav.dtype == torch.float32
    assert float(wav.abs().max()) <= 1.0

    # a missing spectrogram is recomputed and saved (atomically) beside the wav
    wav_path = ds.audiopaths[0]
    saved = safe_load(spec_path(wav_path))
    os.remove(spec_path(wav_path))
    assert torch.allclose(ds[0][2], saved, atol=1e-5)
    assert torch.allclose(safe_load(spec_path(wav_path)), saved, atol=1e-5)

    batch = TextAudioCollate()([ds[i] for i in range(3)])
    c_b, f0_b, spec_b, wav_b, spk_b, lengths, uv_b, vol_b = batch
    n = int(lengths.max())
    assert c_b.shape == (3, 32, n) and f0_b.shape == (3, n) and spec_b.shape == (3, 1025, n)
    assert wav_b.shape == (3, 1, n * 512) and spk_b.shape == (3, 1) and uv_b.shape == (3, n)
    assert vol_b is None and list(lengths) == sorted(lengths.tolist(), reverse=True)

    with_ids = TextAudioSpeakerLoader(hps.data.training_files, hps, return_ids=True)
    out = TextAudioCollate()([with_ids[i] for i in (0, 1)])
    assert len(out) == 9 and sorted(out[8].tolist()) == [0, 1]

    # an f0 file that disagrees with the spectrogram: the error names the file
    victim = ds.audiopaths[1]
    f0_np = np.load(f0_path(victim))
    try:
        save_f0(f0_path(victim), f0_np[0][:-10], f0_np[1][:-10])
        with pytest.raises(DatasetError, match=re.escape(victim) + ".*frame counts disagree"):
            ds.get_audio(victim)
    finally:
        save_f0(f0_path(victim), f0_np[0], f0_np[1])

    # units from another encoder (wrong channel count), a speaker missing from the config
    bad = HParams(**{**hps.to_dict(), "model": {**hps.model.to_dict(), "ssl_dim": 768}})
    with pytest.raises(DatasetError, match=re.escape(victim) + ".*32 channels.*ssl_dim is 768"):
        TextAudioSpeakerLoader([victim], bad).get_audio(victim)
    bad = HParams(**{**hps.to_dict(), "spk": {"someone": 0}})
    with pytest.raises(DatasetError, match="not in the config's spk map"):
        TextAudioSpeakerLoader([victim], bad).get_audio(victim)
    with pytest.raises(DatasetError, match="not found.*nowhere.wav"):
        TextAudioSpeakerLoader(["./dataset/44k/alto/nowhere.wav"], hps)


def test_volume_augmentation(tmp_path, monkeypatch):
    from data_utils import TextAudioSpeakerLoader

    info = write_training_set(tmp_path, n_speakers=1, files_per_speaker=2, write_vol=True)
    cfg = tiny_config(info["spk"])
    cfg["model"]["vol_embedding"] = True
    cfg["train"]["vol_aug"] = True
    monkeypatch.chdir(tmp_path)
    hps = HParams(**cfg)
    ds = TextAudioSpeakerLoader(info["train"], hps)
    base = ds.get_audio(ds.audiopaths[0])
    vol0, wav0 = base[6], base[3]
    ratios = set()
    for _ in range(12):
        _, _, spec, wav, _, _, vol = ds.random_slice(*base)
        r = float(wav.abs().max() / wav0.abs().max())
        assert torch.allclose(vol, vol0 * r, rtol=1e-4, atol=1e-7)  # audio and volume together
        ratios.add(round(r, 6))
    assert len(ratios) > 2  # augmented about half the time, by a random gain
    no_aug = TextAudioSpeakerLoader(info["train"], hps, vol_aug=False)
    assert torch.equal(no_aug.random_slice(*base)[3], wav0)


# ----------------------------------------------------------------------------------------------
# training runs
# ----------------------------------------------------------------------------------------------
def test_ddp_two_ranks_gloo(workdir, tmp_path):
    """torchrun, 2 CPU processes (gloo): identical weights afterwards, disjoint samples."""
    debug = tmp_path / "debug"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(TRAIN), "-c", "configs/config.json", "-m", "ddp", "--num_workers", "0",
           "--max_steps", "2", "--eval_interval", "1000"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT), SOVITS_TRAIN_DEBUG_DIR=str(debug),
               OMP_NUM_THREADS="1")  # fmt: skip
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "process group: gloo, world size 2" in proc.stdout

    finals = [safe_load(debug / f"rank{r}_final.pt") for r in (0, 1)]
    for net in ("g", "d"):
        a, b = finals[0][net], finals[1][net]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{net} weights differ between ranks"
    assert finals[0]["global_step"] == finals[1]["global_step"] == 2

    seen = []
    for r in (0, 1):
        lines = (debug / f"rank{r}_samples.txt").read_text().splitlines()
        assert len(lines) == 2  # two steps each
        seen.append({name for ln in lines for name in ln.split("\t")[1:]})
    assert seen[0] and seen[1] and not (seen[0] & seen[1]), seen
    assert len(seen[0] | seen[1]) == 6  # one epoch of 6 files split between the ranks

    # rank 0 alone wrote the final checkpoint, equal to the ranks' weights
    model_dir = workdir / "logs" / "ddp"
    assert _steps(model_dir, "G") == [0, 1] and _steps(model_dir, "D") == [0, 1]  # step 0 + last
    g = safe_load(model_dir / "G_1.pth")
    assert set(g) >= {"model", "iteration", "optimizer", "learning_rate"}
    assert not any(k.startswith("module.") for k in g["model"])
    assert all(torch.equal(g["model"][k], finals[0]["g"][k]) for k in finals[0]["g"])
    assert g["train_state"]["global_step"] == 1 and g["train_state"]["world_size"] == 2
    assert (model_dir / "config.json").exists() and (model_dir / "train.log").exists()

    # TensorBoard: the reference's tags (rank 0 only), eval audio and mel images
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sizes = {"images": 0, "audio": 0, "scalars": 0}
    train_tb = EventAccumulator(str(model_dir), size_guidance=sizes)
    train_tb.Reload()
    tags = train_tb.Tags()
    assert set(tags["scalars"]) == {"loss/g/total", "loss/d/total", "learning_rate", "grad_norm_d",
                                    "grad_norm_g", "loss/g/fm", "loss/g/mel", "loss/g/kl",
                                    "loss/g/lf0"}  # fmt: skip
    assert set(tags["images"]) == {"slice/mel_org", "slice/mel_gen", "all/mel", "all/lf0",
                                   "all/norm_lf0"}  # fmt: skip
    assert [e.step for e in train_tb.Scalars("loss/g/mel")] == [0, 1]
    eval_tb = EventAccumulator(str(model_dir / "eval"), size_guidance=sizes)
    eval_tb.Reload()
    tags = eval_tb.Tags()
    assert set(tags["images"]) == {"gen/mel", "gt/mel"}
    assert set(tags["audio"]) == {"gen/audio_0", "gt/audio_0", "gen/audio_1", "gt/audio_1"}
    assert eval_tb.Audio("gen/audio_0")[0].sample_rate == 44100
    assert "loss/val/mel" in tags["scalars"]


def test_sigkill_then_resume(workdir):
    """SIGKILL in the middle of a checkpoint write; every file on disk loads; restart resumes."""
    model_dir = workdir / "logs" / "killed"
    args = [sys.executable, str(TRAIN), "-c", "configs/config.json", "-m", "killed",
            "--num_workers", "0", "--eval_interval", "1", "--keep_ckpts", "2",
            "--max_steps", "100"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(workdir / "killed.out", "w")
    proc = subprocess.Popen(args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
    caught_mid_write = False
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            steps = _steps(model_dir, "D") if model_dir.exists() else []
            tmps = list(model_dir.glob(".*.pth.*.tmp")) if model_dir.exists() else []
            if steps and max(steps) >= 1 and tmps:
                caught_mid_write = True
                break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert caught_mid_write, (workdir / "killed.out").read_text()[-3000:]
    leftovers = list(model_dir.glob(".*.pth.*.tmp"))
    assert leftovers  # the killed write left only a hidden temporary file

    files = sorted(model_dir.glob("[GD]_*.pth"))
    for f in files:  # never truncated: everything loads
        ckpt = safe_load(f)
        assert set(ckpt) >= {"model", "iteration", "optimizer", "learning_rate", "train_state"}
    pairs = sorted(set(_steps(model_dir, "G")) & set(_steps(model_dir, "D")))
    last = pairs[-1]

    proc = _train(workdir, "killed", "--eval_interval", "1000", "--max_steps", str(last + 3))
    assert f"Resuming from ./logs/killed/G_{last}.pth and ./logs/killed/D_{last}.pth" in proc.stdout
    assert f"next step {last + 1}" in proc.stdout
    assert re.search(rf"step: {last + 1},", proc.stdout), proc.stdout[-3000:]
    assert not re.search(r"step: 0,", proc.stdout)
    assert not list(model_dir.glob(".*.pth.*.tmp"))  # stale temporaries cleaned up
    g = safe_load(model_dir / f"G_{last + 2}.pth")
    assert g["train_state"]["global_step"] == last + 2
    assert torch.is_tensor(g["model"]["emb_g.weight"])


def test_finetune_from_pretrained_other_speaker_count(workdir):
    """A pretrained G_0/D_0 (reference layout, 3 speakers) fine-tuned with 2 speakers."""
    from models import MultiPeriodDiscriminator

    cfg = json.loads((workdir / "configs" / "config.json").read_text())
    model_dir = workdir / "logs" / "finetune"
    model_dir.mkdir(parents=True)
    torch.manual_seed(7)
    cfg3 = json.loads(json.dumps(cfg))
    cfg3["model"]["n_speakers"] = 3
    g3 = _build_g(cfg3)
    net_d = MultiPeriodDiscriminator()
    opt_g = torch.optim.AdamW(g3.parameters(), 1e-4, betas=(0.8, 0.99), eps=1e-9)
    opt_d = torch.optim.AdamW(net_d.parameters(), 1e-4, betas=(0.8, 0.99), eps=1e-9)
    for net, opt in ((g3, opt_g), (net_d, opt_d)):  # give the optimizers real (moment) state
        for p in net.parameters():
            p.grad = torch.full_like(p, 1e-3)
        opt.step()
    save_checkpoint(g3, opt_g, 1e-4, 0, model_dir / "G_0.pth")
    save_checkpoint(net_d, opt_d, 1e-4, 0, model_dir / "D_0.pth")

    proc = _train(workdir, "finetune", "--eval_interval", "1000", "--max_steps", "2")
    out = proc.stdout + proc.stderr
    assert re.search(r"emb_g\.weight has shape \(3, 16\) in the checkpoint but \(2, 16\)", out), out
    assert "optimizer state of a parameter of shape (2, 16) does not fit" in out
    assert "next step 1" in out  # reference: step = digits of D_0 + 1
    g1 = safe_load(model_dir / "G_1.pth")["model"]
    assert g1["emb_g.weight"].shape == (2, 16)
    pre = g3.state_dict()
    for k, v in pre.items():  # every other tensor was loaded, then moved by one small step
        if k != "emb_g.weight":
            assert (g1[k] - v).abs().max() < 5e-3, k
    assert not torch.equal(g1["pre.weight"], pre["pre.weight"])


# ----------------------------------------------------------------------------------------------
# compress_model.py
# ----------------------------------------------------------------------------------------------
def _check_compressed(cfg, full_path: Path, out_path: Path, half: bool) -> None:
    full = safe_load(full_path)
    comp = safe_load(out_path)
    # 4.1's keys plus the training step; the epoch ("iteration") is kept (4.1 wrote 0)
    assert set(comp) == {"model", "iteration", "optimizer", "learning_rate", "step"}
    assert comp["iteration"] == full["iteration"] and comp["learning_rate"] == 0.0001
    assert comp["step"] == checkpoint_step(full, full_path)
    assert comp["optimizer"]["state"] == {}
    assert not any("enc_q" in k for k in comp["model"])
    assert set(comp["model"]) == {k for k in full["model"] if "enc_q" not in k}
    want = torch.float16 if half else torch.float32
    assert all(v.dtype == want for v in comp["model"].values() if v.is_floating_point())
    assert out_path.stat().st_size <= 0.40 * full_path.stat().st_size


def test_compress_model_tiny(workdir):
    model_dir = workdir / "logs" / "ddp"
    if not (model_dir / "G_1.pth").exists():
        _train(workdir, "ddp", "--eval_interval", "1000", "--max_steps", "2")
    cfg = json.loads((workdir / "configs" / "config.json").read_text())
    src = model_dir / "G_1.pth"
    c = torch.randn(1, 32, 40)
    f0 = torch.full((1, 40), 220.0)
    uv = torch.ones(1, 40)
    ref = _build_g(cfg).eval()
    load_checkpoint(src, ref)
    want, _ = ref.infer(c, f0, uv, g=torch.LongTensor([[1]]))
    for half in (False, True):
        run_script([COMPRESS, "-c", "configs/config.json", "-i", src] + (["-hf"] if half else []),
                   cwd=workdir)  # fmt: skip
        # the release goes to compressed/ (not logs/, where it would be listed as a voice)
        out = workdir / "compressed" / ("G_1_release_half.pth" if half else "G_1_release.pth")
        _check_compressed(cfg, src, out, half)
        net = _build_g(cfg).eval()
        load_checkpoint(out, net)  # enc_q keys missing: warnings, fresh values
        got, _ = net.infer(c, f0, uv, g=torch.LongTensor([[1]]))
        assert got.shape == want.shape and torch.isfinite(got).all()
        if half:
            assert (got - want).abs().max() < 0.05
        else:
            assert torch.equal(got, want)
    # -o and a clear error for a file that is not a checkpoint
    run_script([COMPRESS, "-c", "configs/config.json", "-i", src, "-o", "rel.pth"], cwd=workdir)
    assert (workdir / "rel.pth").exists()
    (workdir / "junk.pth").write_bytes(b"not a checkpoint")
    proc = run_script([COMPRESS, "-c", "configs/config.json", "-i", "junk.pth"], cwd=workdir,
                      check=False)  # fmt: skip
    assert proc.returncode == 1 and "junk.pth" in proc.stderr


def test_compress_model_template_size(tmp_path):
    """The template model: training checkpoint with AdamW state vs release (and half) file."""
    from training.synthetic import template_config

    cfg = template_config({"a": 0, "b": 1})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    net = _build_g(cfg)
    opt = torch.optim.AdamW(net.parameters(), 1e-4, betas=(0.8, 0.99), eps=1e-9)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    src = tmp_path / "G_800.pth"
    save_checkpoint(net, opt, 1e-4, 3, src)
    del net, opt
    for half in (False, True):
        run_script([COMPRESS, "-c", "config.json", "-i", src] + (["-hf"] if half else []),
                   cwd=tmp_path)  # fmt: skip
        out = tmp_path / "compressed" / ("G_800_release_half.pth" if half else "G_800_release.pth")
        _check_compressed(cfg, src, out, half)
        ratio = out.stat().st_size / src.stat().st_size
        assert ratio < (0.15 if half else 0.28), ratio
        out.unlink()


# ----------------------------------------------------------------------------------------------
# a few minutes of CPU training lower the validation mel loss
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cpu_training_lowers_validation_mel_loss(tmp_path):
    """A few minutes on the CPU (tiny generator, lr 1e-3 so that minutes suffice): the mel L1 of
    ``infer`` on the validation files against the ground truth falls clearly."""
    info = write_training_set(tmp_path, n_speakers=2, files_per_speaker=5, duration=1.0)
    cfg = tiny_config(info["spk"], eval_interval=20, log_interval=10, keep_ckpts=1,
                      learning_rate=1e-3)  # fmt: skip
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.json").write_text(json.dumps(cfg, indent=2))
    steps = int(os.environ.get("SOVITS_SLOW_TRAIN_STEPS", "61"))
    proc = _train(tmp_path, "slow", "--max_steps", str(steps), timeout=3000)
    vals = [(int(s), float(v)) for s, v in
            re.findall(r"Validation at step (\d+): mel L1 ([\d.]+)", proc.stdout)]  # fmt: skip
    print("validation mel L1 by step:", vals)
    assert vals[0][0] == 0 and vals[-1][0] == steps - 1
    first, final = vals[0][1], vals[-1][1]
    assert final < 0.5 * first, vals
