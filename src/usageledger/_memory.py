"""Memory the process has freed: handed back to the system, and kept in fewer places, where the C library allows."""

from __future__ import annotations

import ctypes
import functools

__all__ = ["limit_arenas", "release_free_memory"]

_M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library where it is glibc (it has ``malloc_trim`` and ``mallopt``), else ``None`` (musl, macOS,
    Windows)."""
    try:
        libc = ctypes.CDLL(None)  # the symbols the process has loaded: the C library's among them, no look-up
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError, TypeError):  # TypeError: Windows takes no CDLL(None)
        return None
    return libc


def limit_arenas(arenas: int) -> None:
    """Let glibc's allocator keep at most ``arenas`` arenas from now on; nothing where the C library is not glibc.

    glibc gives each thread that allocates at once an arena of its own (up to eight per core), and what a thread
    frees stays in its arena: a sync's threads (the fetch workers' conversions, the writer) held ~10 MB more at
    the peak of a year's sync than with two arenas, at the same speed (``bench/BENCHMARKS.md``). Called before
    the threads start; arenas made already are kept.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, arenas)


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the system (glibc); nothing where the C library cannot.

    A sync frees megabytes at a time (response bodies, Arrow buffers, a committed batch) in several threads, and
    glibc keeps what each thread's arena freed for that thread's next use: after each commit the process holds
    ~10 MB less this way (``bench/BENCHMARKS.md``), for a call that costs about a millisecond.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
