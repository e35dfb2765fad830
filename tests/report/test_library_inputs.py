"""The report library refuses what the CLI refuses, in a ParameterError naming the argument: never a silent zero."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.config import Config
from usageledger.errors import ParameterError
from usageledger.mcp_tools import LedgerTools
from usageledger.report.alerts import AlertConfig, run_checks
from usageledger.report.credit import credit_balance
from usageledger.report.forecasting import build_forecast
from usageledger.report.history import as_of, changes, deltas
from usageledger.report.keys import build_keys
from usageledger.report.queries import Period, Scope, build_report, model_matches
from usageledger.report.reconciliation import reconcile
from usageledger.report.statement import build_statements, month_statements
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


def _now() -> datetime:
    return datetime.fromtimestamp(EMULATOR_NOW, UTC)


_ORG_TAKERS: dict[str, Callable[[BaseStore, str], object]] = {
    "run_checks": lambda db, org: run_checks(db, AlertConfig(), now=_now(), org=org),
    "build_forecast": lambda db, org: build_forecast(db, _now().date(), now=_now(), org=org),
    "build_statements": lambda db, org: build_statements(db, _period().since.replace(day=1), org=org),
    "month_statements": lambda db, org: month_statements(db, _period().since.replace(day=1), org=org),
    "changes": lambda db, org: changes(db, org=org),
    "deltas": lambda db, org: deltas(db, org=org),
    "credit_balance": lambda db, org: credit_balance(db, now=_now(), org=org),
    "build_keys": lambda db, org: build_keys(db, start=_now() - timedelta(days=30), end=_now(), now=_now(), org=org),
}


@pytest.mark.parametrize("call", list(_ORG_TAKERS.values()), ids=list(_ORG_TAKERS))
def test_an_org_argument_the_store_does_not_hold_is_refused_listing_the_orgs(
    store: BaseStore, call: Callable[[BaseStore, str], object]
) -> None:
    """Each library function taking `org=` answered an org the store does not hold with zeros, "no alerts", "no
    changes" or "sync first": each refuses it through `check_orgs`, naming `org`; the store's own org still reads."""
    with pytest.raises(ParameterError) as caught:
        call(store, "nope")
    assert caught.value.param == "org" and str(caught.value) == f"org: nope holds no data in this store (orgs: {ORG})"
    call(store, ORG)


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


@pytest.mark.parametrize(
    ("name", "wanted", "matches"),
    [
        ("gpt-4o", "gpt-4o", True),
        ("gpt-4o-2024-08-06", "gpt-4o", True),
        ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06", True),
        ("gpt-4o-mini-2024-07-18", "gpt-4o", False),
        ("gpt-4o-mini-tts", "gpt-4o", False),
        ("gpt-4o", "gpt-4o-2024-08-06", False),
        (None, "gpt-4o", False),
    ],
)
def test_one_model_rule(name: str | None, wanted: str, matches: bool) -> None:
    """A model filter is the name itself or a dated snapshot of it, never a longer name that starts with it."""
    assert model_matches(name, wanted) is matches


def test_report_model_and_the_mcp_tool_read_the_same_models(store: BaseStore, demo_store: Path) -> None:
    """`report --model gpt-4o` matched the name exactly (spend 0, with a warning) while the MCP `spend` tool's
    `model="gpt-4o"` also read `gpt-4o-2024-08-06`: both now read the base name's snapshots, and agree."""
    period = _period()
    base = build_report(store, period, Scope(model="gpt-4o"))
    assert base.total_spend > 0 and [m.model for m in base.spend_by_model] == ["gpt-4o-2024-08-06"]
    assert build_report(store, period, Scope(model="gpt-4o-2024-08-06")).total_spend == base.total_spend

    @contextmanager
    def reading() -> Iterator[BaseStore]:
        with open_store(demo_store, migrate=False, read_only=True) as opened:
            yield opened

    tools = LedgerTools(reading, Config(), clock=lambda: datetime.fromtimestamp(EMULATOR_NOW, UTC))
    since, until = period.since.isoformat(), period.until.isoformat()
    assert Decimal(tools.spend(since, until, "project", model="gpt-4o")["total"]) == base.total_spend
    done = CliRunner().invoke(
        app, ["report", "--store", str(demo_store), "--model", "gpt-4o", "--since", since, "--until", until]
    )
    assert "warning" not in done.stderr, done.stderr


@pytest.mark.parametrize("field", ["org", "project", "team", "model"])
@pytest.mark.parametrize("value", ["", "  ", [], ["gpt-4o"]])
def test_an_empty_or_listed_scope_filter_is_refused_naming_it(field: str, value: object) -> None:
    """`Scope(model="")` matched no line item and the report said a spend of 0 without a word, where the CLI
    refuses `--model ''` and the client refuses `models=[]`: an empty, blank or non-string filter is refused by the
    one rule of filters (`rules`), naming it."""
    with pytest.raises(ParameterError) as info:
        Scope(**{field: value})  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{field}: ") and "\n" not in str(info.value), info.value
    assert Scope(**{field: "x"}) != Scope()


