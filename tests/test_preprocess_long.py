"""Long inputs in bounded memory (preprocess/long_inputs.py, rmvpe chunks) and the bf16 speech
encoder of ``preprocess_hubert_f0.py --precision bf16``: chunked results match one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.vencoder_checkpoints import TINY_CONTENTVEC, reference_json, write_fairseq_hubert

torch.set_num_threads(2)


def _voice(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 180 + 40 * np.sin(2 * np.pi * 0.7 * t)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr) + 0.02 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_blocked_spectrogram_equals_one_pass():
    from modules.mel_processing import spectrogram_torch
    from preprocess.long_inputs import spectrogram_blocked

    wav = torch.from_numpy(_voice(1.3, 44100))
    whole = spectrogram_torch(wav[None], 2048, 44100, 512, 2048, center=False)[0]
    for block_frames in (1, 2, 7):  # blocks inside the padded edges, across them, in the middle
        blocked = spectrogram_blocked(wav, block_frames=block_frames)
        assert blocked.shape == whole.shape == (1025, len(wav) // 512)
        torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def contentvec(tmp_path_factory):
    from vencoder import get_speech_encoder

    ref = reference_json("checkpoint_best_legacy_500.json")
    path = tmp_path_factory.mktemp("enc") / "checkpoint_best_legacy_500.pt"
    write_fairseq_hubert(path, ref, TINY_CONTENTVEC, [str(i) for i in range(500)],
                         optimizer_state=False)  # fmt: skip
    return get_speech_encoder("vec768l12", device="cpu", path=path)


def _loudness_step(seconds: float, seed: int) -> torch.Tensor:
    """A voice whose second half is 10x louder than its first (16 kHz)."""
    wav = _voice(seconds, 16000, seed=seed)
    wav[: len(wav) // 2] *= 0.1
    return torch.from_numpy(wav)


def test_chunked_encoder_matches_one_pass(contentvec):
    from preprocess.long_inputs import encode_chunked

    wav = torch.from_numpy(_voice(4.0, 16000, seed=1))
    with torch.inference_mode():
        whole = contentvec.encoder(wav)
        same = encode_chunked(contentvec, wav, chunk_s=4.0, context_s=1.0)  # short: one pass
        chunked = encode_chunked(contentvec, wav, chunk_s=0.6, context_s=0.6)
    assert torch.equal(same, whole)
    assert chunked.shape == whole.shape == (1, contentvec.dim, (len(wav) - 400) // 320 + 1)
    assert _rel(chunked, whole) < 0.02, _rel(chunked, whole)
    assert chunked.is_contiguous()  # filled in place: saved as is, no copy
    # no context: the chunk edges show (the test can tell chunking apart)
    with torch.inference_mode():
        bare = encode_chunked(contentvec, wav, chunk_s=0.6, context_s=0.0)
    assert _rel(bare, whole) > 2 * _rel(chunked, whole)


def test_chunked_encoder_on_a_loudness_step(tmp_path, monkeypatch):
    """Chunks of 0.6 s with 0.6 s of context on a 4 s file with a 10x loudness step at 2 s, through
    a tiny WavLM (group norm after conv0) whose relative-position bias keeps the attention within
    a few frames, as a trained model's mostly is (random-init attention spreads nearly evenly
    over the window, so what it sees of the file would swamp the normalisation). With the
    whole-file statistics the chunked units are the one pass's (rel. 5e-7); with each window's
    own statistics, the earlier behaviour, they were 45 % off (0.8 % on a level-matched file)."""
    from preprocess.long_inputs import encode_chunked
    from tests.vencoder_checkpoints import TINY_WAVLM, write_wavlm
    from vencoder import get_speech_encoder
    from vencoder.ssl import Wav2Vec2Encoder

    torch.manual_seed(0)
    path = tmp_path / "WavLM-Base+.pt"
    write_wavlm(path, reference_json("WavLM-Base+.json"), TINY_WAVLM)
    enc = get_speech_encoder("wavlmbase+", device="cpu", path=path)
    table = enc.model.encoder.layers[0].self_attn.relative_attention_bias.weight  # [buckets, H]
    table.data[:] = -3.0 * (torch.arange(len(table)) % (len(table) // 2))[:, None]  # -3·|Δ|
    wav = _loudness_step(4.0, seed=1)
    with torch.inference_mode():
        whole = enc.encoder(wav)
        chunked = encode_chunked(enc, wav, chunk_s=0.6, context_s=0.6)
    assert chunked.shape == whole.shape
    assert _rel(chunked, whole) < 1e-5, _rel(chunked, whole)
    own = {"wave": None, "conv0": None}  # each window normalised with its own statistics
    monkeypatch.setattr(Wav2Vec2Encoder, "whole_file_stats", lambda self, wav: own)
    with torch.inference_mode():
        per_window = encode_chunked(enc, wav, chunk_s=0.6, context_s=0.6)
    assert _rel(per_window, whole) > 0.2, _rel(per_window, whole)


def test_whole_file_stats_are_the_one_pass_statistics(contentvec, tmp_path):
    """Pooled block by block they equal the group norm's own over the whole conv0 output; a
    window of a file with a 10x loudness step gets the one pass's conv front-end features (6.6 %
    off with its own statistics); a file encoded as one window with its whole-file statistics
    gives the one-pass units; likewise for a waveform-normalising model (WavLM ``normalize``)."""
    from tests.vencoder_checkpoints import TINY_WAVLM, write_wavlm
    from vencoder import get_speech_encoder

    wav = _loudness_step(4.0, seed=1)
    stats = contentvec.whole_file_stats(wav, block_s=0.23)  # 18 blocks, the last one short
    fe = contentvec.model.feature_extractor
    conv0 = fe.conv_layers[0].conv(wav[None, None])[0]
    var, mean = torch.var_mean(conv0.double(), dim=1, unbiased=False)
    assert stats["wave"] is None
    torch.testing.assert_close(stats["conv0"][0], mean, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(stats["conv0"][1], var, rtol=1e-6, atol=1e-12)
    with torch.inference_mode():
        one_pass = fe(wav[None])  # [1, T, C]
        window = wav[60 * 320 : 150 * 320 + 80]  # frames 60 … 149, inside the quiet half
        ref = one_pass[:, 60:150]
        assert _rel(fe(window[None], stats["conv0"]), ref) < 1e-5
        assert _rel(fe(window[None]), ref) > 0.03
        short = wav[:20000]
        torch.testing.assert_close(contentvec.encoder(short, contentvec.whole_file_stats(short)),
                                   contentvec.encoder(short), rtol=1e-4, atol=1e-5)  # fmt: skip
    path = tmp_path / "WavLM-Base+.pt"
    write_wavlm(path, reference_json("WavLM-Base+.json"), {**TINY_WAVLM, "normalize": True})
    wavlm = get_speech_encoder("wavlmbase+", device="cpu", path=path)
    short = short + 0.05
    stats = wavlm.whole_file_stats(short, block_s=0.2)
    assert stats["wave"] is not None and stats["conv0"] is not None
    torch.testing.assert_close(stats["wave"][0].float(), short.mean())
    torch.testing.assert_close(wavlm.encoder(short, stats), wavlm.encoder(short),
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_bf16_encoder_units_near_fp32(contentvec):
    wav = torch.from_numpy(_voice(2.0, 16000, seed=2))
    import copy

    half = copy.deepcopy(contentvec)  # set_precision casts in place: keep the fixture fp32
    half.set_precision("bf16")
    with torch.inference_mode():
        fp32 = contentvec.encoder(wav)
        bf16 = half.encoder(wav).float()
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert 0 < _rel(bf16, fp32) < 0.05, _rel(bf16, fp32)


def test_chunked_rmvpe_salience_matches_one_pass(tmp_path):
    from modules.f0.rmvpe import E2E0, RMVPEF0Predictor

    torch.manual_seed(0)
    path = tmp_path / "rmvpe.pt"
    torch.save({"model": E2E0(4, 1, (2, 2)).state_dict()}, path)
    pred = RMVPEF0Predictor(device="cpu", model_path=path)
    wav = _voice(2.5, 44100, seed=3)
    pred.chunk_frames = 0
    whole = pred.salience(wav)
    pred.chunk_frames, pred.context_frames = 64, 48
    chunked = pred.salience(wav)
    assert chunked.shape == whole.shape == (1 + int(np.ceil(len(wav) * 160 / 441)) // 160, 360)
    assert _rel(chunked, whole) < 0.01, _rel(chunked, whole)


def test_bf16_preprocessing_runs_the_f0_network_in_bf16(tmp_path, monkeypatch):
    """``--precision bf16`` reaches the f0 predictor too (rmvpe's U-Net), not only the encoder;
    fp32 stays fp32 (4.1's f0)."""
    from modules.f0.rmvpe import E2E0
    from preprocess import features

    torch.manual_seed(0)
    (tmp_path / "pretrain").mkdir()
    torch.save({"model": E2E0(4, 1, (2, 2)).state_dict()}, tmp_path / "pretrain" / "rmvpe.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOVITS_PRETRAIN", raising=False)
    wav = _voice(1.0, 44100, seed=4)
    f0 = {}
    for precision in ("fp32", "bf16"):
        job = {"speech_encoder": "whisper-ppg-ct2", "f0_predictor": "rmvpe", "use_diff": False,
               "use_vol": False, "device": "cpu", "threads": 2, "precision": precision}  # fmt: skip
        features._load_models(job, 0)
        pred = features._state["f0"]
        assert pred.precision == precision
        f0[precision] = pred.salience(wav)
    assert not torch.equal(f0["fp32"], f0["bf16"])  # bf16 arithmetic did run
    assert _rel(f0["bf16"], f0["fp32"]) < 0.01
