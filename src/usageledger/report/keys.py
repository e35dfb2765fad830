"""Every API key of the store's orgs: who owns it, which project it serves, when it was last used, what it cost.

The keys are the directory's project and admin keys (deleted ones keep their last version, marked ``deleted``)
plus every ``api_key_id`` that usage or costs name but the directory does not list (``deleted`` when the org's
directory was read, ``unknown`` when it never was). For each key:

* **owner**: the user (name and email) or service account named by the key; *removed* when that user is no longer
  an active member of the key's project (project keys) or of the organisation (admin keys), or that service account
  no longer in its project;
* **created**: the directory's ``created_at``;
* **last used**: the newer of the directory's ``last_used_at`` and the start of the newest usage or costs bucket
  that names the key (any stream grouped by ``api_key_id``, any time);
* **spend** over the period: one unfiltered costs stream grouped by ``api_key_id`` per org; **requests**: the
  ``num_model_requests`` of one unfiltered usage stream grouped by ``api_key_id`` per model endpoint and org (web
  and file search calls are tool calls inside those requests, so they are not added). Daily streams are preferred,
  then hourly, then by minute, then the smallest stream id. Without such a stream the figure is unknown (``None``).

Flags, on keys that still exist: **unused** (no use for longer than ``unused_after``; a key never used counts from
its creation), **owner removed**, and **admin key too old** (an admin key created longer than ``admin_max_age``
ago). ``check --stale-keys`` raises one alert per flagged key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

from usageledger import catalogue
from usageledger._text import counted, one_line
from usageledger.errors import UsageLedgerError
from usageledger.report.folding import RowLimit
from usageledger.report.formatting import format_count, format_money
from usageledger.report.queries import Database
from usageledger.rows import iso_currency
from usageledger.store import table_for
from usageledger.store._base import check_orgs
from usageledger.store.directory import LISTED_LAST
from usageledger.timeutil import parse_duration, span_text, utc_moment

__all__ = [
    "FlagCode",
    "KeyFlag",
    "KeyInfo",
    "KeyOwner",
    "KeyRules",
    "KeysReport",
    "build_keys",
    "key_directory",
    "listed_keys",
    "no_key_line",
]

KeyKind = Literal["project", "admin"]
FlagCode = Literal["unused", "owner_removed", "admin_age"]

_KEY_KINDS: Final[Mapping[str, KeyKind]] = {"project_api_key": "project", "admin_api_key": "admin"}
_WIDTH_ORDER: Final = ("1d", "1h", "1m")
REQUESTS: Final = "num_model_requests"
KEYED_ENDPOINTS: Final = tuple(e for e in catalogue.ENDPOINTS if "api_key_id" in e.group_by)
"""Every endpoint whose rows can name an API key: where a key's last use is looked for."""
REQUEST_ENDPOINTS: Final = tuple(
    e
    for e in KEYED_ENDPOINTS
    if e.name != "costs"
    and REQUESTS in {m.name for m in e.additive_metrics}
    and "num_requests" not in {m.name for m in e.additive_metrics}
)
"""The model endpoints whose ``num_model_requests`` are a key's requests (tool-call endpoints are not added)."""
COSTS: Final = catalogue.get("costs")

_StreamRow = tuple[str, str, str, str, tuple[str, ...], str]
"""A row of the ``streams`` table: org, stream id, endpoint, bucket width, group_by, filters (JSON)."""


KEY_SPAN_MINIMUM: Final = 86_400
"""The shortest staleness span: a key's last use is known to the day (usage buckets), so ``0d`` (which flagged every
key, "limit 0:00:00") or ``6h`` cannot be judged."""


def key_span(value: str, param: str) -> timedelta:
    """A staleness span a user gave (``30d``, ``12w``): a bare number, a negative span or one under a day is a
    one-line :class:`~usageledger.errors.ParameterError` naming ``param`` (``keys --unused-after``,
    ``--admin-max-age``, ``check --stale-keys``)."""
    return timedelta(seconds=parse_duration(value, param=param, minimum=KEY_SPAN_MINIMUM))


def _limit(span: timedelta) -> str:
    seconds = span.total_seconds()
    return counted(span.days, "day") if seconds % KEY_SPAN_MINIMUM == 0 else span_text(seconds)


@dataclass(frozen=True, slots=True)
class KeyRules:
    """When a key is flagged: unused for longer than ``unused_after``, an admin key older than ``admin_max_age``
    (None switches a rule off). An owner who was removed is always flagged."""

    unused_after: timedelta | None = timedelta(days=30)
    admin_max_age: timedelta | None = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class KeyFlag:
    code: FlagCode
    message: str


