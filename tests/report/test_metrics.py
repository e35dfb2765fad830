"""``/metrics``: Prometheus (and OpenMetrics) text from the store, parsed with ``prometheus_client``'s own parsers,
checked against direct SQL sums over a store synced from the emulator, and served through uvicorn on loopback."""

from __future__ import annotations

import math
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from itertools import combinations
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.emulator import Emulator
from usageledger.errors import ParameterError
from usageledger.report.metrics import (
    METRIC_NAMES,
    METRICS_LABELS,
    SERIES_METRIC,
    metrics_endpoint,
    parse_metrics_labels,
    render_metrics,
    scrape_metrics,
    wants_openmetrics,
)
from usageledger.report.names import names_from_mapping
from usageledger.serve import build_app
from usageledger.store import BaseStore, RunOwner, StreamMark, open_existing_store, open_store
from usageledger.store.directory import current_names

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.stores import mixed_store

NOW = datetime.fromtimestamp(EMULATOR_NOW, UTC)
MONTH_START = datetime(NOW.year, NOW.month, 1, tzinfo=UTC)
TODAY = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC)
ORG = "default"


@pytest.fixture(scope="module")
def synced(emulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store synced by `usageledger sync` from the shared emulator: 40 days of every default stream, and the
    directory (so projects have names)."""
    store = str(tmp_path_factory.mktemp("metrics") / "s.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
        result = CliRunner().invoke(
            app, ["sync", "--store", store, "--now", str(EMULATOR_NOW), "--base-url", emulator_url, "--since", "40d"]
        )
    assert result.exit_code == 0, result.output
    return store


@contextmanager
def _reading(url: str) -> Iterator[BaseStore]:
    with open_existing_store(url) as store:
        yield store


def _samples(text: str, name: str) -> list[Sample]:
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return list(family.samples)
    return []


def _page(url: str, labels: frozenset[str] | None = None) -> str:
    with _reading(url) as store:
        body, content_type = render_metrics(store, now=NOW, **({} if labels is None else {"labels": labels}))
    assert content_type.startswith("text/plain")
    return body.decode()


def test_cost_metric_is_labelled_with_project_names_and_equals_sql(synced: str) -> None:
    """Each project's month-to-date spend equals a direct SQL sum, and every sample carries the project's name."""
    text = _page(synced)
    samples = _samples(text, "usageledger_month_to_date_cost_usd")
    assert samples
    with _reading(synced) as store:
        names = current_names(store, ORG, "project")
        expected = dict(
            store.query(
                "SELECT project_id, SUM(amount_value) FROM costs_daily WHERE bucket_start >= %s AND bucket_start < %s"
                " AND currency = 'usd' GROUP BY 1",
                [MONTH_START, TODAY.replace(day=NOW.day + 1)],
            )
        )
    got: dict[str, float] = {}
    for s in samples:
        assert set(s.labels) == {"org", "project_id", "project_name", "model", "line_item"}
        assert s.labels["org"] == ORG
        pid = s.labels["project_id"]
        if pid:
            assert s.labels["project_name"] == names[pid][0] != pid
        got[pid] = got.get(pid, 0.0) + s.value
    assert {k or None for k in got} == set(expected)
    for pid, value in got.items():
        assert math.isclose(value, float(expected[pid or None]), rel_tol=1e-9)


def test_projects_named_alike_keep_their_bare_name_beside_their_id(synced: str) -> None:
    """Two projects of one name (every org's "Default project"): ``project_name`` was the reports' name, which then
    carries the ID ("Same (proj_abc)"), so a project's series took a new label when another project took its name,
    and the dashboard's legend (``{{project_name}} ({{project_id}})``) said the ID twice. It is the bare name, on
    one line; ``project_id`` tells the two apart."""
    with _reading(synced) as store:
        [first, second, *_] = [
            pid for (pid,) in store.query("SELECT DISTINCT project_id FROM costs_daily WHERE project_id IS NOT NULL")
        ]
        alike = names_from_mapping({"projects": {first: "Same", second: "Same"}})
        body, _ = render_metrics(store, now=NOW, overrides=alike, labels=parse_metrics_labels("project"))
    samples = _samples(body.decode(), "usageledger_month_to_date_cost_usd")
    by_id = {s.labels["project_id"]: s.labels["project_name"] for s in samples}
    assert by_id[first] == by_id[second] == "Same"
    assert len(by_id) == len(samples) > 2


def test_today_and_tokens_equal_sql(synced: str) -> None:
    """Today's spend and the month's input tokens and requests equal direct SQL sums over the daily views."""
    text = _page(synced)
    today = sum(s.value for s in _samples(text, "usageledger_today_cost_usd"))
    tokens = _samples(text, "usageledger_month_to_date_tokens")
    requests = sum(s.value for s in _samples(text, "usageledger_month_to_date_requests"))
    with _reading(synced) as store:
        [(spend,)] = store.query(
            "SELECT SUM(amount_value) FROM costs_daily WHERE bucket_start = %s AND currency = 'usd'", [TODAY]
        )
        [(inp, req)] = store.query(
            "SELECT SUM(input_tokens), SUM(num_model_requests) FROM usage_completions_daily WHERE bucket_start >= %s",
            [MONTH_START],
        )
        [(emb,)] = store.query(
            "SELECT SUM(input_tokens) FROM usage_embeddings_daily WHERE bucket_start >= %s", [MONTH_START]
        )
    assert spend is not None and today > 0
    assert math.isclose(today, float(spend), rel_tol=1e-9)
    by_direction = {d: sum(s.value for s in tokens if s.labels["direction"] == d) for d in ("input", "output")}
    assert by_direction["input"] >= int(inp) + int(emb) > 0
    assert by_direction["output"] > 0
    assert requests >= int(req) > 0


def test_series_read_zero_on_the_first_of_a_month_and_after_midnight(synced: str) -> None:
    """A group that spent this month or last keeps its series at 0 when it has no spend in the span: at 00:00 UTC
    on the 1st every month-to-date and today series had vanished (Grafana's panels said "No data", and a
    ``sum(...)`` alert had no value to compare), and each midnight every today series did. The store's costs end on
    2026-11-20; two months on, nothing of them is shown."""
    assert len(_PERIOD_METRICS) == 6
    nov = {name: {_key(s) for s in _samples(_page(synced), name)} for name in _PERIOD_METRICS}
    with _reading(synced) as store:
        first = render_metrics(store, now=datetime(2026, 12, 1, 0, 0, 30, tzinfo=UTC))[0].decode()
        later = render_metrics(store, now=datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC))[0].decode()
    for name in _PERIOD_METRICS:
        month = "today" if "today" in name else "month_to_date"
        samples = _samples(first, name)
        # every group of November's month to date, at 0: today's too, not only the groups that spent today
        assert {_key(s) for s in samples} == nov[name.replace("today", "month_to_date")] and samples, (month, name)
        assert all(s.value == 0 for s in samples), name
        assert _samples(later, name) == [], name
    # within the month: today has a series for every group of the month to date, the ones with no spend today at 0
    text = _page(synced)
    day = {_key(s): s.value for s in _samples(text, "usageledger_today_cost_usd")}
    assert set(day) == nov["usageledger_month_to_date_cost_usd"]
    assert 0 < sum(1 for v in day.values() if v == 0) < len(day)


_PERIOD_METRICS = tuple(n for n in METRIC_NAMES if n.startswith(("usageledger_month_to_date_", "usageledger_today_")))


def _key(sample: Sample) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(sample.labels.items()))


def test_last_sync_time_and_errors_per_stream(synced: str) -> None:
    """Each stream has its last sync time, its watermark and zero sync errors, as ``streams`` records them."""
    text = _page(synced)
    last = {s.labels["stream"]: s.value for s in _samples(text, "usageledger_last_sync_timestamp_seconds")}
    until = {s.labels["stream"]: s.value for s in _samples(text, "usageledger_data_until_timestamp_seconds")}
    errors = {s.labels["stream"]: s.value for s in _samples(text, "usageledger_sync_errors")}
    runs = {s.labels["status"]: s.value for s in _samples(text, "usageledger_sync_runs")}
    with _reading(synced) as store:
        states = store.stream_states()
    assert states and {s.stream for s in states} == set(last) == set(errors) == set(until)
    for s in states:
        assert last[s.stream] == s.last_run_at and until[s.stream] == s.watermark
        assert errors[s.stream] == 0
    assert runs == {"ok": 1.0}


def test_a_failed_stream_shows_an_error_and_a_restatement_lowers_the_gauge(synced: str, tmp_path: Path) -> None:
    """A stream whose last run failed reports 1; a spend lowered by a re-read lowers the gauge (never clamped)."""
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(Path(synced).read_bytes())
    before = sum(s.value for s in _samples(_page(str(copy)), "usageledger_today_cost_usd"))
    import duckdb

    con = duckdb.connect(str(copy))
    try:
        con.execute("UPDATE streams SET last_status = 'failed' WHERE endpoint = 'costs'")
        con.execute("UPDATE costs SET amount_value = amount_value / 2 WHERE bucket_start = ?", [TODAY])
    finally:
        con.close()
    text = _page(str(copy))
    failed = {s.labels["stream"] for s in _samples(text, "usageledger_sync_errors") if s.value == 1}
    assert failed and all(stream.startswith("costs") for stream in failed)
    after = sum(s.value for s in _samples(text, "usageledger_today_cost_usd"))
    assert math.isclose(after, before / 2, rel_tol=1e-9)


def test_a_sync_killed_mid_run_is_an_error_not_running(synced: str, tmp_path: Path) -> None:
    """A sync killed mid-run (SIGKILL) leaves its run and a stream `running`: /metrics said no error and one run
    running until the next sync, so an alert on usageledger_sync_errors stayed silent; now as `status` shows it."""
    copy = tmp_path / "killed.duckdb"
    copy.write_bytes(Path(synced).read_bytes())
    child = subprocess.Popen(["true"])
    child.wait()  # a process that is gone: the killed sync
    with open_store(str(copy)) as store:
        state = store.stream_states()[0]
        store.begin_run("killed", at=EMULATOR_NOW, command="sync", owner=RunOwner(child.pid, socket.gethostname()))
        store.mark_streams([StreamMark(state.org, state.stream, "running")], run_id="killed", at=EMULATOR_NOW)
    text = _page(str(copy))
    errors = {s.labels["stream"]: s.value for s in _samples(text, "usageledger_sync_errors")}
    assert errors[state.stream] == 1 and sum(errors.values()) == 1
    assert {s.labels["status"]: s.value for s in _samples(text, "usageledger_sync_runs")} == {"ok": 1, "abandoned": 1}
    with _reading(str(copy)) as store:  # a scrape never writes the store
        assert store.query("SELECT status FROM sync_runs WHERE run_id = 'killed'") == [("running",)]


def test_label_switches_sum_dropped_labels_away(synced: str) -> None:
    """``--metrics-labels model`` keeps only ``model`` (tokens keep ``direction``), and totals are unchanged."""
    full = _page(synced)
    narrow = _page(synced, parse_metrics_labels("model"))
    cost = _samples(narrow, "usageledger_month_to_date_cost_usd")
    assert cost and all(set(s.labels) == {"model"} for s in cost)
    assert len({s.labels["model"] for s in cost}) == len(cost)
    tokens = _samples(narrow, "usageledger_month_to_date_tokens")
    assert tokens and all(set(s.labels) == {"model", "direction"} for s in tokens)
    for name in ("usageledger_month_to_date_cost_usd", "usageledger_month_to_date_tokens"):
        assert math.isclose(
            sum(s.value for s in _samples(full, name)), sum(s.value for s in _samples(narrow, name)), rel_tol=1e-9
        )
    project = _samples(_page(synced, parse_metrics_labels("org, project")), "usageledger_today_cost_usd")
    assert project and all(set(s.labels) == {"org", "project_id", "project_name"} for s in project)


@pytest.mark.parametrize("value", ["", "project,team", "models", " , ", "org,,model", "project,"])
def test_a_bad_label_list_is_one_line_naming_the_flag(value: str) -> None:
    """An unknown label, or an empty one (``org,,model`` once dropped it silently), is one line naming the flag."""
    with pytest.raises(ParameterError) as info:
        parse_metrics_labels(value)
    message = str(info.value)
    assert message.startswith("--metrics-labels:") and "\n" not in message
    assert "org, project, model, line_item" in message


def test_a_label_named_as_the_page_names_it_points_to_project() -> None:
    """``--metrics-labels project_id`` (the name the page shows) was refused with the list alone; it now says that
    ``project`` is the switch for ``project_id`` and ``project_name``."""
    with pytest.raises(ParameterError) as info:
        parse_metrics_labels("org,project_id")
    assert str(info.value) == (
        "--metrics-labels: project_id is not a label; choose from org, project, model, line_item "
        "(project_id: give project, which keeps project_id and project_name)"
    )


def test_every_metric_name_is_listed(synced: str) -> None:
    """``METRIC_NAMES`` (what the Grafana dashboard may use) is exactly what the page emits."""
    text = _page(synced)
    assert {f.name for f in text_string_to_metric_families(text)} == set(METRIC_NAMES)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _serving(starlette: Starlette) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(starlette, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_served_over_http_with_content_negotiation(synced: str) -> None:
    """Through uvicorn: plain Prometheus text by default, OpenMetrics (ending in ``# EOF``) when Accept asks."""
    endpoint = metrics_endpoint(lambda: _reading(synced), parse_metrics_labels("project"), clock=lambda: NOW)
    with _serving(Starlette(routes=[Route("/metrics", endpoint)])) as base, httpx.Client(base_url=base) as client:
        plain = client.get("/metrics")
        om = client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"}
        )
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/plain")
    assert om.status_code == 200 and om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    families = {f.name: f for f in openmetrics_families(om.text)}
    costs = families["usageledger_month_to_date_cost_usd"].samples
    assert costs and all(set(s.labels) == {"project_id", "project_name"} for s in costs)
    assert "usageledger_last_sync_timestamp_seconds" in families
    plain_costs = _samples(plain.text, "usageledger_month_to_date_cost_usd")
    assert sorted(s.value for s in plain_costs) == sorted(s.value for s in costs)
    assert Decimal(str(sum(s.value for s in costs))) > 0


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        # OpenMetrics weighed first, as Prometheus weighs it by default
        (
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
            "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
            "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            True,
        ),
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),
        # scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0]: the text format is preferred
        ("text/plain;version=0.0.4;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.4", False),
        ("application/openmetrics-text;q=0, text/plain", False),
        ("application/openmetrics-text; version=1.0.0", True),
        ("*/*", False),
        (None, False),
    ],
)
def test_the_format_follows_the_scrapers_weights(accept: str | None, openmetrics: bool) -> None:
    """Any mention of OpenMetrics in Accept got OpenMetrics, even weighed below the text format (a Prometheus whose
    scrape_protocols put the text format first) or refused with q=0; the weights now decide, a tie for OpenMetrics."""
    assert wants_openmetrics(accept) is openmetrics


