"""Export the store (or a filtered part of it) to CSV, JSON Lines or Parquet, in bounded memory.

Columns: ``org``, ``stream``, ``bucket_start``, ``bucket_end``, the endpoint's grouping fields, then its metrics;
with ``with_names``, then ``project_name``, ``api_key_name`` and ``user_name`` for the endpoints that carry those IDs
(the stored directory's current name, kept for deleted items; empty where the directory does not know the ID).
Money and quantities stay exact in every format: Parquet keeps ``decimal128(38,18)``; CSV and JSON Lines write the
decimal digits as text (JSON numbers, never through a binary float). Rows are read in batches, so an export never
holds the whole store.

Where it goes:

* ``-`` (stdout) or a file: one endpoint for CSV and Parquet (JSON Lines lines carry ``endpoint`` and may mix);
* a directory: one file per endpoint (``usage_completions.csv``, ``costs.parquet``, ...); a new one is never made
  under a name that says one file (``usage.csv``: see :data:`FILE_SUFFIXES`);
* Parquet with ``partition_by="day"``: a Hive-partitioned dataset, ``<dir>/<table>/day=YYYY-MM-DD/*.parquet``,
  that Spark, Trino or DuckDB read as one table.

Nothing is lost: an output that is the DuckDB store, its WAL or another protected file (the CLI adds the config in
use), or that is or lies inside a Delta table (``export --format delta``), is refused before anything is written.
Every file goes to a temporary name beside its target and is renamed into place only when the whole export has
succeeded, so a failed export leaves no partial file and never truncates one.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final, Literal

import msgspec
import pyarrow as pa

from usageledger import catalogue, timeutil
from usageledger._csv import CsvWriter, plain_decimal
from usageledger._paths import (
    is_stream,
    make_folder,
    naming_full_disk,
    overwrite_refusal,
    real_path,
    remove_made,
    temp_beside,
)
from usageledger._text import json_line
from usageledger.errors import ConfigError, ParameterError
from usageledger.rules import name_list
from usageledger.store import BaseStore, StreamState, TableSpec, history, store_files, table_for
from usageledger.store.directory import NamedId, name_joins, named_ids
from usageledger.store.schema import q

__all__ = [
    "ExportFormat",
    "ExportResult",
    "StreamsHeld",
    "bucket_filter",
    "check_batch_rows",
    "check_directory",
    "delta_table_holding",
    "endpoint_names",
    "export",
    "format_decimal",
    "ordered_slices",
    "request_problem",
    "staged_file",
    "tables_for",
    "write_csv",
    "write_parquet",
]

ExportFormat = Literal["csv", "jsonl", "parquet"]
BATCH_ROWS: Final = 50_000
FILE_SUFFIXES: Final = frozenset({".csv", ".jsonl", ".ndjson", ".json", ".parquet"})
"""Names that say one file: an ``--output`` so named is never made the folder of an export of several endpoints
(a partitioned export's folder, ``usage.parquet/``, is named so on purpose, as Spark and DuckDB name theirs)."""
_TS: Final = pa.timestamp("s", tz="UTC")


@dataclass(frozen=True, slots=True)
class ExportResult:
    """Rows written per table, and the files written (empty for stdout)."""

    rows: dict[str, int]
    files: tuple[Path, ...]
    warnings: tuple[str, ...] = ()
    """One line per endpoint whose rows hold several streams that cover the same spend or usage
    (:class:`StreamsHeld`): a sum over every row of it counts that twice."""

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def format_decimal(value: Decimal) -> str:
    """Exact decimal text without the store's trailing zeros: ``0.060000000000000000`` -> ``0.06``."""
    return plain_decimal(value)


def _schema(spec: TableSpec, with_names: bool = False) -> pa.Schema:
    fields = [pa.field("org", pa.string()), pa.field("stream", pa.string())]
    fields += [pa.field("bucket_start", _TS), pa.field("bucket_end", _TS)]
    full = spec.arrow_schema()
    fields += [full.field(c.name) for c in spec.data_columns]
    if with_names:
        fields += [pa.field(f"{n.prefix}_name", pa.string()) for n in _named(spec)]
    return pa.schema(fields)


def _named(spec: TableSpec) -> tuple[NamedId, ...]:
    return named_ids([c.name for c in spec.data_columns])


def bucket_filter(
    since: int | None, until: int | None, orgs: Sequence[str], streams: Sequence[str] = (), *, alias: str = ""
) -> tuple[list[str], list[Any]]:
    """The WHERE conditions (to join with ``AND``) and their parameters that keep the buckets starting in
    ``[since, until)`` (Unix seconds; ``None``: unbounded) of ``orgs`` and ``streams`` (empty: all); ``alias``
    qualifies the columns."""
    col = f"{alias}." if alias else ""
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append(f"{col}bucket_start >= %s")
        params.append(datetime.fromtimestamp(since, UTC))
    if until is not None:
        where.append(f"{col}bucket_start < %s")
        params.append(datetime.fromtimestamp(until, UTC))
    for column, values in (("org", orgs), ("stream", streams)):
        if values:
            where.append(f"{col}{column} IN ({', '.join(['%s'] * len(values))})")
            params.extend(values)
    return where, params


def _utc_text(value: datetime) -> str:
    """A time as ``2026-11-20T00:00:00Z``; a naive one is UTC (:func:`_records` reads the store's times so)."""
    return timeutil.iso_moment(value)


def _records(batch: pa.Table) -> list[dict[str, Any]]:
    """The batch's rows as dicts, its UTC timestamps read as naive UTC datetimes: pyarrow turns a timestamp with a
    time zone into a Python value through pandas, which it imports for that where installed (~0.3 s, 50 MB)."""
    import pyarrow as pa

    if any(pa.types.is_timestamp(t) and t.tz is not None for t in batch.schema.types):
        batch = batch.cast(
            pa.schema(
                pa.field(f.name, pa.timestamp(f.type.unit) if pa.types.is_timestamp(f.type) else f.type, f.nullable)
                for f in batch.schema
            )
        )
    records: list[dict[str, Any]] = batch.to_pylist()
    return records


_JSON: Final = msgspec.json.Encoder()


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        # The exact digits as a JSON number (never 1E-18, never through a float).
        return msgspec.Raw(format_decimal(value).encode())
    if isinstance(value, datetime):
        return _utc_text(value)
    return value


def request_problem(
    fmt: str, partition_by: str | None, endpoints: Sequence[str], *, to_stdout: bool
) -> tuple[str, str] | None:
    """What is wrong with an export's request itself, before any store is read, as ``(flag, what to do)``; ``None``
    when nothing is. The one rule: :func:`export` raises it as a :class:`~usageledger.errors.ConfigError`, and the
    CLI says it before it opens the store, as the bad input it is (exit 2)."""
    for name in endpoints:
        try:
            catalogue.get(name)
        except KeyError as exc:
            return "--endpoint", str(exc.args[0])
    if partition_by is not None and fmt != "parquet":
        return "--partition-by", f"only Parquet exports can be partitioned, not {fmt}; pass -f parquet"
    chosen = len(set(endpoints or catalogue.ENDPOINT_NAMES))
    if to_stdout and fmt != "jsonl" and chosen != 1:
        return "--endpoint", (
            f"{fmt} to stdout holds one endpoint, and {chosen} are chosen; pass one --endpoint, or --output DIR for"
            " a file each"
        )
    return None


def tables_for(endpoints: Sequence[str]) -> list[TableSpec]:
    """The tables of the ``--endpoint`` names given (each once, in order; none given: every endpoint); an unknown
    name is a :class:`~usageledger.errors.ConfigError` naming ``--endpoint``."""
    specs = []
    for name in dict.fromkeys(endpoints) or catalogue.ENDPOINT_NAMES:
        try:
            specs.append(table_for(name))
        except KeyError as exc:
            raise ConfigError(f"--endpoint: {exc.args[0]}") from None
    return specs


def export(
    store: BaseStore,
    fmt: ExportFormat,
    output: str | Path | IO[bytes],
    *,
    endpoints: Sequence[str] = (),
    since: timeutil.TimeInput | None = None,
    until: timeutil.TimeInput | None = None,
    orgs: Sequence[str] = (),
    streams: Sequence[str] = (),
    partition_by: Literal["day"] | None = None,
    batch_rows: int = BATCH_ROWS,
    protect: Mapping[str, str | Path] | None = None,
    with_names: bool = False,
    as_of: timeutil.TimeInput | None = None,
    deltas: bool = False,
    changed_since: timeutil.TimeInput | None = None,
) -> ExportResult:
    """Write the selected rows; ``output`` is ``-`` (stdout's binary stream), a binary stream, a file or a directory.

    ``endpoints``, ``orgs`` and ``streams`` take names (one string is one name; none: all); ``since``, ``until``,
    ``as_of`` and ``changed_since`` take any time the client takes (:func:`usageledger.timeutil.to_unix`; ``as_of``
    not after now, :func:`~usageledger.timeutil.past_unix`). A wrong argument is a
    :class:`~usageledger.errors.ParameterError` naming it, before anything is read or written.

    ``protect`` maps a description ("the config file") to a path the export must never write; the DuckDB store and
    its WAL are always protected. ``with_names`` adds the name columns (see the module's docstring). The result's
    ``warnings`` name the endpoints whose rows hold several streams of one org covering the same spend or usage
    (:class:`StreamsHeld`), which a sum over every row counts twice.

    From the revision log (:mod:`usageledger.store.history`): ``as_of`` (Unix seconds) exports the rows as they
    stood then; ``deltas`` exports, per row, each metric's change over the entries seen after ``changed_since`` (all,
    without it) and at or before ``as_of`` (negative too; a vanished row's values come back negated).
    """
    if changed_since is not None and not deltas:
        raise ConfigError("--changed-since: only a --deltas export reads changes; add --deltas")
    now = timeutil.now_unix()
    start, end = (
        None if value is None else timeutil.to_unix(value, now=now, param=param)
        for value, param in ((since, "since"), (until, "until"))
    )
    changed = None if changed_since is None else timeutil.seen_since_unix(changed_since, now=now, param="changed_since")
    at = None if as_of is None else timeutil.past_unix(as_of, now=now, param="as_of")  # the ledger's past only
    timeutil.check_range(start, end, now=now, start_param="since", end_param="until", stored=True)
    _check_choice("fmt", fmt, typing.get_args(ExportFormat))
    _check_choice("partition_by", partition_by, (None, "day"))
    check_batch_rows(batch_rows)
    names = name_list("endpoints", endpoints)
    output = _output(output, partition_by)
    if (problem := request_problem(fmt, partition_by, names, to_stdout=not isinstance(output, str | Path))) is not None:
        raise ConfigError(f"{problem[0]}: {problem[1]}")
    specs = tables_for(names)
    store.check_orgs(name_list("orgs", orgs), param="orgs")  # an unknown one exported headers and nothing else
    store.check_streams(name_list("streams", streams), param="streams")
    selection = _Selection(
        store,
        start,
        end,
        name_list("orgs", orgs),
        name_list("streams", streams),
        batch_rows,
        with_names,
        at,
        changed if deltas else None,
        deltas,
    )
    if not isinstance(output, str | Path):  # a full disk behind `> file` said no place
        with naming_full_disk(output):
            return _write_stream(selection, fmt, output, specs)
    target = Path(output)
    guard = _Guard(store, protect or {})
    guard.check(target)
    _refuse_delta_table(target)
    if partition_by is not None:  # `lake/costs/day=.../` in the Delta table `lake/costs`, before anything is written
        for spec in specs:
            _refuse_delta_table(target / spec.name, output=target)
    # `--output out/`: the trailing slash names a directory, made if missing (it was written as a file named `out`,
    # or refused naming its parent's parent when that was missing too).
    named_dir = str(output).endswith(("/", os.sep))
    directory = partition_by is not None or target.is_dir() or named_dir or (len(specs) > 1 and fmt != "jsonl")
    staging = _Staging(guard)
    try:
        if not directory:
            with staging.open(target) as fh:
                result = _write_stream(selection, fmt, fh, specs)
            staging.commit()
            return ExportResult(result.rows, (target,), result.warnings)
        if target.exists() and not target.is_dir():
            what = "a partitioned export" if partition_by is not None else f"{fmt} of {len(specs)} endpoints"
            raise ParameterError(
                "--output",
                f"{target} is a file, and {what} writes a directory of files; pass a directory"
                + ("" if partition_by is not None else ", or one --endpoint for one file"),
            )
        if not target.exists() and not named_dir and partition_by is None and target.suffix.lower() in FILE_SUFFIXES:
            # `-o usage.csv` of every endpoint made a folder named usage.csv, holding costs.csv and eleven more
            raise ParameterError(
                "--output",
                f"{target} is named as one file, but {fmt} of {len(specs)} endpoints writes a directory of"
                f" files; pass a directory ({target.with_suffix('')}/), or one --endpoint for one file",
            )
        staging.folder(target)
        rows: dict[str, int] = {}
        for spec in specs:
            batches = selection.batches(spec)
            if partition_by == "day":
                count = _write_partitioned(spec, batches, target / spec.name, staging, with_names)
            else:
                with staging.open(target / f"{spec.name}.{fmt}") as fh:
                    count = _write_one(fmt, fh, spec, batches, header=True, with_names=with_names)
            rows[spec.name] = count
        files = staging.commit()
        return ExportResult(rows, files, selection.held.warnings(store))
    finally:
        staging.discard()


def _check_choice(param: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed or isinstance(value, bool):
        raise ParameterError(param, f"{value!r} is not one of them", allowed=[a for a in allowed if a is not None])


def check_batch_rows(batch_rows: object) -> None:
    """Rows per batch read from the store: a whole number above 0 (0 leaked DuckDB's or Arrow's own error)."""
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ParameterError("batch_rows", f"expected a whole number of rows above 0, got {batch_rows!r}")


def check_directory(path: object, param: str = "path") -> Path:
    """A directory an export writes into, as a ``Path``: ``""`` was the working folder, and None a TypeError."""
    if not isinstance(path, str | Path) or not str(path).strip():
        raise ParameterError(param, f"expected a directory path, got {path!r}")
    return Path(path)


def endpoint_names(value: object) -> tuple[str, ...]:
    """``endpoints`` as names: one string is one endpoint (``"costs"`` was the endpoints c, o, s, t, s)."""
    return name_list("endpoints", value)


def _output(output: object, partition_by: str | None) -> str | Path | IO[bytes]:
    """``output`` checked before anything is read: ``-`` is stdout's binary stream, a text stream or anything but a
    path or a binary stream is refused (a None reached ``write`` as an AttributeError, ``""`` wrote into the working
    folder)."""
    if output == "-":
        output = sys.stdout.buffer
    if isinstance(output, str | Path):
        if not str(output).strip():
            raise ParameterError("output", "is empty; give a file or directory path, or - for stdout")
        return output
    if isinstance(output, io.TextIOBase):
        raise ParameterError("output", "is a text stream; pass a binary one (for stdout, sys.stdout.buffer)")
    if not callable(getattr(output, "write", None)):
        raise ParameterError("output", f"expected a path or a binary stream, got {type(output).__name__}")
    if partition_by is not None:
        raise ParameterError("partition_by", "a partitioned export is a directory of files; pass a directory")
    return output  # type: ignore[return-value]


@contextmanager
def staged_file(store: BaseStore, output: str | Path, protect: Mapping[str, str | Path]) -> Iterator[IO[bytes]]:
    """One output file written as :func:`export` writes its files: refused if it is the store, its WAL, a lock
    file or a ``protect``-ed path, or a directory; written under a temporary name and renamed into place only if the
    block succeeds (a failure leaves no partial file and never truncates the old one)."""
    target = Path(output)
    if target.is_dir():
        raise ParameterError(
            "--output", f"{output} is a directory, and this output is one file: give a file's path in it"
        )
    if str(output).endswith(("/", os.sep)):  # `out/` was written as a file named `out`; a folder it does not hold
        raise ParameterError(
            "--output", f"{output} names a folder (it ends in /), and this output is one file: give a file's path"
        )
    guard = _Guard(store, protect)
    guard.check(target)
    _refuse_delta_table(target)
    staging = _Staging(guard)
    try:
        with staging.open(target) as fh:
            yield fh
        staging.commit()
    finally:
        staging.discard()


def delta_table_holding(path: Path) -> Path | None:
    """The Delta table ``path`` is or is inside: the nearest folder, ``path`` itself first, that holds a
    ``_delta_log``; ``None`` for none."""
    here = path.absolute()
    return next((p for p in (here, *here.parents) if (p / "_delta_log").is_dir()), None)


def _refuse_delta_table(path: Path, *, output: Path | None = None) -> None:
    """Refuse to write ``path`` when it is, or is inside, a Delta table (``export --format delta`` writes them).

    A CSV, JSON Lines, Parquet or FOCUS file there is none of the table's files: the table's VACUUM deletes it. A
    partitioned export into a lake wrote its ``day=`` folders inside each table's own, beside its ``month=`` ones, so
    a reader of the Parquet dataset (``read_parquet('lake/costs/**')``) read every row twice."""
    table = delta_table_holding(path)
    if table is None:
        return
    where = "" if table == path.absolute() else "inside "
    said = f"{path} is {where}the Delta table {table}" if output is None else f"{path} is a Delta table"
    raise ParameterError(
        "--output",
        f"{said}, which `export --format delta` keeps (its VACUUM deletes files it does not list, and a "
        "reader of these files would read its rows too): export to another directory",
    )


def export_guard(store: BaseStore, protect: Mapping[str, str | Path]) -> _Guard:
    """The one check that an output path is none of the paths an export must never write (see ``_Guard``)."""
    return _Guard(store, protect)


class _Guard:
    """The paths an export must never write: the DuckDB store, its WAL, its lock files and what the caller protects."""

    def __init__(self, store: BaseStore, protect: Mapping[str, str | Path]) -> None:
        from usageledger.store.duckdb import DuckDBStore

        if not isinstance(protect, Mapping):
            raise ParameterError(
                "protect", f"expected a mapping of descriptions to paths, got {type(protect).__name__}"
            )
        self._paths: list[tuple[str, str | Path]] = []
        if isinstance(store, DuckDBStore):
            self._paths += store_files(store.path)
        self._paths += list(protect.items())

    def check(self, path: Path) -> None:
        reason = overwrite_refusal(path, self._paths)
        if reason is not None:
            raise ParameterError("--output", f"{reason}: export to another file or directory")


class _Staging:
    """Files written under temporary names beside their targets, renamed into place together by ``commit``; the
    folders made for them (:func:`~usageledger._paths.make_folder`) are removed again by ``discard`` unless
    committed, so an export that fails leaves nothing it created."""

    def __init__(self, guard: _Guard) -> None:
        self._guard = guard
        self._moves: list[tuple[Path, Path]] = []
        self._dirs: list[Path] = []
        self._stale: list[Path] = []
        self._made: list[Path] = []

    def folder(self, path: Path) -> None:
        """Make the folder ``path`` when missing (and its missing parents), to be removed if the export fails."""
        self._made[:0] = make_folder(path)  # deepest first, the later (deeper) ones before the earlier

    @contextmanager
    def open(self, final: Path) -> Iterator[IO[bytes]]:
        """A new temporary file for ``final`` (never the target itself, so nothing existing is truncated)."""
        self._guard.check(final)
        if is_stream(final):  # a FIFO, /dev/stdout, a device: written through; a rename would replace it with a file
            with naming_full_disk(final), open(final, "wb") as stream:  # `-o /dev/full` said no path
                yield stream
            return
        if final.is_symlink():  # replace the file the link points at, as writing through it did, and keep the link
            final = real_path(final)
        self.folder(final.parent)
        temp = temp_beside(final)
        self._moves.append((temp, final))
        with naming_full_disk(final), open(temp, "xb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())

    def directory(self, final: Path) -> Path:
        """A new temporary directory beside ``final`` for a writer that makes its own files (a Parquet dataset)."""
        self.folder(final.parent)
        temp = temp_beside(final)
        temp.mkdir()
        self._dirs.append(temp)
        return temp

    def adopt(self, temp: Path, final: Path) -> None:
        """Rename ``temp`` (inside a staging directory) to ``final`` on commit."""
        self._guard.check(final)
        self._moves.append((temp, final))

    def replace_directory(self, final_dir: Path) -> None:
        """On commit, remove the files already in ``final_dir`` that this export does not write."""
        if final_dir.is_dir():
            self._stale += [p for p in final_dir.iterdir() if p.is_file()]

    def commit(self) -> tuple[Path, ...]:
        """Rename every file into place, then remove the stale ones. Once begun, the commit is finished even when a
        stop (Ctrl-C, or SIGTERM, which the CLI turns into one) arrives meanwhile, and the stop is raised after it:
        cut short, it left some endpoints' files (or some days of a dataset) new and the rest old, while the command
        said "interrupted" as if nothing had changed. The renames take milliseconds, the export before them minutes."""
        finals = {final for _, final in self._moves}
        stale = [old for old in self._stale if old not in finals]
        stop: KeyboardInterrupt | None = None
        done = 0
        while done < len(self._moves) + len(stale):
            try:
                while done < len(self._moves):
                    temp, final = self._moves[done]
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(temp, final)
                    done += 1
                while done < len(self._moves) + len(stale):
                    stale[done - len(self._moves)].unlink(missing_ok=True)
                    done += 1
            except KeyboardInterrupt as exc:
                stop = exc
                if done < len(self._moves) and not os.path.lexists(self._moves[done][0]):
                    done += 1  # the stop came after the rename, before it was counted
        self._moves, self._stale, self._made = [], [], []
        if stop is not None:
            raise stop
        return tuple(sorted(finals))

    def discard(self) -> None:
        """Remove every temporary file and directory left (all of them after a failure, none after commit)."""
        for temp, _ in self._moves:
            with suppress(FileNotFoundError):
                temp.unlink()
        for temp_dir in self._dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)
        remove_made(self._made)
        self._moves, self._dirs, self._made = [], [], []


class StreamsHeld:
    """Which streams each endpoint's export holds, gathered from its rows as they are written, and the warning when
    one org's rows there come from several streams that cover the same spend or usage.

    A stream is a complete copy of its endpoint cut one way (``costs`` by project and line item, and again by
    project and key): a spreadsheet's SUM of ``amount_value`` over an export holding both is twice the spend, and
    nothing in the file says so but its ``stream`` column. Two streams of one org and endpoint cover the same
    buckets unless a filter both set keeps values apart (``project_ids`` of other projects, ``batch`` true and
    false); a filtered one covers part of another's.
    """

    def __init__(self) -> None:
        self._held: dict[str, set[tuple[str, str]]] = {}

    def watch(self, spec: TableSpec, batches: Iterable[pa.Table]) -> Iterator[pa.Table]:
        """``batches`` passed through, the ``(org, stream)`` pairs in them noted for ``spec``'s endpoint."""
        import pyarrow.compute as pc

        held = self._held.setdefault(spec.endpoint.name, set())
        for batch in batches:
            # Arrow's own values only: a Python one (a join's "\n", a group_by's first import of pyarrow.acero)
            # imported pandas or acero, 0.2-0.3 s an export
            orgs, streams = pc.unique(batch.column("org")), batch.column("stream")
            for index in range(len(orgs)):
                org = orgs[index]
                mine = streams if len(orgs) == 1 else pc.filter(streams, pc.equal(batch.column("org"), org))
                held.update((org.as_py(), stream) for stream in pc.unique(mine).to_pylist())
            yield batch

    def warnings(self, store: BaseStore) -> tuple[str, ...]:
        """One line per endpoint whose rows hold overlapping streams, naming them and the ``--stream`` to pick."""
        if all(len({org for org, _ in held}) == len(held) for held in self._held.values()):
            return ()  # one stream per org everywhere: no need to read the streams' definitions
        states = {(s.org, s.stream): s for s in store.stream_states()}
        lines = []
        for endpoint, held in self._held.items():
            found = [states[pair] for pair in sorted(held) if pair in states]
            line = _overlap_warning(endpoint, found)
            if line is not None:
                lines.append(line)
        return tuple(lines)


def _overlap_warning(endpoint: str, held: Sequence[StreamState]) -> str | None:
    overlapping: dict[str, StreamState] = {}  # by stream id: the same definition in several orgs is one name
    orgs: set[str] = set()
    for a in held:
        for b in held:
            if a is not b and a.org == b.org and not _apart(a.filters, b.filters):
                overlapping.setdefault(a.stream, a)
                orgs.add(a.org)
    if not overlapping:
        return None
    streams = sorted(overlapping.values(), key=lambda s: (not s.is_default, s.filters != "{}", s.stream))
    filtered = any(s.filters != "{}" for s in streams)
    what = "spend" if endpoint == "costs" else "usage"
    counts = (
        "some of it more than once" if filtered else "it " + ("twice" if len(streams) == 2 else f"{len(streams)} times")
    )
    return (
        f"{endpoint}: the rows of {'org' if len(orgs) == 1 else 'orgs'} {', '.join(sorted(orgs))} come from"
        f" {len(streams)} streams that each hold the same {what}{', in part' if filtered else ''}, cut"
        f" another way ({', '.join(s.stream for s in streams)}): a sum over every row counts {counts}; sum one"
        f" stream (the stream column), or export one with --stream {streams[0].stream}"
    )


def _apart(a: str, b: str) -> bool:
    """Whether two streams' filters (canonical JSON) keep their rows apart: a filter both set, to no common value."""
    first, second = json.loads(a), json.loads(b)
    for name in first.keys() & second.keys():
        x, y = first[name], second[name]
        if isinstance(x, bool) or isinstance(y, bool):
            if x != y:
                return True
        elif not set(x) & set(y):
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Selection:
    """Which rows an export reads, from every table it writes, and in batches of how many."""

    store: BaseStore
    since: int | None
    until: int | None
    orgs: Sequence[str]
    streams: Sequence[str]
    batch_rows: int
    with_names: bool
    as_of: int | None = None
    changed_since: int | None = None
    deltas: bool = False
    held: StreamsHeld = field(default_factory=StreamsHeld)
    """The streams the rows written came from: :meth:`StreamsHeld.warnings` after the export."""

    def _sql(
        self, spec: TableSpec, source: tuple[str, list[Any]] | None, where: list[str], params: list[Any]
    ) -> tuple[str, list[Any]]:
        """The SELECT of ``spec``'s rows kept by ``where`` (conditions on ``t``, and their parameters), from
        ``source`` (a subquery and its parameters) when given, else from the table itself; with ``with_names``, the
        directory's names joined on."""
        names = ["org", "stream", "bucket_start", "bucket_end", *(c.name for c in spec.data_columns)]
        named = _named(spec) if self.with_names else ()
        cols = ", ".join([*(f"t.{q(c)}" for c in names), *(f"{n.prefix}_dir.name AS {n.prefix}_name" for n in named)])
        sql = f"SELECT {cols} FROM {spec.name if source is None else f'({source[0]})'} AS t"
        if source is not None:
            params = [*source[1], *params]
        if named:
            sql += " " + name_joins("t", named)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return sql + " ORDER BY t.org, t.stream, t.bucket_start, t.group_key", params

    def batches(self, spec: TableSpec) -> Iterator[pa.Table]:
        source = None
        if self.deltas or self.as_of is not None:
            groups = history.stream_group_bys(self.store)
            dialect = self.store.dialect
            source = (
                history.deltas_sql(spec, dialect, groups, since=self.changed_since, until=self.as_of)
                if self.deltas
                else history.as_of_sql(spec, self.as_of or 0, dialect, groups)
            )
        where, params = bucket_filter(self.since, self.until, self.orgs, self.streams, alias="t")
        schema = _schema(spec, self.with_names)
        if source is not None:  # the log's rows come from a subquery that one read computes once
            sql, params = self._sql(spec, source, where, params)
            yield from self.held.watch(spec, self.store.iter_batches(sql, params, schema, self.batch_rows))
            return
        slices = ordered_slices(self.store, spec.name, where, params, ("org", "stream"), self.batch_rows)

        def read() -> Iterator[pa.Table]:
            for part, values in slices:
                sql, args = self._sql(spec, None, [*where, *part], [*params, *values])
                yield from self.store.iter_batches(sql, args, schema, self.batch_rows)

        yield from self.held.watch(spec, read())


def ordered_slices(
    store: BaseStore, source: str, where: Sequence[str], params: Sequence[Any], by: Sequence[str], rows: int
) -> list[tuple[list[str], list[Any]]]:
    """The extra conditions on ``t`` (and their parameters) that cut a read of ``source AS t`` kept by ``where``,
    ordered by ``(*by, bucket_start, ...)``, into slices of about ``rows`` rows each, in that order: a slice holds
    one value of the ``by`` columns and a run of whole buckets (so up to one bucket more than ``rows``), so the
    slices read one after the other give the rows of the one ordered read. An export reads slices of one batch.

    The database sorts one slice at a time: a single ``ORDER BY`` over the whole table held all of it in DuckDB's
    memory until the last row was read (626,235 costs rows: 220 MB of the export's 490 MB peak,
    ``bench/BENCHMARKS.md``), however small the batches handed on were. The slices' bounds come from one
    aggregate over the buckets, computed by the database."""
    cols = ", ".join(q(c) for c in by)
    keys = ", ".join(f"t.{q(c)}" for c in by)
    inner = f"SELECT {keys}, t.bucket_start, COUNT(*) AS n FROM {source} AS t"
    if where:
        inner += " WHERE " + " AND ".join(where)
    inner += f" GROUP BY {keys}, t.bucket_start"
    ahead = f"SELECT {cols}, bucket_start, SUM(n) OVER (PARTITION BY {cols} ORDER BY bucket_start) - n AS ahead"
    sql = (
        f"SELECT {cols}, MIN(bucket_start), MAX(bucket_start) FROM ({ahead} FROM ({inner}) AS g) AS r"
        f" GROUP BY {cols}, FLOOR(ahead / CAST(%s AS DOUBLE PRECISION))"
        f" ORDER BY {', '.join(str(i + 1) for i in range(len(by) + 1))}"
    )
    conditions = [*(f"t.{q(c)} = %s" for c in by), "t.bucket_start >= %s", "t.bucket_start <= %s"]
    return [(conditions, list(row)) for row in store.query(sql, [*params, rows])]


def _write_stream(selection: _Selection, fmt: ExportFormat, out: IO[bytes], specs: Sequence[TableSpec]) -> ExportResult:
    rows: dict[str, int] = {}
    for spec in specs:
        batches = selection.batches(spec)
        rows[spec.name] = _write_one(fmt, out, spec, batches, header=True, with_names=selection.with_names)
    out.flush()
    return ExportResult(rows, (), selection.held.warnings(selection.store))


def write_parquet(out: IO[bytes], schema: pa.Schema, batches: Iterator[pa.Table]) -> int:
    """Write ``batches`` as one Parquet file of ``schema``; the number of rows written."""
    import pyarrow.parquet as pq

    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        for batch in batches:
            writer.write_table(batch)
            count += batch.num_rows
    return count


def write_csv(out: IO[bytes], columns: Sequence[str], batches: Iterator[pa.Table], *, header: bool = True) -> int:
    """Write ``columns`` of ``batches`` as UTF-8 CSV through the command line's one writer (:class:`CsvWriter`:
    exact decimals, UTC times ending in ``Z``, empty for null, ``true``/``false``, text a spreadsheet would run as a
    formula after an apostrophe, one record per row), after a header row when ``header``; the number of rows
    written."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = CsvWriter(text, decimal=format_decimal)
    if header:
        writer.header(columns)
    count = 0
    for batch in batches:
        writer.writerows([record[n] for n in columns] for record in _records(batch))
        count += batch.num_rows
    text.flush()
    text.detach()
    return count


def _write_one(
    fmt: ExportFormat,
    out: IO[bytes],
    spec: TableSpec,
    batches: Iterator[pa.Table],
    *,
    header: bool,
    with_names: bool = False,
) -> int:
    schema = _schema(spec, with_names)
    if fmt == "parquet":
        return write_parquet(out, schema, batches)
    if fmt == "csv":
        return write_csv(out, schema.names, batches, header=header)
    count = 0
    endpoint = spec.endpoint.name
    for batch in batches:
        lines = [
            _JSON.encode({"endpoint": endpoint, **{k: _json_value(v) for k, v in record.items()}})
            for record in _records(batch)
        ]
        if lines:  # one record a line, for str.splitlines() too: a name's U+2028 is written escaped
            out.write(json_line(b"\n".join(lines) + b"\n"))
        count += batch.num_rows
    return count


def _write_partitioned(
    spec: TableSpec, batches: Iterator[pa.Table], root: Path, staging: _Staging, with_names: bool
) -> int:
    """A Hive-partitioned dataset: ``root/day=YYYY-MM-DD/part-*.parquet``, staged and replacing whole days."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    schema = _schema(spec, with_names).append(pa.field("day", pa.string()))
    count = 0

    def with_day() -> Iterator[pa.RecordBatch]:
        nonlocal count
        for table in batches:
            day = pc.strftime(table.column("bucket_start"), format="%Y-%m-%d")
            count += table.num_rows
            yield from table.append_column("day", day).cast(schema).to_batches()

    reader = pa.RecordBatchReader.from_batches(schema, with_day())
    temp = staging.directory(root)
    written: list[Path] = []
    ds.write_dataset(
        reader,
        temp,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("day", pa.string())]), flavor="hive"),
        basename_template="part-{i}.parquet",
        file_visitor=lambda f: written.append(Path(f.path)),
    )
    for path in sorted(written):
        final = root / path.relative_to(temp)
        staging.replace_directory(final.parent)
        staging.adopt(path, final)
    return count
