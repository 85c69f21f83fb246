"""FCPE: the so-vits-svc 4.1 ``pretrain/fcpe.pt`` format and the model bundled in the torchfcpe
wheel (``torchfcpe/assets/fcpe_c_v001.pt``), one implementation (F0_MODELS.md §3).

so-vits format: input stack → n_layers × [x + PerformerAttn(LN(x)); x + ConvModule(x)] → LN →
weight-norm Linear → sigmoid. torchfcpe bundled (CFNaiveMelPE, ``conv_only``): the same without
the attention branch. Both read a 16 kHz "nvSTFT" log-mel (n_fft = win = 1024, hop 160, 128 Slaney
bins), decode with the local argmax (±4 bins, indices clamped) and give 0 Hz where max ≤ threshold.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.checkpoint import safe_load
from modules.f0.base import FrameModelPredictor, default_pretrain_dir, package_asset
from modules.f0.resample import resample_sinc
from modules.mel_processing import NsfMel


class ConformerConvModule(nn.Module):
    """LN → pointwise conv (×4) → GLU → depthwise conv k31 → SiLU → pointwise conv. Keys ``net.{0,2,4.conv,6}``."""

    def __init__(self, dim: int, expansion_factor: int = 2, kernel_size: int = 31):
        super().__init__()
        inner = dim * expansion_factor
        pad = kernel_size // 2
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            _Transpose(),
            nn.Conv1d(dim, inner * 2, 1),
            nn.GLU(dim=1),
            _DepthWiseConv1d(inner, kernel_size, (pad, pad - (kernel_size + 1) % 2)),
            nn.SiLU(),
            nn.Conv1d(inner, dim, 1),
            _Transpose(),
        )

    def forward(self, x):
        return self.net(x)


class _Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


class _DepthWiseConv1d(nn.Module):
    def __init__(self, channels: int, kernel_size: int, padding: tuple[int, int]):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels)

    def forward(self, x):
        return self.conv(F.pad(x, self.padding))


def softmax_kernel(data: torch.Tensor, projection_matrix: torch.Tensor, is_query: bool,
                   eps: float = 1e-4) -> torch.Tensor:  # fmt: skip
    """FAVOR+ positive random features (Performer ``softmax_kernel``, non-causal)."""
    normalizer = data.shape[-1] ** -0.25
    ratio = projection_matrix.shape[0] ** -0.5
    projection = projection_matrix.type_as(data)
    data_dash = torch.einsum("...id,jd->...ij", normalizer * data, projection)
    diag = (torch.sum(data**2, dim=-1) / 2.0 * normalizer**2).unsqueeze(-1)
    if is_query:
        out = ratio * (
            torch.exp(data_dash - diag - torch.max(data_dash, dim=-1, keepdim=True).values) + eps
        )
    else:
        out = ratio * torch.exp(data_dash - diag + eps)
    return out.type_as(data)


class FastAttention(nn.Module):
    def __init__(self, dim_heads: int, nb_features: int | None = None):
        super().__init__()
        nb_features = nb_features or int(dim_heads * math.log(dim_heads))
        # random orthogonal features in the reference; always overwritten by the checkpoint
        self.register_buffer("projection_matrix", torch.zeros(nb_features, dim_heads))

    def forward(self, q, k, v):
        q = softmax_kernel(q, self.projection_matrix, is_query=True)
        k = softmax_kernel(k, self.projection_matrix, is_query=False)
        k_sum = k.sum(dim=-2)
        d_inv = 1.0 / (torch.einsum("...nd,...d->...n", q, k_sum.type_as(q)) + 1e-8)
        context = torch.einsum("...nd,...ne->...de", k, v)
        return torch.einsum("...de,...nd,...n->...ne", context, q, d_inv)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.fast_attention = FastAttention(dim_head)
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x):
        b, n, _ = x.shape
        h = self.heads

        def split(t):
            return t.reshape(b, n, h, -1).transpose(1, 2)

        q, k, v = split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x))
        out = self.fast_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class EncoderLayer(nn.Module):
    """``x + attn(norm(x))`` (when attention is on), then ``x + conformer(x)``."""

    def __init__(self, dim: int, heads: int = 8, attention: bool = True):
        super().__init__()
        self.conformer = ConformerConvModule(dim)
        self.norm = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads) if attention else None

    def forward(self, x):
        if self.attn is not None:
            x = x + self.attn(self.norm(x))
        return x + self.conformer(x)


class WeightNormLinear(nn.Module):
    """Linear layer stored with old-style weight norm: ``W = g·v/‖v‖`` (row-wise), keys
    ``weight_g [out, 1]``, ``weight_v [out, in]``, ``bias``."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_g = nn.Parameter(torch.ones(out_features, 1))
        self.weight_v = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.normal_(self.weight_v, std=in_features**-0.5)

    @property
    def weight(self) -> torch.Tensor:
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class FCPE(nn.Module):
    """FCPE network (both formats). ``mel [B, T, n_mels]`` → sigmoid latent ``[B, T, out_dims]``.

    Parameter names follow the so-vits format (``stack``, ``decoder._layers.N``, ``dense_out``);
    :func:`load_fcpe` maps the torchfcpe names (``input_stack``, ``net.encoder_layers.N``,
    ``output_proj``) onto them.
    """

    def __init__(self, input_channel=128, out_dims=360, n_layers=12, n_chans=512, n_heads=8,
                 f0_max=1975.5, f0_min=32.70, attention=True):  # fmt: skip
        super().__init__()
        self.out_dims = out_dims
        self.f0_min, self.f0_max = f0_min, f0_max
        self.stack = nn.Sequential(
            nn.Conv1d(input_channel, n_chans, 3, 1, 1),
            nn.GroupNorm(4, n_chans),
            nn.LeakyReLU(),
            nn.Conv1d(n_chans, n_chans, 3, 1, 1),
        )
        self.decoder = nn.Module()
        self.decoder._layers = nn.ModuleList(
            [EncoderLayer(n_chans, n_heads, attention) for _ in range(n_layers)]
        )
        self.norm = nn.LayerNorm(n_chans)
        self.dense_out = WeightNormLinear(n_chans, out_dims)
        cent = 1200.0 * torch.log2(torch.tensor([f0_min, f0_max]) / 10.0)
        self.register_buffer("cent_table", torch.linspace(float(cent[0]), float(cent[1]), out_dims))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.stack(mel.transpose(1, 2)).transpose(1, 2)
        for layer in self.decoder._layers:
            x = layer(x)
        x = self.norm(x)
        x = self.dense_out(x)
        return torch.sigmoid(x)

    @torch.no_grad()
    def decode(self, y: torch.Tensor, threshold: float = 0.05, decoder: str = "local_argmax"):
        """Latent ``[B, T, 360]`` → (f0 Hz ``[B, T, 1]`` with 0 = unvoiced, confidence ``[B, T, 1]``)."""
        b, n, _ = y.size()
        ci = self.cent_table[None, None, :].expand(b, n, -1)
        confident, max_index = torch.max(y, dim=-1, keepdim=True)
        if decoder == "local_argmax":
            idx = torch.arange(0, 9, device=y.device) + (max_index - 4)
            idx = idx.clamp(0, self.out_dims - 1)
            ci_l, y_l = torch.gather(ci, -1, idx), torch.gather(y, -1, idx)
            cents = torch.sum(ci_l * y_l, dim=-1, keepdim=True) / torch.sum(
                y_l, dim=-1, keepdim=True
            )
        elif decoder == "argmax":
            cents = torch.sum(ci * y, dim=-1, keepdim=True) / torch.sum(y, dim=-1, keepdim=True)
        else:
            raise ValueError(f"unknown FCPE decoder {decoder!r}")
        mask = torch.ones_like(confident)
        mask[confident <= threshold] = float("-inf")
        cents = cents * mask
        return 10.0 * 2 ** (cents / 1200.0), confident


