"""``usageledger mcp``: the official SDK's stdio client starts the server as a subprocess, lists its tools and calls
each one; the spend tool's figures equal ``usageledger report --format json``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.emulator import Emulator
from usageledger.report.names import resolve_names
from usageledger.store import open_existing_store, open_store
from usageledger.store.directory import current_names

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.stores import mixed_store
from fixtures.zygote import import_time_variable

SINCE = "2026-10-22"
UNTIL = "2026-11-21"
"""30 days ending on the emulator's today (2026-11-20): the server's own clock is the real one."""
CLI = [sys.executable, "-c", "from usageledger.cli import main; main()"]
TOOLS = {"spend", "usage", "top_movers", "changes", "alerts", "lookup"}


@pytest.fixture(scope="module")
def synced(emulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store synced by `usageledger sync` from the shared emulator: 70 days of every default stream (the period and
    the one before it) and the directory."""
    store = str(tmp_path_factory.mktemp("mcp") / "s.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
        base = ["sync", "--store", store, "--now", str(EMULATOR_NOW), "--base-url", emulator_url]
        result = CliRunner().invoke(app, [*base, "--since", "70d"])
        assert result.exit_code == 0, result.output
    return store


def _report(store: str, *extra: str) -> dict[str, Any]:
    out = subprocess.run(
        [*CLI, "report", "--store", store, "--since", SINCE, "--until", UNTIL, "--format", "json", *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def _server_env() -> dict[str, str]:
    """The server's environment: no admin key, and the API's base URL a dead port, so every answer has to come from
    the store. What Python reads at start-up is kept: PYTHONPATH, so the server runs the code under test (a source
    tree not installed), and the locale and other PYTHON* variables, so the zygote forks it
    (tests/fixtures/zygote.py) instead of a fresh interpreter paying ~1.5 s of CPU for its imports."""
    kept = {k: v for k, v in os.environ.items() if import_time_variable(k)}
    return {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", **kept}


async def _session_calls(store: str, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[Any], list[Any]]:
    # The SDK is imported here: every pytest-xdist worker imports every test module to collect it, and mcp costs
    # ~0.65 s of CPU to import; only the worker that runs these tests pays it.
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=CLI[0], args=[*CLI[1:], "mcp", "--store", store], env=_server_env())
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        results = [await session.call_tool(name, args) for name, args in calls]
    return list(listed.tools), results


def _doc(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    doc: dict[str, Any] = result.structured_content
    assert doc == json.loads(result.content[0].text)
    return doc


async def test_stdio_client_lists_the_tools_and_calls_each(synced: str) -> None:
    period = {"since": SINCE, "until": UNTIL}
    with open_existing_store(synced) as store:
        names = current_names(store, "default", "project")
        snapshots = [
            m
            for (m,) in store.query("SELECT DISTINCT split_part(line_item, ', ', 1) FROM costs_daily ORDER BY 1")
            if re.fullmatch(r".+-\d{4}-\d{2}-\d{2}", m)
        ]
    some_id, (some_name, _) = sorted(names.items())[0]
    model = snapshots[0][:-11]  # gpt-4o-2024-08-06 -> gpt-4o
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", period),
        ("spend", {**period, "group_by": "model"}),
        ("spend", {**period, "project": some_name}),
        ("usage", period),
        ("top_movers", {**period, "by": "model"}),
        ("changes", {"since": "2026-01-01", "until": "2027-01-01", "kind": "all", "limit": 5}),
        ("alerts", {}),
        ("lookup", {"query": some_name[: max(3, len(some_name) // 2)].lower()}),
        ("lookup", {"query": some_id}),
        ("spend", {**period, "model": model}),
        ("spend", {**period, "model": model, "group_by": "day"}),
        ("spend", {**period, "group_by": "team"}),
        ("spend", {**period, "group_by": "org"}),
        ("spend", {"since": "yesterday-ish"}),
        ("spend", {**period, "org": "nope"}),
        ("changes", {"org": "nope"}),
        ("lookup", {"query": some_id, "org": "nope"}),
        ("alerts", {"org": "nope"}),
        # 50 days whose previous 50 start before the store's 70 days: no comparison, not one against unsynced days
        ("top_movers", {"since": "2026-10-01", "until": UNTIL}),
        ("spend", {"since": "2026-10-01", "until": UNTIL}),
    ]
    tools, results = await _session_calls(synced, calls)

    listed = {t.name: t for t in tools}
    assert set(listed) == TOOLS
    for tool in tools:
        assert tool.description and len(tool.description) > 60
        assert tool.input_schema["type"] == "object"
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
    assert "group_by" in listed["spend"].input_schema["properties"]
    assert listed["lookup"].input_schema["required"] == ["query"]

    spend, by_model, one_project, usage, movers, changes, alerts, by_name, by_id, gpt4o, gpt4o_days = results[:11]
    by_team, bad_group, bad_since = results[11:14]
    unknown_org = results[14:18]
    partial_movers, partial_spend = results[18:]
    report = _report(synced)
    doc = _doc(spend)
    assert doc["period"] == report["period"] and doc["period"]["first_day"] == SINCE
    assert doc["total"] == report["totals"]["spend"] and doc["total"] != "0"
    assert doc["rows"] == report["spend_by_project"]
    assert all(row["name"] == names[row["project_id"]][0] for row in doc["rows"])
    assert _doc(by_model)["rows"] == report["spend_by_model"]
    narrowed = _doc(one_project)
    assert narrowed["scope"]["project"] == some_id
    assert narrowed["total"] == _report(synced, "--project", some_id)["totals"]["spend"]

    u = _doc(usage)
    assert u["totals"] == {"tokens": report["totals"]["tokens"], "requests": report["totals"]["requests"]}
    assert u["by_model"] == report["usage_by_model"] and u["totals"]["tokens"] > 0
    m = _doc(movers)
    assert m["movers"] == report["movers_by_model"] and m["previous_period"]["last_day"] == "2026-10-21"
    c = _doc(changes)
    assert c["changes"] and c["truncated"] is True and len(c["changes"]) == 5
    assert all(e["change"] == "insert" and e["rows"] > 0 for e in c["changes"])
    a = _doc(alerts)
    assert isinstance(a["fired"], bool) and a["checks"] and a["period"]["budget_day"]
    assert {(x["id"], x["kind"]) for x in _doc(by_name)["matches"]} >= {(some_id, "project")}
    [match] = _doc(by_id)["matches"]
    assert match["name"] == some_name

    # One model: its dated snapshots, not its siblings (gpt-4o-mini), equal to a direct SQL sum.
    with open_existing_store(synced) as store:
        [(direct,)] = store.query(
            "SELECT SUM(amount_value) FROM costs_daily WHERE bucket_start >= %s AND bucket_start < %s "
            "AND regexp_full_match(line_item, %s)",
            [f"{SINCE} 00:00:00+00", f"{UNTIL} 00:00:00+00", re.escape(model) + r"(-\d{4}-\d{2}-\d{2})?, .*"],
        )
    one = _doc(gpt4o)
    assert one["scope"]["model"] == model and one["period"] == report["period"]
    assert Decimal(one["total"]) == direct > 0
    assert sum(Decimal(r["spend"]) for r in one["rows"]) == direct
    assert all(r["name"] == names[r["project_id"]][0] for r in one["rows"])
    days = _doc(gpt4o_days)["rows"]
    assert len(days) == 30 and sum(Decimal(r["spend"]) for r in days) == direct

    teams = _doc(by_team)
    cut = [{k: v for k, v in r.items() if k not in ("projects_truncated", "projects_total")} for r in teams["rows"]]
    assert cut == _report(synced, "--by", "team")["spend_by_team"] and teams["total"] == doc["total"]
    assert all(r["projects_total"] == len(r["projects"]) and not r["projects_truncated"] for r in teams["rows"])

    assert bad_group.is_error and "group_by" in bad_group.content[0].text
    assert bad_since.is_error and "since" in bad_since.content[0].text and "Traceback" not in bad_since.content[0].text
    # An org the store does not hold was answered as an org with no spend; now refused as the CLI's --org is.
    for refused in unknown_org:
        assert refused.is_error and "org: nope holds no data in this store (orgs: default)" in refused.content[0].text
    moved, spent = _doc(partial_movers), _doc(partial_spend)
    assert moved["movers"] == [] and moved["previous_partial_from"] == spent["previous_partial_from"] == "2026-09-12"
    assert spent["previous_period_total"] is None and spent["total"] != "0"


@pytest.fixture
def mixed(tmp_path: Path, emulator: Emulator) -> str:
    """A store an older demo left mixed (``fixtures.stores.mixed_store``), made outside the test's event loop."""
    return str(mixed_store(tmp_path / "mixed.duckdb", emulator))


async def test_a_store_mixing_synthetic_and_real_orgs_says_so_in_every_summing_tool(mixed: str) -> None:
    """`spend` and the other tools that add up the store's orgs added the demo's synthetic org to a real one without a
    word, where `report` warns: each answer carries the same line in `warnings` (`spend` keeps the report's figures);
    asked for one org, whose figures are its own, none does."""
    path = mixed
    period = {"since": SINCE, "until": UNTIL}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", period),
        ("spend", {**period, "group_by": "team"}),
        ("spend", {**period, "model": "gpt-4o"}),
        ("usage", period),
        ("top_movers", period),
        ("changes", {"since": "2026-01-01", "until": "2027-01-01", "kind": "all", "limit": 5}),
        ("alerts", {}),
        ("spend", {**period, "org": "acme"}),
        ("changes", {"since": "2026-01-01", "until": "2027-01-01", "org": "acme"}),
        ("alerts", {"org": "acme"}),
    ]
    _, results = await _session_calls(path, calls)
    said = (
        "this store mixes synthetic data (org demo, the demo's org name, from before the registry) with real data, "
        f"and its totals add both; remove the synthetic data with `usageledger demo --remove --store {path}`"
    )
    docs = [_doc(r) for r in results]
    # the mixed store's costs start inside the period, which the tools that sum it say too (see the test below)
    uncovered = "the store's costs start on "
    assert [[w for w in d["warnings"] if not w.startswith(uncovered)] for d in docs] == [[said]] * 7 + [[]] * 3
    report = _report(path)
    assert report["warnings"] == [said] and docs[0]["total"] == report["totals"]["spend"]


async def test_a_period_before_the_stores_costs_is_said_in_warnings_not_answered_as_zero(synced: str) -> None:
    """`spend(until="1971-01-01")` answered `"total": "0"` with no warning, and an assistant told the user nothing was
    spent: only `previous_partial_from` (described as a day inside the previous period) said otherwise. A period the
    store's costs start after, or inside, now says so in `warnings`, in every tool that sums it."""
    with open_existing_store(synced) as store:
        first = store.query("SELECT min(bucket_start) FROM costs_daily")[0][0].astimezone(UTC).date()
    before = {"until": "1971-01-01"}
    across = {"since": (first - timedelta(days=5)).isoformat(), "until": UNTIL}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", before),
        ("spend", {**before, "model": "gpt-4o"}),
        ("usage", before),
        ("top_movers", before),
        ("spend", across),
        ("spend", {"since": SINCE, "until": UNTIL}),
    ]
    _, results = await _session_calls(synced, calls)
    docs = [_doc(r) for r in results]
    none_of = f"the store's costs start on {first}, after this period ends: it holds none of the period's days"
    for doc in docs[:4]:
        assert [w for w in doc["warnings"] if w.startswith(none_of)], doc["warnings"]
    assert docs[0]["total"] == "0"
    inside = f"the store's costs start on {first}, inside this period: its first 5 days are not in the store"
    assert [w for w in docs[4]["warnings"] if w.startswith(inside)], docs[4]["warnings"]
    assert not [w for w in docs[5]["warnings"] if "the store's costs start" in w]


async def test_a_project_id_the_store_does_not_hold_is_refused_not_answered_as_zero(synced: str) -> None:
    """`spend(project="proj_nope")` answered $0 for the period: a mistyped ID read as a project with no spend, while
    a mistyped name was refused. Every tool with a project now refuses an ID the store does not know, naming lookup."""
    with open_existing_store(synced) as store:
        known = sorted(current_names(store, "default", "project"))[0]
    period = {"since": SINCE, "until": UNTIL}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", {**period, "project": "proj_nope"}),
        ("usage", {**period, "project": "proj_nope"}),
        ("top_movers", {**period, "project": "proj_nope"}),
        ("alerts", {"project": "proj_nope"}),
        ("spend", {**period, "project": "proj_nope", "org": "default"}),
        ("spend", {**period, "project": known}),
    ]
    _, results = await _session_calls(synced, calls)
    *refused, of_org, fine = results
    for result in refused:
        assert result.is_error, result.content
        assert result.content[0].text.endswith(
            "project: proj_nope is no project in this store; use the lookup tool to find its ID"
        )
    assert of_org.is_error and "proj_nope is no project of org default in this store" in of_org.content[0].text
    assert _doc(fine)["scope"]["project"] == known


async def test_a_project_name_is_read_as_the_command_line_reads_it(synced: str, tmp_path: Path) -> None:
    """A project's name is resolved by the one rule of `--project`: blanks and case as `report` compares them
    (`spend(project="  SEARCH   ASSISTANT ")` was refused, "no project is named"), a name two projects share
    refused naming both IDs, and `org` narrowing the names it looks in, as it narrows the answer."""
    copied = str(shutil.copy(synced, tmp_path / "copy.duckdb"))
    with open_store(copied) as store:
        (first, name), (second, other) = sorted(resolve_names(store, org="default", distinct=False).projects.items())[
            :2
        ]
        store.execute(
            "INSERT INTO directory_versions SELECT 'org-other', kind, scope, 'proj_elsewhere', name, email, status,"
            " owner_type, owner_id, record, digest, valid_from, valid_to FROM directory_versions WHERE id = %s",
            [first],
        )
    period = {"since": SINCE, "until": UNTIL}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", {**period, "project": f"  {other.upper().replace(' ', '   ')} "}),
        ("spend", {**period, "project": name}),
        ("spend", {**period, "project": name.lower(), "org": "default"}),
        ("alerts", {"project": "No Such Project"}),
    ]
    _, (loose, shared, narrowed, unknown) = await _session_calls(copied, calls)
    assert _doc(loose)["scope"]["project"] == second
    assert shared.is_error and shared.content[0].text.endswith(
        f"project: {name!r} is the name of 2 projects ({first}, proj_elsewhere); give the ID of one"
    ), shared.content
    assert _doc(narrowed)["scope"]["project"] == first
    assert unknown.is_error and unknown.content[0].text.endswith(
        "project: no project is named 'No Such Project'; use the lookup tool to find its ID"
    ), unknown.content


async def test_an_empty_argument_is_refused_naming_it(synced: str) -> None:
    """`spend(since="")` answered for the default 30 days, `spend(since=" ")` was "cannot read ' '", `spend(org="")`
    "org:  holds no data": an empty text argument was read three ways. Each is now refused naming it, as the command
    line refuses an empty flag value; an argument left out still means its default."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", {"since": ""}),
        ("spend", {"since": " "}),
        ("spend", {"org": ""}),
        ("usage", {"project": "\t"}),
        ("changes", {"until": ""}),
        ("alerts", {"date": ""}),
        ("lookup", {"query": "  "}),
        ("spend", {"since": SINCE, "until": UNTIL}),
    ]
    _, results = await _session_calls(synced, calls)
    *refused, fine = results
    for (_, args), result in zip(calls, refused, strict=False):
        [name] = args
        assert result.is_error, (args, result.content)
        tail = "" if name == "query" else f", or leave {name} out for its default"
        assert result.content[0].text.endswith(f"{name}: the value is empty; give a value{tail}"), result.content
    assert _doc(fine)["period"]["first_day"] == SINCE


HELLO: Final = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "script", "version": "1"}}
"""The ``initialize`` request's params of a script that speaks the protocol by hand."""


def _piped(store: str, lines: list[str]) -> subprocess.CompletedProcess[str]:
    """``usageledger mcp --store store`` given ``lines`` on stdin, as a script pipes them in, run to its exit."""
    return subprocess.run(
        [*CLI, "mcp", "--store", store],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
        env=_server_env(),
    )


def test_a_line_that_is_no_json_rpc_message_is_answered_with_the_protocols_error(synced: str) -> None:
    """A line of stdin that was not JSON, or JSON but no JSON-RPC message, was dropped without a word by the SDK, so
    a careless client waited for ever for its answer: each now gets the protocol's error (id null), in one line that
    never repeats it."""
    secret = "sk-admin-" + "CANARY" * 4
    lines = [f"not json {secret}", "{}", "[]", "[" * 1000 + "]" * 1000]
    done = _piped(synced, lines)
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    codes = [(None, -32700), (None, -32600), (None, -32600), (None, -32700)]
    assert [(a["id"], a["error"]["code"]) for a in answers] == codes
    assert answers[0]["error"]["message"].startswith("Parse error: a line of stdin is not JSON (expected ident at ")
    assert "(recursion limit exceeded at line 1 column " in answers[3]["error"]["message"]
    assert answers[1]["error"]["message"].startswith("Invalid Request: a line of stdin is JSON but no JSON-RPC")
    assert "CANARY" not in done.stdout + done.stderr and done.returncode == 0, done.stderr


def test_requests_read_before_stdin_closes_are_answered(synced: str) -> None:
    """`printf '<initialize>\\n<tools/call>\\n' | usageledger mcp` got the answer to initialize and never the one to its
    tool call: the SDK cancelled a request still running when stdin closed. They are answered, then it exits 0; a
    request the client cancelled is not waited for."""
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": HELLO},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "spend", "arguments": {}}},
        {"jsonrpc": "2.0", "id": "u", "method": "tools/call", "params": {"name": "usage", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "lookup", "arguments": {"query": "a"}}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}},
    ]
    started = time.monotonic()
    done = _piped(synced, [json.dumps(line) for line in lines])
    answers = {a["id"]: a for a in map(json.loads, done.stdout.splitlines())}
    assert {1, 2, "u"} <= set(answers) and done.returncode == 0, (done.stdout[-500:], done.stderr)
    assert not answers[2]["result"].get("isError") and '"total"' in answers[2]["result"]["content"][0]["text"]
    assert time.monotonic() - started < 50  # the cancelled request was not waited for (EOF_GRACE is 60 s)


def test_a_call_of_no_tool_or_without_an_object_of_arguments_says_what_to_send(synced: str) -> None:
    """A tool's name mistyped (`Spend`, `top-movers`) was answered "Unknown tool: Spend" and no more; arguments sent
    as a list or a string, a call with no name, or one piped in before `initialize`, were "Invalid request
    parameters" with nothing to say which part was wrong. Each is now one line naming the part and what to send:
    the handshake first, the tools there are and the one meant, or an object of arguments; a secret typed as the
    name is not said back."""
    secret = "sk-admin-" + "CANARY" * 4

    def call(ident: int, **params: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": params}

    lines = [
        call(0, name="spend", arguments={}),  # a script that skipped the handshake
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": HELLO},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        call(2, name="Spend", arguments={}),
        call(3, name=" top-movers", arguments={}),
        call(4, name=secret, arguments={}),
        call(5, name="spend", arguments=[]),
        call(6, name="lookup", arguments="Search"),
        call(7, arguments={}),
        call(8, name="spend", arguments={"since": SINCE, "until": UNTIL}),
    ]
    done = _piped(synced, [json.dumps(line) for line in lines])
    answers = {a["id"]: a for a in map(json.loads, done.stdout.splitlines())}
    assert set(answers) == {0, 1, 2, 3, 4, 5, 6, 7, 8} and done.returncode == 0, (done.stdout[-500:], done.stderr)
    assert answers[0]["error"] == {
        "code": -32602,
        "message": 'Invalid params: the session is not initialized: send "initialize" first (and then'
        ' "notifications/initialized"), then tools/call',
    }
    tools = "the tools are spend, usage, top_movers, changes, alerts, lookup"
    said = {i: answers[i]["result"]["content"][0]["text"] for i in (2, 3, 4) if answers[i]["result"]["isError"]}
    assert said == {
        2: f'Unknown tool: "Spend"; did you mean spend? {tools}',
        3: f'Unknown tool: " top-movers"; did you mean top_movers? {tools}',
        4: f"Unknown tool: a name holding a secret; {tools}",
    }
    errors = {i: answers[i]["error"] for i in (5, 6, 7)}
    assert {e["code"] for e in errors.values()} == {-32602}
    assert errors[5]["message"].startswith("Invalid params: arguments: a list; give an object of the tool's arguments")
    assert errors[6]["message"].startswith('Invalid params: arguments: "Search", not an object; give an object')
    assert errors[7]["message"] == (
        "Invalid params: name: give the tool's name as a string, one of spend, usage, top_movers, changes, alerts,"
        " lookup"
    )
    assert not answers[8]["result"].get("isError") and '"total"' in answers[8]["result"]["content"][0]["text"]
    assert "CANARY" not in done.stdout + done.stderr


def test_a_missing_store_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "mcp", "--store", str(tmp_path / "none.duckdb")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none.duckdb").exists()


def test_without_the_extra_it_says_how_to_install_it(synced: str) -> None:
    code = "import sys; sys.modules['mcp'] = None; from usageledger.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "mcp", "--store", synced], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: usageledger mcp needs the mcp extra: pip install 'usageledger[mcp]'"


@pytest.mark.parametrize(("stop", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_started_by_hand_in_a_terminal_it_says_what_it_waits_for_and_stops_at_once(
    synced: str, stop: str, code: int, tmp_path: Path
) -> None:
    """On a terminal the server would wait in silence for JSON-RPC: one line on stderr says what it is and how to
    stop it; stdout, the protocol's channel, stays empty. Ctrl-C or SIGTERM ends it at once, with the signal's exit
    code (both waited for the next line on stdin, for ever). Started by an assistant (pipes), it says nothing."""
    import signal
    import time

    log = tmp_path / "stderr.txt"
    primary, secondary = os.openpty()
    try:
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [*CLI, "mcp", "--store", synced], stdin=secondary, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        deadline = time.monotonic() + 60
        while not log.read_text().endswith("\n") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(getattr(signal, stop))  # once the line is out, the server is ready to be stopped
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(primary)
        os.close(secondary)
    said = log.read_text()
    assert said.startswith("usageledger mcp: serving the store over MCP on stdin/stdout") and "Ctrl-C" in said
    assert len(said.splitlines()) == 1 and proc.returncode == code and out == "", said
    piped = subprocess.run([*CLI, "mcp", "--store", synced], input="", capture_output=True, text=True, timeout=60)
    assert piped.stderr == "" and piped.stdout == ""


async def test_careless_arguments_are_one_line_naming_the_argument(synced: str) -> None:
    """A wrong type, a value outside the choices, a missing or out-of-range argument came back as pydantic's text:
    four lines ending in a link to pydantic's documentation; an argument a tool does not take (`projects`, a typo)
    was dropped without a word and the answer given for everything; `limit: true` was read as 1. Each is now one line
    naming the argument and what it takes, and the schemas the client lists are closed to other arguments. A number
    given as a string (`limit: "5"`) was read as the number: it is refused as a boolean is."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", {"since": 7}),
        ("spend", {"group_by": "Project"}),
        ("spend", {"org": ["default"]}),
        ("changes", {"limit": 0}),
        ("lookup", {}),
        ("lookup", {"query": "x", "kind": "projects"}),
        ("spend", {"since": SINCE, "projects": "Search"}),
        ("usage", {"start_date": SINCE}),
        ("changes", {"limit": True}),
        ("spend", {"group_by": True}),
        ("changes", {"limit": "5"}),
        ("changes", {"limit": " 5 "}),
    ]
    tools, results = await _session_calls(synced, calls)
    expected = [
        "since: input should be a valid string, not 7",
        "group_by: input should be 'project', 'team', 'model', 'line_item', 'api_key', 'user' or 'day', not 'Project'",
        "org: input should be a valid string, not ['default']",
        "limit: input should be greater than or equal to 1, not 0",
        "query: missing; this argument is required",
        "kind: input should be 'project', 'user', 'project_service_account', 'project_api_key' or 'admin_api_key', "
        "not 'projects'",
        "projects: no such argument; spend takes since, until, group_by, org, project, model",
        "start_date: no such argument; usage takes since, until, org, project",
        "limit: true is a boolean; give a whole number",  # pydantic read it as 1
        "group_by: true is a boolean; give one of project, team, model, line_item, api_key, user, day",
        'limit: "5" is a string; give a whole number',  # pydantic read it as 5
        'limit: " 5 " is a string; give a whole number',
    ]
    for (name, _), result, said in zip(calls, results, expected, strict=True):
        assert result.is_error, result.content
        assert result.content[0].text == f"Error executing tool {name}: {said}"
    assert all(tool.input_schema["additionalProperties"] is False for tool in tools)


async def test_a_model_no_row_names_is_refused_with_those_like_it(synced: str) -> None:
    """`spend(model="gpt-4")`, a prefix of several models, or a typo, answered a total of "0" for the period with no
    warning, where `report --model` warns: now refused naming the model and the store's models it begins, or those
    closest to it (the one check, `models_like`)."""
    period = {"since": SINCE, "until": UNTIL}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", {**period, "model": "gpt-4"}),
        ("spend", {**period, "model": "nope"}),
        ("spend", {**period, "model": "gpt-4o", "org": "default"}),
    ]
    _, (prefix, typo, fine) = await _session_calls(synced, calls)
    assert prefix.is_error and prefix.content[0].text.startswith(
        "Error executing tool spend: model: gpt-4 is no model in this store; did you mean gpt-4"
    )
    assert "gpt-4o-2024-08-06" in prefix.content[0].text and "gpt-4.1" in prefix.content[0].text
    assert typo.is_error and typo.content[0].text == (
        "Error executing tool spend: model: nope is no model in this store; spend with group_by model lists the models"
    )
    assert Decimal(_doc(fine)["total"]) > 0


async def test_spend_by_day_is_bounded_and_says_so(synced: str) -> None:
    """`spend(since="1971-01-01", group_by="day")` answered a row a day since 1971: 20,000 rows, 1.2 MB in one
    answer. A spend by day now takes at most 366 days, refused beyond naming the fix; every answer says whether its
    rows were cut (`truncated`, `rows_total`)."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", {"since": "1971-01-01", "until": UNTIL, "group_by": "day"}),
        ("spend", {"since": "2025-11-20", "until": UNTIL, "group_by": "day"}),
    ]
    _, (long, year) = await _session_calls(synced, calls)
    assert long.is_error and long.content[0].text == (
        "Error executing tool spend: group_by: day gives a row a day, at most 366, and the period has 20413; pass a "
        "later since or an earlier until, or another group_by"
    )
    doc = _doc(year)
    assert len(doc["rows"]) == doc["rows_total"] == 366 and doc["truncated"] is False


def test_lookup_finds_a_name_the_configs_names_give(synced: str) -> None:
    """`[names]` renames a project, and `spend` shows and takes the new name; `lookup` matched only the directory's
    name, so an assistant asking it for the ID of a project `spend` had just named got no match. It finds an item by
    either name now, a part of it in any case, and says the config's name in `label`."""
    from usageledger.config import parse_config
    from usageledger.mcp_tools import LedgerTools

    with open_existing_store(synced) as store:
        (first, (name, _)), (second, _) = sorted(current_names(store, "default", "project").items())[:2]
    assert name is not None
    renamed = parse_config({"names": {"projects": {first: "Zebra Budget", second: "zebra crossing"}}})
    tools = LedgerTools(lambda: open_existing_store(synced), renamed)
    found = tools.lookup("ZEBRA")["matches"]
    assert [(m["id"], m["label"]) for m in found] == [(first, "Zebra Budget"), (second, "zebra crossing")], found
    assert [m["id"] for m in tools.lookup("budget", kind="project")["matches"]] == [first]
    assert tools.lookup("budget", kind="user")["matches"] == []
    spend = tools.spend(SINCE, UNTIL, project="Zebra Budget")
    assert spend["scope"]["project"] == first
    # the directory's own name still finds it, and a name nothing gives finds nothing
    assert first in {m["id"] for m in tools.lookup(name)["matches"]}
    assert (
        tools.lookup("zebra")["matches"]
        and LedgerTools(tools.open_store, parse_config({})).lookup("zebra")["matches"] == []
    )


def test_every_breakdown_is_capped_biggest_first(synced: str) -> None:
    """A breakdown had no cap (an org with thousands of keys, or a long period by line item, is one answer as long as
    them): at most ``max_rows`` rows, the biggest, with ``truncated`` and ``rows_total``; the total stays the whole."""
    from usageledger.config import Config, parse_config
    from usageledger.mcp_tools import LedgerTools

    def whole() -> Any:
        return open_existing_store(synced)

    capped = LedgerTools(whole, Config(), max_rows=5)
    full = LedgerTools(whole, Config())
    # A team's projects are capped as the rows are: the biggest team's, with projects_truncated and projects_total.
    ids = [r["project_id"] for r in full.spend(SINCE, UNTIL, "project")["rows"] if r["project_id"]]
    one_team = parse_config({"teams": {"all": ids}})
    few = LedgerTools(whole, one_team, max_rows=1)
    team = few.spend(SINCE, UNTIL, "team")["rows"][0]
    whole_team = LedgerTools(whole, one_team).spend(SINCE, UNTIL, "team")["rows"][0]
    assert whole_team["team"] == "all" and whole_team["projects_total"] == len(ids) > 1
    assert whole_team["projects_truncated"] is False
    assert team["projects"] == whole_team["projects"][:1] and team["projects_truncated"] is True
    assert team["projects_total"] == whole_team["projects_total"] == len(whole_team["projects"])
    for group_by in ("line_item", "model", "team"):
        cut, every = capped.spend(SINCE, UNTIL, group_by), full.spend(SINCE, UNTIL, group_by)
        assert cut["rows"] == every["rows"][: min(5, every["rows_total"])] and cut["total"] == every["total"]
        assert cut["rows_total"] == every["rows_total"] == len(every["rows"])
        assert cut["truncated"] is (every["rows_total"] > 5) and every["truncated"] is False
    assert capped.spend(SINCE, UNTIL, "line_item")["truncated"] is True
    usage = capped.usage(SINCE, UNTIL)
    assert usage["truncated"] is True and usage["by_model"] == full.usage(SINCE, UNTIL)["by_model"][:5]
    found = capped.lookup("e")
    assert found["truncated"] is True and len(found["matches"]) == 5


async def test_one_models_spend_is_not_compared_with_days_the_store_does_not_hold(synced: str) -> None:
    """`spend(model=...)` gave a previous period's total even when the store holds only part of that period (its
    costs start inside it), a fall against days never synced, where the same question without a model says "no
    comparison" (`previous_period_total` null, `previous_partial_from`); it now follows the report's rule and carries
    the same fields as the answer without a model."""
    period = {"since": "2026-10-01", "until": UNTIL}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", {**period, "model": "gpt-4o"}),
        ("spend", period),
        ("spend", {"since": SINCE, "until": UNTIL, "model": "gpt-4o"}),
        ("spend", {"since": SINCE, "until": "2026-11-25", "model": "gpt-4o"}),
        ("usage", {"since": SINCE, "until": "2026-11-25"}),
    ]
    _, (one, every, compared, behind, used) = await _session_calls(synced, calls)
    doc, whole = _doc(one), _doc(every)
    assert doc["previous_period_total"] is None and doc["previous_partial_from"] == "2026-09-12"
    assert set(doc) == set(whole) and doc["provisional_from"] == whole["provisional_from"]
    assert doc["unsynced_from"] is None and Decimal(doc["total"]) > 0
    assert Decimal(_doc(compared)["previous_period_total"]) > 0
    # A period running past the synced costs: no comparison, and `usage` says where the store ends too.
    assert _doc(behind)["previous_period_total"] is None
    assert _doc(used)["unsynced_from"] == _doc(behind)["unsynced_from"] == "2026-11-20"


async def test_a_secret_or_a_very_long_argument_is_refused_without_repeating_it(synced: str) -> None:
    """An admin key or a Slack webhook pasted into an argument was said back: in pydantic's refusal (`group_by`,
    `limit`) or in `lookup`'s answer, which repeats its query; a `since` of 100,000 characters was an error of as
    many. Each is now one line naming the argument and the fix, and no answer holds the key or the webhook's path;
    a name that merely contains `sk-` (`desk-admin-tools`) is looked up as any name."""
    key = "sk-admin-" + "Q7x" * 16
    webhook = "https://hooks.slack.com/services/T0000000/B0000000/abcdefghijklmnopqrstuvwx"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("spend", {"since": "7" * 300}),
        ("lookup", {"query": "a" * 100_000}),
        ("spend", {"group_by": key}),
        ("lookup", {"query": key}),
        ("spend", {"model": webhook}),
        ("spend", {"org": [key]}),
        ("changes", {"limit": "x" + key}),
        ("lookup", {"query": "desk-admin-tools"}),
    ]
    _, results = await _session_calls(synced, calls)
    *refused, masked, fine = [r.content[0].text for r in results]
    secret = "holds a secret (an API key or a webhook URL), which no answer repeats; give an ID or a name instead"
    assert refused == [
        "Error executing tool spend: since: 300 characters is too long; give at most 256",
        "Error executing tool lookup: query: 100,000 characters is too long; give at most 256",
        f"Error executing tool spend: group_by: {secret} (the lookup tool finds them)",
        f"Error executing tool lookup: query: {secret} (the lookup tool finds them)",
        f"Error executing tool spend: model: {secret} (the lookup tool finds them)",
        f"Error executing tool spend: org: {secret} (the lookup tool finds them)",
    ]
    assert masked == 'Error executing tool changes: limit: "xsk-admin-…" is a string; give a whole number'
    assert all(r.is_error for r in results[:-1]) and not results[-1].is_error
    assert json.loads(fine)["query"] == "desk-admin-tools"
    said = "\n".join(c.text for r in results for c in r.content)
    assert "Q7xQ7x" not in said and "/services/" not in said


async def test_an_alerts_day_in_the_future_says_what_to_give(synced: str) -> None:
    """`alerts(date="2999-01-01")` said only that the day is after today: it now says what to give instead."""
    _, [result] = await _session_calls(synced, [("alerts", {"date": "2999-01-01"})])
    assert result.is_error
    text = result.content[0].text
    assert text.startswith("Error executing tool alerts: date: 2999-01-01 is after today (")
    assert text.endswith("; give today or an earlier day, or leave date out for today and yesterday"), text