def test_a_missing_store_fails_the_scrape_with_one_line(tmp_path: Path) -> None:
    """No store: 503 and one line saying so (Prometheus marks the target down), never a traceback page."""
    endpoint = metrics_endpoint(lambda: _reading(str(tmp_path / "none.duckdb")))
    with _serving(Starlette(routes=[Route("/metrics", endpoint)])) as base:
        response = httpx.get(f"{base}/metrics")
    assert response.status_code == 503
    assert response.text.startswith("error: no store at") and response.text.count("\n") == 1
    assert not (tmp_path / "none.duckdb").exists()


def test_an_empty_store_has_every_family_and_no_spend(tmp_path: Path) -> None:
    """A store nothing was synced into yet: the page parses, with no spend series and no sync times."""
    url = str(tmp_path / "empty.duckdb")
    open_store(url).close()
    text = _page(url)
    assert {f.name for f in text_string_to_metric_families(text)} <= set(METRIC_NAMES)
    assert _samples(text, "usageledger_month_to_date_cost_usd") == []
    assert _samples(text, "usageledger_last_sync_timestamp_seconds") == []


_PERIOD_FIGURES = tuple(n for n in METRIC_NAMES if n.startswith(("usageledger_month_to_date_", "usageledger_today_")))
"""The spend, token and request figures of the month and the day (the rest are the sync's health)."""


