"""Several organisations behind one emulator, told apart by the admin key; and the bounded response cache."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest

from usageledger.emulator import Emulator, EmulatorConfig, Request, handler
from usageledger.emulator.orgs import Organisations, org_key
from usageledger.errors import EmulatorConfigError

from fixtures.emulator import EMULATOR_NOW

DAY = 86400
TODAY = EMULATOR_NOW - EMULATOR_NOW % DAY
CONFIG = EmulatorConfig(seed=4, days=60, projects=3, users=6, models=4, now=EMULATOR_NOW)
COSTS = {"start_time": TODAY - 7 * DAY, "end_time": TODAY, "group_by": "project_id,line_item"}


def _get(client: httpx.Client, path: str, key: str, **params: Any) -> httpx.Response:
    return client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})


def test_org_keys_are_numbered_from_01() -> None:
    assert [org_key(n) for n in (1, 2, 10, 100)] == [
        "sk-admin-emulator-org-01",
        "sk-admin-emulator-org-02",
        "sk-admin-emulator-org-10",
        "sk-admin-emulator-org-100",
    ]
    assert Organisations(CONFIG, 3).keys == tuple(org_key(n) for n in (1, 2, 3))


def test_each_key_sees_its_own_organisation() -> None:
    """Two keys, two organisations: different projects, usage and costs; each is the organisation of seed+n."""
    orgs = Organisations(CONFIG, 3)
    with httpx.Client(transport=orgs.transport(), base_url="http://emulator/v1") as client:
        projects = [_get(client, "/organization/projects", org_key(n)).json() for n in (1, 2)]
        ids = [{p["id"] for p in page["data"]} for page in projects]
        assert ids[0] and ids[1] and not ids[0] & ids[1]
        costs = [_get(client, "/organization/costs", org_key(n), **COSTS) for n in (1, 2)]
        assert all(r.status_code == 200 for r in costs)
        assert costs[0].content != costs[1].content
        used = [{row["project_id"] for b in r.json()["data"] for row in b["results"]} for r in costs]
        assert used[0] <= ids[0] and used[1] <= ids[1]
    alone = Emulator(EmulatorConfig(seed=6, days=60, projects=3, users=6, models=4, now=EMULATOR_NOW))
    query = httpx.QueryParams(COSTS)
    same = alone.handle(Request("GET", "/v1/organization/costs", str(query), {"authorization": "Bearer sk-admin-x"}))
    third = orgs.handle(Request("GET", "/v1/organization/costs", str(query), {"authorization": f"Bearer {org_key(2)}"}))
    assert same.body == third.body  # organisation 2 of seed 4 is the single organisation of seed 6


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [
        ("Bearer sk-admin-emulator-org-04", 401, "invalid_api_key"),
        ("Bearer sk-admin-someone-else", 401, "invalid_api_key"),
        (None, 401, None),
        ("Bearer sk-proj-abc", 403, "missing_scope"),
    ],
    ids=["beyond-the-count", "unknown", "missing", "project-key"],
)
def test_other_keys_are_refused_like_the_real_api(header: str | None, status: int, code: str | None) -> None:
    orgs = Organisations(CONFIG, 3)
    headers = {} if header is None else {"authorization": header}
    for path in ("/v1/organization/usage/completions", "/v1/organization/projects"):
        r = orgs.handle(Request("GET", path, "start_time=0", headers))
        assert r.status == status
        assert json.loads(r.body)["error"]["code"] == code


def test_organisations_refuse_a_pinned_key_replay_and_bad_counts() -> None:
    with pytest.raises(EmulatorConfigError):
        Organisations(EmulatorConfig(admin_key="sk-admin-x"), 2)
    for count in (0, 1001):
        with pytest.raises(EmulatorConfigError):
            Organisations(CONFIG, count)


def test_the_cache_stays_within_its_budget() -> None:
    """Many distinct pages through a 256 KiB cache: what is kept never exceeds the budget, and answers repeat."""
    emulator = Emulator(EmulatorConfig(seed=4, days=60, projects=3, now=EMULATOR_NOW, cache_bytes=256 * 1024))
    headers = {"authorization": "Bearer sk-admin-x"}
    first = None
    for k in range(30):
        query = f"start_time={TODAY - (31 + k) * DAY}&limit=31&group_by=project_id,model,user_id"
        body = emulator.handle(Request("GET", "/v1/organization/usage/completions", query, headers)).body
        first = first or body
        kept = emulator._buckets.size + emulator._pages.size
        assert 0 < kept <= 256 * 1024
    query = f"start_time={TODAY - 31 * DAY}&limit=31&group_by=project_id,model,user_id"
    assert emulator.handle(Request("GET", "/v1/organization/usage/completions", query, headers)).body == first
    with pytest.raises(EmulatorConfigError):
        EmulatorConfig(cache_bytes=-1)


# --- the command line ---------------------------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from usageledger.cli import main; main()", "emulator", *args]


def test_emulator_command_serves_several_organisations() -> None:
    """`usageledger emulator --orgs 2`: each key its own organisation over HTTP; an unknown key is a 401."""
    command = _cli("--port", "0", "--orgs", "2", "--days", "40", "--projects", "2", "--now", str(EMULATOR_NOW))
    proc = subprocess.Popen([*command, "--cache-mb", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line.startswith("Emulator ready at "), line + (proc.stderr.read() if proc.stderr else "")
        url = line.split(" at ", 1)[1].strip()
        with httpx.Client(base_url=url) as client:
            usage = {"start_time": TODAY - 7 * DAY, "group_by": "project_id,model"}
            pages = [_get(client, "/organization/usage/completions", org_key(n), **usage) for n in (1, 2)]
            assert [r.status_code for r in pages] == [200, 200]
            assert pages[0].json()["data"] != pages[1].json()["data"]
            refused = _get(client, "/organization/usage/completions", "sk-admin-emulator-org-03", start_time=0)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
            assert "sk-admin-emulator-org-03" not in refused.text  # the key is masked, as the real API does
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--cache-mb", "-1"], "--cache-mb -1"),
        (["--cache-mb", "9999999"], "--cache-mb 9999999"),
        (["--orgs", "0"], "--orgs 0"),
        (["--orgs", "2", "--admin-key", "sk-admin-x"], "--orgs cannot be combined with --admin-key"),
    ],
    ids=["negative-cache", "huge-cache", "no-orgs", "orgs-and-key"],
)
def test_emulator_command_refuses_bad_cache_and_orgs(args: list[str], needle: str) -> None:
    """Out-of-range values are a one-line error naming the flag, never a traceback, and nothing is served."""
    result = subprocess.run(_cli("--port", "0", *args), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert needle in result.stderr
    assert "Traceback" not in result.stderr and "sk-admin-x" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _pages_of_a_pass(emulator: Emulator, count: int) -> list[bytes]:
    headers = {"authorization": "Bearer sk-admin-x"}
    bodies = []
    for k in range(count):  # a day of hours each, none overlapping: a sync's windows
        query = f"start_time={TODAY - (k + 1) * DAY}&end_time={TODAY - k * DAY}&bucket_width=1h&limit=24"
        query += "&group_by=project_id,model,user_id"
        bodies.append(emulator.handle(Request("GET", "/v1/organization/usage/completions", query, headers)).body)
    return bodies


def test_a_cache_under_pressure_packs_pages_and_answers_a_second_pass_from_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sync asks for the same pages again (a re-run, a warm-up): once pages hold a sixteenth of the cache, they are
    kept compressed, so a pass over several times the raw budget is answered again without computing a bucket."""
    emulator = Emulator(EmulatorConfig(seed=4, days=60, projects=3, now=EMULATOR_NOW, cache_bytes=3 * 2**20))
    first = _pages_of_a_pass(emulator, 40)
    raw = sum(map(len, first))
    assert raw > 2 * 3 * 2**20, "the pass must not fit the cache uncompressed"
    assert emulator._buckets.size + emulator._pages.size <= 3 * 2**20
    computed: list[int] = []
    usage = emulator.results.usage
    monkeypatch.setattr(emulator.results, "usage", lambda *a, **k: computed.append(1) or usage(*a, **k))
    assert _pages_of_a_pass(emulator, 40) == first
    assert computed == []


