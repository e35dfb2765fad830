"""Alerts for cron and CI: budgets, spend anomalies and a stale store, plus a Slack-compatible webhook.

Rules, stated once here and repeated in the CLI output:

* **Budgets** fire when spend is **strictly greater** than the budget (``spend > budget``): a 100.00 budget allows
  spending exactly 100.00, and 100.01 fires. A daily budget looks at one UTC day (by default today, so far); a
  monthly budget at the month to date, through that day. Each applies to the whole organisation or to one project.
* **Anomalies** use a robust z-score against a trailing baseline: the daily spend of the 28 UTC days before the
  day checked (by default yesterday, the newest complete day), its median ``m`` and its median absolute deviation
  ``MAD``; ``z = 0.6745 * (x - m) / MAD``. A day is anomalous when ``z > 3.5`` **and** ``x - m >= 1.00`` (the
  minimum increase, in the costs' currency), so a quiet account does not page anyone over cents. A flat baseline
  (``MAD = 0``) puts any rise infinitely far out, and the minimum increase decides. The baseline needs at least 7
  days; days before the first costs row are not part of it, later days without rows count as zero spend.
* **Stale keys** (``--stale-keys 90d``) fire once per API key that is flagged by the rules of ``usageledger keys``
  with that span for both limits: unused for longer than it, its owner removed, or an admin key created longer ago
  (see :mod:`usageledger.report.keys`).
* **Forecast** (``--forecast-over 1000``) fires when this month's forecast month-end spend (the method of
  :mod:`usageledger.report.forecast`) is strictly above the amount, before the money is spent; the alert gives the
  range and the runway day the amount is crossed at the forecast rate. Too little history to forecast is an error.
* **Credit** (``--credit-below 100``) fires when the prepaid credit balance (:mod:`usageledger.report.credit`: the
  top-ups minus the costs since the first one) is strictly below the amount; with no top-up recorded it is an error.
* **Not judged** (``unchecked``) fires when a budget, the forecast or the credit check is asked for and the store's
  costs it reads are missing (never synced for an org, or synced short of the day judged by more than a day: the
  rule of :func:`usageledger.report.queries.costs_not_synced`): $0.00 of costs never synced is no all-clear. A
  budget or credit alert that fires on the costs held still fires (the spend is at least that); the forecast is not
  made.
* **Staleness** fires when the newest synced data is older than the limit (default 48 hours): each bucket
  covers up to its end, or up to when it was synced if it was still open then; the newest such point over every
  table of the store is compared with now. An empty store fires too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from usageledger._amounts import parse_amount
from usageledger._http import verify_for
from usageledger._secrets import check_webhook_url, redact_url, redact_webhook
from usageledger._sections import (
    ALERT_KEYS,
    MAD_SCALE,
    AlertConfig,
    AnomalyRule,
    Budget,
    parse_alert_config,
)
from usageledger._text import counted
from usageledger.errors import AlertDeliveryError, ParameterError, UsageLedgerError
from usageledger.report.credit import credit_balance
from usageledger.report.finality import FinalEdges, final_only_sql
from usageledger.report.forecast import runway_words
from usageledger.report.forecast_out import to_date_words
from usageledger.report.forecasting import build_forecast
from usageledger.report.formatting import format_money, format_signed_money
from usageledger.report.history import Adjustment
from usageledger.report.keys import KeyRules, build_keys
from usageledger.report.names import Names, with_id
from usageledger.report.queries import (
    COSTS_VIEW,
    DAY,
    Database,
    Period,
    column_decimal,
    costs_not_synced,
    day_start,
    main_currency,
    utc_day,
    whole_day,
)
from usageledger.store import tables
from usageledger.store._base import check_orgs
from usageledger.timeutil import back_from, parse_duration, utc_moment

__all__ = [
    "ALERT_KEYS",
    "MAD_SCALE",
    "Alert",
    "AlertConfig",
    "AlertDeliveryError",
    "AnomalyResult",
    "AnomalyRule",
    "Budget",
    "CheckResult",
    "assess_day",
    "budget_exceeded",
    "parse_alert_config",
    "post_webhook",
    "run_checks",
    "scan_anomalies",
    "slack_payload",
]

AlertKind = Literal["budget", "anomaly", "stale", "stale_key", "forecast", "credit", "restated", "unchecked"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert that fired: its kind, what it is about, and the line that says why."""

    kind: AlertKind
    subject: str
    """``organisation`` or ``project <id>``, the store for staleness, ``key <id>`` for a stale key."""
    message: str


