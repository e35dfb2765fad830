"""`sync --lag-days` is held to the config's finalization grace by the rule the config file is: a lag window longer
than `final_after_days` would re-read buckets `status` already calls final."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, env


def _sync(url: str, cwd: Path, config: str, *args: str) -> tuple[int, str]:
    """`usageledger sync` of the costs stream in ``cwd`` with ``config`` as its usageledger.toml."""
    (cwd / "usageledger.toml").write_text(config)
    argv = ["sync", "--store", str(cwd / "s.duckdb"), "--now", str(EMULATOR_NOW), "-e", "costs", "--quiet", *args]
    done = subprocess.run([*cli(), *argv], env=env(url), cwd=cwd, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr


def test_lag_days_longer_than_the_configs_final_after_days_is_refused(emulator_url: str, tmp_path: Path) -> None:
    """`final_after_days = 3` then `sync --lag-days 5`: one line naming the flag, the key, its file and the fixes;
    exit 2 as bad input, before any store is made; `--lag-days 3`, the fix, syncs."""
    code, err = _sync(emulator_url, tmp_path, "[sync]\nfinal_after_days = 3\n", "--lag-days", "5")
    assert code == 2, err
    assert err.strip().splitlines() == [
        "error: --lag-days: 5 is longer than sync.final_after_days in usageledger.toml (3), so this sync would"
        " re-read buckets that status already calls final; give --lag-days 3 or less, or set"
        " sync.final_after_days to 5 or more"
    ], err
    assert not (tmp_path / "s.duckdb").exists()
    code, err = _sync(emulator_url, tmp_path, "[sync]\nlag_days = 1\nfinal_after_days = 3\n", "--lag-days", "3")
    assert code == 0, err  # the fix it gives works: equal to the grace is allowed


@pytest.mark.parametrize(
    ("config", "lag"),
    [
        ("[sync]\nfinal_after_days = 2\n", "sync.lag_days = 3, the default"),
        ("[sync]\nlag_days = 5\nfinal_after_days = 4\n", "sync.lag_days = 5"),
    ],
    ids=["default-lag", "file-lag"],
)
def test_a_final_after_days_shorter_than_the_lag_names_where_the_lag_came_from(
    emulator_url: str, tmp_path: Path, config: str, lag: str
) -> None:
    """The reverse, in the file: a final_after_days shorter than the lag says whether the lag is the file's or the
    default, and the least value to write; exit 1 (the file's content), not 2."""
    code, err = _sync(emulator_url, tmp_path, config)
    assert code == 1, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: usageledger.toml: sync.final_after_days: "), line
    assert f"is shorter than the lag window ({lag}), so a bucket the next sync re-reads" in line, line
