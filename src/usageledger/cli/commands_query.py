"""``usageledger query ENDPOINT``: fetch a range from one endpoint and print a table, CSV or JSON lines.

The options are written out below; the endpoint choices and one option per catalogue filter come from
:mod:`usageledger.cli._filters` and the marked region, both written by ``scripts/generate`` from the catalogue.
``sync`` spells the filters the same way. The command parses, calls :class:`usageledger.Client` and formats.

At scale: before the first request it estimates the requests and warns past :data:`MANY_REQUESTS` (refused past
:data:`~usageledger.cli._estimate.TOO_MANY_REQUESTS`, the rule of :mod:`usageledger.cli._estimate`); on a terminal it
shows progress on stderr; CSV and JSON lines are written and flushed page by page, so memory stays flat and a reader
that stops early (``| head``) ends the command at once; a table holds at most :data:`TABLE_MAX_ROWS` rows.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from usageledger import catalogue, rows, timeutil
from usageledger._csv import CsvWriter
from usageledger._http import ArrayFormat
from usageledger._options import (
    base_url_from,
    base_url_origin,
    check_base_url,
    key_from,
    key_refusal,
    with_v1_fix,
)
from usageledger._text import counted, json_line
from usageledger.catalogue import ADMIN_KEY_ENV, BUCKET_SECONDS
from usageledger.cli import _filters
from usageledger.cli._app import (
    app,
    comma_list,
    console,
    data_stdout,
    err_console,
    fail,
    friendly_errors,
    say,
    setup_logging,
)
from usageledger.cli._estimate import MANY_REQUESTS, AllowMany, request_estimate
from usageledger.cli._flags import Insecure, Verbose
from usageledger.client import Client, Query
from usageledger.errors import (
    APIError,
    AuthenticationError,
    Knobs,
    NotFoundError,
    ParameterError,
    PermissionDeniedError,
    advice,
)
from usageledger.report.tables import DataTable, label, number

OutputFormat = Literal["table", "csv", "jsonl"]
OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = ("table", "csv", "jsonl")
_TIMES: Final = frozenset({"bucket_start", "bucket_end"})
TABLE_MAX_ROWS: Final = 10_000
"""A table is built in memory, so without ``--limit-rows`` it stops at this many rows and says so."""


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in _TIMES:
        return timeutil.iso(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _print_table(endpoint: catalogue.Endpoint, found: list[rows.Row]) -> None:
    # Columns no row fills (dimensions not grouped by, fields this API version omits) are noise; and while the
    # rest does not fit the terminal with every number whole, the least needed columns are hidden, with a pointer
    # to CSV.
    if not found:  # a table of no rows was one `bucket_start` column under a title wrapped to its width
        say(f"{endpoint.name}: 0 rows", to=console)
        return
    filled = [c for c in endpoint.columns if any(r.get(c.name) is not None for r in found)]
    cells = {c.name: [_cell(c.name, r.get(c.name)) for r in found] for c in filled}

    def build(columns: list[catalogue.Column]) -> DataTable:
        table = DataTable(
            f"{endpoint.name}: {counted(len(found), 'row')}",
            number("bucket_start"),
            *(number(c.name) if c.type in ("int", "decimal") else label(c.name) for c in columns),
        )
        for i, row in enumerate(found):
            table.add_row(_cell("bucket_start", row["bucket_start"]), *(cells[c.name][i] for c in columns))
        return table

    # Least needed first: attributes, then optional metrics after the first one (costs keep amount_value).
    metrics = [c for c in filled if c.role == "metric" and not c.required]
    droppable = [*(c for c in reversed(filled) if c.role == "attribute"), *reversed(metrics[1:])]
    shown = list(filled)
    whole = table = build(shown)
    while droppable and not table.fits(console.width):
        dropped = droppable.pop(0)
        shown.remove(dropped)
        table = table.without(dropped.name)  # the rows converted and measured once, not once per drop
    if not table.fits(console.width):
        # No table fits even so: each row becomes a block of `column: value` lines, which holds every column.
        shown = list(filled)
        table = whole
    hidden = len(filled) - len(shown)
    console.print(table)
    if hidden:
        console.print(
            f"{counted(hidden, 'more column')} hidden to fit the terminal; use --format csv or jsonl for all.",
            style="dim",
            highlight=False,
        )


def _write_csv(endpoint: catalogue.Endpoint, batches: Iterator[list[rows.Row]]) -> None:
    """The header once the first page has come (a range that holds no rows still gets it), then the rows: a query
    refused at its first request (a key the API refuses, a wrong base URL) wrote the header first, so `> costs.csv`
    left a file that read as a valid CSV of no rows beside the error."""
    keys = rows.row_keys(endpoint)
    # the one CSV writer: text a spreadsheet would run as a formula after an apostrophe, numbers as the API sent
    # their digits (never an exponent: 1E-7 is 0.0000001), a row one record whatever its text holds
    writer = CsvWriter(sys.stdout, decimal=lambda value: format(value, "f"))
    header = True
    for batch in batches:
        if header:
            writer.header(keys)
            header = False
        writer.writerows([_csv_value(k, row.get(k)) for k in keys] for row in batch)
        sys.stdout.flush()
    if header:
        writer.header(keys)


def _csv_value(name: str, value: Any) -> object:
    return timeutil.iso(int(value)) if name in _TIMES and value is not None else value


_JSON: Final = msgspec.json.Encoder(decimal_format="number")


def _write_jsonl(found: Iterator[rows.Row]) -> None:
    out = sys.stdout
    for row in found:
        # Times in the ISO form that `export` writes, so both commands' JSON lines compare as they are.
        iso_row = {k: timeutil.iso(int(v)) if k in _TIMES and v is not None else v for k, v in row.items()}
        out.write(json_line(_JSON.encode(iso_row)).decode())  # one line, for str.splitlines() too
        out.write("\n")


_FLAG_FOR: Final = {"start_time": "--start", "end_time": "--end"}


def _as_flag(exc: ParameterError) -> ParameterError:
    """The library's parameter error, told in the command's own words: ``start_time`` is ``--start``."""
    if exc.param.startswith("--"):
        return exc
    flag = _FLAG_FOR.get(exc.param, "--" + exc.param.replace("_", "-"))
    message = str(exc).removeprefix(f"{exc.param}: ")
    return ParameterError(flag, message)


def estimate_note(query: Query, width: catalogue.BucketWidth, output: str, *, allowed: bool = False) -> str | None:
    """One line when the query needs more than :data:`MANY_REQUESTS` requests, saying how to narrow it; past
    :data:`~usageledger.cli._estimate.TOO_MANY_REQUESTS` a refusal unless ``allowed`` (the one rule ``sync`` keeps).

    Each window is one request (its ``limit`` is exactly its bucket count), unless the server splits it into pages.
    """
    windows = query.windows
    if len(windows) <= MANY_REQUESTS:
        return None
    buckets = sum(w.limit for w in windows)
    most = max(w.limit for w in windows)
    wider = [w for w in query.endpoint.bucket_widths if BUCKET_SECONDS[w] > BUCKET_SECONDS[width]]
    narrow = "narrow --start/--end" + (f", or use --bucket-width {wider[0]}" if wider else "")
    if output == "table":
        narrow += f"; a table shows at most {TABLE_MAX_ROWS:,} rows, -f csv or jsonl streams them all"
    detail = f"{counted(buckets, 'bucket')} of {width}, at most {most:,} per request"
    return request_estimate("query", len(windows), detail, narrow, param="--start", allowed=allowed)


def _progress(show: bool) -> Progress:
    """Progress on stderr: pages fetched against the estimate and rows so far; never touches stdout."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )


