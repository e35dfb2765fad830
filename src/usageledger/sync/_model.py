"""The sync's vocabulary: orgs, options, plans, results and the events the engine emits (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Generic, Literal, TypeVar

from usageledger import rules, timeutil
from usageledger._text import counted
from usageledger.errors import ParameterError
from usageledger.store import Stream, UpsertCounts
from usageledger.sync_options import SyncOptions


@dataclass(frozen=True, slots=True)
class Org:
    """One organisation: a name for the ``org`` column, its admin key and base URL (``None``: the default).

    ``synthetic`` marks made-up data (the demo); a plain ``http://`` loopback base URL (the emulator) is synthetic
    too. A store never holds synthetic and real orgs together (see ``docs/STORE.md``).
    """

    name: str
    api_key: str = field(repr=False)
    base_url: str | None = None
    synthetic: bool = False
    key_source: str | None = None
    """Where the key came from, as a user would fix it (``OPENAI_ADMIN_KEY``, a config key): a refused key's
    message names it. ``None``: the key the caller passed."""
    base_url_source: str | None = None
    """Where the base URL came from, as a user would fix it (``--base-url``, ``OPENAI_BASE_URL``, a config key): a
    base URL the API answers 404 under (no ``/v1``) is named with it and the fix. ``None``: the caller's own."""

    def __post_init__(self) -> None:
        """The name is the store's ``org`` column: ``Org("", ...)`` or ``Org(5, ...)`` was kept and written as such
        (the config refuses both); a key or base URL of another type failed deep inside the client."""
        if not isinstance(self.name, str) or not self.name.strip() or self.name != self.name.strip():
            raise ParameterError("name", f"expected an org's name without spaces at either end, got {self.name!r}")
        if not isinstance(self.api_key, str):
            raise ParameterError("api_key", f"expected the admin key as a string, got {type(self.api_key).__name__}")
        if self.base_url is not None and not isinstance(self.base_url, str):
            raise ParameterError("base_url", f"expected a URL string or None, got {type(self.base_url).__name__}")
        if not isinstance(self.synthetic, bool):
            raise ParameterError("synthetic", f"expected True or False, got {self.synthetic!r}")


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What a run will read for one (org, stream)."""

    org: str
    stream: Stream
    start: int
    end: int
    windows: tuple[rules.Window, ...]
    moves_watermark: bool
    watermark: int | None

    @property
    def label(self) -> str:
        return f"{self.org}/{self.stream.id}"


INTERRUPTED: Final = "interrupted: the process was stopped (Ctrl-C or SIGTERM); sync again to go on"
"""What a run, or a directory refresh, stopped by Ctrl-C or SIGTERM records as its error."""


@dataclass(frozen=True, slots=True)
class StreamResult:
    """How one (org, stream) fared in a run."""

    org: str
    stream: str
    windows: int = 0
    windows_done: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    watermark: int | None = None
    error: str | None = None
    key_refused: bool = False
    """The API refused the org's key (401/403): ``error`` is that refusal, the same for every stream of the org."""
    cause: str | None = None
    """The failure without its stream and window, when other streams may share it (a path the API does not have)."""

    @property
    def status(self) -> Literal["ok", "failed", "interrupted"]:
        if self.error is not None:
            return "failed"
        return "ok" if self.windows_done == self.windows else "interrupted"


