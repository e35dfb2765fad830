"""``usageledger mcp``: a Model Context Protocol server over stdio, built with the official ``mcp`` SDK.

The tools are :class:`usageledger.mcp_tools.LedgerTools`: read-only, answered from the store (never the live API),
money as exact decimal strings and the period stated in every answer. This module only describes them to the SDK
(name, description, input schema from the annotated signatures) and turns a usageledger error into a tool error the
assistant can read and correct.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal, TypeVar, cast

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    CallToolResult,
    ErrorData,
    InputRequiredResult,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    Tool,
    ToolAnnotations,
)
from pydantic import Field, ValidationError

from usageledger._keyshape import WEBHOOK_SHAPED
from usageledger._secrets import KEY_SHAPED, mask_keys
from usageledger.errors import UsageLedgerError
from usageledger.mcp_tools import MAX_CHANGES, LedgerTools

__all__ = ["SERVER_NAME", "build_server"]

SERVER_NAME: Final = "usageledger"

_INSTRUCTIONS: Final = (
    "Answers questions about OpenAI organization spend and usage from a local usageledger store (synced from the "
    "Usage and Costs API), never from the live API. Money is an exact decimal string in the answer's currency; "
    "every answer states its period (UTC days, `until` exclusive). Use `lookup` to turn a project, user or API key "
    "name into its ID and back."
)
MAX_TEXT: Final = 256
"""The longest text argument read (a date, an ID, a model, a name are far shorter), as the dashboard's filters: a
longer one is refused naming it, rather than echoed whole in the refusal (``since`` of 100,000 characters was an
error of 100,000 characters in the assistant's context) or in the answer (``lookup`` repeats its query)."""
EOF_GRACE: Final = 60.0
"""Seconds the requests read before stdin closed have to be answered before the server stops."""
_READ_ONLY: Final = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)

Since = Annotated[
    str | None,
    Field(
        description="First UTC day: a date (2026-11-01), a datetime, or a number of days ending today (7d = today "
        "and the 6 days before). Default: the 30 days ending today."
    ),
]
Until = Annotated[
    str | None,
    Field(description="End of the period, exclusive: a date or datetime. Default: tomorrow (so today is included)."),
]
Org = Annotated[str | None, Field(description="Only this organisation (as named in the store). Default: every org.")]
Project = Annotated[
    str | None,
    Field(
        description="Only this project: its ID (proj_...) or its name (case and extra blanks aside; a name "
        "several projects share is refused, naming their IDs). Default: all."
    ),
]


_Tool = TypeVar("_Tool", bound=Callable[..., dict[str, Any]])


def _guarded(tool: _Tool) -> _Tool:
    """The tool, with a usageledger error (bad argument, missing store) turned into a one-line tool error.

    An empty or blank text argument is refused naming it, as the command line refuses an empty flag value: it was
    read three ways (``since=""`` as the default period, ``since=" "`` as unreadable, ``org=""`` as an org named
    nothing), and read as "not given" it would answer for every project or org while the assistant meant one."""

    optional = {name for name, p in inspect.signature(tool).parameters.items() if p.default is not p.empty}

    @functools.wraps(tool)
    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        for name, value in kwargs.items():
            if isinstance(value, str) and not value.strip():
                hint = f", or leave {name} out for its default" if name in optional else ""
                raise ToolError(f"{name}: the value is empty; give a value{hint}")
        try:
            return tool(*args, **kwargs)
        except UsageLedgerError as exc:
            raise ToolError(mask_keys(str(exc))) from None

    return cast(_Tool, run)


