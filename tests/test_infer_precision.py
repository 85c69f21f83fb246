"""``--precision bf16``: the whole conversion (encoder, f0 network, synthesizer, enhancer) against fp32.

The synthesizer and the enhancer are template-size random-init networks; the speech encoder is a
tiny random ContentVec in the real file format (full-size figures: ``bench/infer_speed.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.infer_fixtures import singing
from tests.vencoder_checkpoints import TINY_CONTENTVEC, reference_json, write_fairseq_hubert

SR = 44100


def snr_db(ref, x) -> float:
    ref, x = np.asarray(ref, np.float64), np.asarray(x, np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - x) ** 2), 1e-30)))


def _contentvec(path):
    ref = reference_json("checkpoint_best_legacy_500.json")
    write_fairseq_hubert(path, ref, TINY_CONTENTVEC, [str(i) for i in range(500)],
                         optimizer_state=False)  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Template-size G (ssl_dim 32 for the tiny encoder), template-size NSF-HiFiGAN enhancer."""
    from common.checkpoint import save_checkpoint
    from models import SynthesizerTrn
    from training.synthetic import template_config
    from vdecoder import NsfHifiGanGenerator, save_nsf_hifigan

    root = tmp_path_factory.mktemp("bf16")
    cfg = template_config({"a": 0})
    cfg["model"]["ssl_dim"] = TINY_CONTENTVEC["encoder_embed_dim"]
    (root / "logs").mkdir()
    (root / "logs" / "config.json").write_text(json.dumps(cfg))
    torch.manual_seed(0)
    net = SynthesizerTrn(1025, cfg["train"]["segment_size"] // 512, **cfg["model"])
    save_checkpoint(net, None, 1e-4, 0, root / "logs" / "G_0.pth")
    pre = root / "pretrain"
    pre.mkdir()
    _contentvec(pre / "checkpoint_best_legacy_500.pt")
    h = {"resblock": "1", "upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4, 4],
         "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
         "resblock_dilation_sizes": [[1, 3, 5]] * 3, "num_mels": 128, "n_fft": 2048, "hop_size": 512,
         "win_size": 2048, "sampling_rate": 44100, "fmin": 40, "fmax": 16000}  # fmt: skip
    torch.manual_seed(1)
    save_nsf_hifigan(NsfHifiGanGenerator.from_openvpi(h), h, pre / "nsf_hifigan")
    return root


def _svc(work, precision):
    from inference.infer_tool import Svc

    return Svc(work / "logs" / "G_0.pth", work / "logs" / "config.json", "cpu", "", True,
               precision=precision, pretrain_dir=work / "pretrain")  # fmt: skip


def test_bf16_whole_conversion_close_to_fp32(work):
    """slice_inference with -eh: bf16 output within 35 dB SNR of fp32 (pm f0: same f0 in both)."""
    wav = np.concatenate([singing(1.2), np.zeros(int(0.5 * SR), np.float32), singing(0.8, seed=4)])
    out = {}
    for precision in ("fp32", "bf16"):
        svc = _svc(work, precision)
        assert svc.hubert_model.precision == precision
        out[precision] = svc.slice_inference(wav, "a", 0, -40, 0, False, 0.4, f0_predictor="pm")
    assert out["fp32"].shape == out["bf16"].shape == wav.shape
    assert out["bf16"].dtype == np.float32 and np.all(np.isfinite(out["bf16"]))
    assert np.sqrt(np.mean(out["fp32"] ** 2)) > 1e-3  # not silence
    snr = snr_db(out["fp32"], out["bf16"])
    print(f"bf16 whole conversion (-eh) output SNR vs fp32: {snr:.1f} dB")
    assert snr >= 35.0


def test_bf16_encoder_units(tmp_path):
    """ContentVec in bf16 (bf16 weights, NHWC feature extractor): units close to fp32."""
    import vencoder
    from common.audio import resample

    _contentvec(tmp_path / "cv.pt")
    wav = torch.from_numpy(resample(singing(2.0), SR, 16000))
    e32 = vencoder.get_speech_encoder("vec768l12", device="cpu", path=tmp_path / "cv.pt")
    e16 = vencoder.get_speech_encoder("vec768l12", device="cpu", path=tmp_path / "cv.pt")
    e16.set_precision("bf16")
    assert next(e16.model.parameters()).dtype == torch.bfloat16
    assert all(b.time_major for b in e16.model.feature_extractor.conv_layers)
    u32, u16 = e32.encoder(wav), e16.encoder(wav)
    assert u16.dtype == torch.float32 and u16.shape == u32.shape
    snr = snr_db(u32, u16)
    print(f"bf16 units SNR vs fp32 (tiny ContentVec): {snr:.1f} dB")
    assert snr >= 30.0
    # the NHWC feature extractor alone (fp32) gives the NCHW result to float rounding
    e32b = vencoder.get_speech_encoder("vec768l12", device="cpu", path=tmp_path / "cv.pt")
    for b in e32b.model.feature_extractor.conv_layers:
        b.time_major = True
    torch.testing.assert_close(e32b.encoder(wav), u32, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="load it again"):
        e16.set_precision("fp32")
    with pytest.raises(ValueError, match="precision"):
        e32.set_precision("fp16")


@pytest.mark.parametrize("name", ["crepe-tiny", "fcpe-bundled"])
def test_bf16_f0_network(name):
    """A neural f0 predictor's network under bf16 autocast; decoding stays fp32 (real weights)."""
    from modules.f0 import get_f0_predictor

    wav = singing(2.0)
    kw = {"dither": False} if name.startswith("crepe") else {}
    p32 = get_f0_predictor(name, device="cpu", **kw)
    p16 = get_f0_predictor(name, device="cpu", precision="bf16", **kw)
    assert p16.precision == "bf16"
    f32, uv32 = p32.compute_f0_uv(wav)
    f16, uv16 = p16.compute_f0_uv(wav)
    both = (uv32 > 0) & (uv16 > 0)
    assert both.sum() >= 0.9 * (uv32 > 0).sum() > 0
    cents = 1200 * np.abs(np.log2(f16[both] / f32[both]))
    print(
        f"{name} bf16 vs fp32: median {np.median(cents):.2f} cents, max {np.max(cents):.1f}, "
        f"voicing agreement {np.mean((uv32 > 0) == (uv16 > 0)):.3f}"
    )
    assert np.median(cents) < 5 and np.max(cents) < 50


def test_precision_is_checked():
    from modules.f0 import get_f0_predictor

    with pytest.raises(ValueError, match="precision"):
        get_f0_predictor("pm", precision="fp16")


def test_bf16_rmvpe_salience(tmp_path):
    """RMVPE (random-init, real size): the U-Net in bf16; the mel, the BiGRU + classifier and the
    decoding in fp32 (70 dB measured; the BiGRU under autocast gave 54.5 dB and was slower)."""
    from modules.f0 import get_f0_predictor
    from modules.f0.rmvpe import E2E0

    torch.manual_seed(0)
    torch.save({"model": E2E0(4, 1, (2, 2)).state_dict()}, tmp_path / "rmvpe.pt")
    wav = singing(1.0)
    s32 = get_f0_predictor("rmvpe", device="cpu", model_path=tmp_path / "rmvpe.pt").salience(wav)
    p16 = get_f0_predictor(
        "rmvpe", device="cpu", model_path=tmp_path / "rmvpe.pt", precision="bf16"
    )
    s16 = p16.salience(wav)
    assert s16.dtype == torch.float32 and s16.shape == s32.shape
    snr = snr_db(s32, s16)
    print(f"rmvpe salience bf16 vs fp32 (random-init): {snr:.1f} dB")
    assert snr >= 60.0


def test_bf16_whisper_units(tmp_path):
    """whisper-ppg (tiny random, real format): encoder in bf16, log-mel in fp32."""
    import vencoder
    from tests.vencoder_checkpoints import TINY_WHISPER, write_whisper

    ref = reference_json("whisper-medium.json")
    write_whisper(tmp_path / "medium.pt", ref, TINY_WHISPER)
    wav = torch.from_numpy(singing(1.0)[::3].copy())  # about 16 kHz is enough here
    e32 = vencoder.get_speech_encoder("whisper-ppg", device="cpu", path=tmp_path / "medium.pt")
    e16 = vencoder.get_speech_encoder("whisper-ppg", device="cpu", path=tmp_path / "medium.pt")
    e16.set_precision("bf16")
    u32, u16 = e32.encoder(wav), e16.encoder(wav)
    assert u16.dtype == torch.float32 and u16.shape == u32.shape
    snr = snr_db(u32, u16)
    print(f"whisper-ppg units bf16 vs fp32 (tiny random): {snr:.1f} dB")
    # 24.8 dB on this tiny random model: its weights rounded to bf16 alone give 38.6 dB, the
    # rest is the bf16 rounding of the activations (the mel input rounded alone: 66 dB)
    assert snr >= 20.0