def test_a_store_mixing_synthetic_and_real_orgs_never_sums_them(tmp_path: Path, emulator: Emulator) -> None:
    """A store an older demo left mixed (the demo's synthetic org beside a real one): /metrics added the demo's
    spend to the real org's, with ``org`` dropped in one series and, with it kept, in every ``sum()`` of the Grafana
    dashboard. The synthetic org is now left out of the period figures; its sync figures stay; a store of synthetic
    orgs only still shows them."""
    url = str(mixed_store(tmp_path / "mixed.duckdb", emulator))
    with _reading(url) as store:
        [(real,)] = store.query(
            "SELECT SUM(amount_value) FROM costs_daily WHERE org = 'acme' AND bucket_start >= %s", [MONTH_START]
        )
        [(fake,)] = store.query(
            "SELECT SUM(amount_value) FROM costs_daily WHERE org = 'demo' AND bucket_start >= %s", [MONTH_START]
        )
    assert real > 0 and fake > 0
    for labels in (None, parse_metrics_labels("project,model")):
        text = _page(url, labels)
        for name in _PERIOD_FIGURES:
            assert all(s.labels.get("org") != "demo" for s in _samples(text, name)), name
        total = sum(s.value for s in _samples(text, "usageledger_month_to_date_cost_usd"))
        assert math.isclose(total, float(real), rel_tol=1e-9), (total, real, fake)
        assert {s.labels["org"] for s in _samples(text, "usageledger_sync_errors")} == {"acme", "demo"}
    with open_store(url) as store:
        store.delete_org("acme")
    demo_only = _samples(_page(url), "usageledger_month_to_date_cost_usd")
    assert {s.labels["org"] for s in demo_only} == {"demo"}
    assert math.isclose(sum(s.value for s in demo_only), float(fake), rel_tol=1e-9)


