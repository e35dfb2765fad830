"""Export the ledger to Delta Lake tables, and keep them in step: ``export --format delta PATH``.

``PATH/<table>`` is one Delta table per endpoint table of the store (``usage_completions``, ``costs``, ...); every
stream of the endpoint shares it (they share one schema), told apart by the ``org`` and ``stream`` columns, as in the
store. Columns: ``org``, ``stream``, ``bucket_start``, ``bucket_end`` (UTC timestamps), ``group_key`` (the store's
key of the grouping values), the endpoint's dimensions and metrics (money ``decimal(38,18)``, exact), and ``month``
(``YYYY-MM`` of ``bucket_start``), the partition column.

The first export writes each table whole. A later one compares each month of the store with the table's partition
of that month (:mod:`usageledger._month_prints`: a count and sums of row hashes, read batch by batch on both
sides, so memory does not grow with a month's rows), and rewrites only the months that differ with the store's
rows, in one commit per table (an overwrite of those partitions). What that changed is counted on the natural key
``(org, stream, bucket_start, group_key)``: rows updated, rows inserted, and rows of those months that the store no
longer holds (a bucket the API revised away, an org deleted) deleted. Months that did not change are not
rewritten, so Spark, Databricks, Trino, polars and DuckDB reading the tables see small, incremental commits.

``PATH`` is never the store: the DuckDB file, its WAL and lock files, and what the caller protects are refused, and
so is a directory of a table name that holds something other than a Delta table.

A table mirrors one store. Its description names that store's identity (:meth:`BaseStore.identity`), and an export
from another store is refused before anything is written: it would delete every row the other store wrote (the
demo's synthetic ledger exported over the real one replaced it whole). A table written before tables carried the
identity is taken over by the first store that exports to it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from usageledger import timeutil
from usageledger._memory import release_free_memory
from usageledger._month_prints import NO_ROWS, LocalDuckDB, MonthPrints
from usageledger._paths import make_folder, remove_made
from usageledger.errors import ConfigError, ParameterError
from usageledger.export import (
    BATCH_ROWS,
    StreamsHeld,
    _Guard,
    check_batch_rows,
    check_directory,
    delta_table_holding,
    endpoint_names,
    export_guard,
    tables_for,
)
from usageledger.store import BaseStore, TableSpec
from usageledger.store.schema import q

__all__ = ["DeltaExportResult", "DeltaTableExport", "delta_schema", "export_delta"]

logger = logging.getLogger("usageledger.export")

_TS: Final = pa.timestamp("us", tz="UTC")
_KEY: Final = ("org", "stream", "bucket_start", "group_key")
_OWNER: Final = re.compile(r"\bof usageledger store ([0-9a-f-]{36})\b")
"""How a table's description names the store it mirrors."""
_UNADDRESSABLE: Final = re.compile(r"[\[\]|^\\\x00-\x1f\x7f]|%[0-9A-Fa-f]{2}")
"""What deltalake (1.6) cannot have in a local path, which it reads as a URL: ``[ ] | ^`` (a Rust panic), a
backslash or a control character (an error, or the path cut at it), ``%XX`` (decoded: ``a%41b`` is ``aAb``)."""


def _description(table: str, store_id: str) -> str:
    return f"The {table} table of usageledger store {store_id}, merged on (org, stream, bucket_start, group_key)."


@dataclass(frozen=True, slots=True)
class DeltaTableExport:
    """One Delta table after an export: its rows, its months, and what this run rewrote."""

    table: str
    path: Path
    rows: int
    months: int
    rewritten: tuple[str, ...]
    """The months (partitions) this run wrote: every month on a first export, the changed ones afterwards."""
    created: bool
    inserted: int = 0
    updated: int = 0
    deleted: int = 0


