"""``usageledger check`` against a store: anomaly on 90 synthetic days, budget boundaries, staleness, webhook."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.cli.commands_report import EXIT_FINDINGS
from usageledger.report.alerts import AlertConfig, Budget, run_checks
from usageledger.store import default_streams, encode_group_key, open_store

from fixtures.reports import START, synthetic_days

LAST = START + timedelta(days=89)
NOW = datetime(LAST.year, LAST.month, LAST.day, 18, tzinfo=UTC)


def make_store(path: Path, spend: Sequence[tuple[date, str, Decimal]]) -> Path:
    """A real store (migrated) holding one costs row per (day, project, amount) in org-a's default costs stream."""
    stream = next(s for s in default_streams() if s.endpoint.is_costs)
    with open_store(path) as store:
        store.register_stream("org-a", stream)
        for d, project, amount in spend:
            start = datetime(d.year, d.month, d.day, tzinfo=UTC)
            store.execute(
                "INSERT INTO costs (org, stream, bucket_start, bucket_end, group_key, project_id, line_item, "
                "amount_value, currency) VALUES ('org-a', %s, %s, %s, %s, %s, 'gpt-4o, input', %s, 'usd')",
                [
                    stream.id,
                    start,
                    start + timedelta(days=1),
                    encode_group_key([project, "gpt-4o, input"]),
                    project,
                    amount,
                ],
            )
    return path


def _days(spike: bool) -> list[tuple[date, str, Decimal]]:
    """The 90 synthetic days of test_alerts, with the spike (if any) on the last day, the one `check` judges."""
    days = synthetic_days(spike=False)
    if spike:
        days[-1] = (days[-1][0], days[-1][1] * 4)
    return [(d, "proj_a", v) for d, v in days]


@pytest.fixture
def db_factory(tmp_path: Path) -> Iterator[Any]:
    """Build a store from rows and open it read-only; stores are closed at the end."""
    opened: list[Any] = []

    def factory(rows: Sequence[tuple[date, str, Decimal]], name: str = "store") -> Any:
        path = make_store(tmp_path / f"{name}.duckdb", rows)
        store = open_store(path, migrate=False, read_only=True)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def test_spike_on_the_judged_day_raises_the_anomaly(db_factory: Any) -> None:
    """90 synthetic days with a spike on the judged day: one anomaly alert, stating the method's numbers."""
    result = run_checks(db_factory(_days(spike=True)), AlertConfig(), now=NOW, anomaly_day=LAST)
    kinds = [a.kind for a in result.alerts]
    assert kinds == ["anomaly"]
    assert result.anomaly is not None and result.anomaly.anomalous and result.anomaly.baseline_days == 28
    assert "robust z" in result.alerts[0].message


def test_same_days_without_spike_raise_no_alert(db_factory: Any) -> None:
    """The same 90 days without the spike: no alert at all, on any of the last 60 days."""
    db = db_factory(_days(spike=False))
    for offset in range(60):
        day = LAST - timedelta(days=offset)
        result = run_checks(db, AlertConfig(), now=NOW, anomaly_day=day)
        assert result.alerts == (), result.alerts


@pytest.mark.parametrize(("extra", "fires"), [(Decimal("0"), False), (Decimal("0.01"), True)])
def test_daily_budget_boundary(db_factory: Any, extra: Decimal, fires: bool) -> None:
    """Spend of exactly the budget does not fire; one cent over does (spend > budget), split over rows too."""
    rows = [(LAST, "proj_a", Decimal("60.00")), (LAST, "proj_b", Decimal("40.00") + extra)]
    cfg = AlertConfig(budget=Budget(daily=Decimal("100.00")))
    result = run_checks(db_factory(rows), cfg, now=NOW)
    assert [a.kind for a in result.alerts if a.kind == "budget"] == (["budget"] if fires else [])


