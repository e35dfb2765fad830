"""The sync's vocabulary: orgs, options, plans, results and the events the engine emits (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
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
    """The failure without its stream, window and request id: streams whose failures read the same here failed for
    one reason (a path the API does not have, a host no attempt reached, a 429 on every try), said once."""
    request_id: str | None = None
    """The request id of the response that failed the stream, when the API answered one (``error`` names it too)."""
    advice: str | None = None
    """What to do about the failure, the end of ``error`` and ``cause`` (wait and sync again, raise the retries, ...),
    when it has such advice."""

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
        """Each failure once, in stream order (:func:`said_once`); each stream's own stays in
        :attr:`StreamResult.error`."""
        return said_once(self.streams)

    @property
    def refused_orgs(self) -> tuple[str, ...]:
        """The orgs whose key the API refused (401/403): nothing more was asked with it."""
        return tuple(dict.fromkeys(s.org for s in self.streams if s.key_refused))

    @property
    def unreached_orgs(self) -> tuple[str, ...]:
        """The orgs that got nowhere: their key refused, or every stream failed for one shared cause with nothing
        written (a wrong base URL's 404, a host no attempt reached, a 429 on every try). Asking such an org for
        more (its directory) fails the same way, or spends its retries on it again."""
        causes: dict[str, set[str | None]] = {}
        for s in self.streams:
            causes.setdefault(s.org, set()).add(s.cause if s.error is not None and s.windows_done == 0 else "")
        shared = (org for org, found in causes.items() if len(found) == 1 and None not in found and "" not in found)
        return tuple(dict.fromkeys([*self.refused_orgs, *shared]))


def said_once(streams: Sequence[StreamResult]) -> list[str]:
    """The failures of ``streams`` (a run's, or the store's as their last runs left them: :func:`stored_failure`),
    each once, in stream order: a stream's own names its stream, window and request id; a refused key stops every
    stream of its org with one message, which is listed once; streams of an org that failed for one reason (the
    same ``cause``: a 404 under a wrong base URL, a host that cannot be reached, one error status word for word but
    for its request id, a 429 on every try) are listed once, with it, the streams named shortly and one of their
    request ids. Advice several failures share (wait and sync again, ...) is said once, by the last of them."""
    failed = [s for s in streams if s.error is not None]
    groups: dict[tuple[str, str], list[StreamResult]] = {}
    for s in failed:
        groups.setdefault((s.org, s.cause if s.cause is not None else s.error or ""), []).append(s)
    said: list[tuple[str, str | None]] = []  # each failure without its advice, and the advice
    for (org, _), group in groups.items():
        first = group[0]
        if first.cause is not None and len(group) > 1:
            said.append(_shared_failure(org, group, [s for s in streams if s.org == org]))
        else:
            said.append(_without_advice(first.error or "", first.advice))
    last = {advice: i for i, (_, advice) in enumerate(said) if advice}
    return [f"{text}. {advice}" if advice and last[advice] == i else text for i, (text, advice) in enumerate(said)]


def _shared_failure(org: str, group: list[StreamResult], streams: list[StreamResult]) -> tuple[str, str | None]:
    """The one message for the streams of ``group`` (of ``org``, whose streams are ``streams``), failed
    for their shared ``cause``: which streams (``all 12 streams``; a few, or some of them, each by its endpoint),
    the cause and the request id of one of them (support asks for one; each stream's own is in its ``error``); and
    apart, the advice that ends the cause, if any (see :func:`_without_advice`)."""
    if len(group) == len(streams) > 3:
        which = f"all {len(group)} streams failed"
    else:
        which = f"{counted(len(group), 'stream')} failed ({', '.join(_short_name(s, streams) for s in group)})"
    cause, advice = _without_advice(group[0].cause or "", group[0].advice)
    answered = next((s for s in group if s.request_id), None)
    if answered is not None:  # where the API's error puts it: after the message, before the advice
        cause += f" [request id {answered.request_id} for {_short_name(answered, streams)}]"
    return f"org {org!r}: {which}: {cause}", advice


def _without_advice(text: str, advice: str | None) -> tuple[str, str | None]:
    """``text`` without the ``advice`` that ends it, and that advice; ``None`` when it does not end ``text``."""
    if advice and text.endswith(f". {advice}"):
        return text.removesuffix(f". {advice}"), advice
    return text, None


def _short_name(stream: StreamResult, streams: list[StreamResult]) -> str:
    """``stream`` as a list of the failed ones names it: its endpoint (the start of its id, ``costs`` of
    ``costs.1d.project_id+line_item``) when no other stream of ``streams`` reads that endpoint, else its id."""
    endpoint = stream.stream.split(".", 1)[0]
    alike = sum(s.stream.split(".", 1)[0] == endpoint for s in streams)
    return endpoint if alike == 1 else stream.stream


# --- a stream's failure: its error as the run writes it, and read back ---------------------------------


def window_failure(label: str, window: rules.Window, told: str) -> str:
    """The ``error`` of stream ``label`` failed at ``window``: ``stream ORG/ID, window A to B: TOLD``, ``told`` being
    the failure as the user is told it (its request id, then its advice, in it). The store keeps it as the stream's
    last error (``status --format json``); :func:`stored_failure` reads it back."""
    return f"stream {label}, window {timeutil.iso(window.start)} to {timeutil.iso(window.end)}: {told}"


def not_read(label: str, cause: str) -> str:
    """The ``error`` of stream ``label`` stopped before it was read, for its org's ``cause`` (no attempt reached the
    host); :func:`stored_failure` reads it back."""
    return f"stream {label}: not read: {cause}"


def failure_cause(told: str, request_id: str | None) -> str:
    """A window's failure as the user is told it (``told``), without its request id: streams that failed for one
    reason meet it word for word (a clock ahead of the API's makes every first window's ``start_time must be before
    now``; a rate limit makes every window's 429 outlast its retries), and the run's errors then say it once, with
    the streams, one request id and the advice, instead of once per stream (twelve times, 4,000 characters). Each
    stream's own failure, with its window and request id, stays in its ``error`` (the store's stream state, the
    log)."""
    return told.replace(f" [request id {request_id}]", "") if request_id else told


def no_such_path(advice: str | None, base: str | None = None) -> str:
    """The ``cause`` of a stream the API answered 404 (no such path: every stream of its org meets it under a wrong
    base URL), whatever path it asked: ``HTTP 404 from BASE: the API has no such path there``, then ``advice``. Read
    back from the store (:func:`stored_failure`), whose error names the path asked and not the base URL, it is said
    without the base (the advice names the URL meant, when the base lacks its /v1)."""
    where = f" from {base}: the API has no such path there" if base else ": the API has no such path under the base URL"
    return f"HTTP 404{where}. {advice}" if advice else f"HTTP 404{where}"


_STREAM_FAILED: Final = re.compile(r"stream \S+(?:, window \S+ to \S+|: not read): (?P<told>.+)", re.S)
"""An ``error`` :func:`window_failure` or :func:`not_read` wrote: what follows its stream and window is ``told``."""
_ANSWERED: Final = re.compile(r".* \[request id (?P<id>[^\]\s]+)\](?:\. (?P<advice>.+))?", re.S)
"""A ``told`` the API answered: its (last) request id, and the advice after it, if any."""


def stored_failure(org: str, stream: str, error: str) -> StreamResult:
    """The failed stream ``stream`` of ``org`` as its ``error`` (:func:`window_failure`, :func:`not_read`), kept by
    the store, tells it: its cause, request id and advice as the run had them, so ``status`` says the failures of
    streams that failed for one reason once (:func:`said_once`), as the run's error line did. An error of another
    shape (a refused key, the org's; windows not written) has no cause: it is said as it is, once for the streams
    it failed word for word. A 404's cause names the base URL, which its error does not (it has the path asked
    instead): read back, it is :func:`no_such_path` without the base, the same for each path asked, so the streams a
    base URL without /v1 failed are said once, as the run said them, not each alone."""
    failed = _STREAM_FAILED.fullmatch(error)
    if failed is None:
        return StreamResult(org, stream, error=error)
    told = failed["told"]
    answered = _ANSWERED.fullmatch(told)
    request_id = None if answered is None else answered["id"]
    advice = None if answered is None else answered["advice"]
    cause = no_such_path(advice) if answered is not None and told.startswith("HTTP 404 ") else None
    return StreamResult(
        org, stream, error=error, cause=cause or failure_cause(told, request_id), request_id=request_id, advice=advice
    )


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
