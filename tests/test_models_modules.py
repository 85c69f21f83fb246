"""Building blocks of the generator: commons, attentions, WN, couplings (sovits-4.1.md §9)."""

from __future__ import annotations

import math

import pytest
import torch

from modules import commons
from modules.attentions import FFN, FFT, Encoder, MultiHeadAttention
from modules.modules import (
    WN,
    Depthwise_Separable_Conv1D,
    Flip,
    ResidualCouplingBlock,
    TransformerCouplingBlock,
)


# --------------------------------------------------------------------------------------------
# commons
# --------------------------------------------------------------------------------------------
def test_sequence_mask():
    m = commons.sequence_mask(torch.tensor([3, 1]), 4)
    assert m.tolist() == [[True, True, True, False], [True, False, False, False]]
    assert commons.sequence_mask(torch.tensor([2, 3])).shape == (2, 3)
    # float lengths (infer builds them with torch.ones * T)
    assert commons.sequence_mask(torch.tensor([2.0]), 3).tolist() == [[True, True, False]]


def test_subsequent_mask():
    m = commons.subsequent_mask(3)
    assert m.shape == (1, 1, 3, 3)
    assert m[0, 0].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_slice_segments_and_pitch():
    x = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)
    ids = torch.tensor([0, 6])
    seg = commons.slice_segments(x, ids, 4)
    assert torch.equal(seg[0], x[0, :, 0:4]) and torch.equal(seg[1], x[1, :, 6:10])
    p = torch.arange(20, dtype=torch.float32).view(2, 10)
    ps = commons.slice_pitch_segments(p, ids, 4)
    assert torch.equal(ps, torch.stack([p[0, 0:4], p[1, 6:10]]))
    with pytest.raises(ValueError):
        commons.slice_segments(x, torch.tensor([0, 7]), 4)


def test_rand_slice_segments_with_pitch_draws_like_reference():
    x = torch.randn(3, 2, 12)
    pitch = torch.randn(3, 12)
    lengths = torch.tensor([12, 9, 5])
    torch.manual_seed(4)
    seg, pseg, ids = commons.rand_slice_segments_with_pitch(x, pitch, lengths, 5)
    torch.manual_seed(4)
    expected = (torch.rand([3]) * (lengths - 5 + 1)).long()
    assert torch.equal(ids, expected)
    for i in range(3):
        assert torch.equal(seg[i], x[i, :, ids[i] : ids[i] + 5])
        assert torch.equal(pseg[i], pitch[i, ids[i] : ids[i] + 5])
    seg2, ids2 = commons.rand_slice_segments(x, 12, 5)
    assert seg2.shape == (3, 2, 5) and ids2.max() <= 7


def test_fused_add_tanh_sigmoid_multiply():
    a = torch.randn(2, 6, 5)
    b = torch.randn(2, 6, 5)
    expected = torch.tanh((a + b)[:, :3]) * torch.sigmoid((a + b)[:, 3:])
    for n in (3, torch.IntTensor([3]), [3]):
        assert torch.allclose(commons.fused_add_tanh_sigmoid_multiply(a, b, n), expected)


def test_padding_helpers():
    assert commons.get_padding(5) == 2 and commons.get_padding(3, 2) == 2
    assert commons.convert_pad_shape([[0, 0], [1, 2], [3, 4]]) == [3, 4, 1, 2, 0, 0]


def test_clip_grad_value_none_only_measures():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, -4.0, 0.0, 0.0])
    assert commons.clip_grad_value_([p], None) == pytest.approx(5.0)
    assert p.grad.tolist() == [3.0, -4.0, 0.0, 0.0]
    commons.clip_grad_value_([p], 1.0)
    assert p.grad.tolist() == [1.0, -1.0, 0.0, 0.0]


def test_layer_norm_is_over_channels():
    ln = commons.LayerNorm(4)
    x = torch.randn(2, 4, 7)
    ref = torch.nn.functional.layer_norm(x.transpose(1, 2), (4,), eps=1e-5).transpose(1, 2)
    assert torch.allclose(ln(x), ref, atol=1e-6)
    assert [k for k, _ in ln.named_parameters()] == ["gamma", "beta"]


def test_weight_norm_helpers_legacy_layout():
    conv = commons.weight_norm(torch.nn.Conv1d(3, 4, 5))
    assert list(conv.state_dict()) == ["bias", "weight_g", "weight_v"]
    assert commons.has_weight_norm(conv)
    x = torch.randn(1, 3, 9)
    y = conv(x)
    commons.remove_weight_norm(conv)
    assert list(conv.state_dict()) == ["bias", "weight"]
    assert torch.allclose(conv(x), y, atol=1e-6)
    commons.remove_weight_norm(conv)  # no-op the second time