@pytest.mark.parametrize(("extra", "fires"), [(Decimal("0"), False), (Decimal("0.01"), True)])
def test_monthly_and_project_budget_boundary(db_factory: Any, extra: Decimal, fires: bool) -> None:
    """Month to date and per-project budgets follow the same rule; other months and projects do not count."""
    first = LAST.replace(day=1)
    rows = [
        (first, "proj_a", Decimal("250.00")),
        (LAST, "proj_a", Decimal("250.00") + extra),
        (first - timedelta(days=1), "proj_a", Decimal("999")),
        (LAST, "proj_b", Decimal("999")),
    ]
    cfg = AlertConfig(project_budgets={"proj_a": Budget(monthly=Decimal("500.00"))})
    result = run_checks(db_factory(rows), cfg, now=NOW)
    budget_alerts = [a for a in result.alerts if a.kind == "budget"]
    assert [a.subject for a in budget_alerts] == (["project proj_a"] if fires else [])


def test_staleness(db_factory: Any) -> None:
    """Newest bucket older than the limit fires; within the limit does not; an empty store fires."""
    rows = [(LAST, "proj_a", Decimal(1))]
    newest_end = datetime(LAST.year, LAST.month, LAST.day, tzinfo=UTC) + timedelta(days=1)
    db = db_factory(rows)
    cfg = AlertConfig(stale_after=timedelta(hours=6))
    fresh = run_checks(db, cfg, now=newest_end + timedelta(hours=6))
    assert [a.kind for a in fresh.alerts] == []
    stale = run_checks(db, cfg, now=newest_end + timedelta(hours=6, seconds=1))
    assert [a.kind for a in stale.alerts] == ["stale"]
    empty = run_checks(db_factory([], "empty"), cfg, now=NOW)
    assert [a.kind for a in empty.alerts] == ["stale"]


def test_staleness_of_an_open_bucket_counts_from_its_sync(tmp_path: Path) -> None:
    """A bucket still open when synced covers only up to its sync time, so a stopped sync is noticed on time."""
    path = make_store(tmp_path / "open.duckdb", [(LAST, "proj_a", Decimal(1))])
    synced = datetime(LAST.year, LAST.month, LAST.day, 9, tzinfo=UTC)
    with open_store(path) as store:
        store.execute("UPDATE costs SET synced_at = %s", [synced])
        cfg = AlertConfig(stale_after=timedelta(hours=6))
        assert run_checks(store, cfg, now=synced + timedelta(hours=6)).alerts == ()
        late = run_checks(store, cfg, now=synced + timedelta(hours=7))
    assert [a.kind for a in late.alerts] == ["stale"]
    assert late.data_reaches == synced
    assert "reaches" in late.alerts[0].message and "7.0 h ago" in late.alerts[0].message


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A real HTTP server on 127.0.0.1 recording POST bodies."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # shutdown() returns at the serving loop's next look, every 0.5 s by default: half a second per server.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_cli_check_alerts_exit_code_and_webhook(tmp_path: Path, receiver: tuple[str, list[bytes]]) -> None:
    """`check` prints one ALERT line per alert, exits 3 and POSTs the Slack payload to the receiver."""
    url, bodies = receiver
    store = make_store(tmp_path / "s.duckdb", _days(spike=True))
    result = CliRunner().invoke(
        app,
        [
            "check",
            "--store",
            str(store),
            "--date",
            LAST.isoformat(),
            "--anomaly-date",
            LAST.isoformat(),
            "--daily-budget",
            "50",
            "--stale-after",
            "100000d",
            "--webhook",
            url,
        ],
    )
    assert result.exit_code == EXIT_FINDINGS, result.output
    alert_lines = [line for line in result.output.splitlines() if line.startswith("ALERT")]
    assert [line.split(":")[0] for line in alert_lines] == ["ALERT budget", "ALERT anomaly"]
    assert "robust z-score" in result.output and "3.5" in result.output
    assert len(bodies) == 1
    payload = json.loads(bodies[0])
    assert payload["text"].startswith("usageledger check: 2 alerts")
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section", "context"]


