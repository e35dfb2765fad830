"""`usageledger keys` and `check --stale-keys` after a real sync from the emulator, on DuckDB and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from usageledger import Client
from usageledger.cli import app
from usageledger.emulator import Emulator, run_server
from usageledger.store import open_existing_store, open_store
from usageledger.sync import Org
from usageledger.sync.directory import refresh_org

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_CONFIG, EMULATOR_NOW

KEYED = ["--group-by", "project_id,api_key_id", "--no-directory"]
COSTS_BY_KEY = "costs.1d.project_id+api_key_id"
COMPLETIONS_BY_KEY = "completions.1d.project_id+api_key_id"
NOW = ["--now", str(EMULATOR_NOW)]


def _sync(url: str, emulator_url: str, *args: str) -> None:
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": emulator_url}
    result = CliRunner().invoke(app, ["sync", "--store", url, "--quiet", *NOW, *args], env=env)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, emulator_url: str) -> str:
    """A store holding the emulator's directory and 120 days of completions and costs grouped by API key (the first
    sync, for the directory, reads one day of costs: no default stream groups by key, so `keys` reads none)."""
    if request.param == "duckdb":
        url = str(tmp_path_factory.mktemp("keys") / "keys.duckdb")
    else:
        url = request.getfixturevalue("_pg_cluster").createdb(f"keys_{id(request)}")
    _sync(url, emulator_url, "--since", "1d", "-e", "costs")
    _sync(url, emulator_url, "--since", "120d", "-e", "completions", "-e", "costs", *KEYED)
    return url


@pytest.fixture(scope="module")
def emulator_org(emulator: Emulator) -> Any:
    """What the emulator retired: archived projects and deleted keys."""
    return emulator.source.retired


def _keys(url: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["keys", "--store", url, *NOW, "--format", "json", *args])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _query(url: str, sql: str, params: list[object] | None = None) -> list[tuple[Any, ...]]:
    with open_existing_store(url) as db:
        return db.query(sql, params or [])


def test_keys_lists_every_directory_key_and_the_deleted_keys_seen_in_usage(store: str, emulator_org: Any) -> None:
    """Every project and admin key of the directory is listed, and so is every key that usage names; the emulator's
    deleted keys are marked deleted, keep their project, and carry no flags."""
    doc = _keys(store, "--since", "120d")
    listed = {k["id"]: k for k in doc["keys"]}
    directory = {
        i: kind
        for i, kind in _query(
            store, "SELECT id, kind FROM directory_current WHERE kind IN ('project_api_key', 'admin_api_key')"
        )
    }
    used = {i for (i,) in _query(store, "SELECT DISTINCT api_key_id FROM costs WHERE api_key_id IS NOT NULL")}
    assert set(listed) == set(directory) | used
    assert {i for i, k in listed.items() if k["type"] == "admin"} == {
        i for i, kind in directory.items() if kind == "admin_api_key"
    }
    deleted = set(emulator_org.keys)
    assert deleted and deleted <= used and not deleted & set(directory)
    for key_id in deleted:
        assert listed[key_id]["status"] == "deleted" and listed[key_id]["flags"] == []
        assert listed[key_id]["project"]["name"], listed[key_id]
    live = [k for k in listed.values() if k["id"] not in deleted]
    assert all(k["status"] == "active" and k["name"] and k["owner"]["name"] for k in live)
    assert all(k["created"] for k in live)


def test_spend_and_requests_match_a_direct_sum_to_the_cent(store: str) -> None:
    """Each key's spend and requests over --since equal a direct SQL sum of the stream grouped by API key."""
    doc = _keys(store, "--since", "2026-10-01")
    assert doc["period"]["start"] == "2026-10-01T00:00:00Z"
    since = datetime(2026, 10, 1, tzinfo=UTC)
    spend = dict(
        _query(
            store,
            "SELECT api_key_id, SUM(amount_value) FROM costs WHERE stream = %s AND bucket_start >= %s "
            "AND api_key_id IS NOT NULL GROUP BY 1",
            [COSTS_BY_KEY, since],
        )
    )
    requests = dict(
        _query(
            store,
            "SELECT api_key_id, SUM(num_model_requests) FROM usage_completions WHERE stream = %s "
            "AND bucket_start >= %s AND api_key_id IS NOT NULL GROUP BY 1",
            [COMPLETIONS_BY_KEY, since],
        )
    )
    assert doc["spend_streams"] == [f"default/{COSTS_BY_KEY}"]
    assert doc["request_streams"] == [f"default/{COMPLETIONS_BY_KEY}"]
    project_keys = [k for k in doc["keys"] if k["type"] == "project"]
    assert sum(1 for k in project_keys if Decimal(k["spend"]) > 0) >= 4
    for k in project_keys:
        assert Decimal(k["spend"]) == spend.get(k["id"], Decimal(0)), k["id"]
        assert k["requests"] == requests.get(k["id"], 0), k["id"]
    assert sum(Decimal(k["spend"]) for k in project_keys) == sum(spend.values())
    assert all(k["spend"] is None and k["requests"] is None for k in doc["keys"] if k["type"] == "admin")


