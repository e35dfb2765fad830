"""Two lock files beside a DuckDB store: who writes it, and whether a reader is waiting for its turn.

DuckDB lets one process hold a file for writing, and then no other process may open it, not even to read. So:

* ``<store>.lock`` is held (``flock``, exclusive) by the one usageledger process that writes the store (``sync``,
  ``init``, ``demo``), for as long as it has the store open; it holds that process's PID. The kernel drops the lock
  when the process ends, however it ends, so a file left behind by a dead process never blocks anyone.
* ``<store>.readers`` is held (``flock``, shared) by a reader that found the store busy, until it has read. The
  writer looks at it between two transactions: while any reader waits, it closes the store and opens it again only
  once every waiting reader is done.

Both files are created by the writer; a reader never creates a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from typing import Final

from usageledger.errors import StoreError

__all__ = ["LOCK_SUFFIX", "READERS_SUFFIX", "ReaderSignal", "WriterLock", "reader_turn", "writer_pid"]

LOCK_SUFFIX: Final = ".lock"
READERS_SUFFIX: Final = ".readers"
_ACQUIRE_TRIES: Final = 10
"""A reader's probe holds the writer lock shared for an instant: retry that long before calling the store taken."""


def _locked(fd: int, how: int) -> bool:
    """Try ``flock(fd, how | LOCK_NB)``: True when taken."""
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


class WriterLock:
    """The store's writer lock, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, store_path: str) -> WriterLock:
        """Take the lock, or :class:`StoreError` naming the PID of the usageledger process that holds it."""
        fd = os.open(store_path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            for attempt in range(_ACQUIRE_TRIES):
                if _locked(fd, fcntl.LOCK_EX):
                    break
                if attempt + 1 == _ACQUIRE_TRIES:
                    pid = _read_pid(fd)
                    raise StoreError(
                        f"another usageledger process (PID {pid if pid is not None else 'unknown'}, a running sync)"
                        f" is writing to the store {store_path}: wait for it to finish, or pass another --store"
                    )
                time.sleep(0.02)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it); the file stays, holding a PID nobody locks."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def writer_pid(store_path: str) -> int | None:
    """The PID of the usageledger process writing the store now (0 when it did not say), or None when none is."""
    try:
        fd = os.open(store_path + LOCK_SUFFIX, os.O_RDONLY)
    except OSError:
        return None
    try:
        if _locked(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_pid(fd) or 0
    finally:
        os.close(fd)


class ReaderSignal:
    """The writer's side of ``<store>.readers``: is any reader waiting for the store?"""

    def __init__(self, store_path: str) -> None:
        self._fd: int | None = os.open(store_path + READERS_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)

    def waiting(self) -> bool:
        """True while some reader holds its turn (an instant's exclusive probe, released at once)."""
        if self._fd is None:
            return False
        if _locked(self._fd, fcntl.LOCK_EX):
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def reader_turn(store_path: str) -> Iterator[None]:
    """Tell the writer a reader is waiting, until the block ends (nothing to tell when no writer ever ran here)."""
    try:
        fd = os.open(store_path + READERS_SUFFIX, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        # Blocking: the writer only ever holds this file for the instant of a probe.
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
