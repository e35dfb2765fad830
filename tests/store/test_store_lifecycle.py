"""A store's life cycle handled carelessly: made by a newer usageledger, or by another program, copied mid-write,
moved, or written on a full disk. Every refusal is one line, and a refused store is left byte for byte as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.errors import StoreError
from usageledger.store import open_existing_store, open_store

NEWER = "0099_from_the_future"

COMMANDS = [
    ["status"],
    ["report"],
    ["reconcile"],
    ["check"],
    ["forecast"],
    ["changes"],
    ["keys"],
    ["statement", "2026-10"],
    ["export", "--format", "csv", "--output", "{out}"],
    ["credit", "list"],
    ["credit", "add", "2026-11-01", "5"],
    ["close", "2026-10"],
    ["init", "--path", "{cfg}"],
    ["demo", "--remove"],
    ["demo"],
    ["sync", "--since", "2d"],
]
IDS = ["-".join(a for a in argv if not a.startswith(("{", "-")) and not a[0].isdigit()) for argv in COMMANDS]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _newer_store(path: Path) -> None:
    with open_store(str(path)) as store:
        store.register_org("acme", synthetic=False, source="api", at=0)
        store.execute("INSERT INTO schema_migrations (name, seq, applied_at) VALUES (%s, 99, now())", (NEWER,))


@pytest.mark.parametrize("argv", COMMANDS, ids=IDS)
def test_a_store_made_by_a_newer_version_is_refused_and_left_alone(
    tmp_path: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store whose migrations table lists one this code does not know: every command says in one line that the
    store is newer and to upgrade, and the file is unchanged (nothing migrated, synced, removed or recorded)."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # never reached: the store is refused first
    path = tmp_path / "newer.duckdb"
    _newer_store(path)
    before = _digest(path)
    args = [a.format(out=tmp_path / "out", cfg=tmp_path / "c.toml") for a in argv]
    result = CliRunner().invoke(app, [*args, "--store", str(path)])
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"error: the store {path} was made by a newer usageledger (its schema has {NEWER}, which this version does not"
        " know): upgrade usageledger to use it\n"
    )
    assert _digest(path) == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "c.toml").exists()


def test_a_newer_postgresql_store_is_refused_before_any_migration(pg_url: str) -> None:
    """The same on PostgreSQL, for the library's readers and writers alike: nothing is migrated over a newer schema."""
    with open_store(pg_url) as store:
        store.execute("INSERT INTO schema_migrations (name, seq, applied_at) VALUES (%s, 99, now())", (NEWER,))
    for opening in (open_store, open_existing_store):
        with pytest.raises(StoreError, match=r"made by a newer usageledger \(its schema has 0099_from_the_future"):
            opening(pg_url).close()


def _foreign(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE streams (id INTEGER)")  # a name usageledger uses too: never taken for its own
    con.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    con.execute("INSERT INTO customers VALUES (1, 'a')")
    con.close()


def _truncated(path: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.duckdb"
    with open_store(str(whole)) as store:
        store.register_org("acme", synthetic=False, source="api", at=0)
    path.write_bytes(whole.read_bytes()[:100_000])  # `head -c 100000 whole.duckdb`: past the header, short of a block


BROKEN = {
    "another-programs-duckdb": (
        _foreign,
        "{path} is a DuckDB database of another program (it holds customers, streams), not a usageledger store: pass"
        " another --store (a new file is made for it)",
    ),
    "csv-renamed": (
        lambda p: p.write_text("a,b\n1,2\n"),
        "{path} is not a DuckDB database file: pass the path of a usageledger store (a .duckdb file) with --store",
    ),
    "zero-bytes": (
        lambda p: p.write_bytes(b""),
        "{path} is not a DuckDB database file: pass the path of a usageledger store (a .duckdb file) with --store",
    ),
    "truncated-copy": (
        None,
        "the DuckDB store {path} is damaged or cut short (a partial copy?): restore it from a whole copy, or pass"
        " another --store (IO Error: Could not read enough bytes",
    ),
}
WRITERS = [["sync", "--since", "2d"], ["init", "--path", "{cfg}"], ["credit", "add", "2026-11-01", "5"], ["status"]]


@pytest.mark.parametrize("kind", list(BROKEN))
@pytest.mark.parametrize("argv", WRITERS, ids=[argv[0] for argv in WRITERS])
def test_a_file_that_is_no_store_is_refused_in_one_line_and_left_as_it_was(
    tmp_path: Path, kind: str, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program's DuckDB database, a renamed CSV, a zero-byte file and a truncated copy of a store: writers
    and readers refuse each in one line naming what it is; the file is unchanged and no lock file is left beside it
    (a sync wrote its tables into another program's database, or failed on its `streams` with a binder error)."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    path = tmp_path / "s.duckdb"
    make, expected = BROKEN[kind]
    if make is None:
        _truncated(path, tmp_path)
    else:
        make(path)
    before = _digest(path)
    args = [a.format(cfg=tmp_path / "c.toml") for a in argv]
    result = CliRunner().invoke(app, [*args, "--store", str(path)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: " + expected.format(path=path)), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("s.")) == ["s.duckdb"]


def test_an_empty_duckdb_file_becomes_a_store(tmp_path: Path) -> None:
    """A DuckDB file with no table at all holds nothing to overwrite: a writer makes the store in it, as in a new
    file (the line between it and another program's database is whether any table exists)."""
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    with open_store(str(path)) as store:
        assert store.applied_migrations()
