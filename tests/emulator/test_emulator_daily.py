"""The numpy day and hour paths give exactly what the per-leaf path gives: hashes, days, hours, usage and cost rows,
amounts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usageledger import catalogue
from usageledger.emulator import Emulator, EmulatorConfig
from usageledger.emulator.activity import DAY, FAMILIES, HOUR, mix, unit
from usageledger.emulator.daily import np_mix, np_unit, split
from usageledger.emulator.org import _BLOCK_DAYS, SyntheticSource
from usageledger.emulator.results import (
    _AMOUNT_FORMS,
    _TEXT,
    ResultBuilder,
    _amount_parts,
    _amount_text,
    _tidy,
    filters_key,
)

from fixtures.emulator import EMULATOR_NOW

TODAY = EMULATOR_NOW - EMULATOR_NOW % DAY
ENCODE = msgspec.json.Encoder(decimal_format="number").encode
WORDS = st.integers(min_value=-(2**70), max_value=2**70)


@given(st.lists(WORDS, min_size=1, max_size=4))
def test_np_mix_and_unit_equal_mix_and_unit(parts: list[int]) -> None:
    arrays = [np.array([p % 2**64], dtype=np.uint64) for p in parts]
    assert int(np_mix(*parts)[0]) == mix(*parts) == int(np_mix(*arrays)[0])
    assert float(np_unit(*parts)[0]) == unit(*parts)


@given(st.one_of(st.integers(0, 10**18), st.builds(lambda c, e: c * 10**e, st.integers(0, 10**6), st.integers(0, 12))))
def test_amount_text_is_the_tidy_decimal(units: int) -> None:
    assert _amount_text(units) == str(_tidy(Decimal(units).scaleb(-12)))


@given(
    st.lists(
        st.one_of(
            st.integers(-(10**6), 10**18),
            st.builds(lambda c, e: c * 10**e, st.integers(0, 10**6), st.integers(0, 12)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_amount_parts_print_the_amount_text(amounts: list[int]) -> None:
    """The cost rows' amounts as formatted from numpy: the same text, E notation only below 1e-6 (not zero)."""
    whole, width, digits, form = _amount_parts(np.array(amounts, dtype=np.int64))
    for i, units in enumerate(amounts):
        tiny = int(form[i]) == _TEXT
        assert tiny == (units != 0 and units < 10**6)
        first = _amount_text(units).encode() if tiny else int(whole[i])
        assert _AMOUNT_FORMS[int(form[i])] % (first, int(width[i]), int(digits[i])) == _amount_text(units).encode()


@pytest.fixture(scope="module")
def builders() -> tuple[ResultBuilder, ResultBuilder, Emulator]:
    """Two builders on one organisation: the numpy day path, and the per-leaf path (the arrays switched off)."""
    emulator = Emulator(EmulatorConfig(seed=9, days=90, projects=4, users=7, models=7, now=EMULATOR_NOW))
    plain = ResultBuilder(emulator.source)
    plain._arrays = None
    fast = ResultBuilder(emulator.source)
    assert fast._arrays is not None  # the synthetic organisation has day arrays
    a = TODAY - 3 * DAY
    assert isinstance(fast.costs(a, a + DAY, ("project_id",), (), EMULATOR_NOW), msgspec.Raw)  # the numpy path
    assert isinstance(plain.costs(a, a + DAY, ("project_id",), (), EMULATOR_NOW), list)  # the per-leaf path
    return fast, plain, emulator


def _filters(emulator: Emulator, endpoint: catalogue.Endpoint, data: st.DataObject) -> dict[str, Any]:
    org = emulator.source.org  # type: ignore[attr-defined]
    choices: dict[str, list[Any]] = {
        "project_ids": [p.id for p in org.projects],
        "models": list(org.models),
        "api_key_ids": [k for p in org.projects for k in p.api_keys],
        "user_ids": list(org.users),
        "line_items": [f"{m.name}, {k}" for m in org.chat_models for k in ("input", "output", "batch cached input")],
    }
    out: dict[str, Any] = {}
    for flt in endpoint.filters:
        if flt.name in choices and data.draw(st.booleans()):
            out[flt.name] = tuple(data.draw(st.lists(st.sampled_from(choices[flt.name]), min_size=1, max_size=3)))
        elif flt.kind == "bool" and data.draw(st.booleans()):
            out[flt.name] = data.draw(st.booleans())
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_day_rows_equal_the_per_leaf_rows(builders: tuple[ResultBuilder, ResultBuilder, Emulator], data: Any) -> None:
    """Any endpoint, grouping, filter and settled day (some before the history): the same bytes either way."""
    fast, plain, emulator = builders
    endpoint = data.draw(st.sampled_from(catalogue.ENDPOINTS), label="endpoint")
    group_by = tuple(g for g in endpoint.group_by if data.draw(st.booleans()))
    fkey = filters_key(_filters(emulator, endpoint, data))
    a = TODAY - data.draw(st.integers(1, 100), label="days ago") * DAY
    if endpoint.is_costs:
        got, want = (
            fast.costs(a, a + DAY, group_by, fkey, EMULATOR_NOW),
            plain.costs(a, a + DAY, group_by, fkey, EMULATOR_NOW),
        )
    else:
        got = fast.usage(endpoint, a, a + DAY, group_by, fkey, EMULATOR_NOW)
        want = plain.usage(endpoint, a, a + DAY, group_by, fkey, EMULATOR_NOW)
    assert ENCODE({"results": got}) == ENCODE({"results": want})


