"""A store with a second stream of one endpoint (costs grouped by key beside the default, completions by model beside
the default): each stream holds the whole spend or usage cut another way, so a sum over both counts it twice.

`export` (CSV, JSON Lines, Parquet, Delta) writes every stream and says so on stderr, naming them and `--stream`;
FOCUS, every reading command, /metrics and the MCP tools read one stream per endpoint and org, to the same figures
as a store without the second streams, on DuckDB and on PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.export import export
from usageledger.mcp_tools import GROUP_BY, MOVERS_BY
from usageledger.report.metrics import render_metrics
from usageledger.store import Stream, WindowWrite, open_existing_store, open_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW
from fixtures.zygote import import_time_variable

NOW = ["--now", str(EMULATOR_NOW)]
COSTS, COSTS_BY_KEY = "costs.1d.project_id+line_item", "costs.1d.project_id+api_key_id"
COMPLETIONS, COMPLETIONS_BY_MODEL = "completions.1d.project_id+model+batch", "completions.1d.model"
PERIOD = ["--since", "2026-10-22", "--until", "2026-11-20"]


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def _sync_pair(urls: dict[str, str], emulator_url: str) -> dict[str, str]:
    """Sync ``urls["one"]``: the default streams, 60 days; ``urls["two"]``: the same, then costs by project and key
    and completions by model over the same days (the same emulator and clock, so the default streams hold the same
    rows)."""
    env = {"OPENAI_ADMIN_KEY": FAKE_ADMIN_KEY, "OPENAI_BASE_URL": emulator_url}
    for name, url in urls.items():
        syncs = [["--since", "60d"]]
        if name == "two":
            syncs += [
                ["--since", "60d", "-e", "costs", "--group-by", "project_id,api_key_id", "--no-directory"],
                ["--since", "60d", "-e", "completions", "--group-by", "model", "--no-directory"],
            ]
        for extra in syncs:
            code, out, err = _cli("sync", "--store", url, "--quiet", *NOW, *extra, env=env)
            assert code == 0, out + err
    return urls


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, emulator_url: str) -> dict[str, str]:
    """DuckDB files ``one`` and ``two`` (:func:`_sync_pair`)."""
    folder = tmp_path_factory.mktemp("two-streams")
    return _sync_pair({name: str(folder / f"{name}.duckdb") for name in ("one", "two")}, emulator_url)


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def each_backend(request: pytest.FixtureRequest, emulator_url: str) -> dict[str, str]:
    """:func:`stores` on DuckDB, then the same pair synced into two PostgreSQL databases: the reading commands' SQL
    picks one stream per endpoint on both back ends."""
    if request.param == "duckdb":
        made: dict[str, str] = request.getfixturevalue("stores")
        return made
    cluster = request.getfixturevalue("_pg_cluster")
    urls = {name: str(cluster.createdb(f"two_streams_{os.getpid()}_{name}")) for name in ("one", "two")}
    return _sync_pair(urls, emulator_url)


def _stream_sums(url: str) -> dict[str, Decimal]:
    with open_existing_store(url) as store:
        return {s: Decimal(v) for s, v in store.query("SELECT stream, SUM(amount_value) FROM costs GROUP BY stream")}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_an_export_of_two_costs_streams_warns_that_a_sum_counts_the_spend_twice(
    stores: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    """`export -e costs` of a store with a key-grouped costs stream beside the default one: each holds the whole
    spend, so a spreadsheet's SUM of amount_value was twice it, with nothing saying so. One line on stderr now names
    both streams and the `--stream` to pick; the rows are unchanged (every stream, told apart by `stream`)."""
    out = tmp_path / f"costs.{fmt}"
    code, _, err = _cli("export", "--store", stores["two"], "-e", "costs", "-o", str(out))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: costs: the rows of org default come from 2 streams that each hold the same spend, cut another way"
        f" ({COSTS}, {COSTS_BY_KEY}): a sum over every row counts it twice; sum one stream (the stream column), or"
        f" export one with --stream {COSTS}"
    ]
    if fmt == "parquet":
        table = pq.read_table(out)
        streams, amounts = table.column("stream").to_pylist(), table.column("amount_value").to_pylist()
    else:
        text = out.read_text()
        rows = list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else [json.loads(x) for x in text.splitlines()]
        streams, amounts = [r["stream"] for r in rows], [Decimal(str(r["amount_value"])) for r in rows]
    written: dict[str, Decimal] = {}
    for stream, amount in zip(streams, amounts, strict=True):
        written[stream] = written.get(stream, Decimal(0)) + amount
    sums = _stream_sums(stores["two"])
    assert written == sums  # what the warning is about: each stream, alone, is the whole spend
    assert abs(sums[COSTS] - sums[COSTS_BY_KEY]) < Decimal("0.01")


def test_no_warning_for_one_stream_picked_or_a_store_of_one_stream_each(stores: dict[str, str], tmp_path: Path) -> None:
    """`--stream` picks one: no warning, and its rows sum to the spend once; the default streams alone say nothing."""
    out = tmp_path / "c.csv"
    code, _, err = _cli("export", "--store", stores["two"], "-e", "costs", "--stream", COSTS, "-o", str(out))
    assert code == 0 and "warning:" not in err, err
    total = sum(Decimal(r["amount_value"]) for r in csv.DictReader(io.StringIO(out.read_text())))
    assert total == _stream_sums(stores["two"])[COSTS]
    code, _, err = _cli("export", "--store", stores["one"], "-o", str(tmp_path / "all"))
    assert code == 0 and "warning:" not in err, err


def test_an_export_of_every_endpoint_warns_once_per_endpoint_with_two_streams(
    stores: dict[str, str], tmp_path: Path
) -> None:
    """A folder of every endpoint, to stdout as JSON lines too: costs and completions each get their line."""
    for target in (["-o", str(tmp_path / "all")], ["-f", "jsonl"]):
        code, _, err = _cli("export", "--store", stores["two"], *target)
        assert code == 0, err
        warned = [line.split(":")[1].strip() for line in err.splitlines() if line.startswith("warning:")]
        assert warned == ["completions", "costs"], err
        assert f"usage, cut another way ({COMPLETIONS}, {COMPLETIONS_BY_MODEL})" in err
        assert f"--stream {COMPLETIONS}\n" in err


def test_a_delta_export_of_two_streams_warns_on_the_first_run_and_on_a_merge(
    stores: dict[str, str], tmp_path: Path
) -> None:
    """A Delta table is summed by a query engine as a CSV by a spreadsheet: the same line, at each run."""
    pytest.importorskip("deltalake")
    for _ in range(2):
        code, _, err = _cli("export", "--store", stores["two"], "-f", "delta", "-e", "costs", "-o", str(tmp_path / "l"))
        assert code == 0, err
        assert "warning: costs: the rows of org default come from 2 streams" in err and f"--stream {COSTS}" in err


def test_focus_reads_one_costs_stream_never_both(stores: dict[str, str], tmp_path: Path) -> None:
    """FOCUS rows come from each org's primary daily costs stream: with a key-grouped stream beside it the file is
    the same, byte for byte, and its BilledCost adds up to the default stream's spend, not twice it."""
    files = {}
    for name, url in stores.items():
        files[name] = tmp_path / f"{name}.csv"
        code, _, err = _cli("export", "--store", url, "--format", "focus", "-o", str(files[name]))
        assert code == 0, err
        assert "warning:" not in err
    assert files["one"].read_bytes() == files["two"].read_bytes()
    billed = sum(Decimal(r["BilledCost"]) for r in csv.DictReader(io.StringIO(files["two"].read_text())))
    assert billed == _stream_sums(stores["two"])[COSTS]