@pytest.mark.parametrize(
    ("tolerance", "said"),
    [
        (Decimal(-1), r"^tolerance: a tolerance must be zero or more, got Decimal\('-1'\)"),
        (-1, r"^tolerance: a tolerance must be zero or more, got -1"),
        (None, r"^tolerance: expected an amount \(a number or a string such as \"12.50\"\), got None$"),
        ("a lot", r"^tolerance: 'a lot' is not an amount \(the number alone: .*\); write it like 0.01 \(1%\)$"),
        (5, r"^tolerance: 5 hides every difference; give a fraction below 1, like 0.01$"),
    ],
)
def test_a_reconcile_tolerance_of_the_wrong_kind_is_a_parameter_error(
    store: BaseStore, tolerance: object, said: str
) -> None:
    """`reconcile(db, period, tolerance=-1)` was a bare ValueError and `tolerance="0.5"` or `None` a TypeError from a
    comparison, outside the package's one error tree, and `tolerance=5` hid every difference: each is a ParameterError
    naming tolerance, as `--tolerance` is; a fraction given as a float or a string is read as the decimal it says."""
    with pytest.raises(ParameterError, match=said):
        reconcile(store, _period(), tolerance=tolerance)  # type: ignore[arg-type]
    assert reconcile(store, _period(), tolerance=0.05).tolerance == Decimal("0.05")  # type: ignore[arg-type]
    assert reconcile(store, _period(), tolerance="0.05").tolerance == Decimal("0.05")  # type: ignore[arg-type]


_MONTH = datetime.fromtimestamp(EMULATOR_NOW, UTC).date().replace(day=1)


@pytest.mark.parametrize(
    ("call", "param", "said"),
    [
        (
            lambda db: build_forecast(str(db), _MONTH, now=_now()),
            "db",
            "expected an open store (open_store(url)), got str",
        ),
        (lambda db: build_statements(str(db), _MONTH), "db", "expected an open store"),
        (lambda db: month_statements(str(db), _MONTH), "store", "expected an open store"),
        (lambda db: run_checks(str(db), AlertConfig(), now=_now()), "db", "expected an open store"),
        (lambda db: credit_balance(str(db), now=_now()), "db", "expected an open store"),
        (lambda db: build_keys(str(db), start=_now(), end=_now(), now=_now()), "db", "expected an open store"),
        (lambda db: build_forecast(db, _MONTH, now=_now(), budget="lots"), "budget", "'lots' is not an amount"),
        (lambda db: build_forecast(db, _MONTH, now=_now(), budget=float("nan")), "budget", "nan is not a finite"),
        (lambda db: build_forecast(db, _MONTH, now=_now(), budget=-5), "budget", "must be zero or more"),
        (lambda db: build_forecast(db, _MONTH, now=_now(), by="owner"), "by", "cannot forecast by 'owner'"),
        (lambda db: build_forecast(db, _MONTH, now=_now(), teams=["search"]), "teams", "expected a mapping"),
        (lambda db: build_statements(db, _MONTH, by="owner"), "by", "unknown owner 'owner'"),
        (lambda db: build_statements(db, _MONTH, allocate="even"), "allocate", "is not an option of the statements"),
        (lambda db: build_statements(db, _MONTH, teams="search"), "teams", "expected a mapping"),
        (lambda db: month_statements(db, _MONTH, today="2026-12-04"), "today", "expected a date, got str"),
        (lambda db: run_checks(db, {"daily_budget": 5}, now=_now()), "cfg", "expected an AlertConfig, got dict"),
        (lambda db: run_checks(db, AlertConfig(), now=_now(), stale_keys=90), "stale_keys", "90 has no unit"),
        (lambda db: run_checks(db, AlertConfig(), now=_now(), budget_day="yesterday"), "budget_day", "as a day"),
        (lambda db: run_checks(db, AlertConfig(), now=_now(), forecast_over=-5), "forecast_over", "zero or more"),
        (lambda db: run_checks(db, AlertConfig(), now=_now(), credit_below="x"), "credit_below", "is not an amount"),
        (lambda db: build_keys(db, start="30d", end=_now(), now=_now()), "start", "expected a datetime, got str"),
    ],
)
def test_a_report_argument_of_the_wrong_kind_is_a_parameter_error_naming_it(
    store: BaseStore, call: Callable[[BaseStore], object], param: str, said: str
) -> None:
    """The store's path where the store goes, a dict where an AlertConfig goes, `stale_keys=90`, `budget="lots"`,
    `teams=["search"]`: each was an AttributeError or a TypeError from deep inside (`'str' object has no attribute
    'query'`), outside the one error tree; `by="owner"` and an option misspelt were silently ignored. Each is now a
    ParameterError naming the argument, read by the package's one reader of its kind."""
    with pytest.raises(ParameterError) as caught:
        call(store)
    assert caught.value.param == param and said in str(caught.value), str(caught.value)


def test_the_report_readers_take_the_friendlier_forms_their_flags_take(store: BaseStore) -> None:
    """What the CLI's flags take is read the same from Python: a span as "90d", a day as "2026-12-01", an amount as
    5.0 or "5", a naive datetime as UTC, each to what the typed form gives."""
    now = _now()
    typed = run_checks(store, AlertConfig(), now=now, stale_keys=timedelta(days=90), budget_day=now.date())
    friendly = run_checks(store, AlertConfig(), now=now, stale_keys="90d", budget_day=now.date().isoformat())
    assert (friendly.budget_day, friendly.checks, friendly.alerts) == (typed.budget_day, typed.checks, typed.alerts)
    assert run_checks(store, AlertConfig(), now=now, forecast_over="500").checks == (
        run_checks(store, AlertConfig(), now=now, forecast_over=Decimal(500)).checks
    )
    assert build_forecast(store, _MONTH, now=now, budget="1000.50").budget == Decimal("1000.50")
    naive = now.replace(tzinfo=None)
    keys = build_keys(store, start=naive - timedelta(days=30), end=naive, now=naive)
    assert (
        keys.start == now - timedelta(days=30)
        and keys.keys == build_keys(store, start=now - timedelta(days=30), end=now, now=now).keys
    )