def _series(text: str) -> int:
    """The samples a Prometheus would store from one scrape of ``text``: one series each (gauges only)."""
    return sum(len(family.samples) for family in text_string_to_metric_families(text))


def test_the_page_counts_its_own_series_and_what_each_label_choice_would_give(synced: str) -> None:
    """``usageledger_metrics_series`` is the number of series on the page, itself included, in both formats; and
    the count a ``--metrics-labels`` choice would give, worked out from the full page's groups, is what a scrape with
    that choice holds, for every choice."""
    with _reading(synced) as store:
        full = scrape_metrics(store, now=NOW)
        om = scrape_metrics(store, now=NOW, openmetrics=True)
        text = full.body.decode()
        assert full.series == _series(text) == om.series > 20
        [gauge] = _samples(text, SERIES_METRIC)
        assert gauge.value == full.series and gauge.labels == {}
        assert [s.value for s in _samples(text, SERIES_METRIC)] == [
            s.value for f in openmetrics_families(om.body.decode()) if f.name == SERIES_METRIC for s in f.samples
        ]
        for n in range(1, len(METRICS_LABELS) + 1):
            for kept in combinations(METRICS_LABELS, n):
                choice = frozenset(kept)
                page = scrape_metrics(store, now=NOW, labels=choice)
                assert page.series == _series(page.body.decode()) == full.series_with(choice), choice


