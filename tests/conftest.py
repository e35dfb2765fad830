"""Shared test set-up: a clean environment for every test, and the fixture plugins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins: list[str] = ["fixtures.emulator", "fixtures.browser", "fixtures.postgres"]

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
EXAMPLES = SHARED / "reference" / "examples"
SPEC = SHARED / "reference" / "usage-api.yaml"
SEED = SHARED / "seed" / "000_bd45f7bc934d845d.txt"

FAKE_ADMIN_KEY = "sk-admin-test-key"
"""An obviously fake admin key; the emulator accepts any sk-admin- key by default."""


@pytest.fixture(autouse=True)
def _clean_openai_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's OPENAI_* or USAGELEDGER_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith(("OPENAI_", "USAGELEDGER_")):
            monkeypatch.delenv(name, raising=False)
    yield
