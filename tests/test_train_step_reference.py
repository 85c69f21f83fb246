"""Our training step (training.trainer.train_step) against the straightforward so-vits-svc 4.1
step (training.reference_step, sovits-4.1.md §11): same seed, weights and batch give the same
losses (fp32, ±1e-3 relative) and the same parameters after a step."""

from __future__ import annotations

import copy

import pytest
import torch

from common.hparams import HParams
from training.synthetic import synthetic_batch, tiny_config


def _setup(seed=0, **train):
    from models import MultiPeriodDiscriminator, SynthesizerTrn

    torch.manual_seed(seed)
    hps = HParams(**tiny_config({"a": 0, "b": 1}, ssl_dim=8, segment_frames=4, **train))
    net_g = SynthesizerTrn(1025, 4, **hps.model)
    net_d = MultiPeriodDiscriminator()
    return hps, net_g, net_d


def _copy(hps, net_g, net_d):
    """Fresh nets holding the same weights (deepcopy fails on legacy weight norm)."""
    from models import MultiPeriodDiscriminator, SynthesizerTrn

    g2 = SynthesizerTrn(1025, 4, **hps.model)
    d2 = MultiPeriodDiscriminator()
    g2.load_state_dict(net_g.state_dict())
    d2.load_state_dict(net_d.state_dict())
    g2.train(net_g.training)
    d2.train(net_d.training)
    return g2, d2


def _n_convs(dec) -> int:
    """The decoder's (transposed) 1-D convolutions that the live channels-last path takes."""
    return sum(type(m) in (torch.nn.Conv1d, torch.nn.ConvTranspose1d) and m.groups == 1
               for m in dec.modules())  # fmt: skip


def _optims(hps, net_g, net_d):
    t = hps.train
    kw = dict(lr=t.learning_rate * 10, betas=tuple(t.betas), eps=t.eps)  # visible steps
    return torch.optim.AdamW(net_g.parameters(), **kw), torch.optim.AdamW(net_d.parameters(), **kw)


