"""The library used the way a data engineer in a hurry uses it in a notebook: each slip gets a one-line usageledger
error naming the parameter and the fix, never a bare exception from deep inside, never a silent "everything"."""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import pickle
import re
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import numpy as np
import pytest

from usageledger import AsyncClient, Client, RetryPolicy, UsageApi
from usageledger.emulator import Emulator
from usageledger.errors import BaseURLError, ClientClosedError, ConfigError, NotFoundError, ParameterError
from usageledger.timeutil import MAX_UNIX, to_unix

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW


@pytest.fixture(autouse=True)
def _ended_loops_collected() -> Iterator[None]:
    """Several tests here use an AsyncClient across `asyncio.run` calls, as a careless script does: a pool of an ended
    loop cannot be closed in it, and its sockets go with the collector. Collected at each test's end, its warnings
    ignored, they are never an unraisable warning that fails a later test of the worker (it failed
    `test_directory_store.py` in one full run)."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


NOWHERE = "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("value", ["true", "false", 1, 0, ["true"]])
@pytest.mark.parametrize("face", [Client, AsyncClient])
def test_a_boolean_filter_given_anything_but_a_boolean_says_so(face: Any, value: object) -> None:
    """`batch="false"` was refused as "Invalid value for 'batch': ('false',)" (a tuple the user never wrote) and
    `batch=0` as "expected a list of strings", the wrong advice for a true/false filter: both name batch and ask for
    True or False, through page, query and the typed method."""
    client = face(FAKE_ADMIN_KEY, NOWHERE)
    calls = [
        lambda: client.page("completions", start_time="2026-11-01", batch=value),
        lambda: client.query("completions", start_time="2026-11-01", batch=value),
        lambda: client.completions(start_time="2026-11-01", batch=value),
    ]
    for call in calls:
        with pytest.raises(ParameterError, match=rf"^batch: expected true or false, got {re.escape(repr(value))}$"):
            call()


def test_the_seed_face_says_the_same_of_a_boolean_filter(emulator: Emulator) -> None:
    """`UsageApi.usage_completions(batch="false")` is refused the same way, before any request."""
    with UsageApi(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), clock=lambda: EMULATOR_NOW) as api:
        with pytest.raises(ParameterError, match=r"^batch: expected true or false, got 'false'$"):
            api.usage_completions(start_time="2026-11-01", batch="false")  # type: ignore[arg-type]
        assert api.usage_completions(start_time="2026-11-01", end_time="2026-11-03", batch=False).data


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], r"is empty; give at least one value, or leave emails out for no filter"),
        ((), r"is empty; give at least one value"),
        (5.0, r"expected a list of strings, got 5\.0"),
    ],
)
def test_an_empty_or_shapeless_directory_filter_is_refused_not_dropped(
    emulator: Emulator, value: object, message: str
) -> None:
    """`client.users(emails=[])` sent no filter and listed every user of the organization, and `emails=5.0` was a
    TypeError from deep inside: the directory's list parameters follow the usage filters' one rule (sync, async and
    the seed's face); a real list still filters."""
    client = Client(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport())
    twin = AsyncClient(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport())
    api = UsageApi(client=client)
    calls = [
        lambda: list(client.users(emails=value)),  # type: ignore[arg-type]
        lambda: twin.users(emails=value).items(),  # type: ignore[arg-type]
        lambda: api.list_users(emails=value),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(ParameterError, match=rf"^emails: {message}"):
            call()
    email = next(iter(client.users())).email
    assert [user.email for user in client.users(emails=email)] == [email]


def test_numpys_integers_are_whole_numbers(emulator: Emulator) -> None:
    """A value read from a DataFrame is numpy's (`df["bucket_start"].max()` is an `int64`, which is no `int`):
    start_time, end_time, limit, max_retries, max_concurrency, timeout and a directory limit refused it as "expected
    an integer, got np.int64(3)", which read as the very thing asked for. It is taken as the number it is."""
    start, end = np.int64(1793491200), np.int64(1793664000)  # 2026-11-01 and 2026-11-03
    with Client(
        FAKE_ADMIN_KEY,
        NOWHERE,
        transport=emulator.transport(),
        clock=lambda: EMULATOR_NOW,
        max_retries=np.int64(1),
        max_concurrency=np.int32(2),
        timeout=np.int64(5),
    ) as client:
        assert (client.retry.max_retries, client.max_concurrency, client.timeout.read) == (1, 2, 5.0)
        assert type(client.retry.max_retries) is int and type(client.max_concurrency) is int
        page = client.page("costs", start_time=start, end_time=end, limit=np.int64(1))
        assert [b.start_time for b in page.data] == [1793491200] and page.has_more
        assert len(client.query("costs", start_time=start, end_time=end).buckets()) == 2
        assert len(client.projects(limit=np.int64(1)).pages().__next__().data) == 1
    assert to_unix(np.uint32(1793491200)) == 1793491200 and to_unix(np.float32(1.5e9)) == 1500000000


def test_a_clock_giving_numpys_seconds_is_a_clock(emulator: Emulator) -> None:
    """`clock=lambda: np.int64(...)` (a frozen now read from a DataFrame) was refused as "clock must return Unix
    seconds, got np.int64(1795176000)"; it is the same now as the plain int."""
    with Client(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), clock=lambda: np.int64(EMULATOR_NOW)) as one:
        assert repr(one.query("costs", start_time="2d")) == "Query('costs', [1795003200, 1795176000), 1d, 1 window)"


@pytest.mark.parametrize("value", [np.bool_(True), np.float64(2.0), "3"])
def test_what_is_not_a_whole_number_is_still_refused(value: object) -> None:
    """numpy's bool and a float or text are no count: refused naming limit, as before."""
    with Client(FAKE_ADMIN_KEY, NOWHERE) as client, pytest.raises(ParameterError, match=r"^limit: expected an"):
        client.page("costs", start_time="2026-11-01", limit=value)  # type: ignore[arg-type]


def test_pandas_nat_is_named_not_a_value_error() -> None:
    """`start_time=pd.NaT` (an empty column's max) raised "NaTType does not support timestamp" from deep inside."""
    import pandas as pd

    with Client(FAKE_ADMIN_KEY, NOWHERE) as client:
        for param in ("start_time", "end_time"):
            times = {"start_time": "2026-11-01", param: pd.NaT}
            with pytest.raises(ParameterError, match=rf"^{param}: NaT names no time; pass a datetime"):
                client.query("costs", **times)


def test_the_last_microsecond_of_9999_is_still_9999() -> None:
    """`datetime.max` (9999-12-31T23:59:59.999999) went through a float timestamp, rounded up to the year 10000 and
    was refused as "after the year 9999; pass Unix seconds, not milliseconds"; it is the last second a time can
    name, and a datetime really after 9999 is told to pass an earlier time, not to mind its milliseconds."""
    assert to_unix(datetime.max) == MAX_UNIX
    assert to_unix(datetime(2026, 11, 1, 0, 0, 0, 999999, tzinfo=UTC)) == 1793491200
    late = datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))
    with pytest.raises(ParameterError, match=r"^start_time: .* is after the year 9999; pass an earlier time$"):
        to_unix(late)
    with pytest.raises(ParameterError, match=r"not milliseconds$"):
        to_unix(MAX_UNIX * 1000)


