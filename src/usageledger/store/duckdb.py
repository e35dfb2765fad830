"""The DuckDB store (the default): one file, batches staged as Arrow tables.

DuckDB lets one process hold a file for writing, and then no other process may open it, even to read. A writing
store (a sync) therefore takes the writer lock beside the file (``<store>.lock``, see :mod:`._filelock`) and, while a
reader waits for its turn, closes the file between two transactions and opens it again once the reader is done. A
reading store waits for its turn (bounded, with one message through ``on_wait``) instead of failing.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

import duckdb

from usageledger.errors import StoreError
from usageledger.store._base import BaseStore
from usageledger.store._filelock import (
    LOCK_SUFFIX,
    READERS_SUFFIX,
    SYNC,
    ReaderSignal,
    WriterLock,
    reader_turn,
    writer,
)
from usageledger.store._types import DEMO_STORE, PreparedWindow, UpsertCounts, WindowWrite
from usageledger.store.schema import Dialect, TableSpec, tables

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["READ_WAIT_LIMIT", "WRITE_WAIT_LIMIT", "DuckDBStore"]

logger = logging.getLogger("usageledger.store")

_names = itertools.count(1)

SYNC_MEMORY_LIMIT: Final = "32MB"
"""DuckDB's buffer cache while a sync writes (:meth:`DuckDBStore.sync_settings`); lifted for the rest of the sync
if a transaction needs more (:meth:`DuckDBStore.commit_windows`)."""
TEMP_SUFFIX: Final = ".tmp"
"""DuckDB's folder for what does not fit its memory limit, beside the file (its default ``temp_directory``)."""
SYNC_THREADS: Final = 1
"""DuckDB's threads while a sync writes (:meth:`DuckDBStore.sync_settings`)."""

READ_WAIT_LIMIT: Final = 120.0
"""Seconds a reader waits for a running sync to release the store before it gives up (with one line)."""
WRITE_WAIT_LIMIT: Final = 600.0
"""Seconds a writer waits for readers (which hold the file while they read) before it gives up."""
_WATCH_EVERY: Final = 0.05
"""How often a writer looks for a waiting reader while it is idle (an instant's ``flock`` probe)."""
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")
_MAGIC: Final = b"DUCK"
"""Bytes 8 to 12 of every DuckDB database file."""
_TELL_WRITER_WAIT: Final = 1.0
"""How long a writer waits for readers before ``on_wait`` hears of it: a ``status`` or ``report`` reads for a moment
and is not worth a line; a program that keeps the store open (an export, a notebook) would hold a sync up silently
for up to :data:`WRITE_WAIT_LIMIT`."""
_FOREIGN_GRACE: Final = 1.0
"""A writer closing at the end of its run drops the file before its writer lock: look twice before blaming
another program."""

WaitHandler = Callable[[str], None]


