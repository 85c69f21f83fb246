"""One run per step and output folder: an advisory ``fcntl`` lock (Linux, macOS).

Two runs of the same step on one folder (say two ``resample.py`` started by mistake) must not
delete each other's temporary files or do the same work twice. :func:`folder_lock` holds an
exclusive ``flock`` on the folder itself for the whole run: a second run says that it
waits, then continues once the first has finished — and finds its outputs up to date. The kernel
releases the lock when a process dies (even by ``kill -9``), so a crash never leaves a folder
locked. Stale temporary files are only removed while the lock is held. Where ``fcntl`` is missing
(Windows) runs are not serialised.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from common.errors import UserError


class FolderBusy(UserError):
    """Another run of the same step holds the folder."""


@contextlib.contextmanager
def folder_lock(
    folder: str | os.PathLike, step: str, wait: bool = True, own_file: bool = False
) -> Iterator[Path]:
    """Hold an exclusive lock for ``step`` on ``folder`` for the block.

    By default the lock is a ``flock`` on the folder itself, so no file is left in it, and every
    step that locks the folder this way is serialised (resample.py and preprocess_hubert_f0.py on
    ``dataset/44k``: features wait for a running resample). ``own_file`` locks
    ``<folder>/.<step>.lock`` instead, for steps that share a folder but not their outputs
    (training, k-means and the index in ``logs/44k``). When another process holds the lock:
    wait for it (``wait``, with a message), else raise :class:`FolderBusy`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield folder
        return
    target = folder / f".{step}.lock" if own_file else folder
    fd = (
        os.open(target, os.O_RDWR | os.O_CREAT, 0o666) if own_file else os.open(folder, os.O_RDONLY)
    )
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise FolderBusy(
                    f"{folder}: another {step} run is using this folder",
                    "wait for it to finish or stop it, or use another folder",
                ) from None
            print(f"{folder}: another run is working on this folder; {step} waits for it to "
                  "finish", file=sys.stderr, flush=True)  # fmt: skip
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        os.close(fd)  # releases the lock
