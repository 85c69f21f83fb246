"""Stop a training run that diverged (a NaN / inf loss or weight) with one line, before it saves.

Every trainer (train.py, train_diff.py, train_visemes.py) checks its loss after each step and
its weights before each checkpoint; a non-finite value raises :class:`TrainingDiverged` (a
:class:`~common.errors.ConfigError`: the config's learning rate or precision is what the user
changes), so no checkpoint with NaN weights is ever written and the last good one stays the
newest (a re-run resumes from it)::

    configs/config.json: training diverged: the loss is nan at step 3 (lower
    train.learning_rate, or turn train.fp16_run off; the checkpoints written before are kept)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import torch

from common.errors import ConfigError

KEPT = "the checkpoints written before are kept"


class TrainingDiverged(ConfigError):
    """The loss or the weights became NaN / inf: the config trains unstably."""


def check_loss(value: float, config: str | os.PathLike, step: int, hint: str) -> None:
    """Raise :class:`TrainingDiverged` when ``value`` (a loss, as a Python float) is not finite."""
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"{config}: training diverged: the loss is {value} at step {step}", f"{hint}; {KEPT}"
        )


def check_weights(
    modules: Iterable[torch.nn.Module], config: str | os.PathLike, step: int, hint: str
) -> None:
    """Raise :class:`TrainingDiverged` when any parameter or buffer of ``modules`` has a NaN/inf
    (called before a checkpoint is written, so none with such weights is)."""
    tensors = {
        f"{i}.{name}": t
        for i, module in enumerate(modules)
        for name, t in module.state_dict().items()
        if torch.is_tensor(t) and t.is_floating_point() and t.numel()
    }
    if not tensors:
        return
    finite = torch.stack([torch.isfinite(t).all() for t in tensors.values()]).cpu()  # one sync
    for (key, _), ok in zip(tensors.items(), finite.tolist()):
        if not ok:
            name = key.split(".", 1)[1]
            raise TrainingDiverged(
                f"{config}: training diverged: {name} has NaN/inf values at step {step}, "
                "so no checkpoint was written for it",
                f"{hint}; {KEPT}",
            )
