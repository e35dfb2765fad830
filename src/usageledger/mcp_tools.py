"""The MCP server's tools as plain functions over the store: each returns a JSON-able dict.

Every answer comes from the store (never the API) and states its period: ``period`` holds the first and last UTC
day and the bounds as ISO timestamps. Money, token quantities and ratios are exact decimal strings (``"12.500000"``),
as ``report --format json`` writes them; the spend figures are the report's own (:func:`build_report`), so a tool's
total equals ``usageledger report --format json`` for the same period and filters.

Periods follow the report's rule (:func:`usageledger.report.period.report_period`): ``since`` is a date, a datetime
or a number of days ending today (``7d``), ``until`` is exclusive; the default is the 30 days ending today.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final, Literal, get_args

from usageledger._text import counted
from usageledger.config import Config
from usageledger.errors import ParameterError
from usageledger.report.alerts import parse_alert_config, run_checks
from usageledger.report.assemble import (
    alert_projects,
    closed_adjustments,
    known_project,
    project_named,
    unknown_team_projects,
)
from usageledger.report.finality import final_costs_until, provisional_from
from usageledger.report.jsonout import (
    adjustment_document,
    check_document,
    dumps,
    period_document,
    report_document,
)
from usageledger.report.names import DIRECTORY_KINDS, Names, directory_label, names_from_mapping, resolve_names
from usageledger.report.period import report_day, report_period
from usageledger.report.queries import (
    COSTS_VIEW,
    DAY,
    LINE_ITEM_MODEL,
    Period,
    Scope,
    Spend,
    build_report,
    line_item_model,
    model_matches,
    previous_partial_from,
    unknown_model,
    unsynced_from,
    utc_day,
)
from usageledger.report.teams import project_teams, spend_by_team
from usageledger.rows import iso_currency
from usageledger.store import BaseStore
from usageledger.sync._safety import data_warnings

__all__ = ["GROUP_BY", "MAX_DAYS", "MAX_ROWS", "MOVERS_BY", "LedgerTools", "SpendGroup"]

Document = dict[str, Any]
SpendGroup = Literal["project", "team", "model", "line_item", "api_key", "user", "day"]
GROUP_BY: Final[tuple[str, ...]] = get_args(SpendGroup)
MoversBy = Literal["project", "model"]
MOVERS_BY: Final[tuple[str, ...]] = get_args(MoversBy)
ChangeKind = Literal["restatements", "all"]
_SPEND_ROWS: Final[dict[str, str]] = {
    "project": "spend_by_project",
    "team": "spend_by_project",
    "model": "spend_by_model",
    "line_item": "spend_by_line_item",
    "api_key": "spend_by_api_key",
    "user": "spend_by_user",
    "day": "daily_spend",
}
_GROUP_COLUMNS: Final[dict[str, str]] = {
    "project": "project_id",
    "model": LINE_ITEM_MODEL,
    "line_item": "line_item",
    "api_key": "api_key_id",
    "user": "user_id",
    "day": DAY,
}
_ROW_KEYS: Final[dict[str, str]] = {
    "project": "project_id",
    "model": "model",
    "line_item": "line_item",
    "api_key": "api_key_id",
    "user": "user_id",
}
_LOOKUP_KINDS: Final = tuple(k for ks in DIRECTORY_KINDS.values() for k in ks)
MAX_CHANGES: Final = 500
MAX_ROWS: Final = 100
"""At most this many rows in a breakdown (the biggest; ``truncated`` and ``rows_total`` say what was left out), as
``lookup`` gives at most 100 matches: an organisation with thousands of keys or users, or a long period by line
item, would otherwise fill the assistant's context with one answer."""
MAX_DAYS: Final = 366
"""At most this many days in a spend by ``day``: a row a day, so ``since="1971-01-01"`` was 20,000 rows (1.2 MB)."""


def _uncovered(period: Period, first: date | None) -> tuple[str, ...]:
    """The warning for a period the store's costs start after the first day of (``first``: the report's
    ``previous_partial_from``): its total counts days never synced as $0. The terminal says so in its comparison
    line; an assistant read ``"total": "0"`` for December 1970 as no spend, with only ``previous_partial_from``
    (described as a day inside the previous period) to tell it otherwise."""
    if first is None or first <= period.since:
        return ()
    if first >= period.until:
        return (
            f"the store's costs start on {first}, after this period ends: it holds none of the period's days, so "
            "its total is not known (not zero); sync further back, or ask about a later period",
        )
    missing = counted((first - period.since).days, "day")
    return (
        f"the store's costs start on {first}, inside this period: its first {missing} are not in the store and "
        "count as 0 in the total; sync further back to have them",
    )


