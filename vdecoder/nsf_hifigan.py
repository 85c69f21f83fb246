"""The one NSF-HiFiGAN generator behind all three vocoders of so-vits-svc 4.1 (sovits-4.1.md §8).

The reference kept three copies (``vdecoder/hifigan``, ``vdecoder/hifiganwithsnake`` and
``vdecoder/nsf_hifigan``). They share the generator body (``conv_pre``, ``ups``,
``noise_convs``, ``resblocks``, ``conv_post``), the harmonic-plus-noise sine source and the legacy
weight norm, and differ only in what are constructor options here:

============================  =====================  =====================  =====================
option                        ``nsf-hifigan`` (G)    ``nsf-snake-hifigan``  pretrained openvpi
============================  =====================  =====================  =====================
``in_channels``               inter_channels (192)   inter_channels         num_mels (128)
``gin_channels`` (``cond``)   gin_channels           gin_channels           0 (no ``cond``)
``activation``                ``"leaky_relu"``       ``"snake"``            ``"leaky_relu"``
``padding``                   ``"sovits"``           ``"sovits"``           ``"openvpi"``
``sine``                      ``"sample"``           ``"sample"``           ``"frame"``
``sine_double``               False                  False                  True
``noise_branch``              True                   True                   False
============================  =====================  =====================  =====================

- ``padding``: ``ups`` padding ``(k−u+1)//2`` vs ``(k−u)//2`` and ``noise_convs`` padding
  ``(s+1)//2`` vs ``s//2``; both give the same values for the 44.1 kHz configs (4,4,1,1,1 and
  32,4,2,1) and are kept apart only so that other configs build exactly as in the reference.
- ``sine="sample"``: f0 is nearest-upsampled to the sample rate first and the phase is
  accumulated per sample (G during training and ``infer``). ``sine="frame"``: the phase is
  accumulated per frame and linearly interpolated (openvpi; G's ONNX path). ``onnx_mode = True``
  switches a sample-level decoder to the frame-level path (float32, as the reference's
  ``OnnxExport()``).
- ``noise_branch``: the G source module draws (and discards) ``randn_like(uv)`` like the reference
  did, so that one seed gives the same audio as 4.1.

Random-number use in ``forward`` (sovits-4.1.md §9): ``rand(B, 9)`` (initial phases, the
fundamental's zeroed), ``randn_like(sine)`` ``[B, L, 9]``, then ``randn_like(uv)`` ``[B, L, 1]``
when ``noise_branch``.

Call convention for G: ``dec(x, f0, g)`` — or by keyword ``dec(x, g=g, f0=f0)`` — with
``x [B, I, T]``, ``f0 [B, T]`` (Hz, frame rate), ``g [B, G, 1]``; returns ``[B, 1, T·512]``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vdecoder.snake import SnakeAlias
from vdecoder.weight_norm import (
    fold_weight_norm,
    get_padding,
    has_weight_norm,
    init_weights,
    weight_norm,
)

logger = logging.getLogger(__name__)

LRELU_SLOPE = 0.1

__all__ = [
    "LRELU_SLOPE",
    "SineGen",
    "SourceModuleHnNSF",
    "ResBlock1",
    "ResBlock2",
    "NsfHifiGanGenerator",
    "build_decoder",
    "DECODERS",
]


# --------------------------------------------------------------------------------------------
# Harmonic-plus-noise source
# --------------------------------------------------------------------------------------------


class SineGen(nn.Module):
    """Harmonic sine source: ``harmonic_num+1`` sines at ``k·f0`` plus Gaussian noise.

    ``forward(f0, upp, frame_level)`` returns ``(sine_waves [B, L, dim], uv [B, L, 1])`` with
    ``L = T·upp``:

    - sample level (``frame_level=False``): ``f0`` is ``[B, L, 1]``, already at the sample rate;
    - frame level (``frame_level=True``): ``f0`` is ``[B, T]``; the phase is summed per frame,
      scaled by ``upp``, linearly interpolated (``align_corners=True``), and the per-sample
      increments come from nearest upsampling. With ``double`` the cumulative sums run in float64.

    Unvoiced samples (f0 ≤ ``voiced_threshold``) carry only noise of std ``sine_amp/3``; voiced
    ones ``sine + N(0, noise_std²)``. Computed without gradient.

    As in 4.1, the frame-level path adds the random start phase to frame 0 *before* holding it
    over the frame, so harmonic k starts at ``upp·φ_k`` (mod 1); the fundamental starts at 0.
    """

    def __init__(
        self,
        sampling_rate: int,
        harmonic_num: int = 8,
        sine_amp: float = 0.1,
        noise_std: float = 0.003,
        voiced_threshold: float = 0,
        double: bool = False,
    ):
        super().__init__()
        self.sine_amp = sine_amp
        self.noise_std = noise_std
        self.harmonic_num = harmonic_num
        self.dim = harmonic_num + 1
        self.sampling_rate = sampling_rate
        self.voiced_threshold = voiced_threshold
        self.double = double

    def start_phase(self, batch: int, device: torch.device) -> torch.Tensor:
        """Random start phases ``[B, dim]`` in cycles, U[0, 1) (the fundamental's is zeroed after).

        This and :meth:`noise_like` are the source's only random draws; a subclass may supply
        them instead (the ONNX export feeds them as graph inputs).
        """
        return torch.rand(batch, self.dim, device=device)

    def noise_like(self, sine_waves: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like ``sine_waves`` ``[B, L, dim]``."""
        return torch.randn_like(sine_waves)

    def _increments(self, f0: torch.Tensor) -> torch.Tensor:
        """Phase increment per step in cycles, ``(k·f0/sr) mod 1``, ``[B, N, dim]``.

        Draws ``rand(B, dim)`` and adds it to step 0 as the start phase of each harmonic; the
        fundamental (k = 1) starts at phase 0.
        """
        k = torch.arange(1, self.dim + 1, dtype=f0.dtype, device=f0.device).view(1, 1, -1)
        inc = (f0 * k / self.sampling_rate) % 1
        start = self.start_phase(inc.shape[0], inc.device)
        start[:, 0] = 0
        inc[:, 0, :] = inc[:, 0, :] + start
        return inc

    @staticmethod
    def _cycle_steps(wrapped: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """−1 at each step where the wrapped phase ``wrapped`` (in [0, 1)) falls back, i.e. a
        cycle completes; adding these to the increments keeps their running sum within a cycle
        (float32 precision over long inputs) without changing the sine."""
        falls = (wrapped[:, 1:, :] - wrapped[:, :-1, :]) < 0
        steps = torch.zeros_like(like)
        steps[:, 1:, :] = falls * -1.0
        return steps

    @staticmethod
    def _running_sum(x: torch.Tensor) -> torch.Tensor:
        """``cumsum`` over time accumulated in float64 (what torch does on the CPU for float32
        anyway), stated explicitly so that an exported graph sums the same way."""
        return torch.cumsum(x, 1, dtype=torch.float64).to(x.dtype)

    def _sample_level(self, f0: torch.Tensor) -> torch.Tensor:
        """Sines ``[B, L, dim]`` from sample-rate ``f0 [B, L, 1]``."""
        inc = self._increments(f0)
        steps = self._cycle_steps(self._running_sum(inc) % 1, inc)
        return torch.sin(self._running_sum(inc + steps) * 2 * np.pi)

    def _frame_level(self, f0: torch.Tensor, upp: int) -> torch.Tensor:
        """Sines ``[B, T·upp, dim]`` from frame-rate ``f0 [B, T, 1]``.

        The cycle steps come from the frame-rate running phase (×upp, linearly interpolated to
        the sample rate); the increments themselves are held over each frame.
        """
        inc = self._increments(f0)
        if self.double:
            running = torch.cumsum(inc.double(), 1).to(inc.dtype)
        else:
            running = torch.cumsum(inc, 1)
        running = F.interpolate(
            (running * upp).transpose(2, 1), scale_factor=upp, mode="linear", align_corners=True
        ).transpose(2, 1)
        inc = F.interpolate(inc.transpose(2, 1), scale_factor=upp, mode="nearest").transpose(2, 1)
        steps = self._cycle_steps(running % 1, inc)
        if self.double:
            phase = torch.cumsum(inc.double() + steps.double(), dim=1)
            return torch.sin(phase * 2 * np.pi).to(inc.dtype)
        return torch.sin(torch.cumsum(inc + steps, dim=1) * 2 * np.pi)

    @torch.no_grad()
    def forward(
        self, f0: torch.Tensor, upp: int, frame_level: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if f0.dtype in (torch.float16, torch.bfloat16):
            f0 = f0.float()  # phases are summed over thousands of samples: never in 16 bit
        if frame_level:
            f0 = f0.unsqueeze(-1)  # [B, T, 1]
            sine_waves = self._frame_level(f0, upp) * self.sine_amp
            uv = (f0 > self.voiced_threshold).to(sine_waves.dtype)
            uv = F.interpolate(uv.transpose(2, 1), scale_factor=upp, mode="nearest").transpose(2, 1)
        else:
            sine_waves = self._sample_level(f0) * self.sine_amp
            uv = (f0 > self.voiced_threshold).to(sine_waves.dtype)
        noise_amp = uv * self.noise_std + (1 - uv) * self.sine_amp / 3
        noise = noise_amp * self.noise_like(sine_waves)
        return sine_waves * uv + noise, uv


class SourceModuleHnNSF(nn.Module):
    """Harmonic source merged to one excitation: ``tanh(Linear(dim→1)(SineGen(f0)))`` ``[B, L, 1]``.

    Keys: ``l_linear.weight [1, dim]``, ``l_linear.bias [1]``. With ``noise_branch`` it also draws
    the reference's unused noise-branch tensor ``randn_like(uv)``.
    """

    def __init__(
        self,
        sampling_rate: int,
        harmonic_num: int = 8,
        sine_amp: float = 0.1,
        add_noise_std: float = 0.003,
        voiced_threshold: float = 0,
        double: bool = False,
        noise_branch: bool = True,
    ):
        super().__init__()
        self.sine_amp = sine_amp
        self.noise_std = add_noise_std
        self.noise_branch = noise_branch
        self.l_sin_gen = SineGen(
            sampling_rate, harmonic_num, sine_amp, add_noise_std, voiced_threshold, double
        )
        self.l_linear = nn.Linear(harmonic_num + 1, 1)
        self.l_tanh = nn.Tanh()

    def forward(self, f0: torch.Tensor, upp: int, frame_level: bool = False) -> torch.Tensor:
        sine_wavs, uv = self.l_sin_gen(f0, upp, frame_level)
        sine_merge = self.l_tanh(self.l_linear(sine_wavs.to(self.l_linear.weight.dtype)))
        if self.noise_branch:
            # The reference returns this as its (unused) noise source; drawing it keeps the
            # random stream, and so the audio of a seeded ``infer``, identical to 4.1.
            torch.randn_like(uv)
        return sine_merge


# --------------------------------------------------------------------------------------------
# Residual blocks
# --------------------------------------------------------------------------------------------


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1: 3 × (act, dilated conv, act, conv) with residuals.

    Keys: ``convs1.{0,1,2}``, ``convs2.{0,1,2}`` (weight norm), then with ``snake``
    ``activations.{0..5}`` (SnakeAlias; even ones before ``convs1``, odd ones before ``convs2``).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        dilation: Sequence[int] = (1, 3, 5),
        snake: bool = False,
    ):
        super().__init__()
        self.convs1 = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d,
                                  padding=get_padding(kernel_size, d)))
            for d in dilation
        ])  # fmt: skip
        self.convs1.apply(init_weights)
        self.convs2 = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=1,
                                  padding=get_padding(kernel_size, 1)))
            for _ in dilation
        ])  # fmt: skip
        self.convs2.apply(init_weights)
        self.snake = snake
        if snake:
            n = len(self.convs1) + len(self.convs2)
            self.activations = nn.ModuleList([SnakeAlias(channels) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for j, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            if self.snake:
                xt = c1(self.activations[2 * j](x))
                xt = c2(self.activations[2 * j + 1](xt))
            else:
                xt = c1(F.leaky_relu(x, LRELU_SLOPE))
                xt = c2(F.leaky_relu(xt, LRELU_SLOPE))
            x = xt + x
        return x


class ResBlock2(nn.Module):
    """HiFi-GAN ResBlock2: 2 × (act, dilated conv) with residuals (``resblock: "2"``)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        dilation: Sequence[int] = (1, 3),
        snake: bool = False,
    ):
        super().__init__()
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d,
                                  padding=get_padding(kernel_size, d)))
            for d in dilation
        ])  # fmt: skip
        self.convs.apply(init_weights)
        self.snake = snake
        if snake:
            self.activations = nn.ModuleList([SnakeAlias(channels) for _ in self.convs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for j, c in enumerate(self.convs):
            xt = self.activations[j](x) if self.snake else F.leaky_relu(x, LRELU_SLOPE)
            x = c(xt) + x
        return x


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


def _get(h: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a dict, an ``HParams`` or an attribute-style config."""
    if isinstance(h, Mapping):
        return h.get(key, default)
    getter = getattr(h, "get", None)
    if callable(getter):
        return getter(key, default)
    value = getattr(h, key, default)
    return default if value is None else value


class NsfHifiGanGenerator(nn.Module):
    """NSF-HiFiGAN generator; see the module docstring for the options.

    ``forward(x [B, in_channels, T], f0 [B, T], g [B, gin, 1] | None) -> [B, 1, T·upp]``.

    State-dict order (as in the reference): ``m_source``, ``noise_convs``, ``conv_pre``, ``ups``,
    ``resblocks``, (``snakes``), ``conv_post``, (``snake_post``), (``cond``).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        sampling_rate: int,
        upsample_rates: Sequence[int],
        upsample_kernel_sizes: Sequence[int],
        upsample_initial_channel: int,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        resblock: str = "1",
        gin_channels: int = 0,
        activation: str = "leaky_relu",
        padding: str = "sovits",
        sine: str = "sample",
        sine_double: bool = False,
        noise_branch: bool = True,
        harmonic_num: int = 8,
    ):
        super().__init__()
        if activation not in ("leaky_relu", "snake"):
            raise ValueError(f"activation must be 'leaky_relu' or 'snake', not {activation!r}")
        if padding not in ("sovits", "openvpi"):
            raise ValueError(f"padding must be 'sovits' or 'openvpi', not {padding!r}")
        if sine not in ("sample", "frame"):
            raise ValueError(f"sine must be 'sample' or 'frame', not {sine!r}")
        if len(upsample_rates) != len(upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        snake = activation == "snake"
        self.snake = snake
        self.sampling_rate = int(sampling_rate)
        self.in_channels = int(in_channels)
        self.gin_channels = int(gin_channels or 0)
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)
        self.upp = int(np.prod(upsample_rates))
        self.frame_level_sine = sine == "frame"
        #: True: take the frame-level (ONNX-exportable) sine path even for a sample-level decoder.
        self.onnx_mode = False

        c0 = int(upsample_initial_channel)
        self.m_source = SourceModuleHnNSF(
            sampling_rate=self.sampling_rate,
            harmonic_num=harmonic_num,
            double=sine_double,
            noise_branch=noise_branch,
        )
        self.noise_convs = nn.ModuleList()
        self.conv_pre = weight_norm(nn.Conv1d(self.in_channels, c0, 7, 1, padding=3))
        block = ResBlock1 if str(resblock) == "1" else ResBlock2

        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            u, k = int(u), int(k)
            c_cur = c0 // (2 ** (i + 1))
            pad = (k - u + 1) // 2 if padding == "sovits" else (k - u) // 2
            self.ups.append(weight_norm(nn.ConvTranspose1d(c0 // (2**i), c_cur, k, u, padding=pad)))
            if i + 1 < len(upsample_rates):
                s = int(np.prod(upsample_rates[i + 1 :]))
                pad_s = (s + 1) // 2 if padding == "sovits" else s // 2
                self.noise_convs.append(nn.Conv1d(1, c_cur, kernel_size=s * 2, stride=s,
                                                  padding=pad_s))  # fmt: skip
            else:
                self.noise_convs.append(nn.Conv1d(1, c_cur, kernel_size=1))

        self.resblocks = nn.ModuleList()
        self.snakes = nn.ModuleList() if snake else None
        ch = c0
        for i in range(len(self.ups)):
            ch = c0 // (2 ** (i + 1))
            if snake:
                self.snakes.append(SnakeAlias(c0 // (2**i)))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, int(k), tuple(int(v) for v in d), snake=snake))

        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3))
        self.ups.apply(init_weights)
        self.conv_post.apply(init_weights)
        self.snake_post = SnakeAlias(ch) if snake else None
        self.cond = nn.Conv1d(self.gin_channels, c0, 1) if self.gin_channels > 0 else None

    # ---- construction from the reference configs ---------------------------------------

    @classmethod
    def from_sovits(cls, h: Any, snake: bool = False) -> NsfHifiGanGenerator:
        """The decoder inside G, built from SynthesizerTrn's dict ``h`` (§8.1 / §8.2).

        Keys used: ``sampling_rate, inter_channels, resblock, resblock_kernel_sizes,
        resblock_dilation_sizes, upsample_rates, upsample_initial_channel,
        upsample_kernel_sizes, gin_channels``. ``use_depthwise_conv`` is ignored, as in 4.1.
        """
        return cls(
            in_channels=_get(h, "inter_channels"),
            sampling_rate=_get(h, "sampling_rate"),
            upsample_rates=_get(h, "upsample_rates"),
            upsample_kernel_sizes=_get(h, "upsample_kernel_sizes"),
            upsample_initial_channel=_get(h, "upsample_initial_channel"),
            resblock_kernel_sizes=_get(h, "resblock_kernel_sizes"),
            resblock_dilation_sizes=_get(h, "resblock_dilation_sizes"),
            resblock=str(_get(h, "resblock", "1")),
            gin_channels=_get(h, "gin_channels", 0),
            activation="snake" if snake else "leaky_relu",
            padding="sovits",
            sine="sample",
            sine_double=False,
            noise_branch=True,
        )

    @classmethod
    def from_openvpi(cls, h: Any) -> NsfHifiGanGenerator:
        """The standalone pretrained openvpi NSF-HiFiGAN from its ``config.json`` (§8.3)."""
        return cls(
            in_channels=_get(h, "num_mels"),
            sampling_rate=_get(h, "sampling_rate"),
            upsample_rates=_get(h, "upsample_rates"),
            upsample_kernel_sizes=_get(h, "upsample_kernel_sizes"),
            upsample_initial_channel=_get(h, "upsample_initial_channel"),
            resblock_kernel_sizes=_get(h, "resblock_kernel_sizes"),
            resblock_dilation_sizes=_get(h, "resblock_dilation_sizes"),
            resblock=str(_get(h, "resblock", "1")),
            gin_channels=0,
            activation="leaky_relu",
            padding="openvpi",
            sine="frame",
            sine_double=True,
            noise_branch=False,
        )

    # ---- inference helpers --------------------------------------------------------------

    def fold_weight_norm(self) -> NsfHifiGanGenerator:
        """Replace weight norm by plain weights in place (inference speed-up). Returns self."""
        fold_weight_norm(self)
        return self

    remove_weight_norm = fold_weight_norm

    @property
    def has_weight_norm(self) -> bool:
        return has_weight_norm(self)

    def OnnxExport(self) -> None:  # noqa: N802 - reference name
        """Reference spelling of ``onnx_mode = True``."""
        self.onnx_mode = True

    # ---- forward ------------------------------------------------------------------------

    def source(self, f0: torch.Tensor) -> torch.Tensor:
        """Harmonic excitation ``[B, 1, T·upp]`` for frame-rate ``f0`` ``[B, T]``."""
        frame_level = self.frame_level_sine or self.onnx_mode
        if not frame_level:
            f0 = F.interpolate(f0[:, None], scale_factor=float(self.upp), mode="nearest")
            f0 = f0.transpose(1, 2)  # [B, L, 1]
        return self.m_source(f0, self.upp, frame_level).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, f0: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        if f0.dim() == 3 and f0.size(-1) == 1:
            f0 = f0.squeeze(-1)
        if f0.dim() != 2 or x.dim() != 3:
            raise ValueError(
                f"expected x [B, C, T] and f0 [B, T], got {tuple(x.shape)} and {tuple(f0.shape)}"
            )
        if not torch.jit.is_tracing() and f0.size(-1) != x.size(-1):
            raise ValueError(f"f0 has {f0.size(-1)} frames but x has {x.size(-1)}")
        har_source = self.source(f0)
        x = self.conv_pre(x)
        if self.cond is not None:
            if g is None:
                raise ValueError("this decoder is speaker-conditioned: pass g [B, gin_channels, 1]")
            x = x + self.cond(g)
        for i in range(self.num_upsamples):
            x = self.snakes[i](x) if self.snake else F.leaky_relu(x, LRELU_SLOPE)
            x = self.ups[i](x)
            x = x + self.noise_convs[i](har_source)
            xs = None
            for j in range(self.num_kernels):
                y = self.resblocks[i * self.num_kernels + j](x)
                xs = y if xs is None else xs + y
            x = xs / self.num_kernels
        # The final activation uses leaky_relu's default slope (0.01), as in the reference.
        x = self.snake_post(x) if self.snake else F.leaky_relu(x)
        x = self.conv_post(x)
        return torch.tanh(x)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

DECODERS = ("nsf-hifigan", "nsf-snake-hifigan")


def build_decoder(vocoder_name: str | None, h: Any) -> NsfHifiGanGenerator:
    """The decoder ``dec`` of G for ``model.vocoder_name`` (``"nsf-hifigan"`` or
    ``"nsf-snake-hifigan"``) from SynthesizerTrn's dict ``h`` (see :meth:`from_sovits`).

    An unknown or missing name falls back to ``"nsf-hifigan"`` with a warning, as in 4.1.
    Call the result as ``dec(x, f0, g)`` (keywords ``x``, ``f0``, ``g`` accepted).
    """
    name = vocoder_name or "nsf-hifigan"
    if name not in DECODERS:
        logger.warning("Unknown vocoder %r: using the default (nsf-hifigan)", vocoder_name)
        name = "nsf-hifigan"
    return NsfHifiGanGenerator.from_sovits(h, snake=name == "nsf-snake-hifigan")
