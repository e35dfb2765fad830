"""The report's figures, each one computed in SQL on the store.

Queries read the store's ``*_daily`` views (see ``docs/CONTRACTS.md``, "Store"): one row per org, day and group,
from each org's primary daily stream only (else, for an org synced only hourly, its primary hourly stream summed to
days), so groupings are never summed together by accident. The SQL is portable
between DuckDB and PostgreSQL (``split_part``, ``strpos``, ``GROUPING SETS``, ``FULL OUTER JOIN``, ``LEAST`` exist in
both, and a test runs everything on both); placeholders are written ``%s``, as the store's ``query`` takes them.
Money comes back as ``Decimal`` and stays one.

The report is three queries, each one scan of the store grouped to a compact grain and then rolled up with
``GROUPING SETS`` (costs by project, line item, model, currency and overall for this period and the previous one;
costs by day and project, and by day; usage by day and model, and by model), so a large store is read three times,
not a dozen. Derived figures (cost per million tokens, change against the previous period) are computed in Python
from those SQL sums with ``Decimal`` arithmetic, and rankings are sorts of them; nothing goes through a float.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from difflib import get_close_matches
from typing import Any, Final, Protocol, TypeVar

from usageledger import catalogue
from usageledger._text import counted
from usageledger.catalogue import Endpoint
from usageledger.errors import ParameterError, UsageLedgerError
from usageledger.report.formatting import format_ratio, format_signed_money
from usageledger.report.history import Adjustment
from usageledger.rows import iso_currency
from usageledger.rules import one_filter
from usageledger.store import daily_view_name
from usageledger.store._base import check_orgs
from usageledger.store.schema import primary_daily_streams_sql
from usageledger.timeutil import utc_moment

__all__ = [
    "COSTS_VIEW",
    "DAY",
    "LINE_ITEM_MODEL",
    "TOKEN_ENDPOINTS",
    "TOKEN_UNIT_FACTORS",
    "DailyValue",
    "Database",
    "Keyed",
    "ModelSpend",
    "ModelUsage",
    "Mover",
    "Period",
    "ReportData",
    "Scope",
    "Spend",
    "biggest_first",
    "build_report",
    "column_decimal",
    "day_start",
    "known_models",
    "line_item_model",
    "main_currency",
    "models_like",
    "project_known",
    "token_usage_sql",
    "unknown_model",
    "utc_day",
]

COSTS_VIEW: Final = daily_view_name(catalogue.get("costs"))
DAY: Final = "bucket_start"
"""What identifies a day in a daily view: its bucket start. Daily buckets are aligned to UTC midnight, so grouping by
the timestamp is grouping by UTC day, and far cheaper than converting every row to a date; :func:`utc_day` turns
the few distinct values into dates."""
LINE_ITEM_MODEL: Final = "CASE WHEN strpos(line_item, ', ') > 0 THEN split_part(line_item, ', ', 1) END"
"""The model of a costs line item ``"<model>, <what was billed>"``; NULL for line items without a model."""


def line_item_model(line_item: str | None) -> str | None:
    """:data:`LINE_ITEM_MODEL` in Python: the model of a line item ``"<model>, <what>"``, ``None`` without one."""
    if line_item and ", " in line_item:
        return line_item.split(", ", 1)[0]
    return None


INPUT_TOKENS: Final = "input_tokens"
OUTPUT_TOKENS: Final = "output_tokens"
REQUESTS: Final = "num_model_requests"
TOKEN_ENDPOINTS: Final[tuple[Endpoint, ...]] = tuple(
    e
    for e in catalogue.USAGE_ENDPOINTS
    if "model" in e.group_by and INPUT_TOKENS in {m.name for m in e.additive_metrics}
)
"""The token-metered usage endpoints (they group by model and count input tokens), read from the catalogue."""

TOKEN_UNIT_FACTORS: Final = {"tokens": 1, "1000_tokens": 1000}
"""Costs ``quantity_unit`` values that count tokens, and how many tokens one unit is."""

TOP_MOVERS: Final = 8


class Database(Protocol):
    """What the report needs from the store (:class:`usageledger.store.BaseStore` is one): run a query, get rows."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` (placeholders written ``%s``) and return every row."""
        ...


