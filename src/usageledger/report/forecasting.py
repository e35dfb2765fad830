"""The forecast over a store: read the daily costs (whole org, or by project, team or model) and apply
:mod:`usageledger.report.forecast`, whose method is pure.

*As of*: the last UTC day the synced costs fully cover (the newest costs bucket reaches to its end, or to when it was
synced if it was still open; the day before that point's day unless it is midnight), never after yesterday. The
forecast takes that day and the ones before it as actual, and forecasts the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal, get_args

from usageledger._amounts import parse_amount
from usageledger.errors import ParameterError, UsageLedgerError
from usageledger.report.folding import RowLimit
from usageledger.report.forecast import HISTORY_DAYS, MIN_DAYS, Forecast, fill_days, forecast_month, month_days, runway
from usageledger.report.months import first_cost_day
from usageledger.report.queries import (
    COSTS_VIEW,
    DAY,
    LINE_ITEM_MODEL,
    Database,
    Keyed,
    Period,
    Scope,
    biggest_first,
    main_currency,
    utc_day,
)
from usageledger.report.teams import UNASSIGNED
from usageledger.store._base import check_orgs
from usageledger.timeutil import month_start, next_month, utc_moment

__all__ = [
    "ForecastReport",
    "GroupForecast",
    "RestForecast",
    "build_forecast",
    "check_horizon",
    "daily_spend",
    "data_as_of",
]

Grouping = Literal["project", "team", "model"]


@dataclass(frozen=True, slots=True)
class GroupForecast(Keyed):
    """The forecast of one project, team or model."""

    forecast: Forecast


@dataclass(frozen=True, slots=True)
class RestForecast:
    """The groups a table does not list, forecast as one group from their summed daily spend: by the method of a
    group's forecast, so its range is that of their sum (the sum of their 80% ranges is not), and its to date is
    theirs exactly."""

    count: int
    forecast: Forecast


@dataclass(frozen=True, slots=True)
class ForecastReport:
    total: Forecast
    groups: tuple[GroupForecast, ...]
    """Each group forecast from its own daily spend (so their sum need not equal the total's forecast)."""
    by: Grouping | None
    currency: str | None
    org: str | None
    project: str | None
    budget: Decimal | None
    runway: date | None
    """The day the month's cumulative spend goes above ``budget`` (``None``: not within the month, or no budget)."""
    rest: RestForecast | None = None
    """The last ``rest.count`` of ``groups``, which a table of them does not list, forecast as one (``build_forecast``'s
    ``rows``); None when it lists every group."""

    @property
    def listed(self) -> tuple[GroupForecast, ...]:
        """The groups a table lists, biggest first: all but the last ``rest.count``."""
        return self.groups if self.rest is None else self.groups[: len(self.groups) - self.rest.count]


def data_as_of(db: Database, *, now: datetime, org: str | None = None) -> date | None:
    """The last day the synced costs fully cover, at most the day before ``now``; ``None`` for no costs at all."""
    where, params = ("AND org = %s", [org]) if org is not None else ("", [])
    value = db.query(
        f"SELECT MAX(LEAST(bucket_end, COALESCE(synced_at, bucket_end))) FROM costs WHERE TRUE {where}", params
    )[0][0]
    if value is None:
        return None
    # Covered through midnight of its date (a whole last day ends there; a day still open at that point is not whole).
    if not isinstance(value, datetime):
        raise TypeError(f"expected a TIMESTAMPTZ, got {type(value).__name__}")
    day = value.astimezone(UTC).date() - timedelta(days=1)
    return min(day, utc_moment(now).date() - timedelta(days=1))


def daily_spend(
    db: Database,
    first: date,
    last: date,
    scope: Scope = Scope(),
    *,
    by: Literal["project", "model"] | None = None,
) -> dict[str | None, list[tuple[date, Decimal]]]:
    """``{key: [(day, spend), ...]}`` of the scope from ``first`` through ``last`` (days without spend left out;
    nothing when ``last`` is before ``first``); the key is ``None`` without ``by``."""
    if last < first:
        return {}
    where, params = scope.where(Period(first, last + timedelta(days=1)))
    key = {"project": "project_id", "model": LINE_ITEM_MODEL, None: "CAST(NULL AS TEXT)"}[by]
    rows = db.query(
        f"SELECT {DAY} AS day, {key} AS k, SUM(amount_value) FROM {COSTS_VIEW} WHERE {where} GROUP BY 1, 2 ORDER BY 1",
        params,
    )
    out: dict[str | None, list[tuple[date, Decimal]]] = {}
    for day, k, amount in rows:
        out.setdefault(k, []).append((utc_day(day), amount if isinstance(amount, Decimal) else Decimal(amount or 0)))
    return out


def check_horizon(month: date, *, now: datetime, param: str = "month") -> None:
    """Refuse forecasting a month that starts more than one month after the current one (UTC): the model projects
    the recent daily rate, and ``--month 9999-12`` printed a confident eight-million-dollar figure for it."""
    this = utc_moment(now).date().replace(day=1)
    following = next_month(this)
    month = month_start(month, param=param)
    if month > following:
        raise ParameterError(
            param,
            f"{month:%Y-%m} starts after next month; a forecast reaches at most one month ahead: pass "
            f"{this:%Y-%m} (this month), {following:%Y-%m} or an earlier month",
        )


def build_forecast(
    db: Database,
    month: date,
    *,
    now: datetime,
    org: str | None = None,
    project: str | None = None,
    by: Grouping | None = None,
    teams: Mapping[str, str] | None = None,
    budget: Decimal | None = None,
    rows: RowLimit | None = None,
) -> ForecastReport:
    """The forecast of ``month`` for the scope, by ``by`` when given (``teams``: ``{project: team}`` for ``team``).

    ``rows``: how many groups a table of them lists (:mod:`usageledger.report.folding`); the others, the smallest,
    are also forecast as one group (:class:`RestForecast`). None: a table lists them all.

    Raises :class:`~usageledger.errors.UsageLedgerError` when the store holds too little history (see ``fit``).
    """
    now = utc_moment(now)
    month = month_start(month, today=now.date())  # `last`: the month before `now`'s
    # `by="nope"` was a forecast of the total alone, a budget of "5000" a TypeError deep inside, `teams=[...]` an
    # AttributeError: each is refused naming it, and a budget is read by the one amount reader.
    if by is not None and by not in get_args(Grouping):
        raise ParameterError("by", f"cannot forecast by {by!r}", allowed=get_args(Grouping))
    if teams is not None and not isinstance(teams, Mapping):
        raise ParameterError("teams", f"expected a mapping of project IDs to teams, got {type(teams).__name__}")
    budget = None if budget is None else parse_amount(budget, param="budget")
    check_horizon(month, now=now)
    check_orgs(db, org, param="org")  # an org the store does not hold was told "run `usageledger sync` first"
    as_of = data_as_of(db, now=now, org=org)
    first_data = first_cost_day(db, org, project)
    if as_of is None:
        raise UsageLedgerError("the store holds no costs to forecast from: run `usageledger sync` first")
    if first_data is None:
        where = " ".join(f"{k} {v}" for k, v in (("org", org), ("project", project)) if v is not None)
        raise UsageLedgerError(
            f"the store holds no daily costs for {where or 'any org'} to forecast from; check the ID"
        )
    days = month_days(month)
    start = max(first_data, min(days[0], as_of - timedelta(days=HISTORY_DAYS - 1)))
    last = min(as_of, days[-1])
    if start > last and first_data > days[-1]:
        raise UsageLedgerError(
            f"the store's costs start on {first_data}, after {month:%Y-%m}: there is nothing to forecast it from"
        )
    if start > last:  # costs start after *as of* within the month: on its 1st, "after 2026-12" of 1 December
        raise UsageLedgerError(
            f"the store's costs start on {first_data}, and no day of them is over yet (a forecast reads whole days,"
            f" up to {as_of}); a forecast needs at least {MIN_DAYS} of them: sync more history first"
        )
    scope = Scope(org=org, project=project)
    total_series = fill_days(daily_spend(db, start, last, scope).get(None, []), start, last)
    total = forecast_month(total_series, month, as_of=as_of)
    if rows is not None and not isinstance(rows, RowLimit):
        raise ParameterError("rows", f"expected a RowLimit or None, got {type(rows).__name__}")
    groups: list[GroupForecast] = []
    raw: dict[str | None, list[tuple[date, Decimal]]] = {}
    if by is not None:
        raw = daily_spend(db, start, last, scope, by="model" if by == "model" else "project")
        if by == "team":
            merged: dict[str | None, list[tuple[date, Decimal]]] = {}
            for key, series in raw.items():
                team = (teams or {}).get(key, UNASSIGNED) if key is not None else UNASSIGNED
                merged.setdefault(team, []).extend(series)
            raw = merged
        for key, series in raw.items():
            groups.append(GroupForecast(key, forecast_month(fill_days(series, start, last), month, as_of=as_of)))
    ordered = biggest_first(groups, lambda g: g.forecast.month_end)
    rest = None
    if rows is not None and (others := rows.split(ordered)[1]):
        summed = fill_days([point for g in others for point in raw[g.key]], start, last)  # equal days summed
        rest = RestForecast(len(others), forecast_month(summed, month, as_of=as_of))
    return ForecastReport(
        total=total,
        groups=tuple(ordered),
        by=by,
        currency=main_currency(db, org),
        org=org,
        project=project,
        budget=budget,
        runway=None if budget is None else runway(total, budget),
        rest=rest,
    )