class _LedgerServer(MCPServer):
    """The SDK's server, with the arguments of a call checked the way the command line checks its flags: an argument
    a tool does not take is refused naming it (it was dropped without a word, so ``{"projects": "Search"}`` answered
    for every project), and an argument of the wrong type or outside its choices is one line naming it and what it
    takes (the SDK's text was pydantic's, over four lines, ending in a link to pydantic's documentation)."""

    async def run_stdio_async(self) -> None:
        """The SDK's stdio server, with two answers it never gave. A line that is not a JSON-RPC message gets the
        protocol's error (id ``null``): the SDK dropped it without a word, so a client that sent one waited for ever.
        And when stdin closes, the requests read are answered before the server stops (for at most
        :data:`EOF_GRACE` seconds): the SDK cancelled those still running, so ``printf '...' | usageledger mcp`` got
        the answer to ``initialize`` and never the one to its ``tools/call``."""
        async with stdio_server() as (read_stream, write_stream):
            requests_in, requests_out = anyio.create_memory_object_stream[SessionMessage | Exception](0)
            answers_in, answers_out = anyio.create_memory_object_stream[SessionMessage](0)
            unanswered: set[RequestId] = set()
            names = [tool.name for tool in await super().list_tools()]
            opened = anyio.Event()  # an `initialize` request (or a bare `notifications/initialized`) was read

            async def read() -> None:
                async with requests_in:
                    async for item in read_stream:
                        if isinstance(item, Exception):
                            await write_stream.send(SessionMessage(_unreadable(item)))
                            continue
                        message = item.message
                        if _opens_the_session(message):
                            opened.set()
                        refused = _bad_call(message, names, opened.is_set())
                        if refused is not None:
                            await write_stream.send(SessionMessage(refused))
                            continue
                        if isinstance(message, JSONRPCRequest):
                            unanswered.add(message.id)
                        elif isinstance(message, JSONRPCNotification) and message.method == "notifications/cancelled":
                            unanswered.discard((message.params or {}).get("requestId", ""))  # it gets no answer
                        await requests_in.send(item)
                    with anyio.move_on_after(EOF_GRACE):  # stdin closed: answer what was asked, then stop
                        while unanswered:
                            await anyio.sleep(0.01)

            async def write() -> None:
                async with answers_out, write_stream:  # stdio's writer stops when its stream is closed
                    async for item in answers_out:
                        await write_stream.send(item)
                        if isinstance(item.message, JSONRPCResponse | JSONRPCError):
                            unanswered.discard(item.message.id)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(read)
                tasks.start_soon(write)
                try:
                    await self._lowlevel_server.run(
                        requests_out, answers_in, self._lowlevel_server.create_initialization_options()
                    )
                finally:
                    answers_in.close()

    async def list_tools(self) -> list[Tool]:
        """The tools, each schema closed to other arguments (``additionalProperties: false``), as calls are."""
        return [
            tool.model_copy(update={"input_schema": {**tool.input_schema, "additionalProperties": False}})
            for tool in await super().list_tools()
        ]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """The call, its refusals masked (:func:`usageledger._secrets.mask_keys`) as the dashboard's are: pydantic's
        refusal of ``group_by`` or ``limit`` repeated the value given, an admin key pasted there among them."""
        try:
            return await self._checked_call(name, arguments, context)
        except ToolError as exc:
            said = str(exc)
            if mask_keys(said) == said:
                raise
            raise ToolError(mask_keys(said)) from exc.__cause__

    async def _checked_call(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None
    ) -> CallToolResult | InputRequiredResult:
        for arg, value in arguments.items():
            _check_text(name, arg, value)
        known = {tool.name: tool.input_schema.get("properties", {}) for tool in await super().list_tools()}
        # the SDK said "Unknown tool: Spend" and no more: which tools there are, and the one meant
        if name not in known:
            meant = [tool for tool in known if tool == name.strip().lower().replace("-", "_").replace(" ", "_")]
            shown = "a name holding a secret" if _SECRET.search(name) else _said(name)
            hint = f"did you mean {meant[0]}? " if meant else ""
            raise ToolError(f"Unknown tool: {shown}; {hint}the tools are {', '.join(known)}")
        if name in known and (unknown := sorted(set(arguments) - set(known[name]))):
            takes = ", ".join(known[name]) or "no arguments"
            raise ToolError(f"Error executing tool {name}: {unknown[0]}: no such argument; {name} takes {takes}")
        # pydantic's lax mode reads true as 1 and "5" as 5 (`limit: true` gave one entry, `limit: "5"` five): a
        # boolean or a string is refused where the schema takes neither, whatever pydantic would make of it.
        for arg, value in arguments.items():
            schema = known.get(name, {}).get(arg, {})
            types = _types(schema)
            kind = "boolean" if isinstance(value, bool) else "string" if isinstance(value, str) else None
            if kind is not None and types and kind not in types:
                choices = [v for b in schema.get("anyOf", [schema]) for v in b.get("enum", [])]
                kinds = " or ".join(_KINDS.get(t, t) for t in sorted(types - {"null"}))
                wanted = f"one of {', '.join(choices)}" if choices else kinds
                said = ("true" if value else "false") if kind == "boolean" else _said(value)
                raise ToolError(f"Error executing tool {name}: {arg}: {said} is a {kind}; give {wanted}")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            raise ToolError(f"Error executing tool {name}: {_one_line(exc.__cause__)}") from exc.__cause__