def _batches(query: Query, progress: Progress, limit_rows: int | None) -> Iterator[list[rows.Row]]:
    """The rows page by page (at most ``limit_rows`` in all), ticking the progress after each page."""
    estimate = len(query.windows)
    task = progress.add_task(f"{query.endpoint.name}: requests", total=estimate, rows=0)
    left = limit_rows
    done = count = 0
    for page in query.pages():
        batch = list(rows.flatten(query.endpoint, page.data))
        if left is not None:
            batch, left = batch[:left], left - min(left, len(batch))
        done, count = done + 1, count + len(batch)
        # A window the server splits into several pages costs more requests than estimated: grow the total.
        progress.update(task, completed=done, total=max(estimate, done), rows=count)
        yield batch
        if left == 0:
            return


def _stream(output: str, endpoint: catalogue.Endpoint, batches: Iterator[list[rows.Row]]) -> None:
    """Write CSV or JSON lines page by page, flushing each page so a reader sees it and a closed pipe stops us; in
    UTF-8 whatever the locale (:func:`~usageledger.cli._app.data_stdout`)."""
    with data_stdout():
        if output == "csv":
            _write_csv(endpoint, batches)
        else:
            _write_jsonl(row for batch in _flushed(batches) for row in batch)
        sys.stdout.flush()


