"""Running one function over many files: worker pool, progress bar, failure summary, exit code.

Batch tools skip a bad file, name it with its reason at the end, and exit non-zero only when
nothing at all could be done (DEVELOPERS.md).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

from tqdm import tqdm

from common.cli import os_error_line


@dataclass
class BatchReport:
    """Outcome of a batch run: counts and the reason for every failed input."""

    done: int = 0
    skipped: int = 0  # already up to date
    failed: dict[str, str] = field(default_factory=dict)

    def add(self, path: str, status: str, reason: str | None = None) -> None:
        if status == "done":
            self.done += 1
        elif status == "skipped":
            self.skipped += 1
        else:
            self.failed[path] = reason or "failed"

    def summary(self, what: str) -> str:
        lines = [
            f"{what}: {self.done} done, {self.skipped} already up to date, {len(self.failed)} failed"
        ]
        by_reason: dict[str, list[str]] = {}
        for path, reason in sorted(self.failed.items()):
            by_reason.setdefault(reason, []).append(path)
        for reason, paths in by_reason.items():
            if len(paths) > 3:  # one cause for many files (e.g. a missing model): say it once
                lines.append(f"  skipped {len(paths)} files ({paths[0]}, ...): {reason}")
            else:
                lines += [f"  skipped {path}: {reason}" for path in paths]
        return "\n".join(lines)

    @property
    def exit_code(self) -> int:
        """0 if anything was (or already had been) done, else 1."""
        return 0 if (self.done + self.skipped) > 0 else 1


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def run_batch(
    fn: Callable[[str], tuple[str, str | None]],
    items: Iterable[str],
    num_processes: int | None = None,
    desc: str = "",
    initializer: Callable | None = None,
    initargs: tuple = (),
) -> BatchReport:
    """Call ``fn(item) -> (status, reason)`` for every item; status is done/skipped/failed.

    ``fn`` must be picklable (a module-level function). Exceptions become failures with their
    message, so one bad file never stops the batch. Workers use the ``spawn`` start method so
    torch and thread pools behave the same on every platform.
    """
    items = list(items)
    report = BatchReport()
    n = num_processes or default_workers()
    n = max(1, min(n, len(items) or 1))
    bar = tqdm(total=len(items), desc=desc, unit="file", file=sys.stderr, dynamic_ncols=True)
    if n == 1:
        if initializer is not None:
            initializer(*initargs)
        for item in items:
            report.add(item, *_safe_call(fn, item))
            bar.update()
    else:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(
            n, mp_context=ctx, initializer=initializer, initargs=initargs
        ) as ex:
            futures = {ex.submit(_safe_call, fn, item): item for item in items}
            for fut in as_completed(futures):
                try:
                    report.add(futures[fut], *fut.result())
                except Exception as e:  # noqa: BLE001 - a dead worker is one failed file
                    report.add(futures[fut], "failed", f"worker crashed ({e})")
                bar.update()
    bar.close()
    return report


def _safe_call(fn: Callable[[str], tuple[str, str | None]], item: str) -> tuple[str, str | None]:
    try:
        return fn(item)
    except Exception as e:  # noqa: BLE001
        msg = os_error_line(e) if isinstance(e, OSError) else " ".join(str(e).split())
        prefix = f"{item}: "
        return "failed", (msg[len(prefix) :] if msg.startswith(prefix) else msg) or type(e).__name__
