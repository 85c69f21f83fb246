"""Content units (speech-encoder output at ~50 fps) to the 44.1 kHz / 512 frame rate (§5.5).

Used by the training dataset and by inference, so both see identical frame alignment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _left_indices(src_len: int, target_len: int) -> list[int]:
    """Source index of each target frame, exactly as the reference's ``'left'`` loop picks it.

    The boundaries are computed in float32 like the reference (``arange * T / T16``), and the
    position advances by at most one per target frame, which matters only for downsampling.
    """
    bounds = (torch.arange(src_len + 1) * target_len / src_len).tolist()
    out = []
    pos = 0
    for i in range(target_len):
        if not i < bounds[pos + 1]:
            pos += 1
        out.append(pos)
    return out


def repeat_expand_2d(content: torch.Tensor, target_len: int, mode: str = "left") -> torch.Tensor:
    """Stretch ``content`` ``[C, T16]`` to ``[C, target_len]`` frames.

    ``mode='left'`` is the reference's loop (each target frame takes the source frame whose span
    contains it; same as ``'nearest'`` when upsampling). Any other value is a
    ``torch.nn.functional.interpolate`` mode (``'nearest'`` is the template default). The result
    is float32 on ``content``'s device. ``mode=None`` (an old config without the key) means 'left'.
    """
    if content.dim() != 2:
        raise ValueError(f"repeat_expand_2d expects [C, T], got shape {tuple(content.shape)}")
    target_len = int(target_len)
    src_len = content.shape[-1]
    if src_len == 0:
        raise ValueError("repeat_expand_2d: content has no frames")
    if target_len <= 0:
        return content.new_zeros(content.shape[0], 0, dtype=torch.float)
    if mode is None or mode == "left":
        idx = torch.tensor(_left_indices(src_len, target_len), device=content.device)
        return content.index_select(1, idx).float()
    return F.interpolate(content[None].float(), size=target_len, mode=mode)[0]
