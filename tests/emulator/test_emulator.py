"""The emulator's handler in-process: exact roll-ups, identities, cost line items, buckets and determinism."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usageledger import catalogue
from usageledger.emulator import Emulator, EmulatorConfig
from usageledger.emulator.config import MAX_SIZE
from usageledger.emulator.org import CHAT_MODELS
from usageledger.emulator.prices import TOKEN_KINDS, unit_price

from fixtures.emulator import EMULATOR_NOW

KEY = {"Authorization": "Bearer sk-admin-test-key"}
DAY = 86400
TODAY = EMULATOR_NOW - EMULATOR_NOW % DAY
START = TODAY - 10 * DAY


@pytest.fixture(scope="module")
def api(emulator: Emulator) -> Iterator[httpx.Client]:
    """An httpx client on the shared emulator's in-process transport."""
    with httpx.Client(transport=emulator.transport(), base_url="http://emulator/v1", headers=KEY) as client:
        yield client


def get(api: httpx.Client, endpoint: str, **params: Any) -> dict[str, Any]:
    r = api.get(catalogue.get(endpoint).path, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json(parse_float=Decimal)
    return body


def metric_totals(endpoint: catalogue.Endpoint, bucket: dict[str, Any]) -> dict[str, Any]:
    if endpoint.is_costs:
        return {"amount": sum((r["amount"]["value"] for r in bucket["results"]), Decimal(0))}
    return {m.name: sum(r[m.name] for r in bucket["results"]) for m in endpoint.additive_metrics}


@pytest.mark.parametrize("endpoint", catalogue.ENDPOINTS, ids=lambda e: e.name)
def test_grouped_sums_equal_totals(api: httpx.Client, endpoint: catalogue.Endpoint) -> None:
    """Every grouping (each field alone and all together) sums exactly to the ungrouped bucket."""
    limit = endpoint.limit_for("1d").default
    total = get(api, endpoint.name, start_time=START, limit=limit)
    groupings = [[g] for g in endpoint.group_by] + [list(endpoint.group_by)]
    for group_by in groupings:
        grouped = get(api, endpoint.name, start_time=START, limit=limit, **{"group_by[]": group_by})
        assert [b["start_time"] for b in grouped["data"]] == [b["start_time"] for b in total["data"]]
        for whole, parts in zip(total["data"], grouped["data"], strict=True):
            assert metric_totals(endpoint, parts) == metric_totals(endpoint, whole), group_by
            for row in parts["results"]:
                for field in endpoint.group_by:
                    if field not in group_by:
                        assert row[field] is None
                    elif not (endpoint.is_costs and field in ("api_key_id", "user_id")):
                        assert row[field] is not None  # storage and sessions are billed to no key or user
    assert any(b["results"] for b in total["data"])


@pytest.mark.parametrize("name", ["completions", "decisions"])
def test_token_identities_hold(api: httpx.Client, name: str) -> None:
    """Reference §5 identities hold on every hourly row of completions and decisions."""
    page = get(api, name, start_time=TODAY - DAY, bucket_width="1h", limit=48, group_by="model,batch,service_tier")
    rows = [r for b in page["data"] for r in b["results"]]
    assert rows
    for r in rows:
        assert (
            r["input_tokens"] == r["input_cached_tokens"] + r["input_cache_write_tokens"] + r["input_uncached_tokens"]
        )
        assert r["input_uncached_tokens"] == r["input_text_tokens"] + r["input_audio_tokens"] + r["input_image_tokens"]
        cached = r["input_cached_text_tokens"] + r["input_cached_audio_tokens"] + r["input_cached_image_tokens"]
        assert r["input_cached_tokens"] == cached
        assert r["output_tokens"] == r["output_text_tokens"] + r["output_audio_tokens"] + r["output_image_tokens"]
        w30, w12 = r["input_cache_write_30m_tokens"], r["input_cache_write_12h_tokens"]
        assert r["input_cache_write_tokens"] == w30 + w12
        assert r["num_model_requests"] > 0


@pytest.mark.parametrize("endpoint", catalogue.USAGE_ENDPOINTS, ids=lambda e: e.name)
def test_days_are_sums_of_hours_and_hours_of_minutes(api: httpx.Client, endpoint: catalogue.Endpoint) -> None:
    """A day equals the sum of its 24 hours, and each hour the sum of its 60 minutes (storage: the closing level)."""
    day = TODAY - 2 * DAY
    daily = get(api, endpoint.name, start_time=day, end_time=day + DAY, group_by="project_id")["data"]
    hourly = get(api, endpoint.name, start_time=day, end_time=day + DAY, bucket_width="1h")["data"]
    minutes = get(api, endpoint.name, start_time=day, end_time=day + DAY, bucket_width="1m", limit=1440)["data"]
    assert len(daily) == 1 and len(hourly) == 24 and len(minutes) == 1440
    metrics = [m.name for m in endpoint.additive_metrics]
    gauge = any(m.level for m in endpoint.metrics)  # a level (storage), as the catalogue says
    for i, hour in enumerate(hourly):
        own = minutes[i * 60 : (i + 1) * 60]
        if gauge:
            assert metric_totals(endpoint, hour) == metric_totals(endpoint, own[-1])
        else:
            summed = {m: sum(metric_totals(endpoint, b)[m] for b in own) for m in metrics}
            assert summed == metric_totals(endpoint, hour)
    if gauge:
        assert metric_totals(endpoint, daily[0]) == metric_totals(endpoint, hourly[-1])
    else:
        summed = {m: sum(metric_totals(endpoint, b)[m] for b in hourly) for m in metrics}
        assert summed == metric_totals(endpoint, daily[0])


def test_cost_line_items_match_usage_tokens(api: httpx.Client) -> None:
    """Token line items bill exactly the usage tokens per day, project and model, at quantity x unit price."""
    costs = get(api, "costs", start_time=START, end_time=TODAY, group_by="project_id,line_item", limit=10)
    usage = get(api, "completions", start_time=START, end_time=TODAY, group_by="project_id,model", limit=10)
    checked = 0
    for cost_bucket, usage_bucket in zip(costs["data"], usage["data"], strict=True):
        billed: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
        for r in cost_bucket["results"]:
            model, _, kind = r["line_item"].partition(", ")
            kind = kind.removeprefix("batch ")
            if kind in TOKEN_KINDS:
                assert r["quantity_unit"] == "tokens"
                billed[(r["project_id"], model, kind)] += r["quantity"]
        for u in usage_bucket["results"]:
            for kind, (atoms, _) in TOKEN_KINDS.items():
                used = sum(u[a] for a in atoms)
                assert billed.get((u["project_id"], u["model"], kind), Decimal(0)) == used
                checked += 1
    assert checked > 100
    plain = get(api, "costs", start_time=START, end_time=START + DAY, group_by="line_item")["data"][0]["results"]
    for r in plain:
        model, _, kind = r["line_item"].partition(", ")
        if kind in TOKEN_KINDS and model.startswith("gpt-4o-mini"):
            assert r["amount"]["value"] == r["quantity"] * unit_price(model, kind)


def test_costs_without_line_item_grouping_have_no_quantity(api: httpx.Client) -> None:
    """Quantity and unit are filled only when grouped by line_item; amounts are dollars in usd."""
    rows = get(api, "costs", start_time=START, group_by="project_id")["data"][0]["results"]
    assert rows and all(r["quantity"] is None and r["quantity_unit"] is None for r in rows)
    assert all(r["amount"]["currency"] == "usd" and r["amount"]["value"] > 0 for r in rows)


def test_buckets_are_aligned_gap_free_and_first_is_partial(api: httpx.Client) -> None:
    """An unaligned start gives a partial first bucket; the rest are whole, ascending and contiguous."""
    start = START + 5 * 3600 + 17 * 60
    data = get(api, "completions", start_time=start, limit=5)["data"]
    assert data[0]["start_time"] == start and data[0]["end_time"] == START + DAY
    for prev, cur in itertools.pairwise(data):
        assert cur["start_time"] == prev["end_time"] and cur["end_time"] - cur["start_time"] == DAY
    whole = get(api, "completions", start_time=START, limit=1)["data"][0]["results"][0]["num_model_requests"]
    assert 0 < data[0]["results"][0]["num_model_requests"] < whole


def test_quiet_periods_answer_empty_results(api: httpx.Client, emulator: Emulator) -> None:
    """Before the history and on quiet days the buckets are there with results: []."""
    first = emulator.source.first_time
    before = get(api, "completions", start_time=first - 3 * DAY, end_time=first)["data"]
    assert len(before) == 3 and all(b["results"] == [] for b in before)
    history = []
    cursor = first
    while cursor < TODAY:
        history += get(api, "completions", start_time=cursor, end_time=min(TODAY, cursor + 31 * DAY), limit=31)["data"]
        cursor += 31 * DAY
    assert any(b["results"] == [] for b in history)
    minutes = get(api, "code_interpreter_sessions", start_time=TODAY - DAY, bucket_width="1m", limit=1440)["data"]
    assert any(b["results"] == [] for b in minutes) and any(b["results"] for b in minutes)


def test_default_limits_and_open_end(api: httpx.Client) -> None:
    """Without limit a page holds the width's default number of buckets; without end_time the range ends now."""
    for width, limit in (("1d", 7), ("1h", 24), ("1m", 60)):
        page = get(api, "embeddings", start_time=START, bucket_width=width)
        assert len(page["data"]) == limit and page["has_more"] is True
    assert len(get(api, "costs", start_time=START)["data"]) == 7
    tail = get(api, "embeddings", start_time=TODAY - 2 * DAY)
    assert tail["has_more"] is False and tail["next_page"] is None
    assert tail["data"][-1]["start_time"] == TODAY and tail["data"][-1]["end_time"] == TODAY + DAY


def test_three_array_spellings_are_equivalent(api: httpx.Client, emulator: Emulator) -> None:
    """group_by and filters read the same from a=x&a=y, a[]=x&a[]=y and a=x,y."""
    org = emulator.source.org  # type: ignore[attr-defined]
    projects = [org.projects[0].id, org.projects[1].id]
    path = catalogue.get("completions").path
    base = f"{path}?start_time={START}"
    repeat = api.get(f"{base}&group_by=model&group_by=batch&project_ids={projects[0]}&project_ids={projects[1]}")
    brackets = api.get(
        f"{base}&group_by[]=model&group_by[]=batch&project_ids[]={projects[0]}&project_ids[]={projects[1]}"
    )
    comma = api.get(f"{base}&group_by=model,batch&project_ids={projects[0]},{projects[1]}")
    assert repeat.status_code == 200
    assert repeat.content == brackets.content == comma.content
    everything = get(api, "completions", start_time=START)
    assert repeat.json()["data"] != everything["data"]


def test_batch_filter_partitions_usage(api: httpx.Client) -> None:
    """batch=true and batch=false split the total exactly, and match grouping by batch."""
    total = get(api, "completions", start_time=START)["data"]
    yes = get(api, "completions", start_time=START, batch="true")["data"]
    no = get(api, "completions", start_time=START, batch="false")["data"]
    for t, y, n in zip(total, yes, no, strict=True):
        count = t["results"][0]["num_model_requests"] if t["results"] else 0
        parts = [b["results"][0]["num_model_requests"] if b["results"] else 0 for b in (y, n)]
        assert sum(parts) == count and parts[0] > 0


def test_filters_restrict_rows(api: httpx.Client) -> None:
    """Every returned row matches the filters; line_items (with ", " inside) filters costs exactly."""
    rows = get(api, "images", start_time=START, group_by="size,source", sizes="1024x1024", sources="image.generation")
    assert all(
        r["size"] == "1024x1024" and r["source"] == "image.generation" for b in rows["data"] for r in b["results"]
    )
    items = [r["line_item"] for r in get(api, "costs", start_time=START, group_by="line_item")["data"][0]["results"]]
    chosen = items[:2]
    filtered = get(api, "costs", start_time=START, group_by="line_item", **{"line_items[]": chosen})
    assert sorted(r["line_item"] for r in filtered["data"][0]["results"]) == sorted(chosen)


def test_same_seed_same_bytes_other_seed_other_org() -> None:
    """The organisation is a pure function of the seed and size."""

    def body(seed: int) -> bytes:
        emulator = Emulator(EmulatorConfig(seed=seed, days=30, projects=2, now=EMULATOR_NOW))
        with httpx.Client(transport=emulator.transport(), base_url="http://e/v1", headers=KEY) as client:
            return client.get("/organization/costs", params={"start_time": START, "group_by": "project_id"}).content

    assert body(1) == body(1)
    assert body(1) != body(2)


def test_revisions_grow_recent_buckets_towards_final() -> None:
    """With revisions, a recent bucket grows as the clock moves on and settles on the unrevised value."""
    now = [float(EMULATOR_NOW)]
    config = EmulatorConfig(seed=3, days=20, projects=2, revisions=True, revision_window=3 * DAY, now=EMULATOR_NOW)
    revised = Emulator(config, clock=lambda: now[0])
    final = Emulator(EmulatorConfig(seed=3, days=20, projects=2, now=EMULATOR_NOW))

    def requests(emulator: Emulator, day: int) -> int:
        with httpx.Client(transport=emulator.transport(), base_url="http://e/v1", headers=KEY) as client:
            r = client.get("/organization/usage/completions", params={"start_time": day, "end_time": day + DAY})
            return int(r.json()["data"][0]["results"][0]["num_model_requests"])

    day = TODAY - DAY
    seen = []
    for step in range(5):
        now[0] = EMULATOR_NOW + step * DAY
        seen.append(requests(revised, day))
    assert seen == sorted(seen) and seen[0] < seen[-1]
    assert seen[-1] == requests(final, day)
    old = TODAY - 10 * DAY
    assert requests(revised, old) == requests(final, old)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_grouping_filter_and_range_adds_up(api: httpx.Client, emulator: Emulator, data: st.DataObject) -> None:
    """Property: for any endpoint, width, range, group_by subset and filter, grouped rows sum to the total."""
    endpoint = data.draw(st.sampled_from([e for e in catalogue.ENDPOINTS if e.name != "vector_stores"]))
    width = data.draw(st.sampled_from(endpoint.bucket_widths))
    step = {"1m": 60, "1h": 3600, "1d": DAY}[width]
    start = TODAY - data.draw(st.integers(1, 20 if width == "1d" else 3)) * DAY + data.draw(st.integers(0, step - 1))
    limit = data.draw(st.integers(1, min(6, endpoint.limit_for(width).maximum)))
    group_by = data.draw(st.lists(st.sampled_from(endpoint.group_by), unique=True, max_size=4))
    org = emulator.source.org  # type: ignore[attr-defined]
    params: dict[str, Any] = {"start_time": start, "bucket_width": width, "limit": limit}
    if data.draw(st.booleans()):
        params["project_ids[]"] = data.draw(st.lists(st.sampled_from([p.id for p in org.projects]), min_size=1))
    total = get(api, endpoint.name, **params)
    grouped = get(api, endpoint.name, **params, **{"group_by[]": group_by})
    for whole, parts in zip(total["data"], grouped["data"], strict=True):
        assert metric_totals(endpoint, parts) == metric_totals(endpoint, whole)
        assert len({tuple(r[g] for g in group_by) for r in parts["results"]}) == len(parts["results"])


def test_the_emulators_top_model_count_is_the_models_it_knows() -> None:
    """MAX_SIZE["models"] is len(CHAT_MODELS): a model added to the organisation raises the top with it."""
    assert MAX_SIZE["models"] == len(CHAT_MODELS)
