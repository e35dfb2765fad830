"""Replay: usage records from JSON Lines or CSV served by the emulator with the same roll-up rules."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from usageledger.emulator import Emulator, EmulatorConfig
from usageledger.emulator.replay import ReplayError

from fixtures.emulator import EMULATOR_NOW

KEY = {"Authorization": "Bearer sk-admin-test-key"}
DAY = 86400
D0 = EMULATOR_NOW - EMULATOR_NOW % DAY - 5 * DAY

RECORDS: list[dict[str, Any]] = [
    {"endpoint": "completions", "time": D0 + 3600, "project_id": "proj_a", "model": "gpt-4o-mini-2024-07-18",
     "batch": False, "num_model_requests": 10, "input_tokens": 1000, "input_cached_tokens": 200, "output_tokens": 300},
    {"endpoint": "completions", "time": D0 + 7200 + 61, "project_id": "proj_b", "model": "gpt-4o-2024-08-06",
     "batch": True, "num_model_requests": 4, "input_text_tokens": 400, "output_tokens": 100},
    {"endpoint": "completions", "time": "2026-11-16T05:00:00Z", "project_id": "proj_a", "model": "gpt-4o-2024-08-06",
     "num_model_requests": 1, "input_tokens": 50, "output_tokens": 5},
    {"endpoint": "vector_stores", "time": D0, "project_id": "proj_a", "usage_bytes": 1 << 30},
    {"endpoint": "vector_stores", "time": D0 + 2 * DAY, "project_id": "proj_a", "usage_bytes": 2 << 30},
    {"endpoint": "images", "time": D0 + 100, "project_id": "proj_b", "model": "dall-e-3", "size": "1024x1024",
     "source": "image.generation", "images": 3, "num_model_requests": 2},
]  # fmt: skip


def serve(path: Path) -> httpx.Client:
    emulator = Emulator(EmulatorConfig(replay=path, now=EMULATOR_NOW))
    return httpx.Client(transport=emulator.transport(), base_url="http://e/v1", headers=KEY)


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    """The records as JSON Lines."""
    path = tmp_path / "usage.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def test_replayed_records_roll_up_and_keep_the_identities(jsonl: Path) -> None:
    """Totals, breakdown remainders and minute/hour/day placement follow the records."""
    with serve(jsonl) as client:
        params = {"start_time": D0, "end_time": D0 + DAY, "group_by": "project_id"}
        day = client.get("/organization/usage/completions", params=params).json()["data"][0]["results"]
        a = next(r for r in day if r["project_id"] == "proj_a")
        assert a["num_model_requests"] == 10 and a["input_tokens"] == 1000 and a["output_tokens"] == 300
        assert a["input_cached_tokens"] == 200 and a["input_text_tokens"] == 800 and a["output_text_tokens"] == 300
        b = next(r for r in day if r["project_id"] == "proj_b")
        assert b["input_tokens"] == 400 and b["output_text_tokens"] == 100
        hours = client.get("/organization/usage/completions", params={**params, "bucket_width": "1h"}).json()["data"]
        assert [len(h["results"]) for h in hours[:4]] == [0, 1, 1, 0]
        minute = {"start_time": D0 + 7200, "end_time": D0 + 7200 + 180, "bucket_width": "1m"}
        minutes = client.get("/organization/usage/completions", params=minute).json()["data"]
        assert [m["results"][0]["num_model_requests"] if m["results"] else 0 for m in minutes] == [0, 4, 0]
        later = client.get("/organization/usage/completions", params={"start_time": D0 + DAY, "limit": 5}).json()
        assert sum(len(b["results"]) for b in later["data"]) == 1


def test_replayed_storage_carries_forward_and_is_billed(jsonl: Path) -> None:
    """usage_bytes is a level that holds until the next record; storage and usage show up as cost line items."""
    with serve(jsonl) as client:
        levels = client.get("/organization/usage/vector_stores", params={"start_time": D0, "limit": 4}).json()["data"]
        assert [b["results"][0]["usage_bytes"] for b in levels] == [1 << 30, 1 << 30, 2 << 30, 2 << 30]
        costs = client.get("/organization/costs", params={"start_time": D0, "group_by": "line_item"}).json()
        items = {r["line_item"]: r for r in costs["data"][0]["results"]}
        assert (
            items["vector store storage"]["quantity"] == 24
            and items["vector store storage"]["quantity_unit"] == "gibibyte_hours"
        )
        assert items["dall-e-3, 1024x1024 images"]["quantity"] == 3
        assert items["gpt-4o-mini-2024-07-18, input"]["quantity"] == 800
        assert items["gpt-4o-2024-08-06, batch input"]["quantity"] == 400


def test_csv_replays_like_json_lines(jsonl: Path, tmp_path: Path) -> None:
    """A CSV file with the same records gives the same pages."""
    path = tmp_path / "usage.csv"
    names = sorted({k for r in RECORDS for k in r})
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        for r in RECORDS:
            writer.writerow({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in r.items()})
    for endpoint in ("completions", "vector_stores", "images"):
        params = {"start_time": D0, "group_by": "project_id"}
        with serve(jsonl) as a, serve(path) as b:
            assert (
                a.get(f"/organization/usage/{endpoint}", params=params).content
                == b.get(f"/organization/usage/{endpoint}", params=params).content
            )


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"endpoint": "tokens", "time": 0}, "unknown endpoint"),
        ({"endpoint": "completions"}, "needs `time`"),
        ({"endpoint": "completions", "time": 0, "num_model_requests": "many"}, "expected an integer"),
        ({"endpoint": "completions", "time": 0, "input_tokens": 5, "input_text_tokens": 9}, "smaller than"),
    ],
)
def test_bad_records_name_their_line(tmp_path: Path, record: dict[str, Any], message: str) -> None:
    """An unusable record raises ReplayError naming the file and line."""
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + json.dumps(record) + "\n")
    with pytest.raises(ReplayError, match=message) as info:
        Emulator(EmulatorConfig(replay=path, now=EMULATOR_NOW))
    assert "bad.jsonl:2" in str(info.value)
