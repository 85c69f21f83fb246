"""modules/fast_conv.py: the channels-last convolution path gives the plain model's output."""

from __future__ import annotations

import json

import pytest
import torch

from modules.fast_conv import channels_last_convs, undo
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def template_net():
    from models import SynthesizerTrn

    cfg = json.loads((ROOT / "configs_template" / "config_template.json").read_text())
    cfg["model"]["n_speakers"] = 2
    torch.manual_seed(0)
    net = SynthesizerTrn(1025, 32, **cfg["model"]).eval()
    return net


def inputs(T=60, C=768):
    g = torch.Generator().manual_seed(1)
    f0 = 220 * (1 + 0.05 * torch.sin(torch.arange(T) / 5.0))[None]
    return torch.randn(1, C, T, generator=g), f0, torch.ones(1, T), torch.LongTensor([[1]])


@pytest.mark.slow
def test_same_output_as_the_plain_model_with_weight_norm(template_net):
    net = template_net
    c, f0, uv, sid = inputs()
    with torch.no_grad():
        ref = net.infer(c, f0, uv, g=sid, noice_scale=0.4)[0]  # weight norm kept, as 4.1's Svc
    keys = {k: v.shape for k, v in net.state_dict().items()}
    net.remove_weight_norm()
    n = channels_last_convs(net.dec)
    assert n > 100
    assert {k: v.shape for k, v in net.state_dict().items() if k in keys} == {
        k: s for k, s in keys.items() if k in net.state_dict()
    }
    with torch.inference_mode():
        out = net.infer(c, f0, uv, g=sid, noice_scale=0.4)[0]
        again = net.infer(c, f0, uv, g=sid, noice_scale=0.4)[0]
    assert torch.equal(out, again)
    assert (out - ref).abs().max() < 1e-4
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        fast = net.infer(c, f0, uv, g=sid, noice_scale=0.4)[0].float()
    snr = 10 * torch.log10((ref**2).sum() / ((fast - ref) ** 2).sum())
    assert snr > 35, snr
    undo(net.dec)
    assert all(p.is_contiguous() for p in net.dec.parameters())
    with torch.inference_mode():
        plain = net.infer(c, f0, uv, g=sid, noice_scale=0.4)[0]
    assert (plain - out).abs().max() < 1e-4


@pytest.mark.parametrize("tile", [None, 7, 16, 1000])
def test_every_conv_kind_matches(tile):
    """Plain, dilated, strided (C_in = 1, polyphase), transposed (polyphase), with and without
    tiles; grouped convolutions are left alone."""
    torch.manual_seed(0)
    mods = [torch.nn.Conv1d(8, 6, 5, padding=2), torch.nn.Conv1d(8, 6, 7, padding=9, dilation=3),
            torch.nn.Conv1d(8, 6, 3, padding=0), torch.nn.Conv1d(8, 6, 1), torch.nn.Conv1d(1, 6, 1),
            torch.nn.Conv1d(1, 6, 16, stride=8, padding=4), torch.nn.Conv1d(1, 5, 128, stride=64, padding=32),
            torch.nn.Conv1d(1, 6, 4, stride=2, padding=1), torch.nn.Conv1d(1, 6, 5, stride=2, padding=3),
            torch.nn.ConvTranspose1d(8, 4, 16, 8, padding=4), torch.nn.ConvTranspose1d(8, 4, 4, 2, padding=1),
            torch.nn.ConvTranspose1d(8, 4, 5, 2, padding=1), torch.nn.ConvTranspose1d(8, 4, 16, 8, padding=4, bias=False),
            torch.nn.Conv1d(8, 8, 3, padding=1, groups=8)]  # fmt: skip
    for m in mods:
        for length in (9, 50, 333):
            x = torch.randn(2, m.in_channels, length * (64 if m.in_channels == 1 else 1))
            with torch.no_grad():
                ref = m(x)
                box = torch.nn.Sequential(m)
                n = channels_last_convs(box, tile=tile)
                out = m(x)
                undo(box)
            assert n == (0 if m.groups > 1 else 1)
            assert out.shape == ref.shape, (m, length)
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5, msg=f"{m} L={length}")
            assert torch.equal(m(x), ref)  # undone