@dataclass(frozen=True, slots=True)
class KeyOwner:
    type: str | None
    """``user`` or ``service_account``."""
    id: str | None
    name: str | None
    email: str | None
    removed: bool


@dataclass(frozen=True, slots=True)
class KeyInfo:
    org: str
    id: str
    kind: KeyKind
    name: str | None
    status: str
    """``active``, ``deleted`` (the directory no longer lists it) or ``unknown`` (no directory was read)."""
    owner: KeyOwner | None
    project_id: str | None
    project_name: str | None
    project_status: str | None
    created: datetime | None
    last_used: datetime | None
    spend: Decimal | None
    """None when no costs stream of the org groups by ``api_key_id``."""
    requests: int | None
    """None when no usage stream of the org groups by ``api_key_id``."""
    flags: tuple[KeyFlag, ...] = ()

    @property
    def label(self) -> str:
        """The key's name (or ID), marked when it no longer exists."""
        shown = one_line(self.name or self.id)  # a name the API sent with a newline still flags on one line
        return shown if self.status == "active" else f"{shown} ({self.status})"


@dataclass(frozen=True, slots=True)
class KeysReport:
    start: datetime
    end: datetime
    rules: KeyRules
    currency: str | None
    spend_streams: tuple[str, ...]
    """``org/stream`` of every costs stream the spend comes from."""
    request_streams: tuple[str, ...]
    keys: tuple[KeyInfo, ...]
    no_key_spend: Decimal | None = None
    """Spend of the period that the spend streams give no key for (storage, sessions: costs made through no key), so
    that the keys' spend and this add up to those streams' costs, the report's total; None without such a stream."""
    no_key_requests: int | None = None
    """Requests the request streams give no key for; None without such a stream."""
    project: str | None = None
    """The one project (an ID) the keys, their spend and requests and the figures through no key are of; None: all."""

    @property
    def flagged(self) -> tuple[KeyInfo, ...]:
        return tuple(k for k in self.keys if k.flags)


_NEVER: Final = datetime.min.replace(tzinfo=UTC)


def _size(key: KeyInfo) -> tuple[Decimal, datetime]:
    """How a key ranks for a table that cannot list every key: its spend (unknown counts as none), then its last use."""
    return (key.spend or Decimal(0), key.last_used or _NEVER)


def listed_keys(data: KeysReport, rows: RowLimit) -> tuple[tuple[KeyInfo, ...], tuple[KeyInfo, ...]]:
    """The keys a table lists and the ones it does not, each in the report's order: every flagged key (what the
    table is read for), and of the others the ``rows`` biggest: the most spend first, then the most recently used
    (spend unknown, or equal); among equals, the first in the report's order (:mod:`usageledger.report.folding`)."""
    others = sorted((k for k in data.keys if not k.flags), key=_size, reverse=True)  # stable: equals keep their order
    left = {(k.org, k.id) for k in rows.split(others)[1]}
    if not left:
        return data.keys, ()
    return (
        tuple(k for k in data.keys if (k.org, k.id) not in left),
        tuple(k for k in data.keys if (k.org, k.id) in left),
    )


# -- the directory ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class DirectoryKey:
    """A key as the directory last saw it."""

    kind: KeyKind
    project_id: str | None
    name: str | None
    status: str
    owner_type: str | None
    owner_id: str | None
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class KeyDirectory:
    """What the directory knows about an org's keys and the people and projects they point at (latest versions)."""

    keys: dict[str, DirectoryKey] = field(default_factory=dict)
    present: set[tuple[str, str, str]] = field(default_factory=set)
    """``(kind, scope, id)`` of every user, project user and service account listed in the latest read."""
    people: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    """``{user or service account id: (name, email)}``, latest version."""
    projects: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    """``{project id: (name, status)}``."""


