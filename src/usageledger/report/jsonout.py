"""``--format json`` for ``report``, ``status``, ``check``, ``reconcile`` and ``keys``: one document each, stable keys.

One serializer (:func:`dumps`) for every document: money, token quantities and ratios are ``Decimal`` and become
decimal strings by one rule (:func:`json_decimal`): exact, trailing zeros trimmed (the store's
``"2213.252622658460000000"`` is ``"2213.25262265846"``, zero is ``"0"``), never a float, never an exponent; a figure
the program rounded to the cent for display (a statement's ``total``, a forecast's ``month_end``) is marked by its
builder with :func:`cents` and keeps its two places (``"2170.90"``). Datetimes are ISO 8601 UTC with a ``Z``, as
``export`` writes them; dates are ``YYYY-MM-DD``. The document layouts are documented in the README.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, cast

from usageledger._amounts import Cents, trimmed
from usageledger._secrets import mask_keys, redact_url_password
from usageledger.catalogue import BucketWidth
from usageledger.report.alerts import CheckResult
from usageledger.report.history import Adjustment, Changes
from usageledger.report.keys import KeysReport
from usageledger.report.names import Names, shown_names
from usageledger.report.queries import ModelSpend, Mover, Period, ReportData, Scope, Spend
from usageledger.report.reconciliation import ReconcileResult
from usageledger.report.teams import TeamSpend
from usageledger.report.trend import summarise
from usageledger.store import StreamState, tables
from usageledger.store.directory import DirectorySummary
from usageledger.sync_options import SyncOptions
from usageledger.timeutil import iso, iso_moment

__all__ = [
    "adjustment_document",
    "changes_document",
    "check_document",
    "dumps",
    "json_decimal",
    "keys_document",
    "period_document",
    "reconcile_document",
    "report_document",
    "scope_document",
    "status_document",
    "teams_document",
]

Document = dict[str, Any]


def json_decimal(value: Decimal) -> str:
    """The one form of a decimal in every JSON document: exact, without trailing zeros (``"2213.25262265846"``,
    ``"0"``, ``"100"``, ``"0.000000000000000001"``), never an exponent; a figure marked by
    :func:`usageledger._amounts.cents` with its two places."""
    if isinstance(value, Cents):
        return format(value, "f")
    return format(trimmed(value), "f")


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return json_decimal(value)
    if isinstance(value, datetime):
        return iso_moment(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def decimal_string(value: Decimal) -> str:
    """A decimal as plain digits with the places it has (``0.5``, ``1234.50``, ``100``): never an exponent. For the
    statement's CSV (its amounts in cents, its rates as given); JSON documents and the HTML page's data attributes use
    :func:`json_decimal`."""
    return f"{value:f}"


def dumps(document: Document, *, ascii_only: bool = False) -> str:
    """The one JSON serializer of the command line's documents (keys in the order they were built); ``ascii_only``
    writes every character past ASCII as its escape, for an output that cannot encode it."""
    return json.dumps(document, default=_default, indent=2, ensure_ascii=ascii_only)


def period_document(period: Period) -> Document:
    """A period as the documents carry it (the command line's and the MCP tools'): its times, first and last day."""
    return {
        "start": period.start,
        "end": period.end,
        "first_day": period.since,
        "last_day": period.until - timedelta(days=1),
        "days": period.days,
    }


def _share(part: Decimal, total: Decimal) -> Decimal | None:
    return None if total == 0 else part / total


def _spends(spends: Sequence[Spend], key: str, total: Decimal, name: Any = None) -> list[Document]:
    rows: list[Document] = []
    for s in spends:
        row: Document = {key: s.key}
        if name is not None:
            row["name"] = name(s.key)
        row.update(spend=s.amount, share=_share(s.amount, total))
        rows.append(row)
    return rows


def _model_spend(m: ModelSpend, total: Decimal) -> Document:
    return {
        "model": m.model,
        "spend": m.amount,
        "share": _share(m.amount, total),
        "token_spend": m.token_spend,
        "billed_tokens": m.tokens,
        "per_million_tokens": m.per_million_tokens,
    }


def _movers(movers: Sequence[Mover], key: str, name: Any = None) -> list[Document]:
    rows: list[Document] = []
    for m in movers:
        row: Document = {key: m.key}
        if name is not None:
            row["name"] = name(m.key)
        row.update(current=m.current, previous=m.previous, change=m.change, change_ratio=m.change_ratio)
        rows.append(row)
    return rows


def teams_document(data: ReportData, teams: Sequence[TeamSpend], names: Names) -> Document:
    """``report --by team --format json``: each team's spend, share and projects; ``total`` is their exact sum.

    ``teams`` and ``totals.spend`` hold the same figures as ``spend_by_team`` and ``total`` under the names the
    other documents use (``totals.spend`` is the report's total; the teams add up to it exactly)."""
    total = data.total_spend
    by_team = [
        {
            "team": t.team,
            "spend": t.amount,
            "share": _share(t.amount, total),
            "projects": [{"project_id": p, "name": names.project(p)} for p in t.projects],
        }
        for t in teams
    ]
    return {
        "period": period_document(data.period),
        # every filter, as the whole report's document gives them: `--by team --team X` said no team (nor model)
        "scope": scope_document(data.scope),
        "currency": data.currency,
        "as_of": data.as_of,  # `--by team --as-of`: the figures the ledger held then, as the report's document says
        "warnings": list(data.warnings),
        "total": sum((t.amount for t in teams), Decimal(0)),
        "totals": {"spend": total},
        "spend_by_team": by_team,
        "teams": by_team,
    }


def scope_document(scope: Scope) -> Document:
    """A report's filters, every one (``None``: not filtered), as the report's and the teams' documents give them."""
    return {"org": scope.org, "project": scope.project, "team": scope.team, "model": scope.model}


def report_document(data: ReportData, names: Names | None = None) -> Document:
    """Every figure of the terminal report, and every line item (the terminal lists the biggest 20)."""
    names = names or Names()
    total = data.total_spend
    trend = summarise(data.daily_spend)
    return {
        "period": period_document(data.period),
        "scope": scope_document(data.scope),
        "currency": data.currency,
        "provisional_from": data.provisional_from,
        "as_of": data.as_of,
        "adjustments": [adjustment_document(a, names) for a in data.adjustments],
        "previous_partial_from": data.previous_partial_from,
        "unsynced_from": data.unsynced_from,
        "warnings": list(data.warnings),
        "totals": {
            "spend": total,
            # null, as the movers are empty, when either period is only partly in the store
            "previous_spend": data.previous_spend if data.compared else None,
            "tokens": data.total_tokens,
            "requests": data.total_requests,
        },
        "trend": {"grain": trend.grain, "points": [{"start": d, "spend": v} for d, v in trend.points]},
        "daily_spend": [{"day": d, "spend": v} for d, v in data.daily_spend],
        "spend_by_project": _spends(data.spend_by_project, "project_id", total, names.project),
        "spend_by_line_item": _spends(data.spend_by_line_item, "line_item", total),
        "spend_by_api_key": _spends(data.spend_by_api_key, "api_key_id", total, names.api_key),
        "spend_by_user": _spends(data.spend_by_user, "user_id", total, names.user),
        "spend_by_model": [_model_spend(m, total) for m in data.spend_by_model],
        "usage_by_model": [
            {
                "model": u.model,
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "tokens": u.tokens,
                "requests": u.requests,
            }
            for u in data.usage_by_model
        ],
        "movers_by_project": _movers(data.movers_by_project, "project_id", names.project),
        "movers_by_model": _movers(data.movers_by_model, "model"),
    }


def adjustment_document(adj: Adjustment, names: Names) -> Document:
    """A closed month's figure against the present: ``amount`` is present minus closed."""
    return {
        "month": f"{adj.month:%Y-%m}",
        "org": adj.org,
        "level": adj.level,
        "project_id": adj.project_id,
        "project_name": None if adj.project_id is None else names.project(adj.project_id),
        "closed": adj.closed,
        "current": adj.current,
        "amount": adj.amount,
        "currency": adj.currency,
        "closed_at": adj.closed_at,
    }


_COUNTS: Final = frozenset((t.name, c.name) for t in tables() for c in t.endpoint.metrics if c.type == "int")
"""The (table, metric) pairs that are whole counts: every usage metric (tokens, requests, bytes), never costs'."""


def _metric_value(table: str, metric: str, value: Decimal | None) -> Decimal | int | None:
    """A restated value as its metric is written everywhere: a usage count a JSON integer (``-13562``, not the
    revision log's ``"-13562.000000000000000000"``), costs' amounts and quantities decimal strings."""
    return int(value) if value is not None and (table, metric) in _COUNTS else value


def changes_document(changes: Changes, names: Names | None = None) -> Document:
    """Every restatement of the span (row and metric: old, new, delta) and every closed month's adjustment."""
    names = names or Names()
    label_names = shown_names(names)  # a label for people, as the terminal's: `group` gives the IDs beside it
    return {
        "since": None if changes.since is None else iso(changes.since),
        "until": None if changes.until is None else iso(changes.until),
        "spend_delta": changes.spend_delta,
        "restatements": [
            {
                "org": r.org,
                "stream": r.stream,
                "table": r.table,
                "bucket_start": r.bucket_start,
                "group": {k: v for k, v in r.group},
                "group_label": r.group_label(label_names),
                "metric": r.metric,
                "old": _metric_value(r.table, r.metric, r.old),
                "new": _metric_value(r.table, r.metric, r.new),
                "delta": _metric_value(r.table, r.metric, r.delta),
                "entries": r.entries,
                "last_seen": r.last_seen,
                "after_close": r.after_close,
            }
            for r in changes.restatements
        ],
        "adjustments": [adjustment_document(a, names) for a in changes.adjustments],
    }


def reconcile_document(result: ReconcileResult) -> Document:
    """Every day/model pair compared, whether it is beyond the tolerance, and the totals; every number in one
    format (:func:`json_decimal`'s: plain digits, no trailing zeros)."""
    return {
        "period": period_document(result.period),
        "scope": {"org": result.scope.org, "project": result.scope.project},
        "tolerance": result.tolerance,
        "usage_tokens": result.usage_total,
        "costs_tokens": result.costs_total,
        "differences": len(result.differences),
        "rows": [
            {
                "org": r.org,
                "day": r.day,
                "model": r.model,
                "usage_tokens": r.usage_tokens,
                "costs_tokens": r.costs_tokens,
                "difference": r.difference,
                "relative": r.relative,
                "beyond_tolerance": r.beyond(result.tolerance),
            }
            for r in result.rows
        ],
    }


def check_document(result: CheckResult) -> Document:
    """The alerts (``fired`` says whether any did), what each check compared, and the anomaly judgement."""
    anomaly = result.anomaly
    return {
        "fired": bool(result.alerts),
        "alerts": [{"kind": a.kind, "subject": a.subject, "message": a.message} for a in result.alerts],
        "checked_at": result.checked_at,
        "budget_day": result.budget_day,
        "anomaly_day": result.anomaly_day,
        "currency": result.currency,
        "data_reaches": result.data_reaches,
        "checks": list(result.checks),
        "anomaly": None
        if anomaly is None
        else {
            "day": anomaly.day,
            "spend": anomaly.spend,
            "median": anomaly.median,
            "mad": anomaly.mad,
            "baseline_days": anomaly.baseline_days,
            "z": anomaly.z,
            "anomalous": anomaly.anomalous,
        },
    }


def status_document(
    url: str,
    states: Sequence[StreamState],
    options: SyncOptions | None = None,
    directory: Sequence[DirectorySummary] = (),
) -> Document:
    """Each stream with its state (the last run's status), its cursor (watermark), where it is final, its last run;
    each org's directory (items by kind and status, its last change, and its last refresh: when it began, its run,
    its status and error; ``null`` when none is recorded).

    ``final_until``: buckets starting before it are final (see ``SyncOptions.final_until``); ``null`` when nothing is.
    """
    graces = options or SyncOptions()

    def final(s: StreamState) -> str | None:
        edge = graces.final_until(cast(BucketWidth, s.bucket_width), s.watermark)
        return None if edge is None else iso(edge)

    return {
        "store": redact_url_password(url),
        "streams": [
            {
                "org": s.org,
                "stream": s.stream,
                "endpoint": s.endpoint,
                "bucket_width": s.bucket_width,
                "group_by": list(s.group_by),
                "default": s.is_default,
                "state": s.last_status,
                "watermark": None if s.watermark is None else iso(s.watermark),
                "final_until": final(s),
                "last_run": {
                    "id": s.last_run_id,
                    "at": None if s.last_run_at is None else iso(s.last_run_at),
                    "error": None if s.last_error is None else mask_keys(s.last_error),
                    "inserted": s.last_counts.inserted,
                    "updated": s.last_counts.updated,
                    "unchanged": s.last_counts.unchanged,
                    "deleted": s.last_counts.deleted,
                },
                "rows": s.row_count,
            }
            for s in states
        ],
        "directory": [
            {
                "org": d.org,
                **{label: dict(by_status) for label, by_status in d.counts.items()},
                "last_change": None if d.last_change is None else iso(d.last_change),
                "last_refresh": None
                if d.last_refresh is None
                else {
                    "started_at": iso(d.last_refresh.started_at),
                    "run_id": d.last_refresh.run_id,
                    "status": d.last_refresh.status,
                    "error": None if d.last_refresh.error is None else mask_keys(d.last_refresh.error),
                },
            }
            for d in directory
        ],
    }


def keys_document(data: KeysReport) -> Document:
    """Every key with its owner, project, dates, spend, requests and flags; the period, the rules, the sources."""
    rules = data.rules
    return {
        "period": {"start": data.start, "end": data.end},
        "project": data.project,  # the ID --project named (the keys and the figures through no key are its), or null
        "rules": {
            "unused_after_seconds": None if rules.unused_after is None else int(rules.unused_after.total_seconds()),
            "admin_max_age_seconds": None if rules.admin_max_age is None else int(rules.admin_max_age.total_seconds()),
        },
        "currency": data.currency,
        "spend_streams": list(data.spend_streams),
        "request_streams": list(data.request_streams),
        "no_key_spend": data.no_key_spend,
        "no_key_requests": data.no_key_requests,
        "keys": [
            {
                "org": k.org,
                "id": k.id,
                "type": k.kind,
                "name": k.name,
                "status": k.status,
                "owner": None
                if k.owner is None
                else {
                    "type": k.owner.type,
                    "id": k.owner.id,
                    "name": k.owner.name,
                    "email": k.owner.email,
                    "removed": k.owner.removed,
                },
                "project": None
                if k.project_id is None
                else {"id": k.project_id, "name": k.project_name, "status": k.project_status},
                "created": k.created,
                "last_used": k.last_used,
                "spend": k.spend,
                "requests": k.requests,
                "flags": [{"flag": f.code, "message": f.message} for f in k.flags],
            }
            for k in data.keys
        ],
    }
