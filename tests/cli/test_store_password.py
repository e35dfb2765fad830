"""A PostgreSQL store's password never lands in usageledger.toml: ``init`` keeps it where libpq reads it (PGPASSFILE,
~/.pgpass), and every later command connects with the URL alone, against a server that asks for the password."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from usageledger._secrets import url_without_password
from usageledger.cli import app
from usageledger.store import open_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

pytestmark = pytest.mark.postgres

PASSWORD = "Hunter:2\\not-shown"
"""A colon and a backslash: the two characters the password file escapes."""
IN_FILE = "Hunter\\:2\\\\not-shown"


def _role(request: pytest.FixtureRequest) -> tuple[Any, str, str]:
    """The session cluster, a role it asks for PASSWORD, and that role's URL with the password in it."""
    cluster = request.getfixturevalue("_pg_cluster")
    role = cluster.password_role(PASSWORD)
    return cluster, role, f"postgresql://{role}:{quote(PASSWORD, safe='')}@127.0.0.1:{cluster.port}/{role}"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder, and PGPASSFILE in a folder of it not made yet (never the user's own ~/.pgpass)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "secrets" / "pgpass"))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    return tmp_path


def test_init_keeps_the_password_in_the_password_file_and_every_command_connects_with_the_config(
    here: Path, request: pytest.FixtureRequest, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init --store postgresql://user:pw@host/db` wrote the URL, password and all, into usageledger.toml. The config
    now holds the URL without it, the password is one line of PGPASSFILE (0600, `:` and `\\` escaped), stderr says
    where in one line without it; and sync, report and doctor connect with the saved config alone, which fails
    without the password file (the server asks for the password)."""
    cluster, role, url = _role(request)
    init = CliRunner().invoke(app, ["init", "--store", url])
    assert init.exit_code == 0, init.output
    pgpass = here / "secrets" / "pgpass"
    assert pgpass.read_text() == f"127.0.0.1:{cluster.port}:{role}:{role}:{IN_FILE}\n"
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    config = (here / "usageledger.toml").read_text()
    assert f'url = "postgresql://{role}@127.0.0.1:{cluster.port}/{role}"' in config and "Hunter" not in config
    said = init.stderr.strip()
    assert "\n" not in said and said == (
        f"The store's password is not in usageledger.toml: it was saved to {pgpass}"
        f" (127.0.0.1:{cluster.port}:{role}:{role}), where libpq reads it."
    )
    assert "Hunter" not in init.output

    runner = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY})
    argv = ["--base-url", emulator_url, "--now", str(EMULATOR_NOW)]
    synced = runner.invoke(app, ["sync", *argv, "--since", "2d", "-e", "costs", "--quiet"])
    assert synced.exit_code == 0, synced.output
    report = runner.invoke(app, ["report", "--format", "json"])
    assert report.exit_code == 0 and '"totals"' in report.stdout, report.output
    doctor = runner.invoke(app, ["doctor", "--base-url", emulator_url])
    assert doctor.exit_code == 0 and "opens and its role may write every table of it" in doctor.stdout, doctor.output
    assert "password" not in doctor.stdout, doctor.output  # the config holds none: nothing to warn of

    monkeypatch.setenv("PGPASSFILE", str(here / "none"))
    refused = runner.invoke(app, ["status"])  # the same config without the password file: the server refuses it
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.rstrip().endswith(
        f"; the store URL holds no password, and neither PGPASSWORD nor {here / 'none'} gave the right one for it: add"
        " the line host:port:dbname:user:password to that file (chmod 600), or correct it there"
    ), refused.stderr


def test_the_home_password_file_is_used_without_pgpassfile(
    here: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without PGPASSFILE the password goes to ~/.pgpass, the file libpq reads then: `status` connects with it."""
    monkeypatch.delenv("PGPASSFILE")
    monkeypatch.setenv("HOME", str(here))
    cluster, role, url = _role(request)
    assert CliRunner().invoke(app, ["init", "--store", url]).exit_code == 0
    assert (here / ".pgpass").read_text() == f"127.0.0.1:{cluster.port}:{role}:{role}:{IN_FILE}\n"
    status = CliRunner().invoke(app, ["status"])
    assert status.exit_code == 0, status.output


def test_an_entry_libpq_already_reads_is_left_alone(here: Path, request: pytest.FixtureRequest) -> None:
    """A password file that already gives the password (here by a wildcard line after a comment) is not touched, and
    init says which line libpq reads it from."""
    _, role, url = _role(request)
    pgpass = here / "secrets" / "pgpass"
    pgpass.parent.mkdir()
    kept = f"# mine\nother:5432:*:*:x\n127.0.0.1:*:*:{role}:{IN_FILE}"  # no line end after the last line
    pgpass.write_text(kept)
    pgpass.chmod(0o600)
    init = CliRunner().invoke(app, ["init", "--store", url])
    assert init.exit_code == 0, init.output
    assert pgpass.read_text() == kept
    assert init.stderr.strip().endswith(f"libpq reads it from {pgpass} (line 3).")
    assert "Hunter" not in (here / "usageledger.toml").read_text()


def test_a_file_without_a_last_line_end_gets_the_entry_on_a_line_of_its_own(
    here: Path, request: pytest.FixtureRequest
) -> None:
    """An entry for another database is kept, and the new one is appended on a line of its own."""
    cluster, role, url = _role(request)
    pgpass = here / "secrets" / "pgpass"
    pgpass.parent.mkdir()
    pgpass.write_text(f"127.0.0.1:{cluster.port}:elsewhere:{role}:x")
    pgpass.chmod(0o600)
    assert CliRunner().invoke(app, ["init", "--store", url]).exit_code == 0
    assert pgpass.read_text().splitlines() == [
        f"127.0.0.1:{cluster.port}:elsewhere:{role}:x",
        f"127.0.0.1:{cluster.port}:{role}:{role}:{IN_FILE}",
    ]


@pytest.mark.parametrize(
    ("line", "mode", "said"),
    [
        ("*:*:*:{role}:an-older-one", 0o600, "gives another password for 127.0.0.1:{port}:{role}:{role} (line 1)"),
        ("other:1:x:y:z", 0o644, "can be read by others (mode 0644), so libpq ignores it; run: chmod 600 {path}"),
    ],
    ids=["another-password", "others-read-it"],
)
def test_a_password_file_init_must_not_change_is_refused_before_anything_is_made(
    here: Path, request: pytest.FixtureRequest, line: str, mode: int, said: str
) -> None:
    """Another password already saved for that server, database and user is never overwritten, and a file others
    may read (which libpq ignores) is not written to: one line naming the file and the fix, no config, no store."""
    cluster, role, url = _role(request)
    pgpass = here / "secrets" / "pgpass"
    pgpass.parent.mkdir()
    pgpass.write_text(line.format(role=role) + "\n")
    pgpass.chmod(mode)
    init = CliRunner().invoke(app, ["init", "--store", url])
    assert init.exit_code == 1, init.output
    message = init.stderr.strip()
    assert "\n" not in message and f"the password file {pgpass} " in message, message
    assert said.format(role=role, port=cluster.port, path=pgpass) in message, message
    assert "Hunter" not in init.output and pgpass.read_text() == line.format(role=role) + "\n"
    assert not (here / "usageledger.toml").exists()
    with open_store(url, migrate=False) as store:
        assert store.applied_migrations() == []


def test_a_password_given_by_pgpassword_needs_nothing_saved(
    here: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PGPASSWORD, a URL without a password connects and nothing is saved or said of a password; a URL whose
    password PGPASSWORD also gives is written without it, and nothing is saved either."""
    _, _, url = _role(request)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    bare = url_without_password(url)
    init = CliRunner().invoke(app, ["init", "--store", bare])
    assert init.exit_code == 0 and "password" not in init.output, init.output
    again = CliRunner().invoke(app, ["init", "--store", url, "--force"])
    assert again.exit_code == 0, again.output
    assert "PGPASSWORD gives it here" in again.stderr and "Hunter" not in again.output
    assert not (here / "secrets").exists()
    assert f'url = "{bare}"' in (here / "usageledger.toml").read_text()


def test_a_pgpassword_that_differs_from_the_urls_is_refused(
    here: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq reads PGPASSWORD before any password file: a URL whose password differs from it would connect once
    (init's own connection has the password) and never again from the config. Refused in one line, nothing made."""
    _, _, url = _role(request)
    monkeypatch.setenv("PGPASSWORD", "another-one")
    init = CliRunner().invoke(app, ["init", "--store", url])
    assert init.exit_code == 1, init.output
    assert init.stderr.strip() == (
        "error: PGPASSWORD holds another password than the store URL's, and libpq reads it before any password file,"
        " so the URL would not connect without its password: unset PGPASSWORD (or correct it), then run init again"
    )
    assert not (here / "usageledger.toml").exists() and not (here / "secrets").exists()


def test_doctor_names_a_password_an_older_init_left_in_the_config(
    here: Path, request: pytest.FixtureRequest, emulator_url: str
) -> None:
    """A config an older init wrote, its store URL holding the password (0600): doctor warns of it and says where
    the password goes instead, never showing it."""
    _, _, url = _role(request)
    config = here / "usageledger.toml"
    config.write_text(f'[store]\nurl = "{url}"\n')
    config.chmod(0o600)
    doctor = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, ["doctor", "--base-url", emulator_url])
    lines = [line for line in doctor.stdout.splitlines() if "usageledger.toml holds a password" in line]
    assert lines and "Hunter" not in doctor.output, doctor.output
    assert f"{here / 'secrets' / 'pgpass'}" in doctor.stdout and "usageledger init --force" not in doctor.stdout


@pytest.mark.parametrize(
    ("url", "bare"),
    [
        ("postgresql://u:p%40ss@db:6432/ledger", "postgresql://u@db:6432/ledger"),
        ("postgresql://:pw@db/ledger", "postgresql://db/ledger"),
        ("postgres://u@db/ledger?sslmode=require&password=pw", "postgres://u@db/ledger?sslmode=require"),
        ("postgresql://u@db/ledger?password=pw", "postgresql://u@db/ledger"),
        ("postgresql://u@db/ledger", "postgresql://u@db/ledger"),
    ],
)
def test_the_url_a_config_keeps_has_no_password_and_all_else_as_written(url: str, bare: str) -> None:
    """The password goes, from the user info or the query; the user, host, port, database and options stay."""
    assert url_without_password(url) == bare