def _flushed(batches: Iterator[list[rows.Row]]) -> Iterator[list[rows.Row]]:
    for batch in batches:
        yield batch
        sys.stdout.flush()


def _collect(batches: Iterator[list[rows.Row]], limit_rows: int | None) -> tuple[list[rows.Row], bool]:
    """The rows of a table, at most :data:`TABLE_MAX_ROWS` without ``--limit-rows`` (``0``: every row); and whether
    that cut them."""
    cap = TABLE_MAX_ROWS if limit_rows is None else limit_rows or None
    found: list[rows.Row] = []
    for batch in batches:
        found += batch
        if cap is not None and len(found) > cap:  # one row past the cap proves rows were left out
            break
    return found[slice(cap)], cap is not None and len(found) > cap


# Named ENDPOINT in the usage line (typer would spell out every choice there, wrapped mid-word at 80 columns); the
# choices are listed in the argument's help instead, and a wrong one is still refused naming them.
Endpoint = Annotated[
    _filters.EndpointName,
    typer.Argument(
        metavar="ENDPOINT",
        help=f"The endpoint to query: {', '.join(get_args(_filters.EndpointName))}.",
        show_default=False,
    ),
]
# --since/--until as the other commands spell the range (sync, report, changes, keys).
Start = Annotated[str, typer.Option("--start", "--since", help="Start (inclusive): 2026-11-01, Unix seconds, or 7d.")]
End = Annotated[str | None, typer.Option("--end", "--until", help="End (exclusive); default now.")]
Width = Annotated[catalogue.BucketWidth, typer.Option("--bucket-width", help="Bucket width.", show_default=True)]
GroupBy = Annotated[
    list[str] | None, typer.Option("--group-by", help="Group by this field; repeat or give a comma list.")
]
Format = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.", show_default=True)]
LimitRows = Annotated[
    int | None,
    typer.Option(
        "--limit-rows",
        min=0,
        help=f"Print at most this many rows (a table: {TABLE_MAX_ROWS:,} unless given; 0: every row).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no request estimate on stderr.")]
BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", help="API base URL ending in /v1; default OPENAI_BASE_URL or the public API."),
]
Arrays = Annotated[
    ArrayFormat,
    typer.Option("--array-format", help="How array parameters are spelled in the query string.", show_default=True),
]


