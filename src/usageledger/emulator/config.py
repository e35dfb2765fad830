"""The emulator's configuration: organisation size, clock, revisions, faults and replay, resolved once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from usageledger.errors import EmulatorConfigError

__all__ = [
    "MAX_RETRY_AFTER_MS",
    "MAX_SIZE",
    "MIN_REVISION_WINDOW",
    "NAME_STYLES",
    "EmulatorConfig",
    "FaultConfig",
    "NameStyle",
]

MIN_REVISION_WINDOW: Final = 60
"""The shortest ``revision_window`` (seconds): a minute bucket must have time to change."""

MAX_SIZE: Final = {"projects": 1000, "users": 100_000, "models": 10, "keys": 20}
"""The most of each the synthetic organisation holds. ``models``: the chat models ``emulator.org.CHAT_MODELS`` knows
(a test keeps the two equal), so more were silently served as 10; ``projects``: 1,000 take 4 s to build and a 6 MB
page grouped by project; ``users``: 100,000 take 3 s, where 10**8 ran for an hour and filled the memory; ``keys``:
API keys per project, 20 of each of 1,000 projects being 20,000 keys."""

NameStyle = Literal["plain", "world"]
NAME_STYLES: Final[tuple[NameStyle, ...]] = ("plain", "world")
"""How the synthetic directory names things: ``plain``, short English names (``Support Bot 2``); ``world``, names as
a big organisation's are: up to 70 characters, Chinese, Japanese and Korean (two columns a character), emoji (one
joined of several code points), Arabic and Hebrew (right to left), and names that differ only by case or spaces."""

MAX_RETRY_AFTER_MS: Final = 60_000
"""The longest ``retry_after_ms``: a minute, the client's default cap on a server's wait (``max_retry_after``)."""


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Faults injected on demand; every decision is seeded per request so a run repeats exactly.

    Rates are probabilities in [0, 1]; ``latency`` and ``jitter`` are seconds. A request draws one fault at
    most, in this order: drop, 429, 5xx, truncate. A value out of range raises :class:`EmulatorConfigError`.

    A 429 carries ``retry-after: retry_after`` (whole seconds, at least 1, as the live API sends). With
    ``retry_after_ms`` (0 to :data:`MAX_RETRY_AFTER_MS`) it also carries ``retry-after-ms``, as some live 429s do;
    clients that read it (openai-python, usageledger) wait that long instead: fault tests that are not about the
    wait itself run in milliseconds rather than a second per 429.
    """

    latency: float = 0.0
    jitter: float = 0.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_drop: float = 0.0
    rate_truncate: float = 0.0
    retry_after: int = 1
    retry_after_ms: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_5xx", "rate_drop", "rate_truncate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise EmulatorConfigError(f"{name} must be between 0 and 1, got {value}")
        if self.latency < 0 or self.jitter < 0:
            raise EmulatorConfigError("latency and jitter must not be negative")
        if self.retry_after < 1:
            raise EmulatorConfigError("retry_after must be at least 1 second")
        if self.retry_after_ms is not None:
            _check_retry_after_ms(self.retry_after_ms)

    @property
    def active(self) -> bool:
        return any((self.latency, self.jitter, self.rate_429, self.rate_5xx, self.rate_drop, self.rate_truncate))


def _check_retry_after_ms(value: object) -> None:
    hint = f"give whole milliseconds from 0 to {MAX_RETRY_AFTER_MS:,}, e.g. 20"
    if isinstance(value, bool) or not isinstance(value, int):
        reason = f"{value!r} is not a whole number of milliseconds; {hint}"
    elif value < 0:
        reason = f"{value} is negative; {hint}"
    elif value > MAX_RETRY_AFTER_MS:
        reason = f"{value:,} is too long; {hint}"
    else:
        return
    raise EmulatorConfigError(f"retry_after_ms: {reason}", setting="retry_after_ms", reason=reason)


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything that shapes an emulator. The synthetic organisation is a pure function of these values.

    * ``days``: days of history before ``now`` (activity starts then; earlier buckets are empty).
    * ``projects``, ``users``: how many of each; ``models``: how many chat models are in use (the embedding,
      moderation, image and audio models are always there).
    * ``keys``: API keys per project; ``None`` draws 2 or 3 for each.
    * ``archived``: how many projects are archived (the last ones; none with fewer than 47 days of history); ``None``
      archives one of three projects or more. A live one is always left.
    * ``names``: how projects, users and keys are named (see :data:`NAME_STYLES`).
    * ``now``: a fixed Unix time; ``None`` means the wall clock (or the clock handed to ``Emulator``).
    * ``admin_key``: pin one accepted key; ``None`` accepts any key starting ``sk-admin-``.
    * ``revisions``: recent buckets keep growing towards their final value for ``revision_window`` seconds.
    * ``replay``: serve usage records from a JSON Lines or CSV file instead of the synthetic generator.
    * ``replay_directory``: serve the admin directory from this JSON file (format in
      :mod:`usageledger.emulator.directory`) instead of the synthetic one; in replay mode without it, they answer 404.
    * ``refuse_costs_user_by_project``: behave like organisations whose costs refuse ``user_id`` grouping together
      with ``project_id`` grouping or the ``project_ids`` filter (reference §7, §10: HTTP 400).
    * ``cache_bytes``: budget for encoded buckets and pages kept for reuse (least recently used go first): a quarter
      for buckets, three quarters for pages, which are kept zlib-compressed once they hold a sixteenth of the budget
      (two years of hourly pages for every usage endpoint, ~830 MB of JSON, fit the default 128 MiB).
    """

    seed: int = 0
    days: int = 400
    projects: int = 5
    users: int = 12
    models: int = 6
    keys: int | None = None
    archived: int | None = None
    names: NameStyle = "plain"
    now: int | None = None
    admin_key: str | None = field(default=None, repr=False)  # a pinned key may be a real one: never in a repr
    revisions: bool = False
    revision_window: int = 3 * 86400
    faults: FaultConfig = field(default_factory=FaultConfig)
    replay: Path | None = None
    replay_directory: Path | None = None
    refuse_costs_user_by_project: bool = False
    cache_bytes: int = 128 * 2**20

    def __post_init__(self) -> None:
        for name in ("days", "projects", "users", "models", "keys"):
            value = getattr(self, name)
            if value is None:
                continue
            top = MAX_SIZE.get(name)
            if value < 1 or (top is not None and value > top):
                reason = (
                    f"{value} is too few; give 1 or more" if value < 1 else f"{value} is too many; give 1 to {top:,}"
                )
                raise EmulatorConfigError(f"{name}: {reason}", setting=name, reason=reason)
        if self.archived is not None and not 0 <= self.archived < self.projects:
            reason = f"{self.archived} is out of range; give 0 to {self.projects - 1:,} (one project stays live)"
            raise EmulatorConfigError(f"archived: {reason}", setting="archived", reason=reason)
        if self.names not in NAME_STYLES:
            reason = f"{self.names!r} is not a style; give one of {', '.join(NAME_STYLES)}"
            raise EmulatorConfigError(f"names: {reason}", setting="names", reason=reason)
        if self.revision_window < MIN_REVISION_WINDOW:
            raise EmulatorConfigError(f"revision_window must be at least {MIN_REVISION_WINDOW} seconds")
        if self.cache_bytes < 0:
            raise EmulatorConfigError("cache_bytes must not be negative")
