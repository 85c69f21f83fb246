"""vdecoder: the NSF-HiFiGAN generator as G's decoder (plain and snake) and as the pretrained
openvpi vocoder; checked against the reference state-dict dumps and the §8/§9 behaviour."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from common.checkpoint import CheckpointError
from vdecoder import (
    Enhancer,
    NsfHifiGanGenerator,
    SineGen,
    Vocoder,
    build_decoder,
    fold_weight_norm,
    has_weight_norm,
    load_nsf_hifigan,
    save_nsf_hifigan,
)
from vdecoder.snake import kaiser_sinc_filter1d

# Copies of the reference dumps (sovits-4.1.md §20) kept with the tests.
REF = Path(__file__).resolve().parent / "data" / "state_dict"


def _ref(name: str) -> dict:
    with open(REF / name, encoding="utf-8") as f:
        return json.load(f)


def _g_hparams(model_config: dict, **over) -> dict:
    """The dict SynthesizerTrn hands the decoder (§8.1)."""
    h = {k: model_config[k] for k in (
        "inter_channels", "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes",
        "upsample_rates", "upsample_initial_channel", "upsample_kernel_sizes", "gin_channels",
        "use_depthwise_conv")}  # fmt: skip
    h["sampling_rate"] = 44100
    h.update(over)
    return h


# The 44.1 kHz layout with 16× fewer channels: same keys and strides, fast forward passes.
SMALL_G = {
    "sampling_rate": 44100, "inter_channels": 192, "resblock": "1",
    "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
    "upsample_rates": [8, 8, 2, 2, 2], "upsample_initial_channel": 32,
    "upsample_kernel_sizes": [16, 16, 4, 4, 4], "gin_channels": 32, "use_depthwise_conv": False,
}  # fmt: skip

OPENVPI_CONFIG = {
    "resblock": "1", "num_gpus": 4, "batch_size": 10, "learning_rate": 0.0002, "adam_b1": 0.8,
    "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234, "upsample_rates": [8, 8, 2, 2, 2],
    "upsample_kernel_sizes": [16, 16, 4, 4, 4], "upsample_initial_channel": 512,
    "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
    "discriminator_periods": [3, 5, 7, 11, 17, 23, 37], "segment_size": 16384, "num_mels": 128,
    "num_freq": 1025, "n_fft": 2048, "hop_size": 512, "win_size": 2048, "sampling_rate": 44100,
    "fmin": 40, "fmax": 16000, "fmax_for_loss": None, "num_workers": 16,
}  # fmt: skip
SMALL_OPENVPI = dict(OPENVPI_CONFIG, upsample_initial_channel=32)


def _vibrato_f0(n: int, base: float = 220.0, batch: int = 1) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float32) * 512 / 44100
    f0 = base * (1 + 0.03 * torch.sin(2 * math.pi * 5 * t))
    f0[: max(1, n // 8)] = 0.0  # an unvoiced start
    return f0.repeat(batch, 1)


# --------------------------------------------------------------------------------------------
# State dicts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dump,vocoder_name",
    [("state_dict_G_vec768l12.json", "nsf-hifigan"),
     ("state_dict_G_vec768l12_snake.json", "nsf-snake-hifigan")],
)  # fmt: skip
def test_g_decoder_state_dict_matches_reference(dump, vocoder_name):
    ref = _ref(dump)
    assert ref["model_config"]["vocoder_name"] == vocoder_name
    dec = build_decoder(vocoder_name, _g_hparams(ref["model_config"]))
    expected = {k[4:]: v for k, v in ref["state_dict"].items() if k.startswith("dec.")}
    got = dec.state_dict()
    assert list(got) == list(expected)  # names and order
    for k, v in expected.items():
        assert list(got[k].shape) == v["shape"], k
        assert str(got[k].dtype) == "torch." + v["dtype"], k
    # the non-decoder part of G is the same in both dumps: the difference is all in dec
    n_params = sum(p.numel() for p in dec.parameters())
    assert n_params == {"nsf-hifigan": 14_802_060, "nsf-snake-hifigan": 14_821_932}[vocoder_name]


def test_standalone_state_dict_matches_reference():
    ref = _ref("state_dict_nsf_hifigan_generator.json")
    gen = NsfHifiGanGenerator.from_openvpi(ref["config"])
    got = gen.state_dict()
    assert list(got) == list(ref["state_dict"])
    for k, v in ref["state_dict"].items():
        assert list(got[k].shape) == v["shape"], k
    assert sum(p.numel() for p in gen.parameters()) == ref["total_parameters"] == 14_178_956
    assert gen.cond is None


def test_padding_formulas_give_the_same_layers():
    g = NsfHifiGanGenerator.from_sovits(SMALL_G)
    o = NsfHifiGanGenerator.from_openvpi(SMALL_OPENVPI)
    assert (
        [m.padding for m in g.ups] == [m.padding for m in o.ups] == [(4,), (4,), (1,), (1,), (1,)]
    )
    assert [m.padding for m in g.noise_convs] == [m.padding for m in o.noise_convs]
    assert [m.padding[0] for m in g.noise_convs[:4]] == [32, 4, 2, 1]
    assert [m.kernel_size[0] for m in g.noise_convs] == [128, 16, 8, 4, 1]


def test_weight_norm_is_legacy_and_silent():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dec = build_decoder("nsf-hifigan", SMALL_G)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]
    keys = list(dec.conv_pre.state_dict())
    assert keys == ["bias", "weight_g", "weight_v"]
    assert has_weight_norm(dec)


def test_unknown_vocoder_name_falls_back(caplog):
    dec = build_decoder("no-such-vocoder", SMALL_G)
    assert not dec.snake and dec.cond is not None
    assert "Unknown vocoder" in caplog.text


def test_kaiser_filter():
    f = kaiser_sinc_filter1d(0.25, 0.3, 12)
    assert f.shape == (1, 1, 12)
    assert torch.allclose(f.sum(), torch.tensor(1.0))
    assert torch.allclose(f.flatten(), f.flatten().flip(0))


# --------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------


def test_full_size_g_decoder_forward_shape():
    ref = _ref("state_dict_G_vec768l12.json")
    torch.manual_seed(0)
    dec = build_decoder("nsf-hifigan", _g_hparams(ref["model_config"])).eval()
    t = 43  # 0.5 s
    x, g = torch.randn(1, 192, t), torch.randn(1, 768, 1)
    with torch.no_grad():
        out = dec(x, _vibrato_f0(t), g)
    assert out.shape == (1, 1, t * 512)
    assert torch.isfinite(out).all() and out.abs().max() <= 1


@pytest.mark.parametrize("vocoder_name", ["nsf-hifigan", "nsf-snake-hifigan"])
def test_small_decoder_batch_shapes_and_keywords(vocoder_name):
    torch.manual_seed(0)
    dec = build_decoder(vocoder_name, SMALL_G).eval()
    t = 5
    x, g, f0 = torch.randn(2, 192, t), torch.randn(2, 32, 1), _vibrato_f0(t, batch=2)
    with torch.no_grad():
        torch.manual_seed(3)
        a = dec(x, f0, g)
        torch.manual_seed(3)
        b = dec(x=x, g=g, f0=f0)  # the keyword call models.py uses
    assert a.shape == (2, 1, t * 512)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="speaker"):
        dec(x, f0)
    with pytest.raises(ValueError, match="frames"):
        dec(x, f0[:, :-1], g)


def test_g_decoder_trains():
    dec = build_decoder("nsf-hifigan", SMALL_G)
    x = torch.randn(1, 192, 4, requires_grad=True)
    out = dec(x, _vibrato_f0(4) + 100, torch.randn(1, 32, 1))
    out.square().mean().backward()
    assert x.grad is not None and dec.m_source.l_linear.weight.grad is not None
    assert dec.conv_pre.weight_g.grad is not None


@pytest.mark.parametrize("vocoder_name", ["nsf-hifigan", "nsf-snake-hifigan"])
def test_same_seed_same_audio(vocoder_name):
    torch.manual_seed(0)
    dec = build_decoder(vocoder_name, SMALL_G).eval()
    t = 4
    x, g, f0 = torch.randn(1, 192, t), torch.randn(1, 32, 1), _vibrato_f0(t)
    outs = []
    with torch.no_grad():
        for seed in (52468, 52468, 1):
            torch.manual_seed(seed)
            outs.append(dec(x, f0, g))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("onnx_mode", [False, True])
def test_g_decoder_random_stream_order(onnx_mode):
    """§9: rand(B,9), randn_like(sine) [B,L,9], randn_like(uv) [B,L,1] — nothing else."""
    torch.manual_seed(0)
    dec = build_decoder("nsf-hifigan", SMALL_G).eval()
    dec.onnx_mode = onnx_mode
    b, t = 2, 6
    length = t * 512
    x, g, f0 = torch.randn(b, 192, t), torch.randn(b, 32, 1), _vibrato_f0(t, batch=b)
    torch.manual_seed(123)
    with torch.no_grad():
        dec(x, f0, g)
    after = torch.rand(8)
    torch.manual_seed(123)
    torch.rand(b, 9)
    torch.randn(b, length, 9)
    torch.randn(b, length, 1)
    assert torch.equal(after, torch.rand(8))


def test_standalone_random_stream_order():
    gen = NsfHifiGanGenerator.from_openvpi(SMALL_OPENVPI)
    gen.eval()
    t = 5
    torch.manual_seed(7)
    with torch.no_grad():
        out = gen(torch.randn(1, 128, t), _vibrato_f0(t))
    assert out.shape == (1, 1, t * 512)
    # the mel above drew 128·t normals first
    after = torch.rand(8)
    torch.manual_seed(7)
    torch.randn(1, 128, t)
    torch.rand(1, 9)
    torch.randn(1, t * 512, 9)
    assert torch.equal(after, torch.rand(8))


@pytest.mark.parametrize("frame_level,double", [(False, False), (True, False), (True, True)])
def test_sine_source_is_harmonic_sines(frame_level, double):
    """With noise_std 0 the voiced source is sin(2π(Σ k·f0/sr + φ_k))·0.1; unvoiced samples are
    noise of std sine_amp/3."""
    sr, upp, t = 44100, 512, 20
    f0 = _vibrato_f0(t, base=440.0)
    gen = SineGen(sr, harmonic_num=8, noise_std=0.0, double=double)
    torch.manual_seed(5)
    if frame_level:
        sine, uv = gen(f0, upp, frame_level=True)
    else:
        f0_up = torch.repeat_interleave(f0, upp, dim=1).unsqueeze(-1)
        sine, uv = gen(f0_up, upp, frame_level=False)
    torch.manual_seed(5)
    phi = torch.rand(1, 9).double()
    phi[:, 0] = 0
    assert sine.shape == (1, t * upp, 9) and uv.shape == (1, t * upp, 1)

    k = torch.arange(1, 10, dtype=torch.float64)
    f_up = torch.repeat_interleave(f0.double(), upp, dim=1)[0]  # [L]
    voiced = f_up > 0
    assert torch.equal(uv[0, :, 0].bool(), voiced)
    assert 0.02 < sine[0, ~voiced].std() < 0.05
    if frame_level:
        # the phase is the linear interpolation of the frame-rate cumulative phase
        return _check_frame_phase(sine, f0, phi, k, sr, upp)
    inc = (f_up[:, None] * k / sr) % 1
    phase = torch.cumsum(inc, 0) + phi[0]
    expected = 0.1 * torch.sin(2 * math.pi * phase)
    err = (sine[0].double() - expected)[voiced].abs().max()
    assert err < 2e-3, err


def _check_frame_phase(sine, f0, phi, k, sr, upp):
    # Per-sample increments are the frame values held (nearest upsampling); the wrap shifts
    # only subtract whole cycles, so the phase is the cumsum of the held increments modulo 1.
    # As in the reference, the random initial phase is added to frame 0 *before* upsampling,
    # i.e. to each of its upp samples.
    f_up = torch.repeat_interleave(f0.double(), upp, dim=1)[0]
    inc = (f_up[:, None] * k / sr) % 1
    inc[:upp] += phi[0]
    expected = 0.1 * torch.sin(2 * math.pi * torch.cumsum(inc, 0))
    voiced = f_up > 0
    err = (sine[0].double() - expected)[voiced].abs().max()
    assert err < 2e-3, err


# --------------------------------------------------------------------------------------------
# Weight norm folding and ONNX mode
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vocoder_name", ["nsf-hifigan", "nsf-snake-hifigan"])
def test_fold_weight_norm_same_output(vocoder_name):
    torch.manual_seed(0)
    dec = build_decoder(vocoder_name, SMALL_G).eval()
    with torch.no_grad():  # make g non-trivial so folding is not an identity
        for name, p in dec.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(1.5)
    t = 4
    x, g, f0 = torch.randn(1, 192, t), torch.randn(1, 32, 1), _vibrato_f0(t)
    with torch.no_grad():
        torch.manual_seed(9)
        before = dec(x, f0, g)
        n = fold_weight_norm(dec)
        torch.manual_seed(9)
        after = dec(x, f0, g)
    assert n == 1 + 5 + 15 * 6 + 1
    assert not has_weight_norm(dec)
    assert not any(k.endswith(("weight_g", "weight_v")) for k in dec.state_dict())
    assert (before - after).abs().max() <= 1e-5
    assert fold_weight_norm(dec) == 0  # idempotent
    dec.remove_weight_norm()  # reference name, also a no-op now


def test_onnx_mode_is_close_to_sample_level():
    torch.manual_seed(0)
    dec = build_decoder("nsf-hifigan", SMALL_G).eval()
    # excitation = tanh(fundamental): the harmonics' random initial phases enter the two paths
    # differently (frame level adds them to each sample of frame 0, like the reference)
    dec.m_source.l_linear.weight.data.zero_()
    dec.m_source.l_linear.weight.data[0, 0] = 1.0
    dec.m_source.l_linear.bias.data.zero_()
    t = 10
    x, g, f0 = torch.randn(1, 192, t), torch.randn(1, 32, 1), torch.full((1, t), 330.0)
    with torch.no_grad():
        torch.manual_seed(2)
        src_sample = dec.source(f0)
        dec.onnx_mode = True
        torch.manual_seed(2)
        src_frame = dec.source(f0)
        out = dec(x, f0, g)
    assert src_frame.shape == src_sample.shape == (1, 1, t * 512)
    # constant f0: both paths give the same phase up to float32 rounding and the noise
    assert (src_frame - src_sample).abs().max() < 0.02
    assert out.shape == (1, 1, t * 512)


def test_onnx_export_runs():
    import io

    import onnxruntime as ort  # installed by scripts/setup.sh (requirements.txt): never skipped

    torch.manual_seed(0)
    dec = build_decoder("nsf-hifigan", SMALL_G).eval()
    dec.m_source.l_linear.weight.data.zero_()  # no random excitation: comparable outputs
    dec.onnx_mode = True
    t = 8
    x, g, f0 = torch.randn(1, 192, t), torch.randn(1, 32, 1), _vibrato_f0(t)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(dec, (x, f0, g), buf, input_names=["x", "f0", "g"],
                          output_names=["audio"], dynamic_axes={"x": [2], "f0": [1]},
                          opset_version=16, dynamo=False)  # fmt: skip
    sess = ort.InferenceSession(buf.getvalue())
    t2 = 13
    x2, f02 = torch.randn(1, 192, t2), _vibrato_f0(t2)
    (out,) = sess.run(None, {"x": x2.numpy(), "f0": f02.numpy(), "g": g.numpy()})
    with torch.no_grad():
        expected = dec(x2, f02, g)
    assert out.shape == (1, 1, t2 * 512)
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-4)


# --------------------------------------------------------------------------------------------
# Pretrained openvpi checkpoint, Vocoder, Enhancer
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nsf_dir(tmp_path_factory) -> Path:
    """A random-init full-size NSF-HiFiGAN saved in openvpi's layout (config.json + model)."""
    folder = tmp_path_factory.mktemp("nsf_hifigan")
    torch.manual_seed(1234)
    gen = NsfHifiGanGenerator.from_openvpi(OPENVPI_CONFIG)
    save_nsf_hifigan(gen, OPENVPI_CONFIG, folder)
    return folder


