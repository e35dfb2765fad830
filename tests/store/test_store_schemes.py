"""A store URL with a scheme usageledger does not store in is refused in one line, before DuckDB reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.errors import StoreError
from usageledger.store import check_store_url, open_existing_store, open_store

URLS = ["mysql://u:hunter2@db/ledger", "https://example.com/ledger.duckdb", "md:ledger", "sqlite:///x.db"]


@pytest.mark.parametrize("url", URLS)
def test_open_store_refuses_other_schemes(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_store names the scheme and the fix, hides a password, and creates nothing."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="unsupported store") as caught:
        open_store(url)
    assert "DuckDB file path or a postgresql:// URL" in str(caught.value) and "hunter2" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["status"], ["report"], ["export", "-e", "costs", "-o", "-"]])
def test_commands_refuse_other_schemes_in_one_line(command: list[str], tmp_path: Path) -> None:
    """status, report and export refuse a mysql: store in one line, exit 1, creating nothing."""
    result = CliRunner().invoke(app, [*command, "--store", "mysql://u:hunter2@db/ledger"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unsupported store" in lines[0] and "hunter2" not in result.output, lines


def test_paths_and_postgres_urls_pass() -> None:
    """Plain paths, drive-letter paths and PostgreSQL URLs are not schemes to refuse."""
    for url in ("usageledger.duckdb", "./a:b.duckdb", "C:/ledger.duckdb", "postgresql://u@h/db", "postgres://h/db"):
        assert check_store_url(url) == url


@pytest.mark.parametrize(
    ("store", "said"),
    [
        (":memory:", "unsupported store :memory:: an in-memory database keeps nothing"),
        ("usageledger.toml", "usageledger.toml is named like a config file, not a store"),
        ("out.csv", "out.csv is named like a CSV export, not a store"),
        # `--store ledger.duckdb.wal` made a store that ledger.duckdb's next open replayed as its log and deleted
        ("ledger.duckdb.wal", "ledger.duckdb.wal is named like a DuckDB write-ahead log, not a store"),
        ("ledger.duckdb.readers", "ledger.duckdb.readers is named like a lock file of a store, not a store"),
    ],
)
@pytest.mark.parametrize("command", [["sync", "-e", "costs", "-q"], ["status"], ["doctor"]])
def test_a_store_that_would_keep_nothing_or_take_a_files_name_is_refused(
    store: str, said: str, command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync --store :memory:` synced and kept nothing; `sync --store usageledger.toml` made a database where every
    later command looks for its config. Both are refused before anything is made."""
    monkeypatch.chdir(tmp_path)
    env = {"OPENAI_ADMIN_KEY": "sk-admin-schemes-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    result = CliRunner(env=env).invoke(app, [*command, "--store", store])
    assert result.exit_code == 1, result.output
    assert said in result.output, result.output
    assert list(tmp_path.iterdir()) == []


def test_an_existing_duckdb_store_by_such_a_name_still_opens(tmp_path: Path) -> None:
    """The name rule guards against slips only: a DuckDB file already named `x.json` is still a store."""
    with open_store(tmp_path / "ledger.duckdb") as opened:
        opened.register_org("acme", synthetic=False, source="api", at=0)
    (tmp_path / "ledger.duckdb").rename(tmp_path / "ledger.json")
    with open_store(tmp_path / "ledger.json") as opened:
        assert opened.known_orgs() == ["acme"]


@pytest.mark.parametrize(
    ("store", "said"),
    [
        ("postgresql:/u:PWCANARY@127.0.0.1/db", "starts with 'postgresql:/'; start it with postgresql://"),
        ("postgresql//u:PWCANARY@127.0.0.1/db", "starts with 'postgresql//'; start it with postgresql://"),
        ("POSTGRESQL://u:PWCANARY@127.0.0.1:9/db", "starts with 'POSTGRESQL://'; start it with postgresql://"),
        (" postgresql://u:PWCANARY@127.0.0.1:9/db", "starts or ends with white space (a paste slip?); remove it"),
        ("ledger.duckdb ", "'ledger.duckdb ' starts or ends with white space"),
    ],
)
@pytest.mark.parametrize("command", [["sync", "-e", "costs", "-q"], ["status"]])
def test_a_mistyped_postgresql_url_is_refused_without_its_password(
    store: str, said: str, command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--store postgresql:/u:pw@host/db` was refused quoting the password, `postgresql//...` and ` postgresql://...`
    became DuckDB paths (a folder missing, the password in it); now one line says what to fix, and shows no password,
    before anything is made."""
    monkeypatch.chdir(tmp_path)
    env = {"OPENAI_ADMIN_KEY": "sk-admin-schemes-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    result = CliRunner(env=env).invoke(app, [*command, "--store", store])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], result.output
    assert "PWCANARY" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_duckdb_file_in_a_folder_named_postgres_is_still_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a URL-like start (`postgres:`, `postgres//`) is taken for a mistyped URL: `postgres/ledger.duckdb` is a
    store in a folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "postgres").mkdir()
    url = "postgres/ledger.duckdb"
    assert check_store_url(url) == url
    with open_store(url) as opened:
        assert opened.known_orgs() == []


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (None, "not NoneType"),
        (5, "not int"),
        (b"ledger.duckdb", "not bytes"),
        ("", "the store is empty"),
        ("led\x00ger.duckdb", "holds a NUL character"),
    ],
)
def test_a_store_of_the_wrong_type_or_empty_is_refused_before_anything_is_made(
    url: object, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`open_store(None)` made a store named `None` in the working folder, `open_store(5)` one named `5`, `""` an
    in-memory store that kept nothing (and `open_existing_store("")` leaked DuckDB's CatalogException), a NUL a bare
    ValueError: each is now one StoreError saying what a store is, and nothing is created."""
    monkeypatch.chdir(tmp_path)
    for opener in (open_store, open_existing_store):
        with pytest.raises(StoreError, match=said) as caught:
            opener(url)  # type: ignore[operator]
        assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_postgresql_driver_message_quoting_the_url_shows_no_password() -> None:
    """libpq quotes a malformed URL whole in its message (`... in URI: "postgresql://u:pw@[::1/db"`); the CLI masked
    it, but the StoreError the library raised held the password in its str and repr."""
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://u:PWCANARY@[::1/db")
    assert "in URI" in str(caught.value)
    assert "PWCANARY" not in str(caught.value) and "PWCANARY" not in repr(caught.value)


@pytest.mark.parametrize("command", [["sync", "-e", "costs", "-q"], ["status"], ["report"]])
def test_a_libpq_keyword_connection_string_is_refused_and_its_password_never_shown(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--store "host=db dbname=ledger password=..."` (psycopg's other form) synced into a DuckDB file named with the
    password, and a reader's "no store at" error printed it: refused in one line, the URL form said, nothing made."""
    monkeypatch.chdir(tmp_path)
    env = {"OPENAI_ADMIN_KEY": "sk-admin-schemes-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    dsn = "host=127.0.0.1 port=5432 password=hunter2 dbname=ledger user=me"
    result = CliRunner().invoke(app, [*command, "--store", dsn], env=env)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        "error: the store looks like a PostgreSQL keyword/value connection string (host=... dbname=...); give it as"
        " a URL: postgresql://USER@HOST:PORT/DBNAME (keep the password in PGPASSFILE or PGPASSWORD)"
    ]
    assert list(tmp_path.iterdir()) == []
    # Every error masks a keyword/value password as it masks a URL's, quoted or not, wherever the text comes from.
    assert (
        str(StoreError(f"no store at {dsn}"))
        == "no store at host=127.0.0.1 port=5432 password=*** dbname=ledger user=me"
    )
    assert str(StoreError("dbname=x password = 'a b' user=u")) == "dbname=x password = *** user=u"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ledger:PW%ZZCANARY@127.0.0.1:9/ledger",
        "postgresql://127.0.0.1:9/ledger?password=PW%ZZCANARY",
        "postgresql://127.0.0.1:9/ledger?sslmode=require&password=PW%ZZCANARY",
    ],
)
def test_a_password_libpq_quotes_alone_is_not_shown(url: str) -> None:
    """A password holding a `%` that is no percent escape (`PW%ZZ...`, typed as is) made libpq say `invalid
    percent-encoded token: "PW%ZZCANARY"`: the URL in the StoreError was masked, but that token, the password alone,
    was shown whole in its str, repr and args, and so on the command line's one line. It is `***` there too."""
    with pytest.raises(StoreError) as caught:
        open_store(url)
    message = str(caught.value)
    assert 'invalid percent-encoded token: "***"' in message
    assert "CANARY" not in message + repr(caught.value) + repr(caught.value.args)
