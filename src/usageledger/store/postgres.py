"""The PostgreSQL store, through psycopg 3: batches go in with ``COPY`` into a temporary table, then one upsert."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final

from usageledger._secrets import redact_url_password, redact_url_passwords
from usageledger.errors import StoreError
from usageledger.store import migrations
from usageledger.store._base import BaseStore
from usageledger.store._pgpass import conninfo, pgpass_path
from usageledger.store._types import RunOwner, RunTotals
from usageledger.store.schema import Dialect, TableSpec, q

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["PostgresStore"]

logger = logging.getLogger("usageledger.store")

_MIGRATION_LOCK = 0x75736C67  # "uslg": the advisory lock that serialises migrations
_SYNC_LOCK = 0x75736C68  # the advisory lock held by a running sync


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise StoreError("PostgreSQL stores need psycopg 3: pip install 'usageledger[postgres]'") from exc
    return psycopg


class PostgresStore(BaseStore):
    """A PostgreSQL database named by a ``postgresql://`` URL."""

    dialect: ClassVar[Dialect] = "postgres"
    this_schema: ClassVar[str] = "table_schema = current_schema()"

    def __init__(self, url: str, *, writes: bool = True) -> None:
        """``writes``: opened to write (a sync, ``init``, ``close``), so a refused right is answered with every grant
        a write needs, not the read grant alone (a role with no right was told ``GRANT SELECT`` by `sync`, and the
        write grants only on the next run); False for a store opened only to read (``open_existing_store``)."""
        super().__init__(url)
        self._writes = writes
        self._pg = _psycopg()
        _check_reserved(self._pg, url)
        try:
            self._con = self._pg.connect(url, autocommit=True, connect_timeout=10)
        except self._pg.Error as exc:
            said = redact_url_passwords(_first_line(exc), url)
            # `from None`: libpq's own error quotes the URL it could not parse whole, password and all, and a chained
            # cause would carry it into every traceback of the StoreError.
            raise StoreError(
                f"cannot connect to the PostgreSQL store {_redact(url)}: {said}{_connect_fix(said, url)}"
            ) from None
        self._con.execute("SET TIME ZONE 'UTC'")
        self._held_runs: set[str] = set()

    def migrate(self) -> list[str]:
        """:meth:`BaseStore.migrate`, refused where the schema holds no store yet but another program's table by a
        name usageledger makes: ``CREATE TABLE IF NOT EXISTS costs`` took that table for its own, and the first
        migration failed on it with "PostgreSQL: syntax error at or near ","" (rolled back: nothing is written)."""
        if not self.applied_migrations():
            rows = self.query(f"SELECT table_name FROM information_schema.tables WHERE {self.this_schema}")
            names = {name for (name,) in rows}
            taken = sorted(names & _schema_names())
            # `schema_migrations` among them: another usageledger made the store between the two reads (its tables
            # and that one commit together), as a second sync started beside the first on a new database sees.
            if taken and "schema_migrations" not in names:
                shown = ", ".join(taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
                raise StoreError(
                    f"the PostgreSQL database {_redact(self.url)} holds no usageledger store, but tables of another"
                    f" program named as usageledger's ({shown}); give usageledger a database of its own (createdb"
                    " usageledger) or a schema of its own, and pass that as the store"
                )
        return super().migrate()

    def _failed(self, exc: BaseException) -> StoreError:
        """The one line for a statement that failed: what PostgreSQL said, and, where the connection is gone (the
        server stopped or restarted, the session killed), that and the fix. "PostgreSQL: terminating connection due
        to administrator command" read as a fault of the statement, or of the store."""
        said = redact_url_passwords(_first_line(exc), self.url)
        if self._closed:
            return self.closed_error(_redact(self.url))
        if self._con.broken or self._con.closed:
            return StoreError(
                f"PostgreSQL: the connection to the store {_redact(self.url)} was lost ({said}); run the command again"
                " once the server answers: what was committed is kept"
            )
        if isinstance(exc, self._pg.errors.InsufficientPrivilege):
            return self._refused_right(said)
        if isinstance(exc, self._pg.errors.InvalidSchemaName):
            # `?options=-csearch_path%3Dledger` before `CREATE SCHEMA ledger`: "PostgreSQL: no schema has been
            # selected to create in", naming neither the store nor its search_path.
            return StoreError(
                f"the PostgreSQL store {_redact(self.url)}: {said}, as no schema its search_path names exists; create"
                " the schema first (CREATE SCHEMA name, as the database's owner) or correct search_path in the URL"
            )
        return StoreError(f"PostgreSQL: {said}")

    def applied_migrations(self) -> list[str]:
        """:meth:`BaseStore.applied_migrations`, read from the catalogue: ``information_schema`` lists only the tables
        the role holds a right on, so a role given none on a made store was told the database "holds none of
        usageledger's tables; run usageledger sync" (and a sync then tried to create them). Its read is refused now,
        in the one line naming the role, the store and the grant."""
        if self.query(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = 'schema_migrations' AND schemaname = current_schema()"
            " AND NOT has_table_privilege(quote_ident(schemaname) || '.' || quote_ident(tablename), 'SELECT')"
        ):
            self.query("SELECT name FROM schema_migrations")  # refused: _refused_right words it
        return super().applied_migrations()

    def missing_rights(self) -> list[str] | None:
        """What the role lacks to sync a made, current store (``"INSERT on streams"``, ...; empty when nothing), or
        None for a store not made yet or with migrations pending, which creating or altering tables decides: `doctor`
        probed every store by creating a table, and so failed a role that may write every table of a made store but
        create none in its schema (PostgreSQL 15 on: every role but the database's owner), which syncs it well."""
        if not self.applied_migrations() or self.pending_migrations():
            return None
        rows = self.query(
            "SELECT c.relname, c.relkind, p.name FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()"
            " CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p(name)"
            " WHERE c.relname = ANY(%s) AND ((c.relkind IN ('r', 'p') AND NOT has_table_privilege(c.oid, p.name))"
            # nextval() takes USAGE or UPDATE: has_sequence_privilege is true when the role holds either
            "   OR (c.relkind = 'S' AND p.name = 'UPDATE' AND NOT has_sequence_privilege(c.oid, 'USAGE, UPDATE')))"
            " ORDER BY c.relkind, c.relname, array_position(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'], p.name)",
            [sorted(_schema_names())],
        )
        return [f"{'USAGE' if kind == 'S' else right} on {name}" for name, kind, right in rows]

    def grants(self, *, read: bool = False) -> str:
        """The statements that give this connection's role what a sync needs of a made store, or with ``read`` what
        reading it needs."""
        role = _sql_name(self._con.info.user)
        if read:
            said = f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
        else:
            said = (
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role} and GRANT USAGE,"
                f" SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}"
            )
        return f"{said} (the store's schema, if not public)"

    def _refused_right(self, said: str) -> StoreError:
        """The one line for a statement the role may not run: which role, which store, and the grant that lets it.
        A role without CREATE on the schema said "PostgreSQL: permission denied for schema public" to `init` and to
        the first `sync`, naming neither the store nor the role, and one that may only read a store said
        "permission denied for table streams" to `sync`, and "... for sequence revisions_seq" to `close`."""
        role = self._con.info.user
        shown = _redact(self.url)
        schema = re.search(r"permission denied for schema (\S+)", said)
        if schema is not None:
            return StoreError(
                f"the role {role} may not create tables in the PostgreSQL store {shown} ({said}); make the store once"
                f" as the database's owner (usageledger init --store with its user), or have the owner run GRANT"
                f" CREATE ON SCHEMA {_sql_name(schema.group(1))} TO {_sql_name(role)}"
            )
        if self._may_not_read(said):
            # the write grants take in SELECT: one round of grants for a writer that holds no right at all
            how = "read or write" if self._writes else "read"
            return StoreError(
                f"the role {role} may not {how} the PostgreSQL store {shown} ({said}); use the role that made the"
                f" store, or have it run {self.grants(read=not self._writes)}"
            )
        return StoreError(
            f"the role {role} may not write the PostgreSQL store {shown} ({said}); use the role that made the store,"
            f" or have it run {self.grants()}"
        )

    def _may_not_read(self, said: str) -> bool:
        """Whether the table a refusal names (``permission denied for table costs``) is one the role may not even
        read: a reading command was told the role "may not write" the store, and to grant it every right. False
        when that cannot be asked (no table named, or inside a transaction the refusal ended)."""
        table = re.search(r"permission denied for (?:table|view) (\S+)", said)
        if table is None:
            return False
        try:
            row = self._con.execute("SELECT has_table_privilege(%s, 'SELECT')", [table.group(1)]).fetchone()
        except self._pg.Error:
            return False
        return row is not None and not row[0]

    @contextlib.contextmanager
    def _outer_transaction(self) -> Iterator[None]:
        try:
            with self._con.transaction():
                yield
        except self._pg.Error as exc:
            raise self._failed(exc) from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cur = self._con.execute(sql, list(params) if params else None)
        except self._pg.Error as exc:
            raise self._failed(exc) from exc
        return int(cur.rowcount)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            rows: list[tuple[Any, ...]] = self._con.execute(sql, list(params) if params else None).fetchall()
        except self._pg.Error as exc:
            raise self._failed(exc) from exc
        return rows

    def iter_batches(self, sql: str, params: Sequence[Any], schema: pa.Schema, batch_rows: int) -> Iterator[pa.Table]:
        import pyarrow as pa

        # A server-side cursor needs a transaction; it streams instead of loading the whole result.
        try:
            with self._con.transaction(), self._con.cursor(name="usageledger_export") as cur:
                cur.itersize = batch_rows
                cur.execute(sql, list(params) if params else None)
                while True:
                    rows = cur.fetchmany(batch_rows)
                    if not rows:
                        break
                    cols = list(zip(*rows, strict=True))
                    yield pa.table({f.name: pa.array(cols[i], f.type) for i, f in enumerate(schema)}, schema=schema)
        except self._pg.Error as exc:
            raise self._failed(exc) from exc

    def _payload(self, spec: TableSpec, columns: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
        times: dict[int, datetime] = {}

        def when(ts: int) -> datetime:
            dt = times.get(ts)
            if dt is None:
                dt = times[ts] = datetime.fromtimestamp(ts, UTC)
            return dt

        data = dict(columns)
        data["bucket_start"] = [when(t) for t in columns["bucket_start"]]
        data["bucket_end"] = [when(t) for t in columns["bucket_end"]]
        return list(zip(*(data[n] for n, _ in spec.incoming_columns), strict=True))

    def _merge(self, payloads: Sequence[Any]) -> list[tuple[Any, ...]]:
        return [row for payload in payloads for row in payload]

    def _stage(self, spec: TableSpec, payload: Any) -> str:
        name = "_incoming"
        names = [n for n, _ in spec.incoming_columns]
        col_defs = ", ".join(f"{q(n)} {spec.sql_type('postgres', n)}" for n in names)
        self.execute(f"CREATE TEMP TABLE {name} ({col_defs}) ON COMMIT DROP")
        copy = f"COPY {name} ({', '.join(q(n) for n in names)}) FROM STDIN"
        try:
            with self._con.cursor() as cur, cur.copy(copy) as cp:
                for row in payload:
                    cp.write_row(row)
        except self._pg.Error as exc:
            raise self._failed(exc) from exc
        # Autovacuum never analyses a temporary table, so the planner guessed the staged rows: one row for a window's
        # (org, stream), and it compared a re-read window's stored rows with the staged ones in a nested loop, each
        # against each, the square of the window's rows. `sync --since 40d` run again over 7,914 stored costs rows
        # took 9.4 s, 0.9 s analysed (a hash join; bench/bench_pg_resync.py). The ANALYZE reads only this
        # session's own table, so no other writer waits on it, and costs no first sync measurably more.
        self.execute(f"ANALYZE {name}")
        return name

    def _analyse_new(self, tables: Sequence[str]) -> None:
        """``ANALYZE`` each of ``tables`` that neither ANALYZE nor autovacuum has ever analysed. Autovacuum's first
        analyse of a table comes a minute or so after its first sync; a re-sync before it, over a window whose data
        changed, planned the reconcile's ``DELETE ... NOT EXISTS`` from no statistics (one stored row guessed for the
        window) as a nested loop, each stored row against each staged one: 9.1 s of a 60-day costs window's 12.1 s
        re-sync (auto_explain), 26 ms analysed; the "changed" re-sync of bench/bench_pg_resync.py took 8.7 s, now
        0.9 s. Run in autocommit, one table a statement and ``SKIP_LOCKED``: it never runs inside a write
        transaction, never waits (another worker analysing the same table is enough) and takes a lock no writer's
        conflicts with, so workers neither deadlock nor queue on it."""
        try:
            rows = self.query(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY(%s)"
                " AND last_analyze IS NULL AND last_autoanalyze IS NULL ORDER BY relname",
                [list(tables)],
            )
        except StoreError as exc:
            logger.debug("could not read which tables were never analysed: %s", exc)
            return
        for (name,) in rows:
            started = time.perf_counter()
            try:
                self.execute(f"ANALYZE (SKIP_LOCKED) {q(name)}")
            except StoreError as exc:
                logger.debug("could not analyse %s: %s", name, exc)
                continue
            logger.debug("analysed %s, never analysed before (%.3f s)", name, time.perf_counter() - started)

    # Every statement below goes through `execute`/`query`, so a server gone mid-run (restarted, its connection
    # killed) is a StoreError, one line, never psycopg's exception and its traceback.

    def _unstage(self, name: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS {name}")

    def _try_lock(self, key: int, *, shared: bool = False) -> bool:
        how = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        rows = self.query(f"SELECT {how}(%s)", [key])
        return bool(rows and rows[0][0])

    def _unlock(self, key: int, *, shared: bool = False) -> None:
        how = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
        self.execute(f"SELECT {how}(%s)", [key])

    def acquire_sync_lock(self, *, shared: bool = False) -> bool:
        """A session-level advisory lock: shared by the syncs (workers) writing the database, exclusive for a command
        that deletes whole orgs (``demo --remove``)."""
        return self._try_lock(_SYNC_LOCK, shared=shared)

    def release_sync_lock(self, *, shared: bool = False) -> None:
        self._unlock(_SYNC_LOCK, shared=shared)

    def try_lock_stream(self, org: str, stream_id: str) -> bool:
        """A session-level advisory lock on a 64-bit hash of (org, stream): workers of other streams never wait."""
        return self._try_lock(_lock_key("stream", org, stream_id))

    def unlock_stream(self, org: str, stream_id: str) -> None:
        self._unlock(_lock_key("stream", org, stream_id))

    def begin_run(self, run_id: str, *, at: int, command: str, owner: RunOwner | None = None) -> None:
        """Record the run, holding an advisory lock on its id until ``finish_run`` (or until this connection dies)."""
        key = _lock_key("run", run_id)
        self._try_lock(key)
        self._held_runs.add(run_id)
        try:
            super().begin_run(run_id, at=at, command=command, owner=owner)
        except BaseException:
            self._held_runs.discard(run_id)
            self._unlock(key)
            raise

    def finish_run(self, run_id: str, *, at: int, status: str, totals: RunTotals, error: str | None = None) -> None:
        try:
            super().finish_run(run_id, at=at, status=status, totals=totals, error=error)
        finally:
            if run_id in self._held_runs:
                self._held_runs.discard(run_id)
                self._unlock(_lock_key("run", run_id))

    def run_is_live(self, run_id: str) -> bool | None:
        """True while some connection holds the run's lock: its worker is alive, on whatever host it runs."""
        if run_id in self._held_runs:
            return True
        key = _lock_key("run", run_id)
        if self._try_lock(key):
            self._unlock(key)
            return False
        return True

    def lock_in_transaction(self, *key: str, shared: bool = False) -> None:
        how = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        self.query(f"SELECT {how}(%s)", [_lock_key("transaction", *key)])

    def _migration_lock(self) -> None:
        self.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])

    _closed = False
    """Whether :meth:`close` was called (a connection closed otherwise was lost)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._con.close()


def _lock_key(kind: str, *parts: str) -> int:
    """A signed 64-bit advisory-lock key for ``kind`` and ``parts`` (blake2b: stable across processes and hosts)."""
    text = "\0".join(("usageledger", kind, *parts)).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)


def _redact(url: str) -> str:
    """The URL without its password."""
    return redact_url_password(url)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


_CONNECT_FIXES: Final = (
    (
        re.compile(r"password authentication failed|no password supplied|password is required"),
        "check the user name and password in the store URL",
    ),
    (
        re.compile(r'database "([^"]*)" does not exist'),
        "create the database first (createdb \\1), or correct its name in the store URL",
    ),
    (re.compile(r'role "[^"]*" does not exist'), "correct the user name in the store URL"),
    (
        re.compile(r"Connection refused|No such file or directory|timeout expired"),
        "start the server, or correct the host and port in the store URL",
    ),
    (re.compile(r"could not translate host name|failed to resolve host"), "correct the host name in the store URL"),
    (re.compile(r"invalid \S+ value|invalid port number|invalid integer value"), "correct it in the store URL"),
    (
        re.compile(r"invalid percent-encoded token"),
        "write each % in the user name, password or database name as %25, or keep the password in PGPASSFILE",
    ),
    (
        re.compile(r"invalid URI query parameter"),
        "correct its name (sslmode, connect_timeout, ...) in the store URL, or remove it",
    ),
    (
        re.compile(r"server does not support SSL, but SSL was required"),
        "the server takes no TLS: drop sslmode from the store URL, or turn ssl on in the server's postgresql.conf",
    ),
    (
        re.compile(r"invalid response to SSL negotiation|expected authentication request from server"),
        "another kind of server answers on that port, not PostgreSQL: correct the port in the store URL (PostgreSQL's"
        " is 5432 unless set otherwise)",
    ),
)
"""What libpq says when a connection fails, and the fix: "connection failed: ... Connection refused" told what went
wrong and left the fix to guess; each is a setting of the store URL (or the server) to change."""


@functools.cache
def _schema_names() -> frozenset[str]:
    """The tables, views and sequences usageledger's migrations make, read from their statements."""
    made = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|VIEW|SEQUENCE)\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?(\w+)", re.I)
    return frozenset(
        name
        for migration in migrations.pending([])
        for sql in migration.statements("postgres", {})
        for name in made.findall(sql)
    )


