"""The watermark log: where each stream's watermark stood at any time, for readings of the past (``--as-of``).

``watermark_log`` (migration ``0012_watermark_log``) gets one line each time a commit moves a stream's watermark:
the org, the stream, the new watermark, the sync run, the time the run read its windows (``seen_at``, the
``synced_at`` of the rows it wrote, as the revision log's entries have it) and ``seq``, drawn from the revision log's
own sequence (``revisions_seq``), so that a close's high-water mark (``closes``) tells the moves it saw from the
later ones as it tells the log's entries. One ``INSERT ... SELECT FROM (VALUES ...)`` per commit, for every stream
whose watermark the commit moved (:func:`log_sql`), in the commit's transaction.

A store migrated from before the log gets a *baseline*: per stream with a watermark, one line (run
``0012_watermark_log``) with that watermark, seen at the latest time the store knew anything of the stream (its last
run, its last logged row, the watermark itself). Where a stream stood before its baseline is not known: a reading
of an earlier time (:func:`standing`) says so, and :mod:`usageledger.store.history` falls back to the rule used
before the log (the latest the watermark can have stood then). A stream without a baseline line had no watermark
when the log began, so the log knows all of its watermarks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from usageledger.store._types import to_datetime, to_unix
from usageledger.store.directory import BaseStore  # the Protocol: _base writes the log
from usageledger.store.revisions import log_tables
from usageledger.store.schema import Dialect

__all__ = ["LOG", "MIGRATION_NAME", "Standing", "log_sql", "migration_statements", "standing"]

MIGRATION_NAME: Final = "0012_watermark_log"
LOG: Final = "watermark_log"

_COLUMNS: Final = "seq, org, stream, watermark, run_id, seen_at"


def migration_statements(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """Migration ``0012_watermark_log``: the table, and the baseline of the watermarks a store already holds."""
    logs = [t for t in log_tables() if t in existing]
    union = " UNION ALL ".join(f"SELECT org, stream, seen_at FROM {t}" for t in logs)
    last_seen = (
        f"SELECT org, stream, MAX(seen_at) AS seen FROM ({union}) AS e GROUP BY org, stream"
        if logs
        else "SELECT CAST(NULL AS TEXT) AS org, CAST(NULL AS TEXT) AS stream, CAST(NULL AS TIMESTAMPTZ) AS seen"
    )
    return [
        f"""CREATE TABLE IF NOT EXISTS {LOG} (
  seq BIGINT NOT NULL,
  org TEXT NOT NULL,
  stream TEXT NOT NULL,
  watermark TIMESTAMPTZ NOT NULL,
  run_id TEXT NOT NULL,
  seen_at TIMESTAMPTZ NOT NULL
)""",
        f"INSERT INTO {LOG} ({_COLUMNS}) SELECT nextval('revisions_seq'), s.org, s.stream, s.watermark,"
        f" '{MIGRATION_NAME}', GREATEST(s.watermark, COALESCE(s.last_run_at, s.watermark),"
        f" COALESCE(l.seen, s.watermark)) FROM streams AS s LEFT JOIN ({last_seen}) AS l"
        " ON l.org = s.org AND l.stream = s.stream WHERE s.watermark IS NOT NULL",
    ]


def log_sql(moves: int) -> str:
    """Log ``moves`` watermark moves in one statement. Placeholders, per move: org, stream, the new watermark, the
    run id, seen at. Each line takes the next number of ``revisions_seq``."""
    row = "(CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS TIMESTAMPTZ), CAST(%s AS TEXT), CAST(%s AS TIMESTAMPTZ))"
    return (
        f"INSERT INTO {LOG} ({_COLUMNS}) SELECT nextval('revisions_seq'), v.org, v.stream, v.mark, v.run, v.seen"
        f" FROM (VALUES {', '.join([row] * moves)}) AS v(org, stream, mark, run, seen)"
    )


@dataclass(frozen=True, slots=True)
class Standing:
    """Where the log puts each stream's watermark at one reading (a time, or a close's high-water mark)."""

    logged: Mapping[tuple[str, str], int]
    """``{(org, stream): watermark}`` of the streams the log knows at the reading and that had a watermark then."""
    before_log: Mapping[tuple[str, str], tuple[int, int]]
    """``{(org, stream): (watermark, since)}`` of the streams whose log began after the reading (their baseline
    line: the watermark they held when the store was upgraded, and the time from which the log knows them)."""


def standing(store: BaseStore, when: int, seq: int | None = None) -> Standing:
    """Each stream's watermark at ``when`` (with ``seq``: when the log's sequence stood there, as a close reads)."""
    upto, bound = ("seen_at <= %s", to_datetime(when)) if seq is None else ("seq <= %s", seq)
    rows = store.query(
        f"SELECT org, stream, watermark FROM (SELECT org, stream, watermark, ROW_NUMBER() OVER"
        f" (PARTITION BY org, stream ORDER BY seq DESC) AS rn FROM {LOG} WHERE {upto}) AS x WHERE rn = 1",
        [bound],
    )
    logged: dict[tuple[str, str], int] = {}
    for org, stream, mark in rows:
        logged[(org, stream)] = _unix(mark)
    later = "seen_at > %s" if seq is None else "seq > %s"
    baselines = store.query(
        f"SELECT org, stream, watermark, seen_at FROM {LOG} WHERE run_id = %s AND {later}", [MIGRATION_NAME, bound]
    )
    before = {(org, stream): (_unix(mark), _unix(seen)) for org, stream, mark, seen in baselines}
    return Standing(logged, before)


def _unix(value: Any) -> int:
    out = to_unix(value)
    assert out is not None  # the log's columns are NOT NULL
    return out
