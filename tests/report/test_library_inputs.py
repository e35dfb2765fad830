"""The report library refuses what the CLI refuses, in a ParameterError naming the argument: never a silent zero."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from usageledger.errors import ParameterError
from usageledger.report.history import as_of
from usageledger.report.queries import Period, Scope, build_report
from usageledger.report.reconcile import reconcile
from usageledger.store import BaseStore, open_store
from usageledger.store.history import as_of as store_as_of

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


@pytest.mark.parametrize("reversed_", [True, False], ids=["reversed", "empty"])
def test_as_of_refuses_buckets_given_reversed_or_empty(store: BaseStore, reversed_: bool) -> None:
    """`as_of(store, when, buckets=(end, start))` read as a store with no rows: it is refused naming `buckets`, in
    the library's face and the store's; the right order still reads rows."""
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    wrong = (end, start) if reversed_ else (start, start)
    with pytest.raises(ParameterError) as caught, as_of(store, "now", buckets=wrong):
        pass
    assert caught.value.param == "buckets" and "pass an end after the start" in str(caught.value)
    seconds = (int(wrong[0].timestamp()), int(wrong[1].timestamp()))
    with pytest.raises(ParameterError, match=r"^buckets: "), store_as_of(store, EMULATOR_NOW, seconds):
        pass
    with as_of(store, "now", buckets=(start, end.replace(tzinfo=None))) as past:  # a naive end is UTC
        assert past.query("SELECT count(*) FROM costs")[0][0] > 0
