"""``usageledger query ENDPOINT``: fetch a range from one endpoint and print a table, CSV or JSON lines.

The endpoint choices, bucket widths and one option per filter all come from the catalogue, so a new endpoint or
filter appears here without an edit. The command parses, calls :class:`usageledger.Client` and formats.
"""

from __future__ import annotations

import csv
import inspect
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Annotated, Any, Final, Literal

import msgspec
import typer

from usageledger import catalogue, rows, rules, timeutil
from usageledger._http import ARRAY_FORMATS
from usageledger.catalogue import BUCKET_WIDTHS, Filter
from usageledger.cli._app import app, console, friendly_errors, setup_logging
from usageledger.client import Client
from usageledger.errors import ParameterError
from usageledger.report.tables import DataTable, label, number

OutputFormat = Literal["table", "csv", "jsonl"]
OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = ("table", "csv", "jsonl")
_FILTERS_PANEL: Final = "Filters (each endpoint accepts its own; see the help of each)"
_TIMES: Final = frozenset({"bucket_start", "bucket_end"})


def _all_filters() -> dict[str, tuple[Filter, tuple[str, ...]]]:
    """Every filter of any endpoint, with the endpoints that accept it, in catalogue order."""
    found: dict[str, tuple[Filter, list[str]]] = {}
    for endpoint in catalogue.ENDPOINTS:
        for f in endpoint.filters:
            found.setdefault(f.name, (f, []))[1].append(endpoint.name)
    return {name: (f, tuple(eps)) for name, (f, eps) in found.items()}


FILTERS: Final = _all_filters()


def _option_name(filter_name: str) -> str:
    return "--" + filter_name.replace("_", "-")


def _filter_help(f: Filter, endpoints: tuple[str, ...]) -> str:
    where = "all endpoints" if len(endpoints) == len(catalogue.ENDPOINTS) else ", ".join(endpoints)
    if f.kind == "bool":
        return f"Only batch usage, or with --no-{f.name}, only non-batch usage. Endpoints: {where}."
    values = f" Values: {', '.join(f.allowed)}." if f.allowed else ""
    return f"Only these {f.field} values; repeat or give a comma list.{values} Endpoints: {where}."


