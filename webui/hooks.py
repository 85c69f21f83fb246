"""Hooks for features other branches are building: the UI shows their controls only once the
code exists, so nothing half-built is ever on screen.

- Shallow diffusion (diffusion model/config uploads, only-diffusion, k_step, second encoding):
  shown when the ``diffusion`` package is importable **and** ``inference.infer_tool`` accepts it
  (``Svc`` no longer raises :class:`DiffusionUnavailable`; see :func:`diffusion_available`).
- ONNX export button: shown when ``onnx_export.py`` (sovits-4.1.md §2.10) exists in the project;
  it copies the loaded voice to ``checkpoints/<name>/{model.pth, config.json}`` and runs
  ``python onnx_export.py -n <name>``, 4.1's contract.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def diffusion_available() -> bool:
    """True once the diffusion work has landed (its package and Svc support)."""
    if importlib.util.find_spec("diffusion") is None:
        return False
    import inspect

    from inference import infer_tool

    # the diffusion branch replaces the "not available yet" guard in Svc.__init__
    return "DiffusionUnavailable(" not in inspect.getsource(infer_tool.Svc.__init__)


def onnx_export_script() -> Path | None:
    """``onnx_export.py`` when the ONNX work has landed, else None."""
    p = REPO_ROOT / "onnx_export.py"
    return p if p.is_file() else None