def test_a_body_larger_than_the_cache_does_not_empty_it() -> None:
    emulator = Emulator(EmulatorConfig(seed=4, days=60, projects=3, now=EMULATOR_NOW, cache_bytes=64 * 1024))
    emulator._pages.put(("small",), b"x" * 1000)
    emulator._pages.put(("huge",), random.Random(7).randbytes(2**20))  # 1 MiB that does not compress: never fits
    assert emulator._pages.get(("small",)) == b"x" * 1000
    assert emulator._pages.get(("huge",)) is None


def test_no_cache_packs_nothing_and_answers_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--cache-mb 0`: every page is computed afresh, none is compressed on its way to a cache that keeps nothing."""
    packed: list[int] = []
    compress = handler.zlib.compress
    monkeypatch.setattr(handler.zlib, "compress", lambda data, level: packed.append(len(data)) or compress(data, level))
    cached = Emulator(EmulatorConfig(seed=4, days=60, projects=3, now=EMULATOR_NOW))
    uncached = Emulator(EmulatorConfig(seed=4, days=60, projects=3, now=EMULATOR_NOW, cache_bytes=0))
    assert _pages_of_a_pass(uncached, 3) == _pages_of_a_pass(uncached, 3) == _pages_of_a_pass(cached, 3)
    assert packed == [] and uncached._pages.size == uncached._buckets.size == 0
