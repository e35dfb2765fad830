"""Prometheus metrics from the store: spend, tokens and requests of the month to date and of today, and how fresh
each stream is.

Every figure is read from the store (never from the API), on each scrape, by :func:`render_metrics`: one query over
``costs_daily``, one over the token-metered usage views and one over ``streams`` and ``sync_runs``. Period figures
are **gauges**, never counters: a restated bucket can lower a month's spend, and a gauge says so where a counter
would have to clamp or reset. The metrics (names follow Prometheus: base units, ``_usd`` for money, ``_seconds``
for times):

- ``usageledger_month_to_date_cost_usd`` and ``usageledger_today_cost_usd``
  ``{org, project_id, project_name, model, line_item}``: spend in USD from the first UTC day of the current month
  (or today, UTC) through now. Costs in another currency are left out (the name says USD). ``model`` is parsed from
  the line item (``"gpt-4o, input"``), empty for line items without one.
- Every group that spent this month or last has a series in each period family, at 0 where the period has none of
  its spend: on the 1st at 00:00 UTC (and at each midnight, for ``today``) the series stay, reading 0, where they
  had vanished and left Grafana's panels without data.
- ``usageledger_month_to_date_tokens`` and ``usageledger_today_tokens``
  ``{org, project_id, project_name, model, direction}`` (``direction`` is ``input`` or ``output``), and
  ``usageledger_month_to_date_requests`` / ``usageledger_today_requests`` ``{org, project_id, project_name,
  model}``: from the token-metered usage endpoints, as the report counts them.
- ``usageledger_last_sync_timestamp_seconds{org, stream}``: when the stream's last sync run ended (any outcome);
  ``usageledger_data_until_timestamp_seconds{org, stream}``: the stream's watermark, the end of the data read in
  full (only a successful read moves it, so ``time() - usageledger_data_until_timestamp_seconds`` is the staleness
  to alert on); ``usageledger_sync_errors{org, stream}``: 1 when the stream's last run ended in an error (failed,
  interrupted, abandoned), else 0.
- ``usageledger_sync_runs{status}``: how many sync runs the store records, by status.
- ``usageledger_metrics_series``: the series on the page, this one included (:data:`SERIES_METRIC`).

Synthetic data is never added to real spend: a store an older demo left mixed (the demo's synthetic org beside a
real one, see :func:`usageledger.sync._safety.mixed_data`) has its synthetic orgs left out of the spend, token and
request figures (``report`` adds them with a warning on stderr; a scrape has no one to warn, and Prometheus and the
Grafana dashboard sum across orgs). Their streams' sync figures stay. A store of synthetic orgs only (the demo's)
shows them.

Cardinality: ``labels`` (``--metrics-labels``) keeps some of ``org``, ``project`` (``project_id`` and
``project_name`` together), ``model`` and ``line_item``; a dropped label is summed away, so every total is
unchanged. ``direction``, ``stream`` and ``status`` always stay: they are part of what a series means. A big org
(300 projects: some 15,000 series a cost metric, 43,600 in all) weighs on the Prometheus that scrapes it: the
labels stay as chosen, but :func:`metrics_endpoint` says once, past :data:`SERIES_BOUND` series, which choice brings
the page under it and to how many (:meth:`MetricsPage.too_many`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import combinations
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from usageledger._text import one_line
from usageledger.errors import ParameterError, UsageLedgerError
from usageledger.report.names import Names, resolve_names
from usageledger.report.queries import COSTS_VIEW, LINE_ITEM_MODEL, Period, Scope, day_start, token_usage_sql
from usageledger.store import BaseStore
from usageledger.timeutil import utc_moment

__all__ = [
    "DEFAULT_METRICS_LABELS",
    "METRICS_LABELS",
    "METRIC_NAMES",
    "SERIES_BOUND",
    "SERIES_METRIC",
    "MetricsPage",
    "metrics_endpoint",
    "parse_metrics_labels",
    "render_metrics",
    "scrape_metrics",
    "wants_openmetrics",
]

METRICS_LABELS: Final = ("org", "project", "model", "line_item")
"""The labels ``--metrics-labels`` can keep (``project`` is ``project_id`` and ``project_name``)."""
DEFAULT_METRICS_LABELS: Final = frozenset(METRICS_LABELS)
CURRENCY: Final = "usd"
"""The only currency the ``_usd`` metrics sum."""
_ERROR_STATUSES: Final = frozenset({"failed", "interrupted", "abandoned"})

SERIES_METRIC: Final = "usageledger_metrics_series"
"""The page's own gauge: how many series it holds (a Prometheus counts the samples it scraped too, as
``scrape_samples_scraped``; this one is on the page, for a look with curl and for the line ``serve`` says)."""
SERIES_BOUND: Final = 10_000
"""Series past which ``serve`` says, once, that a scrape is heavy and which ``--metrics-labels`` lightens it."""

METRIC_NAMES: Final = (
    "usageledger_month_to_date_cost_usd",
    "usageledger_today_cost_usd",
    "usageledger_month_to_date_tokens",
    "usageledger_today_tokens",
    "usageledger_month_to_date_requests",
    "usageledger_today_requests",
    "usageledger_last_sync_timestamp_seconds",
    "usageledger_data_until_timestamp_seconds",
    "usageledger_sync_errors",
    "usageledger_sync_runs",
    SERIES_METRIC,
)
"""Every metric :func:`render_metrics` can emit (the Grafana dashboard may use these and no others)."""


def parse_metrics_labels(value: str) -> frozenset[str]:
    """``"project,model"`` -> the labels to keep; anything else is a one-line ``--metrics-labels`` error."""
    parts = [p.strip() for p in value.split(",")]
    chosen = [p for p in parts if p]
    allowed = ", ".join(METRICS_LABELS)
    if not chosen:
        raise ParameterError("--metrics-labels", f"give one or more of {allowed}, separated by commas")
    if len(chosen) != len(parts):  # `org,,model` dropped the empty part silently, as no other list flag does
        raise ParameterError(
            "--metrics-labels", f"{value!r} holds an empty value; give labels of {allowed}, separated by commas"
        )
    unknown = [p for p in chosen if p not in METRICS_LABELS]
    if unknown:
        # the page's own label names, `project_id` and `project_name`, are kept (or dropped) together as `project`
        paired = [p for p in unknown if p in ("project_id", "project_name")]
        also = f" ({' and '.join(paired)}: give project, which keeps project_id and project_name)" if paired else ""
        raise ParameterError("--metrics-labels", f"{', '.join(unknown)} is not a label; choose from {allowed}{also}")
    return frozenset(chosen)


_OPENMETRICS: Final = "application/openmetrics-text"


def _quality(params: Sequence[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return 0.0  # an unreadable weight: not a preference to act on
    return 1.0


def wants_openmetrics(accept: str | None) -> bool:
    """Whether an ``Accept`` header prefers OpenMetrics to the Prometheus text format, by its weights (``q``).

    Prometheus weighs the formats in the order of its ``scrape_protocols``: OpenMetrics first by default, the text
    format first when configured so (``text/plain;version=0.0.4;q=0.6,application/openmetrics-text;...;q=0.5``).
    Any mention of OpenMetrics got it, even weighed below the text format or refused (``q=0``). A tie goes to
    OpenMetrics; the text format's weight is ``text/plain``'s, else ``text/*``'s, else ``*/*``'s."""
    if not accept:
        return False
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = part.split(";")
        media = media.strip().lower()
        if media:
            weights[media] = max(weights.get(media, 0.0), _quality(params))
    openmetrics = weights.get(_OPENMETRICS, 0.0)
    text = next((weights[m] for m in ("text/plain", "text/*", "*/*") if m in weights), 0.0)
    return openmetrics > 0 and openmetrics >= text


