"""Output whose encoding is not UTF-8 (``PYTHONIOENCODING=ascii``): text for people is ASCII, each character it lacks
written as what reads as it; data stays UTF-8. The C locale is UTF-8, as Python makes it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from usageledger._text import ascii_text
from usageledger.cli._app import data_stdout

CLI = [sys.executable, "-c", "from usageledger.cli import main; main()"]


def _env(**locale: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING", "PYTHONUTF8"))}
    return {**env, **locale}


def test_ascii_text_writes_what_reads_as_each_character() -> None:
    """Ellipsis, dashes, arrows, currency, box drawing, the trend's blocks and accented letters have ASCII readings;
    anything else is a ``?`` (or its escape, for messages)."""
    assert (
        ascii_text("2026-11-28 … 2026-12-04 — a → b · €5 £3 −1") == "2026-11-28 ... 2026-12-04 - a -> b - EUR5 GBP3 -1"
    )
    assert ascii_text("┏━┳┓┃│└┘") == "+-++||++"
    assert ascii_text("▁▂▃▄▅▆▇█") == "_.,:-=+#"
    assert ascii_text("Über café 名") == "Uber cafe ?"
    assert ascii_text("名 …", escape=True) == "\\u540d ..."


def test_data_written_in_an_ascii_locale_stays_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    """`query -f csv` under cron (no locale) wrote a project's Ü as U; data is UTF-8 whatever the locale, and
    standard output is itself again afterwards."""
    raw = io.BytesIO()
    ascii_out = io.TextIOWrapper(raw, encoding="ascii", errors="strict", newline="\n")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    with data_stdout():
        sys.stdout.write("Über,名\n")
    assert sys.stdout is ascii_out
    sys.stdout.write("after\n")
    sys.stdout.flush()
    assert raw.getvalue() == "Über,名\nafter\n".encode()


def test_report_on_an_ascii_output_is_ascii_piped_and_on_a_terminal(demo_store: Path) -> None:
    """`report` on an output that takes ASCII alone (``PYTHONIOENCODING=ascii``), piped and on a terminal: every byte
    is ASCII, the ellipsis is `...`, the tables are drawn in `+-|`, and the trend keeps a character a day (it was a
    `?` for each)."""
    argv = [*CLI, "report", "--store", str(demo_store), "--since", "7d"]
    piped = subprocess.run(argv, env=_env(PYTHONIOENCODING="ascii"), capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    out = piped.stdout.decode("ascii")  # raises on any byte past ASCII
    assert " ... " in out and "+---" in out and "| project" in out, out
    trend = next(line for line in out.splitlines() if line.startswith("Daily spend "))
    assert len(trend.split()[2].rstrip("*")) == 7 and "?" not in trend, trend

    leader, follower = os.openpty()
    try:
        done = subprocess.run(
            argv, env=_env(PYTHONIOENCODING="ascii"), stdout=follower, stderr=subprocess.PIPE, timeout=120
        )
        os.close(follower)
        shown = b""
        while chunk := _read(leader):
            shown += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0, done.stderr
    assert shown.isascii() and b" ... " in shown and b"+---" in shown, shown[:400]


def test_the_c_locale_is_left_utf8(demo_store: Path) -> None:
    """`LC_ALL=C` (and no locale at all, as in a container or under cron) is UTF-8, as Python makes it: an ASCII
    reading there would strip every name's accents and CJK on the terminals that show them, which are nearly all."""
    argv = [*CLI, "report", "--store", str(demo_store), "--since", "7d"]
    for env in (_env(LC_ALL="C"), _env()):
        done = subprocess.run(argv, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        out = done.stdout.decode("utf-8")
        assert "…" in out and "┏" in out, out[:400]


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other end closed: everything was read
        return b""


def _table_blocks(out: str) -> list[list[str]]:
    """The runs of consecutive lines drawn as a table's (``+---``, ``| ...``)."""
    blocks: list[list[str]] = []
    run: list[str] = []
    for line in [*out.splitlines(), ""]:
        if line.startswith(("+", "|")):
            run.append(line)
        elif run:
            blocks.append(run)
            run = []
    return blocks


def test_a_statement_in_euros_on_an_ascii_output_keeps_its_columns_in_line(demo_store: Path, tmp_path: Path) -> None:
    """`statement --currency EUR` on an ASCII output wrote `EUR` for `€` only after rich had laid the table out, two
    characters wider than the cell it measured, so each amount's row stuck out past the table's right edge. The
    table is laid out with `EUR` itself: every line of each table is as wide as the others. The page written with
    --html (UTF-8, data) keeps its `€`."""
    rates = tmp_path / "rates.csv"
    rates.write_text("date,rate\n" + "".join(f"2026-10-{day:02d},0.92\n" for day in range(1, 32)), encoding="utf-8")
    argv = [*CLI, "statement", "2026-10", "--store", str(demo_store), "--by", "project", "--currency", "EUR"]
    done = subprocess.run(
        [*argv, "--fx", str(rates), "--html", str(tmp_path / "s.html")],
        env=_env(PYTHONIOENCODING="ascii", COLUMNS="200"),
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode("ascii")
    assert "EUR" in out and "| total" in out, out
    blocks = _table_blocks(out)
    assert len(blocks) >= 2, out
    for block in blocks:
        assert len({len(line) for line in block}) == 1, "\n".join(block)
    assert "€" in (tmp_path / "s.html").read_text(encoding="utf-8")
