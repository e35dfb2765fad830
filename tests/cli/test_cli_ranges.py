"""One range check for `query`, `sync` and `export`: a reversed, empty or wholly future range is refused in one line
that names the flag and shows ISO times, before any store is opened or written; `sync.since = "0d"` too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger import timeutil
from usageledger.cli import app
from usageledger.errors import ConfigError, ParameterError
from usageledger.export import export
from usageledger.store import open_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

NOW = timeutil.iso(EMULATOR_NOW)
RANGES = {
    "reversed": (
        ("2026-11-10", "2026-11-05"),
        "end",
        "2026-11-05T00:00:00Z is before the start (2026-11-10T00:00:00Z)",
    ),
    "empty": (("2026-11-10", "2026-11-10"), "end", "2026-11-10T00:00:00Z is the same time as the start"),
    "future": (("2030-01-01", None), "start", "2030-01-01T00:00:00Z is not before now"),
    "future with an end": (("2030-01-01", "2030-02-01"), "start", "2030-01-01T00:00:00Z is not before now"),
}
FLAGS = {
    "sync": ("--since", "--until"),
    "export": ("--since", "--until"),
    "query": ("--start", "--end"),
    "changes": ("--since", "--until"),  # said "--until: must be after --since", without either time
}


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory, emulator_url: str) -> Path:
    """A store with three days of costs synced from the emulator."""
    store = tmp_path_factory.mktemp("ranges") / "u.duckdb"
    argv = ["sync", "--store", str(store), "--base-url", emulator_url, "--now", NOW, "--since", "3d", "-e", "costs"]
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, [*argv, "--quiet"])
    assert done.exit_code == 0, done.output
    return store


@pytest.mark.parametrize("case", list(RANGES))
@pytest.mark.parametrize("command", list(FLAGS))
def test_a_range_that_holds_nothing_is_refused_naming_the_flag(
    tmp_path: Path, emulator_url: str, synced: Path, command: str, case: str
) -> None:
    """Reversed, empty or future: exit 2, one line naming --since/--until (--start/--end) with ISO times, no store."""
    (start, end), blamed, shown = RANGES[case]
    first, second = FLAGS[command]
    store = tmp_path / "new.duckdb"
    argv = {
        "sync": ["sync", "--store", str(store), "--base-url", emulator_url, "-e", "costs"],
        "export": ["export", "--store", str(synced), "-e", "costs"],
        "query": ["query", "costs", "--base-url", emulator_url],
        "changes": ["changes", "--store", str(synced)],
    }[command]
    argv += [first, start] + ([second, end] if end is not None else [])
    done = CliRunner(env={"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY}).invoke(app, argv)
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 2 and len(lines) == 1, done.output
    flag = first if blamed == "start" else second
    assert lines[0].startswith(f"error: {flag}: ") and shown in lines[0], lines[0]
    assert done.stdout == "" and not store.exists()


def test_the_library_export_refuses_a_reversed_range_naming_since_and_until(synced: Path, tmp_path: Path) -> None:
    """export(since=..., until=...) with until before since raises a ParameterError naming until; nothing written."""
    target = tmp_path / "out.csv"
    with open_store(str(synced)) as opened, pytest.raises(ParameterError, match=r"^until: .* is before the start"):
        export(opened, "csv", target, endpoints=["costs"], since=EMULATOR_NOW - 86400, until=EMULATOR_NOW - 2 * 86400)
    assert not target.exists()


def test_a_zero_sync_since_in_the_config_is_refused(tmp_path: Path) -> None:
    """`[sync] since = "0d"` would make every first sync an empty range: the loader refuses it naming sync.since, and
    `since = 0` no longer suggests "0d" (the same refusal) but a span the key takes."""
    from usageledger.config import load_config

    config = tmp_path / "usageledger.toml"
    file = re.escape(f"{config}: ")  # every config error names the file first
    for text in ('"0d"', '"0h"', "0", '"0"'):
        config.write_text(f"[sync]\nsince = {text}\n")
        with pytest.raises(
            ConfigError, match=rf"^{file}sync\.since: .*a span of zero.*holds nothing; write 1s or more$"
        ):
            load_config(config)
    config.write_text("[sync]\nsince = 1\n")
    with pytest.raises(ConfigError, match=rf'^{file}sync\.since: 1 has no unit; write since = "1d" or "1h"'):
        load_config(config)
    config.write_text('[sync]\nsince = "2d"\n')
    assert load_config(config).sync.since == 2 * 86400


MIDNIGHT = timeutil.floor(EMULATOR_NOW, "1d")
"""2026-11-20T00:00:00Z: the first second of the emulator's today."""


@pytest.mark.parametrize(
    "argv",
    [
        ["changes", "--since", "1d"],
        ["changes", "--since", "2026-11-20"],
        ["export", "-e", "costs", "-f", "csv", "-o", "-", "--since", "1d"],
        ["export", "-e", "costs", "-f", "csv", "-o", "-", "--since", "2026-11-20"],
        ["keys", "--since", "1d", "--now", timeutil.iso(MIDNIGHT)],
    ],
)
def test_today_read_from_the_store_at_midnight_is_answered(
    synced: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """`changes --since 1d` (today), or today's date, run by cron at 00:00:00 UTC starts at that very second: it was
    refused ("is not before now, so the range holds nothing yet"), exit 2, and one second later answered. A range
    read from the store up to now is answered empty there; a start after now is still refused."""
    monkeypatch.setattr(timeutil, "now_unix", lambda clock=None: MIDNIGHT if clock is None else int(clock))
    done = CliRunner().invoke(app, [*argv, "--store", str(synced)])
    assert done.exit_code == 0, done.output
    assert "error" not in done.stderr, done.stderr
    later = [*argv[: argv.index("--since") + 1], "2026-11-21", *argv[argv.index("--since") + 2 :]]
    refused = CliRunner().invoke(app, [*later, "--store", str(synced)])
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.startswith("error: --since: "), refused.stderr
