"""Alerts: the anomaly method on synthetic days, the budget boundary, config validation and the webhook."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

from usageledger.errors import ConfigError
from usageledger.report.alerts import (
    Alert,
    AlertConfig,
    AlertDeliveryError,
    AnomalyRule,
    Budget,
    assess_day,
    budget_exceeded,
    parse_alert_config,
    post_webhook,
    scan_anomalies,
    slack_payload,
)

from fixtures.reports import SPIKE_DAY, START, check_result, synthetic_days


def test_spike_in_90_days_is_the_only_anomaly() -> None:
    """On 90 synthetic days an injected spike is flagged, and it is the only day flagged."""
    results = scan_anomalies(synthetic_days(spike=True), AnomalyRule())
    flagged = [r.day for r in results if r.anomalous]
    assert flagged == [START + timedelta(days=SPIKE_DAY)]
    spike = next(r for r in results if r.anomalous)
    assert spike.z is not None and spike.z > Decimal("3.5")


def test_same_days_without_spike_raise_nothing() -> None:
    """The same 90 days without the spike produce no anomaly at all."""
    results = scan_anomalies(synthetic_days(spike=False), AnomalyRule())
    assert len(results) == 90 - AnomalyRule().min_baseline_days
    assert not [r for r in results if r.anomalous]


def test_robust_z_matches_the_stated_formula() -> None:
    """z = 0.6745 * (x - median) / MAD, computed exactly in Decimal."""
    baseline = [Decimal(v) for v in (10, 12, 11, 13, 9, 10, 12)]
    result = assess_day(date(2026, 1, 8), Decimal(20), baseline, AnomalyRule())
    assert result is not None
    assert result.median == Decimal(11) and result.mad == Decimal(1)
    assert result.z == Decimal("0.6745") * 9
    assert result.anomalous


def test_minimum_increase_keeps_small_accounts_quiet() -> None:
    """A far-out day that rose by less than the minimum increase is not an anomaly."""
    baseline = [Decimal("0.10")] * 10
    result = assess_day(date(2026, 1, 11), Decimal("0.90"), baseline, AnomalyRule())
    assert result is not None and result.z is None
    assert not result.anomalous
    big = assess_day(date(2026, 1, 11), Decimal("1.10"), baseline, AnomalyRule())
    assert big is not None and big.anomalous


def test_short_history_is_not_judged() -> None:
    """Fewer baseline days than the minimum gives no verdict at all."""
    assert assess_day(date(2026, 1, 3), Decimal(100), [Decimal(1)] * 6, AnomalyRule()) is None


@pytest.mark.parametrize(
    ("spend", "fires"),
    [("99.99", False), ("100.00", False), ("100.01", True), ("100.000000000000000001", True)],
)
def test_budget_fires_only_strictly_above(spend: str, fires: bool) -> None:
    """The budget rule is spend > budget: at the threshold is fine, one cent over fires."""
    assert budget_exceeded(Decimal(spend), Decimal("100.00")) is fires


def test_no_budget_never_fires() -> None:
    """An unset budget never fires, whatever the spend."""
    assert not budget_exceeded(Decimal("1e9"), None)


def test_alert_config_parses_every_key() -> None:
    """Every [alerts] key lands in the typed config, money as exact Decimal."""
    cfg = parse_alert_config(
        {
            "daily_budget": 25,
            "monthly_budget": "500.50",
            "stale_after": "36h",
            "anomaly_threshold": 4.0,
            "anomaly_window_days": 14,
            "anomaly_min_increase": "2.5",
            "anomaly_min_baseline_days": 5,
            "projects": {"proj_a": {"daily_budget": 0.1}, "proj_b": {"monthly_budget": 80}},
        }
    )
    assert cfg.budget == Budget(daily=Decimal(25), monthly=Decimal("500.50"))
    assert cfg.stale_after == timedelta(hours=36)
    assert cfg.anomaly == AnomalyRule(Decimal("4.0"), 14, Decimal("2.5"), 5)
    assert cfg.project_budgets["proj_a"] == Budget(daily=Decimal("0.1"))
    assert cfg.project_budgets["proj_b"] == Budget(monthly=Decimal(80))


def test_alert_config_defaults() -> None:
    """An empty [alerts] section gives the documented defaults."""
    cfg = parse_alert_config({})
    assert cfg == AlertConfig()
    assert cfg.anomaly.threshold == Decimal("3.5") and cfg.anomaly.window_days == 28
    assert cfg.stale_after == timedelta(hours=48)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"dayly_budget": 5}, "alerts.dayly_budget"),
        ({"daily_budget": True}, "alerts.daily_budget"),
        ({"daily_budget": "lots"}, "alerts.daily_budget"),
        ({"monthly_budget": -1}, "alerts.monthly_budget"),
        ({"stale_after": "soon"}, "alerts.stale_after"),
        ({"anomaly_window_days": 2.5}, "alerts.anomaly_window_days"),
        ({"anomaly_threshold": [3]}, "alerts.anomaly_threshold"),
        ({"projects": {"proj_a": {"weekly_budget": 3}}}, "alerts.projects.proj_a.weekly_budget"),
        ({"projects": {"proj_a": 3}}, "alerts.projects.proj_a"),
        ({"projects": []}, "alerts.projects"),
        ({"projects": {"": {"daily_budget": 3}}}, 'alerts.projects."": the project is empty'),
        ({"projects": {"proj_a ": {"daily_budget": 3}}}, 'alerts.projects."proj_a ": the project is empty or padded'),
    ],
)
def test_alert_config_errors_name_the_key(section: dict[str, Any], key: str) -> None:
    """Unknown keys and wrong types raise ConfigError naming the offending key."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_alert_config(section)


def test_slack_payload_shape() -> None:
    """The payload has the fallback text and header/section/context blocks Slack accepts."""
    payload = slack_payload(check_result(Alert("budget", "organisation", "daily budget exceeded by $1.00")), org="acme")
    assert payload["text"].startswith("usageledger check for org acme: 1 alert")
    kinds = [b["type"] for b in payload["blocks"]]
    assert kinds == ["header", "section", "context"]
    assert payload["blocks"][0]["text"]["type"] == "plain_text"
    assert "daily budget exceeded" in payload["blocks"][1]["text"]["text"]
    json.dumps(payload)


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers["Content-Type"], body))
        if self.path.startswith("/echo/"):  # what some hosts answer: the token alone, or the path JSON-escaped
            token = self.path.rsplit("/", 1)[-1]
            escaped = self.path.replace("/", "\\/")
            answer = (403, f'{{"error": "invalid_token: {token}", "path": "{escaped}"}}'.encode())
        elif self.path == "/moved":
            answer = (302, b"")
        else:
            answer = (500, b"broken") if self.path == "/fail" else (200, b"ok")
        self.send_response(answer[0])
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(answer[1])

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A real HTTP server on 127.0.0.1 that records every POST."""
    received: ClassVar[list[tuple[str, str, bytes]]] = []
    handler = type("Handler", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # shutdown() returns at the serving loop's next look, every 0.5 s by default: half a second per server.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_webhook_reaches_a_local_receiver(receiver: tuple[str, list[tuple[str, str, bytes]]]) -> None:
    """post_webhook delivers the JSON payload to a real server on loopback."""
    url, received = receiver
    payload = slack_payload(check_result(Alert("stale", "store", "stale store: no synced bucket at all")))
    assert post_webhook(f"{url}/hook", payload) == 200
    assert len(received) == 1
    path, content_type, body = received[0]
    assert path == "/hook" and content_type == "application/json"
    assert json.loads(body) == payload


def test_webhook_url_never_reaches_the_logs(
    receiver: tuple[str, list[tuple[str, str, bytes]]], caplog: pytest.LogCaptureFixture
) -> None:
    """httpx.Client logged `HTTP Request: POST <the whole webhook URL>` at INFO: a program logging at INFO (or DEBUG)
    wrote the secret down. The POST is still made, and nothing logged names its path."""
    url, received = receiver
    with caplog.at_level(logging.DEBUG):
        assert post_webhook(f"{url}/services/T0AB12/B0CD34/XSECRETX", {"text": "x"}) == 200
    assert received and received[-1][0] == "/services/T0AB12/B0CD34/XSECRETX"
    assert caplog.records and not [r for r in caplog.records if "XSECRETX" in r.getMessage()]


def test_webhook_error_status_is_reported(receiver: tuple[str, list[tuple[str, str, bytes]]]) -> None:
    """A non-2xx answer becomes AlertDeliveryError with the status."""
    url, _ = receiver
    with pytest.raises(AlertDeliveryError, match="HTTP 500"):
        post_webhook(f"{url}/fail", {"text": "x"})


def test_webhook_error_never_echoes_a_part_of_the_path(receiver: tuple[str, list[tuple[str, str, bytes]]]) -> None:
    """A host answering `invalid_token: <token>` or the path JSON-escaped (`\\/`) shows neither; no body, no colon."""
    url, _ = receiver
    with pytest.raises(AlertDeliveryError) as caught:
        post_webhook(f"{url}/echo/T0AB12/B0CD34/XSECRETX", {"text": "x"})
    message = str(caught.value)
    assert "HTTP 403" in message and "invalid_token: …" in message
    assert "XSECRETX" not in message and "T0AB12" not in message and "B0CD34" not in message
    with pytest.raises(AlertDeliveryError) as moved:
        post_webhook(f"{url}/moved", {"text": "x"})
    assert str(moved.value) == f"webhook {url}: HTTP 302 with no body; check the webhook URL"


def test_webhook_without_response_is_reported() -> None:
    """A connection failure becomes AlertDeliveryError, not an httpx exception."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(AlertDeliveryError, match="no response"):
        post_webhook("http://127.0.0.1:9/hook", {"text": "x"}, transport=httpx.MockTransport(refuse))