@app.command("query")
@friendly_errors
def query(
    ctx: typer.Context,
    endpoint: Endpoint,
    start: Start,
    end: End = None,
    bucket_width: Width = "1d",
    group_by: GroupBy = None,
    output: Format = "table",
    limit_rows: LimitRows = None,
    quiet: Quiet = False,
    allow_many_requests: AllowMany = False,
    base_url: BaseUrl = None,
    allow_insecure_http: Insecure = False,
    array_format: Arrays = "brackets",
    verbose: Verbose = 0,
    # --- generated by scripts/generate: filter options ---
    project_ids: _filters.ProjectIds = None,
    user_ids: _filters.UserIds = None,
    api_key_ids: _filters.ApiKeyIds = None,
    models: _filters.Models = None,
    batch: _filters.Batch = None,
    sources: _filters.Sources = None,
    sizes: _filters.Sizes = None,
    vector_store_ids: _filters.VectorStoreIds = None,
    context_levels: _filters.ContextLevels = None,
    line_items: _filters.LineItems = None,
    # --- end of generated filter options ---
) -> None:
    """Fetch a range from one endpoint (every page, every window) and print a table, CSV or JSON lines.

    The admin key comes from OPENAI_ADMIN_KEY. Times are ISO dates or datetimes, Unix seconds, or a span back
    from now such as 7d or 36h; the end defaults to now. Past 100 requests it warns first, past 1,000 it refuses
    without --allow-many-requests; on a terminal it shows
    progress on stderr; CSV and JSON lines stream page by page; a table stops at 10,000 rows.
    """
    setup_logging(verbose)
    filter_values = _filters.given(ctx.params)  # by API name, from the generated filter options
    filters: dict[str, Any] = filter_values  # by API name; none is called `timeout`, which query() also takes
    url = base_url_from(base_url, source="--base-url")
    origin = base_url_origin(base_url, source="--base-url")
    # plain http to a remote host refused naming where the URL came from, as sync does: a flag's value exits 2
    check_base_url(url, allow_insecure_http=allow_insecure_http, source=origin or "base_url=")
    with (
        _v1_named(url, origin),
        Client(
            # The key and URL as the command line gives them: a refusal names the variable or flag to fix.
            key_from(
                None, hint=f"set {ADMIN_KEY_ENV} to an organization admin key: export {ADMIN_KEY_ENV}=sk-admin-..."
            ),
            url,
            array_format=array_format,
            allow_insecure_http=allow_insecure_http,
        ) as client,
    ):
        try:
            found = client.query(
                endpoint,
                start_time=start,
                end_time=end,
                bucket_width=bucket_width,
                group_by=comma_list("--group-by", group_by) or [],
                **filters,
            )
        except ParameterError as exc:
            raise _as_flag(exc) from None
        # counted before the first request: past the bound a mistyped range is refused, --quiet or not
        note = estimate_note(found, bucket_width, output, allowed=allow_many_requests)
        if note is not None and not quiet:
            say(note)
        # Progress only where a person watches stderr, and not over rows streaming to the same terminal.
        show = not quiet and err_console.is_terminal and (output == "table" or not sys.stdout.isatty())
        with _progress(show) as progress:
            batches = _batches(found, progress, limit_rows or None)  # 0: every row
            if output != "table":
                _stream(output, found.endpoint, batches)
                return
            table_rows, capped = _collect(batches, limit_rows)
    _print_table(found.endpoint, table_rows)
    if capped:
        say(f"note: the table stops at {TABLE_MAX_ROWS:,} rows; use --limit-rows, or -f csv or jsonl for every row")


@contextlib.contextmanager
def _v1_named(url: str, source: str | None) -> Iterator[None]:
    """A 404 under a base URL without ``/v1`` (``--base-url http://127.0.0.1:8787``) names where the URL came from
    (``source``: ``--base-url`` or ``OPENAI_BASE_URL``) and the fix there, as ``sync`` and ``doctor`` do; a key the
    API refuses (401) or lets read no usage (403: a project key) names the variable to set; a failure past the
    retries (a 429, a 5xx, a timeout, a host that does not answer) is told what `query` can change
    (:data:`QUERY_KNOBS`: no retry, timeout or concurrency flag, so to wait and query again), not the client's
    ``max_retries=``."""
    try:
        yield
    except NotFoundError as exc:
        raise fail(with_v1_fix(exc, url, source)) from None
    except (AuthenticationError, PermissionDeniedError) as exc:
        # the one wording of a refused key (`_options.key_refusal`), as `sync` says it
        raise fail(key_refusal(exc, ADMIN_KEY_ENV, "query")) from None
    except APIError as exc:
        fix = advice(exc, replace(QUERY_KNOBS, base_url=source))
        if not fix:
            raise
        raise fail(exc.advised(fix)) from None


QUERY_KNOBS: Final = Knobs(again="query", max_retries=None, timeout=None)
"""What `query` can change about how it asks: nothing but when (it has no retry, timeout or concurrency flag)."""


__all__ = ["MANY_REQUESTS", "OUTPUT_FORMATS", "TABLE_MAX_ROWS", "estimate_note", "query"]
