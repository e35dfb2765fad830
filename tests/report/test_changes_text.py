"""`usageledger changes` in the terminal: a few lines a stream, never the whole revision log.

One restating sync of the demo's organisation moved ~3,800 values; `changes` printed every one, 13,000 lines at 80
columns, before the closed months' adjustments a reader was looking for. Each stream now prints at most
``--limit-rows`` lines (20 by default), the ones after a close first, and counts the rest, naming how to see them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rich.console import Console
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.report.history import Adjustment, Changes, Restatement
from usageledger.report.names import Names
from usageledger.report.terminal import CHANGES_ROWS, render_changes

DAY = datetime(2026, 10, 1, tzinfo=UTC)


def _costs(n: int, *, after_close_from: int) -> tuple[Restatement, ...]:
    """``n`` restated spend rows of one costs stream, the ones from ``after_close_from`` on seen after a close."""
    return tuple(
        Restatement(
            "costs",
            "acme",
            "costs.1d.project_id",
            DAY + timedelta(days=i % 28),
            (("project_id", f"proj_{i:03d}"),),
            "amount_value",
            Decimal(1),
            Decimal(2) + i,
            1,
            DAY + timedelta(days=40),
            after_close=i >= after_close_from,
        )
        for i in range(n)
    )


def _text(changes: Changes, names: Names | None = None, *, width: int = 200, **kwargs: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(render_changes(changes, names, **kwargs))
    return console.export_text()


def test_a_long_log_prints_a_few_lines_a_stream_after_a_close_first_and_counts_the_rest() -> None:
    rows = _costs(45, after_close_from=40)
    text = _text(Changes(None, None, rows, ()))
    printed = [line for line in text.splitlines() if "proj_" in line]
    assert len(printed) == CHANGES_ROWS == 20
    assert all(line.lstrip("│ ").startswith("!") for line in printed[:5])  # the five after the close lead
    assert "proj_040" in text and "proj_044" in text and "proj_039" not in text
    assert "... and 25 more lines of costs.1d.project_id: --limit-rows N prints more, --format json every one" in text
    assert "45 changed values" in text  # the heading still counts every one

    few = _text(Changes(None, None, _costs(45, after_close_from=3), ()), rows_each=2)
    assert sum("proj_" in line for line in few.splitlines()) == 2
    assert "43 more lines of costs.1d.project_id, 40 of them after a close" in few

    whole = _text(Changes(None, None, rows, ()), rows_each=45)
    assert sum("proj_" in line for line in whole.splitlines()) == 45 and "more line" not in whole
    every = _text(Changes(None, None, rows, ()), rows_each=None)  # `--limit-rows 0`, as report and query read it
    assert every == whole


def test_limit_rows_must_be_a_count() -> None:
    result = CliRunner().invoke(app, ["changes", "--limit-rows", "-1", "--store", "nowhere.duckdb"])
    assert result.exit_code == 2 and "--limit-rows" in result.output


def test_limit_rows_with_json_is_refused_not_ignored() -> None:
    """The JSON holds every line: a cap asked for there was silently not applied."""
    result = CliRunner().invoke(app, ["changes", "--limit-rows", "5", "-f", "json", "--store", "nowhere.duckdb"])
    assert result.exit_code == 2
    assert "--limit-rows: the JSON holds every line; leave out --limit-rows with --format json" in result.output


PROJECTS = {"proj_a": "Search Assistant", "proj_b": "Support Bot", "proj_c": "Marketing Copy"}
MODELS = ("gpt-4o-mini-tts", "tts-1", "gpt-4o-audio-preview-2024-12-17")


def _spoken(stream: str, pairs: list[tuple[str, str]]) -> tuple[Restatement, ...]:
    """Restated characters and requests of an audio stream grouped by project and model, one row per pair."""
    return tuple(
        Restatement(
            "audio_speeches",
            "acme",
            stream,
            DAY,
            (("project_id", project), ("model", model)),
            metric,
            Decimal(63535),
            Decimal(80706),
            1,
            DAY + timedelta(days=2),
        )
        for project, model in pairs
        for metric in ("characters", "num_model_requests")
    )


@pytest.mark.parametrize("width", (60, 80, 100))
def test_every_project_and_model_name_is_printed_whole(width: int) -> None:
    """At 80 columns piped, `Search Assistant, gpt-4o-mini-tts` broke as `gpt-4o-mini-tt` over `s`: the group's
    names now wrap only at their spaces, and a group no other row shares is not cut with `…` either."""
    every = [(p, m) for p in PROJECTS for m in MODELS[:2]]
    rows = _spoken("audio_speeches.1d.project_id+model", every)
    rows += _spoken("audio_speeches.1d.project_id+model+x", [("proj_a", MODELS[0])])  # alone: no other row to collide
    rows += _spoken("audio_speeches.1d.project_id+model+y", [("proj_c", MODELS[2]), ("proj_b", MODELS[2])])
    closed = tuple(  # the closed months' adjustments name projects too (`Search …` at 60 columns)
        Adjustment("acme", DAY.date(), "project", p, Decimal(576), Decimal(589), "usd", DAY) for p in PROJECTS
    )
    text = _text(Changes(None, None, rows, closed), Names(projects=PROJECTS), width=width, rows_each=50)
    assert "Adjustments against closed months" in text and "+$13.00" in text
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text and "80,706" in text and "+17,171" in text
    words = {
        word for name in (*PROJECTS.values(), *MODELS, "characters", "num_model_requests") for word in name.split()
    }
    tokens = {t for t in re.split(r"[\s│┃,:]+", text) if re.search("[a-z]", t)}
    assert words <= tokens, sorted(words - tokens)
    # No piece of a name stands alone (`gpt-4o-mini-tt`, `s`): every token inside a name is a whole word of one.
    pieces = {t for t in tokens if t not in words and any(t in w for w in words)}
    assert pieces <= {"model", "day", "in"}, sorted(pieces)  # headers, and `changed values in 3 buckets`


def test_json_group_label_names_projects_as_the_terminal_does() -> None:
    """`changes --format json` takes the names as they are; its `group_label` (the label for people, composed from
    the group) took them too: a project named `Search\\nAssistant` put a newline in it, and two alike names gave two
    groups one label. The label names projects as the terminal does; `group` keeps the IDs and `adjustments` the
    names as they are."""
    from usageledger.report.jsonout import changes_document

    rows = _costs(3, after_close_from=3)
    names = Names(projects={"proj_000": "Search\nAssistant", "proj_001": "Bot", "proj_002": "bot"})
    adjustment = Adjustment("acme", DAY.date(), "project", "proj_000", Decimal(1), Decimal(2), "usd", DAY)
    doc = changes_document(Changes(None, None, rows, (adjustment,)), names)
    labels = [r["group_label"] for r in doc["restatements"]]
    assert labels == ["Search\\nAssistant", "Bot (proj_001)", "bot (proj_002)"]
    assert doc["adjustments"][0]["project_name"] == "Search\nAssistant"
