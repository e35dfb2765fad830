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

Which streams existed at a time is the other half of a reading of the past: the daily views pick each org's primary
stream among those in ``streams``, and a stream registered later (the default costs stream added beside a filtered
one) took over readings of a time it did not exist at. Migration ``0014_stream_registration`` adds
``streams.registered_at`` (the time of the registration) and ``registered_seq`` (a number of ``revisions_seq``,
drawn under the same lock as the log's writes, so a close's high-water mark tells the streams it saw). A stream a
store held before that migration gets, for both, the earliest the store knows of it (its first entry in either log,
or its last run if earlier): nothing of it was stored before then; one the store knows nothing of keeps none, and
is in every reading, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from usageledger.store._types import to_datetime, to_unix
from usageledger.store.directory import BaseStore  # the Protocol: _base writes the log
from usageledger.store.revisions import log_tables
from usageledger.store.schema import Dialect

__all__ = [
    "LOG",
    "MIGRATION_NAME",
    "REGISTRATION_MIGRATION",
    "Standing",
    "log_sql",
    "migration_statements",
    "registered_after_sql",
    "registration_statements",
    "standing",
]

MIGRATION_NAME: Final = "0012_watermark_log"
LOG: Final = "watermark_log"
REGISTRATION_MIGRATION: Final = "0014_stream_registration"

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


def registration_statements(dialect: Dialect, existing: Mapping[str, Sequence[str]]) -> list[str]:
    """Migration ``0014_stream_registration``: when each stream was registered, and where the log's sequence stood;
    for the streams a store already holds, the earliest it knows of each (see the module's text)."""
    have = existing.get("streams", ())
    columns = {"registered_at": "TIMESTAMPTZ", "registered_seq": "BIGINT"}
    out = [f"ALTER TABLE streams ADD COLUMN {n} {t}" for n, t in columns.items() if n not in have]
    out.append("UPDATE streams SET registered_at = last_run_at WHERE registered_at IS NULL")
    logs = [t for t in (*log_tables(), LOG) if t in existing]
    if logs:
        union = " UNION ALL ".join(f"SELECT org, stream, seen_at, seq FROM {t}" for t in logs)
        out.append(
            "UPDATE streams SET registered_seq = e.seq, registered_at = CASE WHEN streams.registered_at IS NULL"
            " OR e.seen < streams.registered_at THEN e.seen ELSE streams.registered_at END"
            f" FROM (SELECT org, stream, MIN(seen_at) AS seen, MIN(seq) AS seq FROM ({union}) AS u"
            " GROUP BY org, stream) AS e WHERE streams.org = e.org AND streams.stream = e.stream"
            " AND streams.registered_seq IS NULL"
        )
    return out


def registered_after_sql(table: str, seq: int | None) -> str:
    """A ``SELECT org, stream`` of the streams of ``table`` (a copy of ``streams``) registered after a reading.
    Placeholders: the reading's time, and with ``seq`` (a close's mark) that number first, which decides where it is
    known (a stream from before migration 0014 may know only a time, or nothing: then it is not after)."""
    if seq is None:
        return f"SELECT org, stream FROM {table} WHERE registered_at > %s"
    return (
        f"SELECT org, stream FROM {table} WHERE registered_seq > %s OR (registered_seq IS NULL AND registered_at > %s)"
    )


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
