"""The CLI caps glibc's malloc arenas (``usageledger._allocator``): counted from glibc's own report, in a fresh
process whose threads each allocate."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt arenas are glibc's"
)

# Eight threads each allocate while holding the others back, then the process prints how many arenas glibc reports
# (malloc_info's <heap nr=...> entries) and what tune() returned. ``TUNE=1`` calls the CLI's tune() first.
_PROBE = r"""
import ctypes, os, threading
from usageledger import _allocator
tuned = _allocator.tune() if os.environ.get("TUNE") else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    blocks = [libc.malloc(4096) for _ in range(200)]
    barrier.wait()
    for b in blocks:
        libc.free(b)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
buf, size = ctypes.c_char_p(), ctypes.c_size_t()
libc.open_memstream.restype = ctypes.c_void_p
stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
print(tuned, buf.value.decode().count("<heap nr="))
"""


def _arenas(**env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True, timeout=60, check=True
    )
    tuned, heaps = done.stdout.split()
    return tuned, int(heaps)


def test_the_cli_caps_the_arenas_at_two() -> None:
    """Untuned, eight allocating threads get arenas of their own; tuned, the process keeps at most two."""
    untuned, many = _arenas()
    tuned, few = _arenas(TUNE="1")
    assert untuned == "None" and many > 2
    assert tuned == "True" and few <= 2


def test_the_users_own_setting_wins() -> None:
    """With ``MALLOC_ARENA_MAX`` in the environment, tune() changes nothing: glibc obeys the user's number."""
    tuned, heaps = _arenas(TUNE="1", MALLOC_ARENA_MAX="4")
    assert tuned == "False" and 2 < heaps <= 4


def test_main_tunes_before_any_command_runs() -> None:
    """``usageledger.cli.main`` calls tune() itself (no thread exists yet when it does)."""
    probe = (
        "from usageledger import _allocator\n"
        "calls = []\n"
        "real = _allocator.tune\n"
        "_allocator.tune = lambda: calls.append(1) or real()\n"
        "from usageledger.cli import main\n"
        "import sys; sys.argv = ['usageledger', 'version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(len(calls), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stderr.strip().splitlines()[-1] == "1"