@pytest.fixture(scope="module")
def small_nsf_dir(tmp_path_factory) -> Path:
    """The same with 16× fewer channels (fast): for the Vocoder/Enhancer plumbing tests."""
    folder = tmp_path_factory.mktemp("nsf_hifigan_small")
    torch.manual_seed(4321)
    save_nsf_hifigan(NsfHifiGanGenerator.from_openvpi(SMALL_OPENVPI), SMALL_OPENVPI, folder)
    return folder


def test_openvpi_checkpoint_loads_strictly(nsf_dir):
    raw = torch.load(nsf_dir / "model", weights_only=True)
    assert set(raw) == {"generator"}
    assert list(raw["generator"]) == list(
        _ref("state_dict_nsf_hifigan_generator.json")["state_dict"]
    )
    gen, h = load_nsf_hifigan(nsf_dir / "model")
    assert h.num_mels == 128 and h.hop_size == 512
    assert not gen.training and not has_weight_norm(gen)
    # same output as the weight-normed generator built from the raw state dict
    ref = NsfHifiGanGenerator.from_openvpi(OPENVPI_CONFIG).eval()
    ref.load_state_dict(raw["generator"])
    mel, f0 = torch.randn(1, 128, 6) - 5, _vibrato_f0(6)
    with torch.no_grad():
        torch.manual_seed(3)
        a = gen(mel, f0)
        torch.manual_seed(3)
        b = ref(mel, f0)
    assert (a - b).abs().max() <= 1e-5
    # a folder works as well as the file
    gen2, _ = load_nsf_hifigan(nsf_dir)
    assert list(gen2.state_dict()) == list(gen.state_dict())


