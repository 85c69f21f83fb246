"""Transformer blocks of the generator (sovits-4.1.md §9).

- :class:`Encoder`: the content encoder of ``enc_p`` — post-LN self-attention with relative
  positions (window 4, one table shared by all heads) and a "same"-padded conv FFN.
- :class:`FFT`: the causal block of the f0 decoder and of the transformer flow — lower-triangular
  self-attention mask (``x_mask`` is not used there), causal conv FFN, no relative positions,
  ``proximal_init`` (``conv_k`` starts as a copy of ``conv_q``). With ``isflow=True`` it is
  speaker-conditioned: before every layer ``x = gate(cond_pre(x) + cond_layer(g)[layer slice])``.

All tensors are channel-first ``[B, C, T]``; masks ``[B, 1, T]``. Parameter names and
registration order follow the reference checkpoints.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from modules.commons import (
    LayerNorm,
    fused_add_tanh_sigmoid_multiply,
    remove_weight_norm,
    subsequent_mask,
    weight_norm,
)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with 1×1 conv projections.

    ``window_size`` enables relative-position logits and values (``emb_rel_k``/``emb_rel_v`` of
    shape ``[1 or n_heads, 2·window+1, C/heads]``). Masked scores are filled with −1e4.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        n_heads: int,
        p_dropout: float = 0.0,
        window_size: int | None = None,
        heads_share: bool = True,
        block_length: int | None = None,
        proximal_bias: bool = False,
        proximal_init: bool = False,
    ):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.channels = channels
        self.out_channels = out_channels
        self.n_heads = n_heads
        self.p_dropout = p_dropout
        self.window_size = window_size
        self.heads_share = heads_share
        self.block_length = block_length
        self.proximal_bias = proximal_bias
        self.proximal_init = proximal_init
        self.attn: torch.Tensor | None = None

        self.k_channels = channels // n_heads
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)

        if window_size is not None:
            n_heads_rel = 1 if heads_share else n_heads
            rel_stddev = self.k_channels**-0.5
            shape = (n_heads_rel, window_size * 2 + 1, self.k_channels)
            self.emb_rel_k = nn.Parameter(torch.randn(*shape) * rel_stddev)
            self.emb_rel_v = nn.Parameter(torch.randn(*shape) * rel_stddev)

        nn.init.xavier_uniform_(self.conv_q.weight)
        nn.init.xavier_uniform_(self.conv_k.weight)
        nn.init.xavier_uniform_(self.conv_v.weight)
        if proximal_init:
            with torch.no_grad():
                self.conv_k.weight.copy_(self.conv_q.weight)
                self.conv_k.bias.copy_(self.conv_q.bias)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        q = self.conv_q(x)
        k = self.conv_k(c)
        v = self.conv_v(c)
        x, self.attn = self.attention(q, k, v, mask=attn_mask)
        return self.conv_o(x)

    def attention(self, query, key, value, mask=None):
        # [b, d, t] -> [b, heads, t, d_k]
        b, d, t_s = key.size()
        t_t = query.size(2)
        query = query.view(b, self.n_heads, self.k_channels, t_t).transpose(2, 3)
        key = key.view(b, self.n_heads, self.k_channels, t_s).transpose(2, 3)
        value = value.view(b, self.n_heads, self.k_channels, t_s).transpose(2, 3)

        query = query / math.sqrt(self.k_channels)
        scores = torch.matmul(query, key.transpose(-2, -1))
        if self.window_size is not None:
            if t_s != t_t:
                raise ValueError("relative attention is only available for self-attention")
            rel_k = self._get_relative_embeddings(self.emb_rel_k, t_s)
            rel_logits = torch.matmul(query, rel_k.unsqueeze(0).transpose(-2, -1))
            scores = scores + self._relative_position_to_absolute_position(rel_logits)
        if self.proximal_bias:
            if t_s != t_t:
                raise ValueError("proximal bias is only available for self-attention")
            scores = scores + self._attention_bias_proximal(t_s).to(scores)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e4)
            if self.block_length is not None:
                block_mask = (
                    torch.ones_like(scores).triu(-self.block_length).tril(self.block_length)
                )
                scores = scores.masked_fill(block_mask == 0, -1e4)
        p_attn = F.softmax(scores, dim=-1)  # [b, h, t_t, t_s]
        p_attn = self.drop(p_attn)
        output = torch.matmul(p_attn, value)
        if self.window_size is not None:
            relative_weights = self._absolute_position_to_relative_position(p_attn)
            rel_v = self._get_relative_embeddings(self.emb_rel_v, t_s)
            output = output + torch.matmul(relative_weights, rel_v.unsqueeze(0))
        output = output.transpose(2, 3).contiguous().view(b, d, t_t)
        return output, p_attn

    def _get_relative_embeddings(self, relative_embeddings: torch.Tensor, length: int):
        """The ``2·length − 1`` relative positions ``−(length−1) … length−1`` (zero-padded)."""
        w = self.window_size
        pad_length = max(length - (w + 1), 0)
        start = max((w + 1) - length, 0)
        end = start + 2 * length - 1
        if pad_length > 0:
            relative_embeddings = F.pad(relative_embeddings, [0, 0, pad_length, pad_length])
        return relative_embeddings[:, start:end]

    @staticmethod
    def _relative_position_to_absolute_position(x: torch.Tensor) -> torch.Tensor:
        """``[b, h, l, 2l−1]`` (relative) → ``[b, h, l, l]`` (absolute), by the pad-reshape trick."""
        batch, heads, length, _ = x.size()
        x = F.pad(x, [0, 1])
        x_flat = x.view(batch, heads, length * 2 * length)
        x_flat = F.pad(x_flat, [0, length - 1])
        return x_flat.view(batch, heads, length + 1, 2 * length - 1)[:, :, :length, length - 1 :]

    @staticmethod
    def _absolute_position_to_relative_position(x: torch.Tensor) -> torch.Tensor:
        """``[b, h, l, l]`` (absolute) → ``[b, h, l, 2l−1]`` (relative)."""
        batch, heads, length, _ = x.size()
        x = F.pad(x, [0, length - 1])
        x_flat = x.view(batch, heads, length**2 + length * (length - 1))
        x_flat = F.pad(x_flat, [length, 0])
        return x_flat.view(batch, heads, length, 2 * length)[:, :, :, 1:]

    @staticmethod
    def _attention_bias_proximal(length: int) -> torch.Tensor:
        r = torch.arange(length, dtype=torch.float32)
        diff = r.unsqueeze(0) - r.unsqueeze(1)
        return (-torch.log1p(diff.abs())).unsqueeze(0).unsqueeze(0)


class FFN(nn.Module):
    """conv(k) → ReLU (or fast GELU) → dropout → conv(k), masked; 'same' or causal padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        filter_channels: int,
        kernel_size: int,
        p_dropout: float = 0.0,
        activation: str | None = None,
        causal: bool = False,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.filter_channels = filter_channels
        self.kernel_size = kernel_size
        self.p_dropout = p_dropout
        self.activation = activation
        self.causal = causal
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size)
        self.drop = nn.Dropout(p_dropout)

    def padding(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        if k == 1:
            return x
        if self.causal:
            return F.pad(x, [k - 1, 0])
        return F.pad(x, [(k - 1) // 2, k // 2])

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        x = self.conv_1(self.padding(x * x_mask))
        if self.activation == "gelu":
            x = x * torch.sigmoid(1.702 * x)
        else:
            x = torch.relu(x)
        x = self.drop(x)
        x = self.conv_2(self.padding(x * x_mask))
        return x * x_mask


class Encoder(nn.Module):
    """Post-LN transformer encoder with windowed relative attention (``enc_p.enc_``)."""

    def __init__(
        self,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int = 1,
        p_dropout: float = 0.0,
        window_size: int = 4,
        **kwargs,
    ):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.filter_channels = filter_channels
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.kernel_size = kernel_size
        self.p_dropout = p_dropout
        self.window_size = window_size

        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_2 = nn.ModuleList()
        for _ in range(n_layers):
            self.attn_layers.append(
                MultiHeadAttention(
                    hidden_channels,
                    hidden_channels,
                    n_heads,
                    p_dropout=p_dropout,
                    window_size=window_size,
                )
            )
            self.norm_layers_1.append(LayerNorm(hidden_channels))
            self.ffn_layers.append(
                FFN(hidden_channels, hidden_channels, filter_channels, kernel_size, p_dropout)
            )
            self.norm_layers_2.append(LayerNorm(hidden_channels))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        for i in range(self.n_layers):
            y = self.attn_layers[i](x, x, attn_mask)
            y = self.drop(y)
            x = self.norm_layers_1[i](x + y)
            y = self.ffn_layers[i](x, x_mask)
            y = self.drop(y)
            x = self.norm_layers_2[i](x + y)
        return x * x_mask


class FFT(nn.Module):
    """Causal feed-forward transformer (f0 decoder; transformer-flow coupling net if ``isflow``).

    ``isflow=True`` needs ``gin_channels`` and adds ``cond_pre`` (Conv1d H→2H) and the
    weight-normed ``cond_layer`` (Conv1d G→2H·n_layers); ``forward(x, x_mask, g)`` then gates
    ``x`` with the speaker condition before each layer.
    """

    def __init__(
        self,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int = 1,
        kernel_size: int = 1,
        p_dropout: float = 0.0,
        proximal_bias: bool = False,
        proximal_init: bool = True,
        isflow: bool = False,
        **kwargs,
    ):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.filter_channels = filter_channels
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.kernel_size = kernel_size
        self.p_dropout = p_dropout
        self.proximal_bias = proximal_bias
        self.proximal_init = proximal_init
        self.isflow = isflow
        if isflow:
            gin_channels = kwargs["gin_channels"]
            cond_layer = nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1)
            self.cond_pre = nn.Conv1d(hidden_channels, 2 * hidden_channels, 1)
            self.cond_layer = weight_norm(cond_layer)
            self.gin_channels = gin_channels
        self.drop = nn.Dropout(p_dropout)
        self.self_attn_layers = nn.ModuleList()
        self.norm_layers_0 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        for _ in range(n_layers):
            self.self_attn_layers.append(
                MultiHeadAttention(
                    hidden_channels,
                    hidden_channels,
                    n_heads,
                    p_dropout=p_dropout,
                    proximal_bias=proximal_bias,
                    proximal_init=proximal_init,
                )
            )
            self.norm_layers_0.append(LayerNorm(hidden_channels))
            self.ffn_layers.append(
                FFN(
                    hidden_channels,
                    hidden_channels,
                    filter_channels,
                    kernel_size,
                    p_dropout=p_dropout,
                    causal=True,
                )
            )
            self.norm_layers_1.append(LayerNorm(hidden_channels))

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        if g is not None:
            g = self.cond_layer(g)
        self_attn_mask = subsequent_mask(x_mask.size(2)).to(device=x.device, dtype=x.dtype)
        x = x * x_mask
        h = self.hidden_channels
        for i in range(self.n_layers):
            if g is not None:
                x = self.cond_pre(x)
                g_l = g[:, i * 2 * h : (i + 1) * 2 * h, :]
                x = fused_add_tanh_sigmoid_multiply(x, g_l, h)
            y = self.self_attn_layers[i](x, x, self_attn_mask)
            y = self.drop(y)
            x = self.norm_layers_0[i](x + y)
            y = self.ffn_layers[i](x, x_mask)
            y = self.drop(y)
            x = self.norm_layers_1[i](x + y)
        return x * x_mask

    def remove_weight_norm(self) -> None:
        if self.isflow:
            remove_weight_norm(self.cond_layer)


__all__ = ["FFN", "FFT", "Encoder", "MultiHeadAttention"]