# --------------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------------
def _naive_attention(mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None):
    """Per-position loops: scores q_i·k_j/√d + q_i·E_k[j−i] (|j−i| ≤ w), values likewise."""
    q, k, v = mha.conv_q(x), mha.conv_k(x), mha.conv_v(x)
    b, c, t = q.shape
    h, d = mha.n_heads, mha.k_channels
    w = mha.window_size
    out = torch.zeros(b, h, t, d)
    for bi in range(b):
        for hi in range(h):
            qh = q[bi, hi * d : (hi + 1) * d].t() / math.sqrt(d)  # [t, d]
            kh = k[bi, hi * d : (hi + 1) * d].t()
            vh = v[bi, hi * d : (hi + 1) * d].t()
            scores = torch.zeros(t, t)
            for i in range(t):
                for j in range(t):
                    s = qh[i] @ kh[j]
                    if w is not None and abs(j - i) <= w:
                        s = s + qh[i] @ mha.emb_rel_k[0, j - i + w]
                    scores[i, j] = s
            if mask is not None:
                scores = scores.masked_fill(mask[bi, 0] == 0, -1e4)
            p = torch.softmax(scores, -1)
            for i in range(t):
                o = p[i] @ vh
                if w is not None:
                    for j in range(t):
                        if abs(j - i) <= w:
                            o = o + p[i, j] * mha.emb_rel_v[0, j - i + w]
                out[bi, hi, i] = o
    out = out.transpose(2, 3).reshape(b, c, t)
    return mha.conv_o(out)


@pytest.mark.parametrize("t", [2, 5, 9])
def test_relative_attention_matches_naive_loops(t):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 8, 2, window_size=4).eval()
    assert mha.emb_rel_k.shape == (1, 9, 4)
    x = torch.randn(2, 8, t)
    x_mask = torch.ones(2, 1, t)
    x_mask[1, 0, t - 1 :] = 0
    attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
    with torch.no_grad():
        got = mha(x, x, attn_mask)
        want = _naive_attention(mha, x, attn_mask)
    assert torch.allclose(got, want, atol=1e-5)


def test_proximal_init_copies_query_to_key():
    mha = MultiHeadAttention(8, 8, 2, proximal_init=True)
    assert torch.equal(mha.conv_k.weight, mha.conv_q.weight)
    assert torch.equal(mha.conv_k.bias, mha.conv_q.bias)
    assert not hasattr(mha, "emb_rel_k")


def test_ffn_padding_modes():
    x = torch.randn(1, 4, 10)
    mask = torch.ones(1, 1, 10)
    causal = FFN(4, 4, 8, 3, causal=True)
    y = causal(x, mask)
    x2 = x.clone()
    x2[..., 6:] += 1.0
    assert torch.allclose(causal(x2, mask)[..., :6], y[..., :6])  # no look-ahead
    same = FFN(4, 4, 8, 3)
    assert same(x, mask).shape == (1, 4, 10)
    y_same = same(x, mask)
    assert not torch.allclose(same(x2, mask)[..., 5], y_same[..., 5])  # looks one step ahead


def test_fft_is_causal_and_ignores_mask_in_attention():
    torch.manual_seed(0)
    fft = FFT(8, 16, 2, n_layers=2, kernel_size=3).eval()
    x = torch.randn(1, 8, 12)
    mask = torch.ones(1, 1, 12)
    y = fft(x, mask)
    x2 = x.clone()
    x2[..., 7:] = torch.randn(1, 8, 5)
    assert torch.allclose(fft(x2, mask)[..., :7], y[..., :7], atol=1e-6)
    names = [k for k, _ in fft.state_dict().items()]
    assert names[0].startswith("self_attn_layers.0.conv_q")
    assert not any("cond" in k for k in names)


def test_fft_isflow_conditioning():
    torch.manual_seed(0)
    fft = FFT(8, 16, 2, n_layers=3, kernel_size=5, isflow=True, gin_channels=6).eval()
    keys = list(fft.state_dict())
    assert keys[:5] == [
        "cond_pre.weight", "cond_pre.bias",
        "cond_layer.bias", "cond_layer.weight_g", "cond_layer.weight_v",
    ]  # fmt: skip
    assert fft.cond_layer.weight_v.shape == (2 * 8 * 3, 6, 1)
    x = torch.randn(1, 8, 10)
    mask = torch.ones(1, 1, 10)
    g1, g2 = torch.randn(1, 6, 1), torch.randn(1, 6, 1)
    assert not torch.allclose(fft(x, mask, g=g1), fft(x, mask, g=g2))


def test_encoder_masks_padding():
    torch.manual_seed(0)
    enc = Encoder(8, 16, 2, 2, kernel_size=3, p_dropout=0.0).eval()
    x = torch.randn(1, 8, 10)
    mask = torch.ones(1, 1, 10)
    mask[..., 7:] = 0
    y = enc(x, mask)
    assert y[..., 7:].abs().sum() == 0
    x2 = x.clone()
    x2[..., 7:] = 100.0  # padded content must not leak into valid frames
    assert torch.allclose(enc(x2, mask), y, atol=1e-5)


