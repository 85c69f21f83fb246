"""Static model merge (inference/merge.py, sovits-4.1.md §12)."""

from __future__ import annotations

import pytest
import torch

from common.checkpoint import CheckpointError, safe_load, save_checkpoint
from inference.merge import mix_model, mix_weights
from tests.conftest import run_script


def tiny_ckpt(path, seed, n_speakers=2):
    from models import SynthesizerTrn
    from training.synthetic import tiny_config

    cfg = tiny_config({f"s{i}": i for i in range(n_speakers)}, ssl_dim=8)
    torch.manual_seed(seed)
    net = SynthesizerTrn(1025, 4, **cfg["model"])
    save_checkpoint(net, None, 1e-4, 7 + seed, path)
    return net.state_dict()


def test_weights():
    torch.testing.assert_close(mix_weights([100, 100]), torch.tensor([0.5, 0.5]))
    w = mix_weights([50, 100], "convex")  # softmax of the fractions, as the reference
    torch.testing.assert_close(w, torch.softmax(torch.tensor([0.5, 1.0]), 0))
    torch.testing.assert_close(mix_weights([30, 70], "linear"), torch.tensor([0.3, 0.7]))
    with pytest.raises(ValueError):
        mix_weights([1], "other")


def test_mix_convex_and_linear(tmp_path):
    a = tiny_ckpt(tmp_path / "a.pth", 0)
    b = tiny_ckpt(tmp_path / "b.pth", 1)
    out = mix_model(
        [tmp_path / "a.pth", tmp_path / "b.pth"], [100, 100], "convex", tmp_path / "o.pth"
    )
    ck = safe_load(out)
    assert set(ck) == {"model", "iteration", "optimizer", "learning_rate"} and ck["iteration"] == 7
    assert list(ck["model"]) == list(a)
    for k in a:
        torch.testing.assert_close(ck["model"][k], 0.5 * a[k] + 0.5 * b[k])
    mix_model([tmp_path / "a.pth", tmp_path / "b.pth"], [30, 70], "linear", tmp_path / "l.pth")
    ck = safe_load(tmp_path / "l.pth")
    k = "enc_p.proj.weight"
    torch.testing.assert_close(ck["model"][k], 0.3 * a[k] + 0.7 * b[k])


def test_mismatched_models_are_refused(tmp_path):
    tiny_ckpt(tmp_path / "a.pth", 0, n_speakers=2)
    tiny_ckpt(tmp_path / "b.pth", 1, n_speakers=3)
    with pytest.raises(CheckpointError, match="emb_g.weight has shape"):
        mix_model([tmp_path / "a.pth", tmp_path / "b.pth"], output_path=tmp_path / "o.pth")
    assert not (tmp_path / "o.pth").exists()
    with pytest.raises(ValueError, match="rates"):
        mix_model([tmp_path / "a.pth"], [1, 2], output_path=tmp_path / "o.pth")


def test_cli(tmp_path):
    a = tiny_ckpt(tmp_path / "a.pth", 0)
    tiny_ckpt(tmp_path / "b.pth", 1)
    run_script(
        ["-m", "inference.merge", "a.pth", "b.pth", "-r", "100", "0", "-m", "linear"], cwd=tmp_path
    )
    ck = safe_load(tmp_path / "output.pth")  # the reference's default ./output.pth
    for k in a:
        torch.testing.assert_close(ck["model"][k], a[k])
    proc = run_script(["-m", "inference.merge", "a.pth", "missing.pth"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "missing.pth" in proc.stderr