@dataclass(frozen=True, slots=True)
class _Shape:
    """Which label columns a figure keeps, in output order."""

    labels: frozenset[str]

    def cost_labels(self) -> list[str]:
        return self._names(("org", "project", "model", "line_item"))

    def usage_labels(self) -> list[str]:
        return self._names(("org", "project", "model"))

    def _names(self, order: Sequence[str]) -> list[str]:
        out: list[str] = []
        for label in order:
            if label in self.labels:
                out += ["project_id", "project_name"] if label == "project" else [label]
        return out


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _month_start(today: date) -> date:
    return today.replace(day=1)


class _Figures(Collector):
    """A collector over metric families already read from the store (one registry per scrape)."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def _add(sums: dict[tuple[str, ...], Decimal], key: tuple[str, ...], value: object) -> None:
    if value is None:
        return
    sums[key] = sums.get(key, Decimal(0)) + (value if isinstance(value, Decimal) else Decimal(str(value)))


def _seen_since(period: Period) -> date:
    """The first day whose groups get a series: the previous month's first, so that what spent last month or
    earlier this month reads 0 today and on the 1st (month to date), not "no data": a series that vanished at
    00:00 UTC left Grafana's panels empty and a `sum(...)` with no value to compare."""
    return (period.since - timedelta(days=1)).replace(day=1)


