"""The emulator's answers are byte-identical to the recorded goldens (``tests/data/emulator_golden.json``).

The goldens were recorded from the emulator before its per-day aggregates moved to numpy: a set of representative
requests per endpoint (every bucket width, groupings, filters, unaligned starts, followed pages, revisions, errors,
directory lists) on three organisations, each with the SHA-256 of the response body. Any change to what the
emulator serves shows here. Re-record (only for an intended change of output) with
``PYTHONPATH=src .venv/bin/python tests/emulator/test_emulator_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from usageledger import catalogue
from usageledger.emulator import Emulator, EmulatorConfig, Request

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "emulator_golden.json"
NOW = 1795176000  # 2026-11-20T12:00:00Z
DAY = 86400
HOUR = 3600
TODAY = NOW - NOW % DAY
HEADERS = {"authorization": "Bearer sk-admin-golden"}

CONFIGS: dict[str, EmulatorConfig] = {
    "small": EmulatorConfig(seed=7, days=120, projects=4, users=8, models=5, now=NOW),
    "default": EmulatorConfig(now=NOW),
    "revisions": EmulatorConfig(seed=3, days=60, projects=3, users=6, models=4, now=NOW, revisions=True),
}


def _queries(emulator: Emulator, endpoint: catalogue.Endpoint, name: str) -> Iterator[dict[str, Any]]:
    """Representative queries of one endpoint on one organisation."""
    org = emulator.source.org  # type: ignore[attr-defined]
    project = org.projects[0].id
    all_groups = ",".join(endpoint.group_by)
    yield {"start_time": TODAY - 31 * DAY, "end_time": TODAY, "limit": 31}
    yield {"start_time": TODAY - 31 * DAY, "end_time": TODAY, "limit": 31, "group_by": all_groups}
    yield {"start_time": TODAY - 40 * DAY, "limit": 7, "group_by": endpoint.group_by[0]}  # followed to the end
    yield {"start_time": TODAY - 5 * DAY + 12345, "end_time": TODAY - DAY + 777, "limit": 31}  # unaligned
    yield {"start_time": TODAY - 31 * DAY, "end_time": TODAY, "limit": 31, "project_ids": project}
    if endpoint.is_costs:
        yield {"start_time": TODAY - 31 * DAY, "end_time": TODAY, "limit": 31, "group_by": "project_id,line_item"}
        yield {"start_time": TODAY - 31 * DAY, "end_time": TODAY, "limit": 31, "group_by": "line_item,api_source"}
        item = f"{org.chat_models[0].name}, input"
        yield {"start_time": TODAY - 31 * DAY, "limit": 31, "group_by": "line_item", "line_items": item}
        yield {"start_time": org.config.now - (org.config.days + 10) * DAY, "limit": 20}  # before the history
        return
    yield {"start_time": org.config.now - (org.config.days + 10) * DAY, "limit": 20}  # before the history
    if "model" in endpoint.group_by:
        yield {"start_time": TODAY - 31 * DAY, "limit": 31, "group_by": "project_id,model"}
        yield {"start_time": TODAY - 31 * DAY, "limit": 31, "models": org.models[0], "group_by": "user_id"}
    if any(f.name == "batch" for f in endpoint.filters):
        yield {"start_time": TODAY - 10 * DAY, "limit": 31, "batch": "true", "group_by": "model"}
    yield {
        "start_time": TODAY - 2 * DAY,
        "end_time": TODAY,
        "bucket_width": "1h",
        "limit": 48,
        "group_by": "project_id",
    }
    yield {"start_time": NOW - 30 * HOUR, "bucket_width": "1h", "limit": 168}  # up to now: revising in "revisions"
    if name != "default":
        yield {"start_time": TODAY - 2 * HOUR, "end_time": TODAY, "bucket_width": "1m", "limit": 1440}
        yield {"start_time": NOW - 90 * 60, "bucket_width": "1m", "limit": 100, "group_by": all_groups}
    yield {"start_time": TODAY - 3 * DAY, "limit": 10, "bucket_width": "1d", "group_by": "nonsense"}  # a 400


def requests() -> Iterator[tuple[str, Emulator, str, str]]:
    """(config name, emulator, path, query) of every golden request, following ``next_page`` to the end."""
    for name, config in CONFIGS.items():
        emulator = Emulator(config)
        for endpoint in catalogue.ENDPOINTS:
            path = "/v1" + endpoint.path
            for query in _queries(emulator, endpoint, name):
                yield name, emulator, path, urlencode(query)
        for path in ("/v1/organization/projects", "/v1/organization/users"):
            yield name, emulator, path, "limit=100"


def answer(emulator: Emulator, path: str, query: str) -> Iterator[tuple[str, int, bytes]]:
    """The response to a request and to every next page it links to: (query, status, body)."""
    while True:
        response = emulator.handle(Request("GET", path, query, HEADERS))
        yield query, response.status, response.body
        if response.status != 200 or ("/usage/" not in path and "/costs" not in path):
            return
        page = json.loads(response.body)
        if not page.get("has_more"):
            return
        query = f"{query}&{urlencode({'page': page['next_page']})}"


def observed() -> list[dict[str, Any]]:
    out = []
    for name, emulator, path, query in requests():
        for q, status, body in answer(emulator, path, query):
            out.append({"config": name, "path": path, "query": q, "status": status, "sha256": _digest(body)})
    return out


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@pytest.fixture(scope="module")
def golden() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(GOLDEN.read_text())
    return entries


def test_goldens_cover_every_endpoint_and_width(golden: list[dict[str, Any]]) -> None:
    paths = {e["path"] for e in golden}
    assert {"/v1" + e.path for e in catalogue.ENDPOINTS} <= paths
    queries = " ".join(e["query"] for e in golden)
    for needle in ("bucket_width=1h", "bucket_width=1m", "page=", "group_by=", "project_ids="):
        assert needle in queries
    assert {e["status"] for e in golden} == {200, 400}
    assert sum(e["status"] == 200 for e in golden) > 300


def test_every_answer_is_byte_identical_to_the_golden(golden: list[dict[str, Any]]) -> None:
    now = observed()
    assert len(now) == len(golden)
    mismatches = [(g["config"], g["path"], g["query"]) for g, o in zip(golden, now, strict=True) if g != o]
    assert mismatches == []


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(observed(), indent=0) + "\n")
    print(f"wrote {GOLDEN}")
