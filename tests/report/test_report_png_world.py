"""`report --png` of an org whose names are in scripts the charts' font lacks (CJK, Arabic, emoji: the emulator's
``--names world``), run as a user runs it: one warning line that names the characters drawn as boxes and the fix,
never matplotlib's UserWarning, twice per character and per chart, each with a source line of ours."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from usageledger.emulator import Emulator, EmulatorConfig, run_server

from fixtures.emulator import EMULATOR_NOW
from fixtures.reliability import cli, env

WORLD = EmulatorConfig(seed=11, days=20, projects=12, users=4, keys=1, archived=1, names="world", now=EMULATOR_NOW)


@pytest.fixture(scope="module")
def world_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The world org's costs and directory, synced by `usageledger sync` from the emulator over loopback."""
    store = tmp_path_factory.mktemp("world-png") / "ledger.duckdb"
    with run_server(Emulator(WORLD)) as url:
        args = ["sync", "--store", str(store), "--since", "14d", "-e", "costs", "--now", str(EMULATOR_NOW), "-q"]
        done = subprocess.run([*cli(), *args], env=env(url), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return store


def test_png_charts_of_names_the_font_lacks_say_so_once_with_the_fix(world_store: Path, tmp_path: Path) -> None:
    """`report --png` of CJK and emoji project names: the four charts written, and stderr one warning line naming
    --png, the characters no font here draws and what to install, or nothing if every one has a font."""
    charts = tmp_path / "charts"
    args = [
        "report",
        "--store",
        str(world_store),
        "--since",
        "2026-11-06",
        "--until",
        "2026-11-20",
        "--png",
        str(charts),
    ]
    done = subprocess.run(
        [*cli(), *args], env=env("http://127.0.0.1:9/v1"), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert len(list(charts.glob("*.png"))) == 4
    lines = [line for line in done.stderr.splitlines() if "warning: costs of org" not in line]
    assert "Warning" not in done.stderr and "Glyph" not in done.stderr, done.stderr
    assert len(lines) <= 1, done.stderr
    if lines:  # this machine has no font for some of the names (a CI image: DejaVu Sans alone)
        assert lines[0].startswith("warning: --png: "), lines[0]
        assert "install a font" in lines[0], lines[0]
        drawn_as_boxes = lines[0].split("(", 1)[1].split(")", 1)[0]
        assert drawn_as_boxes and not any(c.isascii() for c in drawn_as_boxes), lines[0]  # DejaVu Sans has those
