"""SynthesizerTrn / MultiPeriodDiscriminator behaviour on tiny configs (sovits-4.1.md §9, §10).

Tiny = 8 inter / 16 hidden channels, 2 transformer layers, a 32-channel decoder with the real
512× upsampling, T = 30 frames. Every config variant of the templates is covered.
"""

from __future__ import annotations

import math

import pytest
import torch

from models import MultiPeriodDiscriminator, SynthesizerTrn

SPEC = 33  # spectrogram bins of the tiny model (the template uses 1025)
SEG = 8  # training slice in frames (template: 20)
HOP = 512
T = 30
SSL = 12
N_SPK = 3

TINY = dict(
    inter_channels=8,
    hidden_channels=16,
    filter_channels=32,
    n_heads=2,
    n_layers=2,
    kernel_size=3,
    p_dropout=0.1,
    resblock="1",
    resblock_kernel_sizes=[3],
    resblock_dilation_sizes=[[1, 3, 5]],
    upsample_rates=[8, 8, 2, 2, 2],
    upsample_initial_channel=32,
    upsample_kernel_sizes=[16, 16, 4, 4, 4],
    gin_channels=8,
    ssl_dim=SSL,
    n_speakers=N_SPK,
    # keys the reference config carries but the model ignores
    n_layers_q=3,
    use_spectral_norm=False,
    speech_encoder="vec768l12",
    speaker_embedding=False,
)

VARIANTS = {
    "default": {},
    "vol_embedding": dict(vol_embedding=True),
    "depthwise_shared_flow": dict(use_depthwise_conv=True, flow_share_parameter=True),
    "transformer_flow": dict(use_transformer_flow=True),
    "transformer_flow_shared": dict(use_transformer_flow=True, flow_share_parameter=True),
    "no_auto_f0": dict(use_automatic_f0_prediction=False),
    "snake": dict(vocoder_name="nsf-snake-hifigan"),
}


def make_net(seed: int = 0, **extra) -> SynthesizerTrn:
    torch.manual_seed(seed)
    net = SynthesizerTrn(SPEC, SEG, **{**TINY, **extra})
    # zero-initialised flow outputs would make the flows identities: give them some weight
    with torch.no_grad():
        for flow in net.flow.flows:
            if hasattr(flow, "post"):
                flow.post.weight.normal_(0, 0.05)
                flow.post.bias.normal_(0, 0.05)
    return net