# --------------------------------------------------------------------------------------------
# WN / depthwise / flows
# --------------------------------------------------------------------------------------------
def test_wn_layout_and_depthwise():
    wn = WN(8, 5, 1, 3, gin_channels=4)
    keys = list(wn.state_dict())
    assert keys[:3] == ["in_layers.0.bias", "in_layers.0.weight_g", "in_layers.0.weight_v"]
    assert keys[-3:] == ["cond_layer.bias", "cond_layer.weight_g", "cond_layer.weight_v"]
    assert wn.res_skip_layers[-1].weight_v.shape == (8, 8, 1)
    assert wn.res_skip_layers[0].weight_v.shape == (16, 8, 1)

    dw = WN(8, 5, 1, 3, gin_channels=4, use_depthwise_conv=True)
    assert isinstance(dw.in_layers[0], Depthwise_Separable_Conv1D)
    dkeys = [k for k in dw.state_dict() if k.startswith("in_layers.0.")]
    assert dkeys == [
        "in_layers.0.depth_conv.bias", "in_layers.0.depth_conv.weight_g",
        "in_layers.0.depth_conv.weight_v", "in_layers.0.point_conv.bias",
        "in_layers.0.point_conv.weight_g", "in_layers.0.point_conv.weight_v",
    ]  # fmt: skip
    assert dw.in_layers[0].depth_conv.weight_v.shape == (8, 1, 5)
    assert dw.in_layers[0].point_conv.weight_v.shape == (16, 8, 1)

    x = torch.randn(2, 8, 11)
    mask = torch.ones(2, 1, 11)
    mask[1, :, 8:] = 0
    g = torch.randn(2, 4, 1)
    for net in (wn, dw):
        y = net(x, mask, g=g)
        assert y.shape == x.shape and y[1, :, 8:].abs().sum() == 0
        before = y.clone()
        net.remove_weight_norm()
        assert torch.allclose(net(x, mask, g=g), before, atol=1e-6)


def test_wn_dilation():
    wn = WN(4, 3, 2, 3)
    assert [layer.dilation[0] for layer in wn.in_layers] == [1, 2, 4]
    assert [layer.padding[0] for layer in wn.in_layers] == [1, 2, 4]
    assert not hasattr(wn, "cond_layer")
    x = torch.randn(1, 4, 9)
    assert wn(x, torch.ones(1, 1, 9)).shape == x.shape


def test_flip():
    x = torch.arange(6.0).view(1, 3, 2)
    y, logdet = Flip()(x, None)
    assert torch.equal(y, x.flip(1)) and torch.equal(logdet, torch.zeros(1))
    assert torch.equal(Flip()(y, None, reverse=True), x)


def _randomise_posts(block):
    with torch.no_grad():
        for f in block.flows:
            if hasattr(f, "post"):
                f.post.weight.normal_(0, 0.1)
                f.post.bias.normal_(0, 0.1)


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("kind", ["residual", "transformer"])
def test_flow_blocks_invert(kind, share):
    torch.manual_seed(0)
    if kind == "residual":
        block = ResidualCouplingBlock(8, 16, 5, 1, 4, gin_channels=6, share_parameter=share)
    else:
        block = TransformerCouplingBlock(8, 16, 32, 2, 3, 5, 0.0, 4, gin_channels=6,
                                         share_parameter=share)  # fmt: skip
    block.eval()
    assert len(block.flows) == 8
    assert (block.wn is not None) == share
    if share:
        assert all(block.flows[i].enc is block.wn for i in (0, 2, 4, 6))
    # post starts at zero: the flow is a pure permutation until trained
    x = torch.randn(2, 8, 13)
    mask = torch.ones(2, 1, 13)
    mask[1, :, 10:] = 0
    x = x * mask
    g = torch.randn(2, 6, 1)
    assert torch.allclose(block(x, mask, g=g), x, atol=0)  # 4 flips = identity, m = 0
    _randomise_posts(block)
    z = block(x, mask, g=g)
    assert not torch.allclose(z, x)
    back = block(z, mask, g=g, reverse=True)
    assert torch.allclose(back, x, atol=1e-5)
    block.remove_weight_norm()
    assert torch.allclose(block(x, mask, g=g), z, atol=1e-5)


def test_residual_block_uses_n_layers_as_wn_depth():
    """SynthesizerTrn passes n_flow_layer positionally as the WN depth; 4 flows regardless."""
    block = ResidualCouplingBlock(8, 16, 5, 1, 2, gin_channels=0)
    assert len(block.flows) == 8
    assert len(block.flows[0].enc.in_layers) == 2


def test_init_weights():
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(64, 64, 5)
    commons.init_weights(conv)
    assert conv.weight.std().item() == pytest.approx(0.01, rel=0.1)
    dw = Depthwise_Separable_Conv1D(64, 128, 5)
    commons.init_weights(dw)
    assert dw.depth_conv.weight.std().item() == pytest.approx(0.01, rel=0.2)
    assert dw.point_conv.weight.std().item() == pytest.approx(0.01, rel=0.1)
    lin = torch.nn.Linear(4, 4)
    before = lin.weight.clone()
    commons.init_weights(lin)
    assert torch.equal(lin.weight, before)
