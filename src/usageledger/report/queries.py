"""The report's figures, each one computed in SQL on the store.

Queries read the store's ``*_daily`` views (see ``docs/CONTRACTS.md``, "Store"): one row per org, day and group,
from each org's primary daily stream only, so groupings are never summed together by accident. The SQL is portable
between DuckDB and PostgreSQL (``split_part``, ``strpos``, ``AT TIME ZONE``, ``FULL OUTER JOIN`` exist in both);
placeholders are written ``?`` and translated for psycopg. Money comes back as ``Decimal`` and stays one.

Derived figures (cost per million tokens, change against the previous period) are computed in Python from SQL
sums with ``Decimal`` arithmetic, so nothing is rounded through a float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Protocol

from usageledger import catalogue
from usageledger.catalogue import Endpoint
from usageledger.errors import UsageLedgerError

__all__ = [
    "COSTS_VIEW",
    "DAY",
    "LINE_ITEM_MODEL",
    "TOKEN_ENDPOINTS",
    "TOKEN_UNIT_FACTORS",
    "DailyValue",
    "Database",
    "DuckDBDatabase",
    "ModelSpend",
    "ModelUsage",
    "Mover",
    "Period",
    "PostgresDatabase",
    "ReportData",
    "Scope",
    "Spend",
    "build_report",
    "daily_view",
    "token_usage_sql",
]

COSTS_VIEW: Final = "costs_daily"
DAY: Final = "CAST(bucket_start AT TIME ZONE 'UTC' AS DATE)"
"""The UTC day of a bucket, whatever the session's time zone."""
LINE_ITEM_MODEL: Final = "CASE WHEN strpos(line_item, ', ') > 0 THEN split_part(line_item, ', ', 1) END"
"""The model of a costs line item ``"<model>, <what was billed>"``; NULL for line items without a model."""

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
    """What the report needs from a store connection: run one query, get rows back."""

    @property
    def dialect(self) -> str:
        """``duckdb`` or ``postgresql``."""
        ...

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` (placeholders written ``?``) and return every row."""
        ...


def daily_view(endpoint: Endpoint) -> str:
    """The store's daily view for an endpoint: ``costs_daily`` or ``usage_<endpoint>_daily``."""
    return COSTS_VIEW if endpoint.is_costs else f"usage_{endpoint.name}_daily"


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open UTC range ``[since, until)`` of whole days."""

    since: date
    until: date

    def __post_init__(self) -> None:
        if self.until <= self.since:
            raise UsageLedgerError(f"the period is empty: --until {self.until} is not after --since {self.since}")

    @property
    def days(self) -> int:
        return (self.until - self.since).days

    @property
    def start(self) -> datetime:
        return datetime(self.since.year, self.since.month, self.since.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime(self.until.year, self.until.month, self.until.day, tzinfo=UTC)

    def previous(self) -> Period:
        """The period of the same length that ends where this one starts."""
        return Period(self.since - timedelta(days=self.days), self.since)

    def each_day(self) -> list[date]:
        return [self.since + timedelta(days=i) for i in range(self.days)]

    def __str__(self) -> str:
        last = self.until - timedelta(days=1)
        return f"{self.since.isoformat()} to {last.isoformat()} ({self.days} days)"


@dataclass(frozen=True, slots=True)
class Scope:
    """Optional filters: one org, one project."""

    org: str | None = None
    project: str | None = None

    def where(self, period: Period, *, start: datetime | None = None) -> tuple[str, list[object]]:
        """A WHERE clause for a daily view: the period (or from ``start``), then the org and project filters."""
        clauses = ["bucket_start >= ?", "bucket_start < ?"]
        params: list[object] = [start or period.start, period.end]
        if self.org is not None:
            clauses.append("org = ?")
            params.append(self.org)
        if self.project is not None:
            clauses.append("project_id = ?")
            params.append(self.project)
        return " AND ".join(clauses), params


@dataclass(frozen=True, slots=True)
class Spend:
    key: str | None
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
class Mover:
    key: str | None
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
    spend_by_model: tuple[ModelSpend, ...]
    usage_by_model: tuple[ModelUsage, ...]
    daily_spend: tuple[tuple[date, Decimal], ...]
    daily_spend_by_project: tuple[DailyValue, ...]
    daily_tokens_by_model: tuple[DailyValue, ...]
    movers_by_project: tuple[Mover, ...]
    movers_by_model: tuple[Mover, ...]

    @property
    def total_tokens(self) -> int:
        return sum(u.tokens for u in self.usage_by_model)

    @property
    def total_requests(self) -> int:
        return sum(u.requests for u in self.usage_by_model)


def _dec(value: object) -> Decimal:
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
    """One row per usage row of the token-metered endpoints: ``bucket_start, project_id, model, input_tokens,
    output_tokens, requests`` (a UNION ALL over their daily views, filtered by the scope and period)."""
    parts: list[str] = []
    params: list[object] = []
    for endpoint in endpoints:
        names = {m.name for m in endpoint.additive_metrics}
        where, p = scope.where(period, start=start)
        out = f"COALESCE({OUTPUT_TOKENS}, 0)" if OUTPUT_TOKENS in names else "0"
        req = f"COALESCE({REQUESTS}, 0)" if REQUESTS in names else "0"
        parts.append(
            f"SELECT bucket_start, project_id, model, COALESCE({INPUT_TOKENS}, 0) AS input_tokens, "
            f"{out} AS output_tokens, {req} AS requests FROM {daily_view(endpoint)} WHERE {where}"
        )
        params.extend(p)
    return " UNION ALL ".join(parts), params


def _token_unit_case(expr: str) -> str:
    whens = " ".join(f"WHEN '{unit}' THEN {expr} * {factor}" for unit, factor in TOKEN_UNIT_FACTORS.items())
    return f"CASE quantity_unit {whens} END"


def _currency(db: Database, scope: Scope, period: Period) -> str | None:
    where, params = scope.where(period)
    rows = db.fetchall(
        f"SELECT DISTINCT currency FROM {COSTS_VIEW} WHERE {where} AND currency IS NOT NULL ORDER BY 1", params
    )
    currencies = [r[0] for r in rows]
    if len(currencies) > 1:
        raise UsageLedgerError(
            f"the costs in this period are in several currencies ({', '.join(currencies)}); "
            "the report sums money only within one currency"
        )
    return currencies[0] if currencies else None


def _spend_by(db: Database, scope: Scope, period: Period, key: str) -> tuple[Spend, ...]:
    where, params = scope.where(period)
    rows = db.fetchall(
        f"SELECT k, SUM(amount_value) AS spend FROM (SELECT {key} AS k, amount_value FROM {COSTS_VIEW} "
        f"WHERE {where}) s GROUP BY k ORDER BY spend DESC NULLS LAST, k NULLS LAST",
        params,
    )
    return tuple(Spend(r[0], _dec(r[1])) for r in rows)


def _totals(db: Database, scope: Scope, period: Period) -> tuple[Decimal, Decimal]:
    previous = period.previous()
    where, params = scope.where(period, start=previous.start)
    row = db.fetchall(
        f"SELECT SUM(CASE WHEN bucket_start >= ? THEN amount_value END), "
        f"SUM(CASE WHEN bucket_start < ? THEN amount_value END) FROM {COSTS_VIEW} WHERE {where}",
        [period.start, period.start, *params],
    )[0]
    return _dec(row[0]), _dec(row[1])


def _spend_by_model(db: Database, scope: Scope, period: Period) -> tuple[ModelSpend, ...]:
    where, params = scope.where(period)
    units = ", ".join(f"'{u}'" for u in TOKEN_UNIT_FACTORS)
    rows = db.fetchall(
        f"SELECT model, SUM(amount_value) AS spend, "
        f"SUM(CASE WHEN quantity_unit IN ({units}) THEN amount_value END) AS token_spend, "
        f"SUM({_token_unit_case('quantity')}) AS tokens "
        f"FROM (SELECT {LINE_ITEM_MODEL} AS model, amount_value, quantity, quantity_unit FROM {COSTS_VIEW} "
        f"WHERE {where}) s GROUP BY model ORDER BY spend DESC NULLS LAST, model NULLS LAST",
        params,
    )
    return tuple(ModelSpend(r[0], _dec(r[1]), _dec(r[2]), _dec(r[3])) for r in rows)


def _usage_by_model(db: Database, scope: Scope, period: Period) -> tuple[ModelUsage, ...]:
    inner, params = token_usage_sql(scope, period)
    rows = db.fetchall(
        f"SELECT model, SUM(input_tokens), SUM(output_tokens), SUM(requests) FROM ({inner}) u "
        "GROUP BY model ORDER BY SUM(input_tokens) + SUM(output_tokens) DESC, model NULLS LAST",
        params,
    )
    return tuple(ModelUsage(r[0], _int(r[1]), _int(r[2]), _int(r[3])) for r in rows)


def _daily_spend(db: Database, scope: Scope, period: Period) -> tuple[tuple[date, Decimal], ...]:
    where, params = scope.where(period)
    rows = db.fetchall(
        f"SELECT {DAY} AS day, SUM(amount_value) FROM {COSTS_VIEW} WHERE {where} GROUP BY day ORDER BY day", params
    )
    by_day = {r[0]: _dec(r[1]) for r in rows}
    return tuple((d, by_day.get(d, Decimal(0))) for d in period.each_day())


def _daily_spend_by_project(db: Database, scope: Scope, period: Period) -> tuple[DailyValue, ...]:
    where, params = scope.where(period)
    rows = db.fetchall(
        f"SELECT {DAY} AS day, project_id, SUM(amount_value) FROM {COSTS_VIEW} WHERE {where} "
        "GROUP BY day, project_id ORDER BY day, project_id NULLS LAST",
        params,
    )
    return tuple(DailyValue(r[0], r[1], _dec(r[2])) for r in rows)


def _daily_tokens_by_model(db: Database, scope: Scope, period: Period) -> tuple[DailyValue, ...]:
    inner, params = token_usage_sql(scope, period)
    rows = db.fetchall(
        f"SELECT {DAY} AS day, model, SUM(input_tokens + output_tokens) FROM ({inner}) u "
        "GROUP BY day, model ORDER BY day, model NULLS LAST",
        params,
    )
    return tuple(DailyValue(r[0], r[1], _dec(r[2])) for r in rows)


def _movers(db: Database, scope: Scope, period: Period, key: str, limit: int) -> tuple[Mover, ...]:
    where, params = scope.where(period, start=period.previous().start)
    rows = db.fetchall(
        "SELECT k, cur, prev FROM (SELECT k, "
        "SUM(CASE WHEN bucket_start >= ? THEN amount_value ELSE 0 END) AS cur, "
        "SUM(CASE WHEN bucket_start < ? THEN amount_value ELSE 0 END) AS prev "
        f"FROM (SELECT {key} AS k, bucket_start, amount_value FROM {COSTS_VIEW} WHERE {where}) s GROUP BY k) t "
        "WHERE cur <> prev ORDER BY ABS(cur - prev) DESC, k NULLS LAST LIMIT ?",
        [period.start, period.start, *params, limit],
    )
    return tuple(Mover(r[0], _dec(r[1]), _dec(r[2])) for r in rows)


def build_report(db: Database, period: Period, scope: Scope = Scope(), *, top_movers: int = TOP_MOVERS) -> ReportData:
    """Run every report query for ``period`` and ``scope``."""
    total, previous = _totals(db, scope, period)
    return ReportData(
        period=period,
        scope=scope,
        currency=_currency(db, scope, period),
        total_spend=total,
        previous_spend=previous,
        spend_by_project=_spend_by(db, scope, period, "project_id"),
        spend_by_line_item=_spend_by(db, scope, period, "line_item"),
        spend_by_model=_spend_by_model(db, scope, period),
        usage_by_model=_usage_by_model(db, scope, period),
        daily_spend=_daily_spend(db, scope, period),
        daily_spend_by_project=_daily_spend_by_project(db, scope, period),
        daily_tokens_by_model=_daily_tokens_by_model(db, scope, period),
        movers_by_project=_movers(db, scope, period, "project_id", top_movers),
        movers_by_model=_movers(db, scope, period, LINE_ITEM_MODEL, top_movers),
    )


class DuckDBDatabase:
    """A :class:`Database` over a DuckDB connection."""

    dialect = "duckdb"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.connection.execute(sql, list(params)).fetchall()
        return rows


class PostgresDatabase:
    """A :class:`Database` over a psycopg 3 connection (``?`` placeholders become ``%s``)."""

    dialect = "postgresql"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), list(params))
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows
