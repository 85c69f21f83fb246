"""Giving freed memory back to the operating system between large steps (Linux, glibc).

glibc keeps freed heap memory for reuse; after a long file's features (hundreds of MB of
temporaries in many sizes) the process can hold that much more than it uses, and the next file
or stage starts from the inflated size. :func:`release_memory` calls ``malloc_trim(0)``, which
returns the free pages; elsewhere (other C libraries, other systems) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_memory() -> bool:
    """Return free heap pages to the OS; True when ``malloc_trim`` ran. Costs milliseconds:
    call it after large steps, not per small item."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
