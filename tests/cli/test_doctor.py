"""``usageledger doctor`` against the real emulator over loopback: each broken set-up is found, explained and fixed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import duckdb
import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.config import write_default_config
from usageledger.doctor import Diagnosis, diagnose
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.store import open_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.leaks import assert_no_secret, canary_key, dead_url

CLOCK: Final = float(EMULATOR_NOW)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Callable[[str, Path], str]) -> Path:
    """A working directory with a migrated DuckDB store (a copy of the migrated template) and a valid 0600 config
    that points at it."""
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "ledger.duckdb"
    new_store("duckdb", store)
    write_default_config(tmp_path / "usageledger.toml", store_url=str(store))
    return tmp_path


def run(emulator_url: str, key: str | None = FAKE_ADMIN_KEY, **kw: object) -> Diagnosis:
    environ = {} if key is None else {"OPENAI_ADMIN_KEY": key}
    return diagnose(base_url=str(kw.pop("base_url", emulator_url)), environ=environ, clock=lambda: CLOCK, **kw)  # type: ignore[arg-type]


def statuses(diagnosis: Diagnosis) -> dict[str, str]:
    return {f.check: f.status for f in diagnosis.findings}


def test_a_good_setup_passes_every_check(setup: Path, emulator_url: str) -> None:
    """Config 0600, admin key, emulator reachable, probe 200, store writable and migrated: all ok."""
    diagnosis = run(emulator_url)
    assert statuses(diagnosis) == {
        "config": "ok",
        "key": "ok",
        "base URL": "ok",
        "probe": "ok",
        "store": "ok",
        "migrations": "ok",
    }
    assert diagnosis.ok


def test_the_cli_exits_0_when_all_pass_and_prints_each_check(setup: Path, emulator_url: str) -> None:
    """`usageledger doctor` prints one line per check and the verdict, exit 0."""
    result = CliRunner().invoke(app, ["doctor", "--base-url", emulator_url], env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY})
    assert result.exit_code == 0, result.output
    for check in ("config", "key", "base URL", "probe", "store", "migrations"):
        assert f"✓ {check}:" in result.stdout
    assert "All checks passed." in result.stdout and FAKE_ADMIN_KEY not in result.output


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_on_an_output_that_cannot_show_the_marks_pass_and_fail_still_differ(
    setup: Path, emulator_url: str, encoding: str
) -> None:
    """With standard output in Latin-1 or ASCII (`PYTHONIOENCODING`, a legacy console) every mark, ✓ and ✗ alike, was
    printed as `?`: a check that passed read as one that failed. The marks are words there (`ok`, `FAIL`)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_ADMIN_KEY"}
    env |= {"PYTHONIOENCODING": encoding, "OPENAI_BASE_URL": emulator_url}
    done = subprocess.run(
        [sys.executable, "-c", "from usageledger.cli import main; main()", "doctor"],
        env=env,
        cwd=setup,
        capture_output=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.decode(encoding).splitlines()
    assert done.returncode == 1
    assert any(line.startswith("ok config: ") for line in lines), lines
    assert any(line.startswith("FAIL key: no admin key") for line in lines), lines
    assert not any(line.startswith("? ") for line in lines), lines


def test_a_missing_key_is_named_with_the_variable_to_set(setup: Path, emulator_url: str) -> None:
    """No OPENAI_ADMIN_KEY: the key check fails naming the variable; the probe is skipped; exit 1."""
    diagnosis = run(emulator_url, key=None)
    key = diagnosis.by_check("key")
    assert key.status == "fail" and "OPENAI_ADMIN_KEY is not set" in key.finding
    assert key.fix is not None and key.fix.startswith("export OPENAI_ADMIN_KEY=sk-admin-")
    assert diagnosis.by_check("probe").status == "skip" and not diagnosis.ok
    result = CliRunner().invoke(app, ["doctor", "--base-url", emulator_url], env={"OPENAI_ADMIN_KEY": None})
    assert result.exit_code == 1 and "✗ key: no admin key" in result.stdout and "fix: export" in result.stdout
    # set to "" (an `export OPENAI_ADMIN_KEY=` with nothing pasted): it said "is not set"
    empty = run(emulator_url, key="").by_check("key")
    assert empty.status == "fail" and "OPENAI_ADMIN_KEY is set but empty" in empty.finding


def test_a_project_key_fails_by_prefix_and_by_the_403_probe(setup: Path, emulator_url: str) -> None:
    """An sk-proj- key: the prefix check says it is a project key; the probe's 403 says the scope is missing."""
    key = canary_key("sk-proj-")
    diagnosis = run(emulator_url, key=key)
    assert diagnosis.by_check("key").status == "fail" and "project key" in diagnosis.by_check("key").finding
    probe = diagnosis.by_check("probe")
    assert probe.status == "fail" and "403" in probe.finding and "api.usage.read" in probe.finding
    assert probe.fix is not None and "admin key" in probe.fix
    base = diagnosis.by_check("base URL")  # said with its source, as when the probe passes ("answers" alone was)
    assert base.status == "ok" and base.finding == f"{emulator_url} answers (from --base-url)", base.finding
    assert_no_secret({f.check: f"{f.finding} {f.fix}" for f in diagnosis.findings}, key)


def test_a_refused_admin_key_is_a_401_explained(setup: Path) -> None:
    """An admin key the server does not know (a pinned emulator): the probe fails with 401 and what to do."""
    pinned = Emulator(EmulatorConfig(days=3, projects=1, now=EMULATOR_NOW, admin_key=canary_key(fill="p")))
    key = canary_key()
    with run_server(pinned) as url:
        diagnosis = run(url, key=key)
    probe = diagnosis.by_check("probe")
    assert diagnosis.by_check("key").status == "ok"
    assert probe.status == "fail" and "401" in probe.finding and "revoked" in probe.finding
    assert_no_secret({f.check: f"{f.finding} {f.fix}" for f in diagnosis.findings}, key)


def test_an_unreachable_url_is_explained(setup: Path, emulator_url: str) -> None:
    """Nobody listening: the base URL check fails with the connection error; the probe is skipped."""
    diagnosis = run(emulator_url, base_url=dead_url())
    base = diagnosis.by_check("base URL")
    assert base.status == "fail" and "does not answer" in base.finding and "could not reach 127.0.0.1" in base.finding
    assert diagnosis.by_check("probe").status == "skip"


@pytest.mark.parametrize(
    ("url", "words"),
    [("http://usage.example.com/v1", "refusing plain http://"), ("{emulator}/../", "no usage API there (404)")],
    ids=["insecure-http", "missing-v1"],
)
def test_a_refused_or_wrong_base_url_is_explained(setup: Path, emulator_url: str, url: str, words: str) -> None:
    """Plain http:// off loopback is refused before sending; a URL without /v1 answers 404 and the fix says /v1."""
    diagnosis = run(emulator_url, base_url=url.format(emulator=emulator_url.removesuffix("/v1")).removesuffix("/../"))
    base = diagnosis.by_check("base URL")
    assert base.status == "fail" and words in base.finding and not diagnosis.ok


@pytest.mark.parametrize("path", ["/v1/organization", "/v1/organization/costs", "/", ""])
def test_a_base_url_with_a_wrong_path_gets_the_corrected_url_as_its_fix(
    setup: Path, emulator_url: str, path: str
) -> None:
    """`--base-url http://host:P/v1/organization` (or `http://host:P/`) answered 404 and the fix was the generic
    `e.g. https://api.openai.com/v1`: it is now the URL the user gave cut to end in /v1, set where it came from."""
    origin = emulator_url.removesuffix("/v1")
    base = run(emulator_url, base_url=origin + path).by_check("base URL")
    assert base.status == "fail" and "(from --base-url)" in base.finding, base
    assert base.fix == f"the base URL must end in /v1: pass --base-url {emulator_url}"
    env = diagnose(environ={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": origin + path}, clock=lambda: CLOCK)
    assert env.by_check("base URL").fix == f"the base URL must end in /v1: set OPENAI_BASE_URL={emulator_url}"
    proxy = run(emulator_url, base_url=f"{origin}/api/v1").by_check("base URL")  # ends in /v1: the path is not it
    assert proxy.fix == f"{origin}/api/v1 ends in /v1 but serves no usage API: check its host and path, e.g. " + (
        "https://api.openai.com/v1"
    )


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("{origin}/v1?x=1", "{origin}/v1"),
        ("{origin}/v1#top", "{origin}/v1"),
        ("{origin}/v1/sk-admin-" + "a" * 24, "{origin}/v1"),
        ("http://user:pw@{host}/v1", "{origin}/v1"),
        ("ftp://usage.example.com/v1", "https://usage.example.com/v1"),
        ("{host}/v1", "{origin}/v1"),
    ],
    ids=["query", "fragment", "key", "password", "ftp", "no-scheme"],
)
def test_a_refused_base_url_gets_the_refusals_own_fix_set_where_it_came_from(
    setup: Path, emulator_url: str, given: str, meant: str
) -> None:
    """`doctor --base-url http://host/v1?x=1` (a key, a password, ftp://, no scheme) gave the generic fix "give the
    base URL alone, ending in /v1, with no user name, ...": the fix is now the URL the refusal itself names, set
    where it came from (`pass --base-url ...`, `set OPENAI_BASE_URL=...`)."""
    origin = emulator_url.removesuffix("/v1")
    host = origin.removeprefix("http://")
    url, want = given.format(origin=origin, host=host), meant.format(origin=origin)
    base = run(emulator_url, base_url=url).by_check("base URL")
    assert base.status == "fail" and want in base.finding, base
    assert base.fix == f"pass --base-url {want}", base
    env = diagnose(environ={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": url}, clock=lambda: CLOCK)
    assert env.by_check("base URL").fix == f"set OPENAI_BASE_URL={want}"


def test_a_refused_base_url_with_no_url_meant_names_its_source_in_the_fix(setup: Path, emulator_url: str) -> None:
    """White space inside or a port out of range: no URL to suggest, so the fix is the refusal's advice, named."""
    base = run(emulator_url, base_url="http://127.0.0.1:99999/v1").by_check("base URL")
    assert base.fix == "--base-url: give a port from 1 to 65535 (the emulator's: usageledger emulator prints its URL)"


def test_credentials_or_white_space_in_the_base_url_fail_the_base_url_not_the_key(
    setup: Path, emulator_url: str
) -> None:
    """`doctor --base-url http://user:pw@host/v1` said the API refused the key (httpx sent the URL's user and
    password as Basic auth, so the emulator answered 401 invalid_authorization_header) and told the user to create a
    new key. Now the base URL check fails naming where the URL came from, without its password; the good key stays
    ok and no request is sent. A trailing space (a paste) is trimmed and the probe passes."""
    with_credentials = emulator_url.replace("http://", "http://user:pw-SECRET@")
    cli = CliRunner().invoke(app, ["doctor", "--base-url", with_credentials], env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY})
    assert cli.exit_code == 1, cli.output
    assert "✗ base URL: --base-url: the base URL http://…@127.0.0.1" in cli.stdout, cli.stdout
    assert "✓ key:" in cli.stdout and "- probe: not sent" in cli.stdout and "create a new admin key" not in cli.stdout
    assert "SECRET" not in cli.output
    from_env = diagnose(environ={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": with_credentials})
    base = from_env.by_check("base URL")
    assert base.status == "fail" and base.finding.startswith("OPENAI_BASE_URL: the base URL http://…@"), base
    assert "SECRET" not in f"{base.finding} {base.fix}"
    (setup / "usageledger.toml").write_text(f'[[orgs]]\nname = "acme"\nbase_url = "{with_credentials}"\n')
    in_config = diagnose(environ={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}, clock=lambda: CLOCK)
    assert in_config.by_check("config").status == "fail"
    assert in_config.by_check("config").finding.startswith("usageledger.toml: orgs[0].base_url: the base URL http://…@")
    (setup / "usageledger.toml").unlink()
    trimmed = run(emulator_url, base_url=f"{emulator_url} ")
    assert statuses(trimmed)["base URL"] == statuses(trimmed)["probe"] == "ok", trimmed


def test_a_world_readable_config_with_a_key_fails_with_the_chmod_fix(setup: Path, emulator_url: str) -> None:
    """A config holding a key at mode 0644 fails, and the fix is the chmod line; the key is never shown."""
    key = canary_key()
    config = setup / "usageledger.toml"
    config.write_text(f'[[orgs]]\nname = "acme"\napi_key = "{key}"\n')
    config.chmod(0o644)
    diagnosis = run(emulator_url)
    check = diagnosis.by_check("config permissions")
    assert check.status == "fail" and "every user can read it (mode 0644)" in check.finding
    assert check.fix is not None and check.fix.startswith("run: chmod 600 usageledger.toml")
    result = CliRunner().invoke(app, ["doctor", "--base-url", emulator_url], env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY})
    assert result.exit_code == 1 and "chmod 600" in result.stdout
    assert_no_secret({"stdout": result.stdout, "stderr": result.stderr}, key)
    config.chmod(0o640)
    assert "its group can read it (mode 0640)" in run(emulator_url).by_check("config permissions").finding
    config.chmod(0o600)
    fixed = run(emulator_url)
    assert fixed.by_check("config permissions").status == "ok" and fixed.by_check("key (acme)").status == "ok"


def test_an_invalid_config_names_the_key(setup: Path, emulator_url: str) -> None:
    """An unknown key in the config fails the config check with the key's name."""
    (setup / "usageledger.toml").write_text("[sync]\nlag_dayz = 3\n")
    diagnosis = run(emulator_url)
    config = diagnosis.by_check("config")
    assert config.status == "fail" and "sync.lag_dayz: unknown key" in config.finding
    assert diagnosis.by_check("store").status == "skip", "the store is named in the broken file"
    assert run(emulator_url, store=str(setup / "ledger.duckdb")).by_check("migrations").status == "ok"


def test_a_store_that_is_not_migrated_lists_the_pending_migrations(setup: Path, emulator_url: str) -> None:
    """A DuckDB file without the schema: the store opens and writes, migrations fail naming them, fix is sync."""
    bare = setup / "bare.duckdb"
    duckdb.connect(str(bare)).close()
    diagnosis = run(emulator_url, store=str(bare))
    assert diagnosis.by_check("store").status == "ok"
    migrations = diagnosis.by_check("migrations")
    assert migrations.status == "fail" and "0001_streams_and_sync_runs" in migrations.finding
    assert migrations.fix == "run `usageledger sync` (it applies them before syncing)"
    with duckdb.connect(str(bare)) as con:  # the check changed nothing
        assert con.execute("SELECT table_name FROM information_schema.tables").fetchall() == []


def test_another_programs_duckdb_file_fails_the_store_check(setup: Path, emulator_url: str) -> None:
    """A DuckDB file holding another program's tables is no store to sync into (the fix said "run sync", which wrote
    usageledger's tables beside them): the store check fails naming them, and the file is left as it was."""
    bare = setup / "bare.duckdb"
    with duckdb.connect(str(bare)) as con:
        con.execute("CREATE TABLE notes (x INTEGER)")
    store = run(emulator_url, store=str(bare)).by_check("store")
    assert store.status == "fail" and "a DuckDB database of another program (it holds notes)" in store.finding
    with duckdb.connect(str(bare)) as con:
        assert con.execute("SELECT table_name FROM information_schema.tables").fetchall() == [("notes",)]


def test_a_store_in_a_missing_folder_fails(setup: Path, emulator_url: str) -> None:
    """A store path whose folder does not exist cannot be created: fail, with the fix."""
    store = run(emulator_url, store=str(setup / "nowhere" / "ledger.duckdb")).by_check("store")
    assert store.status == "fail" and "missing or not writable" in store.finding


def test_a_store_fix_names_where_the_store_came_from(
    setup: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store named by `[store] url` in the config was told "pass --store": the fix now names the config key (or
    USAGELEDGER_STORE, or --store) that gave it, and what to change there."""
    config = Path("usageledger.toml")  # found in the working directory (setup), and named as found
    config.write_text('[store]\nurl = ":memory:"\n')
    memory = run(emulator_url).by_check("store")
    assert memory.status == "fail" and f"(from [store] url in {config})" in memory.finding, memory
    assert memory.fix == f"set [store] url in {config} to a DuckDB file path or a postgresql:// URL"
    config.write_text('[store]\nurl = "nowhere/ledger.duckdb"\n')
    missing = run(emulator_url).by_check("store")
    assert missing.fix == f"create nowhere (or set [store] url in {config} to a path in a writable folder)"
    flag = run(emulator_url, store=":memory:").by_check("store")
    assert flag.fix == "pass --store with a DuckDB file path or a postgresql:// URL"
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    done = CliRunner().invoke(app, ["doctor", "--base-url", emulator_url], env={"USAGELEDGER_STORE": ":memory:"})
    assert "(from USAGELEDGER_STORE)" in done.output, done.output
    assert "fix: set USAGELEDGER_STORE to a DuckDB file path or a postgresql:// URL" in done.output, done.output


def test_no_store_yet_is_fine_when_its_folder_is_writable(setup: Path, emulator_url: str) -> None:
    """Before the first sync there is no store file: ok, the sync will create it."""
    store = run(emulator_url, store=str(setup / "later.duckdb")).by_check("store")
    assert store.status == "ok" and "first `usageledger sync` creates it" in store.finding
    assert not (setup / "later.duckdb").exists()


def test_a_key_typed_into_the_wrong_field_is_not_repeated(setup: Path, emulator_url: str) -> None:
    """A key pasted as key_env: the config loader's error quotes it, the doctor's finding shows only sk-admin-…."""
    key = canary_key()
    config = setup / "usageledger.toml"
    config.write_text(f'[[orgs]]\nname = "acme"\nkey_env = "{key}"\n')
    config.chmod(0o600)
    diagnosis = run(emulator_url)
    finding = diagnosis.by_check("config")
    assert (
        finding.status == "fail"
        and "orgs[0].key_env: 'sk-admin-…' is not an environment variable name" in finding.finding
    )
    result = CliRunner().invoke(app, ["doctor", "--base-url", emulator_url], env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY})
    assert result.exit_code == 1
    assert_no_secret({"stdout": result.stdout, "stderr": result.stderr, "findings": repr(diagnosis)}, key)


def test_an_unreachable_postgres_store_is_explained_without_its_password(setup: Path, emulator_url: str) -> None:
    """A postgresql:// store nobody serves: the store check fails, and the URL is shown with the password masked."""
    port = dead_url().rsplit(":", 1)[1].split("/")[0]
    store = run(emulator_url, store=f"postgresql://alice:hunter2secret@127.0.0.1:{port}/ledger").by_check("store")
    assert store.status == "fail" and f"cannot open postgresql://alice:***@127.0.0.1:{port}/ledger" in store.finding
    assert "hunter2secret" not in f"{store.finding} {store.fix}"


@pytest.mark.postgres
def test_a_postgres_store_is_checked_like_duckdb(setup: Path, emulator_url: str, pg_url: str) -> None:
    """A fresh PostgreSQL database: writable but unmigrated (fail); after open_store migrates it, all ok."""
    fresh = run(emulator_url, store=pg_url)
    assert fresh.by_check("store").status == "ok" and fresh.by_check("migrations").status == "fail"
    with open_store(pg_url):
        pass
    migrated = run(emulator_url, store=pg_url)
    assert migrated.ok and migrated.by_check("migrations").finding == "the schema is current"
    with open_store(pg_url, migrate=False) as store:  # the write probe left nothing behind
        assert store.query("SELECT to_regclass('usageledger_doctor_probe')") == [(None,)]


@pytest.mark.postgres
def test_a_postgres_role_is_judged_by_its_rights_on_the_stores_tables(
    setup: Path, emulator_url: str, migrated_pg_url: str, request: pytest.FixtureRequest
) -> None:
    """The store check created a table to see whether the store takes writes, and so failed a role that may write
    every table of a made store but create none in its schema (PostgreSQL 15 on: every role but the database's owner),
    which syncs it well: "opens but refuses writes ... permission denied for schema public". It reads the role's
    rights on the store's tables now: one that may only read is told what it lacks and the grants; granted, it
    passes."""
    import uuid

    cluster = request.getfixturevalue("_pg_cluster")
    database = migrated_pg_url.rsplit("/", 1)[1]
    role = f"r{uuid.uuid4().hex[:12]}"
    cluster.sql(f"CREATE ROLE {role} LOGIN")
    cluster.sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}", database=database)
    url = migrated_pg_url.replace("postgresql://postgres@", f"postgresql://{role}:hunter2secret@", 1)
    assert url != migrated_pg_url
    reader = run(emulator_url, store=url).by_check("store")
    assert reader.status == "fail", reader
    assert "opens but its role may not sync it: it lacks USAGE on credit_topups_seq, USAGE on revisions_seq" in (
        reader.finding
    )
    grants = reader.fix.split("or have it run ", 1)[1].split(" (the store's schema", 1)[0].split(" and ")
    assert len(grants) == 2 and "hunter2secret" not in f"{reader.finding} {reader.fix}", reader
    for grant in grants:
        cluster.sql(grant, database=database)
    writer = run(emulator_url, store=url)
    assert writer.by_check("store").status == "ok" and writer.ok, writer.findings
    assert writer.by_check("store").finding.endswith("opens and its role may write every table of it")


def test_a_store_password_with_a_hash_is_masked_whole(setup: Path, emulator_url: str) -> None:
    """A password holding '#' (which URL parsing takes for a fragment) is masked whole by the one masker."""
    port = dead_url().rsplit(":", 1)[1].split("/")[0]
    store = run(emulator_url, store=f"postgresql://alice:hunter2#secret@127.0.0.1:{port}/ledger").by_check("store")
    assert store.status == "fail" and f"postgresql://alice:***@127.0.0.1:{port}/ledger" in store.finding
    assert "secret" not in f"{store.finding} {store.fix}" and "hunter2" not in f"{store.finding} {store.fix}"