# ---------------------------------------------------------------------------------------------
# checkpoints

_TORCHFCPE_PREFIXES = (
    ("input_stack.", "stack."),
    ("net.encoder_layers.", "decoder._layers."),
    ("output_proj.", "dense_out."),
)


def _get(cfg, *keys, default=None):
    for k in keys:
        if isinstance(cfg, dict) and k in cfg and cfg[k] is not None:
            return cfg[k]
    return default


def read_fcpe_checkpoint(path: str | Path) -> tuple[dict, dict, dict, str]:
    """``(model kwargs, mel config, state dict in so-vits names, format)`` from either format."""
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path}: not an FCPE checkpoint (no 'model' entry)")
    state = dict(ckpt["model"])
    if "config_dict" in ckpt:  # torchfcpe
        cfg = ckpt["config_dict"]
        fmt = "torchfcpe"
        m = cfg.get("model", {})
        if m.get("type", "CFNaiveMelPE") != "CFNaiveMelPE":
            raise ValueError(f"{path}: unsupported torchfcpe model type {m.get('type')!r}")
        renamed = {}
        for k, v in state.items():
            for old, new in _TORCHFCPE_PREFIXES:
                if k.startswith(old):
                    k = new + k[len(old) :]
                    break
            renamed[k] = v
        state = renamed
        kwargs = dict(input_channel=_get(cfg.get("mel", {}), "num_mels", default=128),
                      out_dims=_get(m, "out_dims", default=360),
                      n_layers=_get(m, "n_layers", default=6),
                      n_chans=_get(m, "hidden_dims", default=512),
                      n_heads=_get(m, "n_heads", default=8),
                      f0_max=_get(m, "f0_max", default=1975.5),
                      f0_min=_get(m, "f0_min", default=32.70),
                      attention=not bool(m.get("conv_only", False)))  # fmt: skip
        if m.get("use_harmonic_emb"):
            raise ValueError(f"{path}: FCPE models with a harmonic embedding are not supported")
    elif "config" in ckpt:  # so-vits
        cfg = ckpt["config"]
        fmt = "sovits"
        m = cfg.get("model", {})
        if m.get("use_siren") or m.get("use_full"):
            raise ValueError(
                f"{path}: FCPE with use_siren/use_full is not supported (so-vits neither)"
            )
        kwargs = dict(input_channel=_get(m, "input_channel", default=128),
                      out_dims=_get(m, "out_dims", default=360),
                      n_layers=_get(m, "n_layers", default=12),
                      n_chans=_get(m, "n_chans", default=512),
                      f0_max=_get(m, "f0_max", default=1975.5),
                      f0_min=_get(m, "f0_min", default=32.70),
                      attention=True)  # fmt: skip
    else:
        raise ValueError(f"{path}: FCPE checkpoint without 'config' or 'config_dict'")
    mel = cfg.get("mel", {}) or {}
    mel_cfg = dict(sampling_rate=_get(mel, "sampling_rate", "sr", default=16000),
                   num_mels=_get(mel, "num_mels", default=128),
                   n_fft=_get(mel, "n_fft", default=1024),
                   win_size=_get(mel, "win_size", default=1024),
                   hop_size=_get(mel, "hop_size", default=160),
                   fmin=_get(mel, "fmin", default=0),
                   fmax=_get(mel, "fmax", default=8000))  # fmt: skip
    # weight norm saved with the parametrizations API (newer torch): original0 = g, original1 = v
    if "dense_out.parametrizations.weight.original0" in state:
        state["dense_out.weight_g"] = state.pop("dense_out.parametrizations.weight.original0")
        state["dense_out.weight_v"] = state.pop("dense_out.parametrizations.weight.original1")
    if not kwargs["attention"]:
        state.pop("gaussian_blurred_cent_mask", None)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return kwargs, mel_cfg, state, fmt