def _plain(document: Document) -> Document:
    """The document as JSON would carry it: decimals as exact strings, dates and times as ISO text."""
    out: Document = json.loads(dumps(document))
    return out


def _kept(report: Document, *keys: str) -> Document:
    """The report document's ``keys`` as it has them, in that order: what a tool's answer passes on unchanged."""
    return {key: report[key] for key in keys}


def _choice(value: str, allowed: tuple[str, ...], param: str) -> str:
    if value not in allowed:
        raise ParameterError(param, f"{value!r} is not one of {', '.join(allowed)}")
    return value


@dataclass
class LedgerTools:
    """The tools over one store: ``open_store`` opens it for reading (per call, so a running sync is no obstacle);
    ``config`` gives names overrides, alert thresholds and the finality settings; ``max_rows`` bounds every list an
    answer carries (:data:`MAX_ROWS`)."""

    open_store: Callable[[], AbstractContextManager[BaseStore]]
    config: Config
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    max_rows: int = MAX_ROWS

    @contextmanager
    def _reading(self, org: str | None) -> Iterator[BaseStore]:
        """The store, open for one tool call; an ``org`` it holds no data for is refused (``BaseStore.check_orgs``,
        the command line's ``--org`` check), never answered as an org with no spend."""
        with self.open_store() as store:
            store.check_orgs(org, param="org")
            yield store

    def _period(self, since: str | None, until: str | None) -> Period:
        return report_period(since, until, now=self.clock(), since_param="since", until_param="until")

    def _overrides(self) -> Names:
        return names_from_mapping(self.config.names)

    def _project_id(self, store: BaseStore, project: str | None, org: str | None) -> str | None:
        """A project filter given as an ID or a name: the ID (a name must name exactly one project, by the rule of
        ``--project``, :func:`project_named`; an ID one the store knows, or the answer would be a mistyped
        project's $0)."""
        if project is None:
            return None
        names = resolve_names(store, org=org, overrides=self._overrides(), distinct=False)
        found = project_named(store, project, org=org, names=names, param="project")
        if found is not None:
            return found
        if not known_project(store, project, org=org, names=names):
            where = "" if org is None else f" of org {org}"
            if project.startswith("proj_"):
                raise ParameterError(
                    "project", f"{project} is no project{where} in this store; use the lookup tool to find its ID"
                )
            raise ParameterError(
                "project", f"no project{where} is named {project!r}; use the lookup tool to find its ID"
            )
        return project

    def _report(self, since: str | None, until: str | None, org: str | None, project: str | None) -> Document:
        period = self._period(since, until)
        with self._reading(org) as store:
            pid = self._project_id(store, project, org)
            scope = Scope(org=org, project=pid)
            data = build_report(store, period, scope)
            # as `report --format json` has them: as they are, the ID beside each (never escaped, nor given IDs)
            names = resolve_names(store, org=org, overrides=self._overrides(), distinct=False)
            final = final_costs_until(store, self.config.sync.to_options())
            warnings = data_warnings(store, org, period=period)  # as `report` says them
            moved, _ = closed_adjustments(store, period, scope)  # as `report` and the dashboard (no model filter)
        warnings = (*warnings, *_uncovered(period, data.previous_partial_from))
        data = replace(data, provisional_from=provisional_from(final, org), warnings=warnings, adjustments=moved)
        return _plain(report_document(data, names))

    def spend(
        self,
        since: str | None = None,
        until: str | None = None,
        group_by: str = "project",
        org: str | None = None,
        project: str | None = None,
        model: str | None = None,
    ) -> Document:
        """Spend over the period, grouped, with the total, the previous period's total and the currency. ``model``
        keeps the line items of one model (``gpt-4.1`` also matches its dated snapshots, ``gpt-4.1-2025-04-14``)."""
        _choice(group_by, GROUP_BY, "group_by")
        if group_by == "day" and (days := self._period(since, until).days) > MAX_DAYS:
            raise ParameterError(
                "group_by",
                f"day gives a row a day, at most {MAX_DAYS}, and the period has {days}; pass a later since or an "
                "earlier until, or another group_by",
            )
        doc = self._spend(since, until, group_by, org, project, model)
        rows = doc["rows"]
        cap = MAX_DAYS if group_by == "day" else self.max_rows  # every day of the period, or the biggest rows
        return {**doc, "truncated": len(rows) > cap, "rows_total": len(rows), "rows": rows[:cap]}

    def _spend(
        self,
        since: str | None,
        until: str | None,
        group_by: str,
        org: str | None,
        project: str | None,
        model: str | None,
    ) -> Document:
        """:meth:`spend`, every row."""
        key = _SPEND_ROWS[group_by]
        if group_by == "team":
            return self._team_spend(self._spend(since, until, "project", org, project, model), org)
        if model is not None:
            return self._model_spend(since, until, group_by, org, project, model)
        doc = self._report(since, until, org, project)
        return {
            **_kept(doc, "period", "scope", "currency"),
            "group_by": group_by,
            "total": doc["totals"]["spend"],
            "previous_period_total": doc["totals"]["previous_spend"],
            **_kept(doc, "previous_partial_from", "unsynced_from", "provisional_from", "warnings", "adjustments"),
            "rows": doc[key],
        }

    def _team_spend(self, by_project: Document, org: str | None) -> Document:
        """Spend by project regrouped by team (``report --by team``: the config's ``[teams]``, else the directory's
        project groups; ``unassigned`` for the rest). A team's projects are capped as the rows are (:data:`MAX_ROWS`,
        the biggest, with ``projects_truncated`` and ``projects_total``): one team of an org with thousands of
        projects (``unassigned``, where no team is set) made one answer as long as them."""
        with self._reading(org) as store:
            teams = project_teams(store, org=org, config=self.config.teams)
            unknown = unknown_team_projects(store, self.config.teams)  # as `report --by team` warns of them
        rows = by_project["rows"]
        names = {row["project_id"]: row["name"] for row in rows}
        grouped = spend_by_team([Spend(row["project_id"], Decimal(row["spend"])) for row in rows], teams)
        total = Decimal(by_project["total"])
        team_rows = [
            {
                "team": t.team,
                "spend": t.amount,
                "share": None if total == 0 else t.amount / total,
                "projects": [{"project_id": p, "name": names[p]} for p in t.projects[: self.max_rows]],
                "projects_truncated": len(t.projects) > self.max_rows,
                "projects_total": len(t.projects),
            }
            for t in grouped
        ]
        warnings = [*by_project["warnings"], *unknown]
        return {**by_project, "group_by": "team", "warnings": warnings, "rows": _plain({"rows": team_rows})["rows"]}

    def _model_spend(
        self, since: str | None, until: str | None, group_by: str, org: str | None, project: str | None, model: str
    ) -> Document:
        """The spend of one model's line items: summed in SQL per group and line item, the line items then kept by
        their model (a handful per group), so the figures are the same sums the report makes."""
        wanted = model.strip()
        if not wanted:
            raise ParameterError("model", "give a model name, such as gpt-4.1")
        period = self._period(since, until)
        with self._reading(org) as store:
            refused = unknown_model(store, wanted, org, listed_by="spend with group_by model")
            if refused is not None:
                raise ParameterError("model", refused)
            pid = self._project_id(store, project, org)
            scope = Scope(org=org, project=pid)
            where, params = scope.where(period, start=period.previous().start)
            rows = store.query(
                f"SELECT {_GROUP_COLUMNS[group_by]}, line_item, currency, bucket_start >= %s, SUM(amount_value) "
                f"FROM {COSTS_VIEW} WHERE {where} AND line_item IS NOT NULL GROUP BY 1, 2, 3, 4",
                [period.start, *params],
            )
            names = resolve_names(store, org=org, overrides=self._overrides(), distinct=False)  # as in `_report`
            warnings = data_warnings(store, org, period=period)
            # The report's rule for the comparison: none against days the store does not hold.
            partial = previous_partial_from(store, scope, period.previous().since)
            unsynced = unsynced_from(store, scope, period)
            final = final_costs_until(store, self.config.sync.to_options())
            # closes are by project, never by model: none to give, said as `report --model` says it
            moved, said = closed_adjustments(store, period, replace(scope, model=wanted))
        current: dict[object, Decimal] = {}
        previous = Decimal(0)
        currencies: set[str] = set()
        for group, line_item, currency, is_current, amount in rows:
            if not model_matches(line_item_model(line_item), wanted):
                continue
            if currency is not None:
                currencies.add(iso_currency(currency))
            if is_current:
                current[group] = current.get(group, Decimal(0)) + amount
            else:
                previous += amount
        if len(currencies) > 1:
            raise ParameterError("model", f"its costs are in several currencies ({', '.join(sorted(currencies))})")
        total = sum(current.values(), Decimal(0))
        return _plain(
            {
                "period": period_document(period),
                "scope": {"org": org, "project": pid, "model": wanted},
                "currency": next(iter(currencies), None),
                "group_by": group_by,
                "total": total,
                "previous_period_total": previous if partial is None and unsynced is None else None,
                "previous_partial_from": partial,
                "unsynced_from": unsynced,
                "provisional_from": provisional_from(final, org),
                "warnings": [*warnings, *_uncovered(period, partial), *said],
                "adjustments": [adjustment_document(a, names) for a in moved],
                "rows": _model_rows(group_by, current, total, names, period),
            }
        )

    def usage(
        self, since: str | None = None, until: str | None = None, org: str | None = None, project: str | None = None
    ) -> Document:
        """Tokens (input, output) and model requests over the period, in total and by model."""
        doc = self._report(since, until, org, project)
        return {
            **_kept(doc, "period", "scope"),
            "totals": _kept(doc["totals"], "tokens", "requests"),
            "truncated": len(doc["usage_by_model"]) > self.max_rows,
            "by_model": doc["usage_by_model"][: self.max_rows],
            **_kept(doc, "unsynced_from", "warnings"),
        }

    def top_movers(
        self,
        since: str | None = None,
        until: str | None = None,
        by: str = "project",
        org: str | None = None,
        project: str | None = None,
    ) -> Document:
        """The biggest changes in spend against the previous period of the same length."""
        _choice(by, MOVERS_BY, "by")
        doc = self._report(since, until, org, project)
        current = self._period(since, until)
        before = current.previous()
        return {
            "period": doc["period"],
            "previous_period": _plain(period_document(before)),
            **_kept(doc, "scope", "currency"),
            "by": by,
            "movers": doc["movers_by_project" if by == "project" else "movers_by_model"],
            **_kept(doc, "previous_partial_from", "unsynced_from", "warnings"),
        }

    def changes(
        self,
        since: str | None = None,
        until: str | None = None,
        org: str | None = None,
        kind: str = "restatements",
        limit: int = 100,
    ) -> Document:
        """What syncs changed in the store during the period, from the revision log, summed per table, bucket day,
        change and metric: restatements (rows updated or deleted after they were first read) or every change."""
        _choice(kind, get_args(ChangeKind), "kind")
        if not 1 <= limit <= MAX_CHANGES:
            raise ParameterError("limit", f"give 1 to {MAX_CHANGES}, got {limit}")
        period = self._period(since, until)
        where = ["seen_at >= %s", "seen_at < %s"]
        params: list[object] = [period.start, period.end]
        if kind == "restatements":
            where.append("change <> 'insert'")
        if org is not None:
            where.append("org = %s")
            params.append(org)
        sql = (
            "SELECT org, endpoint_table, bucket_start, change, metric, COUNT(*), "
            "SUM(COALESCE(new_value, 0) - COALESCE(old_value, 0)), MAX(seen_at) FROM revisions "
            f"WHERE {' AND '.join(where)} GROUP BY 1, 2, 3, 4, 5 ORDER BY 8 DESC, 1, 2, 3, 4, 5 LIMIT %s"
        )
        with self._reading(org) as store:
            rows = store.query(sql, [*params, limit + 1])
            warnings = data_warnings(store, org)
        entries = [
            {
                "org": o,
                "table": table,
                "bucket_day": bucket.astimezone(UTC).date() if isinstance(bucket, datetime) else bucket,
                "change": change,
                "metric": metric,
                "rows": count,
                "net_change": None if delta is None else Decimal(delta),  # exact, trimmed as every JSON decimal
                "last_seen_at": seen,
            }
            for o, table, bucket, change, metric, count, delta, seen in rows[:limit]
        ]
        return _plain(
            {
                "period": period_document(period),
                "period_is": "when the sync saw the change (seen_at)",
                "scope": {"org": org},
                "kind": kind,
                "truncated": len(rows) > limit,
                "warnings": list(warnings),
                "changes": entries,
            }
        )

    def alerts(self, org: str | None = None, project: str | None = None, date_: str | None = None) -> Document:
        """The ``check`` command's alerts with the config's thresholds ([alerts]): budgets, anomalies, staleness."""
        now = self.clock()
        day = None if date_ is None else report_day(date_, now=int(now.timestamp()), param="date", end=False)
        if day is not None and day > now.date():
            raise ParameterError(
                "date",
                f"{day.isoformat()} is after today ({now.date().isoformat()}), which no check can judge yet; give "
                "today or an earlier day, or leave date out for today and yesterday",
            )
        cfg = parse_alert_config(self.config.alerts)
        with self._reading(org) as store:
            pid = self._project_id(store, project, org)
            # [alerts.projects.X]: X a project's ID or its name, as `check` reads it
            by_name = resolve_names(store, org=org, overrides=self._overrides(), distinct=False)
            cfg, _ = alert_projects(store, cfg, org=org, names=by_name)
            names = resolve_names(store, org=org, overrides=self._overrides())
            result = run_checks(store, cfg, now=now, org=org, project=pid, budget_day=day, anomaly_day=day, names=names)
            warnings = data_warnings(store, org)
        doc = _plain(check_document(result))
        return {
            "period": _plain(_alert_period(result.budget_day, result.anomaly_day)),
            "warnings": list(warnings),
            **doc,
        }

    def lookup(self, query: str, kind: str | None = None, org: str | None = None) -> Document:
        """Directory items whose ID equals ``query`` or whose name or email contains it (case-insensitive), the
        name the directory gives or the one the config's ``[names]`` gives it, which the other tools show and take:
        a project ``[names]`` calls "Search" was answered by ``spend`` as "Search", and ``lookup("Search")`` found
        nothing."""
        text = query.strip()
        if not text:
            raise ParameterError("query", "give an ID or part of a name")
        kinds = _LOOKUP_KINDS if kind is None else (_choice(kind, _LOOKUP_KINDS, "kind"),)
        overrides = self._overrides()
        renamed = sorted(
            ident
            for table in (overrides.projects, overrides.users, overrides.api_keys)
            for ident, name in table.items()
            if text.lower() in name.lower()
        )
        where = [
            f"kind IN ({', '.join(['%s'] * len(kinds))})",
            "(id = %s OR lower(name) LIKE %s ESCAPE '\\' OR lower(email) LIKE %s ESCAPE '\\'"
            + (f" OR id IN ({', '.join(['%s'] * len(renamed))}))" if renamed else ")"),
        ]
        # A literal match: LIKE's wildcards in the query are escaped.
        like = "%" + "".join("\\" + c if c in "\\%_" else c for c in text.lower()) + "%"
        params: list[object] = [*kinds, text, like, like, *renamed]
        if org is not None:
            where.append("org = %s")
            params.append(org)
        sql = (
            "SELECT org, kind, id, name, email, status, valid_from FROM directory_current "
            f"WHERE {' AND '.join(where)} ORDER BY org, kind, name, id LIMIT {self.max_rows + 1}"
        )
        with self._reading(org) as store:
            rows = store.query(sql, params)
            names = resolve_names(store, org=org, overrides=overrides)
        matches = [
            {
                "org": o,
                "kind": k,
                "id": ident,
                "name": name,
                "email": email,
                "status": status,
                "label": _label(names, k, ident, directory_label(ident, name, status, email)),
                "known_since": since,
            }
            for o, k, ident, name, email, status, since in rows[: self.max_rows]
        ]
        return _plain(
            {
                "period": "the directory as last synced (current versions)",
                "query": text,
                "truncated": len(rows) > self.max_rows,
                "matches": matches,
            }
        )