def _zero(key: tuple[str, ...], *sums: dict[tuple[str, ...], Decimal]) -> None:
    for one in sums:
        one.setdefault(key, Decimal(0))


def _family(name: str, doc: str, labels: list[str], sums: dict[tuple[str, ...], Decimal]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key in sorted(sums):
        family.add_metric(list(key), float(sums[key]))
    return family


def _project_labels(project: object, names: Names) -> list[str]:
    pid = _text(project)
    return [pid, one_line(names.project(pid)) if pid else ""]


def _left_out(store: BaseStore) -> frozenset[str]:
    """The synthetic orgs of a store that also holds a real one: their figures would be summed with real spend."""
    from usageledger.sync._safety import synthetic_beside_real

    return frozenset(r.org for r in synthetic_beside_real(store))


@dataclass(frozen=True, slots=True)
class _Scrape:
    """What one scrape reads by: the store, the labels it keeps, the names, this month, today's start, and the
    synthetic orgs left out (:func:`_left_out`)."""

    store: BaseStore
    shape: _Shape
    names: Names
    period: Period
    today: datetime
    left_out: frozenset[str]


def _costs(scrape: _Scrape, grain: set[tuple[str, ...]]) -> list[Metric]:
    """The cost families; ``grain`` gets every group's (org, project, model, line item), each a series of both."""
    # Grouped by line item first, the model parsed from the few groups (not from every row).
    rows = scrape.store.query(
        f"SELECT org, project_id, {LINE_ITEM_MODEL} AS model, line_item, this_month, today, amount FROM ("
        "SELECT org, project_id, line_item, bucket_start >= %s AS this_month, bucket_start >= %s AS today, "
        f"SUM(amount_value) AS amount FROM {COSTS_VIEW} WHERE bucket_start >= %s AND bucket_start < %s "
        "AND lower(currency) = %s GROUP BY 1, 2, 3, 4, 5) c",
        [scrape.period.start, scrape.today, day_start(_seen_since(scrape.period)), scrape.period.end, CURRENCY],
    )
    labels = scrape.shape.cost_labels()
    mtd: dict[tuple[str, ...], Decimal] = {}
    day: dict[tuple[str, ...], Decimal] = {}
    for org, project, model, line_item, this_month, is_today, amount in rows:
        if org in scrape.left_out:
            continue
        grain.add((_text(org), _text(project), _text(model), _text(line_item)))
        values = {"org": [_text(org)], "model": [_text(model)], "line_item": [_text(line_item)]}
        values["project"] = _project_labels(project, scrape.names)
        key = tuple(
            v
            for label in ("org", "project", "model", "line_item")
            if label in scrape.shape.labels
            for v in values[label]
        )
        _zero(key, mtd, day)
        if this_month:
            _add(mtd, key, amount)
        if is_today:
            _add(day, key, amount)
    return [
        _family(
            "usageledger_month_to_date_cost_usd", "Spend in USD since the first UTC day of this month.", labels, mtd
        ),
        _family("usageledger_today_cost_usd", "Spend in USD of the current UTC day so far.", labels, day),
    ]


def _usage(scrape: _Scrape, grain: set[tuple[str, ...]]) -> list[Metric]:
    """The token and request families; ``grain`` gets every group's (org, project, model), each a series of the
    four (tokens twice, by direction, and requests) and of both periods."""
    inner, params = token_usage_sql(Scope(), Period(_seen_since(scrape.period), scrape.period.end))
    rows = scrape.store.query(
        "SELECT org, project_id, model, bucket_start >= %s AS this_month, bucket_start >= %s AS today, "
        f"SUM(input_tokens), SUM(output_tokens), SUM(requests) FROM ({inner}) u GROUP BY 1, 2, 3, 4, 5",
        [scrape.period.start, scrape.today, *params],
    )
    labels = scrape.shape.usage_labels()
    tokens: dict[str, dict[tuple[str, ...], Decimal]] = {"mtd": {}, "today": {}}
    requests: dict[str, dict[tuple[str, ...], Decimal]] = {"mtd": {}, "today": {}}
    for org, project, model, this_month, is_today, inp, out, req in rows:
        if org in scrape.left_out:
            continue
        grain.add((_text(org), _text(project), _text(model)))
        values = {"org": [_text(org)], "model": [_text(model)], "project": _project_labels(project, scrape.names)}
        key = tuple(v for label in ("org", "project", "model") if label in scrape.shape.labels for v in values[label])
        _zero((*key, "input"), tokens["mtd"], tokens["today"])
        _zero((*key, "output"), tokens["mtd"], tokens["today"])
        _zero(key, requests["mtd"], requests["today"])
        for which in ("mtd", "today") if is_today else ("mtd",) if this_month else ():
            _add(tokens[which], (*key, "input"), inp)
            _add(tokens[which], (*key, "output"), out)
            _add(requests[which], key, req)
    tlabels = [*labels, "direction"]
    return [
        _family(
            "usageledger_month_to_date_tokens", "Tokens since the first UTC day of this month.", tlabels, tokens["mtd"]
        ),
        _family("usageledger_today_tokens", "Tokens of the current UTC day so far.", tlabels, tokens["today"]),
        _family(
            "usageledger_month_to_date_requests",
            "Model requests since the first UTC day of this month.",
            labels,
            requests["mtd"],
        ),
        _family(
            "usageledger_today_requests", "Model requests of the current UTC day so far.", labels, requests["today"]
        ),
    ]


def _sync(store: BaseStore) -> list[Metric]:
    last = GaugeMetricFamily(
        "usageledger_last_sync_timestamp_seconds",
        "When the stream's last sync run ended (any outcome).",
        labels=["org", "stream"],
    )
    until = GaugeMetricFamily(
        "usageledger_data_until_timestamp_seconds",
        "The stream's watermark: its data is read in full up to this time.",
        labels=["org", "stream"],
    )
    errors = GaugeMetricFamily(
        "usageledger_sync_errors",
        "1 when the stream's last sync run ended in an error, else 0.",
        labels=["org", "stream"],
    )
    # as `status` shows them: a run whose process is gone (killed mid-sync) is `abandoned`, an error, not `running`
    # until the next sync; read-only (a scrape never writes). Imported here: it brings httpx, which nothing else
    # of a report needs at start-up.
    from usageledger.sync._safety import abandoned_runs, stream_states_now

    dead = abandoned_runs(store)
    for s in stream_states_now(store, at=0, record=False, dead=dead):
        if s.last_run_at is not None:
            last.add_metric([s.org, s.stream], float(s.last_run_at))
        if s.watermark is not None:
            until.add_metric([s.org, s.stream], float(s.watermark))
        errors.add_metric([s.org, s.stream], 1.0 if s.last_status in _ERROR_STATUSES else 0.0)
    runs = GaugeMetricFamily("usageledger_sync_runs", "Sync runs recorded in the store, by status.", labels=["status"])
    counts = {
        str(status): int(count)
        for status, count in store.query("SELECT status, COUNT(*) FROM sync_runs GROUP BY status")
    }
    moved = min(len(dead), counts.get("running", 0))  # a sync may have recorded them abandoned meanwhile
    if moved:
        counts["running"] -= moved
        counts["abandoned"] = counts.get("abandoned", 0) + moved
    for status, count in sorted(counts.items()):
        if count:
            runs.add_metric([status], float(count))
    return [last, until, errors, runs]


_COST_GRAIN: Final = ("org", "project", "model", "line_item")
_USAGE_GRAIN: Final = ("org", "project", "model")
_COST_SERIES: Final = 2
"""Series a cost group has: month to date and today."""
_USAGE_SERIES: Final = 6
"""Series a usage group has: input and output tokens, and requests, of the month to date and of today."""


@dataclass(frozen=True, slots=True)
class _Grain:
    """Every group of a scrape at the finest labels, to count the series any ``--metrics-labels`` would give without
    reading the store again."""

    costs: frozenset[tuple[str, ...]]
    usage: frozenset[tuple[str, ...]]
    fixed: int
    """The series no label choice changes: the sync figures and :data:`SERIES_METRIC`."""

    def series(self, labels: frozenset[str]) -> int:
        def groups(keys: frozenset[tuple[str, ...]], order: tuple[str, ...]) -> int:
            kept = [i for i, label in enumerate(order) if label in labels]
            return len({tuple(key[i] for i in kept) for key in keys})

        return (
            _COST_SERIES * groups(self.costs, _COST_GRAIN)
            + _USAGE_SERIES * groups(self.usage, _USAGE_GRAIN)
            + self.fixed
        )


@dataclass(frozen=True, slots=True)
class MetricsPage:
    """One scrape: the page (``body``, ``content_type``) and how many series it holds (``series``, as the page's own
    :data:`SERIES_METRIC` says), with :meth:`fewer_labels` to count what a ``--metrics-labels`` choice would give."""

    body: bytes
    content_type: str
    series: int
    labels: frozenset[str]
    _grain: _Grain

    def series_with(self, labels: frozenset[str]) -> int:
        """The series this scrape would hold with ``labels`` kept (the others summed away)."""
        return self._grain.series(labels)

    def fewer_labels(self, bound: int) -> tuple[frozenset[str], int]:
        """The ``--metrics-labels`` choice that keeps the most series at or under ``bound`` (the most detail a
        Prometheus can bear; among equals the one keeping more labels), with its count; when none does, the choice
        with the fewest series."""
        choices = [
            frozenset(kept) for n in range(1, len(METRICS_LABELS) + 1) for kept in combinations(METRICS_LABELS, n)
        ]
        counted = [(choice, self._grain.series(choice)) for choice in choices]
        under = [(choice, count) for choice, count in counted if count <= bound]
        if under:
            return max(under, key=lambda c: (c[1], len(c[0])))  # max keeps the first of equals: METRICS_LABELS order
        return min(counted, key=lambda c: (c[1], -len(c[0])))

    def too_many(self, bound: int) -> str | None:
        """One line saying the page holds more than ``bound`` series, and the ``--metrics-labels`` choice that
        brings it under, with its count; ``None`` when it holds ``bound`` or fewer."""
        if self.series <= bound:
            return None
        choice, count = self.fewer_labels(bound)
        flag = "--metrics-labels " + ",".join(label for label in METRICS_LABELS if label in choice)
        kept = ", ".join(label for label in METRICS_LABELS if label in self.labels)
        fix = (
            f"{flag} gives {count:,} (the other labels summed away, totals unchanged)"
            if count <= bound
            else f"no --metrics-labels choice brings it under; the fewest, {flag}, gives {count:,}"
        )
        return (
            f"/metrics: a scrape holds {self.series:,} series (labels {kept}), more than {bound:,}, which weighs on the"
            f" Prometheus that scrapes it; {fix} ({SERIES_METRIC} has the count; said once)"
        )


def scrape_metrics(
    store: BaseStore,
    *,
    labels: frozenset[str] = DEFAULT_METRICS_LABELS,
    openmetrics: bool = False,
    now: datetime | None = None,
    overrides: Names | None = None,
) -> MetricsPage:
    """:func:`render_metrics`'s page, with its series count and what other ``labels`` would give."""
    unknown = labels - DEFAULT_METRICS_LABELS
    if unknown:
        raise ParameterError("--metrics-labels", f"{', '.join(sorted(unknown))} is not a label")
    moment = utc_moment(now or datetime.now(UTC))  # a naive now is UTC, not the machine's zone
    today = moment.date()
    period = Period(_month_start(today), today + timedelta(days=1))
    today_start = day_start(today)
    shape = _Shape(labels)
    # The bare name: `project_id` tells projects named alike apart. The reports' names carry the ID for them
    # ("Search (proj_abc)"), so a project's series changed label (a new series) when another project took its name,
    # and the dashboard's legend, `{{project_name}} ({{project_id}})`, said the ID twice.
    names = resolve_names(store, overrides=overrides, distinct=False) if "project" in labels else Names()
    scrape = _Scrape(store, shape, names, period, today_start, _left_out(store))
    costs: set[tuple[str, ...]] = set()
    usage: set[tuple[str, ...]] = set()
    sync = _sync(store)
    families = [
        *_costs(scrape, costs),
        *_usage(scrape, usage),
        *sync,
    ]
    series = sum(len(f.samples) for f in families) + 1  # and the count's own
    count = GaugeMetricFamily(SERIES_METRIC, "Series on this page, this one included.")
    count.add_metric([], float(series))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures([*families, count]))
    if openmetrics:
        body, content_type = generate_openmetrics(registry), OPENMETRICS_CONTENT_TYPE  # type: ignore[no-untyped-call]
    else:
        body, content_type = generate_latest(registry), CONTENT_TYPE_LATEST
    grain = _Grain(frozenset(costs), frozenset(usage), fixed=sum(len(f.samples) for f in sync) + 1)
    return MetricsPage(body, content_type, series, labels, grain)