def key_directory(db: Database, org: str | None) -> dict[str, KeyDirectory]:
    """The directory of keys, people and projects per org, from the latest version of each item.

    The one place this module reads names from the store (``report/names.py`` may take its place)."""
    kinds = ("project_api_key", "admin_api_key", "user", "project_user", "project_service_account", "project")
    where = "" if org is None else " AND org = %s"
    rows = db.query(
        "SELECT org, kind, scope, id, name, email, status, owner_type, owner_id, record FROM directory_versions "
        f"WHERE kind IN ({', '.join(['%s'] * len(kinds))}){where} ORDER BY valid_from, {LISTED_LAST}",
        [*kinds, *([] if org is None else [org])],
    )
    out: dict[str, KeyDirectory] = {}
    for o, kind, scope, id_, name, email, status, owner_type, owner_id, record in rows:
        d = out.setdefault(o, KeyDirectory())
        gone = status == "deleted"
        if kind in _KEY_KINDS:
            old = d.keys.get(id_)
            parsed = json.loads(record) if record and record != "{}" else None
            d.keys[id_] = DirectoryKey(
                kind=_KEY_KINDS[kind],
                project_id=scope or None,
                name=name,
                status="deleted" if gone else "active",
                owner_type=owner_type,
                owner_id=owner_id,
                record=parsed if isinstance(parsed, dict) else (old.record if old is not None else {}),
            )
        elif kind == "project":
            d.projects[id_] = (name, status)
        else:
            d.people[id_] = (name, email)
            item = (kind, scope, id_)
            if gone:
                d.present.discard(item)
            else:
                d.present.add(item)
    return out


def _owner(d: KeyDirectory, k: DirectoryKey) -> KeyOwner | None:
    if k.owner_id is None:
        return None
    name, email = d.people.get(k.owner_id, (None, None))
    raw = k.record.get("owner")
    if isinstance(raw, dict):  # the key's own copy of its owner, for an owner the directory no longer lists
        inner = raw.get(k.owner_type or "", raw)
        if isinstance(inner, dict):
            name = name or inner.get("name")
            email = email or inner.get("email")
    scope = k.project_id or ""
    if k.owner_type == "service_account":
        removed = ("project_service_account", scope, k.owner_id) not in d.present
    elif k.kind == "project":
        removed = ("project_user", scope, k.owner_id) not in d.present or ("user", "", k.owner_id) not in d.present
    else:
        removed = ("user", "", k.owner_id) not in d.present
    return KeyOwner(k.owner_type, k.owner_id, name, email, removed)


# -- usage and costs ----------------------------------------------------------------------------------------------


def _streams(db: Database, org: str | None) -> list[_StreamRow]:
    where = "" if org is None else " WHERE org = %s"
    rows = db.query(
        f"SELECT org, stream, endpoint, bucket_width, group_by, filters FROM streams{where}",
        [] if org is None else [org],
    )
    return [(o, s, e, w, tuple(g.split(",")) if g else (), f) for o, s, e, w, g, f in rows]


def _keyed(streams: Iterable[_StreamRow], endpoint: str) -> list[tuple[str, str]]:
    """``(org, stream)`` of every stream of ``endpoint`` grouped by ``api_key_id``."""
    return [(o, s) for o, s, e, _, g, _ in streams if e == endpoint and "api_key_id" in g]


def _chosen(streams: Iterable[_StreamRow], endpoint: str, *, by_project: bool = False) -> dict[str, str]:
    """Per org, the one stream of ``endpoint`` whose sums count every request once (see the module docstring);
    ``by_project``: only a stream that also groups by ``project_id`` (else no one project's share can be read)."""
    best: dict[str, tuple[int, str]] = {}
    for o, s, e, w, g, f in streams:
        if e != endpoint or "api_key_id" not in g or f not in ("", "{}") or w not in _WIDTH_ORDER:
            continue
        if by_project and "project_id" not in g:
            continue
        rank = (_WIDTH_ORDER.index(w), s)
        if o not in best or rank < best[o]:
            best[o] = rank
    return {o: s for o, (_, s) in best.items()}


def _in_streams(pairs: Sequence[tuple[str, str]]) -> tuple[str, list[object]]:
    sql = " OR ".join("(org = %s AND stream = %s)" for _ in pairs)
    return f"({sql})", [v for pair in pairs for v in pair]


def _sums(
    db: Database,
    table: str,
    metric: str,
    chosen: Mapping[str, str],
    start: datetime,
    end: datetime,
    *,
    currency: bool,
    project: str | None = None,
) -> list[tuple[Any, ...]]:
    if not chosen:
        return []
    where, params = _in_streams(sorted(chosen.items()))
    if project is not None:
        where, params = f"{where} AND project_id = %s", [*params, project]
    cur = "currency" if currency else "NULL"
    return db.query(
        f"SELECT org, api_key_id, {cur}, SUM({metric}) FROM {table} WHERE {where} AND bucket_start >= %s "
        "AND bucket_start < %s GROUP BY 1, 2, 3",
        [*params, start, end],
    )