@pytest.mark.parametrize(
    "argv",
    [
        ["report", *PERIOD, "--format", "json"],
        ["report", *PERIOD, "--by", "team", "--format", "json"],
        ["statement", "2026-10", "--format", "json"],
        ["forecast", "--month", "2026-11", *NOW, "--format", "json"],
        ["reconcile", *PERIOD, "--format", "json"],
        ["check", *NOW, "--daily-budget", "1", "--monthly-budget", "1", "--forecast-over", "1", "--format", "json"],
    ],
    ids=lambda argv: argv[0] + (" --by team" if "team" in argv else ""),
)
def test_reading_commands_give_the_same_figures_with_a_second_stream_of_costs_and_completions(
    each_backend: dict[str, str], argv: list[str]
) -> None:
    """Every figure (spend, tokens, requests, budgets, forecast) is the same with the second streams as without:
    none of them adds a second stream of an endpoint. The figures are not nothing: the report's spend is the default
    costs stream's over the period."""
    documents = []
    for url in each_backend.values():
        code, out, err = _cli(*argv, "--store", url)
        assert code in (0, 3), out + err
        document = json.loads(out)
        document.pop("checked_at", None)
        documents.append(document)
    assert documents[0] == documents[1]
    if argv[0] == "report" and "--by" not in argv:
        assert Decimal(documents[1]["totals"]["spend"]) > 1000 and documents[1]["totals"]["tokens"] > 0