def test_cli_check_warns_of_a_budgeted_project_the_store_does_not_hold(tmp_path: Path) -> None:
    """`[alerts.projects.proj_typo]` watches nothing: warned of as `--project proj_typo` is; a known one is not."""
    store = make_store(tmp_path / "s.duckdb", _days(spike=False))
    config = tmp_path / "usageledger.toml"
    config.write_text('[alerts.projects.proj_typo]\ndaily_budget = "1"\n[alerts.projects.proj_a]\ndaily_budget = "1"\n')
    argv = ["check", "--store", str(store), "--config", str(config), "--date", LAST.isoformat()]
    result = CliRunner().invoke(app, [*argv, "--stale-after", "100000d"])
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: alerts.projects.proj_typo appears in no cost or usage row of this store; check the ID "
        "(usageledger report lists the projects)"
    ], result.output


def test_cli_check_reads_a_budgeted_project_by_its_name_and_refuses_one_it_cannot_tell(tmp_path: Path) -> None:
    """`[alerts.projects."Search Assistant"]`, the name every table shows, was read as an ID no row names: warned
    of, and its budget judged against $0.00, a false all-clear. A name (case and blanks aside) is read as
    `--project` reads it; a name two projects share, or a project given two tables (its ID and its name), is
    refused in one line naming the config keys (and the IDs), exit 2."""
    store = make_store(tmp_path / "s.duckdb", [*_days(spike=False), (LAST, "proj_b", Decimal("2"))])
    config = tmp_path / "usageledger.toml"
    argv = ["check", "--store", str(store), "--config", str(config), "--date", LAST.isoformat()]
    argv += ["--stale-after", "100000d", "--format", "json"]
    names = '[names]\nprojects = { proj_a = "Search Assistant", proj_b = "%s" }\n'
    budget = '[alerts.projects."%s"]\ndaily_budget = "1"\n'
    config.write_text(names % "Batch Jobs" + budget % "search  assistant")
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == EXIT_FINDINGS, result.output
    assert "warning:" not in result.stderr, result.stderr
    fired = [a for a in json.loads(result.stdout)["alerts"] if a["kind"] == "budget"]
    assert [a["subject"] for a in fired] == ["project Search Assistant (proj_a)"], fired
    config.write_text(names % "Search Assistant" + budget % "Search Assistant")
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        "error: alerts.projects.\"Search Assistant\": 'Search Assistant' is the name of 2 projects (proj_a, proj_b);"
        " give the ID of one\n"
    )
    config.write_text(names % "Batch Jobs" + budget % "Search Assistant" + budget % "proj_a")
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and result.stderr == (
        'error: alerts.projects."Search Assistant" and alerts.projects.proj_a: both are project proj_a'
        " (Search Assistant); keep one of the two tables\n"
    ), result.stderr


def test_the_mcp_alerts_tool_reads_a_budgeted_project_by_its_name(tmp_path: Path) -> None:
    """The MCP `alerts` tool applies `[alerts.projects.X]` as `check` does: a project's name as X is its budget, and a
    name two projects share is refused naming the config key."""
    from usageledger.config import parse_config
    from usageledger.errors import ParameterError
    from usageledger.mcp_tools import LedgerTools

    path = make_store(tmp_path / "s.duckdb", [*_days(spike=False), (LAST, "proj_b", Decimal("2"))])

    def store() -> Any:
        return open_store(path, migrate=False, read_only=True)

    table = {"daily_budget": "1"}
    named = {"names": {"projects": {"proj_a": "Search Assistant", "proj_b": "Batch Jobs"}}}
    tools = LedgerTools(
        store, parse_config({**named, "alerts": {"projects": {"search assistant": table}}}), clock=lambda: NOW
    )
    fired = [a for a in tools.alerts(date_=LAST.isoformat())["alerts"] if a["kind"] == "budget"]
    assert [a["subject"] for a in fired] == ["project Search Assistant (proj_a)"], fired
    shared = {"names": {"projects": {"proj_a": "Search Assistant", "proj_b": "Search Assistant"}}}
    tools = LedgerTools(
        store, parse_config({**shared, "alerts": {"projects": {"Search Assistant": table}}}), clock=lambda: NOW
    )
    with pytest.raises(ParameterError, match=r'^alerts\.projects\."Search Assistant": .* \(proj_a, proj_b\); give'):
        tools.alerts(date_=LAST.isoformat())


