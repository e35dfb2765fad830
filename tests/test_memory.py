"""Freed memory goes back to the system where the C library can (``usageledger._memory``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import pytest

from usageledger._memory import release_free_memory


def _rss_mb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's; elsewhere the call does nothing")
def test_memory_the_allocator_kept_after_free_goes_back_to_the_system() -> None:
    """200 MB of small C allocations freed (the last one kept, so glibc cannot shrink its heap by itself) stay
    resident until :func:`release_free_memory`, which gives them back; a sync calls it after every commit."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    blocks = []
    for _ in range(50_000):
        block = libc.malloc(4000)
        libc.memset(block, 1, 4000)
        blocks.append(block)
    for block in blocks[:-1]:
        libc.free(block)
    held = _rss_mb()
    release_free_memory()
    assert _rss_mb() < held - 150
    libc.free(blocks[-1])
