"""Provisional or final: the finalization grace per bucket width, `status` shows where each stream is final, and
`check --final-only` reads final buckets only."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from usageledger import timeutil
from usageledger.cli import app
from usageledger.config import load_config
from usageledger.errors import ConfigError
from usageledger.report import Period, Scope
from usageledger.report.assemble import assemble_report
from usageledger.report.history import as_of
from usageledger.store import Stream, WindowWrite, open_store
from usageledger.sync import Org, SyncOptions, sync

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

DAY = 86400
TODAY = timeutil.floor(EMULATOR_NOW, "1d")
"""The watermark of a daily stream synced at the emulator's now."""
COSTS = Stream.create("costs", "1d", ("project_id", "line_item"))
HOURLY = Stream.create("completions", "1h", ("model",))


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory, emulator_url: str) -> Path:
    """A DuckDB store with daily costs and hourly completions synced 20 days back at the emulator's now."""
    path = tmp_path_factory.mktemp("final") / "ledger.duckdb"
    with open_store(path) as store:
        result = sync(
            store,
            [Org("main", FAKE_ADMIN_KEY, emulator_url)],
            (COSTS, HOURLY),
            SyncOptions(since=TODAY - 20 * DAY),
            clock=lambda: EMULATOR_NOW,
        )
    assert result.ok, result.errors
    return path


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "usageledger.toml"
    path.write_text(text)
    return path


def test_the_default_grace_is_the_lag_window_of_each_width() -> None:
    """Without a setting, a bucket turns final once it is the lag window older than the watermark."""
    options = SyncOptions(lag_days=4)
    assert [options.final_grace(w) for w in ("1d", "1h", "1m")] == [4 * DAY, 2 * 3600, 15 * 60]
    assert options.final_until("1d", TODAY) == TODAY - 4 * DAY
    assert options.final_until("1h", TODAY + 3600 * 5) == TODAY + 3 * 3600
    assert options.final_until("1d", None) is None