def _line_counts(line: str) -> tuple[int, frozenset[str], int]:
    """The series a line says a scrape holds, the ``--metrics-labels`` it names and the count it gives."""
    match = re.fullmatch(
        r"/metrics: a scrape holds ([\d,]+) series \(labels [a-z_, ]+\), more than ([\d,]+), .*; "
        r"--metrics-labels ([a-z_,]+) gives ([\d,]+) \(the other labels summed away, totals unchanged\) \(.*\)",
        line,
    )
    assert match, line
    return int(match[1].replace(",", "")), frozenset(match[3].split(",")), int(match[4].replace(",", ""))


def test_a_scrape_past_the_bound_is_said_once_with_the_labels_that_bring_it_under(synced: str) -> None:
    """/metrics of a big org held ~43,600 series without a word. A real scrape over HTTP holding more than the bound
    (lowered here: the emulator's org is small) is now said in one line, once however many scrapes follow, naming
    the count and the ``--metrics-labels`` choice that keeps the most series under the bound, with its count: a
    scrape with that choice holds exactly that many. The page itself is unchanged: every label kept."""
    with _reading(synced) as store:
        full = scrape_metrics(store, now=NOW)
        narrow = scrape_metrics(store, now=NOW, labels=parse_metrics_labels("model"))
    bound = (full.series + narrow.series) // 2
    lines: list[str] = []
    endpoint = metrics_endpoint(lambda: _reading(synced), clock=lambda: NOW, say=lines.append, series_bound=bound)
    with _serving(Starlette(routes=[Route("/metrics", endpoint)])) as base, httpx.Client(base_url=base) as client:
        pages = [client.get("/metrics") for _ in range(3)]
    assert all(p.status_code == 200 and p.text == full.body.decode() for p in pages)
    assert len(lines) == 1, lines
    said, choice, count = _line_counts(lines[0])
    assert said == full.series == _series(pages[0].text) > bound
    assert count <= bound
    with _reading(synced) as store:
        chosen = scrape_metrics(store, now=NOW, labels=choice)
        assert chosen.series == count == _series(chosen.body.decode())
        # no other choice keeps more series under the bound
        for n in range(1, len(METRICS_LABELS) + 1):
            for kept in combinations(METRICS_LABELS, n):
                assert not count < full.series_with(frozenset(kept)) <= bound, kept