def _model_rows(
    group_by: str, spend: dict[object, Decimal], total: Decimal, names: Names, period: Period
) -> list[Document]:
    """Rows shaped like the report's ``spend_by_*`` lists (``daily_spend`` for days: every day, zero included)."""
    if group_by == "day":
        by_day = {utc_day(k): v for k, v in spend.items()}
        return [{"day": d, "spend": by_day.get(d, Decimal(0))} for d in period.each_day()]
    name = {"project": names.project, "api_key": names.api_key, "user": names.user}.get(group_by)
    out: list[Document] = []
    for key, amount in sorted(spend.items(), key=lambda kv: (-kv[1], kv[0] is None, str(kv[0] or ""))):
        row: Document = {_ROW_KEYS[group_by]: key}
        if name is not None:
            row["name"] = name(None if key is None else str(key))
        row.update(spend=amount, share=None if total == 0 else amount / total)
        out.append(row)
    return out


def _label(names: Names, kind: str, ident: str, fallback: str) -> str:
    """The label reports show (a ``[names]`` override wins over the directory)."""
    if kind == "project":
        return names.projects.get(ident, fallback)
    if kind in DIRECTORY_KINDS["users"]:
        return names.users.get(ident, fallback)
    return names.api_keys.get(ident, fallback)


def _alert_period(budget_day: date, anomaly_day: date) -> Document:
    """What the checks judged: the daily budget's day, the monthly budget's month to date, the anomaly's day."""
    return {
        "budget_day": budget_day,
        "month_to_date": {"first_day": budget_day.replace(day=1), "last_day": budget_day},
        "anomaly_day": anomaly_day,
    }
