"""so-vits-svc 4.1 generator and discriminator (sovits-4.1.md §9, §10).

``SynthesizerTrn`` is checkpoint-compatible with 4.1 ``G_*.pth``: same parameter names, shapes
and state-dict order for every config variant of the templates (vol_embedding,
use_depthwise_conv, flow_share_parameter, use_transformer_flow, use_automatic_f0_prediction,
nsf-hifigan / nsf-snake-hifigan decoders). Build it as the reference does::

    net_g = SynthesizerTrn(hps.data.filter_length // 2 + 1,
                           hps.train.segment_size // hps.data.hop_length, **hps.model)

Unknown config keys are swallowed. ``infer`` reproduces the reference RNG consumption, so the
same seed gives the same audio as 4.1 for the same weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import Conv1d, Conv2d
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from modules import attentions, commons
from modules.commons import LRELU_SLOPE, get_padding, weight_norm
from modules.modules import (
    WN,
    ResidualCouplingBlock,
    TransformerCouplingBlock,
)
from modules.pitch import f0_to_coarse, f0_to_lf0, lf0_to_f0, normalize_f0

__all__ = [
    "DiscriminatorP",
    "DiscriminatorS",
    "Encoder",
    "F0Decoder",
    "MultiPeriodDiscriminator",
    "ResidualCouplingBlock",
    "SynthesizerTrn",
    "TextEncoder",
    "TransformerCouplingBlock",
]


# --------------------------------------------------------------------------------------------
# generator parts
# --------------------------------------------------------------------------------------------
class Encoder(nn.Module):
    """Posterior encoder ``enc_q``: spec → (z, m, logs, mask) with ``z = m + ε·exp(logs)``.

    ``pre`` Conv1d(in→H, 1) → :class:`WN` (``n_layers``; SynthesizerTrn hard-wires 16) →
    ``proj`` Conv1d(H→2·out, 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
        use_depthwise_conv: bool = False,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.n_layers = n_layers
        self.gin_channels = gin_channels

        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(
            hidden_channels,
            kernel_size,
            dilation_rate,
            n_layers,
            gin_channels=gin_channels,
            use_depthwise_conv=use_depthwise_conv,
        )
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(self, x, x_lengths, g=None):
        x_mask = torch.unsqueeze(commons.sequence_mask(x_lengths, x.size(2)), 1).to(x.dtype)
        x = self.pre(x) * x_mask
        x = self.enc(x, x_mask, g=g)
        stats = self.proj(x) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        z = (m + torch.randn_like(m) * torch.exp(logs)) * x_mask
        return z, m, logs, x_mask


class TextEncoder(nn.Module):
    """Prior encoder ``enc_p``: (content + uv [+ vol]) + f0 embedding → transformer → (z, m, logs).

    ``z = (m + ε·exp(logs)·noice_scale)·mask`` (the reference's spelling of ``noice_scale``).
    """

    def __init__(
        self,
        out_channels: int,
        hidden_channels: int,
        kernel_size: int,
        n_layers: int,
        gin_channels: int = 0,
        filter_channels: int | None = None,
        n_heads: int | None = None,
        p_dropout: float | None = None,
    ):
        super().__init__()
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.n_layers = n_layers
        self.gin_channels = gin_channels
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)
        self.f0_emb = nn.Embedding(256, hidden_channels)
        self.enc_ = attentions.Encoder(
            hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout
        )

    def forward(self, x, x_mask, f0=None, noice_scale=1):
        x = x + self.f0_emb(f0).transpose(1, 2)
        x = self.enc_(x * x_mask, x_mask)
        stats = self.proj(x) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        z = (m + torch.randn_like(m) * torch.exp(logs) * noice_scale) * x_mask
        return z, m, logs, x_mask


