"""One run per step and output folder: an advisory ``fcntl`` lock (Linux, macOS).

Two runs of the same step on one folder (say two ``resample.py`` started by mistake) must not
delete each other's temporary files or do the same work twice. :func:`folder_lock` holds an
exclusive ``flock`` on ``<folder>/.<step>.lock`` for the whole run: a second run says that it
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
def folder_lock(folder: str | os.PathLike, step: str, wait: bool = True) -> Iterator[Path]:
    """Hold ``<folder>/.<step>.lock`` exclusively for the block.

    When another process holds it: wait for it (``wait``), else raise :class:`FolderBusy`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{step}.lock"
    if fcntl is None:
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if not wait:
                raise FolderBusy(
                    f"{folder}: another {step} run (pid {other}) is using this folder",
                    "wait for it to finish or stop it, or use another folder",
                ) from None
            print(f"{folder}: another {step} run (pid {other}) is working on this folder; "
                  "waiting for it to finish", file=sys.stderr, flush=True)  # fmt: skip
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
