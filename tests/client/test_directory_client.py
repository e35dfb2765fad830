"""The directory in Client, AsyncClient and UsageApi: the SDK's three pagination styles, rows, Arrow and checks."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow as pa
import pytest

from usageledger import AsyncClient, Client, DirectoryPage, UsageApi, catalogue
from usageledger._directory import arrow_schema
from usageledger._directory_endpoints import AsyncDirectoryMethods, DirectoryMethods
from usageledger.directory_models import Group, Project
from usageledger.emulator import Emulator
from usageledger.errors import ConfigError, NotFoundError, PaginationError, ParameterError
from usageledger.rows import pandas_frame

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW


class Recording(httpx.BaseTransport):
    """The emulator's own in-process transport, remembering each request's URL (to see the ``after`` sent)."""

    def __init__(self, emulator: Emulator) -> None:
        self.inner = emulator.transport()
        self.urls: list[httpx.URL] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(request.url)
        return self.inner.handle_request(request)

    def afters(self) -> list[str | None]:
        return [parse_qs(urlsplit(str(u)).query).get("after", [None])[0] for u in self.urls]


def _client(transport: httpx.BaseTransport) -> Client:
    return Client(FAKE_ADMIN_KEY, "http://127.0.0.1/v1", transport=transport, clock=lambda: EMULATOR_NOW)


@pytest.fixture(scope="module")
def ours(emulator_url: str) -> Iterator[Client]:
    """Our client over loopback HTTP."""
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
        yield client


def test_each_style_sends_back_the_cursor_the_sdk_would(emulator: Emulator) -> None:
    """Projects send after=last_id, admin keys after=<last item's id>, groups after=<next> (an opaque cursor)."""
    api = UsageApi(FAKE_ADMIN_KEY, "http://127.0.0.1/v1", transport=emulator.transport())
    cases: list[tuple[str, DirectoryPage[object], str | None]] = []
    projects = api.list_projects(limit=1, include_archived=True)
    cases.append(("projects", projects, projects.last_id))
    keys = api.list_admin_api_keys(limit=1)
    cases.append(("admin_api_keys", keys, getattr(keys.data[-1], "id", None)))
    groups = api.list_groups(limit=1)
    cases.append(("groups", groups, groups.next))
    for name, first, expected in cases:
        recording = Recording(emulator)
        with _client(recording) as client:
            query = getattr(client, name)(limit=1, **({"include_archived": True} if name == "projects" else {}))
            pages = iter(query.pages())
            next(pages)
            next(pages)
        assert expected is not None and first.has_more, name
        assert recording.afters()[:2] == [None, expected], name
    assert groups.next is not None and groups.next != groups.data[0].id  # the groups' cursor is not an id


@pytest.mark.parametrize("ep", catalogue.DIRECTORY, ids=lambda e: e.name)
def test_paging_by_one_equals_one_big_page(ours: Client, ep: catalogue.DirectoryEndpoint) -> None:
    """For every list, Client paging with limit=1 yields exactly the items of one page of 100."""
    scopes: list[tuple[str, ...]] = [()]
    if ep.path_params == ("project_id",):
        scopes = [(p.id,) for p in ours.projects(include_archived=True)]
    elif ep.path_params == ("group_id",):
        scopes = [(g.id,) for g in ours.groups()]
    total = 0
    for args in scopes:
        small = list(getattr(ours, ep.name)(*args, limit=1))
        big = getattr(ours, ep.name)(*args, limit=100).pages()
        one = next(big)
        assert not one.has_more and small == one.data
        total += len(small)
    assert total >= 2