@dataclass(frozen=True, slots=True)
class AnomalyResult:
    day: date
    spend: Decimal
    median: Decimal
    mad: Decimal
    baseline_days: int
    z: Decimal | None
    """None when the baseline is flat (MAD = 0) and the spend is above it: infinitely far out."""
    anomalous: bool

    def describe(self, currency: str | None) -> str:
        z = "inf" if self.z is None else f"{self.z.quantize(Decimal('0.01'))}"
        return (
            f"{self.day}: spend {format_money(self.spend, currency)} vs median {format_money(self.median, currency)} "
            f"(MAD {format_money(self.mad, currency)}, {self.baseline_days} baseline days), robust z = {z}"
        )


@dataclass(frozen=True, slots=True)
class CheckResult:
    checked_at: datetime
    budget_day: date
    anomaly_day: date
    currency: str | None
    anomaly: AnomalyResult | None
    data_reaches: datetime | None
    """The newest point the synced data covers; None for an empty store."""
    checks: tuple[str, ...]
    """One line per check that ran, what it compared."""
    alerts: tuple[Alert, ...]


def budget_exceeded(spend: Decimal, budget: Decimal | None) -> bool:
    """The budget rule: fires when spend is strictly greater than the budget."""
    return budget is not None and spend > budget


def assess_day(day: date, spend: Decimal, baseline: Sequence[Decimal], rule: AnomalyRule) -> AnomalyResult | None:
    """Judge one day's spend against its baseline; None when the baseline is too short to judge."""
    if len(baseline) < rule.min_baseline_days:
        return None
    median = statistics.median(baseline)
    mad = statistics.median([abs(x - median) for x in baseline])
    increase = spend - median
    z: Decimal | None
    if mad == 0:
        z = None if increase > 0 else Decimal(0)
        far = increase > 0
    else:
        z = MAD_SCALE * increase / mad
        far = z > rule.threshold
    return AnomalyResult(
        day=day,
        spend=spend,
        median=median,
        mad=mad,
        baseline_days=len(baseline),
        z=z,
        anomalous=far and increase >= rule.min_increase,
    )


def scan_anomalies(daily: Sequence[tuple[date, Decimal]], rule: AnomalyRule) -> list[AnomalyResult]:
    """Assess every day of a contiguous daily series (oldest first) that has enough baseline before it."""
    results = []
    for i, (day, spend) in enumerate(daily):
        baseline = [v for _, v in daily[max(0, i - rule.window_days) : i]]
        result = assess_day(day, spend, baseline, rule)
        if result is not None:
            results.append(result)
    return results


# -- running the checks against a store -------------------------------------------------------------------------


def _where_org(org: str | None, final: FinalEdges | None = None) -> tuple[str, list[object]]:
    """The condition on ``org`` (and, with ``final``, on final buckets only: see ``report.finality``)."""
    sql = "AND org = %s" if org is not None else ""
    params: list[object] = [org] if org is not None else []
    if final is not None:
        more, more_params = final_only_sql(final)
        sql, params = f"{sql} {more}", [*params, *more_params]
    return sql, params


def _project_subject(project_id: str, names: Names) -> str:
    """``project Search (proj_abc)`` where the project has a name, else ``project proj_abc``."""
    return f"project {with_id(names.project(project_id), project_id)}"


