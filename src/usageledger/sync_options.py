"""The sync engine's options, the one set of defaults: below both the config (``[sync]``) and the engine.

It lives in this leaf so that :class:`usageledger.config.SyncConfig` can map onto it (``to_options()``) without the
config layer importing the sync engine. Import it from :mod:`usageledger.sync`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from usageledger.catalogue import BUCKET_SECONDS, BucketWidth
from usageledger.errors import ConfigError, Knobs

__all__ = ["DEFAULT_SINCE", "SYNC_KNOBS", "SyncOptions"]

DEFAULT_SINCE: Final = 90 * 86400
"""How far back the first sync of a stream reaches, when ``since`` is not given."""


_LEAST: Final = {
    "since": 0,
    "until": 0,
    "lag_days": 0,
    "hour_grace": 0,
    "minute_grace": 0,
    "first_since": 0,
    "concurrency": 1,
    "max_retries": 0,
    "final_after_days": 0,
    "hour_final_after": 0,
    "minute_final_after": 0,
}
"""The least value of each integer field of :class:`SyncOptions`."""

SYNC_KNOBS: Final = Knobs(
    again="sync", max_retries="SyncOptions(max_retries=)", timeout=None, concurrency="SyncOptions(concurrency=)"
)
"""How a sync's failures name the settings that would change how it asks: these options' own (the engine's client
takes no timeout from them)."""
_OPTIONAL: Final = frozenset({"since", "until", "final_after_days", "hour_final_after", "minute_final_after"})


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """How a run reads: the range, the lag windows and the concurrency.

    These defaults are the only ones: ``[sync]`` in the config file (:class:`usageledger.config.SyncConfig`) takes
    them, and ``SyncConfig.to_options()`` maps the file's settings onto this class.
    """

    since: int | None = None
    """Start of the range (Unix seconds); ``None``: from each stream's watermark minus its lag."""
    until: int | None = None
    """End of the range; ``None``: now. A bounded run never moves a watermark."""
    lag_days: int = 3
    hour_grace: int = 2 * 3600
    minute_grace: int = 15 * 60
    first_since: int = DEFAULT_SINCE
    """Seconds back from now that a stream without a watermark starts."""
    concurrency: int = 8
    max_retries: int = 4
    """Retries per request (429s, 5xx, lost or undecodable responses) before a window fails."""
    allow_insecure_http: bool = False
    final_after_days: int | None = None
    """Days before a daily stream's watermark after which a bucket is final; ``None``: ``lag_days``."""
    hour_final_after: int | None = None
    """The same for hourly streams (seconds); ``None``: ``hour_grace``."""
    minute_final_after: int | None = None
    """The same for minute streams (seconds); ``None``: ``minute_grace``."""
    knobs: Knobs = field(default=SYNC_KNOBS, compare=False, repr=False)
    """How a failure's advice names the settings above (a 429 past the retries: "lower ..., or raise ..."): these
    options' names, or the ones the caller's user writes (``[sync]`` keys, the command line's flags), as
    :class:`~usageledger.sync.Org` names where its key and base URL came from."""

    def __post_init__(self) -> None:
        """Each field's type and least value, checked once here: ``SyncOptions(concurrency="4")`` or ``since="90d"``
        was kept and failed deep inside the engine (a ``TypeError`` on ``<``), ``concurrency=-1`` only when the run
        began, and ``lag_days=-1`` read past now."""
        for name, least in _LEAST.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                kind = "Unix seconds" if name in ("since", "until") else "a whole number"
                # `since="90d"` or a datetime, as the client takes them: say how to write it here
                fix = f"; convert it with usageledger.timeutil.to_unix({value!r})" if kind == "Unix seconds" else ""
                raise ConfigError(f"{name}: expected {kind}, got {value!r}{fix}")
            if value < least:
                raise ConfigError(f"{name}: must be at least {least}, got {value}")
        if not isinstance(self.knobs, Knobs):
            raise ConfigError(f"knobs: expected usageledger.errors.Knobs(...), got {type(self.knobs).__name__}")
        if not isinstance(self.allow_insecure_http, bool):
            raise ConfigError(f"allow_insecure_http: expected True or False, got {self.allow_insecure_http!r}")

    def lag(self, width: BucketWidth) -> int:
        """The trailing span re-read on every run, for a bucket width."""
        return {"1d": self.lag_days * 86400, "1h": self.hour_grace, "1m": self.minute_grace}[width]

    def final_grace(self, width: BucketWidth) -> int:
        """How long before a stream's watermark a bucket stays provisional: the configured grace, never less than
        the lag window (a bucket the next run re-reads may still be restated)."""
        days = None if self.final_after_days is None else self.final_after_days * 86400
        configured = {"1d": days, "1h": self.hour_final_after, "1m": self.minute_final_after}[width]
        return max(configured or 0, self.lag(width))

    def final_until(self, width: BucketWidth, watermark: int | None) -> int | None:
        """The bucket boundary before which a stream's stored buckets are final (``bucket_start < it``).

        Final: at least the grace older than the watermark, so no later run re-reads it (the grace covers the lag
        window) and its stored value no longer moves. ``None``: nothing is final (no watermark yet).
        """
        if watermark is None:
            return None
        edge = watermark - self.final_grace(width)
        step = BUCKET_SECONDS[width]
        return edge - edge % step