def utc_day(value: object) -> date:
    """The UTC date of a bucket start as the driver returns it (an aware datetime, or a date)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    raise TypeError(f"expected a TIMESTAMPTZ or DATE, got {type(value).__name__}")


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def main_currency(db: Database, org: str | None = None) -> str | None:
    """The currency most cost rows (of ``org``, when given) are in; ``None`` when no cost row names one."""
    where, params = ("AND org = %s", [org]) if org is not None else ("", [])
    rows = db.query(
        f"SELECT currency FROM {COSTS_VIEW} WHERE currency IS NOT NULL {where} "
        "GROUP BY currency ORDER BY COUNT(*) DESC LIMIT 1",
        params,
    )
    return iso_currency(rows[0][0]) if rows else None


def whole_day(value: object, param: str) -> date:
    """A period's edge as a ``date``: a date, an ISO date string or a datetime at midnight UTC (naive = UTC, as
    everywhere); ``Period(datetime(2026, 10, 1), ...)`` was a TypeError deep in the report's SQL parameters."""
    if isinstance(value, datetime):
        moment = utc_moment(value, param=param)
        if moment.time() != datetime.min.time():
            raise ParameterError(
                param, f"{value.isoformat()} is not a whole UTC day; a period is whole days, pass a date"
            )
        return moment.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ParameterError(param, f"cannot read {value!r} as a day; write it as YYYY-MM-DD") from None
    raise ParameterError(param, f"expected a date, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open UTC range ``[since, until)`` of whole days."""

    since: date
    until: date

    def __post_init__(self) -> None:
        object.__setattr__(self, "since", whole_day(self.since, "since"))
        object.__setattr__(self, "until", whole_day(self.until, "until"))
        if self.until <= self.since:
            raise ParameterError(
                "until", f"the period is empty: its end {self.until} is not after its start {self.since}"
            )

    @property
    def days(self) -> int:
        return (self.until - self.since).days

    @property
    def start(self) -> datetime:
        return day_start(self.since)

    @property
    def end(self) -> datetime:
        return day_start(self.until)

    def previous(self) -> Period:
        """The period of the same length that ends where this one starts."""
        return Period(self.since - timedelta(days=self.days), self.since)

    def each_day(self) -> list[date]:
        return [self.since + timedelta(days=i) for i in range(self.days)]

    def __str__(self) -> str:
        last = self.until - timedelta(days=1)
        # The store's days are UTC: a user in Los Angeles at 17:00 on 30 November asking for today gets 1 December,
        # which read as their own day looked a day off without a word (report, reconcile, teams, HTML, dashboard).
        return f"{self.since.isoformat()} to {last.isoformat()} UTC ({counted(self.days, 'day')})"


@dataclass(frozen=True, slots=True)
class Scope:
    """Optional filters: one org, one project, one team (its projects), one model."""

    org: str | None = None
    project: str | None = None
    team: str | None = None
    """The team's name, as shown; the filter is ``team_projects``."""
    team_projects: tuple[str | None, ...] | None = None
    """With ``team``: the projects of the team (``None`` in it: spend with no project)."""
    model: str | None = None

    def __post_init__(self) -> None:
        """An empty or blank filter is refused naming it (:func:`~usageledger.rules.one_filter`), never read as a
        filter that matches nothing: ``Scope(model="")`` reported a spend of 0."""
        for name in ("org", "project", "team", "model"):
            one_filter(name, getattr(self, name))

    def labels(self, project_name: Callable[[str], str]) -> list[str]:
        """The filters set, in words for a report's heading (``org o``, ``project <name>``, ``team t``, ``model m``)."""
        shown = (
            ("org", self.org),
            ("project", project_name(self.project) if self.project else None),
            ("team", self.team),
            ("model", self.model),
        )
        return [f"{what} {value}" for what, value in shown if value]

    def where(
        self, period: Period, *, start: datetime | None = None, model_column: str = LINE_ITEM_MODEL
    ) -> tuple[str, list[object]]:
        """A WHERE clause for a daily view: the period (or from ``start``), then the org, project, team and model
        filters; ``model_column`` is how the view names the model (costs parse it from the line item)."""
        clauses = ["bucket_start >= %s", "bucket_start < %s"]
        params: list[object] = [start or period.start, period.end]
        if self.org is not None:
            clauses.append("org = %s")
            params.append(self.org)
        if self.project is not None:
            clauses.append("project_id = %s")
            params.append(self.project)
        if self.team_projects is not None:
            ids = [p for p in self.team_projects if p is not None]
            either = [f"project_id IN ({', '.join(['%s'] * len(ids))})"] if ids else []
            if None in self.team_projects:
                either.append("project_id IS NULL")
            clauses.append(f"({' OR '.join(either)})" if either else "FALSE")
            params.extend(ids)
        if self.model is not None:
            clauses.append(model_sql(model_column))
            params += [self.model, self.model]
        return " AND ".join(clauses), params


SNAPSHOT_SUFFIX: Final = "-[0-9]{4}-[0-9]{2}-[0-9]{2}$"
"""A dated snapshot's suffix (``-2024-08-06``), in the syntax Python, DuckDB and PostgreSQL regexes share."""


def model_matches(name: str | None, wanted: str) -> bool:
    """Whether the model ``name`` is the one a filter ``wanted`` asks for: the same name, or a dated snapshot of it
    (``gpt-4o`` is ``gpt-4o`` and ``gpt-4o-2024-08-06``, never ``gpt-4o-mini``); ``gpt-4o-2024-08-06`` is itself
    alone. The one rule of ``report --model``, the dashboard's and the MCP tools' ``model``; :func:`model_sql` is it
    in SQL."""
    return name is not None and (name == wanted or re.sub(SNAPSHOT_SUFFIX, "", name) == wanted)


def model_sql(column: str) -> str:
    """:func:`model_matches` as a SQL condition on ``column``, taking the wanted name twice as parameters."""
    return f"({column} = %s OR regexp_replace({column}, '{SNAPSHOT_SUFFIX}', '') = %s)"


def project_known(db: Database, project: str, org: str | None = None) -> bool:
    """Whether any cost or token-usage row of the store names ``project`` (in ``org``, when given), at any time."""
    where = "project_id = %s" + ("" if org is None else " AND org = %s")
    params: list[object] = [project] if org is None else [project, org]
    views = [COSTS_VIEW, *(daily_view_name(e) for e in catalogue.ENDPOINTS if e.name != "costs")]
    return any(db.query(f"SELECT 1 FROM {view} WHERE {where} LIMIT 1", params) for view in views)


def known_models(db: Database, org: str | None = None) -> set[str]:
    """The models the store's costs line items and token usage name (in ``org``, when given), at any time."""
    where = "" if org is None else " WHERE org = %s"
    params: list[object] = [] if org is None else [org]
    selects = [f"SELECT DISTINCT {LINE_ITEM_MODEL} FROM {COSTS_VIEW}{where}"]
    selects += [f"SELECT DISTINCT model FROM {daily_view_name(e)}{where}" for e in TOKEN_ENDPOINTS]
    return {model for sql in selects for (model,) in db.query(sql, params) if model is not None}


def models_like(db: Database, model: str, org: str | None = None) -> list[str] | None:
    """``None`` when a model filter matches a model of the store (:func:`model_matches`, in ``org`` when given);
    else the store's models it may have meant (empty when none is). The one check of ``report --model`` and the MCP
    tools' ``model``: a typo, or a prefix of several (``gpt-4``), would otherwise answer $0. At most ten: those it
    begins (``gpt-4`` begins ``gpt-4o`` and ``gpt-4.1``), else the closest. A store that knows no model at all (no
    costs synced yet) is no typo: ``None``, and the reading's warnings say why its spend is $0."""
    models = known_models(db, org)
    if not models or any(model_matches(m, model) for m in models):
        return None
    wanted = model.lower()
    like = sorted(m for m in models if m.lower().startswith(wanted))
    return (like or get_close_matches(model, sorted(models)))[:10]


def unknown_model(db: Database, model: str, org: str | None = None, *, listed_by: str) -> str | None:
    """Why ``model`` is refused (:func:`models_like`: a model the store never saw), naming those like it, else where
    the models are listed (``listed_by``); ``None`` when it names one. The one wording of the dashboard's 404 and the
    MCP tools' refusal."""
    like = models_like(db, model, org)
    if like is None:
        return None
    where = "" if org is None else f" of org {org}"
    hint = f"did you mean {', '.join(like)}?" if like else f"{listed_by} lists the models"
    return f"{model} is no model{where} in this store; {hint}"


@dataclass(frozen=True, slots=True)
class Keyed:
    """A row of a breakdown, named by what it groups: a project ID, team, model, line item, API key or user."""

    key: str | None
    """``None`` for the spend that has none (no project, no model)."""


_Row = TypeVar("_Row", bound=Keyed)


def biggest_first(rows: Iterable[_Row], size: Callable[[_Row], Decimal]) -> list[_Row]:
    """``rows`` by ``size``, largest first; among equals by key, the row without one last. The one order of every
    ranked breakdown: spend, movers, group forecasts."""
    return sorted(rows, key=lambda row: (-size(row), row.key is None, row.key or ""))


@dataclass(frozen=True, slots=True)
class Spend(Keyed):
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ModelSpend:
    """A model's spend; ``token_spend`` and ``tokens`` come from token-priced line items only."""

    model: str | None
    amount: Decimal
    token_spend: Decimal
    tokens: Decimal

    @property
    def per_million_tokens(self) -> Decimal | None:
        """Token-priced spend per million billed tokens, or None when no tokens were billed."""
        if self.tokens <= 0:
            return None
        return (self.token_spend * 1_000_000 / self.tokens).quantize(Decimal("0.000001"))


@dataclass(frozen=True, slots=True)
class ModelUsage:
    model: str | None
    input_tokens: int
    output_tokens: int
    requests: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Mover(Keyed):
    current: Decimal
    previous: Decimal

    @property
    def change(self) -> Decimal:
        return self.current - self.previous

    @property
    def change_ratio(self) -> Decimal | None:
        """The relative change, or None when there was nothing in the previous period."""
        if self.previous == 0:
            return None
        return self.change / self.previous


@dataclass(frozen=True, slots=True)
class DailyValue:
    day: date
    key: str | None
    value: Decimal


@dataclass(frozen=True, slots=True)
class ReportData:
    """Every figure of the report, as exact values; the renderers only format them."""

    period: Period
    scope: Scope
    currency: str | None
    total_spend: Decimal
    previous_spend: Decimal
    spend_by_project: tuple[Spend, ...]
    spend_by_line_item: tuple[Spend, ...]
    spend_by_api_key: tuple[Spend, ...]
    """Empty unless the costs stream groups by ``api_key_id``."""
    spend_by_user: tuple[Spend, ...]
    """Empty unless the costs stream groups by ``user_id``."""
    spend_by_model: tuple[ModelSpend, ...]
    usage_by_model: tuple[ModelUsage, ...]
    daily_spend: tuple[tuple[date, Decimal], ...]
    daily_spend_by_project: tuple[DailyValue, ...]
    daily_tokens_by_model: tuple[DailyValue, ...]
    movers_by_project: tuple[Mover, ...]
    movers_by_model: tuple[Mover, ...]
    provisional_from: date | None = None
    """The first day whose spend is still provisional (may be restated); ``None``: not known (see
    :mod:`usageledger.report.finality`)."""
    as_of: datetime | None = None
    """The time the figures were rebuilt for from the revision log (``report --as-of``); ``None``: the present."""
    adjustments: tuple[Adjustment, ...] = ()
    """Closed months of the period whose spend moved since they were closed (see :mod:`usageledger.report.history`)."""
    previous_partial_from: date | None = None
    """The day the store's costs start (of the org in scope that starts last), when it falls after the previous
    period's first day: the previous period is then only partly in the store, so ``previous_spend`` and the movers
    would compare with days never synced, and no rendering shows them. ``None``: the previous period is covered."""
    unsynced_from: date | None = None
    """The day the store's costs are synced up to (exclusive; of the org in scope synced least far), when that
    leaves more than a day of the period out: the period's last days read as $0, so the change against a whole
    previous period is not shown either. ``None``: the period is synced (to within a day, as a daily cron leaves
    it)."""
    warnings: tuple[str, ...] = ()
    """What the reader must be told about these figures (a store mixing synthetic and real orgs: see
    :func:`usageledger.sync._safety.data_warnings`); set by the caller that opened the store."""

    @property
    def compared(self) -> bool:
        """Whether the change against the previous period (its spend, the movers) means anything: both periods
        are in the store."""
        return self.previous_partial_from is None and self.unsynced_from is None

    def comparison(self) -> str:
        """The change against the previous period, in words (``+$12.00, +5.0% against the previous 30 days``), or
        why there is none: one wording for the terminal, the HTML report and the dashboard."""
        days = counted(self.period.days, "day")
        first = self.previous_partial_from
        if first is not None:
            # Where the first day falls decides what is missing: part of the previous period, all of it, the
            # period's own first days too, or the whole period (a period before the store's data reads as $0).
            if first >= self.period.until:
                return (
                    f"no comparison: the store's costs start on {first}, after the period ends, so it holds none"
                    " of the period's days; sync further back, or pick a later period"
                )
            if first > self.period.since:
                missing = counted((first - self.period.since).days, "day")
                return (
                    f"no comparison: the store's costs start on {first}, inside the period, so its first {missing}"
                    " and the previous period are missing; sync further back to compare"
                )
            if first == self.period.since:
                return (
                    f"no comparison: the store's costs start on {first}, the period's first day, so none of the"
                    f" previous {days} are in the store; sync further back to compare"
                )
            return (
                f"no comparison: the store's costs start on {first}, inside the previous {days};"
                " sync further back to compare"
            )
        if self.unsynced_from is not None:
            whole = f"the store's costs are whole only through {self.unsynced_from - timedelta(days=1)}"
            if self.unsynced_from <= self.period.since:
                return f"no comparison: {whole}, before the period starts; run `usageledger sync` to compare"
            missing = counted((self.period.until - self.unsynced_from).days, "day")
            return (
                f"no comparison: {whole}, so the period's last {missing} are missing or partial; run"
                " `usageledger sync` to compare"
            )
        if self.total_spend == 0 and self.previous_spend == 0:  # "$0.00, new" would say spend appeared
            return f"no spend in this period or the previous {days}"
        change = self.total_spend - self.previous_spend
        ratio = None if self.previous_spend == 0 else change / self.previous_spend
        return f"{format_signed_money(change, self.currency)}, {format_ratio(ratio)} against the previous {days}"

    @property
    def total_tokens(self) -> int:
        return sum(u.tokens for u in self.usage_by_model)

    @property
    def total_requests(self) -> int:
        return sum(u.requests for u in self.usage_by_model)


def column_decimal(value: object) -> Decimal:
    """A DECIMAL/NUMERIC (or integer) column's value as either driver returns it; NULL (an empty ``SUM``) is 0."""
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    raise TypeError(f"expected a DECIMAL/NUMERIC or integer column, got {type(value).__name__}")


def _int(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    raise TypeError(f"expected an integer column, got {value!r}")


def token_usage_sql(
    scope: Scope,
    period: Period,
    *,
    start: datetime | None = None,
    endpoints: Sequence[Endpoint] = TOKEN_ENDPOINTS,
) -> tuple[str, list[object]]:
    """One row per usage row of the token-metered endpoints: ``org, bucket_start, project_id, model, input_tokens,
    output_tokens, requests`` (a UNION ALL over their daily views, filtered by the scope and period). An org synced
    only hourly (or by the minute) is in them too: the views sum its hours to UTC days
    (:meth:`usageledger.store.TableSpec.daily_view_sql`)."""
    parts: list[str] = []
    params: list[object] = []
    for endpoint in endpoints:
        names = {m.name for m in endpoint.additive_metrics}
        where, p = scope.where(period, start=start, model_column="model")
        out = f"COALESCE({OUTPUT_TOKENS}, 0)" if OUTPUT_TOKENS in names else "0"
        req = f"COALESCE({REQUESTS}, 0)" if REQUESTS in names else "0"
        parts.append(
            f"SELECT org, bucket_start, project_id, model, COALESCE({INPUT_TOKENS}, 0) AS input_tokens, "
            f"{out} AS output_tokens, {req} AS requests FROM {daily_view_name(endpoint)} WHERE {where}"
        )
        params.extend(p)
    return " UNION ALL ".join(parts), params


def _token_unit_case(expr: str) -> str:
    whens = " ".join(f"WHEN '{unit}' THEN {expr} * {factor}" for unit, factor in TOKEN_UNIT_FACTORS.items())
    return f"CASE quantity_unit {whens} END"


_ROLLUP: Final = ("project_id", "line_item", "model", "currency", "api_key_id", "user_id")
"""The keys the costs roll-up sums by, one grouping set each (plus the total), for this period and the previous."""


def _costs_sql(scope: Scope, period: Period) -> tuple[str, list[object]]:
    """Costs of this period and the previous one: one scan, grouped to (project, API key, user, line item, unit,
    currency, which period), then rolled up by grouping sets. The model is parsed from the few grouped line items,
    not per row."""
    where, params = scope.where(period, start=period.previous().start)
    units = ", ".join(f"'{u}'" for u in TOKEN_UNIT_FACTORS)
    keys = ", ".join(_ROLLUP)
    sets = ", ".join(f"({k}, cur)" for k in _ROLLUP)
    sql = (
        "WITH base AS (SELECT project_id, api_key_id, user_id, line_item, quantity_unit, currency, "
        f"bucket_start >= %s AS cur, SUM(amount_value) AS amount, SUM(quantity) AS quantity FROM {COSTS_VIEW} "
        f"WHERE {where} GROUP BY 1, 2, 3, 4, 5, 6, 7), "
        f"x AS (SELECT project_id, api_key_id, user_id, line_item, {LINE_ITEM_MODEL} AS model, currency, cur, amount, "
        f"CASE WHEN quantity_unit IN ({units}) THEN amount END AS token_amount, "
        f"{_token_unit_case('quantity')} AS tokens FROM base) "
        f"SELECT GROUPING({keys}) AS g, {keys}, cur, SUM(amount), SUM(token_amount), SUM(tokens) FROM x "
        f"GROUP BY GROUPING SETS ({sets}, (cur))"
    )
    return sql, [period.start, *params]


def _kept(g: int) -> str | None:
    """Which roll-up key a row of grouping id ``g`` is summed by (None for the total): GROUPING sets the bit of
    every key the row's grouping set leaves out, the first key in the highest bit."""
    kept = [k for i, k in enumerate(_ROLLUP) if not g & (1 << (len(_ROLLUP) - 1 - i))]
    return kept[0] if kept else None


def _daily_sql(scope: Scope, period: Period) -> tuple[str, list[object]]:
    """Spend per day and project this period, rolled up to per day."""
    where, params = scope.where(period)
    sql = (
        "SELECT GROUPING(bucket_start, project_id) AS g, bucket_start, project_id, SUM(amount) FROM ("
        f"SELECT bucket_start, project_id, SUM(amount_value) AS amount FROM {COSTS_VIEW} WHERE {where} GROUP BY 1, 2"
        ") d GROUP BY GROUPING SETS ((bucket_start, project_id), (bucket_start))"
    )
    return sql, params


def _ranked(spends: list[Spend]) -> tuple[Spend, ...]:
    return tuple(biggest_first(spends, lambda s: s.amount))


def _grouped(spends: list[Spend]) -> tuple[Spend, ...]:
    """Spend by a dimension the costs stream may not group by: empty when every row has it NULL (not grouped)."""
    return _ranked(spends) if any(s.key is not None for s in spends) else ()


def _top_movers(movers: list[Mover], limit: int) -> tuple[Mover, ...]:
    moved = [m for m in movers if m.change != 0]
    return tuple(biggest_first(moved, lambda m: abs(m.change))[:limit])


def _usage_sql(scope: Scope, period: Period) -> tuple[str, list[object]]:
    """Token usage this period per day and model, rolled up to per model."""
    inner, params = token_usage_sql(scope, period)
    sql = (
        "WITH u AS (SELECT bucket_start, model, SUM(input_tokens) AS i, SUM(output_tokens) AS o, "
        f"SUM(requests) AS r FROM ({inner}) x GROUP BY 1, 2) "
        "SELECT GROUPING(bucket_start, model) AS g, bucket_start, model, SUM(i), SUM(o), SUM(r) FROM u "
        "GROUP BY GROUPING SETS ((bucket_start, model), (model))"
    )
    return sql, params


def build_report(db: Database, period: Period, scope: Scope = Scope(), *, top_movers: int = TOP_MOVERS) -> ReportData:
    """Run the report's three queries (costs of both periods, daily costs, token usage) for ``period``."""
    if not callable(getattr(db, "query", None)):  # a path failed deep inside: "'str' object has no attribute 'query'"
        raise ParameterError("db", f"expected an open store (open_store(url)), got {type(db).__name__}")
    if not isinstance(period, Period):  # `build_report(db, (since, until))` failed deep inside on `.previous()`
        raise ParameterError("period", f"expected a Period(since, until), got {type(period).__name__}")
    if not isinstance(scope, Scope):
        raise ParameterError("scope", f"expected a Scope(org=..., project=...), got {type(scope).__name__}")
    if isinstance(top_movers, bool) or not isinstance(top_movers, int) or top_movers < 0:
        raise ParameterError("top_movers", f"expected a whole number of 0 or more, got {top_movers!r}")
    check_orgs(db, scope.org, param="scope.org")  # an org the store does not hold was a report of zeros
    partial = previous_partial_from(db, scope, period.previous().since)
    unsynced = unsynced_from(db, scope, period)
    compared = partial is None and unsynced is None
    total = previous = Decimal(0)
    currencies: set[str] = set()
    spend: dict[str, list[Spend]] = {k: [] for k in _ROLLUP}
    by_model: dict[str | None, ModelSpend] = {}
    moved: dict[str, dict[str | None, list[Decimal]]] = {"project_id": {}, "model": {}}
    sql, params = _costs_sql(scope, period)
    for row in db.query(sql, params):
        g, values, cur = row[0], row[1 : 1 + len(_ROLLUP)], row[1 + len(_ROLLUP)]
        amount, token_v, tokens_v = column_decimal(row[-3]), row[-2], row[-1]
        key = _kept(g)
        if key is None:
            if cur:
                total = amount
            else:
                previous = amount
            continue
        value = values[_ROLLUP.index(key)]
        if key in moved:
            moved[key].setdefault(value, [Decimal(0), Decimal(0)])[0 if cur else 1] = amount
        if not cur:
            continue
        if key == "currency":
            if value is not None:
                currencies.add(iso_currency(value))
        elif key == "model":
            by_model[value] = ModelSpend(value, amount, column_decimal(token_v), column_decimal(tokens_v))
        else:
            spend[key].append(Spend(value, amount))
    if len(currencies) > 1:
        raise UsageLedgerError(
            f"the costs in this period are in several currencies ({', '.join(sorted(currencies))}); "
            "the report sums money only within one currency"
        )

    daily: dict[date, Decimal] = {}
    daily_by_project: list[DailyValue] = []
    sql, params = _daily_sql(scope, period)
    for g, start, project, amount_v in db.query(sql, params):
        if g == 0:
            daily_by_project.append(DailyValue(utc_day(start), project, column_decimal(amount_v)))
        else:
            daily[utc_day(start)] = column_decimal(amount_v)

    usage: list[ModelUsage] = []
    daily_tokens: list[DailyValue] = []
    sql, params = _usage_sql(scope, period)
    for g, start, model, inp, out, requests in db.query(sql, params):
        if g == 0:
            daily_tokens.append(DailyValue(utc_day(start), model, Decimal(_int(inp) + _int(out))))
        else:
            usage.append(ModelUsage(model, _int(inp), _int(out), _int(requests)))

    return ReportData(
        period=period,
        scope=scope,
        currency=next(iter(currencies), None),
        total_spend=total,
        previous_spend=previous,
        spend_by_project=_ranked(spend["project_id"]),
        spend_by_line_item=_ranked(spend["line_item"]),
        spend_by_api_key=_grouped(spend["api_key_id"]),
        spend_by_user=_grouped(spend["user_id"]),
        spend_by_model=tuple(sorted(by_model.values(), key=lambda m: (-m.amount, m.model is None, m.model or ""))),
        usage_by_model=tuple(sorted(usage, key=lambda u: (-u.tokens, u.model is None, u.model or ""))),
        daily_spend=tuple((d, daily.get(d, Decimal(0))) for d in period.each_day()),
        daily_spend_by_project=tuple(sorted(daily_by_project, key=lambda v: (v.day, v.key is None, v.key or ""))),
        daily_tokens_by_model=tuple(sorted(daily_tokens, key=lambda v: (v.day, v.key is None, v.key or ""))),
        movers_by_project=_top_movers([Mover(k, *v) for k, v in moved["project_id"].items()], top_movers)
        if compared
        else (),
        movers_by_model=_top_movers([Mover(k, *v) for k, v in moved["model"].items()], top_movers) if compared else (),
        previous_partial_from=partial,
        unsynced_from=unsynced,
    )


def costs_synced_until(db: Database) -> dict[str, date]:
    """Per org, the day its primary daily costs stream is synced up to (exclusive: the days before it are in the
    store); an org whose costs stream has no watermark yet is left out."""
    out: dict[str, date] = {}
    for org, mark in db.query(primary_daily_streams_sql("costs", "org, watermark")):
        if mark is not None:
            day = utc_day(mark)
            out[org] = max(out.get(org, day), day)
    return out


def unsynced_from(db: Database, scope: Scope, period: Period) -> date | None:
    """The day the costs of the org in ``scope`` synced least far are synced up to, when the period runs more than
    a day past it; ``None`` otherwise (a store with no costs stream included: it has nothing to be behind on)."""
    marks = [day for org, day in costs_synced_until(db).items() if scope.org is None or org == scope.org]
    least = min(marks, default=None)
    return least if least is not None and (period.until - least).days > 1 else None


def previous_partial_from(db: Database, scope: Scope, since: date) -> date | None:
    """The day from which the store holds the costs of every org in ``scope``, when it is after ``since`` (the
    previous period's first day); ``None`` when every org's costs start on or before it, or there are none. An org
    new to the API looks the same as one synced from a later day: the store cannot tell them apart, and says so."""
    latest = max(first_cost_days(db, scope.org).values(), default=None)
    return latest if latest is not None and latest > since else None


def first_cost_days(db: Database, org: str | None = None, project: str | None = None) -> dict[str, date]:
    """Per org, the first day of the store's daily costs (of ``org``, of ``project``, when given)."""
    clauses, params = ["TRUE"], []
    for column, value in (("org", org), ("project_id", project)):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    where = " AND ".join(clauses)
    rows = db.query(f"SELECT org, MIN(bucket_start) FROM {COSTS_VIEW} WHERE {where} GROUP BY org", params)
    return {name: utc_day(first) for name, first in rows if first is not None}


SYNC_COSTS: Final = "run `usageledger sync` (costs come in 1d buckets only: give no --bucket-width, or 1d)"
"""How to get costs never synced into the store, as a warning about them ends."""


def costs_not_synced(
    db: Database, org: str | Sequence[str] | None, period: Period, *, seen_from: date | None = None
) -> tuple[str, ...]:
    """What the store's costs leave out of ``period`` for ``org`` (else each org it has streams of), so $0.00 is not
    read as nothing spent: the orgs that have no costs in the store at all (a sync stopped before them, or one of
    usage alone such as ``--bucket-width 1h``), in one warning; and each org whose costs reach only to a day the
    period runs more than a day past (the rule of :func:`unsynced_from`: the watermark, or the day after the last of
    a bounded sync's rows when no run set one), naming the days the store holds and those it leaves out. Empty when the
    costs cover the period's end.

    ``db`` may be the store as it stood at a time (``report --as-of``: :func:`usageledger.report.history.as_of`),
    whose costs are rebuilt only from ``seen_from``: a first day there is not said to be the first held."""
    if isinstance(org, str):
        orgs = [org]
    elif org:  # the several orgs a reading is limited to (`export --org a,b`)
        orgs = list(org)
    else:
        orgs = [name for (name,) in db.query("SELECT DISTINCT org FROM streams ORDER BY org")]
    if not orgs:
        return (f"nothing has been synced into this store yet, so it holds no costs; {SYNC_COSTS}",)
    synced = costs_synced_until(db)
    held = {
        name: (utc_day(first), utc_day(last) + timedelta(days=1))
        for name, first, last in db.query(
            f"SELECT org, MIN(bucket_start), MAX(bucket_start) FROM {COSTS_VIEW} GROUP BY org"
        )
        if first is not None
    }
    said: list[str] = []
    never = [name for name in orgs if name not in synced and name not in held]
    if never:
        which = f"org {never[0]}" if len(never) == 1 else f"orgs {', '.join(never)}"
        said.append(f"costs have not been synced for {which}, so the spend shown leaves them out; {SYNC_COSTS}")
    last = period.until - timedelta(days=1)
    for name in orgs:
        first, after = held.get(name, (None, None))
        until = synced.get(name, after)  # whole days: today's bucket, partial, is in the rows but not the watermark
        if until is None or (period.until - until).days <= 1:
            continue
        through = until - timedelta(days=1)
        shown = first is not None and (seen_from is None or first > seen_from)
        days = f"from {first} through {through}" if shown else f"through {through}"
        left = "the whole period" if until <= period.since else f"{max(until, period.since)} to {last}"
        said.append(
            f"costs of org {name} are synced only {days}, so the spend shown leaves out {left}; run `usageledger sync`"
        )
    return tuple(said)