class DuckDBStore(BaseStore):
    """A DuckDB file (or ``:memory:``): one writing process at a time, readers between its transactions.

    ``on_wait`` hears, once, that a reading store waits for a running sync to release the file, or that a writing
    one waits for a brief writer, or for readers that keep the file open past a moment. ``brief`` names a writing
    store's brief write (``credit add``), which another writer waits for instead of being refused (see
    :meth:`WriterLock.acquire`); ``what`` names a long one (``sync``, the default, ``demo``, ``init``) in the
    messages of the processes that find the store taken.
    """

    dialect: ClassVar[Dialect] = "duckdb"
    key_indexed: ClassVar[bool] = False
    this_schema: ClassVar[str] = "table_schema = current_schema() AND table_catalog = current_database()"

    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        on_wait: WaitHandler | None = None,
        brief: str | None = None,
        what: str = SYNC,
    ) -> None:
        super().__init__(str(path))
        self.path = str(path)
        self.read_only = read_only
        self._on_wait = on_wait
        self._mutex = threading.RLock()
        self._busy = 0  # transactions and result streams in progress: the file may not be closed under them
        # A writer gives the file to waiting readers only once it has migrated: before that the file may hold no
        # schema yet (a store this open created) or an older one, and a reader would fail on it (see migrate()).
        self._migrated = False
        self._writer: WriterLock | None = None
        self._readers: ReaderSignal | None = None
        self._turn = contextlib.ExitStack()  # a reader's turn, held until it closes
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._held: weakref.finalize[[tuple[int, int]], DuckDBStore] | None = None  # while it holds the file
        self._uncapped: str | None = None  # while a sync's cap holds: the memory limit it replaced
        self._fresh: list[str] = []  # the lock files this open created
        try:
            if self.path in ("", ":memory:"):
                self._con = _connect(self.path, read_only=read_only)
            elif read_only:
                self._con = self._holding(self._open_reader())
            else:
                _check_location(self.path)
                _check_writable(self.path)
                # Lock files this open creates are removed again if it fails (a typo must leave nothing behind).
                fresh = [self.path + s for s in (LOCK_SUFFIX, READERS_SUFFIX) if not os.path.exists(self.path + s)]
                try:
                    self._writer = WriterLock.acquire(self.path, brief=brief, what=what, on_wait=on_wait)
                    # Held now, so the files it made are this open's to remove (see _release_files): if the .readers
                    # cannot be opened next, or the store is then refused (another program's file, a newer schema).
                    self._fresh = fresh
                    self._readers = ReaderSignal(self.path)
                except OSError as exc:  # what _check_writable could not foresee (an ACL, a file made this instant)
                    lock = exc.filename or self.path + LOCK_SUFFIX
                    reason = (exc.strerror or str(exc)).lower()
                    raise _unwritable(self.path, f"its lock file {lock} could not be opened", reason=reason) from exc
                # The header is read under the writer lock: before it, a file another sync is creating this moment
                # may not have its header yet, and was refused as "not a DuckDB database file".
                if os.path.exists(self.path):
                    _check_header(self.path)
                self._con = self._holding(self._open_writer())
                foreign = foreign_tables(self._con)
                if foreign:
                    raise _foreign(self.path, foreign)
                self._watcher = threading.Thread(target=self._watch, name="usageledger-store-watch", daemon=True)
                self._watcher.start()
        except BaseException:
            con, self._con = self._con, None
            if con is not None:  # a file refused once open (another program's): closed now, not when collected
                with contextlib.suppress(duckdb.Error):  # never hide why it was refused
                    con.close()
            self._let_go()
            self._release_files()
            raise

    # --- opening and giving way ---------------------------------------------------------------------------

    def _open_reader(self) -> duckdb.DuckDBPyConnection:
        """Open read-only; while a usageledger sync holds the file, take a turn and wait (bounded)."""
        if os.path.isdir(self.path):
            raise _directory(self.path)
        if not os.path.exists(self.path):
            raise StoreError(no_store_message(self.path))
        _check_header(self.path)
        started = time.monotonic()
        attempts = _Attempts(self.path)
        waiting = False
        delay = 0.02
        while True:
            held = attempts.connect(read_only=True)
            if isinstance(held, duckdb.DuckDBPyConnection):
                return held
            now = time.monotonic()
            holder = writer(self.path)
            if holder is None:  # not a usageledger writer (or one that is just letting go: look again first)
                try:
                    attempts.foreign(held)
                except StoreError as exc:
                    hidden = _unreadable_lock(self.path)
                    if hidden is None:
                        raise
                    found = _LOCK_HOLDER.search(str(held))
                    raise _hidden_writer(self.path, hidden, found.group(2) if found else "unknown") from exc
            elif not waiting:
                # A .readers it may not open: no turn can be asked for, and waiting would last the whole limit.
                hidden = _unreadable_lock(self.path)
                if hidden is not None:
                    raise _hidden_writer(self.path, hidden, str(holder.pid or "unknown"))
                waiting = True
                self._turn.enter_context(reader_turn(self.path))
                if self._on_wait is not None:
                    self._on_wait(
                        f"waiting for the running {holder.what} (PID {holder.pid or 'unknown'}) to release the store"
                        f" {self.path}…"
                    )
            if now - started > READ_WAIT_LIMIT:
                what, pid = (holder.what, holder.pid) if holder is not None else ("sync", 0)
                raise StoreError(
                    f"the store {self.path} stayed busy: the running {what} (PID {pid or 'unknown'}) did not release"
                    f" it within {READ_WAIT_LIMIT:.0f} s; run again when it has finished"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _open_writer(self) -> duckdb.DuckDBPyConnection:
        """Open for writing once no reader waits; wait (bounded) while readers hold the file, and say so through
        ``on_wait`` once the wait outlasts a moment (:data:`_TELL_WRITER_WAIT`), naming a process that holds it."""
        started = time.monotonic()
        attempts = _Attempts(self.path)
        told = False
        said = False
        reader: re.Match[str] | None = None
        delay = 0.01
        while True:
            if self._readers is None or not self._readers.waiting():
                held = attempts.connect(read_only=False)
                if isinstance(held, duckdb.DuckDBPyConnection):
                    return held
                # DuckDB adds "you would be able to open this database in read-only mode" when readers hold it.
                reader = _LOCK_HOLDER.search(str(held)) if "read-only mode" in str(held) else None
                if reader is None:
                    attempts.foreign(held)
            if not told:
                told = True
                logger.info("waiting for readers of the store %s to finish", self.path)
            if not said and reader is not None and self._on_wait and time.monotonic() - started > _TELL_WRITER_WAIT:
                said = True
                who = f"process {reader.group(2)} ({os.path.basename(reader.group(1))})"
                self._on_wait(
                    f"waiting for {who}, which has the store {self.path} open to read, to close it (at most"
                    f" {WRITE_WAIT_LIMIT:.0f} s)…"
                )
            if time.monotonic() - started > WRITE_WAIT_LIMIT:
                raise StoreError(
                    f"readers kept the store {self.path} open for {WRITE_WAIT_LIMIT:.0f} s: stop the long-running"
                    " report or export, then run the sync again"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _step_aside(self) -> None:
        """Close the file so waiting readers can open it; the next use opens it again (after them)."""
        con, self._con = self._con, None
        if con is not None:
            logger.info("a reader is waiting: the store %s is released until it has read", self.path)
            con.close()
            self._let_go()

    def _holding(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """``con``, with its file noted as held by this process (see :class:`_HeldFiles`) until it is closed."""
        key = _HELD.hold(self.path)
        if key is not None:  # a store dropped without close() lets go when it is collected, as its connection does
            self._held = weakref.finalize(self, _HELD.let_go, key)
        return con

    def _let_go(self) -> None:
        if self._held is not None:
            self._held()  # once: a finalizer runs at most once
            self._held = None

    def _watch(self) -> None:
        """While idle (between transactions, waiting on the API), give the file to a waiting reader."""
        while not self._stop.wait(_WATCH_EVERY):
            readers = self._readers
            if readers is None or not self._migrated or not readers.waiting():
                continue
            if not self._mutex.acquire(blocking=False):
                continue
            try:
                if self._busy == 0:
                    self._step_aside()
            finally:
                self._mutex.release()

    @contextlib.contextmanager
    def _use(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection, held for the block; a writer first gives way to waiting readers, then reopens."""
        with self._mutex:
            if self._readers is not None and self._busy == 0:
                if self._con is not None and self._migrated and self._readers.waiting():
                    self._step_aside()
                if self._con is None:
                    self._con = self._holding(self._open_writer())
            if self._con is None:
                raise self.closed_error(str(self.path))
            yield self._con

    def migrate(self) -> list[str]:
        """:meth:`BaseStore.migrate`, holding the file from the writer's open to the last migration: a waiting
        reader gets its turn once the schema is whole, never before the first migration (a new file has no tables:
        it would say there is no store) or between two (it would see an older schema and say so)."""
        with self._mutex:
            with self._use():
                pass  # open if a reader had the file (it cannot get it from here on until the schema is whole)
            self._busy += 1
        try:
            applied = super().migrate()
            self._migrated = True
            return applied
        finally:
            with self._mutex:
                self._busy -= 1

    def _release_files(self) -> None:
        if not self._migrated:
            # An open that never got as far as a migrated store (refused, failed, or a probe such as `doctor`'s)
            # leaves no lock file it made: a typo or a refused file must leave nothing behind. Still under the writer
            # lock, so no other writer is using them.
            for created in self._fresh:
                with contextlib.suppress(OSError):
                    os.unlink(created)
        if self._readers is not None:
            self._readers.close()
            self._readers = None
        if self._writer is not None:
            # DuckDB's spill folder (a sync's big transactions under its memory cap): DuckDB empties it, but leaves
            # the folder itself when an earlier process was killed mid-spill. Only an empty one goes.
            with contextlib.suppress(OSError):
                os.rmdir(self.path + TEMP_SUFFIX)
            self._writer.release()
            self._writer = None
        self._turn.close()

    # --- the back end ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _outer_transaction(self) -> Iterator[None]:
        with self._use() as con:
            con.begin()
            self._busy += 1
            try:
                try:
                    yield
                except BaseException:
                    con.rollback()
                    raise
                try:
                    con.commit()
                except duckdb.Error as exc:
                    if _is_full(exc):
                        raise _disk_full(self.path, exc) from exc
                    raise StoreError(f"DuckDB commit failed: {_first_line(exc)}") from exc
            finally:
                self._busy -= 1

    @contextlib.contextmanager
    def sync_settings(self) -> Iterator[None]:
        """While a sync writes: DuckDB works in one thread (:data:`SYNC_THREADS`) and its buffer cache is capped at
        :data:`SYNC_MEMORY_LIMIT`; both settings are restored afterwards.

        One thread: a sync's transactions are a few thousand rows each, too small for DuckDB's parallel insert to
        gain, while the sync's own threads (the event loop, decoding pages) and often the API's other work want the
        cores; a year's CLI sync took 6 % less CPU and 4 % less wall time in one (``bench/BENCHMARKS.md``).

        The cap: a sync appends and re-reads only the windows it writes, so cached table blocks are of no use to
        it, and uncapped they grew with the range (a year's hourly sync peaked at 302-311 MB with 128 MB, 236-244
        MB with 32 MB: ``bench/BENCHMARKS.md``). DuckDB spills a big transaction's rows to the file (a year's
        485,000 rows commit in one transaction under the cap), but a transaction that still needs more is not
        failed: :meth:`commit_windows` lifts the cap and commits it again. A store created before the key moved
        to a check at commit still holds a primary-key index, which grows with the table and cannot be evicted, so
        such a store is left uncapped.
        """
        names = [spec.name for spec in tables()]
        indexed = self.query(
            "SELECT COUNT(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
            f" AND table_name IN ({', '.join(['%s'] * len(names))})",
            names,
        )[0][0]
        settings = (
            {"threads": str(SYNC_THREADS)}
            if indexed
            else {"threads": str(SYNC_THREADS), "memory_limit": SYNC_MEMORY_LIMIT}
        )
        before = {name: self.query(f"SELECT current_setting('{name}')")[0][0] for name in settings}
        try:
            for name, value in settings.items():
                self.execute(f"SET {name} = '{value}'")
            self._uncapped = before.get("memory_limit")
            yield
        finally:
            self._uncapped = None
            for name, value in before.items():
                with contextlib.suppress(StoreError):  # never hide why the sync ended behind a setting not restored
                    self.execute(f"SET {name} = '{value}'")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._use() as con:
            try:
                result = con.execute(sql.replace("%s", "?"), list(params))
                desc = result.description
                if desc and len(desc) == 1 and desc[0][0] == "Count":
                    row = result.fetchone()
                    return int(row[0]) if row else 0
                return -1
            except duckdb.Error as exc:
                raise _statement_error(self.path, exc) from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._use() as con:
            try:
                return con.execute(sql.replace("%s", "?"), list(params)).fetchall()
            except duckdb.Error as exc:
                raise _statement_error(self.path, exc) from exc

    def iter_batches(self, sql: str, params: Sequence[Any], schema: pa.Schema, batch_rows: int) -> Iterator[pa.Table]:
        import pyarrow as pa

        # The lock is not held across yields (a consumer may stop in another thread, or never): ``_busy`` alone keeps
        # a writer from closing the file under the open cursor.
        with self._use() as con:
            cur = con.cursor()
            self._busy += 1
        try:
            relation = cur.sql(sql.replace("%s", "?"), params=list(params))
            # DuckDB 2 renamed fetch_arrow_reader (now deprecated) to to_arrow_reader.
            to_reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
            reader = to_reader(batch_rows)
            for batch in reader:
                yield pa.Table.from_batches([batch]).cast(schema)
        except duckdb.Error as exc:
            raise _statement_error(self.path, exc) from exc
        finally:
            with self._mutex:
                self._busy -= 1
            cur.close()

    def _payload(self, spec: TableSpec, columns: dict[str, list[Any]]) -> pa.Table:
        import pyarrow as pa

        from usageledger._arrays import array_of  # not pa.array: it imports pandas (0.3 s, 50 MB) where installed

        schema = spec.arrow_schema()
        return pa.Table.from_arrays([array_of(columns[f.name], f.type) for f in schema], schema=schema)

    def commit_windows(self, writes: Sequence[WindowWrite | PreparedWindow]) -> list[UpsertCounts]:
        """:meth:`BaseStore.commit_windows`; under a sync's memory cap (:meth:`sync_settings`), a transaction that
        runs out of memory is rolled back, the cap lifted for the rest of the sync, and the transaction committed
        again: the cap saves memory, it never fails a sync."""
        try:
            return super().commit_windows(writes)
        except StoreError as exc:
            if self._uncapped is None or not isinstance(exc.__cause__, duckdb.OutOfMemoryException):
                raise
            limit, self._uncapped = self._uncapped, None
        logger.info(
            "a transaction needed more memory than the sync's DuckDB cap (%s): lifted to %s", SYNC_MEMORY_LIMIT, limit
        )
        self.execute(f"SET memory_limit = '{limit}'")
        return super().commit_windows(writes)

    def prepare_table(self, write: WindowWrite, table: pa.Table) -> PreparedWindow:
        """The table is the payload: DuckDB loads Arrow as it is."""
        return PreparedWindow(write, table.num_rows, table)

    def _merge(self, payloads: Sequence[Any]) -> pa.Table:
        import pyarrow as pa

        return payloads[0] if len(payloads) == 1 else pa.concat_tables(payloads)

    def _stage(self, spec: TableSpec, payload: Any) -> str:
        name = f"_incoming_{next(_names)}"
        with self._use() as con:
            con.register(name, payload)
        return name

    def _unstage(self, name: str) -> None:
        # A statement on the staged rows may have failed and aborted the transaction: its rollback, which follows,
        # drops the registration; raising here would hide that statement's error.
        with self._use() as con, contextlib.suppress(duckdb.TransactionException):
            con.unregister(name)

    def acquire_sync_lock(self, *, shared: bool = False) -> bool:
        """Always granted: a writing DuckDB store holds ``<store>.lock`` from open to close (see ``_filelock``)."""
        return True

    def release_sync_lock(self, *, shared: bool = False) -> None:
        """Nothing to release here: closing the store releases ``<store>.lock``."""

    def _migration_lock(self) -> None:
        """Nothing to do: only the holder of ``<store>.lock`` writes the file."""

    def close(self) -> None:
        """Close the file first, then drop the lock files: a next writer finds the file free once it has the lock."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        with self._mutex:
            con, self._con = self._con, None
            try:
                if con is not None:
                    con.close()
            finally:
                self._let_go()
                self._release_files()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, for ad-hoc SQL (reports, tests)."""
        with self._use() as con:
            return con


DEFAULT_ELSEWHERE = "pass --store (or set [store] url in usageledger.toml)"
"""How to read another store, when the caller does not say where its store came from."""


def no_store_message(path: str, elsewhere: str | None = None) -> str:
    """The one line a reading command gives for a store that does not exist; ``elsewhere`` says how to read another
    (the CLI names the place its store came from: ``change [store] url in c1.toml``). The demo's store beside it is
    named: after `scripts/demo`, `usageledger report` in the same folder was told only to run `usageledger sync`,
    which needs a key the newcomer does not have."""
    line = (
        f"no store at {path}: run `usageledger sync` to create it, or {elsewhere or DEFAULT_ELSEWHERE} to read another"
    )
    demo = Path(path).with_name(DEMO_STORE)
    if Path(path).name != DEMO_STORE and demo.is_file():
        line += f", such as the demo's beside it: --store {demo}"
    return line


def _connect(path: str, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path, read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB draws its own progress bar on the terminal for a statement that runs over 2 s (a big commit on a busy
    # machine): it would break `sync --quiet` and any output a command writes, so the store never shows it.
    con.execute("SET enable_progress_bar = false")
    return con


class _Attempts:
    """The connect attempts of one open, while another process may hold the file's lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._foreign_since: float | None = None

    def connect(self, *, read_only: bool) -> duckdb.DuckDBPyConnection | duckdb.Error:
        """A connection, or DuckDB's error when another process holds the lock; any other failure is raised."""
        try:
            return _connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            if "different configuration than existing connections" in str(exc):
                raise _held_here(self.path, read_only=read_only) from exc
            if _LOCK_HOLDER.search(str(exc)) is None:
                raise _open_error(self.path, exc) from exc
            return exc

    def foreign(self, held: duckdb.Error) -> None:
        """A program that is not a usageledger sync holds the lock: give up once it has held it past the grace."""
        now = time.monotonic()
        self._foreign_since = now if self._foreign_since is None else self._foreign_since
        if now - self._foreign_since > _FOREIGN_GRACE:
            raise _open_error(self.path, held) from held


def _check_location(path: str) -> None:
    """A writer's path must be a file (or nothing yet) in a folder that exists."""
    where = Path(path)
    if where.is_dir():
        raise _directory(path)
    folder = where.absolute().parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise StoreError(f"the folder {folder} of the store {path} {what}: create the folder, or pass another --store")


def _may(path: str, mode: int = os.W_OK) -> bool:
    """Whether this process may write ``path`` (a file, or a folder to create files in), or with ``mode`` read it,
    by its effective IDs: a writer checks before it creates anything (root may always)."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _check_writable(path: str) -> None:
    """A writer needs the store, and the lock files beside it, writable by its user: a store the user may only read
    (mode 0444, a folder of another user's or a read-only share) is refused in one line before a file is created or
    changed, and every reading command still reads it (a reader never writes beside the store)."""
    folder = Path(path).absolute().parent
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            raise _unwritable(
                path, f"its folder {folder} is on a read-only file system", reason="read-only file system"
            )
    if os.path.exists(path) and not _may(path):
        raise _unwritable(path, "the file is read-only for you")
    if not _may(str(folder)):  # where the lock files, DuckDB's log (.wal) and its spill folder go
        raise _unwritable(path, f"its folder {folder} is not writable by you, and a writer keeps files beside it")
    if (lock := _lock_without(path, os.W_OK)) is not None:
        raise _unwritable(path, f"its lock file {lock} is read-only for you")


def _unwritable(path: str, why: str, *, reason: str = "permission denied") -> StoreError:
    """The refusal of a writer that may not write the store: why, and what to do instead."""
    fix = (
        "reading commands (report, export, statement, status) still read it; to write it, run as its owner or copy it"
        " to a folder of yours and pass --store"
        if os.path.exists(path)
        else "pass a --store in a folder of yours"
    )
    return StoreError(f"cannot write {path}: {reason}; {why}: {fix}")


def _unreadable_lock(path: str) -> str | None:
    """A lock file beside the store that this process may not read (another user's, mode 0600), or None."""
    return _lock_without(path, os.R_OK)


def _lock_without(path: str, mode: int) -> str | None:
    """The first lock file beside the store that exists and that this process may not use with ``mode``, or None."""
    locks = (path + suffix for suffix in (LOCK_SUFFIX, READERS_SUFFIX))
    return next((lock for lock in locks if os.path.exists(lock) and not _may(lock, mode)), None)


def _hidden_writer(path: str, lock: str, pid: str) -> StoreError:
    """A reader that cannot see who writes the store, or cannot ask it for a turn: a lock file is not readable by
    this user. The holder is then most likely a usageledger writer of the store's owner, never "another program"."""
    return StoreError(
        f"the store {path} is being written (PID {pid}), and its lock file {lock} is not readable by you, so the"
        " writer cannot make way for you: run again when it has finished, or ask the store's owner to make its lock"
        " files readable (chmod a+r)"
    )


class _HeldFiles:
    """The DuckDB files this process holds open through its stores, by (device, inode), each with how many stores
    hold it.

    DuckDB keeps other processes out of its file with a POSIX record lock (``fcntl``), and the kernel drops every
    such lock a process holds on a file as soon as the process closes *any* descriptor of that file. A file this
    process holds is therefore never opened again to read its header (:func:`_check_header`): a second store of
    the same file in one process (a reader beside a writer, as a library user may open) read the header from a
    descriptor of its own, closed it, and so dropped the writer's lock; another process then opened the file while
    it was being written.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._stores: dict[tuple[int, int], int] = {}

    def hold(self, path: str) -> tuple[int, int] | None:
        """Note one more store holding ``path``; its key, for :meth:`let_go` (None for a file that is not there)."""
        key = _file_key(path)
        if key is not None:
            with self._mutex:
                self._stores[key] = self._stores.get(key, 0) + 1
        return key

    def let_go(self, key: tuple[int, int]) -> None:
        with self._mutex:
            left = self._stores.pop(key, 0) - 1
            if left > 0:
                self._stores[key] = left

    def held(self, path: str) -> bool:
        key = _file_key(path)
        with self._mutex:
            return key is not None and key in self._stores


def _file_key(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


_HELD: Final = _HeldFiles()


def _check_header(path: str) -> None:
    """An existing file must be a DuckDB database: DuckDB itself opens ``x.csv`` as an in-memory database instead.

    A file this process already holds is one (DuckDB opened it), and is not opened again: closing that second
    descriptor would drop DuckDB's lock on it (see :class:`_HeldFiles`)."""
    if _HELD.held(path):
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise StoreError(f"cannot read the DuckDB store {path}: {exc.strerror}; check its permissions") from exc
    if head[8:12] != _MAGIC:
        raise _not_duckdb(path)


def foreign_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables and views of a DuckDB file that holds no usageledger store (no ``schema_migrations``): another
    program's database, which usageledger never writes its tables into. Empty for a store, or for a file with no
    tables at all (as good as a new file)."""
    names = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_catalog = current_database() ORDER BY 1"
        ).fetchall()
    ]
    return [] if "schema_migrations" in names else names


def foreign_message(path: str, names: Sequence[str]) -> str:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"{path} is a DuckDB database of another program (it holds {shown}), not a usageledger store: pass another"
        " --store (at a new path, `usageledger sync` makes one)"
    )


def _foreign(path: str, names: Sequence[str]) -> StoreError:
    return StoreError(foreign_message(path, names))


def _not_duckdb(path: str) -> StoreError:
    return StoreError(
        f"{path} is not a DuckDB database file: pass the path of a usageledger store (a .duckdb file) with --store"
    )


def _directory(path: str) -> StoreError:
    return StoreError(
        f"the store {path} is a directory, not a DuckDB file: pass a file path such as"
        f" {os.path.join(path, 'usageledger.duckdb')} with --store"
    )


def _locked_by(path: str, program: str, pid: str) -> StoreError:
    return StoreError(
        f"the DuckDB store {path} is locked by process {pid} ({os.path.basename(program)}), which is not a running"
        " usageledger sync: close the store in that program, then run again"
    )


def _held_here(path: str, *, read_only: bool) -> StoreError:
    """DuckDB opens a file in one mode per process: a reader beside this process's own writer, or the reverse."""
    want, held = ("read", "write") if read_only else ("write", "read")
    return StoreError(
        f"cannot open the DuckDB store {path} to {want}: this program already has it open to {held} (DuckDB opens a"
        f" file one way per process); use the store already open, or close it first"
    )


def _open_error(path: str, exc: duckdb.Error) -> StoreError:
    """The real cause of a failed open, in one line."""
    text = str(exc)
    holder = _LOCK_HOLDER.search(text)
    if holder is not None:
        return _locked_by(path, holder.group(1), holder.group(2))
    if os.path.isdir(path):
        return _directory(path)
    if "not a valid DuckDB database file" in text:
        return _not_duckdb(path)
    if _is_damage(exc):
        return _damaged(path, exc)
    if _is_full(exc):  # replaying the WAL, or making a new store, on a full disk
        return _disk_full(path, exc)
    return StoreError(f"cannot open the DuckDB store {path}: {_first_line(exc)}")


def _is_damage(exc: BaseException) -> bool:
    """Whether DuckDB's error says the file is cut short or corrupt (a partial copy, `head -c`): it may say so when
    the file opens, or only when a statement reaches a missing block."""
    text = str(exc)
    return "Could not read enough bytes" in text or "Corrupt database file" in text


def _damaged(path: str, exc: BaseException) -> StoreError:
    return StoreError(
        f"the DuckDB store {path} is damaged or cut short (a partial copy?): restore it from a whole copy, or pass"
        f" another --store ({_first_line(exc)})"
    )


def _is_full(exc: BaseException) -> bool:
    """Whether DuckDB's error is a full disk or quota: a write to the store, its WAL or its spill folder failed."""
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _disk_full(path: str, exc: BaseException) -> StoreError:
    """A full disk, named with the store and the fix. The failed transaction is not kept, and every one committed
    before it is: DuckDB leaves ``<store>.wal`` on purpose and replays it when the store next opens (a sync on a
    3 MB disk, re-run once it had room, ended as a clean sync), so the line says to keep it, not to delete it."""
    return StoreError(
        f"the disk of the DuckDB store {path} is full ({_first_line(exc)}); what was written before stays and the"
        f" failed write was not kept: free some space, or move the store and its {os.path.basename(path)}.wal to a"
        " disk with room, then run the command again (keep the .wal file: it holds committed data DuckDB replays)"
    )


def _statement_error(path: str, exc: duckdb.Error) -> StoreError:
    """A failed statement, in one line: a full disk or a damaged file said so, anything else as DuckDB says it."""
    if _is_full(exc):
        return _disk_full(path, exc)
    return _damaged(path, exc) if _is_damage(exc) else StoreError(f"DuckDB: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