@dataclass(frozen=True, slots=True)
class DeltaExportResult:
    tables: tuple[DeltaTableExport, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = ()
    """One line per table whose rows hold several streams that cover the same spend or usage
    (:class:`usageledger.export.StreamsHeld`): a query summing every row of it counts that twice."""

    @property
    def total(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def rewritten(self) -> int:
        return sum(len(t.rewritten) for t in self.tables)

    @property
    def months(self) -> int:
        return sum(t.months for t in self.tables)


def _deltalake() -> Any:
    try:
        import deltalake
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigError("--format delta needs the deltalake package: pip install 'usageledger[delta]'") from None
    return deltalake


def delta_schema(spec: TableSpec) -> pa.Schema:
    """The Arrow schema of an endpoint's Delta table (every field nullable, as Delta reads them back)."""
    full = spec.arrow_schema()
    fields = [pa.field("org", pa.string()), pa.field("stream", pa.string())]
    fields += [pa.field("bucket_start", _TS), pa.field("bucket_end", _TS), pa.field("group_key", pa.string())]
    fields += [full.field(c.name).with_nullable(True) for c in spec.data_columns]
    return pa.schema([*fields, pa.field("month", pa.string())])


def export_delta(
    store: BaseStore,
    path: str | Path,
    *,
    endpoints: Sequence[str] = (),
    protect: Mapping[str, str | Path] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> DeltaExportResult:
    """Write (first run) or bring up to date (later runs) every endpoint table of the store in ``path/<table>``."""
    root = check_directory(path)
    _check_addressable(root)
    check_batch_rows(batch_rows)
    deltalake = _deltalake()
    specs = tables_for(endpoint_names(endpoints))
    guard = export_guard(store, protect or {})
    guard.check(root)
    if root.exists() and not root.is_dir():
        raise ParameterError(
            "--output", f"{root} is a file: a Delta export writes a directory of tables; pick a directory"
        )
    here = root.absolute()
    table = delta_table_holding(root)
    if table is not None:  # `--output lake/costs` nested twelve tables in a table, whose VACUUM would delete them
        raise ParameterError(
            "--output",
            f"{root} is {'' if table == here else 'inside '}the Delta table {table}: a lake is a directory"
            " of tables, not a table; export to the lake's directory or another one",
        )
    ours = store.identity()
    made = make_folder(root)
    try:
        with _lake_lock(root):
            return _export_locked(deltalake, store, specs, root, guard, batch_rows, ours)
    except BaseException:
        remove_made(made)  # a refused export leaves no directory it made (each only while empty)
        raise


def _check_addressable(root: Path) -> None:
    """Refuse a lake whose path deltalake would misread (:data:`_UNADDRESSABLE`), in the working folder's part too:
    ``[`` ended the export in a panic's traceback, and ``%41`` wrote the table's files under one directory and
    looked for its log under another."""
    here = str(root.absolute())
    found = _UNADDRESSABLE.search(here)
    if found is not None:
        raise ParameterError(
            "--output",
            f"deltalake cannot address {here!r}, which holds {found.group()!r}: export to a directory whose path has"
            " no [ ] | ^ \\, control character or %XX (a % and two hex digits)",
        )


@contextlib.contextmanager
def _lake_lock(root: Path) -> Iterator[None]:
    """Hold ``root`` (``flock`` on the directory itself: no file is added to the lake) for one export at a time.

    Two exports to one lake at once both found no table, both wrote one, and the second appended every row again:
    the lake held each row twice, and later MERGEs (one source row matching two) never undid it. The later export
    now waits, then compares with what the first one left, so it rewrites nothing that is already equal.
    """
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("waiting for %s: another usageledger export is writing it", root)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor lets the lock go


def _export_locked(
    deltalake: Any,
    store: BaseStore,
    specs: Sequence[TableSpec],
    root: Path,
    guard: _Guard,
    batch_rows: int,
    ours: str,
) -> DeltaExportResult:
    unfinished: list[Path] = []
    for spec in specs:  # every check before anything is written
        where = root / spec.name
        guard.check(where)
        if _never_committed(where):
            unfinished.append(where)
            continue
        if where.exists() and (not where.is_dir() or (any(where.iterdir()) and not (where / "_delta_log").is_dir())):
            raise ParameterError(
                "--output", f"{where} exists and is not a Delta table; export to an empty or Delta directory"
            )
        held = _held(deltalake, where)
        owner = None if held is None else _named_store(held.metadata().description)  # None: it names no store
        if owner is not None and owner != ours:
            this = "this store (synthetic data: the demo's or the emulator's)" if _synthetic(store) else "this store"
            raise ParameterError(
                "--output",
                f"{where} mirrors another store ({owner}); exporting {this} over it would replace "
                "that store's rows: export each store to a directory of its own",
            )
        if held is not None:
            _check_readable(held, where)
    for where in unfinished:  # a first write that never committed (a full disk): no table refers to its files
        shutil.rmtree(where)
    seen = StreamsHeld()
    with contextlib.closing(LocalDuckDB()) as local:
        tables = tuple(_export_one(deltalake, store, spec, root, batch_rows, ours, seen, local) for spec in specs)
    return DeltaExportResult(tables, seen.warnings(store))


def _never_committed(where: Path) -> bool:
    """Whether ``where`` holds the remains of a first write that failed before its commit: a ``_delta_log`` with no
    commit or checkpoint in it, beside nothing but this export's ``month=`` partitions. deltalake refused to open
    it ("No files in log segment"), so the next export, with room again, ended in a traceback."""
    log = where / "_delta_log"
    if not log.is_dir() or any(p.suffix == ".json" or "checkpoint" in p.name for p in log.iterdir()):
        return False
    return all(p == log or (p.is_dir() and p.name.startswith("month=")) for p in where.iterdir())


def _export_one(
    deltalake: Any,
    store: BaseStore,
    spec: TableSpec,
    root: Path,
    batch_rows: int,
    store_id: str,
    held: StreamsHeld,
    local: LocalDuckDB,
) -> DeltaTableExport:
    """:func:`_export_table`, with deltalake's failures to write in one line naming the table (its own message is
    several lines of coloured text, which the CLI printed escaped: ``\\n``, ``\\u001b[31m``)."""
    where = root / spec.name
    try:
        return _export_table(deltalake, store, spec, where, batch_rows, store_id, held, local)
    except OSError as exc:
        if exc.filename is not None:
            raise
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        if "os error 28" in text:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where)) from exc
        parts = [line.strip(" \u21b3") for line in text.splitlines()]
        raise OSError(exc.errno, ": ".join(p for p in parts if p), str(where)) from exc


def _held(deltalake: Any, where: Path) -> Any | None:
    """The Delta table at ``where``; ``None`` for no table."""
    return deltalake.DeltaTable(str(where)) if (where / "_delta_log").is_dir() else None


def _named_store(description: str | None) -> str | None:
    found = _OWNER.search(description or "")
    return None if found is None else found.group(1)


def _synthetic(store: BaseStore) -> bool:
    orgs = store.orgs()
    return bool(orgs) and all(o.synthetic for o in orgs)


def _store_months(store: BaseStore, spec: TableSpec) -> list[tuple[str, int, int]]:
    lo, hi = store.query(f"SELECT MIN(bucket_start), MAX(bucket_start) FROM {spec.name}")[0]
    if lo is None:
        return []
    return timeutil.months(int(lo.timestamp()), int(hi.timestamp()))


def _month_rows(store: BaseStore, spec: TableSpec, start: int, end: int, batch_rows: int) -> Iterator[pa.Table]:
    """The store's rows of one month, in the Delta table's schema (``month`` included)."""
    from datetime import UTC, datetime

    import pyarrow.compute as pc

    schema = delta_schema(spec)
    read = pa.schema([f for f in schema if f.name != "month"])
    cols = ", ".join(q(f.name) for f in read)
    sql = f"SELECT {cols} FROM {spec.name} WHERE bucket_start >= %s AND bucket_start < %s"
    params = (datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
    for table in store.iter_batches(sql, params, read, batch_rows):
        month = pc.strftime(table.column("bucket_start"), format="%Y-%m")
        yield table.append_column("month", month).cast(schema)


def _export_table(
    deltalake: Any,
    store: BaseStore,
    spec: TableSpec,
    where: Path,
    batch_rows: int,
    store_id: str,
    seen: StreamsHeld,
    local: LocalDuckDB,
) -> DeltaTableExport:
    """Write the table, or bring it up to date; ``local`` holds the DuckDB that compares months (closed before any
    write: :class:`LocalDuckDB`)."""
    schema = delta_schema(spec)
    months = _store_months(store, spec)
    if not (where / "_delta_log").is_dir():
        local.close()
        count = 0

        def batches() -> Iterator[pa.RecordBatch]:
            nonlocal count
            for _, start, end in months:
                for table in seen.watch(spec, _month_rows(store, spec, start, end, batch_rows)):
                    count += table.num_rows
                    yield from table.to_batches()

        reader = pa.RecordBatchReader.from_batches(schema, batches())
        deltalake.write_deltalake(
            str(where),
            reader,
            partition_by=["month"],
            mode="error",
            name=spec.name,
            description=_description(spec.name, store_id),
        )
        written = tuple(label for label, _, _ in months)
        return DeltaTableExport(spec.name, where, count, len(months), written, True, inserted=count)
    table = deltalake.DeltaTable(str(where))
    held = pa.schema(table.schema().to_arrow())
    if held.names != schema.names:
        raise ParameterError(
            "--output", f"{where} holds a Delta table of other columns ({', '.join(held.names)}); use a new directory"
        )
    described = table.metadata().description
    if _named_store(described) is None:  # written before tables named their store: this store takes it over
        kept = (described or "").strip()  # a comment someone set on the table stays
        table.alter.set_table_description("\n".join(filter(None, [kept, _description(spec.name, store_id)])))
    in_table = {p["month"] for p in table.partitions()}
    by_label = {label: (start, end) for label, start, end in months}
    changed: list[str] = []
    doubled: list[str] = []  # changed months holding a key twice
    inserted = updated = deleted = 0
    prints = MonthPrints(local.get(), schema, _KEY, "month")
    stored = seen.watch(spec, _month_rows(store, spec, months[0][1], months[-1][2], batch_rows)) if months else ()
    ours = prints.of_rows(stored)  # every month of the store in one read, and of the table in one scan
    files = {label: _files(table, label) for label in in_table}
    theirs = prints.of_files(files)
    rows = sum(p.rows for p in ours.values())
    for label in sorted(set(by_label) | in_table):
        if ours.get(label, NO_ROWS) == theirs.get(label, NO_ROWS):
            continue
        mine = _month_rows(store, spec, *by_label[label], batch_rows) if label in by_label else iter(())
        change = prints.changes(files.get(label, []), label, mine)
        changed.append(label)
        inserted, updated, deleted = inserted + change.inserted, updated + change.updated, deleted + change.deleted
        if change.doubled:
            doubled.append(label)
    if not changed:
        return DeltaTableExport(spec.name, where, rows, len(by_label), (), False)
    if doubled:  # two exports into one lake at once, before _lake_lock, appended every row again
        said = "%s: months %s held rows twice (two exports at once, before they took turns): rewritten"
        logger.warning(said, where, ", ".join(doubled))
    # One commit replacing the changed months' files with the store's rows, streamed as the first export writes
    # them. A MERGE (delta-rs 1.6) held both sides of its join in memory: 2.8 GB and 10 s for one month of a
    # 300-project org's costs, a month it rewrote whole anyway (the month is one file); and it matched both copies
    # of a doubled row to the store's one row, updating and deleting neither.
    local.close()  # what the comparison held goes back before the write (~90 MB on a 318,051-row month)
    pa.default_memory_pool().release_unused()
    release_free_memory()
    in_changed = ", ".join(f"'{label}'" for label in changed)
    source = _store_rows(store, spec, schema, [by_label[m] for m in changed if m in by_label], batch_rows)
    predicate = f"month IN ({in_changed})"
    deltalake.write_deltalake(table, source, mode="overwrite", predicate=predicate, partition_by=["month"])
    rewritten = tuple(changed)
    return DeltaTableExport(
        spec.name, where, rows, len(by_label), rewritten, False, inserted=inserted, updated=updated, deleted=deleted
    )


def _store_rows(
    store: BaseStore, spec: TableSpec, schema: pa.Schema, spans: Sequence[tuple[int, int]], batch_rows: int
) -> pa.RecordBatchReader:
    """The store's rows of those months, read as the reader is (the writer takes them batch by batch)."""

    def batches() -> Iterator[pa.RecordBatch]:
        for start, end in spans:
            for table in _month_rows(store, spec, start, end, batch_rows):
                yield from table.to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def _files(table: Any, label: str) -> list[str]:
    """The Parquet files of one month of a Delta table, as its log names them now: local paths.

    deltalake gives them as a URL's path, percent-encoded (a lake in ``lake 2026`` is ``lake%202026``), so they are
    decoded; DuckDB, reading them, found no file at the encoded name."""
    import inspect
    from urllib.parse import unquote

    month = [("month", "=", label)]
    if "file_pruning_predicate" in inspect.signature(table.file_uris).parameters:
        uris = table.file_uris(file_pruning_predicate=month)
    else:  # deltalake 1.6.3 and older: the only spelling
        uris = table.file_uris(partition_filters=month)
    return [unquote(uri.removeprefix("file://")) for uri in uris]


_READABLE: Final = frozenset({"timestampNtz"})
"""The Delta reader features under which a table's Parquet files hold its rows as they are: no deletion vectors
(rows a file holds that the table deleted), no column mapping (columns named otherwise in the files)."""


def _check_readable(table: Any, where: Path) -> None:
    """Refuse a table whose Parquet files are not its rows as they stand (a feature turned on after our export):
    a re-run compares the store with those files."""
    protocol = table.protocol()
    features = set(protocol.reader_features or ()) - _READABLE
    if table.metadata().configuration.get("delta.columnMapping.mode", "none") != "none":
        features.add("columnMapping")
    if protocol.min_reader_version > 3 or features:
        named = ", ".join(sorted(features)) or f"reader version {protocol.min_reader_version}"
        raise ParameterError(
            "--output",
            f"{where} uses Delta reader features this export cannot compare with the store ({named});"
            " export to a new directory",
        )