_KINDS: Final = {"string": "a string", "integer": "a whole number", "number": "a number"}
_SECRET: Final = re.compile(rf"(?<![A-Za-z0-9_-])(?:{KEY_SHAPED.pattern})|{WEBHOOK_SHAPED.pattern}", re.IGNORECASE)
"""An API key (``sk-...`` as a word of its own: a project named ``desk-admin-tools`` is none) or a webhook URL."""


def _check_text(tool: str, arg: str, value: object) -> None:
    """Refuse a text argument (or one inside a list or object) that is too long to repeat (:data:`MAX_TEXT`) or that
    holds a secret: an API key or a webhook URL pasted in was said back in the refusal or the answer
    (``lookup`` repeats its query), and no tool needs one (the store holds key IDs and names, never a key)."""
    if isinstance(value, list | tuple):
        for item in value:
            _check_text(tool, arg, item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_text(tool, arg, item)
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ToolError(
                f"Error executing tool {tool}: {arg}: {len(value):,} characters is too long; give at most {MAX_TEXT}"
            )
        if _SECRET.search(value):
            raise ToolError(
                f"Error executing tool {tool}: {arg}: holds a secret (an API key or a webhook URL), which no answer "
                "repeats; give an ID or a name instead (the lookup tool finds them)"
            )


def _said(value: object) -> str:
    """A value as JSON writes it, cut to 60 characters: said back in a refusal, never whole."""
    said = json.dumps(value)
    return said if len(said) <= 60 else said[:57] + "..."


def _opens_the_session(message: object) -> bool:
    """Whether ``message`` opens the session's gate, as the SDK's: ``initialize``, or ``notifications/initialized``."""
    if isinstance(message, JSONRPCRequest):
        return message.method == "initialize"
    return isinstance(message, JSONRPCNotification) and message.method == "notifications/initialized"


def _bad_call(message: object, tools: list[str], opened: bool) -> JSONRPCError | None:
    """The protocol's error for a ``tools/list`` or ``tools/call`` sent before ``initialize`` (a script piping its
    calls in), and for a ``tools/call`` whose ``name`` is no string or whose ``arguments`` are no object
    (``"arguments": []``, ``"arguments": "Search"``): the SDK answered each "Invalid request parameters" and nothing
    else, so a client could not tell what to fix. ``None`` for any other message."""
    if not isinstance(message, JSONRPCRequest) or message.method not in ("tools/list", "tools/call"):
        return None
    params = message.params or {}
    name, arguments = params.get("name"), params.get("arguments")
    if not opened:
        said = (
            'the session is not initialized: send "initialize" first (and then "notifications/initialized"),'
            f" then {message.method}"
        )
    elif message.method != "tools/call":
        return None
    elif not isinstance(name, str):
        said = f"name: give the tool's name as a string, one of {', '.join(tools)}"
    elif arguments is not None and not isinstance(arguments, dict):
        kind = "a list" if isinstance(arguments, list) else f"{_said(arguments)}, not an object"
        said = (
            f"arguments: {kind}; give an object of the tool's arguments by name"
            ' ({"since": "7d"}), or leave arguments out for their defaults'
        )
    else:
        return None
    return JSONRPCError(
        jsonrpc="2.0", id=message.id, error=ErrorData(code=INVALID_PARAMS, message=f"Invalid params: {said}")
    )


def _unreadable(exc: Exception) -> JSONRPCError:
    """The JSON-RPC error for a line of stdin the SDK could not read as a message: not JSON (-32700), or JSON that
    is no JSON-RPC 2.0 message (-32600). The line is never repeated (it may be huge, or hold a secret): the parser's
    own words say where it stopped (``expected value at line 1 column 2``, ``recursion limit exceeded``: JSON
    nested too deep), and only them."""
    found = exc.errors() if isinstance(exc, ValidationError) else []
    parser = [str(e["msg"]).removeprefix("Invalid JSON: ") for e in found if e["type"] == "json_invalid"]
    if parser:
        error = ErrorData(
            code=PARSE_ERROR,
            message=f"Parse error: a line of stdin is not JSON ({parser[0][:120]}); send one JSON-RPC message a line",
        )
    else:
        error = ErrorData(
            code=INVALID_REQUEST,
            message='Invalid Request: a line of stdin is JSON but no JSON-RPC 2.0 message; send one like {"jsonrpc": '
            '"2.0", "id": 1, "method": "tools/list"}',
        )
    return JSONRPCError(jsonrpc="2.0", id=None, error=error)


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types an argument's schema allows (``type``, or each ``anyOf`` branch's)."""
    branches = schema.get("anyOf", [schema])
    return {t for b in branches for t in ([b["type"]] if isinstance(b.get("type"), str) else b.get("type", []))}


def _one_line(exc: ValidationError) -> str:
    """A tool's arguments refused by its schema, as one line naming the first bad argument and what it takes."""
    error = exc.errors(include_url=False)[0]
    name = ".".join(str(part) for part in error["loc"]) or "arguments"
    if error["type"] == "missing":
        return f"{name}: missing; this argument is required"
    got = repr(error.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    msg = error["msg"]
    return f"{name}: {msg[:1].lower()}{msg[1:]}, not {got}"


def build_server(tools: LedgerTools) -> MCPServer:
    """The MCP server with the ledger's tools: spend, usage, top_movers, changes, alerts, lookup."""
    server: MCPServer = _LedgerServer(name=SERVER_NAME, instructions=_INSTRUCTIONS, log_level="WARNING")

    def read_only(tool: _Tool) -> _Tool:
        """Register a tool under its function's name, described by its docstring (folded to one line): every tool
        only reads the store, says so in its annotations, and answers a usageledger error with a one-line tool error
        (see :func:`_guarded`)."""
        description = " ".join((tool.__doc__ or "").split())
        server.tool(name=tool.__name__, description=description, annotations=_READ_ONLY)(_guarded(tool))
        return tool

    @read_only
    def spend(
        since: Since = None,
        until: Until = None,
        group_by: Annotated[
            Literal["project", "team", "model", "line_item", "api_key", "user", "day"],
            Field(
                description="How to break the spend down. team: the config's [teams], else the directory's project "
                "groups, as `usageledger report --by team`."
            ),
        ] = "project",
        org: Org = None,
        project: Project = None,
        model: Annotated[
            str | None,
            Field(
                description="Only this model's line items: gpt-4.1 also matches its dated snapshots "
                "(gpt-4.1-2025-04-14), not gpt-4.1-mini; a model the store never saw is refused with those like it. "
                "Default: every line item."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Spend (cost in the store's currency, exact decimal strings) over a period, grouped by project, team, model,
        line_item, api_key, user or day, with the total and the previous period's total, optionally for one model.
        Figures equal `usageledger report --format json` for the same period and filters. `provisional_from` is the
        first day that may still be restated. `unsynced_from`, when set, is the day the store's synced costs end: the
        days from it on are not in the store (they count as 0 until a sync), so say so rather than report a fall;
        `previous_partial_from`, when set, is the day its costs start, inside the previous period; either way
        `previous_period_total` is null: no comparison. At most 100 rows, biggest first (`truncated` and
        `rows_total` say what was left out; the total is always the whole), and at most 100 projects in a team row
        (`projects_truncated`, `projects_total`); by day, at most 366 days."""
        return tools.spend(since, until, group_by, org, project, model)

    @read_only
    def usage(since: Since = None, until: Until = None, org: Org = None, project: Project = None) -> dict[str, Any]:
        """Token usage (input and output tokens) and model requests over a period, in total and by model, from the
        token-metered usage endpoints (completions, embeddings, moderations...). `unsynced_from`, when set, is the day
        the store's synced costs end: the days from it on are not in the store yet (run `usageledger sync`)."""
        return tools.usage(since, until, org, project)

    @read_only
    def top_movers(
        since: Since = None,
        until: Until = None,
        by: Annotated[Literal["project", "model"], Field(description="Rank projects or models.")] = "project",
        org: Org = None,
        project: Project = None,
    ) -> dict[str, Any]:
        """The projects or models whose spend changed most against the previous period of the same length (current,
        previous, change, change_ratio), biggest absolute change first. Empty, with ``previous_partial_from`` or
        ``unsynced_from`` set, when the store's costs start inside the previous period or end before this one."""
        return tools.top_movers(since, until, by, org, project)

    @read_only
    def changes(
        since: Since = None,
        until: Until = None,
        org: Org = None,
        kind: Annotated[
            Literal["restatements", "all"],
            Field(description="restatements: updates and deletes only; all: inserts too."),
        ] = "restatements",
        limit: Annotated[
            int, Field(ge=1, le=MAX_CHANGES, description="At most this many entries, newest first.")
        ] = 100,
    ) -> dict[str, Any]:
        """What syncs changed in already stored data, from the store's revision log: per table, bucket day, change
        (update, delete, or insert) and metric, how many rows and the net change of the metric (e.g. amount_value for
        costs). The period selects when the sync saw the change. 'restatements' (default) leaves out first reads
        (inserts)."""
        return tools.changes(since, until, org, kind, limit)

    @read_only
    def alerts(
        org: Org = None,
        project: Project = None,
        date: Annotated[
            str | None, Field(description="Day to check (YYYY-MM-DD, today or earlier). Default: today and yesterday.")
        ] = None,
    ) -> dict[str, Any]:
        """The alerts `usageledger check` would raise with the config's [alerts] thresholds: daily and monthly budgets,
        spend anomalies (robust z-score), stale data. `fired` says whether any did; `checks` says what each check
        compared."""
        return tools.alerts(org, project, date)

    @read_only
    def lookup(
        query: Annotated[str, Field(min_length=1, description="An ID, or part of a name or email.")],
        kind: Annotated[
            Literal["project", "user", "project_service_account", "project_api_key", "admin_api_key"] | None,
            Field(description="Only this kind of item. Default: every kind."),
        ] = None,
        org: Org = None,
    ) -> dict[str, Any]:
        """Find projects, users, service accounts and API keys in the synced directory: by exact ID, or by part of a
        name (the directory's, or the one the config's [names] gives, which the other tools show) or email
        (case-insensitive). Returns each match's ID, name, label (the name the other tools show), status and org:
        names for IDs and IDs for names."""
        return tools.lookup(query, kind, org)

    return server