class F0Decoder(nn.Module):
    """Predicts normalised log-f0 from the (detached) prior input, speaker and input pitch.

    ``x = detach(x) + cond(g) + f0_prenet(norm_lf0)`` → ``prenet·mask`` → causal :class:`FFT`
    → ``proj·mask`` → ``[B, 1, T]``.
    """

    def __init__(
        self,
        out_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        spk_channels: int = 0,
    ):
        super().__init__()
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.filter_channels = filter_channels
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.kernel_size = kernel_size
        self.p_dropout = p_dropout
        self.spk_channels = spk_channels

        self.prenet = nn.Conv1d(hidden_channels, hidden_channels, 3, padding=1)
        self.decoder = attentions.FFT(
            hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout
        )
        self.proj = nn.Conv1d(hidden_channels, out_channels, 1)
        self.f0_prenet = nn.Conv1d(1, hidden_channels, 3, padding=1)
        self.cond = nn.Conv1d(spk_channels, hidden_channels, 1)

    def forward(self, x, norm_f0, x_mask, spk_emb=None):
        x = torch.detach(x)
        if spk_emb is not None:
            x = x + self.cond(spk_emb)
        # out of place: with spk_emb=None, `x` would alias the caller's tensor (reference +=)
        x = x + self.f0_prenet(norm_f0)
        x = self.prenet(x) * x_mask
        x = self.decoder(x * x_mask, x_mask)
        x = self.proj(x) * x_mask
        return x


def _build_decoder(vocoder_name: str, h: dict[str, Any]) -> nn.Module:
    from vdecoder import build_decoder

    return build_decoder(vocoder_name, h)


