"""The library used the way a data engineer in a hurry uses it in a notebook: each slip gets a one-line usageledger
error naming the parameter and the fix, never a bare exception from deep inside, never a silent "everything"."""

from __future__ import annotations

import re
from typing import Any

import pytest

from usageledger import AsyncClient, Client, UsageApi
from usageledger.emulator import Emulator
from usageledger.errors import ParameterError

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

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
