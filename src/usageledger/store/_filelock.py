"""Two lock files beside a DuckDB store: who writes it, and whether a reader is waiting for its turn.

DuckDB lets one process hold a file for writing, and then no other process may open it, not even to read. So:

* ``<store>.lock`` is held (``flock``, exclusive) by the one usageledger process that writes the store (``sync``,
  ``init``, ``demo``, ``credit``, ``close``), for as long as it has the store open; it holds that process's PID and,
  on a second line, what it is: nothing for a sync (its PID alone, as every version wrote it), ``run NAME``
  for another long writer (``run demo``, ``run init``), or ``brief NAME`` for a brief write such as
  ``credit add`` that another writer waits for (bounded, saying so) instead of being refused at once. The messages
  of a process that finds the store taken name it (a running ``demo`` was called "a running sync"). The kernel
  drops the lock when the process ends, however it ends, so a file left behind by a dead process never blocks
  anyone.
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
from collections.abc import Callable, Iterator
from typing import Final, NamedTuple

from usageledger.errors import StoreError

__all__ = [
    "BRIEF_WAIT_LIMIT",
    "LOCK_SUFFIX",
    "READERS_SUFFIX",
    "ReaderSignal",
    "Writer",
    "WriterLock",
    "reader_turn",
    "writer",
    "writer_pid",
]

LOCK_SUFFIX: Final = ".lock"
READERS_SUFFIX: Final = ".readers"
_ACQUIRE_TRIES: Final = 10
"""A reader's probe holds the writer lock shared for an instant: retry that long before calling the store taken."""
BRIEF_WAIT_LIMIT: Final = 60.0
"""Seconds a writer waits for a brief writer (``credit add``, ``close``: a second or so) before it gives up."""
_UNSAID_GRACE: Final = 1.0
"""Seconds a lock held by a process that has not yet written who it is is looked at again before it is refused."""
SYNC: Final = "sync"
_BRIEF: Final = "brief "
_RUN: Final = "run "


class Writer(NamedTuple):
    """The usageledger process writing a store: its PID (0 when it did not say) and what it runs (``sync``, or the
    brief write's name); ``brief`` when it only records a few rows and lets go."""

    pid: int
    what: str = SYNC
    brief: bool = False


def _locked(fd: int, how: int) -> bool:
    """Try ``flock(fd, how | LOCK_NB)``: True when taken."""
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_pid(fd: int) -> int | None:
    return _read_writer(fd).pid or None


def _read_writer(fd: int) -> Writer:
    """What the lock file says: ``PID`` then, on a second line, ``brief NAME`` for a brief writer or ``run NAME``
    for a long one (nothing more: a sync, as every version before these lines wrote it)."""
    first, _, second = os.pread(fd, 256, 0).decode("utf-8", "replace").partition("\n")
    pid = int(first.strip()) if first.strip().isdigit() else 0
    second = second.strip()
    for mark, brief in ((_BRIEF, True), (_RUN, False)):
        if second.startswith(mark) and second[len(mark) :].strip():
            return Writer(pid, second[len(mark) :].strip(), brief=brief)
    return Writer(pid)


class WriterLock:
    """The store's writer lock, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(
        cls,
        store_path: str,
        *,
        brief: str | None = None,
        what: str = SYNC,
        on_wait: Callable[[str], None] | None = None,
    ) -> WriterLock:
        """Take the lock, or :class:`StoreError` naming the usageledger process that holds it and what it runs.

        ``what`` names this process's long write (``sync``, ``demo``, ``init``), which another process that finds
        the store taken is told of. ``brief`` names this process's write when it is brief (``credit add``). A brief
        holder is waited for, up to :data:`BRIEF_WAIT_LIMIT`, and ``on_wait`` hears that once: two top-ups at once
        both land. A long one is refused at once (a second sync would only repeat it)."""
        fd = os.open(store_path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            started = time.monotonic()
            attempt = 0
            told = False
            while not _locked(fd, fcntl.LOCK_EX):
                attempt += 1
                holder = _read_writer(fd)
                waited = time.monotonic() - started
                # A holder that has not said who it is yet (an instant between its lock and its write) is looked
                # at again, for up to a second, rather than taken for a sync.
                says_sync = not holder.brief and (holder.pid != 0 or waited > _UNSAID_GRACE)
                if attempt >= _ACQUIRE_TRIES and (says_sync or waited > BRIEF_WAIT_LIMIT):
                    raise StoreError(_busy(store_path, holder, waited if holder.brief else None))
                if holder.brief and attempt >= _ACQUIRE_TRIES and not told:
                    told = True
                    if on_wait is not None:
                        on_wait(
                            f"waiting for the running {holder.what} (PID {holder.pid or 'unknown'}) to finish writing"
                            f" the store {store_path}…"
                        )
                time.sleep(0.02 if attempt < _ACQUIRE_TRIES else 0.05)
            # A sync writes its PID alone, as every version did (docs/STORE.md); any other writer says what it is.
            kind, name = (_BRIEF, brief) if brief is not None else (_RUN, what)
            mark = "" if brief is None and what == SYNC else f"{kind}{' '.join(name.split())}\n"
            said = f"{os.getpid()}\n{mark}".encode()
            os.pwrite(fd, said, 0)  # then cut what a longer earlier text left: the file is never seen empty
            os.ftruncate(fd, len(said))
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it); the file stays, holding a PID nobody locks."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _busy(store_path: str, holder: Writer, waited: float | None) -> str:
    """The refusal: who writes the store, and what to do."""
    after = "" if waited is None else f" (waited {waited:.0f} s)"
    return (
        f"another usageledger process (PID {holder.pid or 'unknown'}, a running {holder.what}) is writing to the store"
        f" {store_path}{after}: wait for it to finish, or pass another --store"
    )


def writer(store_path: str) -> Writer | None:
    """The usageledger process writing the store now, or None when none is."""
    try:
        fd = os.open(store_path + LOCK_SUFFIX, os.O_RDONLY)
    except OSError:
        return None
    try:
        if _locked(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_writer(fd)
    finally:
        os.close(fd)


def writer_pid(store_path: str) -> int | None:
    """The PID of the usageledger process writing the store now (0 when it did not say), or None when none is."""
    held = writer(store_path)
    return None if held is None else held.pid


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