class SynthesizerTrn(nn.Module):
    """The so-vits-svc 4.1 generator (``net_g``).

    Sub-modules in registration (= state-dict) order: ``emb_g``, (``emb_vol``), ``pre``,
    ``enc_p``, ``dec``, ``enc_q``, ``flow``, (``f0_decoder``), ``emb_uv``.
    """

    def __init__(
        self,
        spec_channels: int,
        segment_size: int,
        inter_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        resblock: str,
        resblock_kernel_sizes: list[int],
        resblock_dilation_sizes: list[list[int]],
        upsample_rates: list[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: list[int],
        gin_channels: int,
        ssl_dim: int,
        n_speakers: int,
        sampling_rate: int = 44100,
        vol_embedding: bool = False,
        vocoder_name: str = "nsf-hifigan",
        use_depthwise_conv: bool = False,
        use_automatic_f0_prediction: bool = True,
        flow_share_parameter: bool = False,
        n_flow_layer: int = 4,
        n_layers_trans_flow: int = 3,
        use_transformer_flow: bool = False,
        **kwargs,
    ):
        super().__init__()
        self.spec_channels = spec_channels
        self.inter_channels = inter_channels
        self.hidden_channels = hidden_channels
        self.filter_channels = filter_channels
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.kernel_size = kernel_size
        self.p_dropout = p_dropout
        self.resblock = resblock
        self.resblock_kernel_sizes = resblock_kernel_sizes
        self.resblock_dilation_sizes = resblock_dilation_sizes
        self.upsample_rates = upsample_rates
        self.upsample_initial_channel = upsample_initial_channel
        self.upsample_kernel_sizes = upsample_kernel_sizes
        self.segment_size = segment_size
        self.gin_channels = gin_channels
        self.ssl_dim = ssl_dim
        self.n_speakers = n_speakers
        self.sampling_rate = sampling_rate
        self.vol_embedding = bool(vol_embedding)
        self.vocoder_name = vocoder_name
        self.use_depthwise_conv = bool(use_depthwise_conv)
        self.use_automatic_f0_prediction = bool(use_automatic_f0_prediction)
        self.flow_share_parameter = bool(flow_share_parameter)
        self.n_flow_layer = n_flow_layer
        self.n_layers_trans_flow = n_layers_trans_flow
        self.use_transformer_flow = bool(use_transformer_flow)

        self.emb_g = nn.Embedding(n_speakers, gin_channels)
        if self.vol_embedding:
            self.emb_vol = nn.Linear(1, hidden_channels)
        self.pre = nn.Conv1d(ssl_dim, hidden_channels, kernel_size=5, padding=2)
        self.enc_p = TextEncoder(
            inter_channels,
            hidden_channels,
            filter_channels=filter_channels,
            n_heads=n_heads,
            n_layers=n_layers,
            kernel_size=kernel_size,
            p_dropout=p_dropout,
        )
        self.decoder_hparams = {
            "sampling_rate": sampling_rate,
            "inter_channels": inter_channels,
            "resblock": resblock,
            "resblock_kernel_sizes": resblock_kernel_sizes,
            "resblock_dilation_sizes": resblock_dilation_sizes,
            "upsample_rates": upsample_rates,
            "upsample_initial_channel": upsample_initial_channel,
            "upsample_kernel_sizes": upsample_kernel_sizes,
            "gin_channels": gin_channels,
            "use_depthwise_conv": self.use_depthwise_conv,
        }
        self.dec = _build_decoder(vocoder_name, self.decoder_hparams)
        self.enc_q = Encoder(
            spec_channels,
            inter_channels,
            hidden_channels,
            5,
            1,
            16,
            gin_channels=gin_channels,
            use_depthwise_conv=self.use_depthwise_conv,
        )
        if self.use_transformer_flow:
            # reference argument order: n_layers_trans_flow layers, kernel 5, n_flow_layer flows
            self.flow = TransformerCouplingBlock(
                inter_channels,
                hidden_channels,
                filter_channels,
                n_heads,
                n_layers_trans_flow,
                5,
                p_dropout,
                n_flow_layer,
                gin_channels=gin_channels,
                share_parameter=self.flow_share_parameter,
            )
        else:
            # reference argument order: n_flow_layer is the WN depth; 4 flows
            self.flow = ResidualCouplingBlock(
                inter_channels,
                hidden_channels,
                5,
                1,
                n_flow_layer,
                gin_channels=gin_channels,
                share_parameter=self.flow_share_parameter,
                use_depthwise_conv=self.use_depthwise_conv,
            )
        if self.use_automatic_f0_prediction:
            self.f0_decoder = F0Decoder(
                1,
                hidden_channels,
                filter_channels,
                n_heads,
                n_layers,
                kernel_size,
                p_dropout,
                spk_channels=gin_channels,
            )
        self.emb_uv = nn.Embedding(2, hidden_channels)
        self.character_mix = False
        self._weight_norm_removed = False

    # ----------------------------------------------------------------------------------------
    def EnableCharacterMix(self, n_speakers_map: int, device=None) -> None:  # noqa: N802
        """Switch ``infer`` to per-frame speaker mixing over speakers ``0..n_speakers_map-1``.

        ``speaker_map`` ``[1, n, 1, 1, G]`` is a snapshot of those ``emb_g`` rows (not a buffer:
        it stays out of the state dict). Call it after loading the weights.
        """
        if device is None:
            device = self.emb_g.weight.device
        n = int(n_speakers_map)
        if not 0 < n <= self.emb_g.num_embeddings:
            raise ValueError(f"n_speakers_map must be in 1..{self.emb_g.num_embeddings}, got {n}")
        with torch.no_grad():
            rows = self.emb_g(torch.arange(n, device=self.emb_g.weight.device)).detach()
        self.speaker_map = rows.view(1, n, 1, 1, self.gin_channels).to(device)
        self.character_mix = True

    def _speaker_embedding(self, g: torch.Tensor, batch: int) -> torch.Tensor:
        """Speaker condition for ``infer``: ``[B, G, 1]`` from ids, or ``[1, G, N]`` from a mix."""
        if g is None:
            raise ValueError("infer needs a speaker: g = LongTensor([[sid]]) or a mix matrix")
        if self.character_mix and (len(g) > 1 or g.is_floating_point()):
            # g: per-frame weights [N_frames, n_spk] → [1, G, N_frames]
            smap = self.speaker_map
            n_spk = smap.shape[1]
            if g.dim() != 2 or g.shape[1] != n_spk:
                raise ValueError(
                    f"speaker mix weights must be [N_frames, {n_spk}], got {tuple(g.shape)}"
                )
            w = g.reshape(g.shape[0], g.shape[1], 1, 1, 1).to(smap)
            mixed = torch.sum(w * smap, dim=1)  # [N, 1, 1, G]
            return mixed.transpose(0, -1).transpose(0, -2).squeeze(0)  # [1, G, N]
        if g.dim() == 1:
            g = g.unsqueeze(0) if g.numel() == 1 else g.unsqueeze(-1)  # [1,1] / [B,1]
        return self.emb_g(g.long()).transpose(1, 2)

    def _prior_input(self, c, uv, x_mask, vol):
        vol_term = (
            self.emb_vol(vol[:, :, None]).transpose(1, 2)
            if vol is not None and self.vol_embedding
            else 0
        )
        return self.pre(c) * x_mask + self.emb_uv(uv.long()).transpose(1, 2) + vol_term

    # ----------------------------------------------------------------------------------------
    def forward(self, c, f0, uv, spec, g=None, c_lengths=None, spec_lengths=None, vol=None):
        """Training pass.

        c ``[B, ssl_dim, T]``, f0/uv ``[B, T]``, spec ``[B, spec_channels, T]``, g ``[B, 1]``
        speaker ids, lengths ``[B]``, vol ``[B, T]`` (used only with vol_embedding).

        Returns ``(o [B,1,S·hop], ids_slice [B], spec_mask [B,1,T],
        (z, z_p, m_p, logs_p, m_q, logs_q), pred_lf0, norm_lf0, lf0)``; the last three are
        ``[B,1,T]`` tensors, or 0 without automatic f0 prediction.
        """
        g = self.emb_g(g).transpose(1, 2)
        x_mask = torch.unsqueeze(commons.sequence_mask(c_lengths, c.size(2)), 1).to(c.dtype)
        x = self._prior_input(c, uv, x_mask, vol)

        if self.use_automatic_f0_prediction:
            lf0 = f0_to_lf0(f0.unsqueeze(1))
            norm_lf0 = normalize_f0(lf0, x_mask, uv)
            pred_lf0 = self.f0_decoder(x, norm_lf0, x_mask, spk_emb=g)
        else:
            lf0 = 0
            norm_lf0 = 0
            pred_lf0 = 0

        _, m_p, logs_p, _ = self.enc_p(x, x_mask, f0=f0_to_coarse(f0))
        z, m_q, logs_q, spec_mask = self.enc_q(spec, spec_lengths, g=g)
        z_p = self.flow(z, spec_mask, g=g)
        z_slice, pitch_slice, ids_slice = commons.rand_slice_segments_with_pitch(
            z, f0, spec_lengths, self.segment_size
        )
        o = self.dec(z_slice, g=g, f0=pitch_slice)
        return o, ids_slice, spec_mask, (z, z_p, m_p, logs_p, m_q, logs_q), pred_lf0, norm_lf0, lf0

    @torch.no_grad()
    def infer(
        self,
        c,
        f0,
        uv,
        g=None,
        noice_scale=0.35,
        seed=52468,
        predict_f0=False,
        vol=None,
        c_lengths=None,
    ):
        """Convert: returns ``(audio [B, 1, T·hop], f0 [B, T])`` (f0 is the predicted one if
        ``predict_f0``).

        c ``[B, ssl_dim, T]``; f0, uv ``[B, T]``; g speaker ids (``[[sid]]``, ``[sid]`` or
        ``[B, 1]``) or, after :meth:`EnableCharacterMix`, a per-frame weight matrix
        ``[T, n_spk]``. Seeds the RNG with ``seed`` (``torch.manual_seed`` seeds CUDA too) and
        then draws exactly what the reference draws, in the same order: prior noise, then the
        decoder's source noise. Call ``eval()`` first (dropout would draw too).
        ``c_lengths`` (optional, ``[B]``) masks padded batch items; default full length.
        """
        torch.manual_seed(seed)
        if c_lengths is None:
            c_lengths = (torch.ones(c.size(0)) * c.size(-1)).to(c.device)
        g = self._speaker_embedding(g, c.size(0))
        x_mask = torch.unsqueeze(commons.sequence_mask(c_lengths, c.size(2)), 1).to(c.dtype)
        x = self._prior_input(c, uv, x_mask, vol)

        if self.use_automatic_f0_prediction and predict_f0:
            lf0 = f0_to_lf0(f0.unsqueeze(1))
            norm_lf0 = normalize_f0(lf0, x_mask, uv, random_scale=False)
            pred_lf0 = self.f0_decoder(x, norm_lf0, x_mask, spk_emb=g).to(f0)
            f0 = lf0_to_f0(pred_lf0).squeeze(1)

        z_p, _, _, c_mask = self.enc_p(x, x_mask, f0=f0_to_coarse(f0), noice_scale=noice_scale)
        z = self.flow(z_p, c_mask, g=g, reverse=True)
        o = self.dec(z * c_mask, g=g, f0=f0)
        return o, f0

    # ----------------------------------------------------------------------------------------
    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights for faster inference (enc_q, flow and dec).

        Outputs stay equal up to float rounding. The state dict then holds ``weight`` instead
        of ``weight_g``/``weight_v`` for those layers, so do this after loading a checkpoint.
        """
        if self._weight_norm_removed:
            return
        self.enc_q.enc.remove_weight_norm()
        self.flow.remove_weight_norm()
        dec_remove = getattr(self.dec, "remove_weight_norm", None)
        if callable(dec_remove):
            dec_remove()
        self._weight_norm_removed = True


# --------------------------------------------------------------------------------------------
# discriminator
# --------------------------------------------------------------------------------------------
def _norm_f(use_spectral_norm: bool):
    return spectral_norm if use_spectral_norm else weight_norm


class DiscriminatorP(nn.Module):
    """Period discriminator: reflect-pad to a multiple of ``period``, fold to 2-D, Conv2d stack."""

    def __init__(
        self, period: int, kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False
    ):
        super().__init__()
        self.period = period
        self.use_spectral_norm = use_spectral_norm
        norm_f = _norm_f(use_spectral_norm)
        pad = (get_padding(kernel_size, 1), 0)
        chans = [1, 32, 128, 512, 1024]
        convs = [
            norm_f(Conv2d(cin, cout, (kernel_size, 1), (stride, 1), padding=pad))
            for cin, cout in zip(chans[:-1], chans[1:])
        ]
        convs.append(norm_f(Conv2d(1024, 1024, (kernel_size, 1), 1, padding=pad)))
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm_f(Conv2d(1024, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x):
        fmap = []
        b, c, t = x.shape
        if t % self.period != 0:
            n_pad = self.period - (t % self.period)
            x = F.pad(x, (0, n_pad), "reflect")
            t = t + n_pad
        x = x.view(b, c, t // self.period, self.period)
        for layer in self.convs:
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class DiscriminatorS(nn.Module):
    """Scale discriminator on the raw waveform (grouped strided Conv1d stack)."""

    def __init__(self, use_spectral_norm: bool = False):
        super().__init__()
        norm_f = _norm_f(use_spectral_norm)
        self.convs = nn.ModuleList(
            [
                norm_f(Conv1d(1, 16, 15, 1, padding=7)),
                norm_f(Conv1d(16, 64, 41, 4, groups=4, padding=20)),
                norm_f(Conv1d(64, 256, 41, 4, groups=16, padding=20)),
                norm_f(Conv1d(256, 1024, 41, 4, groups=64, padding=20)),
                norm_f(Conv1d(1024, 1024, 41, 4, groups=256, padding=20)),
                norm_f(Conv1d(1024, 1024, 5, 1, padding=2)),
            ]
        )
        self.conv_post = norm_f(Conv1d(1024, 1, 3, 1, padding=1))

    def forward(self, x):
        fmap = []
        for layer in self.convs:
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiPeriodDiscriminator(nn.Module):
    """``discriminators`` = [DiscriminatorS, DiscriminatorP(2, 3, 5, 7, 11)].

    ``forward(y, y_hat)`` → ``(y_d_rs, y_d_gs, fmap_rs, fmap_gs)``, one entry per discriminator.
    """

    def __init__(self, use_spectral_norm: bool = False):
        super().__init__()
        periods = [2, 3, 5, 7, 11]
        discs: list[nn.Module] = [DiscriminatorS(use_spectral_norm=use_spectral_norm)]
        discs += [DiscriminatorP(p, use_spectral_norm=use_spectral_norm) for p in periods]
        self.discriminators = nn.ModuleList(discs)

    def forward(self, y, y_hat, batched: bool = False):
        """y, y_hat ``[B, 1, L]``. ``batched``: run both through each discriminator as one batch
        of 2B (one weight-norm evaluation and larger convolutions per discriminator; equal up
        to float rounding), else one after the other (the reference)."""
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        b = y.size(0)
        for d in self.discriminators:
            if batched and y_hat.size(0) == b:
                y_d, fmap = d(torch.cat([y, y_hat], dim=0))
                y_d_r, y_d_g = y_d[:b], y_d[b:]
                fmap_r, fmap_g = [f[:b] for f in fmap], [f[b:] for f in fmap]
            else:
                y_d_r, fmap_r = d(y)
                y_d_g, fmap_g = d(y_hat)
            y_d_rs.append(y_d_r)
            y_d_gs.append(y_d_g)
            fmap_rs.append(fmap_r)
            fmap_gs.append(fmap_g)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs
