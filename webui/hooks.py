"""Which optional parts of the project this install has, so the UI shows only what works.

- Shallow diffusion (diffusion model / config, shallow diffusion, only diffusion, k_step, second
  encoding): shown when the ``diffusion`` package is present (:func:`diffusion_available`).
- ONNX export button: shown when ``onnx_export.py`` (sovits-4.1.md §2.10) is in the project; it
  copies the loaded voice to ``checkpoints/<name>/{model.pth, config.json}`` and runs
  ``python onnx_export.py -n <name>``, 4.1's contract.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def diffusion_available() -> bool:
    """True when the ``diffusion`` package (shallow diffusion) is installed with the project."""
    return importlib.util.find_spec("diffusion") is not None


def onnx_export_script() -> Path | None:
    """``onnx_export.py`` when it is in the project, else None."""
    p = REPO_ROOT / "onnx_export.py"
    return p if p.is_file() else None