def test_openvpi_checkpoint_with_folded_weights_loads(small_nsf_dir, tmp_path):
    gen, _ = load_nsf_hifigan(small_nsf_dir / "model")
    save_nsf_hifigan(gen, SMALL_OPENVPI, tmp_path)
    gen2, _ = load_nsf_hifigan(tmp_path / "model")
    for (k1, v1), (k2, v2) in zip(gen.state_dict().items(), gen2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


def test_openvpi_checkpoint_key_mismatch_is_an_error(small_nsf_dir, tmp_path):
    raw = torch.load(small_nsf_dir / "model", weights_only=True)
    (tmp_path / "config.json").write_text(json.dumps(SMALL_OPENVPI))
    bad = dict(raw["generator"], **{"conv_pre.weight_v": torch.zeros(32, 128, 5)})
    torch.save({"generator": bad}, tmp_path / "model")
    with pytest.raises(CheckpointError, match="shape mismatch: conv_pre.weight_v"):
        load_nsf_hifigan(tmp_path / "model")
    del raw["generator"]["conv_post.bias"]
    raw["generator"]["extra.weight"] = torch.zeros(1)
    torch.save(raw, tmp_path / "model")
    with pytest.raises(CheckpointError, match="conv_post.bias"):
        load_nsf_hifigan(tmp_path / "model")
    torch.save({"not_generator": 1}, tmp_path / "model")
    with pytest.raises(CheckpointError, match="generator"):
        load_nsf_hifigan(tmp_path / "model")


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_malicious_model_file_is_refused(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    (tmp_path / "config.json").write_text(json.dumps(OPENVPI_CONFIG))
    with open(tmp_path / "model", "wb") as f:
        pickle.dump({"generator": _Evil(str(marker))}, f, protocol=2)
    with pytest.raises(CheckpointError, match="refused|not a readable"):
        load_nsf_hifigan(tmp_path / "model")
    assert not marker.exists()


def test_missing_files_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_nsf_hifigan(tmp_path / "model")
    (tmp_path / "config.json").write_text(json.dumps(OPENVPI_CONFIG))
    with pytest.raises(FileNotFoundError, match="model"):
        load_nsf_hifigan(tmp_path / "model")


def _tone(seconds: float, sr: int, freq: float = 220.0) -> torch.Tensor:
    t = torch.arange(int(seconds * sr), dtype=torch.float32) / sr
    return (0.3 * torch.sin(2 * math.pi * freq * t)).unsqueeze(0)


def test_vocoder_extract_and_infer(small_nsf_dir):
    voc = Vocoder("nsf-hifigan", small_nsf_dir / "model", device="cpu")
    assert (voc.dimension, voc.vocoder_sample_rate, voc.vocoder_hop_size) == (128, 44100, 512)
    assert voc.model is None  # loaded lazily
    audio = _tone(0.25, 44100)
    mel = voc.extract(audio, 44100)
    assert mel.shape == (1, audio.shape[-1] // 512, 128)
    mel_shift = voc.extract(audio, 44100, keyshift=2)
    assert mel_shift.shape == mel.shape and not torch.equal(mel, mel_shift)
    mel16 = voc.extract(_tone(0.25, 16000), 16000)  # resampled to 44.1 kHz first
    assert abs(mel16.shape[1] - mel.shape[1]) <= 1
    f0 = torch.full((1, mel.shape[1] + 3, 1), 220.0)
    torch.manual_seed(0)
    wav = voc.infer(mel, f0)
    assert wav.shape == (1, 1, mel.shape[1] * 512)
    # log10 type: the same generator on mel·0.434294
    log10 = Vocoder("nsf-hifigan-log10", small_nsf_dir / "model", device="cpu")
    log10.load()  # building the generator draws random numbers: load before seeding
    torch.manual_seed(0)
    a = log10.infer(mel, f0)
    torch.manual_seed(0)
    b = voc.infer(mel * 0.434294, f0)
    assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown vocoder"):
        Vocoder("hifigan", small_nsf_dir / "model")


@pytest.mark.parametrize("adaptive_key,full_size", [(4, True), (0, False), (-3, False)])
def test_enhancer_end_to_end(nsf_dir, small_nsf_dir, adaptive_key, full_size):
    enh = Enhancer("nsf-hifigan", (nsf_dir if full_size else small_nsf_dir) / "model", device="cpu")
    sr, hop = 44100, 512
    audio = _tone(1.0, sr)
    n_frames = audio.shape[-1] // hop
    f0 = torch.full((1, n_frames, 1), 220.0)
    out, out_sr = enh.enhance(audio, sr, f0, hop, adaptive_key=adaptive_key)
    assert out_sr == 44100
    assert out.dim() == 1 and torch.isfinite(out).all()
    adaptive_sr = 100 * round(44100 * 2 ** (adaptive_key / 12) / 100)
    n_res = round(audio.shape[-1] * adaptive_sr / sr)
    expected = (n_res // hop) * hop * sr / adaptive_sr
    assert abs(out.shape[-1] - expected) <= 2
    # input f0 must not be modified in place (the reference scaled it through a numpy view)
    assert torch.equal(f0, torch.full((1, n_frames, 1), 220.0))


def test_enhancer_silence_front(small_nsf_dir):
    enh = Enhancer("nsf-hifigan", small_nsf_dir, device="cpu")
    audio = _tone(0.5, 44100)
    f0 = torch.full((1, audio.shape[-1] // 512, 1), 220.0)
    out, _ = enh.enhance(audio, 44100, f0, 512, silence_front=0.1)
    lead = int(round(int(0.1 * 44100 / 512) * 512))
    assert (out[:lead] == 0).all()
    assert out.shape[-1] == lead + ((audio.shape[-1] - lead) // 512) * 512
