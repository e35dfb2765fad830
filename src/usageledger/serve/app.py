"""The dashboard and its JSON API: a Starlette app that reads the store, never writes it.

Every request opens the store to read (:func:`usageledger.store.open_existing_store`) and closes it when done. A
DuckDB store is one file that one process may write: a read that finds a running sync holding it takes its turn by
the store's lock protocol (the sync closes the file between two transactions while a reader waits), so the
dashboard answers during a sync and the sync goes on after it. PostgreSQL reads run alongside a sync as they are.

Routes (one list, :func:`routes`): ``/`` the dashboard, ``/api/report`` (the document of ``report --format
json``), ``/api/filters`` (what the dropdowns offer), ``/api/projects/{project_id}`` (a project's models and keys),
``/healthz``. With a token, every route but ``/healthz`` wants ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from usageledger._options import is_loopback
from usageledger._secrets import mask_keys, redact_url_password
from usageledger.config import Config
from usageledger.errors import ParameterError, StoreError, UsageLedgerError
from usageledger.report.assemble import (
    assemble_report,
    closed_adjustments,
    known_project,
    month_outlook,
    outlook_document,
    project_named,
    resolve_scope,
    unknown_team_projects,
)
from usageledger.report.credit import CreditBalance
from usageledger.report.forecasting import ForecastReport
from usageledger.report.html import render_html
from usageledger.report.jsonout import dumps, keys_document, report_document
from usageledger.report.keys import build_keys, no_key_line
from usageledger.report.metrics import DEFAULT_METRICS_LABELS, SERIES_BOUND, metrics_endpoint
from usageledger.report.names import Names, names_from_mapping, resolve_names
from usageledger.report.period import report_period
from usageledger.report.queries import Period, ReportData, unknown_model
from usageledger.report.queries import Scope as ReportScope
from usageledger.serve import dashboard
from usageledger.serve.filters import filter_options
from usageledger.store import BaseStore, StreamState, check_store_url, is_postgres_url, open_existing_store
from usageledger.store._filelock import writer_pid
from usageledger.sync._safety import data_warnings, stream_states_now
from usageledger.timeutil import iso

__all__ = ["CSP", "ServeContext", "StoreHolder", "build_app", "routes"]

CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""The dashboard's Content-Security-Policy: nothing is loaded from anywhere; forms and fetches stay on this host."""
IDLE_HOLD: Final = 1.0
"""Seconds a DuckDB store stays open after a request, for the next one (a sync that starts waits at most this)."""
FILTERS: Final = ("since", "until", "org", "project", "team", "model")
"""The query parameters of ``/``, ``/api/report`` and ``/api/filters``."""
MAX_VALUE: Final = 256
"""The longest filter value read (a date, an ID, a model, a team name are far shorter): a longer one is refused
naming it, rather than echoed whole in the refusal and the page."""
PROJECT_FILTERS: Final = ("since", "until", "org")
"""The query parameters of ``/api/projects/{project_id}`` (the project is in the path)."""