def test_spend_through_no_key_is_given_so_the_keys_add_up_to_the_costs(store: str) -> None:
    """The costs stream grouped by key has rows with no key (storage, sessions: spend made through none); `keys`
    gives their sum apart, so the keys' spend and it add up to the stream's costs, the period's, to the cent: a
    finance user adding up the keys' column found dollars missing against `report`, with nothing saying why."""
    since = datetime(2026, 10, 1, tzinfo=UTC)
    [(total, keyless)] = _query(
        store,
        "SELECT SUM(amount_value), SUM(amount_value) FILTER (WHERE api_key_id IS NULL) FROM costs "
        "WHERE stream = %s AND bucket_start >= %s",
        [COSTS_BY_KEY, since],
    )
    [(keyless_requests,)] = _query(
        store,
        "SELECT COALESCE(SUM(num_model_requests), 0) FROM usage_completions WHERE stream = %s AND bucket_start >= %s "
        "AND api_key_id IS NULL",
        [COMPLETIONS_BY_KEY, since],
    )
    assert keyless > 0  # the emulator bills vector store storage and code interpreter sessions to no key
    doc = _keys(store, "--since", "2026-10-01")
    assert Decimal(doc["no_key_spend"]) == keyless and doc["no_key_requests"] == keyless_requests
    keys_spend = sum(Decimal(k["spend"]) for k in doc["keys"] if k["spend"] is not None)
    assert keys_spend + Decimal(doc["no_key_spend"]) == total
    result = CliRunner().invoke(app, ["keys", "--store", store, *NOW, "--since", "2026-10-01"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert (
        f"Through no API key (storage, sessions and other use the API gives no key for): ${keyless:,.2f} of spend"
        in (result.stdout)
    )
    assert f"the keys' spend adds up to ${total:,.2f}, the period's costs." in result.stdout


def test_flags_fire_on_unused_keys_and_old_admin_keys(store: str, emulator_org: Any) -> None:
    """With --unused-after 30d, the keys of the archived project and the never-used admin key (billing-export; the
    ledger's and terraform's were used within days) are unused; every admin key is past --admin-max-age 90d, none
    past 500d; nobody's owner was removed."""
    doc = _keys(store, "--unused-after", "30d", "--admin-max-age", "90d")
    archived = set(emulator_org.projects)
    flags = {k["id"]: {f["flag"] for f in k["flags"]} for k in doc["keys"]}
    by_id = {k["id"]: k for k in doc["keys"]}
    unused = {i for i, f in flags.items() if "unused" in f}
    expected = {
        k["id"]
        for k in doc["keys"]
        if k["status"] == "active"
        and (
            (k["type"] == "admin" and k["last_used"] is None)
            or (k["type"] != "admin" and k["project"]["id"] in archived)
        )
    }
    assert archived and unused == expected
    assert {k["name"] for k in doc["keys"] if k["type"] == "admin" and k["id"] in unused} == {"billing-export"}
    admins = {i for i, k in by_id.items() if k["type"] == "admin"}
    assert admins and {i for i, f in flags.items() if "admin_age" in f} == admins
    assert not any("owner_removed" in f for f in flags.values())
    older = _keys(store, "--unused-after", "30d", "--admin-max-age", "500d")
    assert not any(f["flag"] == "admin_age" for k in older["keys"] for f in k["flags"])


def test_check_stale_keys_raises_one_alert_per_stale_key(store: str, emulator_org: Any) -> None:
    """`check --stale-keys 60d` exits 3 with one stale_key alert per flagged key (an admin key with two flags is one
    alert); 90d leaves the archived project's keys (last used 81 days ago) out."""
    for span, archived_too in (("60d", True), ("90d", False)):
        result = CliRunner().invoke(app, ["check", "--store", store, *NOW, "--stale-keys", span, "--format", "json"])
        assert result.exit_code == 3, result.output
        alerts = [a for a in json.loads(result.stdout)["alerts"] if a["kind"] == "stale_key"]
        doc = _keys(store, "--unused-after", span, "--admin-max-age", span)
        flagged = {k["id"] for k in doc["keys"] if k["flags"]}
        assert [a["subject"] for a in alerts] == [f"key {k['id']}" for k in doc["keys"] if k["flags"]]
        assert len(alerts) == len(flagged)
        archived_keys = {k["id"] for k in doc["keys"] if k["project"] and k["project"]["id"] in emulator_org.projects}
        assert bool(archived_keys & flagged) is archived_too and archived_keys
    quiet = CliRunner().invoke(app, ["check", "--store", store, *NOW, "--stale-keys", "3650d"])
    assert "stale_key" not in quiet.output, quiet.output


def test_a_stale_keys_span_reaching_before_1970_is_one_line_naming_the_flag(store: str) -> None:
    """`--stale-keys` counts back from now: a span past 1970 was an OverflowError traceback (a date minus it); now
    the one step that counts back refuses it, while a span that still starts after 1970 checks the keys."""
    days_since_1970 = EMULATOR_NOW // 86400
    for span in ("99999999d", "9999999999d", f"{days_since_1970 + 1}d"):
        result = CliRunner().invoke(app, ["check", "--store", store, *NOW, "--stale-keys", span])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
        (line,) = result.stderr.strip().splitlines()
        # past 9999 (the longest span there is) or before 1970: either way, one line naming the flag and the fix
        assert line.startswith("error: --stale-keys: ") and line.endswith("; pass a shorter span"), line
        assert "reaches back before 1970" in line or f"'{span}' is longer than" in line
    kept = CliRunner().invoke(app, ["check", "--store", store, *NOW, "--stale-keys", f"{days_since_1970 - 1}d"])
    assert kept.exit_code == 0 and "checked  stale keys" in kept.output, kept.output


def test_keys_text_table_names_every_key_with_whole_numbers(store: str) -> None:
    """The text output names every key and prints each spend whole, with the flags one line each."""
    doc = _keys(store, "--since", "120d")
    result = CliRunner().invoke(app, ["keys", "--store", store, *NOW, "--since", "120d"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for k in doc["keys"]:
        assert k["id"] in result.stdout
        if k["spend"] is not None:
            assert f"${Decimal(k['spend']).quantize(Decimal('0.01')):,}" in result.stdout
    flag_lines = [line for line in result.stdout.splitlines() if line.startswith("default: ")]
    assert len(flag_lines) == sum(len(k["flags"]) for k in doc["keys"]) > 0


@pytest.fixture
def removed_owner(tmp_path: Path, emulator: Emulator) -> Iterator[tuple[str, str]]:
    """The emulator in replay-directory mode, serving its own directory with the owner of one user-owned key gone
    from that key's project; yields the base URL and the key's ID."""
    directory = emulator.directory
    assert directory is not None
    data = directory.data
    archived = set(emulator.source.retired.projects)
    project, key = next(
        (p, k)
        for p, keys in data.scoped["project_api_keys"].items()
        for k in keys
        if k["owner"]["type"] == "user" and p not in archived
    )
    owner = key["owner"]["user"]["id"]
    scoped = {name: dict(lists) for name, lists in data.scoped.items()}
    scoped["project_users"][project] = [u for u in scoped["project_users"][project] if u["id"] != owner]
    path = tmp_path / "directory.json"
    path.write_text(json.dumps({**data.top, **scoped}), encoding="utf-8")
    replayed = Emulator(dataclasses.replace(EMULATOR_CONFIG, replay_directory=path))
    with run_server(replayed) as url:
        yield url, key["id"]


def test_a_key_whose_owner_left_its_project_is_flagged_and_alerted(
    removed_owner: tuple[str, str], tmp_path: Path
) -> None:
    """A key whose owner is no longer a member of its project says "owner removed", in `keys` and as the one alert
    of `check --stale-keys`; without usage grouped by key, requests are unknown and a note says how to sync them."""
    url, key_id = removed_owner
    store = str(tmp_path / "owner.duckdb")
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": url}
    synced = CliRunner().invoke(
        app,
        [
            "sync",
            "--store",
            store,
            "--quiet",
            *NOW,
            "--since",
            "10d",
            "-e",
            "costs",
            "--group-by",
            "project_id,api_key_id",
        ],
        env=env,
    )
    assert synced.exit_code == 0, synced.output
    result = CliRunner().invoke(app, ["keys", "--store", store, *NOW, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "sync one with: usageledger sync" in result.stderr and "requests (usage)" in result.stderr
    doc = json.loads(result.stdout)
    removed = {k["id"] for k in doc["keys"] if k["owner"] and k["owner"]["removed"]}
    assert removed == {key_id}
    key = next(k for k in doc["keys"] if k["id"] == key_id)
    assert [f["flag"] for f in key["flags"]] == ["owner_removed"] and key["owner"]["name"]
    assert all(k["requests"] is None for k in doc["keys"]) and any(k["spend"] for k in doc["keys"])
    check = CliRunner().invoke(app, ["check", "--store", store, *NOW, "--stale-keys", "3650d", "-f", "json"])
    assert check.exit_code == 3, check.output
    alerts = [a for a in json.loads(check.stdout)["alerts"] if a["kind"] == "stale_key"]
    assert [a["subject"] for a in alerts] == [f"key {key_id}"] and "owner" in alerts[0]["message"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["keys", "--unused-after", "30"], "--unused-after"),
        (["keys", "--admin-max-age", "-5d"], "--admin-max-age"),
        (["keys", "--since", ""], "--since"),
        (["keys", "--since", "2999-01-01"], "--since"),
        (["keys", "--since", "30"], "--since"),
        (["check", "--stale-keys", "90"], "--stale-keys"),
        (["check", "--stale-keys", ""], "--stale-keys"),
        (["check", "--stale-keys", "99999999d"], "--stale-keys"),
        (["check", "--stale-after", "9999999999d"], "--stale-after"),
        (["keys", "--unused-after", "9999999999d"], "--unused-after"),
        (["keys", "--admin-max-age", "99999999999w"], "--admin-max-age"),
        (["keys", "--since", "99999999d"], "--since"),
    ],
)
def test_careless_inputs_get_one_line_errors(tmp_path: Path, args: list[str], flag: str) -> None:
    """A span without a unit, a negative span, an empty or future --since: one line naming the flag, exit 2, and no
    store is created."""
    store = tmp_path / "none.duckdb"
    result = CliRunner().invoke(app, [args[0], "--store", str(store), *args[1:]])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}"), result.stderr
    assert not store.exists()


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_key_deleted_between_two_refreshes_keeps_its_name_owner_and_creation(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, new_store: Callable[[str, Path], str]
) -> None:
    """The directory read before (46 days of history) and after (120 days) the emulator deletes keys: `keys` shows
    each deleted key by its old name, marked deleted, with the owner and creation time of its last listed version."""
    url = new_store(backend, tmp_path / "h.duckdb")
    young = Emulator(dataclasses.replace(EMULATOR_CONFIG, days=46))
    old = Emulator(EMULATOR_CONFIG)

    def through(emulator: Emulator) -> Callable[[Org], Client]:
        return lambda org: Client(org.api_key, "http://127.0.0.1/v1", transport=emulator.transport())

    org = Org("main", FAKE_ADMIN_KEY)
    with open_store(url) as db:
        refresh_org(db, org, at=EMULATOR_NOW - 86_400, client_factory=through(young))
        refresh_org(db, org, at=EMULATOR_NOW, client_factory=through(old))
    deleted = set(old.source.retired.keys)
    keys = {k["id"]: k for k in _keys(url)["keys"]}
    assert deleted and deleted <= set(keys)
    for key_id in deleted:
        key = keys[key_id]
        assert key["status"] == "deleted" and key["name"] and key["created"] and key["owner"]["name"], key
        assert key["flags"] == [] and key["project"]["name"]
    live = [k for k in keys.values() if k["status"] == "active" and k["type"] == "project"]
    assert live and all(k["spend"] is None and k["requests"] is None for k in live)


def test_keys_seen_only_in_usage_without_a_directory_are_unknown_and_unflagged(
    tmp_path: Path, emulator_url: str
) -> None:
    """Synced with --no-directory, the keys come from usage alone: status unknown, no owner, never flagged, and
    their spend still adds up to the costs stream."""
    url = str(tmp_path / "bare.duckdb")
    _sync(url, emulator_url, "--since", "10d", "-e", "costs", *KEYED)
    doc = _keys(url, "--since", "10d", "--unused-after", "1d")  # the strictest span there is
    assert doc["keys"] and all(k["status"] == "unknown" and k["owner"] is None for k in doc["keys"])
    assert all(k["flags"] == [] for k in doc["keys"])
    total = _query(url, "SELECT SUM(amount_value) FROM costs WHERE api_key_id IS NOT NULL")[0][0]
    assert sum(Decimal(k["spend"]) for k in doc["keys"]) == total


def test_the_no_key_line_names_the_orgs_it_adds_up_for() -> None:
    """The line after the table said the keys' spend and the spend through no key add up to "the period's costs";
    in a store of two orgs of which one has no costs stream grouped by key, they add up to the other's alone. The
    line then names the orgs whose costs they are and the ones left out."""
    from usageledger.report.keys import KeyInfo, KeyRules, KeysReport, no_key_line

    def key(org: str, spend: Decimal | None) -> KeyInfo:
        return KeyInfo(org, f"key_{org}", "project", org, "active", None, None, None, None, None, None, spend, None)

    moment = datetime(2026, 10, 1, tzinfo=UTC)
    report = KeysReport(
        moment,
        moment,
        KeyRules(),
        "usd",
        ("acme/costs.1d.project_id+api_key_id",),
        (),
        (key("acme", Decimal("10.50")), key("globex", None)),
        no_key_spend=Decimal("2.25"),
    )
    line = no_key_line(report)
    assert line is not None and line.endswith(
        "; with it the keys' spend adds up to $12.75, the costs of acme (no costs stream of globex groups by key)."
    ), line
    whole = no_key_line(dataclasses.replace(report, keys=report.keys[:1]))
    assert whole is not None and whole.endswith("adds up to $12.75, the period's costs."), whole
    # of one project (keys --project, the drill-down): globex may group costs by key, only not by project too
    of_one = no_key_line(dataclasses.replace(report, project="proj_a"))
    assert of_one is not None and of_one.endswith(
        "adds up to $12.75, the project's costs in acme (no costs stream of globex groups by project and key)."
    ), of_one


def test_keys_of_a_project_with_none_say_so_not_that_the_store_has_no_directory(store: str) -> None:
    """`keys --project` with no key of that project printed "the store holds no directory and no usage grouped by
    api_key_id" of a store holding both; the heading names the project the keys are of, and the empty table says
    that project has none."""
    result = CliRunner().invoke(app, ["keys", "--store", store, *NOW, "--project", "proj_none"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "UTC project proj_none" in out
    assert "no API keys of project proj_none: the directory lists none in it" in out
    assert "holds no directory" not in out
    whole = CliRunner().invoke(app, ["keys", "--store", store, *NOW], env={"COLUMNS": "250"})
    assert _keys(store, "--project", "proj_none")["project"] == "proj_none" and _keys(store)["project"] is None
    assert whole.exit_code == 0 and "no API keys" not in whole.stdout and " project " not in whole.stdout.split("\n")[0]
