"""Strict inputs (issue 9, items 9 and 10): durations need a unit, and an empty filter value is refused.

``--stale-after 36`` and ``since = 90`` were read as seconds; ``--models ''``, ``--project-ids ',,'``,
``models=[""]``, ``models=[]`` and ``project_ids=[None]`` were dropped and returned unfiltered data. Each is now a
one-line error naming the flag, key or parameter; an omitted filter (``None``) still means "no filter".
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from typer.testing import CliRunner

from usageledger import AsyncClient, Client, UsageApi
from usageledger.cli import app
from usageledger.errors import ParameterError

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

START = "2026-11-01"
END = "2026-11-04"
EMPTY: list[tuple[str, Any]] = [("models", [""]), ("models", []), ("project_ids", [None]), ("models", "  ")]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI runner with a fake admin key in the environment and a wide terminal."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_check_refuses_stale_after_without_a_unit(runner: CliRunner, tmp_path: Any) -> None:
    """`check --stale-after 36` was 36 seconds ("0.0 h"): now one line naming the flag and the fix."""
    result = runner.invoke(app, ["check", "--stale-after", "36", "--store", str(tmp_path / "u.duckdb")])
    assert result.exit_code == 2
    assert "--stale-after: 36 has no unit; write 36h or 36d" in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_emulator_refuses_latency_without_a_unit(runner: CliRunner) -> None:
    """Every duration flag goes through the one parser: `emulator --latency 50` is refused naming the flag."""
    result = runner.invoke(app, ["emulator", "--latency", "50"])
    assert result.exit_code != 0 and "--latency: 50 has no unit" in result.stderr
    # the fix it suggests is in a latency's units, not 50h or 50d
    assert "write 50ms or 50s" in result.stderr, result.stderr
    every = runner.invoke(app, ["serve", "--sync-every", "15"])
    assert every.exit_code == 2 and "--sync-every: 15 has no unit; write 15m or 15h" in every.stderr, every.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "--since"], ["keys", "--since"], ["reconcile", "--since"], ["changes", "--since"],
        ["export", "--output", "out.csv", "--since"], ["sync", "--since"], ["serve", "--sync-every"],
        ["emulator", "--revision-window"],
        # a key's staleness: `0d` flagged every key ("limit 0:00:00"); a last use is known to the day
        ["keys", "--unused-after"], ["keys", "--admin-max-age"], ["check", "--stale-keys"],
        # staleness: `--stale-after 0h` (and `[alerts] stale_after = "0s"`) fired on every run
        ["check", "--stale-after"],
    ],
)  # fmt: skip
def test_a_zero_span_is_refused_and_the_fix_offered_is_taken(runner: CliRunner, tmp_path: Any, argv: list[str]) -> None:
    """`report --since 0` suggested `0d`, which was refused as "not a whole number of days"; `serve --sync-every 0`
    suggested `0m`, refused as shorter than a minute; `emulator --revision-window 0` `0h`, refused without naming
    the flag; `keys --unused-after 0d` flagged every key. Every zero is now refused on one line naming the flag, and
    the span it offers is accepted."""
    store = ["--store", str(tmp_path / "none.duckdb")] if argv[0] not in ("serve", "emulator") else []
    flag = argv[-1]
    offered = set()
    for zero in ("0", "0d", "0h", "0s"):
        result = runner.invoke(app, [*argv, zero, *store])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith(f"error: {flag}: ") and "a span of zero" in lines[0] and "holds nothing" in lines[0]
        assert "whole number" not in lines[0] and "revision_window" not in lines[0]
        offered.add(lines[0].rsplit("write ", 1)[1].split()[0])
    (least,) = offered
    assert least == ("1m" if argv[0] in ("serve", "emulator") else "1h" if flag == "--stale-after" else "1d")
    if argv[0] in ("report", "keys", "reconcile", "changes"):
        taken = runner.invoke(app, [*argv, least, *store])
        assert flag not in taken.output, taken.output  # whatever else happens (no store), the span is taken


@pytest.mark.parametrize(("flag", "value"), [("--models", ""), ("--project-ids", ",,"), ("--models", "a,,b")])
def test_query_refuses_an_empty_filter_value(runner: CliRunner, emulator_url: str, flag: str, value: str) -> None:
    """`query --models ''` and `--project-ids ',,'` returned unfiltered rows; now one line naming the flag and
    showing the value as typed (it showed `['', '', '']`, a list the user never wrote)."""
    result = runner.invoke(
        app, ["query", "completions", "--start", START, "--end", END, flag, value, "--base-url", emulator_url]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {flag}:") and "empty" in result.stderr, result.stderr
    assert "[" not in result.stderr and (not value or f"{value!r} holds an empty value;" in result.stderr)
    assert result.stdout == ""


def test_query_with_a_real_filter_still_filters(runner: CliRunner, emulator_url: str) -> None:
    """A non-empty --project-ids keeps working: only that project's rows come back."""
    base = ["query", "completions", "--start", START, "--end", END, "--group-by", "project_id", "-f", "jsonl"]
    every = runner.invoke(app, [*base, "--base-url", emulator_url])
    assert every.exit_code == 0, every.output
    first = every.stdout.splitlines()[0].split('"project_id":"')[1].split('"')[0]
    one = runner.invoke(app, [*base, "--project-ids", first, "--base-url", emulator_url])
    assert one.exit_code == 0, one.output
    assert 0 < len(one.stdout.splitlines()) < len(every.stdout.splitlines())


