"""modules.mel_processing against direct numpy/librosa computations of the same definitions."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from modules.mel_processing import (
    NsfMel,
    VolumeExtractor,
    mel_spectrogram_torch,
    spec_to_mel_torch,
    spectrogram_torch,
)


def _signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 44100
    x = 0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1375.3 * t)
    x += 0.05 * rng.standard_normal(n)
    return x.astype(np.float32)


def _np_stft_mag(x: np.ndarray, n_fft: int, hop: int, win: int, pad_l: int, pad_r: int,
                 mode: str, eps: float) -> np.ndarray:  # fmt: skip
    xp = np.pad(x.astype(np.float64), (pad_l, pad_r), mode=mode)
    n = (len(xp) - n_fft) // hop + 1
    w = np.zeros(n_fft)
    off = (n_fft - win) // 2
    w[off : off + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic
    frames = np.stack([xp[i * hop : i * hop + n_fft] * w for i in range(n)], axis=1)
    X = np.fft.rfft(frames, axis=0)
    return np.sqrt(X.real**2 + X.imag**2 + eps)


@pytest.mark.parametrize("length", [1, 100, 512, 1000, 44100, 44100 + 511, 3 * 512])
def test_spectrogram_frames_and_values(length):
    x = _signal(length)
    spec = spectrogram_torch(torch.from_numpy(x)[None])
    assert spec.shape == (1, 1025, length // 512)
    if length < 512:
        return
    ref = _np_stft_mag(x, 2048, 512, 2048, 768, 768, "reflect", 1e-6)
    np.testing.assert_allclose(spec[0].numpy(), ref, rtol=1e-4, atol=2e-4)


def test_spectrogram_batch_and_bf16():
    x = torch.from_numpy(np.stack([_signal(20000, 1), _signal(20000, 2)]))
    spec = spectrogram_torch(x, 2048, 44100, 512, 2048)
    assert spec.shape == (2, 1025, 20000 // 512) and spec.dtype == torch.float32
    s1 = spectrogram_torch(x[1:2])
    torch.testing.assert_close(spec[1:2], s1, rtol=1e-5, atol=1e-5)
    sb = spectrogram_torch(x.to(torch.bfloat16))
    assert sb.dtype == torch.bfloat16
    torch.testing.assert_close(sb.float(), spec, rtol=0.05, atol=0.05)


def test_spec_to_mel_and_mel_spectrogram():
    x = _signal(30000)
    spec = spectrogram_torch(torch.from_numpy(x)[None])
    mel = spec_to_mel_torch(spec, 2048, 80, 44100, 0, 22050)
    basis = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=80, fmin=0, fmax=22050)
    ref = np.log(np.maximum(basis.astype(np.float64) @ spec[0].double().numpy(), 1e-5))
    assert mel.shape == (1, 80, 30000 // 512)
    np.testing.assert_allclose(mel[0].numpy(), ref, rtol=1e-4, atol=1e-4)
    mel2 = mel_spectrogram_torch(torch.from_numpy(x)[None], 2048, 80, 44100, 512, 2048, 0, 22050)
    torch.testing.assert_close(mel2, mel)
    # the log floor
    silent = spec_to_mel_torch(torch.zeros(1, 1025, 3), 2048, 80, 44100, 0, 22050)
    assert torch.allclose(silent, torch.full_like(silent, np.log(1e-5)))


@pytest.mark.parametrize(("keyshift", "speed"), [(0, 1), (3, 1), (-5, 1), (2.5, 1.2), (0, 0.8)])
def test_nsf_mel_matches_numpy(keyshift, speed):
    length = 25000
    x = _signal(length, 3)
    stft = NsfMel()
    mel = stft.get_mel(torch.from_numpy(x)[None], keyshift=keyshift, speed=speed)
    factor = 2 ** (keyshift / 12)
    n_fft = int(np.round(2048 * factor))
    win = int(np.round(2048 * factor))
    hop = int(np.round(512 * speed))
    pl = (win - hop) // 2
    pr = max((win - hop + 1) // 2, win - length - pl)
    mag = _np_stft_mag(x, n_fft, hop, win, pl, pr, "reflect", 1e-9)
    if keyshift != 0:
        if mag.shape[0] < 1025:
            mag = np.pad(mag, ((0, 1025 - mag.shape[0]), (0, 0)))
        mag = mag[:1025] * 2048 / win
    basis = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=128, fmin=40, fmax=16000)
    ref = np.log(np.maximum(basis.astype(np.float64) @ mag, 1e-5))
    assert mel.shape == (1, 128, ref.shape[1])
    if keyshift == 0 and speed == 1:
        assert ref.shape[1] == length // 512 == stft.n_frames(length)
    np.testing.assert_allclose(mel[0].numpy(), ref, rtol=1e-4, atol=2e-4)
    ext = stft.extract(torch.from_numpy(x)[None], keyshift=keyshift, speed=speed)
    assert ext.shape == (1, ref.shape[1], 128)
    torch.testing.assert_close(ext, mel.transpose(1, 2))


def test_nsf_mel_short_input_constant_pad():
    x = _signal(700)  # pad_right >= L -> constant padding
    mel = NsfMel().get_mel(torch.from_numpy(x)[None])
    mag = _np_stft_mag(x, 2048, 512, 2048, 768, max(768, 2048 - 700 - 768), "constant", 1e-9)
    basis = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=128, fmin=40, fmax=16000)
    ref = np.log(np.maximum(basis.astype(np.float64) @ mag, 1e-5))
    np.testing.assert_allclose(mel[0].numpy(), ref, rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("length", [100, 512, 5000, 44100])
def test_volume_extractor(length):
    x = _signal(length, 4)
    vol = VolumeExtractor(512).extract(torch.from_numpy(np.stack([x, 0.5 * x])))
    n = length // 512
    assert vol.shape == (2, n) and vol.dtype == torch.float32
    xp = np.pad(x.astype(np.float64) ** 2, (256, 256), mode="reflect")
    ref = np.sqrt([xp[k * 512 : k * 512 + 512].mean() for k in range(n)])
    np.testing.assert_allclose(vol[0].numpy(), ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(vol[1].numpy(), 0.5 * ref, rtol=1e-5, atol=1e-7)
    v1 = VolumeExtractor(512).extract(x)  # 1-D numpy in -> [T]
    assert v1.shape == (n,)
    np.testing.assert_allclose(v1.numpy(), ref, rtol=1e-5, atol=1e-7)
