"""The test fixtures' own clock: a module that runs across midnight UTC gets a demo store made on the new day."""

from __future__ import annotations

import pytest

from fixtures import stores

_INNER_TESTS = """
from datetime import date

import pytest

from fixtures import stores

BUILT: list[date] = []


def fake_build(path):
    BUILT.append(stores.utc_today())
    path.write_text(stores.utc_today().isoformat())


stores._build_demo_command = fake_build  # the outer test restores both
stores.utc_today = lambda: date(2026, 12, 4)


@pytest.fixture(scope="module")
def made_from_it(demo_command_store):
    return demo_command_store.read_text()


def test_before_midnight(demo_command_store, made_from_it):
    assert BUILT == [date(2026, 12, 4)] and made_from_it == "2026-12-04"


def test_the_same_day_builds_nothing(demo_command_store, made_from_it):
    assert BUILT == [date(2026, 12, 4)] and demo_command_store.read_text() == made_from_it == "2026-12-04"
    stores.utc_today = lambda: date(2026, 12, 5)  # midnight passes after this test


def test_after_midnight_the_store_and_what_was_made_from_it_are_new(demo_command_store, made_from_it):
    assert BUILT == [date(2026, 12, 4), date(2026, 12, 5)]
    assert demo_command_store.read_text() == made_from_it == "2026-12-05"


def test_the_new_day_builds_nothing_more(demo_command_store, made_from_it):
    assert len(BUILT) == 2 and made_from_it == "2026-12-05"


def test_a_test_without_the_store_looks_at_nothing():
    assert len(BUILT) == 2
"""


def test_a_module_running_across_midnight_gets_a_store_made_on_the_new_day(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`demo_command_store` was made once per UTC day per module, judged when the module started: a module started
    before midnight kept yesterday's store (synced to yesterday) for its tests after it, and a report then warned
    that today was not synced. The fixture's clock (never the suite's) is moved between two tests of one module:
    the store, and a module fixture made from it, are made again once, and not on any other test."""
    monkeypatch.setattr(stores, "utc_today", stores.utc_today)  # the inner run moves them; restored after
    monkeypatch.setattr(stores, "_build_demo_command", stores._build_demo_command)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makeconftest('pytest_plugins = ["fixtures.stores"]\n')
    pytester.makepyfile(test_midnight=_INNER_TESTS)
    result = pytester.runpytest_inprocess(
        *("-p", "no:randomly", "-p", "no:xdist", "-p", "no:asyncio", "-p", "no:cacheprovider")
    )
    result.assert_outcomes(passed=5)