@dataclass(frozen=True, slots=True)
class SyncResult:
    """The outcome of a run: per-stream results, requests sent and wall time."""

    run_id: str
    streams: tuple[StreamResult, ...]
    requests: int
    elapsed: float

    @property
    def ok(self) -> bool:
        return all(s.status == "ok" for s in self.streams)

    @property
    def counts(self) -> UpsertCounts:
        total = UpsertCounts()
        for s in self.streams:
            total += s.counts
        return total

    @property
    def errors(self) -> list[str]:
        """Each failure once, in stream order: a stream's own names its stream and window; a refused key stops
        every stream of its org with one message, which is listed once; streams that failed for one shared cause
        (every path a 404 under a wrong base URL, a host that cannot be reached, one error status word for word) are
        listed once, with it."""
        failed = [s for s in self.streams if s.error is not None]
        shared: dict[tuple[str, str], list[str]] = {}
        for s in failed:
            if s.cause is not None:
                shared.setdefault((s.org, s.cause), []).append(s.stream)
        said: dict[str, None] = {}
        for s in failed:
            streams = shared.get((s.org, s.cause)) if s.cause is not None else None
            if streams is not None and len(streams) > 1:
                said[f"org {s.org!r}: {counted(len(streams), 'stream')} failed ({_listed(streams)}): {s.cause}"] = None
            else:
                said[s.error or ""] = None
        return list(said)

    @property
    def refused_orgs(self) -> tuple[str, ...]:
        """The orgs whose key the API refused (401/403): nothing more was asked with it."""
        return tuple(dict.fromkeys(s.org for s in self.streams if s.key_refused))

    @property
    def unreached_orgs(self) -> tuple[str, ...]:
        """The orgs that got nowhere: their key refused, or every stream failed for one shared cause (a wrong base
        URL's 404, a host no attempt reached). Asking such an org for more (its directory) fails the same way."""
        causes: dict[str, set[str | None]] = {}
        for s in self.streams:
            causes.setdefault(s.org, set()).add(s.cause if s.error is not None and s.windows_done == 0 else "")
        shared = (org for org, found in causes.items() if len(found) == 1 and None not in found and "" not in found)
        return tuple(dict.fromkeys([*self.refused_orgs, *shared]))


def _listed(names: list[str], most: int = 3) -> str:
    """The first few of ``names``, and how many more."""
    more = len(names) - most
    return ", ".join(names[:most]) + (f" and {more} more" if more > 0 else "")


# --- events ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    plans: tuple[StreamPlan, ...]


@dataclass(frozen=True, slots=True)
class RequestSent:
    requests: int
    """Requests sent so far in this run (retries included)."""


@dataclass(frozen=True, slots=True)
class WindowDone:
    """A window's rows committed: ``window`` is what the transaction wrote, the plan's window or, for one holding
    many results, a piece of it (whole buckets), and ``planned`` the plan's window it belongs to."""

    org: str
    stream: str
    window: rules.Window
    counts: UpsertCounts
    planned: rules.Window | None = None
    """The plan's window ``window`` is part of; ``None``: the same as ``window``."""

    @property
    def share(self) -> float:
        """How much of its planned window this commit wrote (1.0 for a whole one), for a progress display."""
        whole = self.planned or self.window
        return (self.window.end - self.window.start) / max(whole.end - whole.start, 1)


_Result = TypeVar("_Result", StreamResult, SyncResult)


@dataclass(frozen=True, slots=True)
class _Finished(Generic[_Result]):
    """A stream or the whole run is done; the two finish events differ only in the result they carry."""

    result: _Result


@dataclass(frozen=True, slots=True)
class StreamFinished(_Finished[StreamResult]):
    """One (org, stream) is done: how it fared."""


@dataclass(frozen=True, slots=True)
class RunFinished(_Finished[SyncResult]):
    """The run is done: every stream's result, the requests sent and the wall time."""


SyncEvent = RunStarted | RequestSent | WindowDone | StreamFinished | RunFinished
EventHandler = Callable[[SyncEvent], None]


# --- planning -------------------------------------------------------------------------------------------


def plan_stream(org: str, stream: Stream, watermark: int | None, options: SyncOptions, *, now: int) -> StreamPlan:
    """The range and windows one run reads for a stream (pure: no I/O)."""
    width = stream.bucket_width
    end = now if options.until is None else min(options.until, now)
    if options.since is not None:
        start = options.since
    elif watermark is not None:
        start = min(watermark, now) - options.lag(width)
    else:
        start = timeutil.span_start(now, options.first_since)  # 90d: the 90 days ending today
    start = timeutil.floor(max(start, 0), width)
    if options.until is not None:
        end = min(timeutil.ceil(end, width), now)
    windows = tuple(rules.plan_windows(stream.endpoint, start, end, width)) if end > start else ()
    return StreamPlan(org, stream, start, end, windows, options.until is None, watermark)