def render_metrics(
    store: BaseStore,
    *,
    labels: frozenset[str] = DEFAULT_METRICS_LABELS,
    openmetrics: bool = False,
    now: datetime | None = None,
    overrides: Names | None = None,
) -> tuple[bytes, str]:
    """The metrics page of ``store`` at ``now`` (default: the clock): ``(body, content type)``, in the Prometheus
    text format or, with ``openmetrics``, in OpenMetrics. The synthetic orgs of a store that also holds a real one
    are left out of the spend, token and request figures (see the module docstring). ``project_name`` is the
    directory's name, overridden by ``overrides`` (the config's ``[names]``), on one line, and without the ID the
    reports add to names two projects share (``project_id`` is beside it)."""
    page = scrape_metrics(store, labels=labels, openmetrics=openmetrics, now=now, overrides=overrides)
    return page.body, page.content_type


StoreOpener = Callable[[], AbstractContextManager[BaseStore]]


def metrics_endpoint(
    store_opener: StoreOpener,
    labels: frozenset[str] = DEFAULT_METRICS_LABELS,
    *,
    clock: Callable[[], datetime] | None = None,
    overrides: Names | None = None,
    say: Callable[[str], None] | None = None,
    series_bound: int = SERIES_BOUND,
) -> Callable[[Any], Any]:
    """A Starlette endpoint serving :func:`render_metrics`: the store is opened per scrape (read only, in a worker
    thread), and an ``Accept`` header naming ``application/openmetrics-text`` gets OpenMetrics. ``clock`` (default:
    the system's) says what "now" is, for tests and replays; ``overrides``: names over the directory's.

    The first scrape holding more than ``series_bound`` series is told to ``say`` (``serve``: one line on stderr),
    once for the endpoint's life, with the ``--metrics-labels`` choice that brings it under
    (:meth:`MetricsPage.too_many`); the page is served whole all the same, its labels as chosen."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

    said = False

    def scrape(openmetrics: bool) -> tuple[MetricsPage, str | None]:
        with store_opener() as store:
            now = None if clock is None else clock()
            page = scrape_metrics(store, labels=labels, openmetrics=openmetrics, now=now, overrides=overrides)
        # counting the other choices reads every group 15 times: only until it has been said
        return page, (None if said or say is None else page.too_many(series_bound))

    async def endpoint(request: Request) -> Response:
        nonlocal said
        try:
            page, line = await run_in_threadpool(scrape, wants_openmetrics(request.headers.get("accept")))
        except UsageLedgerError as exc:  # no store, a store of another schema: one line, and the scrape fails
            return PlainTextResponse(f"error: {exc}\n", status_code=503)
        if line is not None and say is not None and not said:  # two scrapes at once: the first back says it
            said = True
            say(line)
        return Response(page.body, headers={"Content-Type": page.content_type})

    return endpoint
