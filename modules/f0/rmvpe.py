"""RMVPE as read by so-vits-svc 4.1 (``pretrain/rmvpe.pt``, E2E0(4, 1, (2, 2)); F0_MODELS.md §4).

Front end: torchaudio-equivalent sinc resampling to 16 kHz (``lowpass_filter_width=128``), log-mel
(n_fft = win = 1024, hop 160, 128 HTK-scale/Slaney-normalised bins 30–8000 Hz, ``center=True``,
no epsilon), zero-padded to a multiple of 32 frames. Decoding: local weighted average of cents
around the argmax (±4 bins, truncated at the edges), voiced iff max salience > threshold,
100 frames/s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.checkpoint import safe_load
from modules.f0.base import F0ModelMissing, FrameModelPredictor, default_pretrain_dir
from modules.f0.resample import resample_sinc
from modules.mel_processing import hann_window, mel_basis

N_MELS = 128
N_CLASS = 360
CENTS_OFFSET = 1997.3794084376191


class ConvBlockRes(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, momentum: float = 0.01):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, (3, 3), (1, 1), (1, 1), bias=False),
            nn.BatchNorm2d(out_channels, momentum=momentum),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, (3, 3), (1, 1), (1, 1), bias=False),
            nn.BatchNorm2d(out_channels, momentum=momentum),
            nn.ReLU(),
        )
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, (1, 1)) if in_channels != out_channels else None
        )

    def forward(self, x):
        return self.conv(x) + (self.shortcut(x) if self.shortcut is not None else x)


class ResEncoderBlock(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, n_blocks=1, momentum=0.01):
        super().__init__()
        self.conv = nn.ModuleList([ConvBlockRes(in_channels, out_channels, momentum)])
        for _ in range(n_blocks - 1):
            self.conv.append(ConvBlockRes(out_channels, out_channels, momentum))
        self.pool = nn.AvgPool2d(kernel_size=kernel_size) if kernel_size is not None else None

    def forward(self, x):
        for block in self.conv:
            x = block(x)
        if self.pool is not None:
            return x, self.pool(x)
        return x


class Encoder(nn.Module):
    def __init__(self, in_channels, in_size, n_encoders, kernel_size, n_blocks, out_channels=16,
                 momentum=0.01):  # fmt: skip
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels, momentum=momentum)
        self.layers = nn.ModuleList()
        self.latent_channels = []
        for _ in range(n_encoders):
            self.layers.append(
                ResEncoderBlock(in_channels, out_channels, kernel_size, n_blocks, momentum)
            )
            self.latent_channels.append([out_channels, in_size])
            in_channels = out_channels
            out_channels *= 2
            in_size //= 2
        self.out_size = in_size
        self.out_channel = out_channels

    def forward(self, x):
        skips = []
        x = self.bn(x)
        for layer in self.layers:
            skip, x = layer(x)
            skips.append(skip)
        return x, skips


class Intermediate(nn.Module):
    def __init__(self, in_channels, out_channels, n_inters, n_blocks, momentum=0.01):
        super().__init__()
        self.layers = nn.ModuleList(
            [ResEncoderBlock(in_channels, out_channels, None, n_blocks, momentum)]
        )
        for _ in range(n_inters - 1):
            self.layers.append(
                ResEncoderBlock(out_channels, out_channels, None, n_blocks, momentum)
            )

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class TimbreFilter(nn.Module):
    """Stored in the checkpoint but never used by DeepUnet0.forward (strict loading needs it)."""

    def __init__(self, latent_rep_channels):
        super().__init__()
        self.layers = nn.ModuleList([ConvBlockRes(c[0], c[0]) for c in latent_rep_channels])


class ResDecoderBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride, n_blocks=1, momentum=0.01):
        super().__init__()
        out_padding = (0, 1) if stride == (1, 2) else (1, 1)
        self.conv1 = nn.Sequential(
            nn.ConvTranspose2d(
                in_channels, out_channels, (3, 3), stride, (1, 1), out_padding, bias=False
            ),  # fmt: skip
            nn.BatchNorm2d(out_channels, momentum=momentum),
            nn.ReLU(),
        )
        self.conv2 = nn.ModuleList([ConvBlockRes(out_channels * 2, out_channels, momentum)])
        for _ in range(n_blocks - 1):
            self.conv2.append(ConvBlockRes(out_channels, out_channels, momentum))

    def forward(self, x, skip):
        x = torch.cat((self.conv1(x), skip), dim=1)
        for block in self.conv2:
            x = block(x)
        return x


class Decoder(nn.Module):
    def __init__(self, in_channels, n_decoders, stride, n_blocks, momentum=0.01):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(n_decoders):
            out_channels = in_channels // 2
            self.layers.append(
                ResDecoderBlock(in_channels, out_channels, stride, n_blocks, momentum)
            )
            in_channels = out_channels

    def forward(self, x, skips):
        for i, layer in enumerate(self.layers):
            x = layer(x, skips[-1 - i])
        return x


class DeepUnet0(nn.Module):
    def __init__(self, kernel_size, n_blocks, en_de_layers=5, inter_layers=4, in_channels=1,
                 en_out_channels=16):  # fmt: skip
        super().__init__()
        self.encoder = Encoder(
            in_channels, 128, en_de_layers, kernel_size, n_blocks, en_out_channels
        )
        self.intermediate = Intermediate(
            self.encoder.out_channel // 2, self.encoder.out_channel, inter_layers, n_blocks
        )
        self.tf = TimbreFilter(self.encoder.latent_channels)
        self.decoder = Decoder(self.encoder.out_channel, en_de_layers, kernel_size, n_blocks)

    def forward(self, x):
        x, skips = self.encoder(x)
        x = self.intermediate(x)
        return self.decoder(x, skips)


class BiGRU(nn.Module):
    def __init__(self, input_features, hidden_features, num_layers):
        super().__init__()
        self.gru = nn.GRU(input_features, hidden_features, num_layers=num_layers, batch_first=True,
                          bidirectional=True)  # fmt: skip

    def forward(self, x):
        return self.gru(x)[0]


class E2E0(nn.Module):
    """mel ``[B, 128, Tp]`` (Tp a multiple of 32) → salience ``[B, Tp, 360]``."""

    def __init__(self, n_blocks=4, n_gru=1, kernel_size=(2, 2), en_de_layers=5, inter_layers=4,
                 in_channels=1, en_out_channels=16):  # fmt: skip
        super().__init__()
        self.unet = DeepUnet0(kernel_size, n_blocks, en_de_layers, inter_layers, in_channels,
                              en_out_channels)  # fmt: skip
        self.cnn = nn.Conv2d(en_out_channels, 3, (3, 3), padding=(1, 1))
        self.fc = nn.Sequential(
            BiGRU(3 * N_MELS, 256, n_gru), nn.Linear(512, N_CLASS), nn.Dropout(0.25), nn.Sigmoid()
        )

    def features(self, mel):
        """mel ``[B, 128, Tp]`` → the U-Net's features ``[B, Tp, 384]`` (the input of ``fc``)."""
        x = mel.transpose(-1, -2).unsqueeze(1)
        return self.cnn(self.unet(x)).transpose(1, 2).flatten(-2)

    def forward(self, mel):
        return self.fc(self.features(mel))