def _budget_alerts(
    db: Database,
    cfg: AlertConfig,
    day: date,
    org: str | None,
    currency: str | None,
    names: Names,
    final: FinalEdges | None,
) -> tuple[list[str], list[Alert]]:
    month_start = day.replace(day=1)
    org_sql, org_params = _where_org(org, final)
    rows = db.query(
        "SELECT project_id, SUM(CASE WHEN bucket_start >= %s THEN amount_value END), SUM(amount_value) "
        f"FROM {COSTS_VIEW} WHERE bucket_start >= %s AND bucket_start < %s {org_sql} GROUP BY project_id",
        [day_start(day), day_start(month_start), day_start(day + timedelta(days=1)), *org_params],
    )
    by_project = {r[0]: (column_decimal(r[1]), column_decimal(r[2])) for r in rows}
    targets: list[tuple[str, Budget, Decimal, Decimal]] = []
    if cfg.budget.daily is not None or cfg.budget.monthly is not None:
        today = sum((v[0] for v in by_project.values()), Decimal(0))
        month = sum((v[1] for v in by_project.values()), Decimal(0))
        targets.append(("organisation", cfg.budget, today, month))
    for project_id, budget in sorted(cfg.project_budgets.items()):
        today, month = by_project.get(project_id, (Decimal(0), Decimal(0)))
        targets.append((_project_subject(project_id, names), budget, today, month))
    checks, alerts = [], []
    for subject, budget, today, month in targets:
        for label, spend, limit, span in (
            ("daily", today, budget.daily, f"on {day}"),
            ("monthly", month, budget.monthly, f"from {month_start} to {day}"),
        ):
            if limit is None:
                continue
            text = (
                f"{subject}: {label} spend {span} is {format_money(spend, currency)} "
                f"against a budget of {format_money(limit, currency)}"
            )
            checks.append(f"budget {text}")
            if budget_exceeded(spend, limit):
                over = format_money(spend - limit, currency)
                alerts.append(Alert("budget", subject, f"{label} budget exceeded by {over}: {text}"))
    return checks, alerts


def _anomaly(
    db: Database, rule: AnomalyRule, day: date, org: str | None, project: str | None, final: FinalEdges | None
) -> AnomalyResult | None:
    org_sql, params = _where_org(org, final)
    if project is not None:
        org_sql += " AND project_id = %s"
        params.append(project)
    first = day - timedelta(days=rule.window_days)
    rows = db.query(
        f"SELECT {DAY} AS day, SUM(amount_value) FROM {COSTS_VIEW} WHERE bucket_start >= %s AND bucket_start < %s "
        f"{org_sql} GROUP BY day ORDER BY day",
        [day_start(first), day_start(day + timedelta(days=1)), *params],
    )
    spend = {utc_day(r[0]): column_decimal(r[1]) for r in rows}
    earliest = db.query(
        f"SELECT MIN(bucket_start) FROM {COSTS_VIEW} WHERE bucket_start < %s {org_sql}",
        [day_start(day), *params],
    )[0][0]
    if earliest is None:
        return None
    start = max(first, earliest.astimezone(UTC).date())
    baseline = [spend.get(start + timedelta(days=i), Decimal(0)) for i in range((day - start).days)]
    return assess_day(day, spend.get(day, Decimal(0)), baseline, rule)


def _tables() -> list[str]:
    return [spec.name for spec in tables()]


