"""CPU training speed-ups that keep the losses (fp32, to rounding) and the checkpoint format.

Measured by ``bench/train_speed.py`` against the straightforward 4.1 step
(:mod:`training.reference_step`); equal losses are tested in tests/test_train_step_reference.py.

- The decoder's convolutions run channels-last as stride-1 ``conv2d`` (:mod:`modules.fast_conv`
  with ``live=True``): weight norm stays, the stride-1 weights are derived from the live weights
  at every call, no parameter is replaced (state dict and optimiser unchanged). One thread,
  template decoder, batch 6 × 20 frames, forward + backward: 2.13 s → 1.95 s.
- AdamW runs torch's fused CPU kernel (one pass over each tensor instead of about eight
  elementwise ops: the for-loop AdamW was 16 % of a template step on one thread). Same update
  rule; rounding may differ in the last bit. The checkpoint's ``optimizer`` is written as a plain
  ``AdamW`` has it (``fused: None``), so so-vits-svc 4.1 and older torch load it as before, and
  the flag is set again after every load (``load_state_dict`` restores the saved groups).

CUDA keeps the reference step (its speed comes from AMP; see the README).
"""

from __future__ import annotations

import torch


def fused_adamw_supported(device: torch.device) -> bool:
    """torch's fused AdamW on ``device``: the CPU kernel exists from torch 2.4."""
    if device.type != "cpu":
        return False
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 4)


def use_fused_adamw(optimizer: torch.optim.Optimizer, device: torch.device) -> bool:
    """Switch an ``AdamW`` to the fused kernel (call again after ``load_state_dict``)."""
    if not isinstance(optimizer, torch.optim.AdamW) or not fused_adamw_supported(device):
        return False
    for group in optimizer.param_groups:
        group["foreach"] = None
        group["fused"] = True
    return True


def plain_optimizer_state(state: dict) -> dict:
    """An optimizer ``state_dict`` with the speed flags as a plain ``AdamW(...)`` has them."""
    groups = []
    for group in state.get("param_groups", []):
        group = dict(group)
        if group.get("fused"):
            group["fused"] = None
        groups.append(group)
    return {**state, "param_groups": groups}


def speed_up(net_g: torch.nn.Module, optimizers, device: torch.device) -> list[str]:
    """Apply the CPU speed-ups to a generator and its optimisers; returns what was applied."""
    applied = []
    if device.type == "cpu":
        from modules.fast_conv import channels_last_convs

        n = channels_last_convs(getattr(net_g, "module", net_g).dec, live=True)  # (DDP)
        applied.append(f"decoder convolutions channels-last ({n} layers)")
    fused = [use_fused_adamw(opt, device) for opt in optimizers]
    if fused and all(fused):
        applied.append("fused AdamW")
    return applied
