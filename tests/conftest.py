"""Shared test set-up: a clean environment for every test, and the fixture plugins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest_plugins: list[str] = ["fixtures.emulator", "fixtures.browser", "fixtures.postgres"]


@pytest.fixture(autouse=True)
def _clean_openai_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's OPENAI_* or USAGELEDGER_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith(("OPENAI_", "USAGELEDGER_")):
            monkeypatch.delenv(name, raising=False)
    yield
