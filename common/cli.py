"""One way for every top-level script to end: exit codes and one-line messages.

    if __name__ == "__main__":
        sys.exit(run_main(main))

:func:`run_main` calls ``main(argv)`` and turns a failure into one line on stderr and an exit code:

| code | meaning |
|------|---------|
| 0    | success (batch tools: at least one item done; skipped items are listed) |
| 1    | a user error: bad or missing input file, config or checkpoint; nothing was written |
| 2    | a bad command line: unknown flag, value out of range |
| 3    | a batch finished but some of its inputs failed (listed at the end) |
| 70   | an internal error (a bug): please report it with the ``--debug`` traceback |
| 130  | interrupted (Ctrl-C) |

``--debug`` (any position) is removed from the arguments and shows the full traceback instead.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence

from common.errors import UserError

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 70, 130

_OS_HINTS = {
    errno.EACCES: "check the file's permissions",
    errno.EPERM: "check the file's permissions",
    errno.ENOSPC: "free some disk space and run again; finished outputs are kept",
    errno.EDQUOT: "free some disk space and run again; finished outputs are kept",
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "check the path",
    errno.EROFS: "choose a writable output folder",
}


def os_error_line(e: OSError) -> str:
    """``<file>: <reason> (<what to do>)`` for an ``OSError`` (permission denied, disk full...)."""
    where = e.filename if e.filename is not None else "(unknown file)"
    reason = (e.strerror or str(e)).lower() if e.strerror else str(e)
    hint = _OS_HINTS.get(e.errno or -1)
    return f"{where}: {reason}" + (f" ({hint})" if hint else "")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    return "--debug" in (sys.argv[1:] if argv is None else argv)


def run_main(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` (``--debug`` removed) and return its exit code (see the module doc)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SOVITS_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    if debug:
        logging.getLogger().setLevel(logging.DEBUG)
        return int(main(args) or 0)
    try:
        return int(main(args) or 0)
    except UserError as e:
        _print(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        _print("interrupted (run the same command again to resume)")
        return EXIT_INTERRUPTED
    except OSError as e:
        _print(os_error_line(e))
        return EXIT_USER
    except MemoryError:
        _print("out of memory (close other programs, or use shorter inputs / a smaller batch)")
        return EXIT_USER
    except Exception as e:  # noqa: BLE001 - a bug: one line here, the traceback with --debug
        _print(
            f"internal error: {type(e).__name__}: {one_line(e)} "
            "(this is a bug; run again with --debug and report the traceback)"
        )
        return EXIT_INTERNAL


def _print(line: str) -> None:
    sys.stdout.flush()
    print(one_line(line), file=sys.stderr, flush=True)