def _data_reaches(db: Database, org: str | None) -> datetime | None:
    """How far the synced data reaches: a bucket covers up to its end, or up to when it was synced if it was still
    open then (``LEAST(bucket_end, synced_at)``); the newest over every table."""
    org_sql, org_params = _where_org(org)
    where = f"WHERE TRUE {org_sql}"
    reach = "LEAST(bucket_end, COALESCE(synced_at, bucket_end))"
    union = " UNION ALL ".join(f"SELECT MAX({reach}) AS m FROM {t} {where}" for t in _tables())
    value = db.query(f"SELECT MAX(m) FROM ({union}) x", org_params * len(_tables()))[0][0]
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"expected a TIMESTAMPTZ, got {type(value).__name__}")
    return value.astimezone(UTC)


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def run_checks(
    db: Database,
    cfg: AlertConfig,
    *,
    now: datetime,
    org: str | None = None,
    project: str | None = None,
    budget_day: date | None = None,
    anomaly_day: date | None = None,
    stale_keys: timedelta | None = None,
    names: Names | None = None,
    final: FinalEdges | None = None,
    forecast_over: Decimal | None = None,
    credit_below: Decimal | None = None,
    restated_over: Decimal | None = None,
    adjustments: Sequence[Adjustment] = (),
) -> CheckResult:
    """Run every configured check. ``project`` narrows the anomaly check; budgets name their own scope;
    ``stale_keys`` adds the stale key check. Projects are named from ``names`` (see
    :func:`usageledger.report.names.resolve_names`).

    ``final`` (``{org: boundary}``, see :func:`usageledger.report.finality.final_costs_until`): budgets and the anomaly
    check read final buckets only; the staleness check still judges everything synced.

    ``restated_over``: one ``restated`` alert per closed-month figure of ``adjustments`` (see
    :func:`usageledger.report.history.adjustments`) that moved by more than that amount since its month was closed.
    """
    if not isinstance(cfg, AlertConfig):  # a dict failed deep inside: "'dict' object has no attribute 'budget'"
        raise ParameterError(
            "cfg", f"expected an AlertConfig, got {type(cfg).__name__}; make one with parse_alert_config({{...}})"
        )
    check_orgs(db, org, param="org")  # an org the store does not hold answered "no alerts", a false all-clear
    names = names or Names()
    now = utc_moment(now)  # a naive one is UTC, not the machine's zone
    today = now.date()
    # Each read by the package's one reader of its kind, as the CLI's flags are: a day given as "2026-12-01", a
    # span as "90d" (`--stale-keys`'s form) and an amount as 5.0 or "5" each failed deep inside.
    bday = today if budget_day is None else whole_day(budget_day, "budget_day")
    aday = today - timedelta(days=1) if anomaly_day is None else whole_day(anomaly_day, "anomaly_day")
    if stale_keys is not None and not isinstance(stale_keys, timedelta):
        stale_keys = timedelta(seconds=parse_duration(stale_keys, param="stale_keys"))
    forecast_over = None if forecast_over is None else parse_amount(forecast_over, param="forecast_over")
    credit_below = None if credit_below is None else parse_amount(credit_below, param="credit_below")
    restated_over = None if restated_over is None else parse_amount(restated_over, param="restated_over")
    currency = main_currency(db, org)
    checks, alerts = _budget_alerts(db, cfg, bday, org, currency, names, final)
    budgeted = cfg.budget != Budget() or bool(cfg.project_budgets)
    unjudged = _unjudged(
        db, org, bday, today, budgets=budgeted, forecast=forecast_over is not None, credit=credit_below is not None
    )
    alerts.extend(alert for _, alert in unjudged)
    if any("budgets" in whats for whats, _ in unjudged):  # "$0.00 against a budget of $5.00" read as judged
        checks = [
            f"{c}, but its costs are missing (see the unchecked alert)" if c.startswith("budget ") else c
            for c in checks
        ]

    anomaly = _anomaly(db, cfg.anomaly, aday, org, project, final)
    subject = "organisation" if project is None else _project_subject(project, names)
    if anomaly is None:
        checks.append(
            f"anomaly {subject}: not enough history before {aday} to judge"
            f" (needs {counted(cfg.anomaly.min_baseline_days, 'day')})"
        )
    else:
        checks.append(f"anomaly {subject}: {anomaly.describe(currency)}")
        if anomaly.anomalous:
            alerts.append(Alert("anomaly", subject, f"{subject}: spend anomaly on {anomaly.describe(currency)}"))

    if final is not None:
        edges = ", ".join(f"{o} before {edge:%Y-%m-%d}" for o, edge in sorted(final.items())) or "none yet"
        checks.append(f"final only: budgets and anomalies read final buckets only ({edges})")

    newest = _data_reaches(db, org)
    limit = cfg.stale_after
    if newest is None:
        checks.append("staleness: the store holds no synced bucket")
        alerts.append(Alert("stale", "store", "stale store: no synced bucket at all; run usageledger sync"))
    else:
        age = max(now - newest, timedelta(0))
        text = f"the synced data reaches {newest:%Y-%m-%dT%H:%M:%SZ}, {_hours(age)} ago (limit {_hours(limit)})"
        checks.append(f"staleness: {text}")
        if age > limit:
            alerts.append(Alert("stale", "store", f"stale store: {text}; run usageledger sync"))
    if forecast_over is not None and any("forecast" in whats for whats, _ in unjudged):
        checks.append("forecast: not made, the costs it reads are missing (see the unchecked alert)")
    elif forecast_over is not None:
        more_checks, more_alerts = _forecast_alerts(db, forecast_over, now, org, project, currency, names)
        checks.extend(more_checks)
        alerts.extend(more_alerts)
    if credit_below is not None:
        more_checks, more_alerts = _credit_alerts(db, credit_below, now, org, currency)
        checks.extend(more_checks)
        alerts.extend(more_alerts)
    if restated_over is not None:
        moved = [a for a in adjustments if abs(a.amount) > restated_over]
        checks.append(
            f"restated: {counted(len(adjustments), 'closed-month figure')} moved since closing,"
            f" {len(moved)} by more than"
            f" {format_money(restated_over, currency)}"
        )
        for a in moved:
            whose = "total" if a.project_id is None else _project_subject(a.project_id, names)
            cur = a.currency or currency
            closed, current, amount = a.in_cents()
            alerts.append(
                Alert(
                    "restated",
                    f"closed {a.month:%Y-%m} {a.org} {whose}",
                    f"closed month {a.month:%Y-%m} restated: {a.org} {whose} closed at"
                    f" {format_money(closed, cur)}, now {format_money(current, cur)}"
                    f" ({format_signed_money(amount, cur)}{_over_note(a.amount, amount, restated_over, cur)}"
                    f"{a.apportioned_note()})",
                )
            )
    if stale_keys is not None:
        key_checks, key_alerts = _stale_key_alerts(db, stale_keys, now, org)
        checks.extend(key_checks)
        alerts.extend(key_alerts)
    return CheckResult(
        checked_at=now,
        budget_day=bday,
        anomaly_day=aday,
        currency=currency,
        anomaly=anomaly,
        data_reaches=newest,
        checks=tuple(checks),
        alerts=tuple(alerts),
    )


