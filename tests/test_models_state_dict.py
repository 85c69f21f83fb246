"""Generator / discriminator layout vs the reference state dicts (sovits-4.1.md §9, §10, §20).

Each ``state_dict_G_*.json`` holds the ``model_config`` it was dumped with, every state-dict key
in the reference order with shape and dtype, and the parameter counts (copied verbatim from the
shared reference folder into ``tests/data/state_dict/``). The model is built
exactly as train.py builds it: ``SynthesizerTrn(filter_length // 2 + 1 (=1025),
segment_size // hop_length (=20), **model_config)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
REF = ROOT / "tests" / "data" / "state_dict"
G_JSONS = sorted(REF.glob("state_dict_G_*.json"))

SPEC_CHANNELS = 2048 // 2 + 1  # data.filter_length // 2 + 1
SEGMENT_FRAMES = 10240 // 512  # train.segment_size // data.hop_length


def test_reference_files_present():
    assert len(G_JSONS) == 7 and (REF / "state_dict_D.json").is_file()


def _layout(sd: dict[str, torch.Tensor]) -> list[tuple[str, list[int], str]]:
    return [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()]


def _ref_layout(ref: dict) -> list[tuple[str, list[int], str]]:
    return [(k, list(v["shape"]), v["dtype"]) for k, v in ref["state_dict"].items()]


def _assert_same_layout(got, want):
    assert len(got) == len(want), f"{len(got)} keys, reference has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"state-dict entry {i}: got {g}, reference {w}"


def _counts(model: torch.nn.Module) -> dict[str, int]:
    sd = model.state_dict()
    return {
        "num_state_dict_keys": len(sd),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "state_dict_numel": sum(v.numel() for v in sd.values()),
    }


@pytest.mark.parametrize("path", G_JSONS, ids=[p.stem for p in G_JSONS])
def test_generator_state_dict_matches_reference(path):
    from models import SynthesizerTrn

    ref = json.loads(path.read_text())
    torch.manual_seed(0)
    net = SynthesizerTrn(SPEC_CHANNELS, SEGMENT_FRAMES, **ref["model_config"])
    _assert_same_layout(_layout(net.state_dict()), _ref_layout(ref))
    counts = _counts(net)
    for key, value in counts.items():
        assert value == ref[key], f"{key}: {value} != reference {ref[key]}"


def test_discriminator_state_dict_matches_reference():
    from models import MultiPeriodDiscriminator

    ref = json.loads((REF / "state_dict_D.json").read_text())
    net = MultiPeriodDiscriminator(use_spectral_norm=False)
    _assert_same_layout(_layout(net.state_dict()), _ref_layout(ref))
    counts = _counts(net)
    for key, value in counts.items():
        assert value == ref[key], f"{key}: {value} != reference {ref[key]}"


def test_shared_flow_parameters_are_one_set_of_tensors():
    """flow_share_parameter: flow.wn.* and flow.flows.N.enc.* are the same tensors."""
    from models import SynthesizerTrn

    ref = json.loads((REF / "state_dict_G_tiny_vec768l12.json").read_text())
    net = SynthesizerTrn(SPEC_CHANNELS, SEGMENT_FRAMES, **ref["model_config"])
    sd = net.state_dict()
    wn_keys = [k for k in sd if k.startswith("flow.wn.")]
    assert wn_keys
    for n in (0, 2, 4, 6):
        assert net.flow.flows[n].enc is net.flow.wn
        for k in wn_keys:
            twin = k.replace("flow.wn.", f"flow.flows.{n}.enc.")
            assert sd[twin].data_ptr() == sd[k].data_ptr()
    # the shared tensors count once among the parameters, twice in the state dict
    shared = sum(sd[k].numel() for k in wn_keys)
    assert ref["state_dict_numel"] - ref["total_parameters"] == 4 * shared
    # a checkpoint with both names loads back (strict)
    net.load_state_dict(sd, strict=True)


def test_template_config_builds_via_hparams():
    """``SynthesizerTrn(1025, segment_size // hop, **hps.model)`` with the shipped template."""
    from common.hparams import load_config
    from models import SynthesizerTrn

    hps = load_config(ROOT / "configs_template" / "config_template.json")
    net = SynthesizerTrn(
        hps.data.filter_length // 2 + 1,
        hps.train.segment_size // hps.data.hop_length,
        **hps.model,
    )
    assert net.segment_size == 20
    assert sum(p.numel() for p in net.parameters()) == 52_402_957  # §9 table
    # the per-module split of §9
    split = {
        "emb_g": 153_600,
        "pre": 737_472,
        "enc_p": 6_341_760,
        "dec": 14_802_060,
        "enc_q": 12_067_200,
        "flow": 11_832_960,
        "f0_decoder": 6_467_521,
        "emb_uv": 384,
    }
    for name, n in split.items():
        assert sum(p.numel() for p in getattr(net, name).parameters()) == n, name

    # the full-size model runs (8 frames keep it quick)
    net.eval()
    frames = 8
    c = torch.randn(1, hps.model.ssl_dim, frames)
    f0 = torch.full((1, frames), 220.0)
    uv = torch.ones(1, frames)
    o, f0_out = net.infer(c, f0, uv, g=torch.LongTensor([[0]]), predict_f0=True)
    assert o.shape == (1, 1, frames * hps.data.hop_length)
    assert torch.isfinite(o).all() and f0_out.shape == (1, frames)


def test_depthwise_choice_does_not_leak_between_models():
    """The reference switched a module-global conv class; here each model keeps its own."""
    from models import SynthesizerTrn

    small = dict(
        inter_channels=4, hidden_channels=8, filter_channels=8, n_heads=2, n_layers=1,
        kernel_size=3, p_dropout=0.0, resblock="1", resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3, 5]], upsample_rates=[8, 8, 2, 2, 2],
        upsample_initial_channel=32, upsample_kernel_sizes=[16, 16, 4, 4, 4],
        gin_channels=4, ssl_dim=6, n_speakers=2,
    )  # fmt: skip
    a = SynthesizerTrn(9, 4, use_depthwise_conv=True, **small)
    b = SynthesizerTrn(9, 4, use_depthwise_conv=False, **small)
    c = SynthesizerTrn(9, 4, **small)
    assert any("depth_conv" in k for k in a.state_dict())
    assert not any("depth_conv" in k for k in b.state_dict())
    assert not any("depth_conv" in k for k in c.state_dict())
    # the decoder never uses depthwise convs (§18.2)
    assert not any(k.startswith("dec.") and "depth_conv" in k for k in a.state_dict())


def test_reference_counts_table_is_consistent():
    """Sanity: the JSON counts agree with the shapes they list."""
    for path in G_JSONS:
        ref = json.loads(path.read_text())
        numel = sum(math.prod(v["shape"]) for v in ref["state_dict"].values())
        assert numel == ref["state_dict_numel"], path.name
        assert len(ref["state_dict"]) == ref["num_state_dict_keys"], path.name
