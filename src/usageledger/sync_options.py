"""The sync engine's options, the one set of defaults: below both the config (``[sync]``) and the engine.

It lives in this leaf so that :class:`usageledger.config.SyncConfig` can map onto it (``to_options()``) without the
config layer importing the sync engine. Import it from :mod:`usageledger.sync`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from usageledger.catalogue import BucketWidth

__all__ = ["DEFAULT_SINCE", "SyncOptions"]

DEFAULT_SINCE: Final = 90 * 86400
"""How far back the first sync of a stream reaches, when ``since`` is not given."""


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

    def lag(self, width: BucketWidth) -> int:
        """The trailing span re-read on every run, for a bucket width."""
        return {"1d": self.lag_days * 86400, "1h": self.hour_grace, "1m": self.minute_grace}[width]