def test_day_arrays_hold_the_day_vectors(builders: tuple[ResultBuilder, ResultBuilder, Emulator]) -> None:
    """The day arrays agree with the day dicts the hours are split from, leaf by leaf, for the whole history."""
    _, _, emulator = builders
    source = emulator.source
    for family in FAMILIES.values():
        for k in range(-2, 95):
            start = TODAY - k * DAY
            day = source.day_arrays(family, start, EMULATOR_NOW)  # type: ignore[attr-defined]
            assert day is not None
            values, present = day
            vectors = source.day(family, start, EMULATOR_NOW)
            assert sorted(vectors) == np.flatnonzero(present).tolist()
            assert all(list(vectors[i]) == values[i].tolist() for i in vectors)
            assert not values[~present].any()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hour_rows_equal_the_per_leaf_rows(builders: tuple[ResultBuilder, ResultBuilder, Emulator], data: Any) -> None:
    """Any usage endpoint, grouping, filter and settled hour (some before the history, some today): the numpy
    hours (every leaf's day split with numpy, summed per group for the whole day) give the per-leaf path's bytes."""
    fast, plain, emulator = builders
    endpoint = data.draw(st.sampled_from(catalogue.USAGE_ENDPOINTS), label="endpoint")
    group_by = tuple(g for g in endpoint.group_by if data.draw(st.booleans()))
    fkey = filters_key(_filters(emulator, endpoint, data))
    a = EMULATOR_NOW - EMULATOR_NOW % HOUR - data.draw(st.integers(1, 100 * 24), label="hours ago") * HOUR
    got = fast.usage(endpoint, a, a + HOUR, group_by, fkey, EMULATOR_NOW)
    want = plain.usage(endpoint, a, a + HOUR, group_by, fkey, EMULATOR_NOW)
    assert isinstance(got, msgspec.Raw) or got == []  # the numpy path answered
    assert ENCODE({"results": got}) == ENCODE({"results": want})


def test_hour_arrays_hold_the_hour_vectors() -> None:
    """Leaf by leaf, the numpy hours equal the hour dicts, on an organisation with revisions: revised hours are
    refused (``None``), settled ones agree, up to the current hour."""
    emulator = Emulator(
        EmulatorConfig(seed=3, days=20, projects=3, users=6, models=4, now=EMULATOR_NOW, revisions=True)
    )
    source = emulator.source
    refused = 0
    for family in FAMILIES.values():
        for k in range(24 * 22):
            start = EMULATOR_NOW - EMULATOR_NOW % HOUR - (k + 1) * HOUR
            got = source.hour_block(family, start, EMULATOR_NOW)  # type: ignore[attr-defined]
            if got is None:
                refused += 1
                continue
            hour, values, present = got
            vectors = source.hour(family, start, EMULATOR_NOW)
            assert sorted(vectors) == np.flatnonzero(present[hour]).tolist()
            assert all(list(vectors[i]) == values[hour, i].tolist() for i in vectors)
            assert not values[hour][~present[hour]].any()
    assert refused == len(FAMILIES) * 3 * 24  # the three days of the revision window


@given(
    st.lists(st.lists(st.integers(0, 2**31), min_size=3, max_size=3), min_size=1, max_size=6),
    st.lists(st.integers(1, 50), min_size=4, max_size=4),
)
def test_split_equals_the_per_leaf_split(vectors: list[list[int]], weights: list[int]) -> None:
    """The numpy split of many leaves equals ``SyntheticSource._split`` of each, driver zero included."""
    values = np.array(vectors, dtype=np.int64)
    cum = np.cumsum([0, *weights])
    got = split(values, np.ones(len(vectors), dtype=np.bool_), np.tile(cum, (len(vectors), 1)), 1)
    assert got is not None
    parts, present = got
    for leaf, vec in enumerate(vectors):
        want = SyntheticSource._split(tuple(vec), 1, tuple(cum.tolist()))
        assert [tuple(parts[k, leaf].tolist()) if present[k, leaf] else None for k in range(4)] == want


