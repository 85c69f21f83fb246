"""The UI's model tools: static merge (sovits-4.1.md §12) and compression (§2.9), each writing only
into its own project folder.

- merge → ``trained/<name>/<name>.pth`` + ``config.json`` (the first voice's config), so the merged
  voice appears in the model list at once;
- compression → ``compressed/<stem>_release[_half].pth`` (4.1's UI wrote into the current folder
  and crashed: it called ``removeOptimizer`` with 2 of its 4 arguments).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from webui import paths


def merge_voices(root: str | os.PathLike, models: Sequence[str | os.PathLike], rates: Sequence[float],
                 mode: str, config: str | os.PathLike, out_name: str) -> Path:  # fmt: skip
    """Merge ``models`` with ``rates`` (percent) in ``mode`` (convex / linear); returns the .pth."""
    from inference.merge import mix_model

    if len(models) < 2:
        raise ValueError("pick or upload at least two checkpoints to merge")
    if not config or not Path(config).is_file():
        raise ValueError(
            "the merged voice needs a config.json: pick a listed voice first or upload one"
        )
    name = paths.safe_name(out_name, default="merged")
    trained = Path(root) / "trained"
    out_dir = paths.inside(trained, trained / name)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"trained/{name} already exists; choose another name for the merged voice")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        out = mix_model([str(m) for m in models], list(rates), mode, out_dir / f"{name}.pth")
        shutil.copyfile(config, out_dir / "config.json")
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return Path(out)


def compress_voice(root: str | os.PathLike, model: str | os.PathLike, config: str | os.PathLike, half: bool,
                   stem: str) -> Path:  # fmt: skip
    """compress_model.py's ``compress`` into ``compressed/<stem>_release[_half].pth``."""
    from compress_model import compress

    if not model or not Path(model).is_file() or not config or not Path(config).is_file():
        raise ValueError("pick a listed voice or upload both a .pth and its config.json")
    out_dir = Path(root) / paths.COMPRESSED_DIR
    name = paths.safe_name(stem, default="model") + "_release" + ("_half" if half else "") + ".pth"
    out = paths.inside(out_dir, out_dir / name)
    out_dir.mkdir(parents=True, exist_ok=True)
    compress(str(config), str(model), bool(half), str(out))
    return out
