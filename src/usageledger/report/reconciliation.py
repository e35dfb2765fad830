"""Reconciliation: do the usage endpoints and the costs endpoint tell the same story, day by day and model by model?

Token counts come from two places: the token-metered usage endpoints (``input_tokens`` + ``output_tokens``), and
the billed ``quantity`` of costs line items ``"<model>, <what was billed>"`` whose ``quantity_unit`` counts tokens
(``tokens``, or ``1000_tokens`` times 1000). Both sides are summed in SQL per org, UTC day and model, joined with a full
outer join (a day and model present on one side only is a difference too), and compared with ``Decimal``.

Moderations are free: the costs endpoint bills nothing for them, so their tokens are left out of the usage side.

A pair differs when ``|costs - usage| > tolerance * max(|usage|, |costs|)``; a tolerance of 0 reports any
difference at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final

from usageledger._amounts import parse_amount
from usageledger.errors import ParameterError
from usageledger.report.queries import (
    COSTS_VIEW,
    DAY,
    LINE_ITEM_MODEL,
    TOKEN_ENDPOINTS,
    TOKEN_UNIT_FACTORS,
    Database,
    Period,
    Scope,
    token_usage_sql,
    utc_day,
)
from usageledger.store._base import check_orgs

__all__ = ["BILLED_TOKEN_ENDPOINTS", "WHY_THEY_DIFFER", "ReconcileResult", "ReconcileRow", "reconcile"]

FREE_ENDPOINTS: Final = frozenset({"moderations"})
"""Usage endpoints whose tokens are never billed."""
BILLED_TOKEN_ENDPOINTS: Final = tuple(e for e in TOKEN_ENDPOINTS if e.name not in FREE_ENDPOINTS)

WHY_THEY_DIFFER: Final = (
    "Why usage and costs are not expected to agree exactly: they come from two different pipelines. The usage "
    "endpoints are operational data, counted close to real time from requests as they are served; the costs "
    "endpoint is financial data, the figures that end up on the invoice. Each side is revised on its own "
    "schedule (recent buckets keep changing for hours or days, so a sync taken mid-revision can catch one side "
    "updated and the other not), billed quantities can be rounded or metered in other units (for example per "
    "1,000 tokens), and some traffic is billed under a line item the usage endpoints group differently. "
    "OpenAI recommends the costs endpoint for financial figures and the usage endpoints for operational views. "
    "Small differences are normal; large or lasting ones are worth a closer look (a missing sync, a stream with "
    "other groupings, or a revision the store has not picked up yet)."
)


@dataclass(frozen=True, slots=True)
class ReconcileRow:
    org: str
    day: date
    model: str | None
    usage_tokens: Decimal | None
    """None when the usage side has no row for this day and model."""
    costs_tokens: Decimal | None
    """None when the costs side has no token line item for this day and model."""

    @property
    def difference(self) -> Decimal:
        """Costs minus usage, counting a missing side as zero."""
        return (self.costs_tokens or Decimal(0)) - (self.usage_tokens or Decimal(0))

    @property
    def relative(self) -> Decimal:
        """The difference as a fraction of the larger side (0 when both are zero)."""
        scale = max(abs(self.usage_tokens or Decimal(0)), abs(self.costs_tokens or Decimal(0)))
        return abs(self.difference) / scale if scale else Decimal(0)

    def beyond(self, tolerance: Decimal) -> bool:
        return self.difference != 0 and self.relative > tolerance


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    period: Period
    scope: Scope
    tolerance: Decimal
    rows: tuple[ReconcileRow, ...]

    @property
    def differences(self) -> tuple[ReconcileRow, ...]:
        return tuple(r for r in self.rows if r.beyond(self.tolerance))

    @property
    def usage_total(self) -> Decimal:
        return sum((r.usage_tokens or Decimal(0) for r in self.rows), Decimal(0))

    @property
    def costs_total(self) -> Decimal:
        return sum((r.costs_tokens or Decimal(0) for r in self.rows), Decimal(0))


def _costs_tokens_sql(scope: Scope, period: Period) -> tuple[str, list[object]]:
    """Billed tokens per org, day and model: grouped by line item first, so the model is parsed once per item."""
    where, params = scope.where(period)
    whens = " ".join(f"WHEN '{unit}' THEN quantity * {factor}" for unit, factor in TOKEN_UNIT_FACTORS.items())
    units = ", ".join(f"'{u}'" for u in TOKEN_UNIT_FACTORS)
    sql = (
        f"SELECT org, day, {LINE_ITEM_MODEL} AS model, SUM(tokens) AS tokens FROM ("
        f"SELECT org, {DAY} AS day, line_item, SUM(CASE quantity_unit {whens} END) AS tokens "
        f"FROM {COSTS_VIEW} WHERE {where} AND quantity_unit IN ({units}) GROUP BY 1, 2, 3) li GROUP BY 1, 2, 3"
    )
    return sql, params


def reconcile(
    db: Database, period: Period, scope: Scope = Scope(), *, tolerance: Decimal = Decimal(0)
) -> ReconcileResult:
    """Compare usage tokens with billed token quantities per org, UTC day and model over ``period``."""
    # a negative one was a bare ValueError, a string or None a TypeError from the comparison: the one amount reader
    tolerance = parse_amount(tolerance, param="tolerance", noun="a tolerance", example="0.01 (1%)", money=False)
    if tolerance >= 1:  # no relative difference exceeds 1, as the CLI's --tolerance says
        raise ParameterError("tolerance", f"{tolerance} hides every difference; give a fraction below 1, like 0.01")
    check_orgs(db, scope.org, param="scope.org")  # as build_report: an org the store does not hold is refused
    usage_rows, usage_params = token_usage_sql(scope, period, endpoints=BILLED_TOKEN_ENDPOINTS)
    costs_sql, costs_params = _costs_tokens_sql(scope, period)
    rows = db.query(
        f"WITH u AS (SELECT org, {DAY} AS day, model, SUM(input_tokens + output_tokens) AS tokens "
        f"FROM ({usage_rows}) x GROUP BY 1, 2, 3), c AS ({costs_sql}) "
        "SELECT COALESCE(u.org, c.org), COALESCE(u.day, c.day), COALESCE(u.model, c.model), u.tokens, c.tokens "
        "FROM u FULL OUTER JOIN c ON u.org = c.org AND u.day = c.day AND u.model IS NOT DISTINCT FROM c.model "
        "ORDER BY 1, 2, 3 NULLS LAST",
        [*usage_params, *costs_params],
    )
    return ReconcileResult(
        period=period,
        scope=scope,
        tolerance=tolerance,
        rows=tuple(
            ReconcileRow(
                org=r[0],
                day=utc_day(r[1]),
                model=r[2],
                usage_tokens=None if r[3] is None else Decimal(r[3]),
                costs_tokens=None if r[4] is None else Decimal(r[4]),
            )
            for r in rows
        ),
    )