def _over_note(exact: Decimal, shown: Decimal, limit: Decimal, currency: str | None) -> str:
    """``", +$1.004 unrounded"`` when the change printed in cents (``shown``) does not read as beyond ``limit`` while
    the exact change (``exact``), which decided the alert, is: "+$1.00" under `--restated-over 1` read as not over.
    The exact change cut (never rounded up) to the fewest places, three or more, that show it beyond; else ``""``."""
    if abs(shown) > limit:
        return ""
    own = -int(exact.as_tuple().exponent)  # at its own places the change is itself, beyond the limit
    places = next((p for p in range(3, own) if abs(_cut(exact, p)) > limit), max(own, 3))
    text = format_money(_cut(exact, places), currency, places=places)
    return f", {text if text.startswith('-') else '+' + text} unrounded"


def _cut(amount: Decimal, places: int) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)


def _unjudged(
    db: Database, org: str | None, budget_day: date, today: date, *, budgets: bool, forecast: bool, credit: bool
) -> list[tuple[list[str], Alert]]:
    """One ``unchecked`` alert per gap of the costs (:func:`costs_not_synced`) that leaves a check asked for without
    the figures it judges: the budgets read the month through ``budget_day``, the forecast and the credit this
    month through ``today``; each with the checks it leaves unjudged. ``check --daily-budget 5`` over a store of
    hourly usage alone said "OK: no alerts" against $0.00 of costs never synced."""
    asked = {
        "budgets": budgets and Period(budget_day.replace(day=1), budget_day + timedelta(days=1)),
        "forecast": forecast and Period(today.replace(day=1), today + timedelta(days=1)),
        "credit": credit and Period(today.replace(day=1), today + timedelta(days=1)),
    }
    blocked: dict[str, list[str]] = {}  # each gap, told once, with the checks it leaves unjudged
    for what, period in asked.items():
        if isinstance(period, Period):
            for gap in costs_not_synced(db, org, period):
                blocked.setdefault(gap, []).append(what)
    return [
        (whats, Alert("unchecked", " and ".join(whats), f"{' and '.join(whats)} not judged: {gap}"))
        for gap, whats in blocked.items()
    ]


def _forecast_alerts(
    db: Database,
    limit: Decimal,
    now: datetime,
    org: str | None,
    project: str | None,
    currency: str | None,
    names: Names,
) -> tuple[list[str], list[Alert]]:
    """This month's forecast against ``limit``: fires when the month-end figure is above it."""
    month = utc_moment(now).date().replace(day=1)
    try:
        report = build_forecast(db, month, now=now, org=org, project=project, budget=limit)
    except UsageLedgerError as exc:
        raise UsageLedgerError(f"--forecast-over: cannot forecast {month:%Y-%m}: {exc}") from None
    fc = report.total
    subject = "organisation" if project is None else _project_subject(project, names)
    text = (
        f"{subject}: {fc.label} is forecast to end at {format_money(fc.month_end, currency)} "
        f"(range {format_money(fc.low, currency)} to {format_money(fc.high, currency)}; "
        f"{to_date_words(fc, currency)}) against {format_money(limit, currency)}"
    )
    if report.runway is None:
        return [f"forecast {text}; not crossed this month"], []
    # "already crossed on 2026-11-01 at this rate" spoke of a day gone by as a rate's: the forecast's own words
    when = runway_words(fc, report.runway)
    check = f"forecast {text}; {when}"
    if not budget_exceeded(fc.month_end, limit):
        return [check], []
    over = format_money(fc.month_end - limit, currency)
    return [check], [Alert("forecast", subject, f"forecast over budget by {over}: {text}; {when}")]