def test_configured_graces_are_read_and_one_below_the_lag_window_is_refused(tmp_path: Path) -> None:
    """`[sync] final_after_days` and the hour/minute graces are read; a grace shorter than the lag is refused."""
    text = '[sync]\nlag_days = 2\nfinal_after_days = 7\nhour_final_after = "1d"\nminute_final_after = "1h"\n'
    options = load_config(_config(tmp_path, text)).sync.to_options()
    assert [options.final_grace(w) for w in ("1d", "1h", "1m")] == [7 * DAY, DAY, 3600]
    for bad, key in (
        ("final_after_days = 2", "sync.final_after_days"),
        ('hour_final_after = "1h"', "sync.hour_final_after"),
        ("final_after_days = 'x'", "sync.final_after_days"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_config(_config(tmp_path, f"[sync]\nlag_days = 3\n{bad}\n"))


def test_status_shows_where_each_stream_is_final_in_text_and_json(synced: Path, tmp_path: Path) -> None:
    """`status` prints a final-until column; `--format json` gives final_until per stream, the grace per width."""
    doc = json.loads(_invoke("status", "--store", str(synced), "--format", "json").stdout)
    final = {s["stream"]: s["final_until"] for s in doc["streams"]}
    assert final == {COSTS.id: timeutil.iso(TODAY - 3 * DAY), HOURLY.id: timeutil.iso(EMULATOR_NOW - 2 * 3600)}
    config = _config(tmp_path, "[sync]\nfinal_after_days = 10\n")
    doc = json.loads(_invoke("status", "--store", str(synced), "--config", str(config), "--format", "json").stdout)
    assert {s["stream"]: s["final_until"] for s in doc["streams"]}[COSTS.id] == timeutil.iso(TODAY - 10 * DAY)
    text = _invoke("status", "--store", str(synced)).stdout
    assert "final until" in text and timeutil.iso(TODAY - 3 * DAY) in text


def _check(store: Path, day: int, *more: str) -> tuple[int, dict[str, Any]]:
    on = datetime.fromtimestamp(day, UTC).date().isoformat()
    args = ["check", "--store", str(store), "--date", on, "--daily-budget", "0.000001", "--stale-after", "9999d"]
    result = _invoke(*args, "--format", "json", *more)
    return result.exit_code, json.loads(result.stdout)


def test_check_final_only_ignores_provisional_days(synced: Path) -> None:
    """A budget broken on a provisional day fires, but not with --final-only; on a final day it fires either way."""
    provisional, final = TODAY - DAY, TODAY - 5 * DAY
    code, doc = _check(synced, provisional)
    assert code == 3 and [a["kind"] for a in doc["alerts"]] == ["budget"]
    code, doc = _check(synced, provisional, "--final-only")
    assert code == 0 and doc["alerts"] == []
    assert any("final only" in c and timeutil.iso(TODAY - 3 * DAY)[:10] in c for c in doc["checks"])
    code, doc = _check(synced, final, "--final-only")
    assert code == 3 and [a["kind"] for a in doc["alerts"]] == ["budget"]


def _report(store: Path, until: str, *more: str) -> Any:
    return _invoke("report", "--store", str(store), "--since", "2026-11-05", "--until", until, *more)


def test_reports_mark_provisional_days_in_the_terminal_json_and_html(synced: Path, tmp_path: Path) -> None:
    """A period reaching past the final edge gets a `*` footnote, provisional_from in JSON and lighter HTML bars."""
    edge = timeutil.iso(TODAY - 3 * DAY)[:10]
    result = _report(synced, "2026-11-19")
    assert result.exit_code == 0, result.output
    assert f"* provisional: spend from {edge} on may still be restated" in " ".join(result.stdout.split())
    doc = json.loads(_report(synced, "2026-11-19", "--format", "json").stdout)
    assert doc["provisional_from"] == edge
    page = tmp_path / "r.html"
    assert _report(synced, "2026-11-19", "--html", str(page)).exit_code == 0
    html = page.read_text()
    assert html.count('class="provisional"') > 0 and "(provisional)" in html
    early = _report(synced, "2026-11-12")
    assert early.exit_code == 0 and "provisional" not in early.stdout
    _report(synced, "2026-11-12", "--html", str(page))
    assert 'class="provisional"' not in page.read_text()


def test_a_report_as_of_a_past_time_judges_finality_as_of_then(tmp_path: Path) -> None:
    """`report --as-of` took today's watermarks: days provisional at the as-of time were reported final (no `*`,
    `provisional_from` of today). The as-of store's watermarks now stand where they could then, so the library,
    the terminal and the JSON all put the edge where it was."""
    first, second = timeutil.to_unix("2026-10-20"), timeutil.to_unix("2026-10-30")  # each sync's watermark
    path = tmp_path / "ledger.duckdb"
    with open_store(path) as store:
        store.register_stream("main", COSTS)
        for mark, amount in ((first, "1.00"), (second, "2.00")):
            lo = timeutil.to_unix("2026-10-01")
            rows = [
                {"bucket_start": day, "bucket_end": day + DAY, "project_id": "proj_a", "line_item": "gpt-4o, input"}
                | {"amount_value": Decimal(amount), "currency": "usd", "quantity": None, "quantity_unit": None}
                for day in range(lo, mark + DAY, DAY)
            ]
            store.commit_window(WindowWrite("main", COSTS, rows, lo, mark + DAY, f"run-{mark}", mark + 3600, mark))
        options = SyncOptions()
        then = datetime.fromtimestamp(options.final_until("1d", first) or 0, UTC).date()
        now = datetime.fromtimestamp(options.final_until("1d", second) or 0, UTC).date()
        period = Period(date(2026, 10, 1), date(2026, 10, 31))
        assert assemble_report(store, period, Scope(), options=options)[0].provisional_from == now
        with as_of(store, first + 7200) as past:
            assert assemble_report(past, period, Scope(), options=options)[0].provisional_from == then
        assert assemble_report(store, period, Scope(), options=options)[0].provisional_from == now  # shadow gone
    args = ("report", "--store", str(path), "--since", "2026-10-01", "--until", "2026-10-31")
    at = timeutil.iso(first + 7200)
    doc = json.loads(_invoke(*args, "--as-of", at, "--format", "json").stdout)
    assert doc["provisional_from"] == then.isoformat() != now.isoformat()
    text = " ".join(_invoke(*args, "--as-of", at).stdout.split())
    assert f"* provisional: spend from {then.isoformat()} on may still be restated" in text


def test_tokens_synced_only_hourly_are_summed_to_days(synced: Path, tmp_path: Path) -> None:
    """A store that syncs completions only at `--bucket-width 1h` reported Tokens 0 (the report reads the daily
    views, which show daily streams only). The hourly rows are now summed to UTC days, for an org with no daily
    stream of the endpoint only: one that has both is read from its daily stream, never counted twice."""
    doc = json.loads(_report(synced, "2026-11-19", "--format", "json").stdout)
    period = Period(date(2026, 11, 5), date(2026, 11, 19))  # --until is the first day left out
    with open_store(synced) as store:
        ((inp, out, req),) = store.query(
            "SELECT SUM(input_tokens), SUM(output_tokens), SUM(num_model_requests) FROM usage_completions"
            " WHERE stream = %s AND bucket_start >= %s AND bucket_start < %s",
            (HOURLY.id, period.start, period.end),
        )
        per_day = store.query(
            "SELECT CAST(bucket_start AS DATE) AS d, SUM(input_tokens + output_tokens) FROM usage_completions"
            " WHERE bucket_start >= %s AND bucket_start < %s GROUP BY d ORDER BY d",
            (period.start, period.end),
        )
        data, _ = assemble_report(store, period, Scope(), options=SyncOptions())
    assert inp > 0 and doc["totals"]["tokens"] == inp + out and doc["totals"]["requests"] == req
    days: dict[date, Decimal] = {}
    for value in data.daily_tokens_by_model:
        days[value.day] = days.get(value.day, Decimal(0)) + value.value
    assert sorted(days.items()) == [(d, Decimal(t)) for d, t in per_day]
    both = tmp_path / "both.duckdb"
    both.write_bytes(synced.read_bytes())
    daily_stream = Stream.create("completions", "1d", ("model",))
    with open_store(both) as store:
        store.register_stream("main", daily_stream)
        day = timeutil.to_unix("2026-11-10")
        row = {"bucket_start": day, "bucket_end": day + DAY, "model": "gpt-x", "input_tokens": 7, "output_tokens": 3}
        store.commit_window(WindowWrite("main", daily_stream, [row], day, day + DAY, "r", day + DAY))
    doc = json.loads(_report(both, "2026-11-19", "--format", "json").stdout)
    assert doc["totals"]["tokens"] == 10


def test_a_report_as_of_a_time_before_a_streams_first_sync_has_nothing_final_or_synced(tmp_path: Path) -> None:
    """`report --as-of` a time before the store's first sync capped each watermark at that time, so the store
    that held nothing then was "whole only through" the day before and provisional from three days before. A
    stream the log has no entry of by then had no watermark: no provisional edge, no unsynced day."""
    mark = timeutil.to_unix("2026-10-30")
    path = tmp_path / "ledger.duckdb"
    with open_store(path) as store:
        store.register_stream("main", COSTS)
        lo = timeutil.to_unix("2026-10-01")
        rows = [
            {"bucket_start": day, "bucket_end": day + DAY, "project_id": "proj_a", "line_item": "gpt-4o, input"}
            | {"amount_value": Decimal("1.00"), "currency": "usd", "quantity": None, "quantity_unit": None}
            for day in range(lo, mark + DAY, DAY)
        ]
        store.commit_window(WindowWrite("main", COSTS, rows, lo, mark + DAY, "run-1", mark + 3600, mark))
        options = SyncOptions()
        period = Period(date(2026, 9, 1), date(2026, 10, 1))
        with as_of(store, timeutil.to_unix("2026-09-15")) as past:
            data = assemble_report(past, period, Scope(), options=options)[0]
            assert (data.provisional_from, data.unsynced_from) == (None, None)
    args = ("report", "--store", str(path), "--since", "2026-09-01", "--until", "2026-10-01", "--as-of", "2026-09-15")
    text = " ".join(_invoke(*args).stdout.split())
    assert "provisional" not in text and "whole only through" not in text