def test_a_scrape_within_the_bound_says_nothing_and_none_fits_is_said_so(synced: str) -> None:
    """The emulator's org is far under the default bound: nothing said. A bound no choice reaches (the sync's own
    series alone pass it) names the choice with the fewest series instead, and says none brings it under."""
    lines: list[str] = []
    endpoint = metrics_endpoint(lambda: _reading(synced), clock=lambda: NOW, say=lines.append)
    with _serving(Starlette(routes=[Route("/metrics", endpoint)])) as base:
        assert httpx.get(f"{base}/metrics").status_code == 200
    assert lines == []
    with _reading(synced) as store:
        page = scrape_metrics(store, now=NOW)
    fewest = min(page.series_with(frozenset(kept)) for n in range(1, 5) for kept in combinations(METRICS_LABELS, n))
    line = page.too_many(5)
    assert line is not None
    assert "no --metrics-labels choice brings it under; the fewest, --metrics-labels " in line
    assert line.split("the fewest, --metrics-labels ", 1)[1].split(" gives ", 1)[1].startswith(f"{fewest:,} ")
    assert page.too_many(page.series) is None


def test_serve_says_it_through_the_app(synced: str) -> None:
    """``build_app(say=, series_bound=)``, as `serve` builds it with its stderr: one line, on the first scrape past
    the bound only."""
    lines: list[str] = []
    with TestClient(build_app(synced, now=lambda: NOW, say=lines.append, series_bound=10)) as client:
        for _ in range(2):
            assert client.get("/metrics").status_code == 200
    assert len(lines) == 1 and lines[0].startswith("/metrics: a scrape holds ")
