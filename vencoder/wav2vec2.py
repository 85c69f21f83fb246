"""One HuBERT / wav2vec 2.0 style model for every SSL speech encoder of so-vits-svc 4.1.

The same module covers, through :class:`Wav2Vec2Config`:

- ContentVec / HuBERT base (fairseq): GroupNorm after the first conv only, post-LN layers with
  ``encoder.layer_norm`` applied before the first layer;
- Chinese HuBERT large (fairseq): LayerNorm after every conv, pre-LN layers, ``encoder.layer_norm``
  after the last layer;
- WavLM: gated relative position bias (buckets from layer 0, reused by every layer);
- DPHuBERT: pruned per-layer sizes (heads and FFN width per layer, a layer may lack either), pruned
  conv channels and the ``dummy_weight`` soft mask on the conv features;
- bshall hubert-soft: the same post-LN model (its ``nn.TransformerEncoderLayer`` weights are mapped
  onto these names).

Parameter names here are our own (fairseq-like); :mod:`vencoder.formats` maps each file's names
onto them. Dropout and masking are training-only and left out; the forward pass is inference only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5  # every LayerNorm / GroupNorm in these models uses the torch default


@dataclass
class LayerSpec:
    """Sizes of one transformer layer. ``num_heads == 0`` / ``ffn_dim == 0``: that block is absent."""

    num_heads: int
    head_dim: int
    ffn_dim: int


@dataclass
class RelPosConfig:
    """WavLM relative position bias: bucket table in layer 0, per-head gate in every layer."""

    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True


@dataclass
class Wav2Vec2Config:
    conv_layers: list[tuple[int, int, int]]  # (out_channels, kernel, stride) per conv
    embed_dim: int
    layers: list[LayerSpec]
    extractor_mode: str = "group_norm"  # "group_norm": after conv 0 only; "layer_norm": every conv
    conv_bias: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16
    layer_norm_first: bool = False
    feature_mask: bool = False  # DPHuBERT feature_extractor.dummy_weight
    rel_pos: RelPosConfig | None = None
    final_proj_dim: int | None = None
    normalize_waveform: bool = False  # layer-norm the whole waveform first (WavLM cfg.normalize)

    def receptive_field(self) -> int:
        """Samples needed for one output frame (400 for the usual 7-conv stack)."""
        r = 1
        for _, k, s in reversed(self.conv_layers):
            r = (r - 1) * s + k
        return r

    def num_frames(self, num_samples: int) -> int:
        """Frames the conv stack gives for ``num_samples`` (``(L-400)//320 + 1`` usually)."""
        n = num_samples
        for _, k, s in self.conv_layers:
            n = (n - k) // s + 1
        return max(n, 0)


def _conv_time_major(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for ``x [B, C, L]`` as an NHWC ``conv2d``; returns ``[B, C', L']`` time-major."""
    if x.size(1) > 1 and x.stride(1) != 1:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    w = conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    return F.conv2d(x.unsqueeze(2), w, conv.bias, (1, conv.stride[0])).squeeze(2)


class ConvBlock(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: str | None
    ):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        self.norm_kind = norm
        if norm == "group_norm":
            self.norm = nn.GroupNorm(c_out, c_out, eps=EPS, affine=True)
        elif norm == "layer_norm":
            self.norm = nn.LayerNorm(c_out, eps=EPS)
        else:
            self.norm = None
        #: run the convolution as a channels-last (NHWC) conv2d: oneDNN's blocked kernels (AMX in
        #: bf16) instead of its NCHW path, output time-major; same products, other summation order
        self.time_major = False

    def conv_out(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution alone: ``[B, C_in, L] -> [B, C_out, L']``."""
        return _conv_time_major(self.conv, x) if self.time_major else self.conv(x)

    def forward(self, x: torch.Tensor, stats: tuple | None = None) -> torch.Tensor:
        """``stats``: ``(mean [C], var [C])`` for the group norm instead of those of ``x`` over
        time (a window of a long file normalised with the whole file's statistics)."""
        x = self.conv_out(x)
        if self.norm_kind == "group_norm" and stats is not None:  # per channel: batch_norm's form
            mean, var = (s_.to(x.device, torch.float32) for s_ in stats)  # fp32, as autocast's
            x = F.batch_norm(
                x.float(), mean, var, self.norm.weight, self.norm.bias, False, 0.0, EPS
            )
        elif self.norm_kind == "group_norm":
            x = self.norm(x)
        elif self.norm_kind == "layer_norm":  # over channels
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x)


class FeatureExtractor(nn.Module):
    """Conv stack on the raw waveform: ``[B, L] -> [B, T, C_last]``."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        blocks = []
        c_in = 1
        for i, (c_out, k, s) in enumerate(cfg.conv_layers):
            if cfg.extractor_mode == "layer_norm":
                norm = "layer_norm"
            elif cfg.extractor_mode == "group_norm":
                norm = "group_norm" if i == 0 else None
            else:
                raise ValueError(f"unknown extractor_mode {cfg.extractor_mode!r}")
            blocks.append(ConvBlock(c_in, c_out, k, s, cfg.conv_bias, norm))
            c_in = c_out
        self.conv_layers = nn.ModuleList(blocks)
        if cfg.feature_mask:
            self.dummy_weight = nn.Parameter(torch.ones(c_in), requires_grad=False)
        else:
            self.dummy_weight = None

    def forward(self, wav: torch.Tensor, conv0_stats: tuple | None = None) -> torch.Tensor:
        x = self.conv_layers[0](wav.unsqueeze(1), conv0_stats)
        for block in self.conv_layers[1:]:
            x = block(x)
        x = x.transpose(1, 2)
        if self.dummy_weight is not None:
            x = x * self.dummy_weight
        return x


def relative_position_buckets(
    q_len: int, k_len: int, num_buckets: int, max_distance: int, device=None
) -> torch.Tensor:
    """WavLM/T5 bidirectional buckets of ``key_pos - query_pos``, shape ``[q_len, k_len]``."""
    rel = (
        torch.arange(k_len, dtype=torch.long, device=device)[None, :]
        - torch.arange(q_len, dtype=torch.long, device=device)[:, None]
    )
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    max_exact = half // 2
    is_small = rel < max_exact
    large = (
        max_exact
        + (
            torch.log(rel.float() / max_exact)
            / math.log(max_distance / max_exact)
            * (half - max_exact)
        ).long()
    )
    large = torch.clamp(large, max=half - 1)
    return buckets + torch.where(is_small, rel, large)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (fairseq layout).

    ``num_heads * head_dim`` may be smaller than the model width (DPHuBERT pruning). With
    ``rel_pos`` it adds WavLM's gated relative position bias; ``has_rel_table`` marks the layer
    that owns the bucket embedding (layer 0).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        head_dim: int,
        rel_pos: RelPosConfig | None = None,
        has_rel_table: bool = False,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.rel_pos = rel_pos
        if rel_pos is not None and has_rel_table:
            self.relative_attention_bias = nn.Embedding(rel_pos.num_buckets, num_heads)
        else:
            self.relative_attention_bias = None
        self.q_proj = nn.Linear(embed_dim, inner)
        self.k_proj = nn.Linear(embed_dim, inner)
        self.v_proj = nn.Linear(embed_dim, inner)
        self.out_proj = nn.Linear(inner, embed_dim)
        if rel_pos is not None and rel_pos.gru_rel_pos:
            if embed_dim % num_heads:
                raise ValueError("WavLM gate needs embed_dim divisible by num_heads")
            self.grep_linear = nn.Linear(embed_dim // num_heads, 8)
            self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        else:
            self.grep_linear = None
            self.grep_a = None

    def compute_bias(self, length: int) -> torch.Tensor:
        """Ungated relative position bias ``[H, T, T]`` from the bucket table."""
        buckets = relative_position_buckets(
            length, length, self.rel_pos.num_buckets, self.rel_pos.max_distance,
            device=self.relative_attention_bias.weight.device,
        )  # fmt: skip
        return self.relative_attention_bias(buckets).permute(2, 0, 1)

    def forward(
        self, x: torch.Tensor, position_bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, t, _ = x.shape
        h, d = self.num_heads, self.head_dim
        q = self.q_proj(x).view(b, t, h, d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h, d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, d).transpose(1, 2)
        attn_bias = None
        if self.rel_pos is not None:
            if position_bias is None and self.relative_attention_bias is not None:
                position_bias = self.compute_bias(t)
            if position_bias is not None:
                attn_bias = position_bias.unsqueeze(0)  # [1, H, T, T]
                if self.grep_linear is not None:
                    # Gate from the attention's input (not the q projection), per head and frame.
                    xh = x.view(b, t, h, -1).transpose(1, 2)  # [B, H, T, E/H]
                    g = self.grep_linear(xh).view(b, h, t, 2, 4).sum(-1)
                    gate_a, gate_b = torch.sigmoid(g).chunk(2, dim=-1)  # [B, H, T, 1] each
                    gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0
                    attn_bias = gate * attn_bias
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        out = out.transpose(1, 2).reshape(b, t, h * d)
        return self.out_proj(out), position_bias


class TransformerLayer(nn.Module):
    """fairseq ``TransformerSentenceEncoderLayer`` (GELU), with optional attention / FFN blocks.

    Post-LN: ``x = LN1(x + Attn(x)); x = LN2(x + FFN(x))``; the norms always run even when a block
    is pruned away (DPHuBERT). Pre-LN: ``x = x + Attn(LN1(x)); x = x + FFN(LN2(x))``.
    """

    def __init__(
        self,
        embed_dim: int,
        spec: LayerSpec,
        layer_norm_first: bool,
        rel_pos: RelPosConfig | None = None,
        has_rel_table: bool = False,
    ):
        super().__init__()
        self.layer_norm_first = layer_norm_first
        if spec.num_heads > 0:
            self.self_attn = SelfAttention(
                embed_dim, spec.num_heads, spec.head_dim, rel_pos, has_rel_table
            )
        else:
            self.self_attn = None
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim, eps=EPS)
        if spec.ffn_dim > 0:
            self.fc1 = nn.Linear(embed_dim, spec.ffn_dim)
            self.fc2 = nn.Linear(spec.ffn_dim, embed_dim)
        else:
            self.fc1 = self.fc2 = None
        self.final_layer_norm = nn.LayerNorm(embed_dim, eps=EPS)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))

    def forward(self, x, position_bias=None):
        if self.layer_norm_first:
            if self.self_attn is not None:
                a, position_bias = self.self_attn(self.self_attn_layer_norm(x), position_bias)
                x = x + a
            if self.fc1 is not None:
                x = x + self._ffn(self.final_layer_norm(x))
            return x, position_bias
        if self.self_attn is not None:
            a, position_bias = self.self_attn(x, position_bias)
            x = x + a
        x = self.self_attn_layer_norm(x)
        if self.fc1 is not None:
            x = x + self._ffn(x)
        return self.final_layer_norm(x), position_bias


class TransformerEncoder(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        e = cfg.embed_dim
        k = cfg.conv_pos
        self.layer_norm_first = cfg.layer_norm_first
        self.pos_conv = nn.Conv1d(e, e, kernel_size=k, padding=k // 2, groups=cfg.conv_pos_groups)
        self.pos_conv_trim = 1 if k % 2 == 0 else 0  # fairseq SamePad
        self.layers = nn.ModuleList(
            TransformerLayer(e, spec, cfg.layer_norm_first, cfg.rel_pos, has_rel_table=(i == 0))
            for i, spec in enumerate(cfg.layers)
        )
        self.layer_norm = nn.LayerNorm(e, eps=EPS)

    def forward(self, x: torch.Tensor, output_layer: int | None = None) -> torch.Tensor:
        """``output_layer=N`` (1-based) returns layer N's output; ``None`` runs all layers.

        As in fairseq, the pre-LN final ``layer_norm`` runs only when all layers run.
        """
        pos = self.pos_conv(x.transpose(1, 2))
        if self.pos_conv_trim:
            pos = pos[:, :, : -self.pos_conv_trim]
        x = x + F.gelu(pos).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        position_bias = None
        for layer in self.layers[:output_layer]:
            x, position_bias = layer(x, position_bias)
        if self.layer_norm_first and output_layer is None:
            x = self.layer_norm(x)
        return x


class Wav2Vec2Model(nn.Module):
    """Waveform ``[B, L]`` → hidden states ``[B, T, embed_dim]`` (``final_proj`` kept separate)."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = FeatureExtractor(cfg)
        c_last = cfg.conv_layers[-1][0]
        self.layer_norm = nn.LayerNorm(c_last, eps=EPS)
        self.post_extract_proj = nn.Linear(c_last, cfg.embed_dim)
        self.encoder = TransformerEncoder(cfg)
        self.final_proj = (
            nn.Linear(cfg.embed_dim, cfg.final_proj_dim) if cfg.final_proj_dim else None
        )

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layers)

    def forward(
        self, wav: torch.Tensor, output_layer: int | None = None, conv0_stats: tuple | None = None
    ) -> torch.Tensor:
        """``conv0_stats``: see :meth:`ConvBlock.forward` (used only in "group_norm" mode)."""
        if output_layer is not None and not 1 <= output_layer <= self.num_layers:
            raise ValueError(f"output_layer {output_layer} outside 1..{self.num_layers}")
        x = self.feature_extractor(wav, conv0_stats)
        x = self.post_extract_proj(self.layer_norm(x))
        return self.encoder(x, output_layer)