def test_async_client_lists_and_retrieves_like_the_sync_one(emulator_url: str, ours: Client) -> None:
    """AsyncClient's lazy lists and awaited retrieves give the sync client's items."""

    async def run() -> tuple[list[Project], list[Group], Project]:
        async with AsyncClient(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
            projects = await client.projects(include_archived=True, limit=1).items()
            groups = [g async for g in client.groups(limit=1)]
            one = await client.project(projects[0].id)
            rows = [row async for row in client.groups(limit=1).rows()]
            assert [r["id"] for r in rows] == [g.id for g in groups]
            assert (await client.groups().to_arrow()).num_rows == len(groups)
            return projects, groups, one

    projects, groups, one = asyncio.run(run())
    assert projects == ours.projects(include_archived=True).items()
    assert groups == ours.groups().items() and one == projects[0]


def test_the_twins_have_the_same_directory_methods() -> None:
    """Client's and AsyncClient's directory methods have the same names and parameters."""
    sync = {n: inspect.signature(f) for n, f in vars(DirectoryMethods).items() if not n.startswith("_")}
    asyn = {n: inspect.signature(f) for n, f in vars(AsyncDirectoryMethods).items() if not n.startswith("_")}
    assert len(sync) == 2 * len(catalogue.DIRECTORY)
    assert {n: list(s.parameters) for n, s in sync.items()} == {n: list(s.parameters) for n, s in asyn.items()}


def test_rows_and_arrow_flatten_owners(ours: Client) -> None:
    """Rows flatten nested owners (owner_user_name, owner_service_account_id); Arrow has the same columns."""
    project = ours.projects().items()[0]
    query = ours.project_api_keys(project.id)
    rows = list(query.rows())
    table = query.to_arrow()
    assert rows and table.num_rows == len(rows) and table.column_names == list(rows[0])
    assert {"owner_type", "owner_user_name", "owner_service_account_id", "redacted_value"} <= set(rows[0])
    assert {r["owner_type"] for r in rows} <= {"user", "service_account"}
    assert all((r["owner_user_name"] is None) == (r["owner_type"] == "service_account") for r in rows)
    assert list(query.to_pandas().columns) == table.column_names == query.to_polars().columns


def test_seed_face_pages_and_retrieves(emulator: Emulator) -> None:
    """UsageApi.list_<name> is one page with the envelope; retrieve_<item> is one object; a missing ID is a 404."""
    api = UsageApi(FAKE_ADMIN_KEY, "http://127.0.0.1/v1", transport=emulator.transport())
    page = api.list_users(limit=2)
    assert page.object == "list" and len(page.data) == 2 and page.has_more and page.last_id == page.data[-1].id
    after = api.list_users(limit=2, after=page.last_id)
    assert after.data[0].id not in {u.id for u in page.data}
    assert api.retrieve_user(page.data[0].id) == page.data[0]
    only = api.list_users(emails=[page.data[1].email or ""])
    assert [u.id for u in only.data] == [page.data[1].id]
    with pytest.raises(NotFoundError):
        api.retrieve_project("proj_missing")


def test_bad_arguments_are_refused_before_sending(emulator: Emulator) -> None:
    """Limits outside the list's range, limit 0 for paging, unknown choices and empty IDs name their parameter."""
    recording = Recording(emulator)
    with _client(recording) as client:
        cases = [
            (lambda: client.groups(limit=1001), "limit"),
            (lambda: client.groups(limit=0), "limit"),
            (lambda: client.projects(limit=101), "limit"),
            (lambda: client.projects(limit=True), "limit"),
            (lambda: client.admin_api_keys(order="sideways"), "order"),  # type: ignore[arg-type]
            (lambda: client.project_api_keys(""), "project_id"),
            (lambda: client.project(" proj "), "project_id"),
            (lambda: client.users(emails=[""]), "emails"),
            # dot segments: /projects/../users was /users, the organization's users listed as the project's
            (lambda: client.project_users(".."), "project_id"),
            (lambda: client.project("."), "project_id"),
            (lambda: client.project_api_key("proj_abc", ".."), "api_key_id"),
            # None as the ID asked for the list (GET /projects), which then failed to decode as one project
            (lambda: client.project(None), "project_id"),  # type: ignore[arg-type]
            (lambda: client.project_api_key("proj_abc", None), "api_key_id"),  # type: ignore[arg-type]
            (lambda: UsageApi(client=client).retrieve_group(None), "group_id"),  # type: ignore[arg-type]
        ]
        for call, param in cases:
            with pytest.raises(ParameterError) as info:
                call()
            assert info.value.param == param
    assert recording.urls == []


def test_the_async_retrieves_check_their_arguments_at_the_call() -> None:
    """`AsyncClient.project("..", timeout=0)` made a coroutine that refused its arguments only when awaited, far from
    the mistake (a task created and never awaited said nothing); every other async call checks them at once, as the
    sync twin does. Nothing is sent."""
    client = AsyncClient(FAKE_ADMIN_KEY, "http://127.0.0.1:9/v1")
    for call, param in [
        (lambda: client.project(".."), "project_id"),
        (lambda: client.project_api_key("proj_abc", " "), "api_key_id"),
        (lambda: client.user(""), "user_id"),
        (lambda: client.user(None), "user_id"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(ParameterError) as info:
            call()
        assert info.value.param == param
    with pytest.raises(ConfigError, match="timeout"):
        client.project("proj_abc", timeout=0)


def test_a_cursor_that_stops_or_repeats_is_an_error() -> None:
    """has_more with no cursor, or the same cursor twice, raises PaginationError instead of stopping silently."""
    bodies = {
        "/v1/organization/projects": b'{"object":"list","data":[{"id":"proj_a","created_at":1}],"has_more":true}',
        "/v1/organization/groups": b'{"object":"list","data":[{"id":"g","created_at":1,"name":"G"}],'
        b'"has_more":true,"next":"same"}',
    }
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=bodies[r.url.path]))
    with _client(transport) as client:
        with pytest.raises(PaginationError, match="last_id"):
            list(client.projects())
        with pytest.raises(PaginationError, match="twice"):
            list(client.groups())


@pytest.mark.parametrize("ep", catalogue.DIRECTORY, ids=lambda e: e.name)
def test_a_lists_frame_has_its_schemas_dtypes_empty_or_full(ours: Client, ep: catalogue.DirectoryEndpoint) -> None:
    """`to_pandas()` of a list gave a whole-number column (`last_used_at`) `float64` once a null was in it and a
    boolean one `object`: the dtypes are now the list's schema alone (nullable `Int64`, `boolean`), as an empty
    list's frame has them."""
    scopes: list[tuple[str, ...]] = [()]
    if ep.path_params == ("project_id",):
        scopes = [(p.id,) for p in ours.projects()]
    elif ep.path_params == ("group_id",):
        scopes = [(g.id,) for g in ours.groups()]
    full = next(f for f in (getattr(ours, ep.name)(*args).to_pandas() for args in scopes) if len(f))
    schema = arrow_schema(ep)
    empty = pandas_frame(schema.empty_table())
    assert len(full) and {n: str(d) for n, d in full.dtypes.items()} == {n: str(d) for n, d in empty.dtypes.items()}
    for field in schema:
        want = {pa.int64(): "Int64", pa.bool_(): "boolean"}.get(field.type)
        assert want in (None, str(full.dtypes[field.name])), field.name
    if ep.name == "users":  # and a list that holds nothing, as the API gives it
        nobody = ours.users(emails=["nobody@example.invalid"]).to_pandas()
        assert nobody.empty and nobody.dtypes.equals(full.dtypes)