class StoreHolder:
    """The store, open to read for each request.

    PostgreSQL: a connection per request (reads run alongside a sync). DuckDB: one read-only connection, used by one
    request at a time and kept between requests while they come, so a burst of them opens the file once. It is
    given up when a sync wants the file: a request that finds a sync holding the writer lock opens the file afresh
    (taking its turn by the lock protocol, which the sync gives way to between two transactions), and after
    ``idle`` seconds without a request the file is closed, so a sync that starts meanwhile waits at most that long.
    It is given up too when the path names another file than the one held: a store restored from a backup or moved
    into place (``mv new.duckdb store.duckdb``), or deleted, is read as it is now. While requests kept coming less
    than ``idle`` apart (a page's tabs, a monitor polling ``/healthz``), the old file stayed open and was served on:
    ``/healthz`` said ``ok`` with its streams after the store had been deleted.
    """

    def __init__(self, url: str, *, idle: float = IDLE_HOLD) -> None:
        self.url = url
        self.idle = idle
        self._duckdb = not is_postgres_url(url)
        self._lock = threading.Lock()
        self._store: BaseStore | None = None
        self._held: tuple[int, int] | None = None
        """The (device, inode) of the file the held store was opened from."""
        self._timer: threading.Timer | None = None

    @contextmanager
    def reading(self) -> Iterator[BaseStore]:
        """The store, open to read for the block (waiting its turn while a sync writes a DuckDB store)."""
        if not self._duckdb:
            with open_existing_store(self.url) as store:
                yield store
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._store is not None and writer_pid(self.url) is not None:
                self._drop()  # a sync wants the file, or has it between two turns: read by the lock protocol
            if self._store is not None and self._file() != self._held:
                self._drop()  # the path names another file now (replaced, moved away, deleted): read what it names
            if self._store is None:
                held = self._file()  # before opening: a file replaced meanwhile differs at the next request
                self._store = open_existing_store(self.url)
                self._held = held
            try:
                yield self._store
            except BaseException:
                self._drop()
                raise
            finally:
                if self._store is not None and writer_pid(self.url) is not None:
                    self._drop()
                elif self._store is not None:
                    self._timer = threading.Timer(self.idle, self._close_idle)
                    self._timer.daemon = True
                    self._timer.start()

    def _file(self) -> tuple[int, int] | None:
        """The (device, inode) of the file the store's path names now; ``None`` when it names none."""
        try:
            found = os.stat(check_store_url(self.url))
        except (OSError, UsageLedgerError):
            return None
        return found.st_dev, found.st_ino

    def _drop(self) -> None:
        store, self._store, self._held = self._store, None, None
        if store is not None:
            store.close()

    def _close_idle(self) -> None:
        with self._lock:
            self._timer = None
            self._drop()

    def close(self) -> None:
        """Close the held store, if any (the server is stopping)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._drop()


@dataclass
class ServeContext:
    """What every route reads: the store, the config (finality, names, teams) and the clock."""

    holder: StoreHolder
    config: Config = field(default_factory=Config)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    metrics_labels: frozenset[str] = DEFAULT_METRICS_LABELS
    """The labels ``/metrics`` keeps (``serve --metrics-labels``); the others are summed away."""
    say: Callable[[str], None] | None = None
    """Where a line for the one running the server goes (``serve``: stderr): a scrape past the series bound."""
    series_bound: int = SERIES_BOUND
    """Series a scrape may hold before ``say`` is told, once, with the ``--metrics-labels`` that lightens it."""

    @property
    def names(self) -> Names:
        return names_from_mapping(self.config.names)

    @contextmanager
    def reading(self, params: dict[str, str | None]) -> Iterator[BaseStore]:
        """The store for one request whose ``org`` filter it holds (``BaseStore.check_orgs``, the command line's
        ``--org`` check): an unknown org is refused, never answered as an org with no spend."""
        with self.holder.reading() as db:
            db.check_orgs(params["org"], param="org")
            yield db


class _NotFound(ParameterError):
    """What the path names is not in the store: a 404, never an empty answer (private to this module)."""


def _params(request: Request, allowed: Sequence[str] = FILTERS) -> dict[str, str | None]:
    """The filters of a request; an empty value is no filter (a dropdown's "all"). A parameter the route does not
    take (a typo, ``as_of``) or one given twice is refused, naming it: read as no filter, or as its last value, it
    would answer another question than the one asked."""
    given = request.query_params.multi_items()
    for name, _ in given:
        if name not in allowed:
            takes = ", ".join(allowed) or "no parameters"
            raise ParameterError(_shown(name), f"not a parameter of {request.url.path}; it takes {takes}")
        if sum(1 for other, _ in given if other == name) > 1:
            raise ParameterError(name, "given more than once; give it once")
    for name, text in given:
        _check_length(name, text)
    out: dict[str, str | None] = {}
    for name in allowed:
        value = request.query_params.get(name)
        out[name] = value.strip() if value is not None and value.strip() else None
    return out


def _check_length(name: str, text: str) -> None:
    """A value longer than :data:`MAX_VALUE` is refused by its length, naming it, never echoed whole."""
    if len(text) > MAX_VALUE:
        raise ParameterError(name, f"{len(text):,} characters is too long; give at most {MAX_VALUE}")


def _period(params: dict[str, str | None], now: datetime) -> Period:
    return report_period(params["since"], params["until"], now=now, since_param="since", until_param="until")


def _status(exc: UsageLedgerError) -> int:
    return 503 if isinstance(exc, StoreError) else 404 if isinstance(exc, _NotFound) else 400


def _error(exc: UsageLedgerError) -> JSONResponse:
    return JSONResponse({"error": mask_keys(str(exc))}, status_code=_status(exc))


def _json(document: dict[str, Any]) -> Response:
    """A document written by the command line's one serializer: decimals as strings, times in UTC."""
    return Response(dumps(document) + "\n", media_type="application/json")


@dataclass(frozen=True, slots=True)
class _Answer:
    """One reading of the store for a page or ``/api/report``: the report, its names, this month's outlook (the
    forecast and the credit balance, as ``report`` shows them) and, for the page, what the dropdowns offer."""

    data: ReportData
    names: Names
    outlook: ForecastReport | None
    credit: CreditBalance | None
    offered: dict[str, Any]
    params: dict[str, str | None]
    """The filters as the report read them: a team given by its plain name or as ``name (org)`` is the team it
    picked, as the dropdown lists it."""
    last_sync: str | None
    """For the page: the last sync of the store it read, as ``/healthz`` says it (the live page compares the two)."""
    syncing: bool
    """For the page: whether a sync was writing the store it read (its end is a new sync to the live page)."""


def _report(ctx: ServeContext, params: dict[str, str | None], *, options: bool = False) -> _Answer:
    """The report for ``params`` and, with ``options``, what the dropdowns offer, from one opening of the store."""
    now = ctx.now()
    period = _period(params, now)
    with ctx.reading(params) as db:
        params = {**params, "project": _project_id(ctx, db, params["project"], params["org"])}
        filters = ReportScope(org=params["org"], project=params["project"], team=params["team"], model=params["model"])
        scope = resolve_scope(db, period, filters, teams=ctx.config.teams, team_param="team")
        data, names = assemble_report(db, period, scope, options=ctx.config.sync.to_options(), overrides=ctx.names)
        _check_named(db, params, names)
        params = {**params, "team": scope.team}
        moved, said = closed_adjustments(db, period, scope)
        warnings = data_warnings(db, params["org"], period=period)  # as `report` says them
        if scope.team is not None:  # the team view: its [teams] IDs no row nor the directory names, as `--by team`
            said = (*said, *unknown_team_projects(db, ctx.config.teams, team=scope.team))
        data = replace(data, adjustments=moved, warnings=(*warnings, *said))
        offered = filter_options(db, period, params, names=names, teams=ctx.config.teams) if options else {}
        outlook, credit = month_outlook(db, now=now, org=params["org"], project=params["project"])
        states = stream_states_now(db, at=int(now.timestamp()), record=False) if options else []
    syncing = any(s.last_status == "running" for s in states)
    return _Answer(data, names, outlook, credit, offered, params, _last_sync(states), syncing)


def _last_sync(states: Sequence[StreamState]) -> str | None:
    """The start of the last sync run: ``/healthz``'s ``last_sync``, and the one the page was drawn from."""
    runs = [s.last_run_at for s in states if s.last_run_at is not None]
    return iso(max(runs)) if runs else None


def _project_id(ctx: ServeContext, db: BaseStore, project: str | None, org: str | None) -> str | None:
    """A ``project`` given by its ID or by its name, as ``--project`` and the MCP tools take it (one resolver,
    :func:`project_named`): the ID, or the value as given (checked next, a 404 when it names nothing). A name several
    projects share is a 400 naming their IDs. ``?project=Search Assistant``, the name the page shows, was a 404."""
    if project is None:
        return None
    names = resolve_names(db, org=org, overrides=ctx.names, distinct=False)
    return project_named(db, project, org=org, names=names, param="project") or project


def _check_named(db: BaseStore, params: dict[str, str | None], names: Names) -> None:
    """The ``project`` and ``model`` filters name what the store holds (a 404 otherwise): the one check of
    ``/``, ``/api/report`` and ``/api/filters``."""
    if params["project"] is not None:
        _check_project(db, params["project"], params["org"], names)
    if params["model"] is not None:
        _check_model(db, params["model"], params["org"])


def _check_project(db: BaseStore, project_id: str, org: str | None, names: Names) -> None:
    """A project the store does not know is a 404 (``?project=`` of a report as ``/api/projects/ID``), never a report
    of a project with no spend."""
    if not known_project(db, project_id, org=org, names=names):
        where = "" if org is None else f" of org {org}"
        raise _NotFound("project", f"{project_id} is no project{where} in this store; /api/filters lists the projects")


def _check_model(db: BaseStore, model: str, org: str | None) -> None:
    """A model no cost or usage row names (a typo, or a model of another org) is a 404, as an unknown project is,
    never a report of a model with no spend."""
    refused = unknown_model(db, model, org, listed_by="/api/filters")
    if refused is not None:
        raise _NotFound("model", refused)


def _project_document(ctx: ServeContext, project: str, params: dict[str, str | None]) -> dict[str, Any]:
    period = _period(params, ctx.now())
    with ctx.reading(params) as db:
        project_id = _project_id(ctx, db, project, params["org"]) or project
        scope = ReportScope(org=params["org"], project=project_id)
        data, names = assemble_report(db, period, scope, options=ctx.config.sync.to_options(), overrides=ctx.names)
        _check_project(db, project_id, params["org"], names)
        # scoped to the project: its keys, and its spend through no key, so the rows and that line add up to its costs
        keys = build_keys(db, start=period.start, end=period.end, now=ctx.now(), org=params["org"], project=project_id)
    report = report_document(data, names)
    listed = keys_document(keys)
    return {
        "period": report["period"],
        "project": {"id": project_id, "name": names.project(project_id)},
        "org": params["org"],
        "currency": report["currency"],
        "provisional_from": report["provisional_from"],
        "spend": report["totals"]["spend"],
        "spend_by_model": report["spend_by_model"],
        "usage_by_model": report["usage_by_model"],
        "spend_by_api_key": report["spend_by_api_key"],
        "keys": listed["keys"],
        "no_key_spend": listed["no_key_spend"],
        "no_key_requests": listed["no_key_requests"],
        "no_key_line": no_key_line(keys),
    }


def routes(ctx: ServeContext) -> list[BaseRoute]:
    """Every route of the app, in one list (add one here)."""

    async def home(request: Request) -> Response:
        try:
            params = _params(request)
            answer = await run_in_threadpool(functools.partial(_report, ctx, params, options=True))
            data, names, params = answer.data, answer.names, answer.params
            drill = None
            if params["project"] is not None:
                drill = await run_in_threadpool(_project_document, ctx, params["project"], params)
        except UsageLedgerError as exc:
            page = dashboard.error_page(mask_keys(str(exc)))
            return HTMLResponse(page, status_code=_status(exc))
        html = render_html(
            data,
            names,
            generated_at=ctx.now(),
            before=dashboard.controls(params, answer.offered, data, answer.last_sync, syncing=answer.syncing),
            after=dashboard.drill_down(params, data, drill),
            project_link=dashboard.project_link(params),
            script=dashboard.SCRIPT,
            connect_self=True,
            forecast=answer.outlook,
            credit=answer.credit,
        )
        return HTMLResponse(html)

    async def api_report(request: Request) -> Response:
        try:
            params = _params(request)
            answer = await run_in_threadpool(_report, ctx, params)
        except UsageLedgerError as exc:
            return _error(exc)
        return _json(outlook_document(answer.data, answer.names, answer.outlook, answer.credit))

    async def api_filters(request: Request) -> Response:
        def load(params: dict[str, str | None]) -> dict[str, Any]:
            period = _period(params, ctx.now())
            with ctx.reading(params) as db:
                params = {**params, "project": _project_id(ctx, db, params["project"], params["org"])}
                names = resolve_names(db, org=params["org"], overrides=ctx.names)
                # the filters given are checked as a report checks them: never offered back when the store has none
                filters = ReportScope(org=params["org"], team=params["team"])
                scope = resolve_scope(db, period, filters, teams=ctx.config.teams, team_param="team")
                _check_named(db, params, names)
                chosen = {**params, "team": scope.team}  # offered as the dropdown lists it, not a second time
                return filter_options(db, period, chosen, names=names, teams=ctx.config.teams)

        try:
            return _json(await run_in_threadpool(load, _params(request)))
        except UsageLedgerError as exc:
            return _error(exc)

    async def api_project(request: Request) -> Response:
        try:
            params = _params(request, PROJECT_FILTERS)
            project_id = request.path_params["project_id"]
            # the ID in the path is a value like ?project=: a 60,000-character one was echoed whole in the 404
            _check_length("project", project_id)
            document = await run_in_threadpool(_project_document, ctx, project_id, params)
        except UsageLedgerError as exc:
            return _error(exc)
        return _json(document)

    async def healthz(request: Request) -> Response:
        def load() -> dict[str, Any]:
            with ctx.holder.reading() as db:
                # as `status` shows them: a sync killed mid-run (SIGKILL, OOM) left its streams `running`, and the
                # live page said "a sync is running" until the next sync; read-only, the store is never written
                states = stream_states_now(db, at=int(ctx.now().timestamp()), record=False)
            ok_runs = [s.last_run_at for s in states if s.last_run_at is not None and s.last_status == "ok"]
            return {
                "ok": True,
                "store": redact_url_password(ctx.holder.url),
                "streams": len(states),
                "last_sync": _last_sync(states),
                "last_successful_sync": iso(max(ok_runs)) if ok_runs else None,
                "syncing": any(s.last_status == "running" for s in states),
                "failing_streams": sorted(
                    f"{s.org}/{s.stream}" for s in states if s.last_status in ("failed", "interrupted", "abandoned")
                ),
            }

        try:
            _params(request, ())  # `?verbose=1` was answered as if it meant something, unlike every other route
        except ParameterError as exc:
            return JSONResponse({"ok": False, "error": mask_keys(str(exc))}, status_code=400)
        try:
            return _json(await run_in_threadpool(load))
        except UsageLedgerError as exc:
            body = {"ok": False, "store": redact_url_password(ctx.holder.url), "error": mask_keys(str(exc))}
            return JSONResponse(body, status_code=503)

    return [
        Route("/", home),
        Route("/api/report", api_report),
        Route("/api/filters", api_filters),
        Route("/api/projects/{project_id:str}", api_project),
        Route("/healthz", healthz),
        # Prometheus: the same store, read per scrape; gauges for period figures (see usageledger.report.metrics)
        Route(
            "/metrics",
            _no_parameters(
                metrics_endpoint(
                    ctx.holder.reading,
                    ctx.metrics_labels,
                    clock=lambda: ctx.now(),
                    overrides=ctx.names,
                    say=ctx.say,
                    series_bound=ctx.series_bound,
                )
            ),
        ),
    ]


def _no_parameters(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """``endpoint`` refusing any query parameter, naming it: ``/metrics?org=acme`` answered every org's series, so a
    scrape or a look meant for one org read them all (a series is filtered by its labels, in the query that reads
    it)."""

    async def guarded(request: Request) -> Response:
        for name, _ in request.query_params.multi_items():
            message = (
                f"{_shown(name)}: /metrics takes no parameters; it gives every org, project, model and line item, "
                "each as a label: filter by label in the query that reads it"
            )
            return PlainTextResponse(f"error: {mask_keys(message)}\n", status_code=400)
        return await endpoint(request)

    return guarded


def _shown(name: str) -> str:
    """A query parameter's name as a refusal names it: ``?=x`` has none, and a long one (a value pasted without its
    ``name=``) is cut, as a long value is never echoed (:data:`MAX_VALUE`)."""
    if not name.strip():
        return "(a parameter with no name)"
    return _cut(name, _NAME_SHOWN)


def _cut(text: str, most: int) -> str:
    """``text`` cut to ``most`` characters, its end shown as ``…``."""
    return text if len(text) <= most else text[: most - 1] + "…"


_NAME_SHOWN: Final = 40
_PATH_SHOWN: Final = 200


_PATH_PARAM: Final = re.compile(r"\{[^}]*\}")


async def _no_route(request: Request, exc: Exception) -> Response:
    """A path no route serves, or a method a route does not take: one line naming it, in JSON like every other
    refusal of the API (Starlette's own answer is a plain ``Not Found``)."""
    assert isinstance(exc, HTTPException)
    path = _cut(request.url.path, _PATH_SHOWN)  # a path of 60,000 characters is named short, not echoed whole
    if exc.status_code == 405:
        message = f"method: {request.method} is not served at {path}; use GET"
    elif path.startswith("/api/projects/"):
        message = f"project: {path} names no project ID; use /api/projects/ID (/api/filters lists the projects)"
    else:
        served = [_PATH_PARAM.sub("ID", r.path) for r in request.app.routes if isinstance(r, Route)]
        message = f"path: {path} is not a route of this server; the routes: {', '.join(served)}"
    return JSONResponse({"error": mask_keys(message)}, status_code=exc.status_code, headers=exc.headers)


def _foreign_host(scope: Scope) -> str | None:
    """The request's ``Host`` when it names no loopback address (``evil.example:8080``), else ``None``.

    Served on loopback without a token, the ledger was read by any web page whose own name was made to resolve to
    127.0.0.1 (DNS rebinding): to the browser that page and the dashboard are one origin, and nothing checked the
    name it asked for. A browser always sends the name it resolved, so one that is no loopback name is refused (the
    name is never resolved here: that is what the attacker controls)."""
    for name, value in scope.get("headers", []):
        if name == b"host":
            given = bytes(value).decode("latin-1").strip()
            host = given[1 : given.find("]")] if given.startswith("[") else given.rsplit(":", 1)[0]
            return None if is_loopback(host) else given
    return None  # no Host (HTTP/1.0, a raw client): not a browser


class _Guard:
    """Security headers on every answer; with a token, ``Authorization: Bearer`` on every route but /healthz; with
    ``loopback_only``, a ``Host`` header that is no loopback name is refused (see :func:`_foreign_host`)."""

    OPEN: Final = frozenset({"/healthz"})

    def __init__(self, app: ASGIApp, token: str | None, loopback_only: bool = False) -> None:
        self.app = app
        self.token = None if token is None else token.encode("utf-8")
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode("ascii")),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        foreign = _foreign_host(scope) if self.loopback_only else None
        if foreign is not None:
            refusal = JSONResponse(
                {
                    "error": f"host: {_cut(foreign, _NAME_SHOWN)} is no loopback name; this server answers to "
                    "localhost, 127.0.0.1 or [::1] only (another name that points here is a page of another site "
                    "reading the ledger: DNS rebinding); open it by one of those"
                },
                status_code=400,
            )
            await refusal(scope, receive, with_headers)  # type: ignore[arg-type]
            return
        if self.token is not None and scope["path"] not in self.OPEN and not self._authorized(scope):
            refusal = JSONResponse(
                {"error": "this server wants Authorization: Bearer <USAGELEDGER_SERVE_TOKEN>"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="usageledger"'},
            )
            await refusal(scope, receive, with_headers)  # type: ignore[arg-type]
            return
        await self.app(scope, receive, with_headers)  # type: ignore[arg-type]

    def _authorized(self, scope: Scope) -> bool:
        assert self.token is not None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                kind, _, given = bytes(value).partition(b" ")
                if kind.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
                    return True
        return False


def build_app(
    store_url: str,
    *,
    token: str | None = None,
    config: Config | None = None,
    now: Callable[[], datetime] | None = None,
    metrics_labels: frozenset[str] = DEFAULT_METRICS_LABELS,
    extra_routes: Sequence[BaseRoute] = (),
    loopback_only: bool = False,
    say: Callable[[str], None] | None = None,
    series_bound: int = SERIES_BOUND,
) -> Starlette:
    """The dashboard, API and ``/metrics`` over the store at ``store_url`` (read-only). ``token``: require it as a
    bearer token on every route but ``/healthz``; ``config``: finality grace, names and teams; ``now``: the clock
    (tests); ``metrics_labels``: the labels ``/metrics`` keeps (see
    :func:`usageledger.report.metrics.parse_metrics_labels`); ``loopback_only``: refuse a request whose ``Host`` is no
    loopback name (``serve`` on loopback without a token: a page of another site whose name resolves to 127.0.0.1
    would read the ledger otherwise); ``say``: told once, in one line, when a scrape of ``/metrics`` holds more than
    ``series_bound`` series (:func:`usageledger.report.metrics.metrics_endpoint`)."""
    ctx = ServeContext(
        StoreHolder(store_url),
        config or Config(),
        metrics_labels=metrics_labels,
        say=say,
        series_bound=series_bound,
    )
    if now is not None:
        ctx.now = now

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        ctx.holder.close()

    return Starlette(
        routes=[*routes(ctx), *extra_routes],
        middleware=[Middleware(_Guard, token=token, loopback_only=loopback_only)],
        exception_handlers={HTTPException: _no_route},
        lifespan=lifespan,
    )