def _credit_alerts(
    db: Database, limit: Decimal, now: datetime, org: str | None, currency: str | None
) -> tuple[list[str], list[Alert]]:
    """The prepaid credit balance against ``limit``: fires when it is below it."""
    balance = credit_balance(db, now=now, org=org)
    where = "" if org is None else f" for org {org}"
    if balance is None:
        raise UsageLedgerError(
            f"--credit-below: no credit top-up is recorded{where}; record one with `usageledger credit add DAY AMOUNT`"
        )
    runs_out = balance.outlook
    text = (
        f"prepaid credit{where}: balance {format_money(balance.balance, currency)} "
        f"({format_money(balance.topups, currency)} topped up, {format_money(balance.spent, currency)} spent since "
        f"{balance.first_day}) against {format_money(limit, currency)}; {runs_out}"
    )
    if balance.balance < limit:
        return [f"credit {text}"], [Alert("credit", "credit", f"credit below {format_money(limit, currency)}: {text}")]
    return [f"credit {text}"], []


def _stale_key_alerts(db: Database, limit: timedelta, now: datetime, org: str | None) -> tuple[list[str], list[Alert]]:
    """One alert per key flagged by the ``keys`` rules with ``limit`` for both spans."""
    # The one step that counts back from now: a limit reaching before 1970 is a one-line error, not an OverflowError.
    start = datetime.fromtimestamp(back_from(now.timestamp(), limit, param="stale_keys"), UTC)
    data = build_keys(db, start=start, end=now, now=now, org=org, rules=KeyRules(limit, limit))
    live = sum(1 for k in data.keys if k.status == "active")
    checks = [
        f"stale keys: {counted(live, 'existing API key')} checked against {_hours(limit)}, {len(data.flagged)} flagged"
    ]
    alerts = [
        Alert(
            "stale_key",
            f"key {k.id}",
            f"stale {k.kind} key {k.label} [{k.id}] of {k.org}: {'; '.join(f.message for f in k.flags)}",
        )
        for k in data.flagged
    ]
    return checks, alerts


# -- webhook ------------------------------------------------------------------------------------------------------

_SLACK_TEXT_MAX: Final = 3000
_SLACK_BLOCKS_MAX: Final = 50


def slack_payload(result: CheckResult, *, org: str | None = None) -> dict[str, Any]:
    """A message Slack's incoming webhooks accept: ``text`` (the notification fallback) and ``blocks``."""
    where = f" for org {org}" if org else ""
    n = len(result.alerts)
    headline = f"usageledger check{where}: {n} alert{'s' if n != 1 else ''}"
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": headline[:150]}}]
    for alert in result.alerts[: _SLACK_BLOCKS_MAX - 2]:
        text = f"*{_slack_escaped(alert.kind)}* · {_slack_escaped(alert.subject)}\n{_slack_escaped(alert.message)}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_cut(text)}})
    footer = f"checked at {result.checked_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    summary = "; ".join(a.message for a in result.alerts)
    return {"text": _slack_cut(_slack_escaped(f"{headline}: {summary}")), "blocks": blocks}


def _slack_escaped(text: str) -> str:
    """``text`` as Slack shows it literally: ``&``, ``<`` and ``>`` as entities (Slack's rule for mrkdwn and the
    fallback text). A project or key named ``<!channel>`` (names come from the directory, which any project owner
    edits) paged the whole channel when its alert fired, and ``<https://x|Search>`` was a link under a project's
    name."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_cut(text: str) -> str:
    """``text`` within Slack's limit, never ending in a part of an entity (``&am``)."""
    if len(text) <= _SLACK_TEXT_MAX:
        return text
    cut = text[:_SLACK_TEXT_MAX]
    tail = cut.rfind("&")
    return cut[:tail] if tail != -1 and ";" not in cut[tail:] else cut