def _last_seen(db: Database, streams: Sequence[_StreamRow]) -> dict[tuple[str, str], tuple[datetime, str | None]]:
    """``{(org, key): (newest bucket start, a project it served)}`` over every stream grouped by ``api_key_id``."""
    out: dict[tuple[str, str], tuple[datetime, str | None]] = {}
    for ep in KEYED_ENDPOINTS:
        pairs = _keyed(streams, ep.name)
        if not pairs:
            continue
        where, params = _in_streams(pairs)
        for o, key, newest, project in db.query(
            f"SELECT org, api_key_id, MAX(bucket_start), MAX(project_id) FROM {table_for(ep).name} "
            f"WHERE {where} AND api_key_id IS NOT NULL GROUP BY 1, 2",
            params,
        ):
            seen = newest.astimezone(UTC)
            old = out.get((o, key))
            if old is None or seen > old[0]:
                out[(o, key)] = (seen, project or (old[1] if old else None))
    return out


# -- putting it together ------------------------------------------------------------------------------------------


def _when(value: object) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) and not isinstance(value, bool) else None


def _age(now: datetime, then: datetime) -> str:
    return f"{max((now - then).days, 0)} days"


def _flags(key: KeyInfo, rules: KeyRules, now: datetime) -> tuple[KeyFlag, ...]:
    if key.status != "active":
        return ()
    flags: list[KeyFlag] = []
    if rules.unused_after is not None:
        limit = _limit(rules.unused_after)
        if key.last_used is not None and now - key.last_used > rules.unused_after:
            text = f"unused for {_age(now, key.last_used)} (last used {key.last_used:%Y-%m-%d}; limit {limit})"
            flags.append(KeyFlag("unused", text))
        elif key.last_used is None and key.created is not None and now - key.created > rules.unused_after:
            text = f"never used in {_age(now, key.created)} since it was created on {key.created:%Y-%m-%d}"
            flags.append(KeyFlag("unused", f"{text} (limit {limit})"))
    if key.owner is not None and key.owner.removed:
        flags.append(KeyFlag("owner_removed", f"its owner {key.owner.name or key.owner.id} was removed"))
    if (
        key.kind == "admin"
        and rules.admin_max_age is not None
        and key.created is not None
        and now - key.created > rules.admin_max_age
    ):
        flags.append(
            KeyFlag(
                "admin_age",
                f"admin key created {_age(now, key.created)} ago (limit {_limit(rules.admin_max_age)}); rotate it",
            )
        )
    return tuple(flags)


