"""The report library refuses what the CLI refuses, in a ParameterError naming the argument: never a silent zero."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from usageledger.errors import ParameterError
from usageledger.report.queries import Period, Scope, build_report
from usageledger.report.reconcile import reconcile
from usageledger.store import BaseStore, open_store

from fixtures.emulator import EMULATOR_NOW
from fixtures.reports import ORG


@pytest.fixture
def store(demo_store: Path) -> Iterator[BaseStore]:
    """The demo store, opened read-only."""
    with open_store(demo_store, migrate=False, read_only=True) as opened:
        yield opened


def _period() -> Period:
    today = datetime.fromtimestamp(EMULATOR_NOW, UTC).date()
    return Period(today - timedelta(days=30), today)


@pytest.mark.parametrize("build", [build_report, reconcile], ids=["build_report", "reconcile"])
def test_a_scope_org_the_store_does_not_hold_is_refused_listing_the_orgs(store: BaseStore, build: object) -> None:
    """`build_report(db, period, Scope(org="nope"))` returned a report of zeros: it is refused as `--org nope` is,
    naming `scope.org` and the store's orgs; the org the store holds still reads."""
    with pytest.raises(ParameterError) as caught:
        build(store, _period(), Scope(org="nope"))  # type: ignore[operator]
    assert caught.value.param == "scope.org" and str(caught.value) == (
        f"scope.org: nope holds no data in this store (orgs: {ORG})"
    )
    assert build(store, _period(), Scope(org=ORG)) is not None  # type: ignore[operator]
