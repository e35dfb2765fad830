"""Giving memory the process has freed back to the system, where the C library can."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

__all__ = ["release_free_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the system (glibc); nothing where the C library cannot.

    A sync frees megabytes at a time (response bodies, Arrow buffers, a committed batch) in several threads, and
    glibc keeps what each thread's arena freed for that thread's next use: after each commit the process holds
    ~10 MB less this way (``bench/BENCHMARKS.md``), for a call that costs about a millisecond.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