def post_webhook(
    url: str, payload: Mapping[str, Any], *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
) -> int:
    """POST the payload as JSON; returns the status code, raises :class:`AlertDeliveryError` unless 2xx.

    The URL is a secret (a Slack webhook's path is its credential): errors show its scheme and host only. A URL
    that cannot be sent to (no http(s) scheme, a host name that does not encode) is a :class:`ParameterError`
    naming ``url``, raised before any request.
    """
    url = check_webhook_url(url, param="url")  # a URL httpx cannot send to raises here, never with its path
    shown = redact_url(url)
    # Through the transport, not an httpx.Client: the client logs every request's whole URL at INFO ("HTTP Request:
    # POST https://hooks.slack.com/services/..."), which any program with logging at INFO would write down.
    request = httpx.Request("POST", url, json=dict(payload), extensions={"timeout": httpx.Timeout(timeout).as_dict()})
    try:
        with transport or httpx.HTTPTransport(verify=verify_for(transport)) as sender:
            response = sender.handle_request(request)
            # The status is the answer; of an error's body, its start, read for `timeout` at most. The whole body
            # was read before: a host that trickled it (a byte every few seconds: each read within the timeout) held
            # `check` in cron for as long as it liked.
            said = "" if response.is_success else _body_start(response, time.monotonic() + timeout)
            response.close()
    except httpx.HTTPError as exc:
        # `from None`: httpx's exception holds the whole URL, and a chained cause would carry it into tracebacks.
        detail = redact_webhook(str(exc) or type(exc).__name__, url)
        raise AlertDeliveryError(f"webhook {shown}: no response ({detail}); check the URL and the network") from None
    if response.is_redirect and response.headers.get("Location", "").strip():
        raise AlertDeliveryError(_redirect_refusal(shown, url, response))
    if not response.is_success:
        body = redact_webhook(" ".join(said.split()), url)[:200]
        answer = f": {body}" if body else " with no body"
        raise AlertDeliveryError(f"webhook {shown}: HTTP {response.status_code}{answer}; check the webhook URL")
    return response.status_code


_BODY_READ_MAX: Final = 4096
"""Bytes of an error answer's body read: its first 200 characters are shown."""


def _body_start(response: httpx.Response, deadline: float) -> str:
    """The start of ``response``'s body as text: up to :data:`_BODY_READ_MAX` bytes, what came by ``deadline``
    (:func:`time.monotonic`), or what came before the connection failed."""
    raw = b""
    try:
        for chunk in response.iter_bytes():
            raw += chunk
            if len(raw) >= _BODY_READ_MAX or time.monotonic() > deadline:
                break
    except httpx.HTTPError:
        pass  # a body cut short or too slow: what came is what the user sees
    return raw[:_BODY_READ_MAX].decode(response.charset_encoding or "utf-8", errors="replace")


def _redirect_refusal(shown: str, url: str, response: httpx.Response) -> str:
    """Why a webhook that answered with a redirect got no alert, and the fix: said as "HTTP 301 with no body; check
    the webhook URL", which left the user to guess that the URL had moved (an ``http://`` URL a host sends on to
    ``https://``, a retired webhook sent to a new one). The redirect is not followed: the alert would go, with its
    POST, to a place never given. The target is shown by scheme and host only, as the webhook is: its path may be the
    new credential."""
    status = response.status_code
    try:
        target = urlsplit(urljoin(url, response.headers["Location"].strip()))
        here = urlsplit(url)
        same_host = (target.hostname, target.port) == (here.hostname, here.port)
        moved_to = redact_url(urlunsplit(target))
    except ValueError:
        return f"webhook {shown}: HTTP {status} redirects elsewhere, which is not followed; check the webhook URL"
    if same_host and target.scheme.lower() == "https" and here.scheme.lower() == "http":
        fix = "give the https:// form of the webhook URL"
    else:
        fix = "give the webhook URL it redirects to (the service shows the current one)"
    return (
        f"webhook {shown}: HTTP {status} redirects to {moved_to}, and a webhook's POST is not sent on to another URL;"
        f" {fix}"
    )