def test_cli_check_quiet_store_exits_zero(tmp_path: Path, receiver: tuple[str, list[bytes]]) -> None:
    """Without alerts `check` says OK, exits 0 and posts nothing."""
    url, bodies = receiver
    store = make_store(tmp_path / "s.duckdb", _days(spike=False))
    result = CliRunner().invoke(
        app,
        [
            "check",
            "--store",
            str(store),
            "--anomaly-date",
            LAST.isoformat(),
            "--stale-after",
            "100000d",
            "--webhook",
            url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "OK: no alerts" in result.output
    assert bodies == []


def test_cli_check_reads_alerts_from_config(tmp_path: Path) -> None:
    """Thresholds come from [alerts]; an unknown key there is a one-line error naming it."""
    store = make_store(tmp_path / "s.duckdb", [(LAST, "proj_a", Decimal("10.01"))])
    config = tmp_path / "usageledger.toml"
    config.write_text('[alerts]\nstale_after = "100000d"\n[alerts.projects.proj_a]\ndaily_budget = 10\n')
    args = ["check", "--store", str(store), "--date", LAST.isoformat(), "--config", str(config)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_FINDINGS, result.output
    assert "project proj_a: daily spend" in result.output
    config.write_text("[alerts]\ndaily_budgett = 10\n")
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 1
    assert "alerts.daily_budgett: unknown key" in bad.output


def test_cli_check_webhook_failure_shows_only_the_host_and_still_exits_3(tmp_path: Path) -> None:
    """A webhook to a dead loopback port: one error line with the host, never the secret path; exit stays 3."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T0SECRET/B0SECRET/WEBHOOKPATHSECRET"
    store = make_store(tmp_path / "s.duckdb", _days(spike=True))
    result = CliRunner().invoke(
        app,
        ["check", "--store", str(store), "--date", LAST.isoformat(), "--daily-budget", "50", "--webhook", url],
    )
    assert result.exit_code == EXIT_FINDINGS, result.output
    assert f"webhook http://127.0.0.1:{port}: no response" in result.output
    assert "SECRET" not in result.output and "/services" not in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("not a url", "<webhook URL> is not an http(s) URL with a host"),
        ("http://", "<webhook URL> is not an http(s) URL with a host"),
        ("ftp://files.example/T0SECRET", "ftp://files.example is not an http(s) URL"),
        ("https://hooks.example:port/T0SECRET", "<webhook URL> is not a valid URL"),
        ("https://hooks.example/T0 SECRET", "https://hooks.example holds white space"),
        ("  ", "is empty"),
    ],
)
def test_cli_check_refuses_a_malformed_webhook_before_checking(tmp_path: Path, url: str, said: str) -> None:
    """A broken --webhook used to pass unnoticed until the day an alert fired (then a garbled error); it is refused
    up front, in one line, without the URL's path, even when no alert would fire."""
    store = make_store(tmp_path / "s.duckdb", _days(spike=False))
    result = CliRunner().invoke(app, ["check", "--store", str(store), "--stale-after", "100000d", "--webhook", url])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --webhook: ") and said in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "SECRET" not in result.output


def test_cli_check_trims_a_pasted_webhook_url(tmp_path: Path, receiver: tuple[str, list[bytes]]) -> None:
    """A URL pasted with its trailing newline still delivers."""
    url, bodies = receiver
    store = make_store(tmp_path / "s.duckdb", _days(spike=True))
    args = ["check", "--store", str(store), "--date", LAST.isoformat(), "--daily-budget", "50"]
    result = CliRunner().invoke(app, [*args, "--stale-after", "100000d", "--webhook", f" {url}\n"])
    assert result.exit_code == EXIT_FINDINGS, result.output
    assert "webhook: delivered" in result.output and len(bodies) == 1
