"""The emulator serves the admin directory: the official openai SDK lists it, and it names every ID in usage."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from usageledger import Client, catalogue
from usageledger.emulator import Emulator, EmulatorConfig, run_server
from usageledger.errors import ReplayError

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

if TYPE_CHECKING:
    # Imported where used: every pytest-xdist worker imports every test module to collect it, and the openai SDK
    # costs ~0.4 s of CPU to import; only the worker that runs these tests pays it.
    from openai import OpenAI

DAY = 86_400
KEY = {"Authorization": f"Bearer {FAKE_ADMIN_KEY}"}


@pytest.fixture(scope="module")
def sdk(emulator_url: str) -> Iterator[OpenAI]:
    """The official openai SDK pointed at the loopback emulator."""
    from openai import OpenAI

    client = OpenAI(admin_api_key=FAKE_ADMIN_KEY, base_url=emulator_url, max_retries=0)
    yield client
    client.close()


@pytest.fixture(scope="module")
def api(emulator: Emulator) -> Iterator[httpx.Client]:
    """Raw HTTP on the shared emulator's in-process transport, for status codes and error bodies."""
    with httpx.Client(transport=emulator.transport(), base_url="http://emulator/v1", headers=KEY) as client:
        yield client


@pytest.fixture(scope="module")
def ours(emulator_url: str) -> Iterator[Client]:
    """Our client over loopback, with the emulator's clock."""
    with Client(FAKE_ADMIN_KEY, emulator_url, clock=lambda: EMULATOR_NOW) as client:
        yield client


def _sdk_list(sdk: OpenAI, ep: catalogue.DirectoryEndpoint, args: dict[str, str], **params: Any) -> list[Any]:
    """Every item of one directory list as the SDK auto-pages it (its own method for the endpoint)."""
    method: Any = functools.reduce(getattr, ep.sdk_method.split("."), sdk.admin.organization)
    return list(method(*args.values(), **params))


def _scopes(client: Client, ep: catalogue.DirectoryEndpoint) -> list[dict[str, str]]:
    """The path arguments to list ``ep`` under: none, every project, or every group."""
    if ep.path_params == ("project_id",):
        return [{"project_id": p.id} for p in client.projects(include_archived=True)]
    if ep.path_params == ("group_id",):
        return [{"group_id": g.id} for g in client.groups()]
    return [{}]


def _key(ep: catalogue.DirectoryEndpoint, item: Any) -> str:
    return str(getattr(item, ep.key_field))


@pytest.mark.parametrize("ep", catalogue.DIRECTORY, ids=lambda e: e.name)
def test_sdk_pages_with_limit_one_give_one_big_page(sdk: OpenAI, ours: Client, ep: catalogue.DirectoryEndpoint) -> None:
    """The SDK's own list method parses every page; paging by 1 yields exactly the items of one 100-item page."""
    extra = {"include_archived": True} if ep.name == "projects" else {}
    checked = 0
    for args in _scopes(ours, ep):
        small = _sdk_list(sdk, ep, args, limit=1, **extra)
        big_page = _sdk_list(sdk, ep, args, limit=100, **extra)
        assert [_key(ep, i) for i in small] == [_key(ep, i) for i in big_page]
        checked += len(small)
    assert checked >= 2, f"{ep.name}: too few items to page"


def test_sdk_lists_archived_projects_only_when_asked(sdk: OpenAI) -> None:
    """include_archived=true adds the archived project; without it only active projects are listed."""
    every = list(sdk.admin.organization.projects.list(include_archived=True, limit=2))
    active = list(sdk.admin.organization.projects.list(limit=2))
    archived = [p for p in every if p.status == "archived"]
    assert archived and all(p.archived_at for p in archived)
    assert {p.id for p in active} == {p.id for p in every} - {p.id for p in archived}


def test_sdk_retrieves_what_it_lists(sdk: OpenAI) -> None:
    """Retrieve-by-ID answers with the listed object (project, user, group, project key)."""
    org = sdk.admin.organization
    project = next(iter(org.projects.list()))
    assert org.projects.retrieve(project.id).name == project.name
    user = next(iter(org.users.list()))
    assert org.users.retrieve(user.id).email == user.email
    group = next(iter(org.groups.list()))
    assert org.groups.retrieve(group.id).name == group.name
    key = next(iter(org.projects.api_keys.list(project.id)))
    assert org.projects.api_keys.retrieve(key.id, project_id=project.id).owner.type in ("user", "service_account")


