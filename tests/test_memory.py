"""Freed memory goes back to the system where the C library can (``usageledger._memory``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import subprocess
import sys

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


_ARENAS = """
import ctypes, ctypes.util, sys, threading
from usageledger._memory import limit_arenas
if sys.argv[1] == "limited":
    limit_arenas(2)
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
barrier = threading.Barrier(6)
def allocate():
    barrier.wait()
    for _ in range(2000):
        libc.malloc(256)
threads = [threading.Thread(target=allocate) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc.malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's; elsewhere the call does nothing")
@pytest.mark.parametrize(("how", "most"), [("limited", 2), ("default", 99)])
def test_a_sync_process_keeps_two_malloc_arenas_for_all_its_threads(how: str, most: int) -> None:
    """Six threads allocating at once get arenas of their own from glibc (here: more than two), unless
    :func:`limit_arenas` capped them first, as ``usageledger sync`` does (``SYNC_ARENAS``)."""
    done = subprocess.run([sys.executable, "-c", _ARENAS, how], capture_output=True, text=True, check=True, timeout=60)
    arenas = sum(line.startswith("Arena ") for line in done.stderr.splitlines())
    assert 1 <= arenas <= most
    if how == "default":
        assert arenas > 2