def test_a_negative_fraction_of_a_second_is_before_1970() -> None:
    """`start_time=-0.5` was truncated to 0 and sent as 1970-01-01; it is half a second before it, and refused."""
    with pytest.raises(ParameterError, match=r"^start_time: -0\.5 is before 1970"):
        to_unix(-0.5)
    assert to_unix(0.5) == 0 and to_unix(1793491200.9) == 1793491200


def test_a_client_copies_and_deep_copies_as_with_options_does(emulator: Emulator) -> None:
    """`copy.copy(client)` and `copy.deepcopy` (of a client, a query, or a notebook's dict of settings holding one)
    were refused as "Client holds the admin key and is not picklable", though nothing was pickled. A copy is
    `with_options()`: the same settings and connections; closing it leaves the original open. Pickling is still
    refused, as the key must not leave the process that way."""
    client = Client(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), clock=lambda: EMULATOR_NOW, max_retries=1)
    api = UsageApi(client=client)
    query = client.query("costs", start_time="2026-11-01", end_time="2026-11-03")
    copies = [copy.copy(client), copy.deepcopy(client), copy.deepcopy({"client": client})["client"]]
    for again in copies:
        assert type(again) is Client and again is not client and repr(again) == repr(client)
        again.close()
    for seed in (copy.copy(api), copy.deepcopy(api)):
        assert seed.client is not client
        seed.close()
    assert len(copy.deepcopy(query).buckets()) == 2
    assert len(query.buckets()) == 2 and api.usage_costs(start_time="2026-11-01", end_time="2026-11-03").data
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(client)