_models: dict[tuple, tuple] = {}


def load_fcpe(path: str | Path, device=None) -> tuple[FCPE, dict, str]:
    """``(model, mel config, format)``; strict loading (no missing or unexpected keys)."""
    path = Path(path)
    device = torch.device(device or "cpu")
    key = (str(path.resolve()), path.stat().st_mtime_ns if path.exists() else 0, str(device))
    hit = _models.get(key)
    if hit is None:
        kwargs, mel_cfg, state, fmt = read_fcpe_checkpoint(path)
        net = FCPE(**kwargs)
        net.load_state_dict(state, strict=True)
        hit = (net.eval().to(device), mel_cfg, fmt)
        _models[key] = hit
    return hit


def bundled_fcpe_path() -> Path:
    return package_asset("torchfcpe", "assets/fcpe_c_v001.pt")


def fcpe_mel(audio: torch.Tensor, sr: int, mel_cfg: dict) -> torch.Tensor:
    """FCPE ``Wav2Mel``: resample to the model rate, nvSTFT mel, frame-count fix-up. ``[B, T, M]``."""
    target = int(mel_cfg["sampling_rate"])
    audio_res = (
        resample_sinc(audio, sr, target, lowpass_filter_width=128) if sr != target else audio
    )
    stft = NsfMel(target, mel_cfg["num_mels"], mel_cfg["n_fft"], mel_cfg["win_size"],
                  mel_cfg["hop_size"], mel_cfg["fmin"], mel_cfg["fmax"])  # fmt: skip
    mel = stft.extract(audio_res, warn_range=False)  # sinc resampling may overshoot ±1
    n_frames = int(audio.shape[-1] // int(mel_cfg["hop_size"])) + 1
    if n_frames > int(mel.shape[1]):
        mel = torch.cat((mel, mel[:, -1:, :]), 1)
    if n_frames < int(mel.shape[1]):
        mel = mel[:, :n_frames, :]
    return mel


class FCPEF0Predictor(FrameModelPredictor):
    """so-vits ``fcpe`` (threshold 0.05, local argmax, shared post-process).

    ``model_path``: a so-vits ``fcpe.pt`` or a torchfcpe checkpoint. Default:
    ``<pretrain_dir>/fcpe.pt`` (``$SOVITS_PRETRAIN`` or ``./pretrain``) when it exists, else the
    model bundled in the torchfcpe wheel (``model_path="bundled"`` forces it).
    """

    name = "fcpe"

    def __init__(self, hop_length=512, sampling_rate=44100, f0_min=50.0, f0_max=1100.0,
                 threshold=0.05, device=None, model_path=None, decoder="local_argmax",
                 pretrain_dir=None):  # fmt: skip
        super().__init__(hop_length, sampling_rate, f0_min, f0_max, threshold, device)
        if model_path in (None, "", "auto"):
            p = (Path(pretrain_dir) if pretrain_dir else default_pretrain_dir()) / "fcpe.pt"
            model_path = p if p.is_file() else bundled_fcpe_path()
        elif model_path == "bundled":
            model_path = bundled_fcpe_path()
        self.model_path = Path(model_path)
        self.decoder = decoder
        self.net, self.mel_cfg, self.format = load_fcpe(self.model_path, self.device)

    @torch.no_grad()
    def latent(self, wav: np.ndarray, sr: int | None = None) -> torch.Tensor:
        sr = self.sampling_rate if sr is None else sr
        audio = torch.from_numpy(np.asarray(wav, dtype=np.float32)).to(self.device)[None]
        mel = fcpe_mel(audio, sr, self.mel_cfg)
        with self.net_autocast():
            latent = self.net(mel)
        return latent.float()

    @torch.no_grad()
    def model_f0(self, wav: np.ndarray) -> np.ndarray:
        f0, _ = self.net.decode(self.latent(wav), self.threshold, self.decoder)
        return f0[0, :, 0].float().cpu().numpy()

    @torch.no_grad()
    def infer(self, wav, sr: int | None = None, decoder_mode: str = "local_argmax",
              threshold: float = 0.006, f0_min: float | None = None, f0_max: float | None = None,
              interp_uv: bool = False, output_interp_target_length: int | None = None,
              return_uv: bool = False):  # fmt: skip
        """torchfcpe's ``InferCFNaiveMelPE.infer`` semantics (F0_MODELS.md §3.3).

        ``wav`` 1-D (numpy or tensor) at ``sr``. Returns f0 ``[1, T, 1]`` (and uv when
        ``return_uv``): ``uv = f0 < f0_min`` (default the model's f0_min; f0 is not zeroed),
        optional interpolation of uv frames over frame index (edges held; unchanged if every frame
        is uv, where torchfcpe raises), optional clamp to ``f0_max``, optional nearest resize.
        """
        wav = wav.detach().cpu().numpy() if torch.is_tensor(wav) else np.asarray(wav)
        f0, _ = self.net.decode(self.latent(wav.reshape(-1), sr), threshold, decoder_mode)
        if f0_min is None:
            f0_min = self.net.f0_min
        uv = (f0 < f0_min).type(f0.dtype)
        if interp_uv:
            x = f0[0, :, 0].cpu().numpy().astype(np.float64)
            keep = uv[0, :, 0].cpu().numpy() == 0
            if keep.any():
                i = np.arange(len(x))
                x = np.interp(i, i[keep], x[keep])
                f0 = torch.from_numpy(x).to(f0)[None, :, None]
        if f0_max is not None:
            f0[f0 > f0_max] = f0_max
        if output_interp_target_length is not None:
            n = int(output_interp_target_length)
            f0 = F.interpolate(f0.transpose(1, 2), size=n, mode="nearest").transpose(1, 2)
            uv = F.interpolate(uv.transpose(1, 2), size=n, mode="nearest").transpose(1, 2)
        return (f0, uv) if return_uv else f0
