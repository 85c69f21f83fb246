"""The project folders the web UI and the APIs may touch, and safe names inside them.

Every path a server reads or writes comes from here: models are picked from a listing (never from
a client-supplied path), client-supplied names go through :func:`safe_name`, and
:func:`inside` refuses anything that resolves outside its folder (``..``, absolute paths,
symlinks pointing elsewhere).

Folders, relative to the project root (the current folder, like the CLI):

- ``logs/44k/``: ``G_*.pth`` with ``config.json`` (train.py's output), cluster files;
- ``trained/<name>/``: one ``*.pth`` and one ``*.json`` per voice (4.1's "local model" folder),
  optionally a cluster / retrieval file;
- ``pretrain/<name>/``: **shipped voices** (e.g. ``pretrain/demo_voice/``): a folder holding one
  ``*.pth`` and a ``config.json``. Listed as ``pretrain/<name>`` with ``shipped=True`` and loadable
  by that name, **read-only**: the servers never write or delete anything there (the ONNX Runtime
  backend, which caches an export next to the checkpoint, is refused for them). A file that
  resolves outside ``pretrain/`` (a symlink pointing elsewhere) is not listed;
- ``logs/44k/diffusion/``: shallow-diffusion models (``model_*.pt``) and ``config.yaml``
  (train_diff.py's output);
- ``results/``: conversions, named as inference_main.py names them;
- ``compressed/``: the compression tab's output.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MODEL_DIRS = ("logs/44k", "trained", "pretrain")
SHIPPED_DIR = "pretrain"
DIFFUSION_DIR = "logs/44k/diffusion"
RESULTS_DIR = "results"
COMPRESSED_DIR = "compressed"
CLUSTER_SUFFIXES = (".pt", ".npz", ".pkl")

_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)


class PathError(ValueError):
    """A client-supplied name or path is not allowed (outside the project's folders)."""


def safe_name(name: str | None, default: str = "audio", max_len: int = 120) -> str:
    """A plain file name from a client-supplied one: the last path component, no separators, no
    leading dots, odd characters replaced by ``_`` (``../../etc/passwd`` → ``passwd``)."""
    base = re.split(r"[\\/]", str(name or ""))[-1]
    base = _UNSAFE.sub("_", base).strip().lstrip(".")
    return base[:max_len] or default


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` resolved; raises :class:`PathError` unless it lies inside ``root``."""
    root_r = Path(root).resolve()
    p = Path(path)
    resolved = (p if p.is_absolute() else root_r / p).resolve()
    if resolved != root_r and root_r not in resolved.parents:
        raise PathError(f"{path}: outside {root_r}")
    return resolved


@dataclass(frozen=True)
class ModelEntry:
    """A voice found on disk: ``name`` is what lists show and what clients send back."""

    name: str
    model: Path
    config: Path
    cluster: tuple[Path, ...] = ()
    shipped: bool = False  # pretrain/<name>/: shipped with the project, read-only


def _step(p: Path) -> int:
    digits = re.sub(r"\D", "", p.stem)
    return int(digits) if digits else -1


_TRAIN_CHECKPOINT = re.compile(r"G_\d+\.pth")


def discover_models(root: str | os.PathLike) -> list[ModelEntry]:
    """Voices under ``logs/44k`` (every ``G_<step>.pth`` train.py wrote, with ``config.json``,
    newest first; a ``G_*_release*.pth`` there is not a training step and is not listed),
    ``trained/<name>/`` (exactly one ``*.pth`` and one ``*.json``), then the shipped voices
    ``pretrain/<name>/`` (:func:`discover_shipped`)."""
    root = Path(root)
    found: list[ModelEntry] = []
    logs = root / "logs" / "44k"
    cfg = logs / "config.json"
    if cfg.is_file():
        clusters = tuple(sorted(p for p in logs.iterdir() if _is_cluster(p)))
        steps = (g for g in logs.glob("G_*.pth") if _TRAIN_CHECKPOINT.fullmatch(g.name))
        for g in sorted(steps, key=_step, reverse=True):
            found.append(ModelEntry(f"logs/44k/{g.name}", g, cfg, clusters))
    trained = root / "trained"
    if trained.is_dir():
        for d in sorted(p for p in trained.iterdir() if p.is_dir()):
            pths = [p for p in d.glob("*.pth")]
            jsons = [p for p in d.glob("*.json")]
            if len(pths) == 1 and len(jsons) == 1:
                clusters = tuple(sorted(p for p in d.iterdir() if _is_cluster(p)))
                found.append(ModelEntry(f"trained/{d.name}", pths[0], jsons[0], clusters))
    return found + discover_shipped(root)


def discover_shipped(root: str | os.PathLike) -> list[ModelEntry]:
    """Shipped voices: every folder ``pretrain/<name>/`` holding exactly one ``*.pth`` and a
    ``config.json`` (``pretrain/demo_voice/`` and any added later), listed as ``pretrain/<name>``
    with ``shipped=True``. Folders of other pretrained files (``nsf_hifigan/``: ``model`` +
    ``config.json``) hold no ``.pth`` and are not voices; a file resolving outside ``pretrain/``
    is skipped."""
    shipped = Path(root) / SHIPPED_DIR
    if not shipped.is_dir():
        return []
    found = []
    for d in sorted(p for p in shipped.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pths = [p for p in d.glob("*.pth") if p.is_file()]
        cfg = d / "config.json"
        if (
            len(pths) != 1
            or not cfg.is_file()
            or not all(is_shipped(root, p) for p in (*pths, cfg))
        ):
            continue
        clusters = tuple(sorted(p for p in d.iterdir() if _is_cluster(p) and is_shipped(root, p)))
        found.append(ModelEntry(f"{SHIPPED_DIR}/{d.name}", pths[0], cfg, clusters, shipped=True))
    return found


def is_shipped(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` resolves inside ``pretrain/`` (shipped files: read-only for the servers)."""
    try:
        inside(Path(root) / SHIPPED_DIR, Path(path).resolve())
    except PathError:
        return False
    return True


def _is_cluster(p: Path) -> bool:
    if not p.is_file() or p.suffix not in CLUSTER_SUFFIXES:
        return False
    return not (p.name.startswith(("G_", "D_")) or p.suffix == ".pth")


def discover_cluster_files(root: str | os.PathLike) -> list[str]:
    """Cluster (``.pt``) and retrieval (``.npz``, legacy ``.pkl``) files, as project-relative names."""
    root = Path(root)
    out: set[str] = set()
    for entry in discover_models(root):
        out.update(p.relative_to(root).as_posix() for p in entry.cluster)
    return sorted(out)


def find_model(root: str | os.PathLike, name: str) -> ModelEntry:
    """The listed voice called ``name`` (a client can only pick from the listing)."""
    for entry in discover_models(root):
        if entry.name == name:
            return entry
    raise PathError(f"no voice called {name!r}; see the model list")


def find_cluster(root: str | os.PathLike, name: str) -> Path:
    """A listed cluster / retrieval file by its project-relative name."""
    if name not in discover_cluster_files(root):
        raise PathError(f"no cluster or retrieval file called {name!r}; see the model list")
    return inside(root, name)


def discover_diffusion(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Diffusion models (``*.pt``, newest step first) and configs (``*.yaml``) in
    ``logs/44k/diffusion/``, as project-relative names."""
    folder = Path(root) / DIFFUSION_DIR
    if not folder.is_dir():
        return [], []
    models = sorted((p for p in folder.glob("*.pt") if p.is_file()), key=_step, reverse=True)
    configs = sorted(p for p in folder.glob("*.yaml") if p.is_file())
    return [f"{DIFFUSION_DIR}/{p.name}" for p in models], [
        f"{DIFFUSION_DIR}/{p.name}" for p in configs
    ]


def find_diffusion(root: str | os.PathLike, name: str) -> Path:
    """A listed diffusion model or config by its project-relative name."""
    models, configs = discover_diffusion(root)
    if name not in models + configs:
        raise PathError(f"no diffusion model or config called {name!r}; see the model list")
    return inside(root, name)
