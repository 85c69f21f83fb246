"""The dynamic voice mix timeline (spkmix.py, sovits-4.1.md §2.11) for the UI's mix editor.

The editor holds spkmix.py text; :func:`parse` reads it as data (never executes it), :func:`check`
validates it against the loaded voice by building the per-frame weights the conversion will use,
and :func:`save` writes it to the project's ``spkmix.py``, where ``inference_main.py -usm`` reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

HEADER = """# Dynamic speaker mix (written by the web UI's mix editor; read as data, never executed).
# spk_mix_map = {speaker: [[t_start, t_end, v_start, v_end], ...]}: times are fractions 0..1 of the
# output; each speaker's segments are contiguous from 0 to 1; weights are normalised per frame.
"""


def template(spk2id: dict[str, int]) -> str:
    """A timeline that fades from the first speaker to the second (others at 0)."""
    lines = []
    names = list(spk2id)
    for i, name in enumerate(names):
        seg = (
            [0.0, 1.0, 1.0, 0.0]
            if i == 0
            else [0.0, 1.0, 0.0, 1.0]
            if i == 1
            else [0.0, 1.0, 0.0, 0.0]
        )
        lines.append(f"    {name!r}: [{seg}],")
    return "spk_mix_map = {\n" + "\n".join(lines) + "\n}\n"


def parse(text: str) -> dict:
    from inference.cli import parse_spk_mix_map

    try:
        return parse_spk_mix_map(text, "mix timeline")
    except SyntaxError as e:
        raise ValueError(f"mix timeline: line {e.lineno}: {e.msg}") from None


def check(svc, text: str, n_frames: int = 1000) -> tuple[dict, np.ndarray]:
    """``(spk_mix_map, weights [n_spk, n_frames])``; raises ValueError naming the problem."""
    mix_map = parse(text)
    if len(svc.spk2id) < 2:
        raise ValueError("this voice has one speaker; a dynamic mix needs two or more")
    return mix_map, svc.build_spk_mix(mix_map, n_frames).numpy()


def save(root: str | os.PathLike, text: str) -> Path:
    """Write ``<root>/spkmix.py`` atomically (after :func:`parse` accepted it)."""
    from common.atomic import write_text

    parse(text)
    path = Path(root) / "spkmix.py"
    body = text if text.lstrip().startswith("#") else HEADER + text
    write_text(path, body if body.endswith("\n") else body + "\n")
    return path
