"""Spectrograms, mels and volume shared by preprocessing, training, diffusion and inference.

Definitions follow sovits-4.1.md §5.1–§5.3:

- :func:`spectrogram_torch`: the linear magnitude spectrogram used as the posterior-encoder input
  (``.spec.pt``) and by the mel loss; reflect pad ``(n_fft-hop)/2``, periodic Hann,
  ``center=False``, ``sqrt(re²+im²+1e-6)``.
- :func:`spec_to_mel_torch` / :func:`mel_spectrogram_torch`: the training mel loss (librosa Slaney
  basis, ``log(clamp(x, 1e-5))``).
- :class:`NsfMel`: the nsf-hifigan STFT mel (``nvSTFT.STFT.get_mel``) with key shift and speed,
  used by the diffusion model, the enhancer and preprocessing (``.mel.npy`` / ``.aug_mel.npy``).
- :class:`VolumeExtractor`: frame RMS (``.vol.npy``, diffusion conditioning).

All STFTs use ``torch.stft(..., return_complex=True)``; windows and mel bases are cached per
parameters, dtype and device.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_hann_cache: dict[tuple, torch.Tensor] = {}
_mel_cache: dict[tuple, torch.Tensor] = {}


def hann_window(win_size: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Periodic Hann window of ``win_size`` samples, cached per (size, dtype, device)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (int(win_size), dtype, str(device))
    w = _hann_cache.get(key)
    if w is None:
        w = torch.hann_window(int(win_size), dtype=torch.float32).to(dtype=dtype, device=device)
        with _lock:
            _hann_cache[key] = w
    return w


def mel_basis(
    sampling_rate: int,
    n_fft: int,
    num_mels: int,
    fmin: float,
    fmax: float | None,
    dtype: torch.dtype = torch.float32,
    device=None,
    htk: bool = False,
) -> torch.Tensor:
    """``librosa.filters.mel`` ``[n_mels, n_fft//2+1]``: Slaney area norm, Slaney scale unless htk.

    Cached per all parameters, dtype and device.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (int(sampling_rate), int(n_fft), int(num_mels), float(fmin),
           None if fmax is None else float(fmax), bool(htk), dtype, str(device))  # fmt: skip
    m = _mel_cache.get(key)
    if m is None:
        import librosa

        basis = librosa.filters.mel(
            sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax, htk=htk
        )
        m = torch.from_numpy(np.asarray(basis, dtype=np.float32)).to(dtype=dtype, device=device)
        with _lock:
            _mel_cache[key] = m
    return m


def _warn_range(y: torch.Tensor) -> None:
    """Log when audio leaves [-1, 1]. Skipped for tensors in autograd (training outputs) and on
    accelerators, where reading the extremes would force a device sync on every call."""
    if y.numel() == 0 or y.requires_grad or y.device.type != "cpu":
        return
    lo, hi = float(torch.min(y)), float(torch.max(y))
    if lo < -1.0:
        logger.warning("audio min value is %s (outside [-1, 1])", lo)
    if hi > 1.0:
        logger.warning("audio max value is %s (outside [-1, 1])", hi)


def reflect_pad(y: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last axis of ``y`` ``[B, L]`` like ``np.pad(mode="reflect")``.

    Same as ``F.pad(mode="reflect")`` where that works; pads longer than ``L - 1`` are done by
    repeated reflection instead of failing (a 1-sample input is repeated).
    """
    y = y.unsqueeze(1)
    while left > 0 or right > 0:
        n = y.size(-1) - 1
        if n < 1:
            return F.pad(y, (left, right), mode="replicate").squeeze(1)
        a, b = min(left, n), min(right, n)
        y = F.pad(y, (a, b), mode="reflect")
        left, right = left - a, right - b
    return y.squeeze(1)


def dynamic_range_compression_torch(x: torch.Tensor, C: float = 1, clip_val: float = 1e-5):
    """``log(clamp(x, clip_val) * C)``."""
    return torch.log(torch.clamp(x, min=clip_val) * C)


def dynamic_range_decompression_torch(x: torch.Tensor, C: float = 1):
    return torch.exp(x) / C


def spectral_normalize_torch(magnitudes: torch.Tensor) -> torch.Tensor:
    return dynamic_range_compression_torch(magnitudes)


def spectral_de_normalize_torch(magnitudes: torch.Tensor) -> torch.Tensor:
    return dynamic_range_decompression_torch(magnitudes)


def spectrogram_torch(
    y: torch.Tensor,
    n_fft: int = 2048,
    sampling_rate: int = 44100,
    hop_size: int = 512,
    win_size: int = 2048,
    center: bool = False,
) -> torch.Tensor:
    """Linear magnitude spectrogram ``[B, n_fft//2+1, T]`` of ``y`` ``[B, L]`` (§5.1).

    Reflect pad ``(n_fft-hop)//2`` on both sides, ``torch.stft(center=center)`` with a periodic
    Hann window, magnitude ``sqrt(re²+im²+1e-6)``. With the defaults ``T = L // 512`` (L ≥ 512).
    A bf16 (or fp16) input is computed in fp32 and the result cast back to the input dtype.
    """
    del sampling_rate  # part of the reference signature only
    if y.dim() == 1:
        y = y.unsqueeze(0)
    _warn_range(y)
    in_dtype = y.dtype
    if in_dtype in (torch.bfloat16, torch.float16):
        y = y.to(torch.float32)
    pad = int((n_fft - hop_size) / 2)
    y = reflect_pad(y, pad, pad)
    if y.size(-1) < n_fft:  # shorter than one frame
        return y.new_zeros(y.size(0), n_fft // 2 + 1, 0).to(in_dtype)
    window = hann_window(win_size, y.dtype, y.device)
    spec = torch.stft(
        y, n_fft, hop_length=hop_size, win_length=win_size, window=window, center=center,
        pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    )  # fmt: skip
    spec = torch.view_as_real(spec)
    spec = torch.sqrt(spec.pow(2).sum(-1) + 1e-6)
    return spec.to(in_dtype)


def spec_to_mel_torch(
    spec: torch.Tensor,
    n_fft: int = 2048,
    num_mels: int = 80,
    sampling_rate: int = 44100,
    fmin: float = 0.0,
    fmax: float | None = 22050,
) -> torch.Tensor:
    """Log-mel ``[B, num_mels, T]`` from a linear spectrogram ``[B, n_fft//2+1, T]`` (§5.2)."""
    basis = mel_basis(sampling_rate, n_fft, num_mels, fmin, fmax, spec.dtype, spec.device)
    return spectral_normalize_torch(torch.matmul(basis, spec))


def mel_spectrogram_torch(
    y: torch.Tensor,
    n_fft: int = 2048,
    num_mels: int = 80,
    sampling_rate: int = 44100,
    hop_size: int = 512,
    win_size: int = 2048,
    fmin: float = 0.0,
    fmax: float | None = 22050,
    center: bool = False,
) -> torch.Tensor:
    """:func:`spectrogram_torch` followed by :func:`spec_to_mel_torch`: ``[B, num_mels, T]``."""
    spec = spectrogram_torch(y, n_fft, sampling_rate, hop_size, win_size, center)
    return spec_to_mel_torch(spec, n_fft, num_mels, sampling_rate, fmin, fmax)


class NsfMel:
    """The nsf-hifigan STFT log-mel (``vdecoder/nsf_hifigan/nvSTFT.STFT.get_mel``, §5.2).

    ``get_mel(y[B, L], keyshift=0, speed=1) -> [B, n_mels, T]``; :meth:`extract` gives the
    time-major ``[B, T, n_mels]`` that the diffusion model and the ``.mel.npy`` files use.
    With the defaults and no shift ``T = L // 512``.
    """

    def __init__(
        self,
        sampling_rate: int = 44100,
        n_mels: int = 128,
        n_fft: int = 2048,
        win_size: int = 2048,
        hop_length: int = 512,
        fmin: float = 40,
        fmax: float | None = 16000,
        clip_val: float = 1e-5,
    ):
        self.target_sr = self.sampling_rate = int(sampling_rate)
        self.n_mels = int(n_mels)
        self.n_fft = int(n_fft)
        self.win_size = int(win_size)
        self.hop_length = int(hop_length)
        self.fmin = fmin
        self.fmax = fmax
        self.clip_val = clip_val

    @classmethod
    def from_config(cls, h) -> NsfMel:
        """Build from an nsf-hifigan ``config.json`` (dict or attribute object)."""
        get = h.get if isinstance(h, dict) else (lambda k, d=None: getattr(h, k, d))
        return cls(
            sampling_rate=get("sampling_rate", 44100), n_mels=get("num_mels", 128),
            n_fft=get("n_fft", 2048), win_size=get("win_size", 2048),
            hop_length=get("hop_size", 512), fmin=get("fmin", 40), fmax=get("fmax", 16000),
        )  # fmt: skip

    def n_frames(self, length: int, speed: float = 1) -> int:
        """Number of frames :meth:`get_mel` returns for ``length`` samples (no key shift)."""
        hop = int(np.round(self.hop_length * speed))
        pad_left = (self.win_size - hop) // 2
        pad_right = max((self.win_size - hop + 1) // 2, self.win_size - length - pad_left)
        return (length + pad_left + pad_right - self.win_size) // hop + 1

    def get_mel(
        self,
        y: torch.Tensor,
        keyshift: float = 0,
        speed: float = 1,
        center: bool = False,
        warn_range: bool = True,
    ) -> torch.Tensor:
        """Log-mel ``[B, n_mels, T]`` of ``y`` ``[B, L]`` (float, in [-1, 1]; outside that range
        a warning is logged unless ``warn_range=False``)."""
        if y.dim() == 1:
            y = y.unsqueeze(0)
        in_dtype = y.dtype
        if in_dtype != torch.float32 and in_dtype != torch.float64:
            y = y.to(torch.float32)
        with torch.autocast(y.device.type, enabled=False):  # fp32 even inside bf16 autocast
            return self._get_mel(y, keyshift, speed, center, warn_range)

    def _get_mel(self, y, keyshift, speed, center, warn_range) -> torch.Tensor:
        factor = 2 ** (keyshift / 12)
        n_fft_new = int(np.round(self.n_fft * factor))
        win_size_new = int(np.round(self.win_size * factor))
        hop_length_new = int(np.round(self.hop_length * speed))
        if warn_range:
            _warn_range(y)
        basis = mel_basis(
            self.sampling_rate, self.n_fft, self.n_mels, self.fmin, self.fmax, y.dtype, y.device
        )
        window = hann_window(win_size_new, y.dtype, y.device)
        length = y.size(-1)
        pad_left = (win_size_new - hop_length_new) // 2
        pad_right = max((win_size_new - hop_length_new + 1) // 2, win_size_new - length - pad_left)
        mode = "reflect" if pad_right < length else "constant"
        if mode == "reflect":
            y = reflect_pad(y, pad_left, pad_right)
        else:
            y = F.pad(y, (pad_left, pad_right), mode="constant")
        spec = torch.stft(
            y, n_fft_new, hop_length=hop_length_new, win_length=win_size_new, window=window,
            center=center, pad_mode="reflect", normalized=False, onesided=True,
            return_complex=True,
        )  # fmt: skip
        spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
        if keyshift != 0:
            size = self.n_fft // 2 + 1
            resize = spec.size(1)
            if resize < size:
                spec = F.pad(spec, (0, 0, 0, size - resize))
            spec = spec[:, :size, :] * self.win_size / win_size_new
        mel = torch.matmul(basis, spec)
        return dynamic_range_compression_torch(mel, clip_val=self.clip_val)

    def extract(
        self, y: torch.Tensor, keyshift: float = 0, speed: float = 1, warn_range: bool = True
    ) -> torch.Tensor:
        """Time-major log-mel ``[B, T, n_mels]`` (what ``NsfHifiGAN.extract`` returns)."""
        return self.get_mel(y, keyshift=keyshift, speed=speed, warn_range=warn_range).transpose(
            1, 2
        )

    __call__ = get_mel


class VolumeExtractor:
    """Frame RMS volume (``utils.Volume_Extractor``, §5.3).

    ``extract(audio[B, L]) -> [B, T]`` (``audio[L] -> [T]``) with ``T = L // hop``: the RMS of
    samples ``[k·hop − hop/2, k·hop + hop/2)``, reflect-padded at the edges. Float32.
    """

    def __init__(self, hop_size: int = 512):
        self.hop_size = int(hop_size)

    def extract(self, audio) -> torch.Tensor:
        if not isinstance(audio, torch.Tensor):
            audio = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        squeeze = audio.dim() == 1
        if squeeze:
            audio = audio.unsqueeze(0)
        audio = audio.float()
        hop = self.hop_size
        n_frames = int(audio.size(-1) // hop)
        audio2 = audio**2
        audio2 = reflect_pad(audio2, hop // 2, (hop + 1) // 2)
        frames = audio2[:, : n_frames * hop].reshape(audio2.size(0), n_frames, hop)
        volume = torch.sqrt(frames.mean(dim=-1))
        return volume[0] if squeeze else volume
