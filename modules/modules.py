"""WaveNet-style blocks and normalising flows of the generator (sovits-4.1.md §9).

- :class:`WN`: gated dilated conv stack with speaker conditioning (posterior encoder, flows).
- :class:`Depthwise_Separable_Conv1D`: the ``use_depthwise_conv`` replacement for WN's
  ``in_layers``. The reference switches a module-global ``Conv1dModel``; here the choice is the
  ``use_depthwise_conv`` argument passed down the constructors, so models built with different
  settings in one process never affect each other.
- :class:`ResidualCouplingLayer` / :class:`TransformerCouplingLayer` (+ :class:`Flip`) and the
  blocks stacking them (``flow``), including ``share_parameter``: one coupling network is
  registered as ``flow.wn`` *and* as every ``flow.flows.N.enc`` (the same tensors under both names
  in the state dict, as in the reference checkpoints).
"""

from __future__ import annotations

import torch
from torch import nn

from modules import attentions
from modules.commons import (
    LRELU_SLOPE,
    LayerNorm,
    fused_add_tanh_sigmoid_multiply,
    remove_weight_norm,
    weight_norm,
)


class Depthwise_Separable_Conv1D(nn.Module):  # noqa: N801 (reference name, kept for key paths)
    """Depthwise conv (``groups=in``, kernel k, dilation) followed by a pointwise 1×1 conv.

    State keys: ``depth_conv.*`` (``[in, 1, k]``) and ``point_conv.*`` (``[out, in, 1]``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.depth_conv = nn.Conv1d(
            in_channels,
            in_channels,
            kernel_size,
            groups=in_channels,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        self.point_conv = nn.Conv1d(
            in_channels, out_channels, 1, bias=bias, device=device, dtype=dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))

    def weight_norm(self) -> None:
        self.depth_conv = weight_norm(self.depth_conv)
        self.point_conv = weight_norm(self.point_conv)

    def remove_weight_norm(self) -> None:
        remove_weight_norm(self.depth_conv)
        remove_weight_norm(self.point_conv)


def conv1d_model(use_depthwise_conv: bool) -> type[nn.Module]:
    """The conv class for WN ``in_layers`` (what the reference's ``set_Conv1dModel`` selects)."""
    return Depthwise_Separable_Conv1D if use_depthwise_conv else nn.Conv1d


class WN(nn.Module):
    """Non-causal WaveNet: ``n_layers`` × (dilated conv → +cond → tanh·sigmoid gate → 1×1).

    Every conv is weight-normed. ``in_layers[i]``: H→2H, kernel k, dilation ``rate**i``;
    ``res_skip_layers[i]``: H→2H (H→H for the last layer); ``cond_layer`` (only if
    ``gin_channels``): G→2H·n_layers. Returns the summed skip outputs, masked.
    """

    def __init__(
        self,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
        p_dropout: float = 0,
        use_depthwise_conv: bool = False,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WN kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.n_layers = n_layers
        self.gin_channels = gin_channels
        self.p_dropout = p_dropout
        self.use_depthwise_conv = use_depthwise_conv

        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.drop = nn.Dropout(p_dropout)

        if gin_channels != 0:
            cond_layer = nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1)
            self.cond_layer = weight_norm(cond_layer)

        conv_cls = conv1d_model(use_depthwise_conv)
        for i in range(n_layers):
            dilation = dilation_rate**i
            padding = int((kernel_size * dilation - dilation) / 2)
            in_layer = conv_cls(
                hidden_channels,
                2 * hidden_channels,
                kernel_size,
                dilation=dilation,
                padding=padding,
            )
            self.in_layers.append(weight_norm(in_layer))
            res_skip_channels = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            res_skip_layer = nn.Conv1d(hidden_channels, res_skip_channels, 1)
            self.res_skip_layers.append(weight_norm(res_skip_layer))

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        output = torch.zeros_like(x)
        h = self.hidden_channels
        if g is not None:
            g = self.cond_layer(g)
        for i in range(self.n_layers):
            x_in = self.in_layers[i](x)
            if g is not None:
                g_l = g[:, i * 2 * h : (i + 1) * 2 * h, :]
            else:
                g_l = torch.zeros_like(x_in)
            acts = fused_add_tanh_sigmoid_multiply(x_in, g_l, h)
            acts = self.drop(acts)
            res_skip_acts = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                x = (x + res_skip_acts[:, :h, :]) * x_mask
                output = output + res_skip_acts[:, h:, :]
            else:
                output = output + res_skip_acts
        return output * x_mask

    def remove_weight_norm(self) -> None:
        if self.gin_channels != 0:
            remove_weight_norm(self.cond_layer)
        for layer in self.in_layers:
            remove_weight_norm(layer)
        for layer in self.res_skip_layers:
            remove_weight_norm(layer)


class Flip(nn.Module):
    """Reverse the channel order (logdet 0)."""

    def forward(self, x: torch.Tensor, *args, reverse: bool = False, **kwargs):
        x = torch.flip(x, [1])
        if not reverse:
            logdet = torch.zeros(x.size(0), dtype=x.dtype, device=x.device)
            return x, logdet
        return x


class _CouplingBase(nn.Module):
    """Affine coupling: ``x1 ← m(x0) + x1·exp(logs(x0))`` (``mean_only``: logs = 0)."""

    half_channels: int
    mean_only: bool

    def _coupling(self, x, x_mask, g, reverse):
        x0, x1 = torch.split(x, [self.half_channels] * 2, 1)
        h = self.pre(x0) * x_mask
        h = self.enc(h, x_mask, g=g)
        stats = self.post(h) * x_mask
        if not self.mean_only:
            m, logs = torch.split(stats, [self.half_channels] * 2, 1)
        else:
            m = stats
            logs = torch.zeros_like(m)
        if not reverse:
            x1 = m + x1 * torch.exp(logs) * x_mask
            x = torch.cat([x0, x1], 1)
            logdet = torch.sum(logs, [1, 2])
            return x, logdet
        x1 = (x1 - m) * torch.exp(-logs) * x_mask
        return torch.cat([x0, x1], 1)

    def forward(self, x, x_mask, g=None, reverse: bool = False):
        return self._coupling(x, x_mask, g, reverse)

    def _init_post(self, hidden_channels: int) -> None:
        self.post = nn.Conv1d(hidden_channels, self.half_channels * (2 - self.mean_only), 1)
        self.post.weight.data.zero_()
        self.post.bias.data.zero_()


class ResidualCouplingLayer(_CouplingBase):
    """Coupling layer with a :class:`WN` network (``pre`` → ``enc`` → zero-initialised ``post``).

    ``wn_sharing_parameter``: an existing WN to use as ``enc`` instead of building one.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        p_dropout: float = 0,
        gin_channels: int = 0,
        mean_only: bool = False,
        wn_sharing_parameter: nn.Module | None = None,
        use_depthwise_conv: bool = False,
    ):
        if channels % 2 != 0:
            raise ValueError("channels should be divisible by 2")
        super().__init__()
        self.channels = channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.n_layers = n_layers
        self.half_channels = channels // 2
        self.mean_only = mean_only

        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        if wn_sharing_parameter is None:
            self.enc = WN(
                hidden_channels,
                kernel_size,
                dilation_rate,
                n_layers,
                p_dropout=p_dropout,
                gin_channels=gin_channels,
                use_depthwise_conv=use_depthwise_conv,
            )
        else:
            self.enc = wn_sharing_parameter
        self._init_post(hidden_channels)


class TransformerCouplingLayer(_CouplingBase):
    """Coupling layer whose network is ``attentions.FFT(isflow=True)`` (speaker-gated)."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        n_layers: int,
        n_heads: int,
        p_dropout: float = 0,
        filter_channels: int = 0,
        mean_only: bool = False,
        wn_sharing_parameter: nn.Module | None = None,
        gin_channels: int = 0,
    ):
        if channels % 2 != 0:
            raise ValueError("channels should be divisible by 2")
        super().__init__()
        self.channels = channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.n_layers = n_layers
        self.half_channels = channels // 2
        self.mean_only = mean_only

        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        if wn_sharing_parameter is None:
            self.enc = attentions.FFT(
                hidden_channels,
                filter_channels,
                n_heads,
                n_layers,
                kernel_size,
                p_dropout,
                isflow=True,
                gin_channels=gin_channels,
            )
        else:
            self.enc = wn_sharing_parameter
        self._init_post(hidden_channels)