def _sql_name(name: str) -> str:
    """A role's or a schema's name as a statement given to run must write it: quoted unless plain lower case (the
    role ``ci-bot`` was told to run ``GRANT ... TO ci-bot``, a syntax error)."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else q(name)


def _names_database(url: str) -> bool:
    """Whether the ``postgresql://`` URL names a database (a path after the host, or ``?dbname=``)."""
    from urllib.parse import parse_qs, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return True  # one urllib cannot read: libpq's own words stand
    return bool(parts.path.strip("/")) or bool(parse_qs(parts.query).get("dbname"))


def _check_reserved(pg: Any, url: str) -> None:
    """Refuse a URL whose user name, password or database name holds an ``@`` (or whose password holds a ``/``)
    unencoded: libpq ends the user and password at the first ``@`` (or ``/``), so ``postgresql://u:p@ss@db.host/x``
    connected to the host ``ss@db.host`` with the password ``p``, and its errors quoted the rest of the password as a
    host or a database name ("failed to resolve host 'ss'"), past any masking of the URL's password."""
    try:
        parts = pg.conninfo.conninfo_to_dict(url)
    except pg.Error:
        return  # a URL libpq cannot read at all: the connection says why
    if any("@" in str(parts.get(key) or "") for key in ("host", "hostaddr", "port", "dbname")):
        raise StoreError(
            f"the PostgreSQL store {_redact(url)}: an @ or / in its user name, password or database name ends them"
            " early (libpq reads what follows as the host); write each percent-encoded (@ as %40, / as %2F), or keep"
            " the password in PGPASSFILE"
        )


def _connect_fix(said: str, url: str) -> str:
    """``"; <the fix>"`` for a connection failure libpq described as ``said``, or nothing for one not known."""
    if (
        'database "' in said
        and "does not exist" in said
        and not _names_database(url)
        and not os.environ.get("PGDATABASE")
    ):
        # `postgresql://u@host` (no /DBNAME): libpq takes the user name for the database, and the fix said to
        # `createdb u`, a database named after the user, where the URL only lacked the one meant.
        return "; the store URL names no database, so PostgreSQL took the user name for it: add /DBNAME to the URL"
    if _CONNECT_FIXES[0][0].search(said) and not conninfo(url).get("password"):
        # the URL without its password, as `init` writes it: "check the user name and password in the store URL"
        # sent the user to a URL that holds none
        return (
            f"; the store URL holds no password, and neither PGPASSWORD nor {pgpass_path()} gave the right one for"
            " it: add the line host:port:dbname:user:password to that file (chmod 600), or correct it there"
        )
    for pattern, fix in _CONNECT_FIXES:
        match = pattern.search(said)
        if match is not None:
            return "; " + match.expand(fix)
    return ""
