"""Signal helpers of a conversion, shared by the offline path (:meth:`inference.infer_tool.Svc.slice_inference`)
and a streaming engine: input reading, the synthesizer's DC high-pass, centring/cutting, forced-clip
splitting and the loudness-envelope mix. All arrays are mono, in samples.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

DC_CUTOFF_HZ = 20.0
"""The synthesizer's output goes through a zero-phase high-pass at this frequency [Hz]
(:func:`remove_dc`)."""


def remove_dc(audio: torch.Tensor, sr: int, cutoff: float = DC_CUTOFF_HZ) -> torch.Tensor:
    """Remove the DC offset (and drift below ``cutoff`` Hz) of ``audio [L]`` at ``sr`` Hz.

    The synthesizer learns an offset that nothing in training sees: the mel loss's lowest filter
    has weight 0 at 0 Hz (the demo voice's outputs had a mean of -0.03 to -0.06, drifting within a
    slice). A 2nd-order Butterworth high-pass run forwards and backwards (zero phase, -0.1 dB at
    65 Hz, the lowest sung note C2) removes the offset and its drift, which subtracting the mean
    of a slice would not. Signals too short for the filter only lose their mean."""
    from scipy.signal import butter, sosfiltfilt

    x = audio.detach().cpu().double().numpy()
    if len(x) < 64:
        y = x - x.mean() if len(x) else x
    else:
        y = sosfiltfilt(butter(2, cutoff, "highpass", fs=sr, output="sos"), x)
    return torch.from_numpy(np.ascontiguousarray(y)).to(audio.device, audio.dtype)


def pad_array(arr: np.ndarray, target_length: int) -> np.ndarray:
    """Centre ``arr`` in ``target_length`` samples with zeros; a longer array is cut at the end.

    (The reference returned a longer array unchanged, so the output drifted; §18.6.)
    """
    n = arr.shape[0]
    if n >= target_length:
        return arr[:target_length]
    pad = target_length - n
    return np.pad(arr, (pad // 2, pad - pad // 2))


def split_list_by_n(data: np.ndarray, n: int, pre: int = 0) -> list[np.ndarray]:
    """Pieces of ``n`` samples; every piece but the first starts ``pre`` samples early."""
    return [data[max(i - pre, 0) : i + n] for i in range(0, len(data), n)]


def change_rms(
    data1: np.ndarray, sr1: int, data2: torch.Tensor, sr2: int, rate: float
) -> torch.Tensor:
    """Mix the loudness envelopes (RVC ``change_rms``; §15 step 10).

    ``data1`` is the input, ``data2`` the output. Frame RMS over 0.5 s (hop 0.5 s) of both,
    linearly interpolated to the output length, output RMS ≥ 1e-6;
    ``out · rms_in^(1−rate) · rms_out^(rate−1)``. rate 1 keeps the output envelope, 0 imposes the
    input's.
    """
    import librosa
    import torch.nn.functional as F

    rms1 = librosa.feature.rms(y=np.asarray(data1, dtype=np.float32), frame_length=sr1 // 2 * 2,
                               hop_length=sr1 // 2)  # fmt: skip
    rms2 = librosa.feature.rms(y=data2.detach().float().cpu().numpy(), frame_length=sr2 // 2 * 2,
                               hop_length=sr2 // 2)  # fmt: skip
    n = data2.shape[0]
    rms1 = F.interpolate(torch.from_numpy(rms1).unsqueeze(0), size=n, mode="linear").squeeze()
    rms2 = F.interpolate(torch.from_numpy(rms2).unsqueeze(0), size=n, mode="linear").squeeze()
    rms2 = torch.clamp(rms2, min=1e-6)
    gain = torch.pow(rms1, 1 - rate) * torch.pow(rms2, rate - 1)
    return data2 * gain.to(data2)


def read_audio(raw: Any, target_sr: int) -> np.ndarray:
    """``raw`` (path, file object, or numpy wav already at ``target_sr``) → mono float32."""
    from common.audio import load_audio, resample

    if isinstance(raw, np.ndarray):
        return np.ascontiguousarray(raw, dtype=np.float32)
    if isinstance(raw, torch.Tensor):
        return raw.detach().float().cpu().numpy().reshape(-1)
    if isinstance(raw, (io.IOBase, io.BytesIO)):
        import soundfile as sf

        data, sr = sf.read(raw, dtype="float32", always_2d=True)
        return resample(data.mean(axis=1), sr, target_sr)
    wav, _ = load_audio(raw, sr=target_sr)
    return wav