def test_prometheus_metrics_are_the_same_with_a_second_stream(each_backend: dict[str, str]) -> None:
    """/metrics' spend, tokens and requests: the same samples with the second streams (only the per-stream
    freshness and run counts have more)."""
    from datetime import UTC, datetime

    pages = []
    for url in each_backend.values():
        with open_existing_store(url) as store:
            body = render_metrics(store, now=datetime.fromtimestamp(EMULATOR_NOW, UTC))[0].decode()
        pages.append(
            sorted(line for line in body.splitlines() if line.startswith(("usageledger_month", "usageledger_today")))
        )
    assert pages[0] == pages[1] and any("cost_usd" in line for line in pages[0])


MCP_PERIOD = {"since": "2026-10-22", "until": "2026-11-21"}
MCP_CALLS: list[tuple[str, dict[str, Any]]] = [
    *[("spend", {**MCP_PERIOD, "group_by": group}) for group in GROUP_BY],
    ("spend", {**MCP_PERIOD, "model": "gpt-4o"}),
    ("spend", {**MCP_PERIOD, "model": "gpt-4o", "group_by": "day"}),
    ("usage", MCP_PERIOD),
    *[("top_movers", {**MCP_PERIOD, "by": by}) for by in MOVERS_BY],
    ("alerts", {"date": "2026-11-19"}),
    ("alerts", {}),
]


async def _mcp_answers(store: str, config: Path) -> list[dict[str, Any]]:
    """Each of :data:`MCP_CALLS` answered by `usageledger mcp --store STORE --config CONFIG`, driven by the SDK's
    stdio client as tests/mcp_server does (the API's base URL a dead port: every answer comes from the store)."""
    from mcp import ClientSession, StdioServerParameters, stdio_client

    kept = {k: v for k, v in os.environ.items() if import_time_variable(k)}
    cli = [sys.executable, "-c", "from usageledger.cli import main; main()"]
    params = StdioServerParameters(
        command=cli[0],
        args=[*cli[1:], "mcp", "--store", store, "--config", str(config)],
        env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", **kept},
    )
    answers = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        for name, args in MCP_CALLS:
            result = await session.call_tool(name, args)
            assert not result.is_error, (name, args, result.content)
            answer = dict(result.structured_content)
            answer.pop("checked_at", None)  # the server's own clock
            answers.append(answer)
    return answers


