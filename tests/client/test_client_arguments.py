"""Library arguments are checked up front, with errors that name the parameter, never a TypeError from deep inside."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from usageledger import AsyncClient, Client, UsageApi
from usageledger.emulator import Emulator
from usageledger.errors import ConfigError, ParameterError

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_retries", "2"),
        ("max_retries", -1),
        ("max_retries", 1.5),
        ("max_retries", True),
        ("timeout", "x"),
        ("timeout", -1),
        ("timeout", 0),
        ("timeout", float("nan")),
    ],
)
@pytest.mark.parametrize("face", [Client, AsyncClient])
def test_bad_client_options_name_the_option(face: Any, option: str, value: object) -> None:
    """A max_retries or timeout of the wrong type or range is a ConfigError naming it, before any request."""
    with pytest.raises(ConfigError, match=rf"^{option} must be"):
        face(FAKE_ADMIN_KEY, "http://127.0.0.1:9/v1", **{option: value})


def test_usage_api_checks_its_options_too() -> None:
    """The seed-style face refuses a negative timeout the same way."""
    with pytest.raises(ConfigError, match=r"^timeout must be"):
        UsageApi(access_token=FAKE_ADMIN_KEY, base_url="http://127.0.0.1:9/v1", timeout=-1)  # type: ignore[call-arg]


def test_good_options_still_pass() -> None:
    """Whole retries and a positive timeout, int or float, are accepted."""
    Client(FAKE_ADMIN_KEY, "http://127.0.0.1:9/v1", max_retries=0, timeout=2).close()
    Client(FAKE_ADMIN_KEY, "http://127.0.0.1:9/v1", max_retries=3, timeout=0.5).close()


def test_group_by_none_means_no_grouping(emulator_url: str) -> None:
    """group_by=None is no grouping (as omitting it is), not a TypeError."""
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
        plain = client.query("costs", start_time="2026-11-01", end_time="2026-11-03").buckets()
        none = client.query("costs", start_time="2026-11-01", end_time="2026-11-03", group_by=None).buckets()  # type: ignore[arg-type]
    assert [b.results for b in none] == [b.results for b in plain] and len(plain) == 2


@pytest.mark.parametrize("value", [5, [None], ["project_id", 3]])
def test_group_by_of_the_wrong_type_names_group_by(value: object) -> None:
    """A group_by that is not a name or a list of names is a ParameterError naming group_by."""
    with Client(FAKE_ADMIN_KEY, "http://127.0.0.1:9/v1") as client, pytest.raises(ParameterError, match=r"^group_by:"):
        client.query("costs", start_time="2026-11-01", end_time="2026-11-03", group_by=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", "model,", ",model", ["model", ""], ["model", " "]])
def test_an_empty_group_by_name_is_refused_not_dropped(value: object) -> None:
    """`group_by="model,"` or `["model", ""]` dropped the blank and `""` meant no grouping, where the CLI's
    `--group-by` and every filter refuse a blank: it is a ParameterError naming group_by (sync and async)."""
    for face in (Client, AsyncClient):
        client = face(FAKE_ADMIN_KEY, "http://127.0.0.1:9/v1")
        with pytest.raises(ParameterError, match=r"^group_by: .* holds an empty field name"):
            client.query("costs", start_time="2026-11-01", end_time="2026-11-03", group_by=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1, {"a": "b"}, b"x", ["x"]])
def test_a_misspelt_filter_is_named_unknown_whatever_its_value(value: object) -> None:
    """`page("costs", foo=1)` said "foo: expected a list of strings"; an unknown filter is named as such first, with
    the endpoint's filters (sync and async, page and query)."""
    for face in (Client, AsyncClient):
        client = face(FAKE_ADMIN_KEY, "http://127.0.0.1:9/v1")
        for call in (client.page, client.query):
            with pytest.raises(ParameterError, match=r"^foo: Unrecognized request argument supplied: foo\. ") as info:
                call("costs", start_time="2026-11-01", end_time="2026-11-03", foo=value)
            assert info.value.allowed == ("project_ids", "api_key_ids", "line_items")


def test_an_unknown_filter_is_refused_in_the_apis_order(emulator: Emulator) -> None:
    """The rule above first refused `foo=` before everything else, so `bucket_width="0", foo=1` named foo where the
    API (and the emulator) name bucket_width: found by the fuzz parity test. The client and the emulator agree."""
    with (
        Client(FAKE_ADMIN_KEY, "http://127.0.0.1/v1", transport=emulator.transport()) as client,
        pytest.raises(ParameterError, match=r"^bucket_width: ") as info,
    ):
        client.page("completions", start_time="2026-11-01", bucket_width="0", foo=1)
    with httpx.Client(transport=emulator.transport(), headers={"Authorization": f"Bearer {FAKE_ADMIN_KEY}"}) as raw:
        sent = raw.get(
            "http://127.0.0.1/v1/organization/usage/completions",
            params={"start_time": 1793491200, "bucket_width": "0", "foo": "1"},
        )
    assert sent.status_code == 400 and sent.json()["error"]["param"] == info.value.param


def test_an_empty_page_cursor_is_refused_before_sending() -> None:
    """`page=""` went out and came back as the API's 400 "invalid page"; it is refused before any request."""
    with (
        Client(FAKE_ADMIN_KEY, "http://127.0.0.1:9/v1") as client,
        pytest.raises(ParameterError, match=r"^page: is empty"),
    ):
        client.page("costs", start_time="2026-11-01", page="")


@pytest.mark.parametrize("value", [0, -1, "5", float("nan")])
def test_a_per_call_timeout_is_checked_when_the_call_is_made(value: object, emulator_url: str) -> None:
    """A bad per-call timeout= passed through a lazy query (sync or async), an async page or fetch_range (which
    return a coroutine) and a directory list, and was refused only when a request went out, if ever. It is a
    ConfigError naming timeout at the call, as the constructor's is; a good one still fetches."""
    sync = Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW)
    twin = AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW)
    calls = [
        lambda: sync.costs(start_time="3d", timeout=value),  # type: ignore[arg-type]
        lambda: sync.query("costs", start_time="3d", timeout=value),  # type: ignore[arg-type]
        lambda: twin.completions(start_time="3d", timeout=value),  # type: ignore[arg-type]
        lambda: twin.page("costs", start_time="3d", timeout=value),  # type: ignore[arg-type]
        lambda: twin.fetch_range("costs", start_time="3d", timeout=value),  # type: ignore[arg-type]
        lambda: sync.projects(timeout=value),  # type: ignore[arg-type]
        lambda: twin.users(timeout=value),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=r"^timeout must be a positive number of seconds"):
            call()
    with sync:
        assert sync.costs(start_time="3d", timeout=2.5).buckets()


@pytest.mark.parametrize("clock", [datetime.now, time.time_ns, lambda: None, lambda: "1795176000", lambda: True])
def test_a_clock_that_does_not_give_unix_seconds_is_named(clock: Any) -> None:
    """`clock=datetime.now` raised a TypeError from deep inside and `clock=time.time_ns` was blamed on start_time
    ("'2d' is after the year 9999"): both are a ConfigError naming clock, before any request (sync and async)."""
    for face in (Client, AsyncClient):
        client = face(FAKE_ADMIN_KEY, "http://127.0.0.1:9/v1", clock=clock)
        with pytest.raises(ConfigError, match=r"^clock must return Unix seconds \(as time\.time does\), got "):
            client.query("costs", start_time="2d")