class _FlowBlock(nn.Module):
    flows: nn.ModuleList
    wn: nn.Module | None

    def forward(self, x, x_mask, g=None, reverse: bool = False):
        if not reverse:
            for flow in self.flows:
                x, _ = flow(x, x_mask, g=g, reverse=reverse)
        else:
            for flow in reversed(self.flows):
                x = flow(x, x_mask, g=g, reverse=reverse)
        return x

    def remove_weight_norm(self) -> None:
        """Remove weight norm from every coupling network (a shared one only once)."""
        seen: set[int] = set()
        for flow in self.flows:
            enc = getattr(flow, "enc", None)
            if enc is not None and id(enc) not in seen:
                seen.add(id(enc))
                enc.remove_weight_norm()


class ResidualCouplingBlock(_FlowBlock):
    """``n_flows`` × [mean-only :class:`ResidualCouplingLayer`, :class:`Flip`] (``model.flow``).

    Positional order as in the reference: ``SynthesizerTrn`` passes its ``n_flow_layer`` as
    ``n_layers`` (WN depth), while ``n_flows`` stays 4.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        n_flows: int = 4,
        gin_channels: int = 0,
        share_parameter: bool = False,
        use_depthwise_conv: bool = False,
    ):
        super().__init__()
        self.channels = channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.n_layers = n_layers
        self.n_flows = n_flows
        self.gin_channels = gin_channels

        # `flows` is registered before `wn`: state-dict order flows.* then wn.*
        self.flows = nn.ModuleList()
        self.wn = (
            WN(
                hidden_channels,
                kernel_size,
                dilation_rate,
                n_layers,
                p_dropout=0,
                gin_channels=gin_channels,
                use_depthwise_conv=use_depthwise_conv,
            )
            if share_parameter
            else None
        )
        for _ in range(n_flows):
            self.flows.append(
                ResidualCouplingLayer(
                    channels,
                    hidden_channels,
                    kernel_size,
                    dilation_rate,
                    n_layers,
                    gin_channels=gin_channels,
                    mean_only=True,
                    wn_sharing_parameter=self.wn,
                    use_depthwise_conv=use_depthwise_conv,
                )
            )
            self.flows.append(Flip())


class TransformerCouplingBlock(_FlowBlock):
    """``n_flows`` × [mean-only :class:`TransformerCouplingLayer`, :class:`Flip`]."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        n_flows: int = 4,
        gin_channels: int = 0,
        share_parameter: bool = False,
    ):
        super().__init__()
        self.channels = channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.n_layers = n_layers
        self.n_flows = n_flows
        self.gin_channels = gin_channels

        self.flows = nn.ModuleList()
        self.wn = (
            attentions.FFT(
                hidden_channels,
                filter_channels,
                n_heads,
                n_layers,
                kernel_size,
                p_dropout,
                isflow=True,
                gin_channels=gin_channels,
            )
            if share_parameter
            else None
        )
        for _ in range(n_flows):
            self.flows.append(
                TransformerCouplingLayer(
                    channels,
                    hidden_channels,
                    kernel_size,
                    n_layers,
                    n_heads,
                    p_dropout,
                    filter_channels,
                    mean_only=True,
                    wn_sharing_parameter=self.wn,
                    gin_channels=gin_channels,
                )
            )
            self.flows.append(Flip())


__all__ = [
    "LRELU_SLOPE",
    "Depthwise_Separable_Conv1D",
    "Flip",
    "LayerNorm",
    "ResidualCouplingBlock",
    "ResidualCouplingLayer",
    "TransformerCouplingBlock",
    "TransformerCouplingLayer",
    "WN",
    "conv1d_model",
]
