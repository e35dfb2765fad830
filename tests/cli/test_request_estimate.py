"""One rule for a command about to send many requests (`usageledger.cli._estimate`): `query` and `sync` count them
before the first, warn past 100 and refuse past 1,000 without --allow-many-requests. `sync --since 2000-01-01` (a
mistyped 2020) started 3,542 requests with no word first, where `query` gave an estimate."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger import catalogue
from usageledger.cli import app
from usageledger.cli._estimate import MANY_REQUESTS, TOO_MANY_REQUESTS

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

NOT_A_KEY = "not-an-admin-key"
"""The emulator refuses it at the first request (401): a run that gets past the estimate ends there, at once."""

STREAMS = len(catalogue.ENDPOINTS)
"""A sync without a config reads every endpoint daily, one stream each (``store.default_streams``)."""


def _requests(usage_windows: int, costs_windows: int, orgs: int = 1) -> str:
    """The requests a default sync of ``orgs`` orgs takes, from the windows of one daily stream (31 days a request
    for usage, 180 for costs): counted from the catalogue, so a new endpoint changes no number written here."""
    return f"{orgs * (len(catalogue.USAGE_ENDPOINTS) * usage_windows + costs_windows):,}"


def _sync(emulator_url: str, store: Path, *argv: str, key: str = FAKE_ADMIN_KEY):  # type: ignore[no-untyped-def]
    base = ["sync", "--store", str(store), "--base-url", emulator_url, "--now", str(EMULATOR_NOW), "-q"]
    return CliRunner(env={"OPENAI_ADMIN_KEY": key}).invoke(app, [*base, *argv])


@pytest.mark.parametrize(
    ("since", "windows", "first"),
    [("2000-01-01", (317, 55), "2000-01-01"), ("1000000000", (297, 52), "2001-09-09")],
)
def test_a_sync_reaching_back_decades_is_refused_before_any_request(
    emulator_url: str, tmp_path: Path, since: str, windows: tuple[int, int], first: str
) -> None:
    """`sync --since 2000-01-01` (or Unix seconds of 2001) is refused in one line naming --since, the requests it
    would take, the day it reaches back to and the fix; nothing is sent and no store is left behind."""
    store = tmp_path / "s.duckdb"
    done = _sync(emulator_url, store, "--since", since)
    assert done.exit_code == 2, done.output
    assert done.stderr == (
        f"error: --since: this sync would take up to {_requests(*windows)} requests ({STREAMS} streams, from {first});"
        " give a later --since or an --until, or pass --allow-many-requests to send them\n"
    )
    assert list(tmp_path.iterdir()) == []
    # allowed, the same run goes on to its first request: the refused key (401) is what stops it now
    allowed = _sync(emulator_url, store, "--since", since, "--allow-many-requests", key=NOT_A_KEY)
    assert allowed.exit_code == 1 and "the API refused the admin key" in allowed.stderr, allowed.output


def test_a_first_sync_reaching_back_by_the_config_is_refused_naming_its_key(emulator_url: str, tmp_path: Path) -> None:
    """`[sync] since = "9000d"` (a first sync's reach) is counted as --since is, and the refusal names sync.since;
    a store whose streams have watermarks syncs from them, so the same config then asks for a few requests only."""
    config = tmp_path / "u.toml"
    config.write_text('[sync]\nsince = "9000d"\n', encoding="utf-8")
    store = tmp_path / "s.duckdb"
    done = _sync(emulator_url, store, "--config", str(config))
    assert done.exit_code == 2 and done.stderr.startswith("error: sync.since: this sync would take up to "), done.output
    assert done.stderr.endswith("; shorten sync.since, or give --since, or pass --allow-many-requests to send them\n")
    assert not store.exists()
    assert _sync(emulator_url, store, "--since", "7d").exit_code == 0
    assert _sync(emulator_url, store, "--config", str(config)).exit_code == 0


def test_a_sync_past_the_warning_says_its_estimate_as_query_does(emulator_url: str, tmp_path: Path) -> None:
    """Past 100 requests `sync` says one line first, in `query`'s words, and then syncs; --quiet keeps it silent
    as it keeps the progress."""
    argv = ["sync", "--store", str(tmp_path / "s.duckdb"), "--base-url", emulator_url, "--now", str(EMULATOR_NOW)]
    argv += ["-e", "completions", "--since", "2018-01-01", "--no-directory"]
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, argv)
    assert done.exit_code == 0, done.output
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warned == [
        "warning: this sync may take up to 105 requests (1 stream, from 2018-01-01); give a later --since or an --until"
    ]
    assert MANY_REQUESTS < 105 < TOO_MANY_REQUESTS


def test_a_query_past_the_bound_is_refused_quiet_or_not(emulator_url: str) -> None:
    """The same bound for `query`: 1,096 days of one-minute buckets are 1,096 requests, refused naming --start
    (--quiet silences the warning, never the refusal); with --allow-many-requests it starts."""
    argv = ["query", "completions", "--start", "2023-01-01", "--end", "2026-01-01", "--bucket-width", "1m"]
    argv += ["--base-url", emulator_url, "-f", "csv"]
    for extra in ([], ["-q"]):
        done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, [*argv, *extra])
        assert done.exit_code == 2 and done.stdout == "", done.output
        assert done.stderr == (
            "error: --start: this query would take up to 1,096 requests (1,578,240 buckets of 1m, at most 1,440 per"
            " request); narrow --start/--end, or use --bucket-width 1h, or pass --allow-many-requests to send them\n"
        )
    allowed = CliRunner(env={"OPENAI_ADMIN_KEY": NOT_A_KEY}).invoke(app, [*argv, "-q", "--allow-many-requests"])
    assert allowed.exit_code == 1 and "the API refused the admin key" in allowed.stderr, allowed.output


def test_many_orgs_are_told_their_total_but_refused_only_for_one_orgs_range(emulator_url: str, tmp_path: Path) -> None:
    """What a mistyped year makes many is one org's requests, and every org reads the same range: two orgs of 727
    requests each (1,454) are warned of, not refused, as the first sync of the workers' fifty orgs must not be; a
    range past the bound for one org is refused, its total said."""
    config = tmp_path / "two.toml"
    orgs = "".join(f'[[orgs]]\nname = "{n}"\nkey_env = "KEY_{n.upper()}"\nbase_url = "{emulator_url}"\n' for n in "ab")
    config.write_text(orgs, encoding="utf-8")
    store = tmp_path / "s.duckdb"
    base = ["sync", "--config", str(config), "--store", str(store), "--now", str(EMULATOR_NOW), "--no-directory"]
    runner = CliRunner(env={"KEY_A": NOT_A_KEY, "KEY_B": NOT_A_KEY + "-b"})
    many = runner.invoke(app, [*base, "--since", "2021-06-01"])
    warned = [line for line in many.stderr.splitlines() if line.startswith(("warning:", "error: --since"))]
    assert warned == [
        f"warning: this sync may take up to {_requests(65, 12, orgs=2)} requests ({2 * STREAMS} streams, from"
        " 2021-06-01, 2 orgs); give a later --since or an --until"
    ], many.output
    # past the estimate: the emulator's 401 for the made-up keys is what ends it
    assert many.exit_code == 1 and "the API refused the admin key from KEY_A" in many.stderr, many.output
    refused = runner.invoke(app, [*base, "--since", "2019-01-01"])
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.startswith(
        f"error: --since: this sync would take up to {_requests(93, 17, orgs=2)} requests ({2 * STREAMS} streams, from"
        " 2019-01-01, 2 orgs)"
    ), refused.output
