"""The DuckDB store (the default): one file, batches staged as Arrow tables."""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa

from usageledger.errors import StoreError
from usageledger.store._base import BaseStore
from usageledger.store.schema import Dialect, TableSpec

__all__ = ["DuckDBStore"]

_names = itertools.count(1)


class DuckDBStore(BaseStore):
    """A DuckDB file (or ``:memory:``). DuckDB lets one process write a file at a time."""

    dialect: ClassVar[Dialect] = "duckdb"
    this_schema: ClassVar[str] = "table_schema = current_schema() AND table_catalog = current_database()"

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        super().__init__(str(path))
        self.path = str(path)
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            holder = re.search(r"Conflicting lock is held in .*?\(PID (\d+)\)", str(exc))
            if holder:
                raise StoreError(
                    f"the DuckDB store {self.path} is in use by process {holder.group(1)} (another usageledger sync,"
                    " or a program with the file open): wait for it to finish and run again"
                ) from exc
            raise StoreError(
                f"cannot open the DuckDB store {self.path}: {_first_line(exc)}. If another usageledger sync is"
                " running on it, wait for it to finish"
            ) from exc
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the DuckDB store {self.path}: {_first_line(exc)}") from exc
        self._con.execute("SET TimeZone = 'UTC'")

    @contextlib.contextmanager
    def _outer_transaction(self) -> Iterator[None]:
        self._con.begin()
        try:
            yield
        except BaseException:
            self._con.rollback()
            raise
        try:
            self._con.commit()
        except duckdb.Error as exc:
            raise StoreError(f"DuckDB commit failed: {_first_line(exc)}") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            result = self._con.execute(sql.replace("%s", "?"), list(params))
            desc = result.description
            if desc and len(desc) == 1 and desc[0][0] == "Count":
                row = result.fetchone()
                return int(row[0]) if row else 0
            return -1
        except duckdb.Error as exc:
            raise StoreError(f"DuckDB: {_first_line(exc)}") from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._con.execute(sql.replace("%s", "?"), list(params)).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"DuckDB: {_first_line(exc)}") from exc

    def iter_batches(self, sql: str, params: Sequence[Any], schema: pa.Schema, batch_rows: int) -> Iterator[pa.Table]:
        cur = self._con.cursor()
        try:
            relation = cur.sql(sql.replace("%s", "?"), params=list(params))
            # DuckDB 2 renamed fetch_arrow_reader (now deprecated) to to_arrow_reader.
            to_reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
            reader = to_reader(batch_rows)
            for batch in reader:
                yield pa.Table.from_batches([batch]).cast(schema)
        except duckdb.Error as exc:
            raise StoreError(f"DuckDB: {_first_line(exc)}") from exc
        finally:
            cur.close()

    def _payload(self, spec: TableSpec, columns: dict[str, list[Any]]) -> pa.Table:
        schema = spec.arrow_schema()
        return pa.table({f.name: pa.array(columns[f.name], f.type) for f in schema}, schema=schema)

    def _merge(self, payloads: Sequence[Any]) -> pa.Table:
        return payloads[0] if len(payloads) == 1 else pa.concat_tables(payloads)

    def _stage(self, spec: TableSpec, payload: Any) -> str:
        name = f"_incoming_{next(_names)}"
        self._con.register(name, payload)
        return name

    def _unstage(self, name: str) -> None:
        self._con.unregister(name)

    def acquire_sync_lock(self) -> bool:
        """Always granted: DuckDB already lets only one process open the file for writing."""
        return True

    def release_sync_lock(self) -> None:
        """Nothing to release (see :meth:`acquire_sync_lock`)."""

    def _migration_lock(self) -> None:
        """Nothing to do: DuckDB lets only one process open the file for writing."""

    def close(self) -> None:
        self._con.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, for ad-hoc SQL (reports, tests)."""
        return self._con


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
