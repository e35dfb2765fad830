"""The repository stands alone: nothing in it reads outside the clone, and the test data it needs is inside."""

from __future__ import annotations

import re
import subprocess

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


# What a clone holds at its top: the project's folders and files, nothing a session left behind.
TOP_LEVEL = {".ci", ".gitignore", "README.md", "bench", "contrib", "docs", "pyproject.toml", "scripts", "src", "tests"}


def test_a_clone_holds_only_the_project_at_its_top() -> None:
    """A new user's clone showed w2.out and w2.err beside the README (a session's scratch output, committed); the
    tracked top level is the project's own folders and files."""
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert {path.split("/", 1)[0] for path in tracked} - TOP_LEVEL == set()