async def test_the_mcp_tools_give_the_same_figures_with_a_second_stream(
    each_backend: dict[str, str], tmp_path: Path
) -> None:
    """The assistant's tools (spend by every group and for one model, usage, top movers, alerts with budgets that
    fire) answer the same with the second streams as without, on either back end: none adds a second stream."""
    config = tmp_path / "usageledger.toml"
    config.write_text('[alerts]\ndaily_budget = "1"\nmonthly_budget = "1"\n')
    one, two = [await _mcp_answers(url, config) for url in each_backend.values()]
    for (name, args), before, after in zip(MCP_CALLS, one, two, strict=True):
        assert before == after, (name, args)
    spend, usage = one[0], one[len(GROUP_BY) + 2]
    assert spend["group_by"] == "project" and Decimal(spend["total"]) > 1000
    assert usage["totals"]["tokens"] > 0 and usage["totals"]["requests"] > 0
    assert Decimal(one[len(GROUP_BY)]["total"]) > 0  # one model's spend
    assert one[-2]["fired"] is True and any(a["kind"] == "budget" for a in one[-2]["alerts"])


def _store_with(
    tmp_path: Path, new_store: Callable[[str, Path], str], *streams: Stream, orgs: dict[str, int] | None = None
) -> str:
    """A store holding one day of costs in each of ``streams`` (rows alike but for the stream), for org ``acme``,
    or for each org of ``orgs`` in its first so many streams."""
    url = new_store("duckdb", tmp_path / "f.duckdb")
    day = EMULATOR_NOW - EMULATOR_NOW % 86400
    with open_store(url) as store:
        for org, stream in [(o, s) for o, n in (orgs or {"acme": len(streams)}).items() for s in streams[:n]]:
            store.register_stream(org, stream)
            row = {
                "bucket_start": day,
                "bucket_end": day + 86400,
                "project_id": "p1",
                "line_item": "gpt, input",
                "amount_value": Decimal("1.5"),
                "currency": "usd",
                "quantity": None,
                "quantity_unit": None,
            }
            store.commit_window(WindowWrite(org, stream, [row], day, day + 86400, "r", day))
    return url


def test_streams_filtered_apart_are_no_overlap_and_a_filtered_one_inside_another_is(
    tmp_path: Path, new_store: Callable[[str, Path], str]
) -> None:
    """Two costs streams of other projects (`project_ids` with no common one) hold other spend: adding them up is
    right, and nothing is said. A filtered stream beside an unfiltered one holds part of its spend: said, `in
    part`, the unfiltered one named first for `--stream`."""
    group = ("project_id", "line_item")
    mine = Stream.create("costs", "1d", group, {"project_ids": ["p1"]})
    theirs = Stream.create("costs", "1d", group, {"project_ids": ["p2", "p3"]})
    url = _store_with(tmp_path, new_store, mine, theirs)
    with open_existing_store(url) as store:
        assert export(store, "csv", io.BytesIO(), endpoints=["costs"]).warnings == ()
    whole = Stream.create("costs", "1d", group)
    (tmp_path / "b").mkdir()
    url = _store_with(tmp_path / "b", new_store, mine, whole)
    with open_existing_store(url) as store:
        (line,) = export(store, "csv", io.BytesIO(), endpoints=["costs"]).warnings
    assert f"2 streams that each hold the same spend, in part, cut another way ({whole.id}, {mine.id})" in line
    assert line.endswith(
        f"counts some of it more than once; sum one stream (the stream column), or export one with --stream {whole.id}"
    )


def test_orgs_are_told_apart_one_stream_each_is_no_overlap(
    tmp_path: Path, new_store: Callable[[str, Path], str]
) -> None:
    """Rows of several orgs in one batch: an org with one costs stream beside an org with two is not named; two orgs
    with two each are one line naming both."""
    group = ("project_id", "line_item")
    whole, by_key = Stream.create("costs", "1d", group), Stream.create("costs", "1d", ("project_id", "api_key_id"))
    url = _store_with(tmp_path, new_store, whole, by_key, orgs={"acme": 1, "beta": 2, "gamma": 1})
    with open_existing_store(url) as store:
        (line,) = export(store, "csv", io.BytesIO(), endpoints=["costs"]).warnings
    assert line.startswith("costs: the rows of org beta come from 2 streams that each hold the same spend, cut")
    (tmp_path / "b").mkdir()
    url = _store_with(tmp_path / "b", new_store, whole, by_key, orgs={"acme": 2, "beta": 2, "gamma": 1})
    with open_existing_store(url) as store:
        (line,) = export(store, "jsonl", io.BytesIO()).warnings
    assert line.startswith("costs: the rows of orgs acme, beta come from 2 streams") and line.endswith(whole.id)


