"""Atomic file output: write to a temporary file beside the target, then rename.

A reader (or a re-run after a crash) sees either the old file or the complete new one, never a
truncated file. Temporary names start with ``.`` and end with ``.tmp`` so globs such as ``*.wav``
never pick them up.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``.

    The writer must create the temporary file itself (e.g. ``soundfile.write(tmp, ...)``).
    On any exception the temporary file is removed and the target is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:  # make the data durable before the rename
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator:
    """``open()`` for writing, atomically: the target appears only when the block succeeds."""
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open is for writing, got mode {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def save_npy(path: str | os.PathLike, array) -> None:
    """``np.save`` a plain (non-object) array atomically; refuses object arrays."""
    import numpy as np

    array = np.asarray(array)
    if array.dtype == object:
        raise TypeError(f"{path}: refusing to save an object array (it would need pickle)")
    with atomic_open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` atomically."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def remove_stale_temporaries(
    folder: str | os.PathLike,
    pattern: str = ".*.tmp",
    recursive: bool = False,
    older_than: float = 0.0,
) -> int:
    """Delete the temporaries (``.<name>.<random>.tmp``) a killed run left in ``folder``.

    ``pattern`` narrows it to one step's outputs (e.g. ``.kmeans_*.tmp``). Call it while holding
    the step's folder lock (:func:`common.locking.folder_lock`) so another run's files are safe;
    where runs share a folder without a lock (conversion results), ``older_than`` (seconds) keeps
    the temporaries a running write may still own.
    """
    import logging
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    now = time.time()
    for f in folder.rglob(pattern) if recursive else folder.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            if older_than and now - f.stat().st_mtime < older_than:
                continue
            f.unlink()
            removed += 1
            logging.getLogger(__name__).info("removed an unfinished write: %s", f)
    return removed
