"""The repository stands alone: nothing in it reads outside the clone, and the test data it needs is inside."""

from __future__ import annotations

import re

from fixtures.data import EXAMPLES, REPO, SEED, SPEC

OUTSIDE = re.compile(r"\.\./shared|parent\s*/\s*[\"']shared[\"']|[\"']shared[\"']\s*/")
CHECKED = ("src", "tests", "scripts", "bench", ".ci")


def test_nothing_reads_outside_the_repository() -> None:
    """No source, test, script or benchmark names a path beside the clone (the shared reference folder)."""
    offenders = []
    for top in CHECKED:
        for path in (REPO / top).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".sh", ""} and "data" not in path.parts:
                text = path.read_text(errors="replace")
                offenders += [
                    f"{path.relative_to(REPO)}:{n}"
                    for n, line in enumerate(text.splitlines(), 1)
                    if OUTSIDE.search(line) and path.name != "test_standalone.py"
                ]
    assert offenders == []


def test_the_reference_data_is_in_the_repository() -> None:
    """One example page per usage endpoint, the OpenAPI excerpt and the seed's nine signatures live in tests/data."""
    from usageledger import catalogue

    assert {p.stem for p in EXAMPLES.glob("*.json")} == {e.name for e in catalogue.ENDPOINTS}
    assert SPEC.read_text().lstrip().startswith(("openapi", "#", "paths", "components"))
    assert len([line for line in SEED.read_text().splitlines() if line.startswith("UsageResponse usage_")]) == 9