def rmvpe_mel(audio16: torch.Tensor, center: bool = True) -> torch.Tensor:
    """Log-mel ``[B, 128, 1 + L16 // 160]`` of 16 kHz audio ``[B, L16]`` (center=True, reflect).

    ``center=False``: the input is already padded (512 each side of the frames it covers) and
    gives ``1 + (L16 - 1024) // 160`` frames, the same values as the centred frames there."""
    window = hann_window(1024, torch.float32, audio16.device)
    fft = torch.stft(audio16, n_fft=1024, hop_length=160, win_length=1024, window=window,
                     center=center, pad_mode="reflect", return_complex=True)  # fmt: skip
    magnitude = torch.sqrt(fft.real.pow(2) + fft.imag.pow(2))
    basis = mel_basis(16000, 1024, N_MELS, 30, 8000, torch.float32, audio16.device, htk=True)
    return torch.log(torch.clamp(torch.matmul(basis, magnitude), min=1e-5))


def load_rmvpe_state(path: str | Path) -> dict:
    """``ckpt['model']`` (so-vits) or a bare state dict (RVC), every tensor cast to float32."""
    ckpt = safe_load(path)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        state = ckpt["model"]
    else:
        state = ckpt
    if not isinstance(state, dict) or "cnn.weight" not in state:
        raise ValueError(f"{path}: not an RMVPE checkpoint (no 'cnn.weight' in its state dict)")
    return {k[7:] if k.startswith("module.") else k:
            (v.float() if torch.is_tensor(v) and v.is_floating_point() else v)
            for k, v in state.items()}  # fmt: skip


