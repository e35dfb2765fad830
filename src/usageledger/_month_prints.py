"""Whether a month of the store and the same month of a Delta table hold the same rows, without holding either.

A month is summed up as a :class:`MonthPrint`: its row count and three order-free sums of a hash of each whole
row. The store's side is read batch by batch (its rows, cast to the table's Arrow schema); the table's side is its
Parquet files, read by DuckDB vector by vector; every month of a table is summed up in that one read of each side,
grouped by month. Both are cast to the same DuckDB types before hashing, so equal
typed values hash equal on either side. Memory is a batch of the store's rows and DuckDB's scan of a file, whatever
the month's size: comparing whole months (read, sorted, compared) made a re-run's memory grow with a month's rows.

A local in-memory DuckDB does the work; it is no part of the store, which may be PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

from usageledger.store.schema import q

__all__ = ["NO_ROWS", "LocalDuckDB", "MonthChanges", "MonthPrint", "MonthPrints"]


@dataclass(frozen=True, slots=True)
class MonthPrint:
    """A month's rows, whatever their order: how many, and three sums of a 64-bit hash of each whole row.

    ``forward`` is DuckDB's ``hash()`` of a row's columns in order, ``backward`` of them in reverse order (the
    columns' hashes mixed in another order: another function of the row). Months of equal prints hold the same
    rows: a change that kept the count would also have to keep the exact (unbounded) sum of both hashes and the
    XOR of one, where one 64-bit sum alone can be matched by a single changed row with a chance of one in 2**64.
    The rows are never sorted or held, which is the point."""

    rows: int
    forward_sum: int
    forward_xor: int
    backward_sum: int


NO_ROWS: Final = MonthPrint(0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class MonthChanges:
    """What rewriting a month of a table with the store's rows changes: keys only the store holds (inserted), keys
    in both whose row differs (updated), and the table's rows of keys the store no longer holds, with every copy but
    one of a key the table holds more than once (deleted); ``doubled``: whether it held one so."""

    inserted: int
    updated: int
    deleted: int
    doubled: bool


class LocalDuckDB:
    """The in-memory DuckDB that the prints of an export share, opened when first needed (~15 ms: one a table made
    the demo store's re-run 0.3 s slower) and closed by :meth:`close`, which hands its memory back: an export closes
    it before it writes a table (kept open, it held ~90 MB under the write of a 318,051-row month)."""

    def __init__(self) -> None:
        self._con: Any = None

    def get(self) -> Any:
        if self._con is None:
            import duckdb

            self._con = duckdb.connect(config={"threads": 1})  # one thread: a batch or a file at a time
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


class MonthPrints:
    """Prints of months of rows of one Arrow ``schema`` (a Delta table's), and what rewriting a month changes.

    ``con`` is a local DuckDB (:class:`LocalDuckDB`), ``key`` names the natural key's columns, ``partition`` the
    column that Delta keeps in its log rather than in the files (the month's label stands for it)."""

    def __init__(self, con: Any, schema: pa.Schema, key: Sequence[str], partition: str) -> None:
        self._con = con
        types = dict(zip(schema.names, map(str, con.from_arrow(schema.empty_table()).types), strict=True))
        self._typed = ", ".join(f"CAST({q(n)} AS {types[n]}) AS {q(n)}" for n in schema.names)
        self._in_files = ", ".join(q(n) for n in schema.names if n != partition)
        self._partition = q(partition)
        names = [q(n) for n in schema.names]
        self._forward, self._backward = ", ".join(names), ", ".join(reversed(names))
        self._prints = (
            f"SELECT {self._partition}, COUNT(*), SUM(h), BIT_XOR(h), SUM(hash({self._backward}))"
            f" FROM (SELECT *, hash({self._forward}) AS h FROM ({{rows}})) GROUP BY {self._partition}"
        )
        self._key = ", ".join(q(c) for c in key)
        self._key_backward = ", ".join(q(c) for c in reversed(key))

    def of_rows(self, batches: Iterable[pa.Table]) -> dict[str, MonthPrint]:
        """The print of each month of rows given batch by batch (the store's, in the schema), by label."""
        sums: dict[str, list[int]] = {}
        sql = self._prints.format(rows=f"SELECT {self._typed} FROM b")
        for batch in batches:
            self._con.register("b", batch)
            for label, count, fsum, fxor, bsum in self._con.execute(sql).fetchall():
                held = sums.setdefault(label, [0, 0, 0, 0])
                held[0] += count
                held[1] += fsum
                held[2] ^= fxor
                held[3] += bsum
        self._con.unregister("b")
        return {label: MonthPrint(*held) for label, held in sums.items()}

    def of_files(self, files: Mapping[str, Sequence[str]]) -> dict[str, MonthPrint]:
        """The print of each month of a Delta table, by label, from the Parquet files of each: one scan of them
        all (a query a month cost ~2 ms of planning each, 0.5 s for a table of 156 small months)."""
        names = [name for held in files.values() for name in held]
        if not names:
            return {}
        labels = [label for label, held in files.items() for _ in held]
        months = f"SELECT UNNEST($names) AS filename, UNNEST($labels) AS {self._partition}"
        rows = (
            f"SELECT {self._typed} FROM (SELECT {self._in_files}, {self._partition} FROM"
            f" read_parquet($files, hive_partitioning = false, filename = true) JOIN ({months}) USING (filename))"
        )
        found = self._con.execute(
            self._prints.format(rows=rows), {"files": _literal(names), "names": names, "labels": labels}
        ).fetchall()
        return {label: MonthPrint(count, fsum, fxor, bsum) for label, count, fsum, fxor, bsum in found}

    def changes(self, files: Sequence[str], label: str, ours: Iterable[pa.Table]) -> MonthChanges:
        """What replacing a month's files with the rows ``ours`` (the store's: each key once) changes, key by key.

        DuckDB holds four 64-bit hashes per row, never a row: two of its key (forward and backward: two keys are
        taken for one with a chance of about one in 2**128 a pair) and two of the whole row. The store's go in a
        temporary table, the files' are grouped by key as DuckDB reads them. Holding the keys themselves instead
        took 220 MB for a month of 318,051 costs rows."""
        key = f"hash({self._key}) AS k, hash({self._key_backward}) AS k2"
        whole = f"hash({self._forward}) AS h, hash({self._backward}) AS g"
        self._con.execute("CREATE OR REPLACE TEMP TABLE ours (k UBIGINT, k2 UBIGINT, h UBIGINT, g UBIGINT)")
        try:
            for batch in ours:
                self._con.register("b", batch)
                self._con.execute(f"INSERT INTO ours SELECT {key}, {whole} FROM (SELECT {self._typed} FROM b)")
            self._con.unregister("b")
            theirs = "SELECT k, k2, 0 AS n, h, h AS h2, g, g AS g2 FROM ours WHERE false"  # a month of no files
            if files:
                theirs = (
                    "SELECT k, k2, COUNT(*) AS n, MIN(h) AS h, MAX(h) AS h2, MIN(g) AS g, MAX(g) AS g2"
                    f" FROM (SELECT {key}, {whole} FROM ({self._files_sql()})) GROUP BY k, k2"
                )
            same = "t.h = o.h AND t.h2 = o.h AND t.g = o.g AND t.g2 = o.g"  # every copy of the key as the store's
            inserted, updated, deleted, doubled = self._one(
                "SELECT COUNT(*) FILTER (WHERE t.n IS NULL),"
                f" COUNT(*) FILTER (WHERE t.n IS NOT NULL AND o.h IS NOT NULL AND NOT ({same})),"
                " COALESCE(SUM(CASE WHEN o.h IS NULL THEN t.n ELSE t.n - 1 END), 0),"
                " COUNT(*) FILTER (WHERE t.n > 1)"
                f" FROM ours o FULL JOIN ({theirs}) t USING (k, k2)",
                {"files": _literal(files), "label": label} if files else None,
            )
        finally:
            self._con.execute("DROP TABLE ours")
        return MonthChanges(int(inserted), int(updated), int(deleted), bool(doubled))

    def _read(self) -> str:
        # A file's month=... folder is not a column: Delta keeps partition values in its log.
        return "read_parquet($files, hive_partitioning = false)"

    def _files_sql(self) -> str:
        """The rows of a month's files (parameters ``$files``, ``$label``: the month's), in the schema's types."""
        return f"SELECT {self._typed} FROM (SELECT {self._in_files}, $label AS {self._partition} FROM {self._read()})"

    def _one(self, sql: str, params: dict[str, Any] | None = None) -> tuple[Any, ...]:
        """The one row of an aggregate (fetched whole: DuckDB 2 keeps a result open until its last fetch)."""
        (row,) = self._con.execute(sql, params).fetchall()
        return tuple(row)


def _literal(files: Sequence[str]) -> list[str]:
    """Paths as DuckDB globs them, each matching itself only: a lake in ``la ke*?`` read the files of ``la keXY``
    too, a copy of it, and counted each row twice."""
    return [re.sub(r"([*?\[])", r"[\1]", path) for path in files]
