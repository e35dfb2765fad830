"""Several synthetic organisations behind one server, told apart by the admin key, as the real API tells them.

Organisation ``n`` (1-based) answers to the key ``sk-admin-emulator-org-NN`` (two digits at least: ``-01``, ``-02``,
..., ``-100``). It is the synthetic organisation of seed ``seed + n`` with the rest of the configuration shared, so
every organisation has its own projects, users, keys, activity, costs and directory, and ``--orgs 3 --seed 0``'s
organisation 2 is ``--seed 2``'s single organisation. Each is built on its first request. An unknown key gets the
real API's 401 (``invalid_api_key``); the response cache budget is shared out evenly.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Final

from usageledger.emulator.config import EmulatorConfig
from usageledger.emulator.handler import Emulator
from usageledger.emulator.messages import Request, Response
from usageledger.emulator.transport import EmulatorTransport
from usageledger.errors import EmulatorConfigError

__all__ = ["MAX_ORGS", "ORG_KEY_PREFIX", "Organisations", "org_key"]

ORG_KEY_PREFIX: Final = "sk-admin-emulator-org-"
MAX_ORGS: Final = 1000


def org_key(number: int) -> str:
    """The admin key of organisation ``number`` (1-based): ``sk-admin-emulator-org-01`` and so on."""
    return f"{ORG_KEY_PREFIX}{number:02d}"


class Organisations:
    """``count`` emulated organisations; :meth:`handle` routes each request by its bearer key."""

    def __init__(self, config: EmulatorConfig, count: int, *, clock: Callable[[], float] | None = None) -> None:
        if not 1 <= count <= MAX_ORGS:
            raise EmulatorConfigError(f"the number of organisations must be from 1 to {MAX_ORGS}, got {count}")
        if config.replay is not None or config.admin_key is not None:
            raise EmulatorConfigError("several organisations have their own keys and synthetic data")
        self.config = config
        self.count = count
        self._clock = clock
        self._numbers = {org_key(n): n for n in range(1, count + 1)}
        self._built: dict[int, Emulator] = {}
        self._lock = threading.Lock()

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._numbers)

    def org(self, number: int) -> Emulator:
        """Organisation ``number`` (1-based), built on first use."""
        hit = self._built.get(number)
        if hit is not None:
            return hit
        with self._lock:
            hit = self._built.get(number)
            if hit is None:
                config = dataclasses.replace(
                    self.config,
                    seed=self.config.seed + number,
                    admin_key=org_key(number),
                    cache_bytes=self.config.cache_bytes // self.count,
                )
                hit = self._built[number] = Emulator(config, clock=self._clock)
            return hit

    def handle(self, request: Request) -> Response:
        """Answer as the organisation the key names; any other key is refused by organisation 1's rules (401)."""
        header = request.headers.get("authorization") or ""
        scheme, _, key = header.partition(" ")
        number = self._numbers.get(key.strip(), 1) if scheme.lower() == "bearer" else 1
        return self.org(number).handle(request)

    def transport(self, *, sleep: Callable[[float], object] | None = None) -> EmulatorTransport:
        """An in-process httpx transport over every organisation (see :meth:`Emulator.transport`)."""
        return EmulatorTransport(self.handle, sleep=sleep)
