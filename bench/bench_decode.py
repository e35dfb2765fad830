"""Typed decoding of one large completions page: usageledger's ``decode_page`` vs the official SDK's models.

The page is 168 hourly buckets x 30 grouped results (about 1.7 MB), generated deterministically. Both sides start
from the same response bytes and end with typed objects:

* usageledger: ``decode_page(body)`` (msgspec, straight from bytes into structs, ``Decimal`` money);
* openai 3.57: what ``client.admin.organization.usage.completions`` does with a response by default --
  ``response.json()`` (``json.loads``) then ``BaseClient._process_response_data``, which calls
  ``construct_type(type_=UsageCompletionsResponse, value=data)`` (``_strict_response_validation=False``).
  The strict path (``validate_type`` / pydantic ``model_validate``) is timed too, for reference.

Run: ``.venv/bin/python bench/bench_decode.py`` (``--rounds N`` for more samples).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from openai._models import construct_type, validate_type
from openai.types.admin.organization.usage_completions_response import UsageCompletionsResponse

from usageledger.models import decode_page

HOUR = 3600
START = 1_790_000_000 - 1_790_000_000 % 86_400
BUCKETS = 168
GROUPS = 30


def make_page(buckets: int = BUCKETS, groups: int = GROUPS, seed: int = 2026) -> bytes:
    """An hourly completions page grouped by project and model, the same bytes on every run."""
    rng = random.Random(seed)
    models = ["gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-4.1-2025-04-14", "o3-mini-2025-01-31", "gpt-5"]
    data = []
    for b in range(buckets):
        start = START + b * HOUR
        results = []
        for g in range(groups):
            # The field set of the 2026-05 spec (before the per-modality breakdown): about 340 bytes a result.
            cached, audio_in, audio_out = rng.randrange(10**5), rng.randrange(10**4), rng.randrange(10**4)
            results.append(
                {
                    "object": "organization.usage.completions.result",
                    "input_tokens": cached + rng.randrange(10**6),
                    "output_tokens": audio_out + rng.randrange(10**5),
                    "num_model_requests": rng.randrange(1, 5000),
                    "input_cached_tokens": cached,
                    "input_audio_tokens": audio_in,
                    "output_audio_tokens": audio_out,
                    "project_id": f"proj_{g // len(models):02d}abcdefghijklmnopqrstuv",
                    "user_id": None,
                    "api_key_id": None,
                    "model": models[g % len(models)],
                    "batch": None,
                    "service_tier": None,
                }
            )
        data.append({"object": "bucket", "start_time": start, "end_time": start + HOUR, "results": results})
    page = {"object": "page", "data": data, "has_more": True, "next_page": "page_AAAAAGdGxdEiJdKO+/AAAAAGcqsYA="}
    return json.dumps(page, separators=(",", ":")).encode()


def sdk_default(body: bytes) -> object:
    """The SDK's default parse: response.json() then construct_type (no validation)."""
    return construct_type(type_=UsageCompletionsResponse, value=json.loads(body))


def sdk_strict(body: bytes) -> object:
    """The SDK's strict parse (``_strict_response_validation=True``): json.loads then validate_type."""
    return validate_type(type_=UsageCompletionsResponse, value=json.loads(body))


def ours(body: bytes) -> object:
    return decode_page(body)


def check_same(body: bytes) -> None:
    """Both sides read the same page: bucket count, result count and a sum over every result."""
    mine = decode_page(body)
    theirs: Any = sdk_default(body)
    assert isinstance(theirs, UsageCompletionsResponse)
    assert len(mine.data) == len(theirs.data) == BUCKETS
    mine_sum = sum(r.input_tokens for b in mine.data for r in b.results)  # type: ignore[union-attr]
    their_sum = sum(r.input_tokens for b in theirs.data for r in b.results)
    assert mine_sum == their_sum
    assert sum(len(b.results) for b in mine.data) == BUCKETS * GROUPS


def time_one(fn: Callable[[bytes], object], body: bytes, *, min_seconds: float = 0.5) -> float:
    """Seconds per call: the best of loops that each run for at least ``min_seconds``."""
    fn(body)
    loops = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn(body)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return elapsed / loops
        loops *= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    args = parser.parse_args()
    body = make_page()
    check_same(body)
    samples: dict[str, list[float]] = {"usageledger decode_page": [], "openai construct_type": [], "openai strict": []}
    fns = {"usageledger decode_page": ours, "openai construct_type": sdk_default, "openai strict": sdk_strict}
    for _ in range(args.rounds):  # interleaved, so drift on a noisy machine hits every side alike
        for name, fn in fns.items():
            samples[name].append(time_one(fn, body))
    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"page: {len(body):,} bytes ({len(body) / 1e6:.2f} MB), {BUCKETS} buckets x {GROUPS} results")
    print(f"python {platform.python_version()}, {platform.machine()}, rounds={args.rounds} (median of rounds)")
    for name, seconds in med.items():
        print(f"  {name:<26} {seconds * 1e3:9.2f} ms/page")
    base = med["usageledger decode_page"]
    print(f"  ratio vs SDK default (construct_type): {med['openai construct_type'] / base:6.1f}x  (target >= 20x)")
    print(f"  ratio vs SDK strict (validate_type):   {med['openai strict'] / base:6.1f}x")


if __name__ == "__main__":
    main()