def test_an_async_client_copies_too(emulator: Emulator) -> None:
    """The async twin: a copy fetches, and closing it leaves the original open."""
    client = AsyncClient(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), clock=lambda: EMULATOR_NOW)

    async def run() -> tuple[int, int]:
        again = copy.deepcopy(client)
        got = len(await again.fetch_range("costs", start_time="2026-11-01", end_time="2026-11-03"))
        await again.aclose()
        return got, len(await client.fetch_range("costs", start_time="2026-11-01", end_time="2026-11-03"))

    assert asyncio.run(run()) == (2, 2)


def test_an_unknown_id_is_not_blamed_on_the_base_url(emulator: Emulator) -> None:
    """`client.project("proj_nope")` under a right base URL said "No project found with ID 'proj_nope'. Check the base
    URL: it must end in /v1", sending the user to fix what was right. The API's not_found names the ID as the thing
    to check, for a retrieve and for a list under an unknown project (sync and async)."""
    client = Client(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), max_retries=0)
    twin = AsyncClient(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), max_retries=0)
    calls = [
        lambda: client.project("proj_nope"),
        lambda: list(client.project_users("proj_nope")),
        lambda: asyncio.run(twin.project("proj_nope")),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as info:
            call()
        assert info.value.hint.startswith("Check the ID: ") and "/v1" not in str(info.value)
        assert "proj_nope" in str(info.value)


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_base_url_is_refused_not_read_as_the_public_api(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    """`base_url=os.environ.get("EMULATOR_URL", "")` sent the admin key to https://api.openai.com/v1 (or to
    OPENAI_BASE_URL) without a word, where `api_key=""` is refused: a blank base URL given is refused as blank, by
    every face; leaving it out (None) still means the variable, else the public API."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    faces = [
        lambda: Client(FAKE_ADMIN_KEY, blank),
        lambda: AsyncClient(FAKE_ADMIN_KEY, base_url=blank),
        lambda: UsageApi(FAKE_ADMIN_KEY, blank),
    ]
    for face in faces:
        with pytest.raises(BaseURLError, match=r"^base_url=: the base URL is blank; give one ending in /v1"):
            face()
    assert Client(FAKE_ADMIN_KEY).base_url == "http://127.0.0.1:9/v1"
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert Client(FAKE_ADMIN_KEY, None).base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize("with_env", [False, True])
def test_the_seed_face_names_api_key_as_its_own_access_token(monkeypatch: pytest.MonkeyPatch, with_env: bool) -> None:
    """`UsageApi(api_key=...)` (Client's spelling) was ignored and "no admin API key: ... pass access_token=" said,
    as if no key were given; with OPENAI_ADMIN_KEY set it was a TypeError from `_ClientBase.__init__`. It is a
    ConfigError naming access_token=, the seed's name for the key."""
    if with_env:
        monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    with pytest.raises(ConfigError, match=r"^UsageApi takes the admin key as access_token= .*, not api_key=: pass"):
        UsageApi(api_key=FAKE_ADMIN_KEY, base_url=NOWHERE)  # type: ignore[call-arg]


@pytest.mark.parametrize("name", ["acess_token", "timout", "maxretries"])
def test_the_seed_face_names_a_misspelt_option(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A misspelt option went on to `Client(...)` and was a TypeError naming `_ClientBase.__init__` (or, for the key's
    name, "no admin API key"); it is a ConfigError naming it as passed, with what UsageApi takes. Client's own
    options beside its settings (max_concurrency=, http_client=) still pass."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    with pytest.raises(ConfigError, match=rf"^UsageApi got an unknown option {name}=; it takes access_token=, "):
        UsageApi(base_url=NOWHERE, **{name: 1})
    with UsageApi(base_url=NOWHERE, max_concurrency=2) as api:  # type: ignore[call-arg]
        assert api.client.max_concurrency == 2


@pytest.mark.parametrize("endpoint", [["costs"], ("costs", "completions"), {"costs"}, b"costs", 7])
def test_an_endpoint_that_is_no_name_is_named(endpoint: object) -> None:
    """`client.query(["costs"], ...)` was "unhashable type: 'list'" from the catalogue: a ParameterError naming
    endpoint, with the names it takes."""
    with Client(FAKE_ADMIN_KEY, NOWHERE) as client, pytest.raises(ParameterError) as info:
        client.query(endpoint, start_time="2026-11-01")  # type: ignore[arg-type]
    assert str(info.value).startswith("endpoint: expected a usage endpoint's name such as 'costs', got ")
    assert info.value.allowed is not None and "costs" in info.value.allowed


def test_group_by_takes_any_collection_of_names_as_filters_do(emulator: Emulator) -> None:
    """A filter takes any collection of strings, but `group_by={"model"}`, a generator or a numpy array (a pandas
    column's `.unique()`) was refused as "pass a field name or a list of field names". Each groups as the list does."""
    import pandas as pd

    with Client(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), clock=lambda: EMULATOR_NOW) as client:

        def models(group_by: object) -> list[str | None]:
            page = client.page("completions", start_time="2026-11-01", end_time="2026-11-02", group_by=group_by)  # type: ignore[arg-type]
            return sorted(r.model or "" for b in page.data for r in b.results)  # type: ignore[union-attr]

        grouped = models(["model"])
        assert len(grouped) > 1 and all(grouped)
        for value in ({"model"}, (name for name in ["model"]), np.array(["model"]), pd.Index(["model"])):
            assert models(value) == grouped
        query = client.query("completions", start_time="2026-11-01", end_time="2026-11-02", group_by={"model"})
        assert sorted(row["model"] for row in query.rows()) == grouped
    for bad in ({"model": 1}, b"model", 5):
        with Client(FAKE_ADMIN_KEY, NOWHERE) as client, pytest.raises(ParameterError, match=r"^group_by: pass a"):
            client.query("completions", start_time="2026-11-01", group_by=bad)  # type: ignore[arg-type]


def _two_days(client: AsyncClient) -> int:
    async def fetch() -> int:
        return len(await client.fetch_range("costs", start_time="2026-11-01", end_time="2026-11-03"))

    return asyncio.run(fetch())


def test_an_async_copy_serves_one_event_loop_after_another(emulator_url: str) -> None:
    """An AsyncClient renews its own pool in each new event loop (`asyncio.run` twice), but its `with_options()`
    copy was handed that pool as a given http_client=, never renewed: in a second `asyncio.run` it was "RuntimeError:
    Event loop is closed" from deep inside. A copy sends through its original's pool, whichever that holds."""
    client = AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW, max_retries=0)
    twin = client.with_options(max_retries=1)
    deep = copy.deepcopy(client)
    assert twin.retry.max_retries == 1 and client.retry.max_retries == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # an ended loop's sockets, closed by the collector
        assert [_two_days(c) for c in (twin, twin, client, twin, deep, deep)] == [2] * 6
        # The last loop's pool is closed in a loop, as test_client_async does: left to a later collection, its
        # sockets were an unraisable warning that failed whichever test of the worker came next.
        asyncio.run(client.aclose())
        del client, twin, deep
        gc.collect()


def test_a_given_async_pool_of_an_ended_loop_is_named() -> None:
    """An `http_client=` is the caller's and is kept; used in a second `asyncio.run` it was httpx's bare
    "RuntimeError: Event loop is closed". It is a ClientClosedError saying why and what to do."""
    from usageledger.emulator import run_server

    with run_server(_small_emulator()) as url:
        given = httpx.AsyncClient()
        client = AsyncClient(FAKE_ADMIN_KEY, url, clock=lambda: EMULATOR_NOW, http_client=given, max_retries=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # the ended loop's sockets, closed by the collector
            assert _two_days(client) == 2
            with pytest.raises(ClientClosedError, match=r"^the http_client= \(or transport=\) this client was given"):
                _two_days(client)
            del given, client
            gc.collect()


def test_a_copy_of_a_closed_client_says_its_original_was_closed(emulator: Emulator) -> None:
    """A copy used after its original was closed said "the http_client= this client was given is closed", though
    the user gave none: it names the client it was copied from."""
    client = Client(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), clock=lambda: EMULATOR_NOW)
    twin = client.with_options(max_retries=0).with_options(max_retries=1)
    client.close()
    with pytest.raises(ClientClosedError, match=r"^the client this one was copied from \(with_options\(\), copy"):
        twin.page("costs", start_time="2026-11-01")


def _small_emulator() -> Emulator:
    from usageledger.emulator import EmulatorConfig

    return Emulator(EmulatorConfig(seed=7, days=30, projects=1, users=2, models=2, now=EMULATOR_NOW))


CANARY = "sk-admin-" + "Canary7" * 4


def test_a_key_given_where_an_id_goes_is_refused_before_it_reaches_a_url(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """`api_key_ids=[os.environ["OPENAI_ADMIN_KEY"]]` (the key for its ID) or `client.admin_api_key(key)` put the key
    in the request line, which httpx logs at INFO and the retry log at DEBUG, in clear. A key-shaped value where an
    ID goes is a ParameterError naming the parameter, before any request; no log line holds it."""
    caplog.set_level(logging.DEBUG)
    client = Client(CANARY, NOWHERE, transport=emulator.transport(), clock=lambda: EMULATOR_NOW)
    twin = AsyncClient(CANARY, NOWHERE, transport=emulator.transport(), clock=lambda: EMULATOR_NOW)
    calls = {
        "api_key_ids": lambda: client.page("completions", start_time="2026-11-01", api_key_ids=[CANARY]),
        "project_ids": lambda: client.costs(start_time="2026-11-01", project_ids=f"  {CANARY}"),
        "user_ids": lambda: twin.query("completions", start_time="2026-11-01", user_ids=CANARY),
        "key_id": lambda: client.admin_api_key(CANARY),
        "project_id": lambda: list(client.project_users(CANARY)),
        "emails": lambda: list(client.users(emails=[CANARY])),
    }
    for param, call in calls.items():
        with pytest.raises(ParameterError) as info:
            call()
        assert str(info.value).startswith(f"{param}: holds an API key (sk-admin-…), not an ID; pass the ")
        assert "Canary7" not in str(info.value)
        assert ("client.admin_api_keys()" in str(info.value)) == ("key" in param)
    assert client.page("completions", start_time="2026-11-01", api_key_ids=["key_abc"]).data is not None
    fine_tuned = "ft:gpt-4o-mini:acme:disk-analyzer1:abc"  # "sk-analyzer1" inside a word is no key
    assert client.page("completions", start_time="2026-11-01", models=[fine_tuned]).data is not None
    assert "Canary7" not in caplog.text and "HTTP Request" in caplog.text


def test_a_grouping_named_twice_is_asked_for_once() -> None:
    """`group_by=["model", "model"]` (or `"model,model"`, or `["model", "model,project_id"]`) went out as
    `group_by[]=model&group_by[]=model`, a request the live API's reference never shows; it is one grouping, sent
    once, in the order first given."""
    sent: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url)
        return httpx.Response(200, json={"object": "page", "data": [], "has_more": False, "next_page": None})

    with Client(FAKE_ADMIN_KEY, NOWHERE, transport=httpx.MockTransport(answer), clock=lambda: EMULATOR_NOW) as client:
        for group_by in (["model", "model"], "model,model", ["model", "model,project_id", "project_id"]):
            client.page("completions", start_time="2026-11-01", group_by=group_by)
    assert [url.params.get_list("group_by[]") for url in sent] == [["model"], ["model"], ["model", "project_id"]]


def _frames_holding(error: BaseException, secret: str) -> list[str]:
    """Where, in the traceback of ``error`` and of every exception it was raised from or during, a frame's local
    shows ``secret`` in its ``repr``: what rich's ``show_locals`` (or a debugger) prints."""
    found = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_filename != __file__:  # this test's own frames hold the key it passed
                found += [f"{frame.f_code.co_name}: {name}" for name, v in frame.f_locals.items() if secret in repr(v)]
            tb = tb.tb_next
        todo += [exc.__cause__, exc.__context__]
    return found


def test_a_tracebacks_locals_never_show_the_key() -> None:
    """With rich's `traceback.install(show_locals=True)` (a notebook's habit) a failing call showed the key whole:
    the constructor's `api_key` (and UsageApi's `access_token`), key_from's and normalize_key's locals, the
    changes `dataclasses.replace` got from with_options, and the headers dict among httpx's frames. Every frame of
    the library and of httpx now holds the key as a value whose repr is its prefix."""
    secret = CANARY
    calls = [
        lambda: Client(secret, "ftp://x/v1"),
        lambda: Client(secret, "http://example.com/v1"),
        lambda: Client(f" {secret}\n", NOWHERE, timeout="5"),  # type: ignore[arg-type]
        lambda: Client(secret + " x", NOWHERE),
        lambda: UsageApi(secret, "http://example.com/v1"),
        lambda: Client(secret, NOWHERE).with_options(base_url="http://example.com/v1"),
        lambda: Client(secret, NOWHERE, max_retries=0).page("costs", start_time="2d"),
        lambda: asyncio.run(AsyncClient(secret, NOWHERE, max_retries=0).page("costs", start_time="2d")),
    ]
    for call in calls:
        with pytest.raises(Exception) as info:
            call()
        assert _frames_holding(info.value, "Canary7") == [], info.value


@pytest.mark.parametrize("name", ["random", "sleep", "async_sleep", "monotonic", "wall_clock"])
def test_a_retry_policy_function_that_is_none_is_named_at_once(name: str) -> None:
    """`RetryPolicy(sleep=None)` was taken, and failed only at the first retry, with "'NoneType' object is not
    callable" from deep inside: a ConfigError naming it, when the policy is made."""
    with pytest.raises(ConfigError, match=rf"^{name} must be a function, got None$"):
        RetryPolicy(**{name: None})


def test_a_sleep_of_the_wrong_twin_is_named() -> None:
    """`RetryPolicy(sleep=asyncio.sleep)` made the blocking client retry without waiting (a coroutine never awaited),
    and `async_sleep=time.sleep` blocked the event loop, then failed with "object NoneType can't be used in 'await'
    expression": both are a ConfigError saying which sleep goes where; an async_sleep that returns no awaitable is
    named when it is called."""
    with pytest.raises(ConfigError, match=r"^sleep is the blocking client's wait"):
        RetryPolicy(sleep=asyncio.sleep)
    with pytest.raises(ConfigError, match=r"^async_sleep is awaited by the async client"):
        RetryPolicy(async_sleep=time.sleep)  # type: ignore[arg-type]
    answers = iter([httpx.Response(500), httpx.Response(200)])
    policy = RetryPolicy(async_sleep=lambda seconds: None)  # type: ignore[arg-type,return-value]
    client = AsyncClient(FAKE_ADMIN_KEY, NOWHERE, transport=httpx.MockTransport(lambda r: next(answers)), retry=policy)
    with pytest.raises(ConfigError, match=r"^async_sleep must return an awaitable \(as asyncio.sleep does\), got None"):
        asyncio.run(client.page("costs", start_time="2d"))


@pytest.mark.parametrize("blank", ["", "  ", "\n"])
def test_a_blank_key_argument_beside_a_set_variable_says_which_wins(
    monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    """`Client(api_key=os.environ.get("MY_KEY", ""))` with OPENAI_ADMIN_KEY set said "no admin API key: set
    OPENAI_ADMIN_KEY or pass api_key=", sending the user to set a variable that was set: the blank argument is
    what is wrong, and is named (UsageApi's as access_token=). Without the variable the message is as before."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    with pytest.raises(ConfigError, match=r"^api_key= is blank; pass the admin key there, or leave it out to use"):
        Client(blank, NOWHERE)
    with pytest.raises(ConfigError, match=r"^access_token= is blank; pass the admin key there, or leave it out"):
        UsageApi(blank, NOWHERE)
    monkeypatch.delenv("OPENAI_ADMIN_KEY")
    with pytest.raises(ConfigError, match=r"^no admin API key: set OPENAI_ADMIN_KEY or pass api_key=$"):
        AsyncClient(blank, NOWHERE)


def test_a_client_whose_constructor_failed_still_has_a_repr() -> None:
    """The `self` of a constructor that raised is what a traceback's locals show (rich, a debugger): its repr was
    "'Client' object has no attribute '_config'", a repr error in place of the frame's value."""
    for face in (Client, AsyncClient, UsageApi):
        with pytest.raises(ConfigError) as info:
            face(FAKE_ADMIN_KEY, NOWHERE, timeout="5")  # type: ignore[arg-type]
        tb = info.tb
        while tb.tb_next is not None and "self" not in tb.tb_frame.f_locals:
            tb = tb.tb_next
        assert repr(tb.tb_frame.f_locals["self"]) == f"{face.__name__}(<not made: its constructor failed>)"


def test_an_async_client_serves_several_event_loops_at_once(emulator_url: str) -> None:
    """One AsyncClient shared by threads that each run their own `asyncio.run` (a web app's worker threads, a
    notebook's helper thread) sent every loop through one connection pool, whose waiters belong to one loop: a
    request of one loop waited on a connection another loop released, and the thread hung for good. Each running
    loop has a pool of its own; the client's close reaches every loop (a later request in any of them is refused)."""
    client = AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW, max_retries=0)
    results: list[object] = []
    gate = threading.Barrier(4)

    async def hourly() -> int:
        return len(
            await client.completions(start_time="2026-09-04", end_time="2026-11-03", bucket_width="1h").buckets()
        )

    def run() -> None:
        gate.wait()
        try:
            results.append(asyncio.run(hourly()))
        except Exception as exc:  # the assertion below shows it
            results.append(exc)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for _ in range(3):
            threads = [threading.Thread(target=run, daemon=True) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert not any(thread.is_alive() for thread in threads), "a loop hung on another loop's pool"
        assert results == [60 * 24] * 12
        asyncio.run(client.aclose())
        with pytest.raises(ClientClosedError, match=r"^this client is closed"):
            asyncio.run(hourly())
        gc.collect()


def test_each_asyncio_run_closes_the_connections_it_opened(emulator_url: str) -> None:
    """A script calling `asyncio.run` twice with one AsyncClient, never closing it, left the first loop's
    connections open until the collector found them, each a `ResourceWarning: unclosed <socket...>` (an error under
    `-W error`, a failed test under pytest). A loop's pool is closed as its `asyncio.run` ends; the client still
    serves the next loop."""
    client = AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW, max_retries=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [_two_days(client) for _ in range(3)] == [2] * 3
        del client
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_with_block_cannot_reopen_a_closed_client(emulator: Emulator) -> None:
    """`with client:` on a client already closed (a second `with` after the first ended, in a notebook cell run
    twice) entered silently, and its first request was refused with the advice to "send requests inside the with
    block", where it was. It is refused at the `with`, as httpx refuses to reopen a client; a copy of a closed client
    says its original was closed; an open client may still be entered more than once."""
    client = Client(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), clock=lambda: EMULATOR_NOW)
    with client, client:
        assert client.page("costs", start_time="2026-11-01", end_time="2026-11-02").data
    copied = client.with_options(max_retries=0)
    for entered in (client, copied):
        with pytest.raises(ClientClosedError) as caught, entered:
            pass
        assert str(caught.value).startswith(
            "this client is closed (close() was called, or its with block ended), and a with block cannot reopen it"
            if entered is client
            else "the client this one was copied from"
        )

    async def twice() -> str:
        twin = AsyncClient(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), clock=lambda: EMULATOR_NOW)
        async with twin:
            pass
        with pytest.raises(ClientClosedError) as refused:
            async with twin:
                pass
        return str(refused.value)

    assert asyncio.run(twice()).endswith("a with block cannot reopen it; make a new client")
    api = UsageApi(FAKE_ADMIN_KEY, NOWHERE, transport=emulator.transport(), clock=lambda: EMULATOR_NOW)
    with api:
        pass
    with pytest.raises(ClientClosedError, match=r"a with block cannot reopen it; make a new client$"), api:
        pass


def test_a_filter_given_as_one_comma_list_filters_as_the_list_does(emulator_url: str) -> None:
    """`models="gpt-4o, o3-mini"` (one string, as `group_by="project_id, model"` is taken) went out whole; the API
    splits a value at its commas, so ` o3-mini` (a space first) matched nothing and the query silently lost that
    model's rows; `project_ids=[" proj_x"]` (pasted from a CSV) likewise. Each string is split at commas and
    stripped, as the command line's `--models` and `group_by` are; a line item, whose name holds a comma, is kept
    whole (stripped); an empty part is refused."""
    day = {"start_time": "2026-11-01", "end_time": "2026-11-03"}
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:

        def seen(endpoint: str, field: str, **filters: Any) -> list[str]:
            rows = client.query(endpoint, **day, group_by=field, **filters).rows()
            return sorted({str(row[field]) for row in rows})

        models = seen("completions", "model")
        assert len(models) > 2
        two = models[:2]
        assert seen("completions", "model", models=two) == two
        for value in (f"{two[0]}, {two[1]}", f" {two[0]} ,{two[1]} ", [two[0], f" {two[1]}"]):
            assert seen("completions", "model", models=value) == two, value
        project = seen("completions", "project_id")[0]
        assert seen("completions", "project_id", project_ids=[f" {project} "]) == [project]
        item = next(name for name in seen("costs", "line_item") if "," in name)
        assert seen("costs", "line_item", line_items=f" {item} ") == [item]
        with pytest.raises(ParameterError, match=r"^models: .* holds an empty value"):
            client.query("completions", **day, models=f"{two[0]},")