_models: dict[tuple, E2E0] = {}


def load_rmvpe(path: str | Path, device=None) -> E2E0:
    path = Path(path)
    if not path.is_file():
        raise F0ModelMissing(
            f"{path}: the rmvpe f0 predictor needs this file, which does not exist (so-vits-svc "
            "4.1's pretrain/rmvpe.pt is the yxlllc RMVPE release 230917 'model.pt' renamed; RVC's "
            "rmvpe.pt also works; fcpe, crepe, pm, dio and harvest need no download)"
        )
    device = torch.device(device or "cpu")
    key = (str(path.resolve()), path.stat().st_mtime_ns, str(device))
    net = _models.get(key)
    if net is None:
        # built on the meta device and given the checkpoint's tensors (assign=True): one copy of
        # the 92 M weights in memory while loading, not three (init, load, channels-last copy)
        with torch.device("meta"):
            net = E2E0(4, 1, (2, 2))
        # channels-last: oneDNN's Conv2d runs about 3x faster on the CPU in NHWC than in NCHW
        # (same values up to float rounding, ~2e-7 on the salience); the state dict is unchanged
        # (copies, so that no tensor keeps the memory-mapped file alive)
        state = {k: v.to(device=device, copy=True, memory_format=torch.channels_last
                         if v.dim() == 4 else torch.contiguous_format)
                 for k, v in load_rmvpe_state(path).items() if torch.is_tensor(v)}  # fmt: skip
        net.load_state_dict(state, strict=True, assign=True)
        del state
        net = net.eval().requires_grad_(False)
        _models[key] = net
    return net