def _split(values: Iterable[str] | None) -> list[str]:
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


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
    filled = [c for c in endpoint.columns if any(r.get(c.name) is not None for r in found)]
    cells = {c.name: [_cell(c.name, r.get(c.name)) for r in found] for c in filled}

    def build(columns: list[catalogue.Column]) -> DataTable:
        table = DataTable(
            f"{endpoint.name}: {len(found)} row(s)",
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
    table = build(shown)
    while droppable and not table.fits(console.width):
        shown.remove(droppable.pop(0))
        table = build(shown)
    hidden = len(filled) - len(shown)
    console.print(table)
    if hidden:
        console.print(
            f"{hidden} more column(s) hidden to fit the terminal; use --format csv or jsonl for all.",
            style="dim",
            highlight=False,
        )


def _write_csv(endpoint: catalogue.Endpoint, found: Iterator[rows.Row]) -> None:
    keys = rows.row_keys(endpoint)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(keys)
    for row in found:
        writer.writerow(_cell(k, row.get(k)) for k in keys)


_JSON: Final = msgspec.json.Encoder(decimal_format="number")


def _write_jsonl(found: Iterator[rows.Row]) -> None:
    out = sys.stdout
    for row in found:
        # Times in the ISO form that `export` writes, so both commands' JSON lines compare as they are.
        iso_row = {k: timeutil.iso(int(v)) if k in _TIMES and v is not None else v for k, v in row.items()}
        out.write(_JSON.encode(iso_row).decode())
        out.write("\n")


_FLAG_FOR: Final = {"start_time": "--start", "end_time": "--end"}


def _as_flag(exc: ParameterError) -> ParameterError:
    """The library's parameter error, told in the command's own words: ``start_time`` is ``--start``."""
    if exc.param.startswith("--"):
        return exc
    flag = _FLAG_FOR.get(exc.param, "--" + exc.param.replace("_", "-"))
    message = str(exc).removeprefix(f"{exc.param}: ")
    return ParameterError(flag, message)


def _run(
    *,
    endpoint: str,
    start: str,
    end: str | None,
    bucket_width: str,
    group_by: list[str] | None,
    output: str,
    limit_rows: int | None,
    base_url: str | None,
    allow_insecure_http: bool,
    array_format: str,
    verbose: int,
    filters: dict[str, Any],
) -> None:
    setup_logging(verbose)
    ep = catalogue.get(endpoint)
    given = {name: value for name, value in filters.items() if value is not None}
    with Client(
        base_url=base_url,
        array_format=array_format,  # type: ignore[arg-type]
        allow_insecure_http=allow_insecure_http,
    ) as client:
        try:
            query = client.query(
                ep,
                start_time=start,
                end_time=end,
                bucket_width=bucket_width,  # type: ignore[arg-type]
                group_by=_split(group_by),
                **given,
            )
        except ParameterError as exc:
            raise _as_flag(exc) from None
        found = islice(query.rows(), limit_rows) if limit_rows is not None else query.rows()
        if output == "csv":
            _write_csv(ep, found)
        elif output == "jsonl":
            _write_jsonl(found)
        else:
            _print_table(ep, list(found))


def query(**kwargs: Any) -> None:
    """Fetch a range from one endpoint (every page, every window) and print a table, CSV or JSON lines.

    The admin key comes from OPENAI_ADMIN_KEY. Times are ISO dates or datetimes, Unix seconds, or a span back
    from now such as 7d or 36h; the end defaults to now.
    """
    filters: dict[str, Any] = {}
    for name, (f, _) in FILTERS.items():
        value = kwargs.pop(name)
        if value is not None and f.kind != "bool":
            # Keep empty parts: `--models ''` or `--project-ids ',,'` is refused, never read as "no filter".
            parts = [part.strip() for item in value for part in item.split(",")]
            value = rules.filter_value(_option_name(name), parts)
        filters[name] = value
    _run(filters=filters, **kwargs)


def _choice(values: tuple[str, ...]) -> Any:
    """``Literal[values]``, built from catalogue data: Typer offers a Literal's values as the choices."""
    return Literal.__getitem__(values)


def _signature() -> inspect.Signature:
    """The command's parameters: the fixed ones, then one option per catalogue filter."""
    kw = inspect.Parameter.KEYWORD_ONLY
    fixed: list[tuple[str, Any, Any]] = [
        (
            "endpoint",
            Annotated[_choice(catalogue.ENDPOINT_NAMES), typer.Argument(help="The endpoint to query.")],
            inspect.Parameter.empty,
        ),
        (
            "start",
            Annotated[str, typer.Option("--start", help="Start (inclusive): 2026-11-01, Unix seconds, or 7d.")],
            inspect.Parameter.empty,
        ),
        ("end", Annotated[str | None, typer.Option("--end", help="End (exclusive); default now.")], None),
        (
            "bucket_width",
            Annotated[
                _choice(BUCKET_WIDTHS),
                typer.Option("--bucket-width", help="Bucket width.", show_default=True),
            ],
            "1d",
        ),
        (
            "group_by",
            Annotated[
                list[str] | None,
                typer.Option("--group-by", help="Group by this field; repeat or give a comma list."),
            ],
            None,
        ),
        (
            "output",
            Annotated[
                _choice(OUTPUT_FORMATS),
                typer.Option("--format", "-f", help="Output format.", show_default=True),
            ],
            "table",
        ),
        (
            "limit_rows",
            Annotated[int | None, typer.Option("--limit-rows", min=1, help="Print at most this many rows.")],
            None,
        ),
        (
            "base_url",
            Annotated[
                str | None,
                typer.Option(
                    "--base-url", help="API base URL ending in /v1; default OPENAI_BASE_URL or the public API."
                ),
            ],
            None,
        ),
        (
            "allow_insecure_http",
            Annotated[
                bool,
                typer.Option("--allow-insecure-http", help="Accept a plain http:// base URL that is not loopback."),
            ],
            False,
        ),
        (
            "array_format",
            Annotated[
                _choice(ARRAY_FORMATS),
                typer.Option(
                    "--array-format",
                    help="How array parameters are spelled in the query string.",
                    show_default=True,
                ),
            ],
            "brackets",
        ),
        (
            "verbose",
            Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging on stderr.")],
            0,
        ),
    ]
    params = [inspect.Parameter(name, kw, annotation=ann, default=default) for name, ann, default in fixed]
    for name, (f, endpoints) in FILTERS.items():
        help_text = _filter_help(f, endpoints)
        if f.kind == "bool":
            ann: Any = Annotated[
                bool | None,
                typer.Option(
                    f"{_option_name(name)}/--no-{name.replace('_', '-')}",
                    help=help_text,
                    rich_help_panel=_FILTERS_PANEL,
                ),
            ]
        else:
            ann = Annotated[
                list[str] | None,
                typer.Option(_option_name(name), help=help_text, rich_help_panel=_FILTERS_PANEL),
            ]
        params.append(inspect.Parameter(name, kw, annotation=ann, default=None))
    return inspect.Signature(params, return_annotation=None)


_command = friendly_errors(query)
_command.__signature__ = _signature()  # type: ignore[attr-defined]
app.command("query")(_command)

__all__ = ["FILTERS", "OUTPUT_FORMATS", "query"]
