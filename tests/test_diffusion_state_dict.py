"""Unit2Mel layout vs the reference dumps (sovits-4.1.md §13, state_dict_diffusion_Unit2Mel*.json):
keys in order, shapes, dtypes and counts, buffers included, for n_spk 1 and 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

REF = Path(__file__).resolve().parent / "data" / "state_dict"
JSONS = [
    REF / "state_dict_diffusion_Unit2Mel.json",
    REF / "state_dict_diffusion_Unit2Mel_nspk2.json",
]


@pytest.mark.parametrize("path", JSONS, ids=[p.stem for p in JSONS])
def test_unit2mel_state_dict_matches_reference(path):
    from diffusion import Unit2Mel

    ref = json.loads(path.read_text())
    m = ref["config_model"]
    with torch.device("meta"):  # shapes only: no 55 M-parameter init on a small CI machine
        model = Unit2Mel(ref["input_channel"], m["n_spk"], m["use_pitch_aug"], ref["out_dims"],
                         m["n_layers"], m["n_chans"], m["n_hidden"], m["timesteps"], m["k_step_max"])  # fmt: skip
    sd = model.state_dict()
    got = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()]
    want = [(k, v["shape"], v["dtype"]) for k, v in ref["state_dict"].items()]
    assert len(got) == len(want) == ref["num_state_dict_keys"]
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"entry {i}: got {g}, reference {w}"
    assert sum(p.numel() for p in model.parameters()) == ref["total_parameters"]
    assert sum(v.numel() for v in sd.values()) == ref["state_dict_numel"]


def test_diffusion_buffers_values():
    """The schedules of the 4.1 linear-beta DDPM (float32 buffers) against a direct computation."""
    from diffusion import GaussianDiffusion, WaveNet

    d = GaussianDiffusion(WaveNet(128, 1, 8, 4), timesteps=1000, k_step=1000)
    betas = np.linspace(1e-4, 0.02, 1000)
    ac = np.cumprod(1 - betas)
    ac_prev = np.concatenate([[1.0], ac[:-1]])
    np.testing.assert_allclose(d.betas.numpy(), betas, rtol=1e-6)
    np.testing.assert_allclose(d.alphas_cumprod.numpy(), ac, rtol=1e-5)
    np.testing.assert_allclose(d.alphas_cumprod_prev.numpy(), ac_prev, rtol=1e-5)
    pv = betas * (1 - ac_prev) / (1 - ac)
    np.testing.assert_allclose(d.posterior_variance.numpy(), pv, rtol=1e-5)
    np.testing.assert_allclose(
        d.posterior_log_variance_clipped.numpy()[0], np.log(1e-20), rtol=1e-6
    )
    np.testing.assert_allclose(d.posterior_mean_coef2.numpy(),
                               (1 - ac_prev) * np.sqrt(1 - betas) / (1 - ac), rtol=1e-5)  # fmt: skip
    assert d.spec_min.shape == (1, 1, 1) and float(d.spec_min) == -12 and float(d.spec_max) == 2
    x = torch.linspace(-12, 2, 5)[None, :, None]
    assert torch.allclose(d.norm_spec(x)[0, :, 0], torch.linspace(-1, 1, 5))
    assert torch.allclose(d.denorm_spec(d.norm_spec(x)), x)


def test_wavenet_step_embedding_and_zero_output():
    """Sinusoidal embedding formula; the zero-initialised output projection gives zero noise."""
    from diffusion.wavenet import SinusoidalPosEmb, WaveNet

    emb = SinusoidalPosEmb(8)(torch.tensor([0.0, 3.0]))
    f = np.exp(-np.arange(4) * np.log(10000) / 3)
    np.testing.assert_allclose(
        emb[1].numpy(), np.concatenate([np.sin(3 * f), np.cos(3 * f)]), rtol=1e-5
    )
    net = WaveNet(16, 2, 8, 4)
    out = net(torch.randn(2, 1, 16, 7), torch.tensor([1, 5]), torch.randn(2, 4, 7))
    assert (
        out.shape == (2, 1, 16, 7)
        and torch.count_nonzero(out - net.output_projection.bias[:, None]) == 0
    )