def test_sync_refuses_an_empty_filter_value(runner: CliRunner, emulator_url: str, tmp_path: Any) -> None:
    """`sync --filter project_ids=,,` is refused naming the flag, and writes no store."""
    store = tmp_path / "u.duckdb"
    result = runner.invoke(
        app, ["sync", "-e", "costs", "--filter", "project_ids=,,", "--store", str(store), "--base-url", emulator_url]
    )
    assert result.exit_code == 2, result.output
    assert "--filter project_ids:" in result.stderr and "empty" in result.stderr
    assert not store.exists()


@pytest.mark.parametrize(("name", "value"), EMPTY)
def test_client_refuses_an_empty_filter(emulator_url: str, name: str, value: Any) -> None:
    """Client.query and Client.page raise ParameterError naming the filter, before any request."""
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
        with pytest.raises(ParameterError) as info:
            client.query("completions", start_time=START, end_time=END, **{name: value})
        assert info.value.param == name and name in str(info.value)
        with pytest.raises(ParameterError) as info:
            client.page("completions", start_time=START, end_time=END, **{name: value})
        assert info.value.param == name


@pytest.mark.parametrize(("name", "value"), EMPTY)
def test_async_client_refuses_an_empty_filter(emulator_url: str, name: str, value: Any) -> None:
    """AsyncClient.query raises the same ParameterError as its twin."""

    async def run() -> None:
        async with AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
            client.query("completions", start_time=START, end_time=END, **{name: value})

    with pytest.raises(ParameterError) as info:
        asyncio.run(run())
    assert info.value.param == name


@pytest.mark.parametrize(("name", "value"), EMPTY)
def test_usage_api_refuses_an_empty_filter(emulator_url: str, name: str, value: Any) -> None:
    """The seed-compatible UsageApi refuses them too, naming the parameter."""
    with (
        UsageApi(FAKE_ADMIN_KEY, base_url=emulator_url, clock=lambda: EMULATOR_NOW) as api,
        pytest.raises(ParameterError) as info,
    ):
        api.usage_completions(start_time=START, end_time=END, **{name: value})
    assert info.value.param == name


def test_an_omitted_filter_is_no_filter(emulator_url: str) -> None:
    """``models=None`` still means "no filter": the same rows as leaving it out."""
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
        plain = list(client.query("completions", start_time=START, end_time=END).rows())
        none = list(client.query("completions", start_time=START, end_time=END, models=None).rows())
    assert plain == none and plain


@pytest.mark.parametrize(
    ("flag", "value"), [("--days", "0"), ("--days", "-1"), ("--projects", "0"), ("--models", "-2")]
)
def test_an_emulator_size_below_one_names_its_flag(runner: CliRunner, flag: str, value: str) -> None:
    """`emulator --days 0` said "days must be at least 1" and `--projects 0` "projects, users and models must each
    be at least 1": neither named the flag. Now one line names it, the value and the fix, as `--orgs 0` does."""
    result = runner.invoke(app, ["emulator", "--port", "0", flag, value])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"error: {flag}: {value} is too few; give 1 or more"]


@pytest.mark.parametrize(
    ("flag", "value", "top"),
    [
        ("--models", "11", "10"),
        ("--projects", "100000", "1,000"),
        ("--users", "99999999", "100,000"),
        ("--keys", "21", "20"),
    ],
)
def test_an_emulator_size_above_its_top_names_its_flag(runner: CliRunner, flag: str, value: str, top: str) -> None:
    """`--models 50` served 10 models without a word, and `--users 99999999` built for an hour before it listened:
    each is refused in one line naming the flag and the largest size it takes."""
    result = runner.invoke(app, ["emulator", "--port", "0", flag, value])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"error: {flag}: {value} is too many; give 1 to {top}"]