def _usage_ids(client: Client, start: int, end: int) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {"project_id": set(), "user_id": set(), "api_key_id": set()}
    for ep in catalogue.ENDPOINTS:
        fields = [f for f in seen if f in ep.group_by]
        if ep.is_costs:  # costs refuses api_key_id grouping before its cutoff; project and key are enough
            fields = ["project_id", "api_key_id"]
        for row in client.query(ep, start_time=start, end_time=end, group_by=fields).rows():
            for f in fields:
                if row.get(f) is not None:
                    seen[f].add(row[f])
    return seen


def test_every_id_in_thirty_days_of_usage_resolves(ours: Client) -> None:
    """Every project, user and API key in the last 30 days of usage (all endpoints, costs too) is in the directory."""
    seen = _usage_ids(ours, EMULATOR_NOW - 30 * DAY, EMULATOR_NOW)
    projects = {p.id for p in ours.projects(include_archived=True)}
    keys = {k.id for p in projects for k in ours.project_api_keys(p, owner_project_access="any")}
    users = {u.id for u in ours.users()}
    assert seen["project_id"] and seen["user_id"] and seen["api_key_id"]
    assert seen["project_id"] <= projects and seen["api_key_id"] <= keys and seen["user_id"] <= users


def test_deleted_keys_are_in_old_usage_but_no_longer_listed(ours: Client, api: httpx.Client) -> None:
    """Some keys in 100-day-old usage are not listed any more, answer 404, and have no usage in the last 30 days."""
    old = _usage_ids(ours, EMULATOR_NOW - 110 * DAY, EMULATOR_NOW - 90 * DAY)["api_key_id"]
    recent = _usage_ids(ours, EMULATOR_NOW - 30 * DAY, EMULATOR_NOW)["api_key_id"]
    projects = [p.id for p in ours.projects(include_archived=True)]
    listed = {k.id for p in projects for k in ours.project_api_keys(p, owner_project_access="any")}
    deleted = old - listed
    assert deleted and not deleted & recent
    gone = api.get(f"/organization/projects/{projects[0]}/api_keys/{sorted(deleted)[0]}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_a_listed_key_was_last_used_when_its_usage_stops(ours: Client) -> None:
    """Every listed key said `last_used_at: null` (never used) while usage named it every day, so `keys` after a
    sync without a stream grouped by api_key_id (the demo's) flagged every key "never used". A key of a live project
    was now last used within the hour before today; a key of an archived project the day its project was archived,
    and its usage stops there."""
    today = EMULATOR_NOW // DAY * DAY
    live, archived = [], []
    for p in ours.projects(include_archived=True):
        for key in ours.project_api_keys(p.id, owner_project_access="any"):
            assert key.last_used_at is not None and key.created_at < key.last_used_at, key
            if p.archived_at is None:
                live.append(key.id)
                assert today - 3600 <= key.last_used_at < today, key
            else:
                archived.append(key.id)
                assert p.archived_at // DAY * DAY - 3600 <= key.last_used_at < p.archived_at // DAY * DAY, key
                later = _usage_ids(ours, p.archived_at // DAY * DAY, EMULATOR_NOW)["api_key_id"]
                assert key.id not in later
    recent = _usage_ids(ours, today - DAY, today)["api_key_id"]
    assert live and archived and recent and recent <= set(live)


def test_keys_are_owned_by_users_or_service_accounts_and_groups_reach_projects(ours: Client) -> None:
    """Keys have both owner kinds, each owner is a member or service account of the key's project; groups have
    members, one project has two groups and one has none."""
    kinds = set()
    group_counts = []
    for p in ours.projects(include_archived=True):
        members = {u.id for u in ours.project_users(p.id)}
        bots = {s.id for s in ours.project_service_accounts(p.id)}
        for key in ours.project_api_keys(p.id):
            kinds.add(key.owner.type)
            owner = key.owner.user or key.owner.service_account
            assert owner is not None and owner.id in (members | bots)
        group_counts.append(len(ours.project_groups(p.id).items()))
    assert kinds == {"user", "service_account"}
    assert 0 in group_counts and 2 in group_counts
    assert all(ours.group_users(g.id).items() for g in ours.groups())


def test_directory_refusals_have_the_usage_error_shape(api: httpx.Client) -> None:
    """Groups refuse limit 1001 and projects limit 101 with the usage endpoints' 400 body; bad cursors, bad
    booleans, unknown parameters and unknown IDs are refused by name; no key is a 401."""
    cases = [
        ("/organization/groups?limit=1001", 400, "limit", "Limit must be less than or equal to 1000"),
        ("/organization/projects?limit=101", 400, "limit", "Limit must be less than or equal to 100"),
        ("/organization/projects?limit=0", 400, "limit", "greater than or equal to 1"),
        ("/organization/users?limit=ten", 400, "limit", "Expected an integer"),
        ("/organization/projects?include_archived=maybe", 400, "include_archived", "Expected a boolean"),
        ("/organization/admin_api_keys?order=sideways", 400, "order", "'asc', 'desc'"),
        ("/organization/projects?after=proj_nope", 400, "after", "not a cursor"),
        ("/organization/groups?after=group_plain_id", 400, "after", "not a cursor"),
        ("/organization/users?colour=red", 400, "colour", "Unrecognized request argument"),
        ("/organization/projects/proj_nope", 404, None, "proj_nope"),
        ("/organization/projects/proj_nope/api_keys", 404, None, "proj_nope"),
    ]
    for path, status, param, text in cases:
        r = api.get(path)
        body = r.json()
        assert r.status_code == status and set(body["error"]) == {"message", "type", "param", "code"}, path
        assert body["error"]["param"] == param and text in body["error"]["message"], path
    assert api.get("/organization/groups?limit=0").json()["data"] == []
    assert api.get("/organization/users", headers={"Authorization": ""}).status_code == 401


def test_an_empty_groups_page_still_says_where_to_go_on(api: httpx.Client) -> None:
    """Groups take limit=0 (0-1000): the empty page says has_more, so its next cursor must be set and lead on from
    where the page began. It was null, and a client following `next` had nowhere to go."""
    whole = api.get("/organization/groups").json()["data"]
    empty = api.get("/organization/groups", params={"limit": 0}).json()
    assert empty["data"] == [] and empty["has_more"] is True and empty["next"]
    assert api.get("/organization/groups", params={"after": empty["next"]}).json()["data"] == whole
    first = api.get("/organization/groups", params={"limit": 1}).json()
    again = api.get("/organization/groups", params={"limit": 0, "after": first["next"]}).json()
    assert again["data"] == [] and again["next"] == first["next"]
    rest = api.get("/organization/groups", params={"after": again["next"]}).json()
    assert rest["data"] == whole[1:] and rest["has_more"] is False and rest["next"] is None


def test_small_history_retires_nothing() -> None:
    """Under 47 days of history nothing is archived or deleted, so every listed thing is live."""
    emulator = Emulator(EmulatorConfig(seed=3, days=20, projects=4, users=5, now=EMULATOR_NOW))
    with Client(FAKE_ADMIN_KEY, "http://127.0.0.1/v1", transport=emulator.transport()) as c:
        projects = c.projects(include_archived=True).items()
        assert projects and all(p.status == "active" for p in projects)


def _write_replay(tmp_path: Path, directory: object) -> tuple[Path, Path]:
    usage = tmp_path / "usage.jsonl"
    record = {"endpoint": "completions", "time": EMULATOR_NOW - DAY, "project_id": "proj_r", "api_key_id": "key_r"}
    usage.write_text(json.dumps(record | {"num_model_requests": 3, "input_tokens": 10, "output_tokens": 5}) + "\n")
    names = tmp_path / "directory.json"
    names.write_text(json.dumps(directory))
    return usage, names


def test_replay_serves_a_directory_file(tmp_path: Path) -> None:
    """Replay mode serves the directory file's lists to the official SDK, scoped lists by project."""
    project = {
        "object": "organization.project",
        "id": "proj_r",
        "name": "Replayed",
        "created_at": 1,
        "status": "active",
    }
    key = {
        "object": "organization.project.api_key",
        "id": "key_r",
        "name": "replayed-key",
        "redacted_value": "sk-proj-****r",
        "created_at": 2,
        "owner": {
            "type": "service_account",
            "service_account": {"id": "svc", "name": "b", "role": "member", "created_at": 2},
        },
        "owner_project_access": "active",
    }
    usage, names = _write_replay(tmp_path, {"projects": [project], "project_api_keys": {"proj_r": [key]}})
    emulator = Emulator(EmulatorConfig(replay=usage, replay_directory=names, now=EMULATOR_NOW))
    from openai import OpenAI

    with run_server(emulator) as url:
        sdk = OpenAI(admin_api_key=FAKE_ADMIN_KEY, base_url=url, max_retries=0)
        assert [p.name for p in sdk.admin.organization.projects.list()] == ["Replayed"]
        assert [k.name for k in sdk.admin.organization.projects.api_keys.list("proj_r")] == ["replayed-key"]
        assert list(sdk.admin.organization.groups.list()) == []
        sdk.close()


def test_replay_without_a_directory_file_has_no_directory(tmp_path: Path) -> None:
    """Replay mode without a directory file answers the directory's paths with 404, not with synthetic names."""
    usage, _ = _write_replay(tmp_path, {})
    emulator = Emulator(EmulatorConfig(replay=usage, now=EMULATOR_NOW))
    with httpx.Client(transport=emulator.transport(), base_url="http://emulator/v1", headers=KEY) as http:
        assert http.get("/organization/projects").status_code == 404


def test_a_bad_directory_file_is_refused_by_name(tmp_path: Path) -> None:
    """An unknown list or an object that is not the SDK's type is a ReplayError naming the list and the index."""
    usage, names = _write_replay(tmp_path, {"projects": [{"id": "proj_x"}]})
    with pytest.raises(ReplayError, match=r"projects\[0\] is not a project"):
        Emulator(EmulatorConfig(replay=usage, replay_directory=names, now=EMULATOR_NOW))
    usage, names = _write_replay(tmp_path, {"teams": []})
    with pytest.raises(ReplayError, match="unknown list 'teams'"):
        Emulator(EmulatorConfig(replay=usage, replay_directory=names, now=EMULATOR_NOW))


def test_a_big_organisation_has_the_keys_archives_and_names_asked_for() -> None:
    """``keys``, ``archived`` and ``names="world"`` make the organisation a big one is: that many keys a project
    (the deleted ones no longer listed), the last projects archived, and names long, CJK, emoji, right to left, and
    alike but for case or blanks; the plain names of the default stay as they were."""
    config = EmulatorConfig(seed=3, days=60, projects=24, users=9, keys=6, archived=4, names="world", now=EMULATOR_NOW)
    emulator = Emulator(config)
    with Client(FAKE_ADMIN_KEY, "http://127.0.0.1/v1", transport=emulator.transport()) as c:
        projects = c.projects(include_archived=True).items()
        users = c.users().items()
        keys = [k for p in projects for k in c.project_api_keys(project_id=p.id).items()]
    assert sorted(p.status for p in projects) == ["active"] * 20 + ["archived"] * 4
    assert len(keys) == 24 * 6 - 10  # the last key of every even-numbered live project is deleted, so not listed
    names = [p.name for p in projects]
    assert {"Search Assistant", "search assistant", "Search  Assistant", "Search Assistant "} <= set(names)
    assert max(len(n) for n in names) > 70 and "検索アシスタント" in names and "مساعد البحث" in names
    assert "👩\u200d💻 Developer Tools" in names and "Search Assistant 2" in names  # past the list, numbered
    assert any(k.name == "検索アシスタント-prod-2" for k in keys)  # a key past the third is numbered
    assert any(not u.name.isascii() for u in users) and all("@" in (u.email or "") for u in users)
    plain = Emulator(EmulatorConfig(seed=3, days=60, projects=12, now=EMULATOR_NOW))
    with Client(FAKE_ADMIN_KEY, "http://127.0.0.1/v1", transport=plain.transport()) as c:
        shown = [p.name for p in c.projects(include_archived=True).items()]
    assert {"Search Assistant", "Support Bot", "Search Assistant 2"} <= set(shown) and all(n.isascii() for n in shown)