def _run_both(hps, net_g, net_d, batch, steps, after_first=None):
    from training.reference_step import reference_train_step
    from training.speed import speed_up
    from training.trainer import StepContext, train_step

    g2, d2 = _copy(hps, net_g, net_d)
    og, od = _optims(hps, net_g, net_d)
    og2, od2 = _optims(hps, g2, d2)
    # the trainer's CPU set-up: channels-last decoder with live weights, fused AdamW
    assert speed_up(net_g, (og, od), torch.device("cpu")) == [
        f"decoder convolutions channels-last ({_n_convs(net_g.dec)} layers)",
        "fused AdamW",
    ]
    ctx = StepContext.create(hps, net_g, net_d, og, od, torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    ours, ref = [], []
    for s in range(steps):
        torch.manual_seed(100 + s)
        out = train_step(ctx, **batch)
        ours.append({k: float(v) for k, v in out.items() if k.startswith(("loss", "grad_norm"))})
        torch.manual_seed(100 + s)
        ref.append(reference_train_step(hps, g2, d2, og2, od2, scaler, **batch))
        if s == 0 and after_first is not None:
            after_first(g2, d2)
    return ours, ref


def _assert_same_update(p, p2, lr, what):
    """Adam's first step moves every weight by about ±lr whatever the gradient's size, so a
    gradient that is 0 up to rounding may move either way: allow that for a few elements (1 %,
    and at least 2: a 32-element bias with one such element is 3 %)."""
    d = (p - p2).abs()
    assert float(d.max()) <= 2.2 * lr, (what, float(d.max()))
    flipped = int((d > 1e-6).sum())
    assert flipped <= max(2, 0.01 * d.numel()), (what, flipped, d.numel())


def test_train_step_matches_reference_step_fp32():
    """2 steps: equal losses and grad norms (±1e-3 relative); equal parameters after step 1."""
    hps, net_g, net_d = _setup()
    batch = synthetic_batch(hps, 2, 16, seed=1)
    before = {k: v.clone() for k, v in net_g.state_dict().items()}
    checked = []

    lr = hps.train.learning_rate * 10

    def same_parameters(g2, d2):
        moved = 0
        for (k, p), p2 in zip(net_g.state_dict().items(), g2.state_dict().values()):
            _assert_same_update(p, p2, lr, f"G {k}")
            moved += int(not torch.equal(p, before[k]))
        assert moved > 10
        for (k, p), p2 in zip(net_d.state_dict().items(), d2.state_dict().values()):
            _assert_same_update(p, p2, lr, f"D {k}")
        checked.append(True)

    ours, ref = _run_both(hps, net_g, net_d, batch, steps=2, after_first=same_parameters)
    assert checked
    assert all(r["loss_mel"] > 0 and r["loss_disc"] > 0 and r["loss_fm"] > 0 for r in ref)
    for step, (a, b) in enumerate(zip(ours, ref)):
        for k, v in b.items():
            assert abs(a[k] - v) <= 1e-3 * max(abs(v), 1e-6), (step, k, a[k], v)
    # the losses move between steps (the updates happen), else equality would prove little
    assert ref[0]["loss_disc"] != ref[1]["loss_disc"]
    # requires_grad of D is restored after the generator update's discriminator pass
    assert all(p.requires_grad for p in net_d.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("half", ["bf16"])
def test_cpu_bf16_autocast_step_stays_near_fp32(half):
    """train.fp16_run + half_type bf16 on the CPU autocasts to bf16; losses stay near fp32."""
    from training.trainer import StepContext, train_step

    hps, net_g, net_d = _setup(seed=5)
    batch = synthetic_batch(hps, 2, 16, seed=4)
    hps16 = copy.deepcopy(hps)
    hps16.train["fp16_run"] = True
    hps16.train["half_type"] = half
    res = []
    for h in (hps, hps16):
        g, d = _copy(h, net_g, net_d)
        og, od = _optims(h, g, d)
        ctx = StepContext.create(h, g, d, og, od, torch.device("cpu"))
        assert ctx.fp16_run == (h is hps16) and not ctx.scaler.is_enabled()
        torch.manual_seed(7)
        res.append({k: float(v) for k, v in train_step(ctx, **batch).items() if "loss" in k})
    for k in ("loss_disc", "loss_mel", "loss_gen", "loss_fm", "loss_kl"):
        assert abs(res[0][k] - res[1][k]) <= 0.05 * abs(res[0][k]) + 1e-3, (k, res)
    assert res[0]["loss_mel"] != res[1]["loss_mel"]  # bf16 really ran


def test_fused_adamw_is_saved_as_a_plain_adamw():
    """The fused flag is a speed setting: checkpoints carry the optimizer as a plain AdamW has
    it (so-vits-svc 4.1 and older torch load it), and a resume switches it on again."""
    from training.speed import plain_optimizer_state, use_fused_adamw

    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = torch.optim.AdamW([w], 1e-3)
    plain_groups = [dict(g, params=None) for g in opt.state_dict()["param_groups"]]
    assert use_fused_adamw(opt, torch.device("cpu"))
    w.grad = torch.randn(4, 3)
    opt.step()
    saved = plain_optimizer_state(opt.state_dict())
    assert [dict(g, params=None) for g in saved["param_groups"]] == plain_groups
    assert opt.param_groups[0]["fused"] is True  # the live optimizer keeps its setting
    fresh = torch.optim.AdamW([torch.nn.Parameter(w.detach().clone())], 1e-3)
    fresh.load_state_dict(saved)
    assert not fresh.param_groups[0]["fused"]
    assert use_fused_adamw(fresh, torch.device("cpu")) and fresh.param_groups[0]["fused"]
    torch.testing.assert_close(fresh.state_dict()["state"][0]["exp_avg"],
                               opt.state_dict()["state"][0]["exp_avg"])  # fmt: skip
