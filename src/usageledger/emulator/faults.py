"""Fault decisions: pure functions of (fault config, request number), so a seeded run repeats exactly.

The handler turns a decision into a status (429, 500/503) or a damaged body; the server realises the rest:
latency, dropped connections and slow bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from usageledger.emulator.activity import unit
from usageledger.emulator.config import FaultConfig

__all__ = ["NO_FAULT", "Fault", "decide"]

FaultKind = Literal["none", "429", "500", "503", "drop", "truncate", "malformed", "slow"]


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one response: its kind and the delay before it is sent (seconds)."""

    kind: FaultKind = "none"
    delay: float = 0.0

    @property
    def slow_body(self) -> bool:
        return self.kind == "slow"


NO_FAULT: Final = Fault()


def decide(config: FaultConfig, request_number: int) -> Fault:
    """The fault for the ``request_number``-th request (0-based): drop, 429, 5xx, truncate, in that order."""
    if not config.active:
        return NO_FAULT
    delay = config.latency + config.jitter * unit(config.seed, 1, request_number)
    draw = unit(config.seed, 2, request_number)
    kind: FaultKind = "none"
    edge = config.rate_drop
    if draw < edge:
        kind = "drop"
    elif draw < (edge := edge + config.rate_429):
        kind = "429"
    elif draw < (edge := edge + config.rate_5xx):
        kind = "503" if unit(config.seed, 3, request_number) < 0.5 else "500"
    elif draw < edge + config.rate_truncate:
        pick = unit(config.seed, 4, request_number)
        kind = "truncate" if pick < 0.4 else "malformed" if pick < 0.7 else "slow"
    return Fault(kind, delay)
