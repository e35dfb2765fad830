"""What the DuckDB and PostgreSQL stores share: the write path, stream state, runs and migrations.

A back end supplies a connection, transactions, a way to stage a batch as a relation (Arrow for DuckDB, ``COPY``
into a temporary table for PostgreSQL) and a way to read batches back. Everything else is one SQL text, written
with ``%s`` placeholders, that both dialects accept.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from usageledger._secrets import redact_url_password
from usageledger.errors import ParameterError, StoreError
from usageledger.store import migrations, revisions, watermarks
from usageledger.store._columns import columns_of
from usageledger.store._types import (
    OrgRecord,
    PreparedWindow,
    RunningRun,
    RunOwner,
    RunTotals,
    StreamMark,
    StreamState,
    UpsertCounts,
    WindowWrite,
    to_datetime,
    to_unix,
)
from usageledger.store.schema import KEY_COLUMNS, Dialect, TableSpec, q, table_for, tables
from usageledger.store.streams import Stream

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["BaseStore"]

logger = logging.getLogger("usageledger.store")


_STREAM_COLUMNS = (
    "org, stream, endpoint, bucket_width, group_by, filters, is_default, watermark, last_run_id, last_run_at,"
    " last_status, last_error, row_count, last_inserted, last_updated, last_unchanged, last_deleted"
)


class _Queryable(Protocol):
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


def known_orgs(db: _Queryable) -> list[str]:
    """Every org the store ``db`` holds: registered by a sync, or named by one of its streams (sorted)."""
    return [r[0] for r in db.query("SELECT org FROM orgs UNION SELECT org FROM streams ORDER BY 1")]


def org_names(orgs: str | Iterable[str] | None) -> tuple[str, ...]:
    """The orgs a reading is limited to, in the order given and each once: one name, or several (``export --org
    a,b``); empty for every org (``None``, or an empty list)."""
    return tuple(dict.fromkeys([orgs] if isinstance(orgs, str) else orgs or ()))


def check_orgs(db: _Queryable, orgs: str | Iterable[str] | None, *, param: str = "--org", db_param: str = "db") -> None:
    """Refuse an org the store ``db`` holds no data for, in a :class:`ParameterError` naming ``param`` and the orgs
    it holds: the one check behind every ``--org`` that names orgs to read, the dashboard's and MCP's ``org``, the
    library's ``Scope(org=...)`` (``build_report``, ``reconcile``) and the ``org=`` of its other readers
    (``run_checks``, ``build_forecast``, ``build_statements``, ``changes``, ``deltas``, ``credit_balance``,
    ``build_keys``).

    ``None`` (no filter) passes; so does any org when the store holds none yet, whose commands each say "run
    ``usageledger sync`` first" their own way. One org given as a list (``close 2026-10 --org a,b``, where ``export``
    takes a list) is said to be one, and a name with a blank around it is quoted: both read "``a,b`` holds no data"
    or "``a`` holds no data" of an org the store lists.

    Each of those readers calls it first, so it is also where ``db`` (named ``db_param``) is checked to be an open
    store: a path given in its place failed deep inside, as "'str' object has no attribute 'query'".
    """
    if not callable(getattr(db, "query", None)):
        raise ParameterError(db_param, f"expected an open store (open_store(url)), got {type(db).__name__}")
    wanted = org_names(orgs)
    if not wanted:
        return
    known = known_orgs(db)
    unknown = [o for o in wanted if o not in known]
    if known and unknown:
        if isinstance(orgs, str) and "," in orgs:
            raise ParameterError(
                param, f"{orgs} is a list, and this takes one org (orgs: {', '.join(known)}); run it once for each"
            )
        verb = "holds" if len(unknown) == 1 else "hold"
        shown = ", ".join(repr(o) if o != o.strip() or not o.isprintable() else o for o in unknown)
        raise ParameterError(param, f"{shown} {verb} no data in this store (orgs: {', '.join(known)})")


class BaseStore(ABC):
    """The store interface, over one connection. Not thread-safe: one writer at a time."""

    dialect: ClassVar[Dialect]
    key_indexed: ClassVar[bool] = True
    """Whether the endpoint tables hold their key as a primary key (see :meth:`TableSpec.create_sql`); when not,
    each write's key is checked at commit."""
    this_schema: ClassVar[str]
    """The dialect's condition on ``information_schema.columns`` for "a table of this store"."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._depth = 0
        self._written: set[str] = set()
        """The endpoint tables that commits wrote since the last :meth:`analyse_new_tables`."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the store's ``with`` block ended)."""

    def __repr__(self) -> str:
        """``DuckDBStore('ledger.duckdb')``, ``PostgresStore('postgresql://u:***@db/x', closed)``: what a notebook
        shows for the store. It was ``<usageledger.store.duckdb.DuckDBStore object at 0x7f...>``, which said neither
        which store nor whether it was still open; a URL's password is never shown."""
        state = [name for name, on in (("read_only", getattr(self, "read_only", False)), ("closed", self.closed)) if on]
        return f"{type(self).__name__}({redact_url_password(self.url)!r}{''.join(', ' + s for s in state)})"

    def closed_error(self, shown: str) -> StoreError:
        """The one refusal of a store used after its ``close()`` (or its ``with`` block): what was closed and the fix.
        PostgreSQL's said the connection was lost and to wait for the server, DuckDB's gave no fix."""
        return StoreError(
            f"the store {shown} is closed (close() was called, or its with block ended); open it again with"
            " open_store(...)"
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction: committed on success, rolled back on any exception. A nested call joins the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with self._outer_transaction():
                yield
        finally:
            self._depth = 0

    # --- what a back end supplies -------------------------------------------------------------------------

    @abstractmethod
    def _outer_transaction(self) -> AbstractContextManager[None]:
        """The back end's own transaction (never nested): commit on success, roll back on any exception."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed (-1 when not known)."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query and fetch every row."""

    @abstractmethod
    def iter_batches(self, sql: str, params: Sequence[Any], schema: pa.Schema, batch_rows: int) -> Iterator[pa.Table]:
        """Run one query and yield its rows as Arrow tables of ``schema``, ``batch_rows`` at a time."""

    @abstractmethod
    def _payload(self, spec: TableSpec, columns: dict[str, list[Any]]) -> Any:
        """Turn a batch (column lists, times as Unix ints) into what ``_stage`` loads (CPU only, no I/O)."""

    @abstractmethod
    def _merge(self, payloads: Sequence[Any]) -> Any:
        """One payload holding the rows of several (of the same table)."""

    @abstractmethod
    def _stage(self, spec: TableSpec, payload: Any) -> str:
        """Stage a payload as a relation for this transaction; its name."""

    @abstractmethod
    def _unstage(self, name: str) -> None:
        """Drop a staged relation."""

    def _analyse_new(self, tables: Sequence[str]) -> None:
        """Statistics for those of ``tables`` that the database has never analysed; never raises. Nothing here: a
        back end whose planner needs them supplies it (PostgreSQL's)."""
        return

    def _table_columns(self) -> dict[str, list[str]]:
        """``{table: [column, ...]}`` of the tables and views that exist."""
        out: dict[str, list[str]] = {}
        for table, column in self.query(
            "SELECT table_name, column_name FROM information_schema.columns"
            f" WHERE {self.this_schema} ORDER BY table_name, ordinal_position"
        ):
            out.setdefault(table, []).append(column)
        return out

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def acquire_sync_lock(self, *, shared: bool = False) -> bool:
        """Take the store's sync lock; False when another process holds it.

        Syncs take it ``shared`` (several workers may write one PostgreSQL store, each holding the streams it syncs
        with :meth:`try_lock_stream`); ``demo --remove``, which deletes whole orgs, takes it exclusive.
        """

    @abstractmethod
    def release_sync_lock(self, *, shared: bool = False) -> None:
        """Release the sync lock (taken the same way)."""

    def try_lock_stream(self, org: str, stream_id: str) -> bool:
        """Take the lock of one (org, stream) for this connection; False when another worker holds it.

        A DuckDB file has one writer (``<store>.lock``), so this is always granted there; PostgreSQL takes a
        session-level advisory lock, which the server drops when the connection ends, however it ends.
        """
        return True

    def unlock_stream(self, org: str, stream_id: str) -> None:
        """Release the lock of one (org, stream) (nothing to release on DuckDB: closing the store drops its lock)."""
        return None

    def run_is_live(self, run_id: str) -> bool | None:
        """Whether the process of a run marked ``running`` still holds it: ``None`` when the store cannot tell.

        PostgreSQL knows (a run holds an advisory lock on its id from ``begin_run`` to ``finish_run``, dropped by the
        server when its connection dies, on any host); a DuckDB file cannot tell.
        """
        return None

    def lock_in_transaction(self, *key: str, shared: bool = False) -> None:
        """Inside a transaction: wait until no other connection's transaction holds ``key``, then hold it until this
        one ends (PostgreSQL's transaction advisory lock), so two writers of one thing (an org's directory) take
        turns, the later one reading what the first committed. ``shared``: held beside other shared holders, waited
        for by an exclusive one (the syncs' commits, and a ``close`` that marks the revision log). A DuckDB file has
        one writer: nothing to wait for."""
        return None

    @abstractmethod
    def _migration_lock(self) -> None:
        """Serialise migrations between processes (inside the migration's transaction)."""

    # --- migrations ---------------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the pending migrations, all in one transaction; the names applied.

        One transaction: a store is never left between two migrations (an upgrade that fails leaves the store as
        it was, and a reader never sees it half-way), and a new store is made in one commit, not one per step.
        """
        if not migrations.pending(self.applied_migrations()):
            # Every open of a current store comes here: it reads what was applied and writes nothing (no lock, no
            # DDL). A migration that another process commits meanwhile is its own; one that is pending is applied
            # below, where what is pending is read again under the lock.
            return []
        applied_now: list[str] = []
        with self.transaction():
            self._migration_lock()  # another process may have migrated meanwhile: what is pending is read under it
            self.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "name TEXT PRIMARY KEY, seq INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            done = self.applied_migrations()
            at = datetime.now(UTC)
            for migration in migrations.pending(done):
                for sql in migration.statements(self.dialect, self._table_columns()):
                    self.execute(sql)
                self.execute(
                    "INSERT INTO schema_migrations (name, seq, applied_at) VALUES (%s, %s, %s)",
                    (migration.name, len(done) + len(applied_now) + 1, at),
                )
                applied_now.append(migration.name)
        for name in applied_now:
            logger.info("applied migration %s", name)
        return applied_now

    def applied_migrations(self) -> list[str]:
        """Names of the applied migrations, in the order they ran; a :class:`StoreError` when a newer usageledger
        made the store (it lists a migration this code does not know): every command, reading or writing, asks this
        before anything else, so none reads a schema it does not know or migrates over it."""
        if not self.query(
            f"SELECT 1 FROM information_schema.tables WHERE table_name = 'schema_migrations' AND {self.this_schema}"
        ):
            return []
        applied = [r[0] for r in self.query("SELECT name FROM schema_migrations ORDER BY seq")]
        newer = migrations.unknown(applied)
        if newer:
            raise StoreError(
                f"the store {redact_url_password(self.url)} was made by a newer usageledger (its schema has"
                f" {', '.join(newer)}, which this version does not know): upgrade usageledger to use it"
            )
        return applied

    def pending_migrations(self) -> list[str]:
        return [m.name for m in migrations.pending(self.applied_migrations())]

    def identity(self) -> str:
        """The store's identity, a UUID made when it was created (or first migrated) and kept for its life: what
        tells this store's exports from another's."""
        return str(self.query("SELECT id FROM store_identity")[0][0])

    # --- streams and runs ---------------------------------------------------------------------------------

    def register_stream(self, org: str, stream: Stream, *, at: int | None = None) -> StreamState:
        """Record a stream (idempotent) and return its state."""
        return self.register_streams([(org, stream)], at=at)[0]

    def register_streams(self, pairs: Sequence[tuple[str, Stream]], *, at: int | None = None) -> list[StreamState]:
        """Record each ``(org, stream)`` (idempotent) and return their states, in ``pairs``' order. A new stream is
        recorded as registered at ``at`` (default: now), with the next number of the revision log's sequence: a
        reading of the past (``--as-of``, a closed month) leaves out the streams registered after it.

        One statement and one transaction for all of them: on DuckDB an ``INSERT ... ON CONFLICT`` costs about
        10 ms a statement, so a sync's twelve streams registered one by one cost 120-170 ms before its first
        request, against about 15 ms together."""
        if not pairs:
            return []
        row = (
            "(CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TEXT),"
            " CAST(%s AS TEXT), CAST(%s AS BOOLEAN))"
        )
        params: list[Any] = []
        for org, stream in pairs:
            params += [
                org,
                stream.id,
                stream.endpoint.name,
                stream.bucket_width,
                ",".join(stream.group_by),
                stream.filters_json,
                stream.is_default,
            ]
        registered = to_datetime(int(datetime.now(UTC).timestamp()) if at is None else at)
        with self.transaction():
            # The number is drawn as a log write's is: never beside a close drawing its mark (``closes``).
            self.lock_in_transaction(*revisions.LOG_WRITES, shared=True)
            # Only the new ones draw a number (a sync registers its every stream each run).
            self.execute(
                "INSERT INTO streams (org, stream, endpoint, bucket_width, group_by, filters, is_default,"
                " registered_at, registered_seq) SELECT v.org, v.stream, v.endpoint, v.width, v.group_by, v.filters,"
                " v.is_default, %s, nextval('revisions_seq')"
                f" FROM (VALUES {', '.join([row] * len(pairs))})"
                " AS v(org, stream, endpoint, width, group_by, filters, is_default)"
                " WHERE NOT EXISTS (SELECT 1 FROM streams AS s WHERE s.org = v.org AND s.stream = v.stream)"
                " ON CONFLICT (org, stream) DO NOTHING",
                [registered, *params],
            )
        wanted = " OR ".join(["(org = %s AND stream = %s)"] * len(pairs))
        rows = self.query(
            f"SELECT {_STREAM_COLUMNS} FROM streams WHERE {wanted}", [v for org, st in pairs for v in (org, st.id)]
        )
        states = {(state.org, state.stream): state for state in map(_state, rows)}
        return [states[(org, stream.id)] for org, stream in pairs]

    def stream_state(self, org: str, stream_id: str) -> StreamState | None:
        rows = self.query(f"SELECT {_STREAM_COLUMNS} FROM streams WHERE org = %s AND stream = %s", (org, stream_id))
        return _state(rows[0]) if rows else None

    def stream_states(self) -> list[StreamState]:
        """Every stream of every org, ordered by org then stream."""
        return [_state(r) for r in self.query(f"SELECT {_STREAM_COLUMNS} FROM streams ORDER BY org, stream")]

    def mark_stream(
        self, org: str, stream_id: str, *, run_id: str, at: int, status: str, error: str | None = None
    ) -> None:
        """Set a stream's last run, status and error."""
        self.mark_streams([StreamMark(org, stream_id, status, error)], run_id=run_id, at=at)

    def mark_streams(self, marks: Sequence[StreamMark], *, run_id: str, at: int) -> None:
        """Set the last run, status and error of each stream in ``marks``, in one statement (a sync marks all its
        streams at its start and at its end: one ``UPDATE`` each time, not one a stream)."""
        if not marks:
            return
        values = ", ".join(["(%s, %s, %s, CAST(%s AS TEXT))"] * len(marks))
        counters = ", ".join(
            f"{c} = CASE WHEN t.last_run_id = %s THEN t.{c} ELSE 0 END"
            for c in ("last_inserted", "last_updated", "last_unchanged", "last_deleted")
        )
        with self.transaction():
            self.execute(
                f"UPDATE streams AS t SET last_run_at = %s, last_status = v.status, last_error = v.error, {counters},"
                f" last_run_id = %s FROM (VALUES {values}) AS v(org, stream, status, error)"
                " WHERE t.org = v.org AND t.stream = v.stream",
                [to_datetime(at), *[run_id] * 5, *(v for m in marks for v in (m.org, m.stream_id, m.status, m.error))],
            )

    def begin_run(self, run_id: str, *, at: int, command: str, owner: RunOwner | None = None) -> None:
        """Record a run as ``running``, with the process that runs it (how a dead one is found out later)."""
        pid, host, started = (None, None, None) if owner is None else (owner.pid, owner.host, owner.started)
        with self.transaction():
            self.execute(
                "INSERT INTO sync_runs (run_id, started_at, status, command, pid, host, pid_started)"
                " VALUES (%s, %s, 'running', %s, %s, %s, %s)",
                (run_id, to_datetime(at), command, pid, host, started),
            )

    def running_runs(self) -> list[RunningRun]:
        """The runs still marked ``running``, oldest first, with their processes."""
        rows = self.query(
            "SELECT run_id, pid, host, pid_started FROM sync_runs WHERE status = 'running' ORDER BY started_at"
        )
        return [RunningRun(r[0], None if r[1] is None else RunOwner(int(r[1]), r[2] or "", r[3])) for r in rows]

    def abandon_runs(self, run_ids: Sequence[str], *, at: int, error: str) -> None:
        """Mark runs whose process is gone ``abandoned``, and their streams and directory refreshes that were still
        ``running`` too."""
        with self.transaction():
            for run_id in run_ids:
                self.execute(
                    "UPDATE sync_runs SET status = 'abandoned', finished_at = %s, error = %s"
                    " WHERE run_id = %s AND status = 'running'",
                    (to_datetime(at), error, run_id),
                )
                self.execute(
                    "UPDATE streams SET last_status = 'abandoned', last_error = %s"
                    " WHERE last_run_id = %s AND last_status = 'running'",
                    (error, run_id),
                )
                self.execute(
                    "UPDATE directory_refreshes SET status = 'abandoned', finished_at = %s, error = %s"
                    " WHERE run_id = %s AND status = 'running'",
                    (to_datetime(at), error, run_id),
                )

    # --- the org registry ---------------------------------------------------------------------------------

    def orgs(self) -> list[OrgRecord]:
        """Every org the store holds data for, and whether that data is synthetic."""
        rows = self.query("SELECT org, synthetic, source, registered_at FROM orgs ORDER BY org")
        return [OrgRecord(r[0], bool(r[1]), r[2], to_unix(r[3])) for r in rows]

    def known_orgs(self) -> list[str]:
        """Every org the store holds: registered by a sync, or named by one of its streams (sorted)."""
        return known_orgs(self)

    def check_orgs(self, orgs: str | Iterable[str] | None, *, param: str = "--org") -> None:
        """Refuse an org the store holds no data for (:func:`check_orgs`, the one check)."""
        check_orgs(self, orgs, param=param)

    def check_streams(self, streams: Iterable[str] | None, *, param: str = "--stream") -> None:
        """Refuse a stream ID the store does not hold, like :meth:`check_orgs` (an unknown one exported a header
        and nothing else, exit 0). ``None`` or empty passes; so does any ID when the store holds no stream yet."""
        wanted = [streams] if isinstance(streams, str) else list(streams or ())  # one ID, not its characters
        known = sorted({s.stream for s in self.stream_states()})
        unknown = [s for s in wanted if s not in known]
        if known and unknown:
            shown = ", ".join(known[:6]) + (f" and {len(known) - 6} more" if len(known) > 6 else "")
            verb = "is" if len(unknown) == 1 else "are"
            raise ParameterError(
                param, f"{', '.join(unknown)} {verb} not a stream of this store (see `usageledger status`: {shown})"
            )

    def register_org(self, org: str, *, synthetic: bool, source: str, at: int, replace: bool = False) -> None:
        """Record an org (idempotent: the first record stands, unless ``replace``; callers check :meth:`orgs` before
        writing)."""
        on_conflict = (
            "DO UPDATE SET synthetic = excluded.synthetic, source = excluded.source,"
            " registered_at = excluded.registered_at"
            if replace
            else "DO NOTHING"
        )
        with self.transaction():
            self.execute(
                "INSERT INTO orgs (org, synthetic, source, registered_at) VALUES (%s, %s, %s, %s)"
                f" ON CONFLICT (org) {on_conflict}",
                (org, synthetic, source, to_datetime(at)),
            )

    def empty_orgs(self) -> set[str]:
        """The registered orgs that hold nothing: no stream of theirs has a watermark or a row, and no directory.

        A first run that reached nothing (a mistyped base URL, a refused key) leaves such a record; it says nothing
        about where the store's data comes from.
        """
        rows = self.query(
            "SELECT org FROM orgs"
            " WHERE org NOT IN (SELECT org FROM streams WHERE watermark IS NOT NULL OR row_count > 0)"
            " AND org NOT IN (SELECT org FROM directory_versions)"
        )
        return {r[0] for r in rows}

    def delete_org(self, org: str) -> int:
        """Delete an org's rows from every table that holds any (``demo --remove``: a synthetic org goes whole, so
        nothing of it is ever read with a real org of the same name synced later); the endpoint rows deleted."""
        deleted = 0
        with self.transaction():
            existing = self._table_columns()
            for spec in tables():
                if spec.name in existing:
                    deleted += max(self.execute(f"DELETE FROM {spec.name} WHERE org = %s", (org,)), 0)
            for log in revisions.log_tables():  # the org's data goes whole, its history with it
                if log in existing:
                    self.execute(f"DELETE FROM {log} WHERE org = %s", (org,))
            if "closed_months" in existing:
                self.execute("DELETE FROM closed_months WHERE org = %s", (org,))
            if watermarks.LOG in existing:
                self.execute(f"DELETE FROM {watermarks.LOG} WHERE org = %s", (org,))
            if "credit_topups" in existing:  # its top-ups went into a real org's balance of the same name
                self.execute("DELETE FROM credit_topups WHERE org = %s", (org,))
            self.execute("DELETE FROM streams WHERE org = %s", (org,))
            self.execute("DELETE FROM directory_versions WHERE org = %s", (org,))  # its names go with its data
            if "directory_refreshes" in existing:
                self.execute("DELETE FROM directory_refreshes WHERE org = %s", (org,))
            self.execute("DELETE FROM orgs WHERE org = %s", (org,))
        return deleted

    def finish_run(self, run_id: str, *, at: int, status: str, totals: RunTotals, error: str | None = None) -> None:
        c = totals.counts
        with self.transaction():
            self.execute(
                "UPDATE sync_runs SET finished_at = %s, status = %s, streams = %s, windows = %s, requests = %s,"
                " inserted = %s, updated = %s, unchanged = %s, deleted = %s, error = %s WHERE run_id = %s",
                (
                    to_datetime(at),
                    status,
                    totals.streams,
                    totals.windows,
                    totals.requests,
                    c.inserted,
                    c.updated,
                    c.unchanged,
                    c.deleted,
                    error,
                    run_id,
                ),
            )

    # --- the write path -----------------------------------------------------------------------------------

    def commit_window(self, write: WindowWrite) -> UpsertCounts:
        """Upsert one window's rows, delete the rows that vanished from it, and store the watermark: one transaction."""
        return self.commit_windows([write])[0]

    def prepare(self, write: WindowWrite) -> PreparedWindow:
        """Check a window and convert its rows for loading: pure CPU, so a caller can do it off the writer thread."""
        spec = table_for(write.stream.endpoint)
        columns = columns_of(spec, write)
        # The prepared window keeps the write's bounds and marks, not its rows: those live on in the payload.
        return PreparedWindow(
            replace(write, rows=(), buckets=()), len(columns["group_key"]), self._payload(spec, columns)
        )

    def prepare_table(self, write: WindowWrite, table: pa.Table) -> PreparedWindow:
        """A window already checked and converted into its table's Arrow schema (the sync's Arrow path), ready to
        load: the table itself where the back end loads Arrow, its columns as :meth:`prepare` makes them otherwise."""
        import pyarrow as pa

        spec = table_for(write.stream.endpoint)
        columns = {
            name: (column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column).to_pylist()
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
        return PreparedWindow(write, table.num_rows, self._payload(spec, columns))

    def commit_windows(self, writes: Sequence[WindowWrite | PreparedWindow]) -> list[UpsertCounts]:
        """Commit several windows (each complete) in one transaction: all of them, or none.

        Windows marked ``fresh`` (no stored row of their stream at or after their start) are bulk-inserted
        together, one ``INSERT`` per table; the others are reconciled one by one (delete vanished, update changed,
        insert new). Each stream's counters and watermark move in the same transaction.
        """
        prepared = [w if isinstance(w, PreparedWindow) else self.prepare(w) for w in writes]
        counts: list[UpsertCounts | None] = [None] * len(prepared)
        with self.transaction():
            # Beside other writers, never beside a close marking the log (see ``closes.close_month``).
            self.lock_in_transaction(*revisions.LOG_WRITES, shared=True)
            fresh: dict[str, list[int]] = {}
            for i, p in enumerate(prepared):
                if p.write.fresh:
                    fresh.setdefault(table_for(p.write.stream.endpoint).name, []).append(i)
                else:
                    counts[i] = self._reconcile(p)
            for indexes in fresh.values():
                first = prepared[indexes[0]].write
                if any(prepared[i].rows for i in indexes):
                    merged = self._merge([prepared[i].payload for i in indexes])
                    self._bulk_insert(table_for(first.stream.endpoint), merged, first.synced_at, first.run_id)
                for i in indexes:
                    counts[i] = UpsertCounts(inserted=prepared[i].rows)
            done = [c for c in counts if c is not None]
            assert len(done) == len(prepared)
            if not self.key_indexed:
                self._check_keys([p.write for p in prepared])
            self._update_streams([p.write for p in prepared], done)
        self._written.update(table_for(p.write.stream.endpoint).name for p in prepared)
        return done

    def analyse_new_tables(self) -> None:
        """Once a run's writes have committed, outside any transaction: statistics for the endpoint tables the
        commits since the last call wrote that the database has never analysed (on PostgreSQL; nothing elsewhere).
        An optimisation, so it never raises: without them a re-read window that changed before autovacuum's first
        analyse (a minute or so after a first sync) was reconciled in a nested loop, each stored row against each
        read, 5-12 s for a 60-day costs window."""
        if self._written and not self._depth:  # inside a transaction: kept for the call after it
            written, self._written = sorted(self._written), set()
            self._analyse_new(written)

    def sync_settings(self) -> AbstractContextManager[None]:
        """While a sync writes: the back end's settings for one bulk writer in this process (DuckDB's: one thread,
        a small cache, where that is safe); nothing for a server database, whose threads and memory are not this
        process's."""
        return contextlib.nullcontext()

    def _check_keys(self, writes: Sequence[WindowWrite]) -> None:
        """Refuse the transaction when it leaves a key twice in a range it wrote (a store without a key index).

        The writes' own checks already refuse a group twice in one read, and reconciling never inserts a stored
        key; this holds even against a caller that marks a window ``fresh`` wrongly. It reads every table over
        the written ranges only (DuckDB skips every other row group by its min/max), in one statement.
        """
        ranges: dict[str, list[WindowWrite]] = {}
        for w in writes:
            ranges.setdefault(table_for(w.stream.endpoint).name, []).append(w)
        key = ", ".join(KEY_COLUMNS)
        selects: list[str] = []
        params: list[Any] = []
        for table, ws in ranges.items():
            where = " OR ".join(["(org = %s AND stream = %s AND bucket_start >= %s AND bucket_start < %s)"] * len(ws))
            selects.append(
                f"SELECT '{table}' AS tbl, {key} FROM {table} WHERE {where} GROUP BY {key} HAVING COUNT(*) > 1"
            )
            params += [v for w in ws for v in (w.org, w.stream.id, to_datetime(w.lo), to_datetime(w.hi))]
        if not selects:
            return
        twice = self.query(" UNION ALL ".join(selects) + " LIMIT 1", params)
        if twice:
            table, org, stream, bucket, key = twice[0]
            raise StoreError(
                f"{table}: this write would store org {org!r}, stream {stream!r}, bucket {bucket}, group {key}"
                " twice; nothing was written"
            )

    def _bulk_insert(self, spec: TableSpec, payload: Any, synced_at: int, run_id: str) -> int:
        insert_cols = ", ".join(q(c) for c in spec.column_names)
        select_cols = ", ".join(f"i.{q(n)}" for n, _ in spec.incoming_columns)
        staged = self._stage(spec, payload)
        try:
            self._log_revisions(revisions.inserts_sql(spec, staged), (run_id, to_datetime(synced_at)))
            return self.execute(
                f"INSERT INTO {spec.name} ({insert_cols}) SELECT {select_cols}, %s FROM {staged} AS i",
                (to_datetime(synced_at),),
            )
        finally:
            self._unstage(staged)

    def _reconcile(self, prepared: PreparedWindow) -> UpsertCounts:
        write = prepared.write
        stream = write.stream
        spec = table_for(stream.endpoint)
        n = prepared.rows
        t = spec.name
        key_match = (
            "t.org = i.org AND t.stream = i.stream AND t.bucket_start = i.bucket_start AND t.group_key = i.group_key"
        )
        changed = " OR ".join(f"t.{q(c)} IS DISTINCT FROM i.{q(c)}" for c in spec.value_columns)
        sets = ", ".join(f"{q(c)} = i.{q(c)}" for c in spec.value_columns)
        insert_cols = ", ".join(q(c) for c in spec.column_names)
        select_cols = ", ".join(f"i.{q(n)}" for n, _ in spec.incoming_columns)
        synced = to_datetime(write.synced_at)
        # Every statement restricts the table to the window's (org, stream, bucket range): PostgreSQL walks the
        # primary key's prefix, DuckDB skips row groups by their min/max, so a write costs the window, not the table.
        in_window = "t.org = %s AND t.stream = %s AND t.bucket_start >= %s AND t.bucket_start < %s"
        window = (write.org, stream.id, to_datetime(write.lo), to_datetime(write.hi))
        existing = self.query(f"SELECT COUNT(*) FROM {t} AS t WHERE {in_window}", window)[0][0]
        if not existing:  # nothing stored in this window yet: a plain bulk insert
            inserted = self._bulk_insert(spec, prepared.payload, write.synced_at, write.run_id) if n else 0
            return UpsertCounts(inserted=inserted)
        staged = self._stage(spec, prepared.payload)
        try:
            if existing == n and self._unchanged_count(t, staged, in_window, key_match, changed, window) == n:
                # Every stored row of the window has its staged twin, value for value (keys are unique on both
                # sides): the log, delete, update and insert below would each do nothing. A re-read lag window
                # mostly comes back as it was, and those four statements were most of a no-op sync's store time.
                return UpsertCounts(unchanged=n)
            self._log_revisions(
                revisions.changes_sql(spec, staged, in_window, key_match, self.dialect), (write.run_id, synced, *window)
            )
            deleted = self.execute(
                f"DELETE FROM {t} AS t WHERE {in_window}"
                f" AND NOT EXISTS (SELECT 1 FROM {staged} AS i WHERE {key_match})",
                window,
            )
            updated = self.execute(
                f"UPDATE {t} AS t SET {sets}, synced_at = %s FROM {staged} AS i"
                f" WHERE {in_window} AND {key_match} AND ({changed})",
                (synced, *window),
            )
            inserted = self.execute(
                f"INSERT INTO {t} ({insert_cols}) SELECT {select_cols}, %s FROM {staged} AS i"
                f" WHERE NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {in_window} AND {key_match})",
                (synced, *window),
            )
        finally:
            self._unstage(staged)
        return UpsertCounts(inserted, updated, n - inserted - updated, deleted)

    def _unchanged_count(
        self, table: str, staged: str, in_window: str, key_match: str, changed: str, window: Sequence[Any]
    ) -> int:
        """How many staged rows have a stored row of the window with the same key and the same values."""
        return int(
            self.query(
                f"SELECT COUNT(*) FROM {table} AS t JOIN {staged} AS i ON {key_match}"
                f" WHERE {in_window} AND NOT ({changed})",
                window,
            )[0][0]
        )

    def _log_revisions(self, sql: str, params: Sequence[Any]) -> None:
        """Append a window's changes to ``revisions`` (before its upsert, in its transaction: see ``revisions``)."""
        self.execute(sql, params)

    def _update_streams(self, writes: Sequence[WindowWrite], counts: Sequence[UpsertCounts]) -> None:
        per_stream: dict[tuple[str, str], tuple[str, int | None, UpsertCounts]] = {}
        seen: dict[tuple[str, str], int] = {}  # when the window that moved the stream's watermark was read
        completed: set[tuple[str, str]] = set()
        for w, c in zip(writes, counts, strict=True):
            key = (w.org, w.stream.id)
            _, mark, total = per_stream.get(key, (w.run_id, None, UpsertCounts()))
            if w.watermark is not None and (mark is None or w.watermark >= mark):
                mark = w.watermark
                seen[key] = max(seen.get(key, w.synced_at), w.synced_at)
            per_stream[key] = (w.run_id, mark, total + c)
            if w.completes_stream:
                completed.add(key)
        if not per_stream:
            return
        moves = [(key, run, mark) for key, (run, mark, _) in per_stream.items() if mark is not None]
        if moves:  # the watermark log (``store.watermarks``): one statement for the batch's moves
            self.execute(
                watermarks.log_sql(len(moves)),
                [v for (o, s), run, m in moves for v in (o, s, to_datetime(m), run, to_datetime(seen[(o, s)]))],
            )
        # One statement for every stream of the batch (a DuckDB UPDATE has a fixed cost of its own, per statement).
        row = (
            "(CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TIMESTAMPTZ), CAST(%s AS BOOLEAN),"
            " CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS BIGINT))"
        )
        params: list[Any] = []
        for (org, stream_id), (run, mark, c) in per_stream.items():
            params += [org, stream_id, run, None if mark is None else to_datetime(mark), (org, stream_id) in completed]
            params += [c.inserted - c.deleted, c.inserted, c.updated, c.unchanged, c.deleted]
        self.execute(
            "UPDATE streams SET watermark = COALESCE(v.mark, streams.watermark),"
            " row_count = streams.row_count + v.net,"
            " last_status = CASE WHEN v.completed THEN 'ok' ELSE streams.last_status END,"
            " last_inserted = CASE WHEN streams.last_run_id = v.run THEN streams.last_inserted + v.ins ELSE v.ins END,"
            " last_updated = CASE WHEN streams.last_run_id = v.run THEN streams.last_updated + v.upd ELSE v.upd END,"
            " last_unchanged = CASE WHEN streams.last_run_id = v.run THEN streams.last_unchanged + v.unch"
            " ELSE v.unch END,"
            " last_deleted = CASE WHEN streams.last_run_id = v.run THEN streams.last_deleted + v.del ELSE v.del END,"
            f" last_run_id = v.run FROM (VALUES {', '.join([row] * len(per_stream))})"
            " AS v(org, stream, run, mark, completed, net, ins, upd, unch, del)"
            " WHERE streams.org = v.org AND streams.stream = v.stream",
            params,
        )

    def stream_extent(self, org: str, stream: Stream) -> int | None:
        """The start of the newest stored bucket of a stream, or ``None`` when it holds no row."""
        spec = table_for(stream.endpoint)
        row = self.query(f"SELECT MAX(bucket_start) FROM {spec.name} WHERE org = %s AND stream = %s", (org, stream.id))
        return to_unix(row[0][0]) if row else None

    def set_watermark(self, org: str, stream_id: str, watermark: int, *, at: int | None = None) -> None:
        """Move a stream's watermark (forward only), logged as seen at ``at`` (default: now) in the watermark log."""
        seen = to_datetime(int(datetime.now(UTC).timestamp()) if at is None else at)
        with self.transaction():
            # The log line's number is drawn as a sync's commit draws its own: never beside a close drawing its mark,
            # which would count a move it did not see (``closes.close_month``).
            self.lock_in_transaction(*revisions.LOG_WRITES, shared=True)
            moved = self.query(
                "SELECT org FROM streams WHERE org = %s AND stream = %s AND (watermark IS NULL OR watermark < %s)",
                (org, stream_id, to_datetime(watermark)),
            )
            if not moved:
                return
            self.execute(
                "UPDATE streams SET watermark = %s WHERE org = %s AND stream = %s",
                (to_datetime(watermark), org, stream_id),
            )
            self.execute(watermarks.log_sql(1), (org, stream_id, to_datetime(watermark), "set_watermark", seen))

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _state(row: tuple[Any, ...]) -> StreamState:
    return StreamState(
        org=row[0],
        stream=row[1],
        endpoint=row[2],
        bucket_width=row[3],
        group_by=tuple(g for g in row[4].split(",") if g),
        filters=row[5],
        is_default=bool(row[6]),
        watermark=to_unix(row[7]),
        last_run_id=row[8],
        last_run_at=to_unix(row[9]),
        last_status=row[10],
        last_error=row[11],
        row_count=int(row[12]),
        last_counts=UpsertCounts(int(row[13]), int(row[14]), int(row[15]), int(row[16])),
    )