def build_keys(
    db: Database,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    org: str | None = None,
    rules: KeyRules = KeyRules(),
    project: str | None = None,
) -> KeysReport:
    """Every key of the store (of ``org``), with spend and requests over ``[start, end)`` and flags as of ``now``.

    ``project`` (an ID; resolve a name with :func:`usageledger.report.assemble.project_named`): only that project's
    keys, and spend, requests and the figures through no key within it (read from streams grouped by ``project_id``
    too; an org without one has them unknown), so its keys and what went through none add up to its costs."""
    check_orgs(db, org, param="org")  # an org the store does not hold answered "no keys"
    # a naive datetime was a TypeError against the store's aware ones, and "30d" was kept as the report's start
    start, end, now = (utc_moment(value, param=name) for name, value in (("start", start), ("end", end), ("now", now)))
    directory = key_directory(db, org)
    streams = _streams(db, org)
    by_project = project is not None
    spend_from = _chosen(streams, COSTS.name, by_project=by_project)
    # a row without a key (spend made through none: storage, sessions) is summed apart, so the keys and it add up
    spend: dict[tuple[str, str | None], Decimal] = {}
    currencies: set[str] = set()
    costs_table = table_for(COSTS).name
    for o, key, cur, amount in _sums(
        db, costs_table, "amount_value", spend_from, start, end, currency=True, project=project
    ):
        spend[(o, key)] = spend.get((o, key), Decimal(0)) + Decimal(amount or 0)
        if cur is not None:
            currencies.add(iso_currency(cur))
    if len(currencies) > 1:
        raise UsageLedgerError(
            f"the costs in this period are in several currencies ({', '.join(sorted(currencies))}); "
            "spend per key is summed only within one currency"
        )
    requests: dict[tuple[str, str | None], int] = {}
    request_from: dict[str, set[str]] = {}
    request_streams: list[str] = []
    for ep in REQUEST_ENDPOINTS:
        chosen = _chosen(streams, ep.name, by_project=by_project)
        for o, s in chosen.items():
            request_from.setdefault(o, set()).add(s)
            request_streams.append(f"{o}/{s}")
        for o, key, _, count in _sums(
            db, table_for(ep).name, REQUESTS, chosen, start, end, currency=False, project=project
        ):
            requests[(o, key)] = requests.get((o, key), 0) + int(count or 0)
    seen = _last_seen(db, streams)

    keys: list[KeyInfo] = []
    ids = {(o, k) for o, d in directory.items() for k in d.keys} | set(seen)
    for o, key_id in ids:
        d = directory.get(o, KeyDirectory())
        known = d.keys.get(key_id)
        used, used_project = seen.get((o, key_id), (None, None))
        listed_use = _when(known.record.get("last_used_at")) if known is not None else None
        last_used = max((t for t in (listed_use, used) if t is not None), default=None)
        project_id = known.project_id if known is not None else used_project
        project_name, project_status = d.projects.get(project_id, (None, None)) if project_id else (None, None)
        kind: KeyKind = known.kind if known is not None else "project"
        info = KeyInfo(
            org=o,
            id=key_id,
            kind=kind,
            name=known.name if known is not None else None,
            status=known.status if known is not None else ("deleted" if o in directory else "unknown"),
            owner=_owner(d, known) if known is not None else None,
            project_id=project_id,
            project_name=project_name,
            project_status=project_status,
            created=_when(known.record.get("created_at")) if known is not None else None,
            last_used=last_used,
            spend=(spend.get((o, key_id), Decimal(0)) if o in spend_from else None) if kind == "project" else None,
            requests=(requests.get((o, key_id), 0) if o in request_from else None) if kind == "project" else None,
        )
        if project is not None and project_id != project and (o, key_id) not in spend and (o, key_id) not in requests:
            continue  # another project's key (one that served this project too is kept: its share is counted)
        keys.append(replace(info, flags=_flags(info, rules, now)))
    keys.sort(
        key=lambda k: (
            k.org,
            k.kind == "admin",
            k.status != "active",
            k.project_name or k.project_id or "",
            k.name or "",
            k.id,
        )
    )
    return KeysReport(
        start=start,
        end=end,
        rules=rules,
        currency=next(iter(currencies), None),
        spend_streams=tuple(f"{o}/{s}" for o, s in sorted(spend_from.items())),
        request_streams=tuple(sorted(request_streams)),
        keys=tuple(keys),
        no_key_spend=sum((v for (_, k), v in spend.items() if k is None), Decimal(0)) if spend_from else None,
        no_key_requests=sum(v for (_, k), v in requests.items() if k is None) if request_from else None,
        project=project,
    )


def no_key_line(data: KeysReport) -> str | None:
    """What the streams give no key for (spend on storage or sessions, made through no key), which the keys' rows
    leave out: with it, their spend adds up to the period's costs (or to the costs of the orgs with a costs stream
    grouped by key, named, when some org has none), or the project's when the report is of one. None when nothing
    is without a key. The one wording of ``keys`` and the dashboard's project drill-down."""
    parts: list[str] = []
    if data.no_key_spend:
        parts.append(f"{format_money(data.no_key_spend, data.currency)} of spend")
    if data.no_key_requests:
        parts.append(f"{format_count(data.no_key_requests)} requests")
    if not parts:
        return None
    line = f"Through no API key (storage, sessions and other use the API gives no key for): {' and '.join(parts)}"
    if data.no_key_spend is None:
        return line + "."
    total = sum((k.spend for k in data.keys if k.spend is not None), data.no_key_spend)
    # the period's costs only when every org's costs are grouped by key; else the orgs whose costs they are
    covered = sorted({stream.rpartition("/")[0] for stream in data.spend_streams})
    left = sorted({k.org for k in data.keys} - set(covered))
    if data.project is None:
        costs, grouped, of = "the period's costs", "by key", "the costs of"
    else:  # only a stream grouped by project and key gives a project's share (_chosen's by_project)
        costs, grouped, of = "the project's costs in the period", "by project and key", "the project's costs in"
    whose = f"{of} {', '.join(covered)} (no costs stream of {', '.join(left)} groups {grouped})" if left else costs
    return f"{line}; with it the keys' spend adds up to {format_money(total, data.currency)}, {whose}."
