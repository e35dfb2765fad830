"""How the command line's process asks the C allocator for memory: one place, applied once at start-up.

A sync decodes pages of megabytes in worker threads (Arrow's JSON reader, with Arrow's buffers from the C allocator:
see ``cli.main``) while DuckDB writes in threads of its own. By default glibc gives every thread that allocates while
another holds the main heap an arena of its own (up to eight per core), and what is freed into an arena stays there
for that arena's reuse: a year's sync peaked 20-35 MB higher with them than with two arenas
(``bench/BENCHMARKS.md``, "Sync as a user runs it").

The mmap threshold is left to glibc on purpose: fixing it at 256 KiB (so that page-sized buffers go back to the system
when freed) saved a little more memory but more than doubled the CPU of reading 2.8 MB bodies with httpx, every
buffer faulted in afresh.

A user's own ``MALLOC_ARENA_MAX`` wins (glibc has read it already) and is left alone. Elsewhere than glibc (musl,
macOS) nothing happens.
"""

from __future__ import annotations

import ctypes
import os
from typing import Final

__all__ = ["ARENAS", "tune"]

ARENAS: Final = 2
"""The most malloc arenas the process uses (glibc's default: eight per core)."""

_M_ARENA_MAX: Final = -8  # glibc's mallopt parameter number (malloc.h)


def tune() -> bool:
    """Cap glibc's arenas at :data:`ARENAS` unless the environment sets ``MALLOC_ARENA_MAX``; whether it was done."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, ARENAS) == 1)
