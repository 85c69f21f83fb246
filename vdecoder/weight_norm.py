"""Legacy weight norm (``weight_g``/``weight_v``) and folding it away for inference.

so-vits-svc checkpoints store weight-normed convolutions in the layout of the legacy
``torch.nn.utils.weight_norm`` (sovits-4.1.md §9): per module ``bias``, then ``weight_g``
(``[out, 1, 1]``, dim 0) and ``weight_v``. The newer ``parametrizations.weight_norm`` names them
``parametrizations.weight.original0/1`` instead, so the legacy API is the one to use. It is
deprecated (a ``FutureWarning`` on every call) but present in torch 2.13; :func:`weight_norm`
silences exactly that warning and nothing else.

:func:`fold_weight_norm` replaces ``weight_g``/``weight_v`` by the plain ``weight`` they stand
for (``g · v / ‖v‖``, computed once), which removes one norm per conv per forward. The output is
unchanged (same arithmetic as the forward hook); the state dict then has ``weight`` instead.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn.utils.weight_norm import WeightNorm

__all__ = ["weight_norm", "fold_weight_norm", "has_weight_norm", "init_weights", "get_padding"]

_DEPRECATION = r".*torch\.nn\.utils\.weight_norm.* is deprecated.*"


def weight_norm(module: nn.Module, name: str = "weight", dim: int = 0) -> nn.Module:
    """``torch.nn.utils.weight_norm`` (legacy: ``{name}_g``/``{name}_v``) without its warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=FutureWarning)
        return torch.nn.utils.weight_norm(module, name=name, dim=dim)


def _hooks(module: nn.Module) -> list[WeightNorm]:
    return [h for h in module._forward_pre_hooks.values() if isinstance(h, WeightNorm)]


def has_weight_norm(model: nn.Module) -> bool:
    """True if any submodule still carries a legacy weight-norm hook."""
    return any(_hooks(m) for m in model.modules())


def fold_weight_norm(model: nn.Module) -> int:
    """Replace every legacy weight norm in ``model`` by a plain weight, in place.

    Returns the number of modules folded (0 if already folded). Forward results are unchanged.
    """
    n = 0
    for m in model.modules():
        for hook in _hooks(m):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning)
                torch.nn.utils.remove_weight_norm(m, hook.name)
            n += 1
    return n


def init_weights(m: nn.Module, mean: float = 0.0, std: float = 0.01) -> None:
    """HiFi-GAN ``init_weights``: ``normal_(mean, std)`` on the ``weight`` of every conv.

    On a weight-normed conv this writes the derived ``weight`` tensor, which the forward hook
    recomputes from ``weight_g``/``weight_v`` anyway, so it has no lasting effect (§9). It is
    kept for the reference's order of random-number use at construction.
    """
    if "Conv" in m.__class__.__name__:
        m.weight.data.normal_(mean, std)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of a stride-1 dilated conv with an odd kernel."""
    return int((kernel_size * dilation - dilation) / 2)