def test_the_drill_down_and_keys_project_give_the_projects_spend_through_no_key(stores: dict[str, str]) -> None:
    """The dashboard's project drill-down listed the project's keys but not what it spent through none (storage,
    sessions), which `keys` gives for the whole store only: the key rows fell short of the project's spend with
    nothing saying why. `build_keys` takes the project now; its keys and the no-key figure add up to the project's
    spend in the key-grouped stream to the cent (and to the drill-down's spend, read from the default stream, within
    a cent), in the JSON and in the line under the page's key table, worded as `keys --project NAME` words it."""
    from datetime import UTC, datetime

    from starlette.testclient import TestClient

    from usageledger.report.formatting import format_money
    from usageledger.serve import build_app

    url, period = stores["two"], {"since": "2026-10-22", "until": "2026-11-20"}
    with open_existing_store(url) as store:
        rows = store.query(
            "SELECT project_id, SUM(amount_value), SUM(amount_value) FILTER (WHERE api_key_id IS NULL) FROM costs"
            " WHERE stream = %s AND bucket_start >= %s AND bucket_start < %s AND project_id IS NOT NULL GROUP BY 1",
            [COSTS_BY_KEY, datetime(2026, 10, 22, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)],
        )
    project, total, keyless = max((r for r in rows if r[2]), key=lambda r: r[2])  # a project with spend through none
    assert keyless > 0 and total > keyless
    now = datetime.fromtimestamp(EMULATOR_NOW, UTC)
    with TestClient(build_app(url, now=lambda: now)) as client:
        got = client.get(f"/api/projects/{project}", params=period)
        assert got.status_code == 200, got.text
        doc = got.json()
        page = client.get("/", params={**period, "project": project})
    keys = [Decimal(k["spend"]) for k in doc["keys"]]
    assert keys and all(k["project"]["id"] == project for k in doc["keys"])
    assert Decimal(doc["no_key_spend"]) == keyless
    assert sum(keys) + keyless == total and abs(total - Decimal(doc["spend"])) < Decimal("0.01")
    line = (
        f"Through no API key (storage, sessions and other use the API gives no key for): "
        f"{format_money(keyless, 'usd')} of spend"
    )
    assert doc["no_key_line"].startswith(line)
    assert f"adds up to {format_money(total, 'usd')}, the project's costs in the period." in doc["no_key_line"]
    assert page.status_code == 200 and f'<p id="drill-no-key">{line}' in page.text
    # `keys` has no --until: its period runs to now, so its figures are checked against its own JSON
    code, out, err = _cli("keys", "--store", url, *NOW, "--since", "2026-10-22", "--project", project, "-f", "json")
    assert code == 0, out + err
    listed = json.loads(out)
    assert [k["id"] for k in listed["keys"]] == [k["id"] for k in doc["keys"]]
    assert Decimal(listed["no_key_spend"]) >= keyless
    code, out, err = _cli("keys", "--store", url, *NOW, "--since", "2026-10-22", "--project", doc["project"]["name"])
    assert code == 0, out + err
    assert f"is the name of project {project}; reading that project" in err
    spent = sum((Decimal(k["spend"]) for k in listed["keys"]), Decimal(listed["no_key_spend"]))
    assert (
        f"{format_money(Decimal(listed['no_key_spend']), 'usd')} of spend; with it the keys' spend adds up to "
        f"{format_money(spent, 'usd')}, the project's costs in the period."
    ) in " ".join(out.split())