def inputs(batch: int = 1, frames: int = T, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(batch, SSL, frames, generator=gen)
    t = torch.arange(frames, dtype=torch.float32)
    f0 = 220.0 * 2 ** (torch.sin(t / 5.0) / 6.0)
    f0 = f0.repeat(batch, 1) * (1.0 + 0.1 * torch.arange(batch)[:, None])
    uv = torch.ones(batch, frames)
    uv[:, :3] = 0.0
    vol = torch.rand(batch, frames, generator=gen) * 0.1
    return c, f0, uv, vol


# --------------------------------------------------------------------------------------------
# training forward
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_training_forward_shapes_and_backward(variant):
    extra = VARIANTS[variant]
    net = make_net(**extra).train()
    B = 2
    c, f0, uv, vol = inputs(B)
    spec = torch.rand(B, SPEC, T)
    g = torch.tensor([[0], [2]])
    lengths = torch.tensor([T, T - 5])
    out = net(c, f0, uv, spec, g=g, c_lengths=lengths, spec_lengths=lengths, vol=vol)
    o, ids_slice, spec_mask, (z, z_p, m_p, logs_p, m_q, logs_q), pred_lf0, norm_lf0, lf0 = out

    assert o.shape == (B, 1, SEG * HOP)
    assert ids_slice.shape == (B,) and ids_slice.dtype == torch.long
    assert 0 <= int(ids_slice[0]) <= T - SEG and 0 <= int(ids_slice[1]) <= T - 5 - SEG
    assert spec_mask.shape == (B, 1, T)
    assert spec_mask[1, 0, T - 5 :].sum() == 0 and spec_mask[1, 0, : T - 5].all()
    for t in (z, z_p, m_p, logs_p, m_q, logs_q):
        assert t.shape == (B, TINY["inter_channels"], T)
        assert torch.isfinite(t).all()
    # padded frames are zero in z and z_p
    assert z[1, :, T - 5 :].abs().sum() == 0 and z_p[1, :, T - 5 :].abs().sum() == 0
    if extra.get("use_automatic_f0_prediction", True):
        for t in (pred_lf0, norm_lf0, lf0):
            assert t.shape == (B, 1, T)
        assert torch.allclose(lf0, 2595.0 * torch.log10(1.0 + f0[:, None] / 700.0) / 500.0)
        # the f0 decoder does not propagate into the prior input
        loss = torch.nn.functional.mse_loss(pred_lf0, lf0)
        loss.backward(retain_graph=True)
        assert net.pre.weight.grad is None or net.pre.weight.grad.abs().sum() == 0
        assert net.f0_decoder.proj.weight.grad.abs().sum() > 0
    else:
        assert pred_lf0 == 0 and norm_lf0 == 0 and lf0 == 0
    (o.abs().mean() + z_p.pow(2).mean() + m_p.mean()).backward()
    assert net.enc_q.pre.weight.grad.abs().sum() > 0
    assert net.pre.weight.grad.abs().sum() > 0
    assert net.emb_g.weight.grad is not None


def test_training_slice_uses_same_window_for_z_and_f0():
    """dec gets z[..., ids:ids+S], f0[..., ids:ids+S] and g for the ids forward returns."""
    net = make_net().eval()
    B = 2
    c, f0, uv, vol = inputs(B)
    spec = torch.rand(B, SPEC, T)
    g = torch.tensor([[1], [2]])
    lengths = torch.tensor([T, T - 4])
    seen = {}

    def grab(module, args, kwargs):
        seen["args"], seen["kwargs"] = args, kwargs

    handle = net.dec.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        o, ids, _, (z, *_), *_ = net(c, f0, uv, spec, g=g, c_lengths=lengths, spec_lengths=lengths)
    finally:
        handle.remove()
    (x_arg,) = seen["args"]
    z_seg = torch.stack([z[i, :, ids[i] : ids[i] + SEG] for i in range(B)])
    f0_seg = torch.stack([f0[i, ids[i] : ids[i] + SEG] for i in range(B)])
    assert torch.equal(x_arg, z_seg)
    assert torch.equal(seen["kwargs"]["f0"], f0_seg)
    assert torch.equal(seen["kwargs"]["g"], net.emb_g(g).transpose(1, 2))


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_infer_same_seed_is_bit_identical(variant):
    net = make_net(**VARIANTS[variant]).eval()
    c, f0, uv, vol = inputs()
    sid = torch.LongTensor([[1]])
    o1, f1 = net.infer(c, f0, uv, g=sid, noice_scale=0.4, seed=1234, vol=vol)
    torch.manual_seed(999)  # global RNG state before the call must not matter
    o2, f2 = net.infer(c, f0, uv, g=sid, noice_scale=0.4, seed=1234, vol=vol)
    assert o1.shape == (1, 1, T * HOP) and f1.shape == (1, T)
    assert torch.isfinite(o1).all()
    assert torch.equal(o1, o2) and torch.equal(f1, f2)
    assert torch.equal(f1, f0)  # f0 passes through without prediction
    o3, _ = net.infer(c, f0, uv, g=sid, noice_scale=0.4, seed=1235, vol=vol)
    assert not torch.equal(o1, o3)


def test_infer_default_arguments_match_reference():
    import inspect

    sig = inspect.signature(SynthesizerTrn.infer)
    params = list(sig.parameters)
    assert params[:9] == ["self", "c", "f0", "uv", "g", "noice_scale", "seed", "predict_f0", "vol"]
    assert sig.parameters["noice_scale"].default == 0.35
    assert sig.parameters["seed"].default == 52468
    assert sig.parameters["predict_f0"].default is False


def test_infer_rng_consumption_matches_reference_order():
    """infer = seed → enc_p noise → flow⁻¹ → dec (no other draws, even with predict_f0)."""
    from modules.pitch import f0_to_coarse, f0_to_lf0, lf0_to_f0, normalize_f0

    net = make_net().eval()
    c, f0, uv, _ = inputs()
    sid = torch.LongTensor([[2]])
    o, f0_pred = net.infer(c, f0, uv, g=sid, noice_scale=0.35, seed=7, predict_f0=True)

    with torch.no_grad():
        torch.manual_seed(7)
        g = net.emb_g(sid).transpose(1, 2)
        x_mask = torch.ones(1, 1, T)
        x = net.pre(c) * x_mask + net.emb_uv(uv.long()).transpose(1, 2)
        norm_lf0 = normalize_f0(f0_to_lf0(f0[:, None]), x_mask, uv, random_scale=False)
        pred = net.f0_decoder(x, norm_lf0, x_mask, spk_emb=g)
        f0_hat = lf0_to_f0(pred).squeeze(1)
        m_p, logs_p = torch.split(
            net.enc_p.proj(net.enc_p.enc_(x + net.enc_p.f0_emb(f0_to_coarse(f0_hat)).transpose(1, 2), x_mask)),
            TINY["inter_channels"], dim=1,
        )  # fmt: skip
        eps = torch.randn(1, TINY["inter_channels"], T)  # draw 1: prior noise
        z_p = m_p + eps * torch.exp(logs_p) * 0.35
        z = net.flow(z_p, x_mask, g=g, reverse=True)
        o_ref = net.dec(z, g=g, f0=f0_hat)  # draws 2-4: source phases and noises
    assert torch.equal(f0_pred, f0_hat)
    assert torch.allclose(o, o_ref, atol=1e-6)


def test_infer_predict_f0_changes_f0():
    net = make_net().eval()
    c, f0, uv, _ = inputs()
    o, f0_pred = net.infer(c, f0, uv, g=torch.LongTensor([[0]]), predict_f0=True)
    assert f0_pred.shape == f0.shape and not torch.equal(f0_pred, f0)
    assert torch.isfinite(o).all()
    # without an f0 decoder predict_f0 is ignored
    net2 = make_net(use_automatic_f0_prediction=False).eval()
    _, f0_same = net2.infer(c, f0, uv, g=torch.LongTensor([[0]]), predict_f0=True)
    assert torch.equal(f0_same, f0)


@pytest.mark.parametrize("g", [torch.LongTensor([[1]]), torch.LongTensor([1])], ids=["2d", "1d"])
def test_infer_speaker_id_forms(g):
    net = make_net().eval()
    c, f0, uv, _ = inputs()
    ref, _ = net.infer(c, f0, uv, g=torch.LongTensor([[1]]))
    out, _ = net.infer(c, f0, uv, g=g)
    assert torch.equal(out, ref)


def test_infer_batch():
    net = make_net().eval()
    c, f0, uv, vol = inputs(batch=2)
    g = torch.LongTensor([[0], [2]])
    o1, f1 = net.infer(c, f0, uv, g=g, seed=5)
    o2, f2 = net.infer(c, f0, uv, g=g, seed=5)
    assert o1.shape == (2, 1, T * HOP) and f1.shape == (2, T)
    assert torch.equal(o1, o2)
    # 1-D ids for a batch, and predicted f0 for a batch
    o3, _ = net.infer(c, f0, uv, g=torch.LongTensor([0, 2]), seed=5)
    assert torch.equal(o1, o3)
    _, fp = net.infer(c, f0, uv, g=g, predict_f0=True)
    assert fp.shape == (2, T)


def test_infer_volume_embedding_is_used():
    net = make_net(vol_embedding=True).eval()
    c, f0, uv, vol = inputs()
    a, _ = net.infer(c, f0, uv, g=torch.LongTensor([[0]]), vol=vol)
    b, _ = net.infer(c, f0, uv, g=torch.LongTensor([[0]]), vol=vol * 3)
    d, _ = net.infer(c, f0, uv, g=torch.LongTensor([[0]]), vol=None)
    assert not torch.equal(a, b) and not torch.equal(a, d)
    # a model without vol_embedding ignores vol
    net2 = make_net().eval()
    e, _ = net2.infer(c, f0, uv, g=torch.LongTensor([[0]]), vol=vol)
    f, _ = net2.infer(c, f0, uv, g=torch.LongTensor([[0]]))
    assert torch.equal(e, f)


# --------------------------------------------------------------------------------------------
# speaker mix
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spk", [0, 2])
def test_speaker_mix_one_hot_equals_single_speaker(spk):
    net = make_net().eval()
    c, f0, uv, _ = inputs()
    plain, _ = net.infer(c, f0, uv, g=torch.LongTensor([[spk]]), seed=11)

    net.EnableCharacterMix(N_SPK, "cpu")
    assert net.speaker_map.shape == (1, N_SPK, 1, 1, TINY["gin_channels"])
    assert "speaker_map" not in dict(net.named_buffers())
    assert not any("speaker_map" in k for k in net.state_dict())
    weights = torch.zeros(T, N_SPK)
    weights[:, spk] = 1.0
    mixed, _ = net.infer(c, f0, uv, g=weights, seed=11)
    assert mixed.shape == plain.shape
    assert torch.allclose(mixed, plain, atol=1e-5)
    # a plain id still works while mixing is enabled
    again, _ = net.infer(c, f0, uv, g=torch.LongTensor([[spk]]), seed=11)
    assert torch.equal(again, plain)


def test_speaker_mix_embedding_is_per_frame_weighted_sum():
    net = make_net().eval()
    net.EnableCharacterMix(N_SPK, "cpu")
    w = torch.rand(T, N_SPK)
    w = w / w.sum(1, keepdim=True)
    g = net._speaker_embedding(w, 1)
    assert g.shape == (1, TINY["gin_channels"], T)
    expected = (w @ net.emb_g.weight[:N_SPK]).t().unsqueeze(0)
    assert torch.allclose(g, expected, atol=1e-6)
    c, f0, uv, _ = inputs()
    o, _ = net.infer(c, f0, uv, g=w)
    assert o.shape == (1, 1, T * HOP) and torch.isfinite(o).all()
    with pytest.raises(ValueError):
        net.infer(c, f0, uv, g=torch.rand(T, N_SPK + 1))


# --------------------------------------------------------------------------------------------
# weight norm removal
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_remove_weight_norm_keeps_output(variant):
    net = make_net(**VARIANTS[variant]).eval()
    c, f0, uv, vol = inputs()
    sid = torch.LongTensor([[1]])
    before, _ = net.infer(c, f0, uv, g=sid, vol=vol, predict_f0=True)
    net.remove_weight_norm()
    keys = list(net.state_dict())
    assert not any(k.endswith("weight_g") or k.endswith("weight_v") for k in keys)
    after, _ = net.infer(c, f0, uv, g=sid, vol=vol, predict_f0=True)
    assert (before - after).abs().max() < 1e-4
    net.remove_weight_norm()  # idempotent
    again, _ = net.infer(c, f0, uv, g=sid, vol=vol, predict_f0=True)
    assert torch.equal(after, again)


# --------------------------------------------------------------------------------------------
# discriminator
# --------------------------------------------------------------------------------------------
def test_multi_period_discriminator_shapes():
    torch.manual_seed(0)
    d = MultiPeriodDiscriminator()
    L = 2048 + 7  # not a multiple of any period
    y = torch.randn(2, 1, L) * 0.1
    y_hat = torch.randn(2, 1, L) * 0.1
    y_d_rs, y_d_gs, fmap_rs, fmap_gs = d(y, y_hat)
    assert len(y_d_rs) == len(y_d_gs) == len(fmap_rs) == len(fmap_gs) == 6
    # scale discriminator: 6 convs + post
    assert len(fmap_rs[0]) == 7
    assert fmap_rs[0][0].shape == (2, 16, L)
    assert y_d_rs[0].shape == (2, math.ceil(L / 256))
    for i, p in enumerate([2, 3, 5, 7, 11], start=1):
        assert len(fmap_rs[i]) == 6
        assert fmap_rs[i][0].shape[-1] == p
        assert fmap_rs[i][0].shape[1] == 32
        assert y_d_rs[i].shape[0] == 2 and y_d_rs[i].dim() == 2
        assert fmap_rs[i][-1].shape[1] == 1
    for a, b in zip(y_d_rs, y_d_gs):
        assert a.shape == b.shape


def test_discriminator_spectral_norm_variant_builds():
    d = MultiPeriodDiscriminator(use_spectral_norm=True)
    assert any(k.endswith("weight_orig") for k in d.state_dict())
    y = torch.randn(1, 1, 1024) * 0.1
    out = d(y, y)
    assert len(out[0]) == 6
