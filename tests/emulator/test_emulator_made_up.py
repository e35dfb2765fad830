"""A usage endpoint that the synthetic organisation has no hand-tuned branch for still gets activity, drawn from its
catalogue record alone (issue 10: adding an endpoint is one catalogue record plus one result model, no emulator edit).

The records here are made up and never registered: each is a :class:`~usageledger.catalogue.Endpoint` built in the
test and handed to a :class:`SyntheticSource` of its own beside the catalogue's families. Their names start with
``made_up_`` so that no catalogue endpoint (nor a branch of ``_build_leaves``, chosen by name) ever shares one.
"""

from __future__ import annotations

import re

import msgspec
import numpy as np
import pytest

from usageledger import catalogue, models
from usageledger.catalogue import Column, Endpoint, Filter
from usageledger.emulator import EmulatorConfig, results
from usageledger.emulator.activity import DAY, FAMILIES, HOUR, Family, _family, interval
from usageledger.emulator.daily import Ints
from usageledger.emulator.org import SyntheticSource
from usageledger.emulator.results import ResultBuilder

from fixtures.emulator import EMULATOR_NOW

TODAY = EMULATOR_NOW - EMULATOR_NOW % DAY
ENCODE = msgspec.json.Encoder(decimal_format="number").encode
CONFIG = EmulatorConfig(seed=11, days=40, projects=3, users=6, models=4, now=EMULATOR_NOW)
PER_KEY = (Filter("project_ids", "project_id"), Filter("user_ids", "user_id"), Filter("api_key_ids", "api_key_id"))


def made_up(name: str, group_by: tuple[str, ...], metrics: tuple[Column, ...], *filters: Filter) -> Endpoint:
    """A usage endpoint record as ``catalogue._usage`` would build it (the result type is not read here)."""
    return Endpoint(
        name=name,
        path=f"/organization/usage/{name}",
        sdk_method=name,
        result_object=f"organization.usage.{name}.result",
        result_type=models.CompletionsResult,
        filters=(*PER_KEY, *filters),
        group_by=group_by,
        metrics=metrics,
        default_group_by=("project_id",),
    )


ENDPOINTS = (
    # two atoms (a per-request amount), a closed-value filter, a bool, a model and a field nothing else names
    made_up(
        "made_up_sessions",
        ("project_id", "user_id", "api_key_id", "model", "modality", "batch", "agent_id"),
        (Column("num_sessions", "int", "metric", True), Column("audio_seconds", "int", "metric", True)),
        Filter("models", "model"),
        Filter("modalities", "modality", allowed=("audio", "text")),
        Filter("batch", "batch", kind="bool"),
    ),
    # completions' token metrics: the chat shape, with its derived sums
    made_up(
        "made_up_tokens", ("project_id", "model", "service_tier", "api_source"), catalogue.get("completions").metrics
    ),
    # one count
    made_up("made_up_calls", ("project_id", "api_key_id"), (Column("num_requests", "int", "metric", True),)),
    # a level, not a flow
    made_up(
        "made_up_storage",
        ("project_id", "vector_store_id"),
        (Column("stored_bytes", "int", "metric", True, level=True),),
    ),
)


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    """The organisation with the catalogue's families and the made-up ones."""
    assert not {e.name for e in ENDPOINTS} & set(FAMILIES)  # made up: beside the catalogue's, never instead
    families = {**FAMILIES, **{e.name: _family(e) for e in ENDPOINTS}}
    return SyntheticSource(CONFIG, EMULATOR_NOW, families=families)


