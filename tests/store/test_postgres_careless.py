"""A PostgreSQL store URL as someone in a hurry types it: each connection failure says its fix, never the password."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from usageledger._secrets import redact_url_password
from usageledger.cli import app
from usageledger.errors import StoreError
from usageledger.store import open_store
from usageledger.store.postgres import PostgresStore

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

PASSWORD = "Hunter2-not-shown"


def _with(url: str, *, user: str | None = None, database: str | None = None, port: int | None = None) -> str:
    """``url`` (the session cluster's) with a password, and another user, database or port."""
    parts = urlsplit(url)
    host = f"{parts.hostname}:{port or parts.port}"
    return f"postgresql://{user or parts.username}:{PASSWORD}@{host}/{database or parts.path.lstrip('/')}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("change", "fix"),
    [
        ({"database": "no_such_ledger"}, "create the database first (createdb no_such_ledger), or correct its name"),
        ({"user": "no_such_user"}, "correct the user name in the store URL"),
        ({"port": 0}, "start the server, or correct the host and port in the store URL"),
    ],
)
def test_a_store_that_cannot_be_reached_says_the_fix(postgres_url: str, change: dict[str, object], fix: str) -> None:
    """A database that does not exist, a user the server does not know, a port nothing listens on: each said what
    libpq said ("... does not exist", "Connection refused") and no more. Now with the fix, in one line, exit 1, and
    never the password."""
    if change.get("port") == 0:
        change = {"port": _free_port()}
    url = _with(postgres_url, **change)  # type: ignore[arg-type]
    result = CliRunner().invoke(app, ["status", "--store", url])
    assert result.exit_code == 1, result.output
    line = " ".join(result.stderr.split())
    assert line.startswith("error: cannot connect to the PostgreSQL store postgresql://"), line
    assert line.endswith(f"; {fix}") or f"; {fix}" in line, line
    assert PASSWORD not in result.output and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "said",
    [
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication failed for user "u"',
        'connection to server at "127.0.0.1", port 5432 failed: fe_sendauth: no password supplied',
    ],
)
def test_a_refused_password_says_to_check_it(said: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq's refusals of a password (the session cluster trusts every one, so its words are given here) say to check
    the user name and password of the URL."""
    import psycopg

    def refuse(*args: object, **kwargs: object) -> None:
        raise psycopg.OperationalError(f"connection failed: {said}")

    monkeypatch.setattr(psycopg, "connect", refuse)
    with pytest.raises(StoreError) as caught:
        PostgresStore(f"postgresql://u:{PASSWORD}@127.0.0.1:5432/ledger")
    message = str(caught.value)
    assert message.endswith("; check the user name and password in the store URL")
    assert PASSWORD not in message and "postgresql://u:***@127.0.0.1:5432/ledger" in message


def test_the_console_script_syncs_into_a_postgres_store(emulator_url: str, postgres_url: str) -> None:
    """`usageledger sync --store postgresql://...` (the console script, which keeps numpy out of a sync) ended in a
    traceback at the first integer psycopg wrote (a usage row's token count), "'NoneType' object has no attribute
    'integer'": numpy was marked not importable by a None in sys.modules, and psycopg reads `numpy.integer` once
    `"numpy" in sys.modules`. The sync stores its rows, and `status` reads them, with no password in the output."""
    url = _with(postgres_url)
    argv = ["sync", "--store", url, "--base-url", emulator_url, "-e", "completions", "--since", "3d"]
    done = subprocess.run(
        [sys.executable, "-m", "usageledger", *argv, "--now", str(EMULATOR_NOW), "--quiet"],
        env={**os.environ, "OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stdout + done.stderr
    with open_store(postgres_url, read_only=True) as store:
        assert store.query("SELECT COUNT(*) FROM usage_completions")[0][0] > 0
    status = CliRunner().invoke(app, ["status", "--store", url])
    assert status.exit_code == 0, status.output
    assert "completions" in status.stdout and PASSWORD not in status.output


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://ledger:p@ss{PASSWORD}@127.0.0.1:5432/ledger",
        f"postgresql://ledger:pa/ss{PASSWORD}@127.0.0.1:5432/ledger",
        f"postgresql://ledger@server:{PASSWORD}@127.0.0.1:5432/ledger",
        f"postgresql://ledger:p@ss/{PASSWORD}@127.0.0.1:5432/ledger",
    ],
)
def test_an_at_sign_or_slash_left_in_the_password_is_refused_unshown(url: str) -> None:
    """libpq ends the user and password at the first @ (or /): `u:p@ss...@host` went to the host "ss..." with the
    password "p", and its error quoted the rest of the password as the host or database ("failed to resolve host
    'ss...'"), past the URL's masking. Refused before any connection, saying to percent-encode, never the password."""
    with pytest.raises(StoreError) as caught:
        PostgresStore(url)
    message = str(caught.value)
    assert "write each percent-encoded (@ as %40, / as %2F)" in message
    assert PASSWORD not in message and "ss" + PASSWORD not in message and "@127.0.0.1:5432/ledger:" in message


def test_a_connection_error_carries_no_password_in_its_cause() -> None:
    """libpq's error for a URL it cannot parse quotes the whole URL, password and all; the StoreError said it masked,
    but kept libpq's error as its cause, which every traceback prints. It has none now."""
    with pytest.raises(StoreError) as caught:
        PostgresStore(f"postgresql://ledger:{PASSWORD}@[::1/ledger")
    assert PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_connection_killed_mid_run_says_so_and_the_fix(migrated_pg_url: str) -> None:
    """A server stopped or restarted under a running command said "PostgreSQL: terminating connection due to
    administrator command", as if the statement or the store were at fault. It says the connection was lost and to
    run the command again once the server answers; a statement that fails on a live connection says what it said."""
    import psycopg

    store = PostgresStore(migrated_pg_url)
    try:
        with pytest.raises(StoreError) as refused:
            store.query("SELECT no_such_column FROM costs")
        assert str(refused.value).startswith('PostgreSQL: column "no_such_column" does not exist')
        ((pid,),) = store.query("SELECT pg_backend_pid()")
        with psycopg.connect(migrated_pg_url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreError) as lost:
            store.query("SELECT COUNT(*) FROM costs")
        message = str(lost.value)
        # the store is named (a sync of several stores, or a log read later, says which), its password masked
        assert message.startswith(f"PostgreSQL: the connection to the store {redact_url_password(migrated_pg_url)} was")
        assert message.endswith("run the command again once the server answers: what was committed is kept")
    finally:
        store.close()


def test_the_demo_into_a_postgres_store_never_shows_its_password(pg_url: str) -> None:
    """`demo --store postgresql://user:password@host/db` printed the URL whole, password and all, in its first line
    ("synced into postgresql://postgres:S3cret@..."): the one place a command showed it. Masked as everywhere."""
    result = CliRunner().invoke(app, ["demo", "--store", _with(pg_url), "--days", "2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert " synced into postgresql://" in first and ":***@" in first, first
    assert PASSWORD not in result.output


def test_a_database_holding_another_programs_costs_table_is_refused_unchanged(pg_url: str) -> None:
    """A database another program keeps a `costs` table in: the first migration took it for its own (CREATE TABLE IF
    NOT EXISTS) and failed with "PostgreSQL: syntax error at or near ","". Refused naming the table and the fix, the
    database left as it was; a table of a name usageledger does not make is no obstacle."""
    import psycopg

    from usageledger.store import open_store

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("CREATE TABLE costs (x integer)")
        con.execute("CREATE TABLE accounts (id integer)")
    with pytest.raises(StoreError) as caught:
        open_store(pg_url)
    assert "holds no usageledger store, but tables of another program named as usageledger's (costs);" in str(
        caught.value
    )
    with psycopg.connect(pg_url, autocommit=True) as con:
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        }
        assert tables == {"costs", "accounts"}
        con.execute("DROP TABLE costs")
    with open_store(pg_url) as store:
        assert store.applied_migrations()


def test_a_store_made_by_another_sync_between_two_reads_is_no_other_programs(
    migrated_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two first syncs on a new database: the second read "no migrations applied" just before the first committed
    its store, then saw the store's tables and refused them as another program's (1 round in ~10 of
    `test_two_syncs_at_once_on_one_postgres_database`). The tables and `schema_migrations` commit together, so
    seeing `schema_migrations` among them means a usageledger store; the race is forced here by answering the
    first read as it was before the commit (a real race cannot be timed to the statement)."""
    store = PostgresStore(migrated_pg_url)
    try:
        real = store.applied_migrations
        calls: list[None] = []

        def applied() -> list[str]:
            calls.append(None)
            return [] if len(calls) == 1 else real()

        monkeypatch.setattr(store, "applied_migrations", applied)
        assert store.migrate() == []  # nothing pending: the other sync applied it all
        assert len(calls) == 2  # the check's read, then the base class's, which finds nothing pending
    finally:
        store.close()


def test_a_store_used_after_its_close_says_so_not_that_the_server_went_away(migrated_pg_url: str) -> None:
    """A PostgreSQL store used after `close()` (or its with block) said "the connection to the store was lost ...;
    run the command again once the server answers", sending a library user to look at a server that is fine. It says
    the store was closed and to open it again, as a DuckDB store does."""
    with open_store(migrated_pg_url) as store:
        assert store.known_orgs() == []
    with pytest.raises(StoreError) as caught:
        store.known_orgs()
    message = str(caught.value)
    assert message.startswith("the store postgresql://") and message.endswith(
        "is closed (close() was called, or its with block ended); open it again with open_store(...)"
    )


def _grants_in(line: str) -> list[str]:
    """The ``GRANT`` statements a refusal's one line gives (``... or have it run G1 and G2 (the store's ...``)."""
    return line.split("or have it run ", 1)[1].split(" (the store's schema", 1)[0].split(" and ")


def _grant(request: pytest.FixtureRequest, database: str, grants: list[str]) -> None:
    """Run ``grants`` as the test cluster's superuser on ``database``, as the refusal told a DBA to."""
    cluster = request.getfixturevalue("_pg_cluster")
    for grant in grants:
        cluster.sql(grant, database=database)


def _role(request: pytest.FixtureRequest, *grants: str, prefix: str = "r") -> str:
    """A new login role of the session cluster (it trusts every password), with ``grants`` run as the cluster's user
    (``{role}`` in them is the role's name as SQL writes it: quoted when ``prefix`` makes it more than lower case)."""
    import uuid

    cluster = request.getfixturevalue("_pg_cluster")
    role = f"{prefix}{uuid.uuid4().hex[:12]}"
    sql = role if role.isidentifier() and role.islower() else f'"{role}"'
    cluster.sql(f"CREATE ROLE {sql} LOGIN")
    for database, grant in (g.split(":", 1) for g in grants):
        cluster.sql(grant.format(role=sql), database=database)
    return role


def test_a_role_that_may_not_create_tables_is_told_the_grant(
    pg_url: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init` (or a first `sync`) as a role without CREATE on the schema (PostgreSQL 15 on: any role but the
    database's owner) said "error: PostgreSQL: permission denied for schema public", naming neither the store nor
    the role. One line now names both and the grant, never the password, and the database is left without a table."""
    role = _role(request)
    url = _with(pg_url, user=role)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "--store", url])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and PASSWORD not in result.output, result.output
    assert line.startswith(f"error: the role {role} may not create tables in the PostgreSQL store postgresql://"), line
    assert ":***@" in line and line.endswith(f"GRANT CREATE ON SCHEMA public TO {role}"), line
    with open_store(pg_url, read_only=True, migrate=False) as store:
        assert store.query(f"SELECT COUNT(*) FROM information_schema.tables WHERE {store.this_schema}") == [(0,)]


def test_a_role_that_may_only_read_is_told_the_grant_and_the_grant_lets_it_sync(
    migrated_pg_url: str, emulator_url: str, request: pytest.FixtureRequest
) -> None:
    """A role that may only read a store (a dashboard's, say) said "error: PostgreSQL: permission denied for table
    streams" to `sync`. One line now names the role, the store and the grants; and those grants are enough, run as
    given: the role's name (`Dash-...`) is quoted in them, as SQL needs it (`TO Dash-...` was a syntax error)."""
    database = migrated_pg_url.rsplit("/", 1)[1]
    role = _role(request, f"{database}:GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{role}}", prefix="Dash-")
    url = _with(migrated_pg_url, user=role)
    argv = ["sync", "--store", url, "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--since", "2d"]
    runner = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY})
    refused = runner.invoke(app, [*argv, "-e", "costs"])  # not --quiet: its progress display wrote an empty line
    assert refused.exit_code == 1, refused.output
    line = refused.stderr.rstrip("\n")
    assert "\n" not in line and refused.stdout == "", refused.output
    assert line.startswith(f"error: the role {role} may not write the PostgreSQL store postgresql://"), line
    assert "(permission denied for table " in line and PASSWORD not in refused.output, refused.output
    grants = _grants_in(line)
    assert grants == [
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"',
        f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
    ]
    _grant(request, database, grants)
    synced = runner.invoke(app, [*argv, "-e", "costs", "--quiet"])
    assert synced.exit_code == 0, synced.output


def test_a_role_with_no_right_is_told_every_grant_a_sync_needs_at_once(
    migrated_pg_url: str, emulator_url: str, request: pytest.FixtureRequest
) -> None:
    """A role with no right at all on a made store was told by `sync` to `GRANT SELECT` (its first read, of
    schema_migrations, was refused), and only on the next run the write grants: two rounds of a DBA where one would
    do. The one line now gives every grant the sync needs, and running those alone lets the next sync through."""
    database = migrated_pg_url.rsplit("/", 1)[1]
    role = _role(request, prefix="none")
    url = _with(migrated_pg_url, user=role)
    argv = ["sync", "--store", url, "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "--since", "2d"]
    runner = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY})
    refused = runner.invoke(app, [*argv, "-e", "costs", "--quiet"])
    assert refused.exit_code == 1, refused.output
    line = refused.stderr.rstrip("\n")
    assert "\n" not in line and PASSWORD not in refused.output, refused.output
    assert line.startswith(f"error: the role {role} may not read or write the PostgreSQL store postgresql://"), line
    grants = _grants_in(line)
    assert grants == [
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]
    _grant(request, database, grants)
    synced = runner.invoke(app, [*argv, "-e", "costs", "--quiet"])
    assert synced.exit_code == 0, synced.output


def test_a_reader_with_no_right_is_told_the_read_grant_only(
    migrated_pg_url: str, request: pytest.FixtureRequest
) -> None:
    """A command that only reads (`status`), by a role with no right, is told the read grant alone: a dashboard's
    role is never asked to be given writes."""
    role = _role(request, prefix="none")
    result = CliRunner().invoke(app, ["status", "--store", _with(migrated_pg_url, user=role)])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line.startswith(f"error: the role {role} may not read the PostgreSQL store postgresql://"), line
    assert f"or have it run GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role} (the store's" in line, line


@contextlib.contextmanager
def _http_port() -> Iterator[int]:
    """A loopback port where a server that is not PostgreSQL answers each connection as an HTTP server would."""

    def answer(server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        threading.Thread(target=answer, args=(server,), daemon=True).start()
        yield server.getsockname()[1]


@pytest.mark.parametrize(
    ("where", "query", "fix"),
    [
        ("postgres", "?sslmode=require", "the server takes no TLS: drop sslmode from the store URL"),
        ("http", "", "another kind of server answers on that port, not PostgreSQL: correct the port in the store URL"),
        ("http", "?sslmode=disable", "another kind of server answers on that port, not PostgreSQL: correct the port"),
    ],
)
def test_tls_the_server_lacks_or_a_port_that_is_not_postgres_says_the_fix(
    postgres_url: str, where: str, query: str, fix: str
) -> None:
    """`sslmode=require` against a server without TLS said only "server does not support SSL, but SSL was required",
    and a port of another server (an HTTP one, the emulator's) "received invalid response to SSL negotiation: H" or
    "expected authentication request from server, but received H": now each with its fix, never the password."""
    with _http_port() as http:
        url = _with(postgres_url, port=http if where == "http" else None) + query
        result = CliRunner().invoke(app, ["status", "--store", url])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line.startswith("error: cannot connect to the PostgreSQL store postgresql://"), line
    assert f"; {fix}" in line and PASSWORD not in result.output and len(line.splitlines()) == 1, line


@pytest.mark.parametrize(("path", "said"), [("", "names no database"), ("/", "names no database"), ("/x?q", "q")])
def test_a_url_without_a_database_or_with_a_mistyped_parameter_says_the_fix(
    postgres_url: str, path: str, said: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """`postgresql://u:pw@host:5432` (no /DBNAME) was told 'database "u" does not exist; create the database first
    (createdb u)': libpq takes the user name for the database, and the fix made a database named after the user.
    `?sslmod=disable` said 'invalid URI query parameter: "sslmod"' and no more. Each says its fix now."""
    monkeypatch.delenv("PGDATABASE", raising=False)
    base = _with(postgres_url, user=_role(request)).rsplit("/", 1)[0]  # a role no database is named after
    url = base + path.replace("?q", "?sslmod=disable")
    result = CliRunner().invoke(app, ["status", "--store", url])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    fix = (
        "; the store URL names no database, so PostgreSQL took the user name for it: add /DBNAME to the URL"
        if said != "q"
        else '"sslmod"; correct its name (sslmode, connect_timeout, ...) in the store URL, or remove it'
    )
    assert line.endswith(fix) and PASSWORD not in result.output and len(line.splitlines()) == 1, line


@pytest.mark.parametrize("password", [f"{PASSWORD}%", f"50%{PASSWORD}", f"{PASSWORD}%zz"])
def test_a_percent_sign_left_in_the_password_says_to_encode_it(password: str) -> None:
    """A password holding a bare % (`50%off`) said 'invalid percent-encoded token: "***"' and no more: the URL
    decodes %XX, so the % itself is written %25. Said now, with the password never shown."""
    with pytest.raises(StoreError) as caught:
        PostgresStore(f"postgresql://ledger:{password}@127.0.0.1:5432/ledger")
    message = str(caught.value)
    assert message.endswith(
        "; write each % in the user name, password or database name as %25, or keep the password in PGPASSFILE"
    ), message
    assert PASSWORD not in message


def test_a_search_path_to_a_schema_not_made_says_to_make_it(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store kept in a schema of its own (`?options=-csearch_path%3Dledger`) before `CREATE SCHEMA ledger` said
    "error: PostgreSQL: no schema has been selected to create in", naming neither the store nor the fix. One line
    now, the password masked; made, the schema takes the store."""
    url = _with(pg_url) + "?options=-csearch_path%3Dledger"
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "--store", url])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line == (
        f"error: the PostgreSQL store {url.replace(PASSWORD, '***')}: no schema has been selected to create in, as no"
        " schema its search_path names exists; create the schema first (CREATE SCHEMA name, as the database's owner)"
        " or correct search_path in the URL"
    ), line
    with open_store(pg_url, migrate=False) as store:
        store.execute("CREATE SCHEMA ledger")
    assert CliRunner().invoke(app, ["init", "--store", url, "--force"]).exit_code == 0
    with open_store(pg_url, migrate=False) as store:
        assert store.query("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'ledger'")[0][0] > 0


def test_a_role_that_may_not_read_is_told_to_grant_select_not_told_it_may_not_write(
    migrated_pg_url: str, request: pytest.FixtureRequest
) -> None:
    """`report` as a role given no right on a store (a dashboard's new role) was told "the role may not write the
    store" and to grant it SELECT, INSERT, UPDATE and DELETE: wrong for a command that only reads, and more rights
    than a reader needs. It is told it may not read the store, and the one GRANT that lets it; granted, it reads."""
    database = migrated_pg_url.rsplit("/", 1)[1]
    role = _role(request)
    url = _with(migrated_pg_url, user=role)
    refused = CliRunner().invoke(app, ["report", "--store", url, "--format", "json"])
    assert refused.exit_code == 1, refused.output
    line = refused.stderr.rstrip("\n")
    assert "\n" not in line and PASSWORD not in refused.output, refused.output
    assert line.startswith(f"error: the role {role} may not read the PostgreSQL store postgresql://"), line
    assert "(permission denied for table " in line and " INSERT" not in line, line
    grant = line.split("or have it run ", 1)[1].split(" (the store's schema", 1)[0]
    assert grant == f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}", line
    request.getfixturevalue("_pg_cluster").sql(grant, database=database)
    read = CliRunner().invoke(app, ["report", "--store", url, "--format", "json"])
    assert read.exit_code == 0, read.output