def test_split_refuses_what_could_leave_int64() -> None:
    """Products past int64 are refused (the per-leaf rule, in Python integers, answers), not wrapped."""
    values = np.array([[2**33, 2**31, 5]], dtype=np.int64)
    cum = np.array([[0, 1, 2]], dtype=np.int64)
    assert split(values, np.ones(1, dtype=np.bool_), cum, 2) is not None  # 2**33 times a count of 5
    values[0, 1] = 2**32  # 2**33 times a count of 2**32
    assert split(values, np.ones(1, dtype=np.bool_), cum, 1) is None


def test_blocks_hold_the_days_asked_and_grow_with_the_clock() -> None:
    """A block is computed from the first day asked of it up to the source's latest day, not the whole block; a
    clock that moves on past it, or a day before it, gets the block again, wider, with the same days (as a block
    computed in one go has them), and the cost and usage rows of the numpy path still equal the per-leaf path's."""
    config = EmulatorConfig(seed=5, days=40, projects=3, users=5, models=4, now=EMULATOR_NOW)
    source = SyntheticSource(config, EMULATOR_NOW)
    fast, plain = ResultBuilder(source), ResultBuilder(source)
    plain._arrays = None
    completions = catalogue.get("completions")
    today = TODAY // DAY
    assert today % _BLOCK_DAYS >= 3  # yesterday and the day before it are in today's block

    def same(a: int, now: int) -> None:
        for group_by in (("project_id", "line_item"), ()):
            got = fast.costs(a, a + DAY, group_by, (), now)
            assert isinstance(got, msgspec.Raw)
            assert ENCODE({"results": got}) == ENCODE({"results": plain.costs(a, a + DAY, group_by, (), now)})
        got = fast.usage(completions, a, a + DAY, ("project_id", "model"), (), now)
        want = plain.usage(completions, a, a + DAY, ("project_id", "model"), (), now)
        assert ENCODE({"results": got}) == ENCODE({"results": want})

    same(TODAY - DAY, EMULATOR_NOW)
    first, (values, _) = source._blocks[("completions", today // _BLOCK_DAYS)]
    assert (first, len(values)) == (today - 1, 2)  # yesterday and today, not the block's other 30 days
    same(TODAY - 2 * DAY, EMULATOR_NOW)  # a day before: the block from its start
    first, (values, _) = source._blocks[("completions", today // _BLOCK_DAYS)]
    assert (first, len(values)) == (today - today % _BLOCK_DAYS, today % _BLOCK_DAYS + 1)
    for k in range(1, 2 * _BLOCK_DAYS):  # the clock moves on a day at a time, over the next block's edge
        same(TODAY + (k - 1) * DAY, EMULATOR_NOW + k * DAY)
    fresh = SyntheticSource(config, EMULATOR_NOW)  # asked the last day first: its block in one go
    last = TODAY + (2 * _BLOCK_DAYS - 2) * DAY
    for family in FAMILIES.values():
        grown, once = source.day_arrays(family, last, last + DAY), fresh.day_arrays(family, last, last + DAY)
        assert grown is not None and once is not None
        assert np.array_equal(grown[0], once[0]) and np.array_equal(grown[1], once[1])


def test_tiny_amounts_print_as_the_decimal_does(builders: tuple[ResultBuilder, ResultBuilder, Emulator]) -> None:
    """An amount below 1e-6 (a few tokens of a cheap model) prints in E notation, as the per-leaf path's Decimal
    would: the numpy rows give it its own form. Forced here on one group of a kept day, on a builder of its own."""
    _, _, emulator = builders
    builder = ResultBuilder(emulator.source)
    a, group_by = TODAY - 3 * DAY, ("project_id", "line_item")
    before = msgspec.json.decode(bytes(builder.costs(a, a + DAY, group_by, (), EMULATOR_NOW)))  # type: ignore[arg-type]
    (sums,) = builder._sums.values()
    row = a // DAY - sums.first
    g = int(np.flatnonzero(sums.there[row])[0])
    sums.amounts[row, g] = 7  # 7e-12 USD
    sums.columns[row, g, :3], sums.forms[row, g] = (0, 12, 7), _TEXT
    after = builder.costs(a, a + DAY, group_by, (), EMULATOR_NOW)
    assert isinstance(after, msgspec.Raw) and b'"value":7E-12,' in bytes(after)
    rows = msgspec.json.decode(bytes(after))
    assert rows[0]["amount"]["value"] == 7e-12 and rows[1:] == before[1:]
