"""Test-only launcher: run the `usageledger` CLI with the write path wrapped to SIGKILL itself at a chosen point.

Production code has no test hooks; this script wraps it from the outside before handing over to the CLI:

* ``request``: after the n-th HTTP response's headers arrived, before its body is read (mid-request);
* ``write``: right after the n-th data statement (INSERT/UPDATE/DELETE on an endpoint table, or the append to the
  revision log) ran, mid-transaction;
* ``watermark``: right after the n-th ``UPDATE streams SET watermark`` ran, before its transaction commits;
* ``commit``: right after the n-th batch transaction committed, before the engine records it.

``KILL_PHASE`` and ``KILL_AT`` (1-based) choose the point; without them the run is not killed. ``KILL_COUNTS``
names a file where a run that exits normally writes how many events of each phase it saw (JSON).

Usage: ``python tests/kill_launcher.py sync --store ... [usageledger arguments]``.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from usageledger.store import _base
from usageledger.store.duckdb import DuckDBStore
from usageledger.store.postgres import PostgresStore

PHASES = ("request", "write", "watermark", "commit")
_counts = dict.fromkeys(PHASES, 0)
_phase = os.environ.get("KILL_PHASE")
_at = int(os.environ.get("KILL_AT", "0"))


def _hit(phase: str) -> None:
    _counts[phase] += 1
    if phase == _phase and _counts[phase] == _at:
        os.kill(os.getpid(), signal.SIGKILL)


_send = httpx.AsyncHTTPTransport.handle_async_request


async def _request(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
    response = await _send(self, request)
    _hit("request")
    return response


def _statement_kind(sql: str) -> str | None:
    head = sql.lstrip().upper()
    if head.startswith("UPDATE STREAMS SET WATERMARK"):
        return "watermark"
    for verb in ("INSERT INTO ", "UPDATE ", "DELETE FROM "):
        if head.startswith(verb):
            table = head[len(verb) :].split()[0].lower()
            endpoint = table == "costs" or table.startswith("usage_")
            return "write" if endpoint or table.startswith("revisions") else None
    return None


def _wrap_execute(cls: Any) -> None:
    original = cls.execute

    def execute(self: Any, sql: str, params: Sequence[Any] = ()) -> int:
        changed: int = original(self, sql, params)
        kind = _statement_kind(sql)
        if kind is not None:
            _hit(kind)
        return changed

    cls.execute = execute


_commit_windows = _base.BaseStore.commit_windows


def _commit(self: _base.BaseStore, writes: Sequence[Any]) -> list[_base.UpsertCounts]:
    counts = _commit_windows(self, writes)
    _hit("commit")
    return counts


def _write_counts() -> None:
    target = os.environ.get("KILL_COUNTS")
    if target:
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(_counts, fh)


def main(argv: Sequence[str]) -> None:
    httpx.AsyncHTTPTransport.handle_async_request = _request  # type: ignore[method-assign]
    _wrap_execute(DuckDBStore)
    _wrap_execute(PostgresStore)
    _base.BaseStore.commit_windows = _commit  # type: ignore[method-assign]
    atexit.register(_write_counts)
    from usageledger.cli import main as cli_main

    sys.argv = ["usageledger", *argv]
    cli_main()


if __name__ == "__main__":
    main(sys.argv[1:])