def decode_salience(salience: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """``salience [T, 360]`` → f0 ``[T]`` Hz (0 = unvoiced), so-vits ``to_local_average_cents``."""
    center = torch.argmax(salience, dim=1) + 4
    sal = F.pad(salience, (4, 4))
    mapping = F.pad(CENTS_OFFSET + 20 * torch.arange(N_CLASS, dtype=torch.float64), (4, 4))
    mapping = mapping.to(torch.float32).to(salience.device)
    idx = center[:, None] + torch.arange(-4, 5, device=salience.device)[None]
    s = torch.gather(sal, 1, idx)
    c = mapping[idx]
    cents = torch.sum(s * c, 1) / torch.sum(s, 1)
    maxx = torch.max(sal, dim=1).values
    cents[maxx <= threshold] = 0
    f0 = 10 * (2 ** (cents / 1200))
    f0[f0 == 10] = 0
    return f0


class RMVPEF0Predictor(FrameModelPredictor):
    """so-vits ``rmvpe``; weights from ``model_path`` (default ``<pretrain_dir>/rmvpe.pt``,
    ``pretrain_dir`` defaulting to ``$SOVITS_PRETRAIN`` or ``./pretrain``)."""

    name = "rmvpe"

    def __init__(self, hop_length=512, sampling_rate=44100, f0_min=50.0, f0_max=1100.0,
                 threshold=0.05, device=None, model_path=None, pretrain_dir=None):  # fmt: skip
        super().__init__(hop_length, sampling_rate, f0_min, f0_max, threshold, device)
        pdir = Path(pretrain_dir) if pretrain_dir else default_pretrain_dir()
        self.model_path = Path(model_path) if model_path else pdir / "rmvpe.pt"
        self.net = load_rmvpe(self.model_path, self.device)

    #: long inputs run through the network in chunks of this many frames (10 ms each), with
    #: ``context_frames`` more on each side that are computed and dropped; an input of at most
    #: ``chunk_frames + 2 * context_frames`` frames runs whole, as in so-vits. 0 = never chunk.
    #: Bounds the memory of long files (the U-Net's activations grow with the length).
    chunk_frames: int = 4096
    context_frames: int = 256

    @torch.no_grad()
    def salience(self, wav: np.ndarray, sr: int | None = None) -> torch.Tensor:
        """``[T, 360]`` salience at 100 frames/s, ``T = 1 + L16 // 160``."""
        sr = self.sampling_rate if sr is None else sr
        audio = torch.from_numpy(np.asarray(wav, dtype=np.float32)).to(self.device)[None]
        audio16 = resample_sinc(audio, sr, 16000, lowpass_filter_width=128)
        n_frames = 1 + audio16.shape[-1] // 160
        if self.chunk_frames and n_frames > self.chunk_frames + 2 * self.context_frames:
            return self._salience_chunked(audio16, n_frames)
        return self._net_salience(rmvpe_mel(audio16))

    def _net_salience(self, mel: torch.Tensor) -> torch.Tensor:
        n_frames = mel.shape[-1]
        mel = F.pad(mel, (0, 32 * ((n_frames - 1) // 32 + 1) - n_frames), mode="constant")
        # bf16: the U-Net's convolutions run under autocast; the BiGRU and the classifier stay
        # fp32 (under autocast the GRU's 2·Tp small per-step matmuls and casts cost more than the
        # whole U-Net saves: 0.42 s vs 0.29 s per 10 s on one thread; salience 70 dB vs fp32)
        with self.net_autocast():
            x = self.net.features(mel)
        salience = self.net.fc(x.float())
        return salience[:, :n_frames][0].float()

    def _salience_chunked(self, audio16: torch.Tensor, n_frames: int) -> torch.Tensor:
        """:meth:`salience` chunk by chunk: the mel frames are exactly the unchunked ones; the
        network (U-Net and BiGRU) sees ``context_frames`` of real signal beyond each chunk."""
        padded = F.pad(audio16, (512, 512), mode="reflect")  # what stft(center=True) does
        chunk, ctx = int(self.chunk_frames), int(self.context_frames)
        out = None  # [T, 360], filled in place (no second copy from a final cat)
        for a in range(0, n_frames, chunk):
            b = min(a + chunk, n_frames)
            lo, hi = max(0, a - ctx), min(n_frames, b + ctx)
            mel = rmvpe_mel(padded[:, 160 * lo : 160 * (hi - 1) + 1024], center=False)
            part = self._net_salience(mel)[a - lo : b - lo]
            if out is None:
                out = part.new_empty(n_frames, part.shape[1])
            out[a:b] = part
        return out

    @torch.no_grad()
    def model_f0(self, wav: np.ndarray) -> np.ndarray:
        sal = self.salience(wav)
        block = 16384  # frames: decoding is per frame, so blocks bound its temporaries
        f0 = torch.cat([decode_salience(sal[a : a + block], self.threshold)
                        for a in range(0, max(len(sal), 1), block)])  # fmt: skip
        return f0.float().cpu().numpy()

    @torch.no_grad()
    def infer_from_audio(self, audio, sample_rate: int = 16000, thred: float = 0.05) -> np.ndarray:
        """so-vits ``RMVPE.infer_from_audio``: f0 ``[T]`` at 100 frames/s (0 = unvoiced)."""
        audio = audio.detach().cpu().numpy() if torch.is_tensor(audio) else np.asarray(audio)
        sal = self.salience(audio.reshape(-1), sample_rate)
        return decode_salience(sal, thred).float().cpu().numpy()