def totals(
    builder: ResultBuilder, family: Family, values: Ints, present: np.ndarray, group_by: tuple[str, ...]
) -> Ints:
    """The result metrics summed over the groups of ``group_by`` (the emulator's own grouping of a day's leaves)."""
    sums, _ = builder._group_sums(family, values, present, group_by, ())
    total: Ints = sums.sum(axis=-2)
    return total


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_an_endpoint_without_a_branch_gets_activity_whose_groups_add_up(
    source: SyntheticSource, endpoint: Endpoint
) -> None:
    """Leaves with sensible field values, activity on most recent days (every metric, not only the requests), every
    grouping summing exactly to the ungrouped total, and days that are the sums of their hours on both paths."""
    family = source.families[endpoint.name]
    leaves = source.leaves(family)
    assert len(leaves) >= len(source.org.projects)
    projects = {p.id: p for p in source.org.projects}
    for leaf in leaves:
        dims = dict(zip(family.dims, leaf, strict=True))
        project = projects[str(dims["project_id"])]
        assert all(v is not None for v in leaf)
        assert dims.get("user_id", project.users[0]) in project.users
        assert dims.get("api_key_id", project.api_keys[0]) in project.api_keys
        assert dims.get("vector_store_id", project.vector_stores[0]) in project.vector_stores
        assert dims.get("model", "gpt-4o-mini-2024-07-18") in {m.name for m in source.org.chat_models}
        assert dims.get("modality", "text") in ("audio", "text")
        assert dims.get("api_source", "unlabeled") in catalogue.GROUP_FIELD_VALUES["api_source"]
        assert dims.get("service_tier", "default") in ("default", "flex", "priority", "scale")
        assert isinstance(dims.get("batch", False), bool)
        assert re.fullmatch(r"agent_[0-9a-f]{12}", str(dims.get("agent_id", "agent_000000000000")))
    builder = ResultBuilder(source)
    required = [i for i, (name, _) in enumerate(family.fields) if endpoint.metrics[i].required]
    assert [name for name, _ in family.fields] == [c.name for c in endpoint.metrics]
    busy = 0
    for day in range(TODAY - 10 * DAY, TODAY, DAY):
        got = source.day_arrays(family, day, EMULATOR_NOW)
        assert got is not None
        values, present = got
        whole = totals(builder, family, values, present, ())
        for group_by in [(g,) for g in family.dims] + [family.dims]:
            assert np.array_equal(totals(builder, family, values, present, group_by), whole), group_by
        per_leaf = interval(source, family, day, day + DAY, EMULATOR_NOW)  # the per-leaf path: hours of the day
        assert {i: list(v) for i, v in per_leaf.items()} == {
            int(i): values[i].tolist() for i in np.flatnonzero(present)
        }
        hours = [source.hour(family, day + h * HOUR, EMULATOR_NOW) for h in range(24)]
        block = source.hour_block(family, day, EMULATOR_NOW)
        assert block is not None
        for h, vectors in enumerate(hours):
            assert {int(i): block[1][h, i].tolist() for i in np.flatnonzero(block[2][h])} == {
                i: list(v) for i, v in vectors.items()
            }
        if not family.gauge:
            summed = np.zeros_like(values)
            for vectors in hours:
                for i, vec in vectors.items():
                    summed[i] += vec
            assert np.array_equal(summed, np.where(present[:, None], values, 0))
        busy += bool(whole[required].all())
    assert busy >= 7  # every required metric non-zero on most days


def test_a_made_up_endpoint_moves_nothing_of_the_others(source: SyntheticSource) -> None:
    """The catalogue's families keep their leaves, rules and days when a made-up endpoint is added (its draws are
    its own), also in the block that computes every family at once (costs)."""
    alone = SyntheticSource(CONFIG, EMULATOR_NOW)
    day = TODAY - 2 * DAY
    for family in FAMILIES.values():
        assert [x.dims for x in alone._leaves[family.name]] == [x.dims for x in source._leaves[family.name]]
        assert [x.rule for x in alone._leaves[family.name]] == [x.rule for x in source._leaves[family.name]]
        a = alone.day_block(family, day, EMULATOR_NOW, together=True)
        b = source.day_block(family, day, EMULATOR_NOW, together=True)
        assert a is not None and b is not None
        assert np.array_equal(a[2][a[1]], b[2][b[1]]) and np.array_equal(a[3][a[1]], b[3][b[1]])


def test_made_up_endpoints_bill_nothing_and_storage_is_still_billed(
    source: SyntheticSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Costs as if the catalogue held the made-up endpoints: they have no prices, so the costs are the catalogue's
    own, on the numpy path and the per-leaf one; a second level endpoint once took vector store storage's place in
    the numpy path (which billed any level as storage) and the storage amounts vanished."""
    day = TODAY - 3 * DAY
    groupings = (("project_id", "line_item"), ("line_item",), ())
    alone = ResultBuilder(SyntheticSource(CONFIG, EMULATOR_NOW))
    want = [ENCODE({"results": alone.costs(day, day + DAY, g, (), EMULATOR_NOW)}) for g in groupings]
    assert b"vector store storage" in want[1]
    monkeypatch.setattr(results, "FAMILIES", source.families)
    fast, plain = ResultBuilder(source), ResultBuilder(source)
    plain._arrays = None
    for group_by, expected in zip(groupings, want, strict=True):
        got = fast.costs(day, day + DAY, group_by, (), EMULATOR_NOW)
        assert isinstance(got, msgspec.Raw)  # the numpy path
        assert ENCODE({"results": got}) == expected, group_by
        assert ENCODE({"results": plain.costs(day, day + DAY, group_by, (), EMULATOR_NOW)}) == expected, group_by
