"""The live API's parameter rules, shared by the client (pre-flight) and the emulator (its 400 answers).

:func:`check` returns the first :class:`Violation` of a query, with the message the live API sends
(reference §10), or ``None``. The client raises it as :class:`~usageledger.errors.ParameterError` before any
request; the emulator answers it as an HTTP 400. :func:`plan_windows` splits a long range into requests that
each fit the endpoint's maximum ``limit``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from usageledger import timeutil
from usageledger.catalogue import BUCKET_SECONDS, FILTERS_WITH_COMMAS, BucketWidth, Endpoint, Limit
from usageledger.errors import ParameterError

FilterValue = tuple[str, ...] | bool


@dataclass(frozen=True, slots=True)
class QueryParams:
    """One request's parameters, normalised: Unix seconds, tuples, and filters by query name."""

    start_time: int | None
    end_time: int | None = None
    bucket_width: str = "1d"
    group_by: tuple[str, ...] = ()
    limit: int | None = None
    page: str | None = None
    filters: Mapping[str, FilterValue] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule the query breaks: the parameter, the live API's message, and the accepted values if closed."""

    param: str
    message: str
    allowed: tuple[str, ...] | None = None
    code: str | None = None
    type: str = "invalid_request_error"

    def to_error(self) -> ParameterError:
        return ParameterError(self.param, self.message, allowed=self.allowed)


def filter_value(
    param: str, value: object, kind: Literal["list", "bool"] | None = None, *, parts_of: str | None = None
) -> FilterValue:
    """One filter's value, normalised once: ``True``/``False`` as is, a string or a list of strings as a tuple.

    An empty value is refused, never dropped: ``[]``, ``[""]``, ``"  "`` or ``[None]`` would otherwise send no
    filter and return every row. Leave a filter out (or pass ``None`` before this point) for "no filter". With the
    filter's ``kind`` known, a boolean filter takes only ``True`` or ``False``. With ``parts_of`` (the filter's
    name), each string is read as :func:`filter_parts` reads a command line's: a comma list split, each part
    stripped (``models="gpt-4o, o3"``, as ``group_by="project_id, model"``), where it went out whole and the API's
    own split left `` o3``, which matched nothing, without a word.
    """
    if isinstance(value, bool):
        return value
    if kind == "bool":
        raise ParameterError(param, f"expected true or false, got {_shown(value)}")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, bytes | Mapping):
        raise ParameterError(param, f"expected a list of strings, got {_shown(value)}")
    values = tuple(items)
    if not values:
        raise ParameterError(param, f"is empty; give at least one value, or leave {param} out for no filter")
    for item in values:
        if not isinstance(item, str):
            raise ParameterError(param, f"expected strings, got {_shown(item)} in {_shown(value)}")
    if parts_of is not None:
        values = tuple(filter_parts(parts_of, values))  # every item is a str: checked above
    for item in values:
        if not item.strip():
            raise ParameterError(
                param, f"{_shown(value)} holds an empty value; give non-empty values, or leave {param} out"
            )
    return values


def group_by_names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """The fields to group by, the one reading of ``group_by`` (the client's, a stored stream's); ``None`` or an empty
    collection means no grouping. A name may be a comma list; an
    empty name (``""``, ``"model,"``) is refused, never dropped. Any collection of names is taken, as a filter's
    values are (a set, a generator, a numpy array were refused as "not a list of field names")."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, bytes | Mapping):
        raise ParameterError("group_by", f"pass a field name or a list of field names, got {value!r}")
    items = list(items)
    if not all(isinstance(item, str) for item in items):
        raise ParameterError("group_by", f"pass a field name or a list of field names, got {value!r}")
    parts = tuple(part.strip() for item in items for part in item.split(","))
    if not all(parts):  # `group_by="model,"`, `["model", ""]`: a blank is a slip, as the CLI's --group-by says
        raise ParameterError(
            "group_by", f"{value!r} holds an empty field name; give field names, or leave group_by out for none"
        )
    return tuple(dict.fromkeys(parts))  # `["model", "model"]`, `"model,model"`: one grouping, asked for once


def filter_parts(name: str, given: Iterable[str]) -> list[str]:
    """The values of filter ``name`` as a command line gives them (repeated options, each maybe a comma list), each
    stripped and empty ones kept for :func:`filter_value` to refuse. A filter whose values hold commas
    (:data:`~usageledger.catalogue.FILTERS_WITH_COMMAS`) takes each as given: ``--line-items 'gpt-4o, input_tokens'``
    was split into ``gpt-4o`` and ``input_tokens``, two line items that do not exist, and matched nothing."""
    if name in FILTERS_WITH_COMMAS:
        return [item.strip() for item in given]
    return [part.strip() for item in given for part in item.split(",")]


def one_filter(param: str, value: object) -> str | None:
    """A filter of one value (a report's ``org``, ``project``, ``team`` or ``model``): ``None`` is no filter; else a
    non-blank string, refused in one line naming ``param`` otherwise, as :func:`filter_value` refuses ``[]`` or
    ``""``: ``Scope(model="")`` matched no line item and reported a spend of 0 without a word."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParameterError(param, f"expected one value as a string, got {_shown(value)}")
    if not value.strip():
        raise ParameterError(param, f"is empty; give a value, or leave {param} out (None) for no filter")
    return value


def name_list(param: str, value: object) -> tuple[str, ...]:
    """``endpoints``/``orgs``/``streams`` as a tuple of names: one string is one name (``orgs="acme"`` was read as
    the orgs ``a``, ``c``, ``m``, ``e``, and exported nothing); an empty tuple is "all"."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, bytes | Mapping):
        raise ParameterError(param, f"expected a list of names, got {type(value).__name__}")
    names = tuple(items)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ParameterError(param, f"expected non-empty names, got {name!r}; leave {param} out for all")
    return names


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _bad_width(endpoint: Endpoint, bucket_width: str) -> Violation:
    return Violation(
        "bucket_width",
        f"Invalid bucket_width provided: '{bucket_width}'. Supported values are: {_quoted(endpoint.bucket_widths)}.",
        allowed=endpoint.bucket_widths,
    )


def unknown_filter(endpoint: Endpoint, name: str) -> Violation:
    """The live API's 400 for a filter ``endpoint`` does not take (``foo=``, ``project_id=`` for ``project_ids=``)."""
    return Violation(
        name,
        f"Unrecognized request argument supplied: {name}. Supported filters are: {_quoted(endpoint.filter_names)}.",
        allowed=endpoint.filter_names,
        code="unknown_parameter",
    )


def _groups_and_filters(
    endpoint: Endpoint, group_by: Iterable[str], filters: Mapping[str, FilterValue]
) -> Violation | None:
    for grouping in group_by:
        if grouping not in endpoint.group_by:
            return Violation(
                "group_by",
                f"Invalid group_by value: '{grouping}'. Supported values are: {_quoted(endpoint.group_by)}.",
                allowed=endpoint.group_by,
            )
    known = {f.name: f for f in endpoint.filters}
    for name, value in filters.items():
        flt = known.get(name)
        if flt is None:
            return unknown_filter(endpoint, name)
        if flt.kind == "bool":
            if not isinstance(value, bool):
                return Violation(name, f"Invalid value for '{name}': {value!r}. Expected a boolean.")
            continue
        if isinstance(value, bool):
            return Violation(name, f"Invalid value for '{name}': {value!r}. Expected an array of strings.")
        if flt.allowed is not None:
            for item in value:
                if item not in flt.allowed:
                    return Violation(
                        name,
                        f"Invalid value for '{name}': '{item}'. Supported values are: {_quoted(flt.allowed)}.",
                        allowed=flt.allowed,
                    )
    return None


def check_definition(
    endpoint: Endpoint, bucket_width: str, group_by: Iterable[str], filters: Mapping[str, FilterValue]
) -> Violation | None:
    """The first rule a query's shape breaks, before any time or page: its bucket width, groupings and filters.

    :func:`check` applies the same rules to every request; a sync stream's definition is checked with this once.
    """
    if bucket_width not in endpoint.bucket_widths:
        return _bad_width(endpoint, bucket_width)
    return _groups_and_filters(endpoint, group_by, filters)


_INTEGER: Final = re.compile(r"[+-]?[0-9]+")


def query_integer(param: str, raw: str) -> int | Violation:
    """An integer query value: optional sign and ASCII digits, nothing else, or the API's 400 naming ``param``.

    Python's ``int()`` also takes ``"1_795_000_000"``, ``" 7 "`` and other scripts' digits (``"\uff17"``), which an
    HTTP API reads as the strings they are.
    """
    if _INTEGER.fullmatch(raw) is not None:
        try:
            return int(raw)
        except ValueError:  # more digits than Python converts (4,300): no integer any API takes either
            pass
    return Violation(param, f"Invalid value for '{param}': '{raw}'. Expected an integer.", code="invalid_type")


def limit_violation(limit: int | None, rule: Limit) -> Violation | None:
    """The live API's refusal of a ``limit`` outside ``rule`` (never clamped), or ``None``; usage and directory."""
    if limit is not None and limit > rule.maximum:
        return Violation(
            "limit", f"Invalid limit provided: {limit}. Limit must be less than or equal to {rule.maximum}."
        )
    if limit is not None and limit < rule.minimum:
        return Violation(
            "limit", f"Invalid limit provided: {limit}. Limit must be greater than or equal to {rule.minimum}."
        )
    return None


def check(endpoint: Endpoint, params: QueryParams, *, now: int) -> Violation | None:
    """The first rule ``params`` breaks on ``endpoint``, or ``None`` when the live API would accept it."""
    if params.start_time is None:
        return Violation("start_time", "Missing required parameter: 'start_time'.", code="missing_required_parameter")
    if params.start_time < 0:
        return Violation("start_time", f"Invalid start_time provided: {params.start_time}. It must be non-negative.")
    if params.bucket_width not in endpoint.bucket_widths:
        return _bad_width(endpoint, params.bucket_width)
    violation = limit_violation(params.limit, endpoint.limits[params.bucket_width])
    if violation is not None:
        return violation
    violation = _groups_and_filters(endpoint, params.group_by, params.filters)
    if violation is not None:
        return violation
    # Reference §10: the live API fails on an end_time in the future; the client clamps (effective_end) before it
    # checks and sends, so only another clock's now (a server behind the client's) ever meets this refusal. A range
    # that starts at or after now is blamed on start_time; without an end_time, the reference says nothing of one,
    # and it reads as no buckets.
    if params.end_time is not None:
        if params.end_time <= params.start_time:
            return Violation(
                "end_time",
                f"end_time ({params.end_time}) must be greater than start_time ({params.start_time}).",
            )
        if params.start_time >= now:
            return Violation("start_time", f"start_time ({params.start_time}) must be before now ({now}).")
        if params.end_time > now:
            return Violation(
                "end_time",
                f"end_time ({params.end_time}) must not be in the future (now: {now}); omit it to end at now.",
            )
    for fld, cutoff in endpoint.group_by_cutoffs.items():
        if fld in params.group_by and params.start_time < cutoff:
            return Violation(
                "start_time",
                f"Grouping by {fld} is not supported for time ranges that start before "
                f"{timeutil.iso(cutoff)} (Unix {cutoff}). Use a later start_time or remove {fld} from group_by.",
            )
    return None


def effective_end(params: QueryParams, *, now: int) -> int | None:
    """``end_time`` clamped to ``now``, as the client sends it: the live API refuses a future end time (:func:`check`
    says so), so the client clamps before it checks."""
    if params.end_time is None:
        return None
    return min(params.end_time, now)


# --- windows --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """One request's slice of a range: ``[start, end)`` holding ``limit`` buckets."""

    start: int
    end: int
    limit: int


def bucket_starts(start: int, end: int, width: BucketWidth) -> list[int]:
    """The start of every bucket the API returns for ``[start, end)``: the first may be partial."""
    step = BUCKET_SECONDS[width]
    starts = []
    current = start
    while current < end:
        starts.append(current)
        current = timeutil.floor(current, width) + step
    return starts


def count_buckets(start: int, end: int, width: BucketWidth) -> int:
    """How many buckets ``[start, end)`` spans, without listing them."""
    if end <= start:
        return 0
    return 1 + max(0, -(-(end - timeutil.ceil(start + 1, width)) // BUCKET_SECONDS[width]))


def plan_windows(endpoint: Endpoint, start_time: int, end_time: int, bucket_width: BucketWidth) -> list[Window]:
    """Split ``[start_time, end_time)`` into windows of at most the width's maximum ``limit`` buckets."""
    maximum: Final = endpoint.limit_for(bucket_width).maximum
    step = BUCKET_SECONDS[bucket_width]
    windows = []
    current = start_time
    while current < end_time:
        # The first bucket of a window may be partial; the rest are whole.
        window_end = min(end_time, timeutil.floor(current, bucket_width) + maximum * step)
        windows.append(Window(current, window_end, count_buckets(current, window_end, bucket_width)))
        current = window_end
    return windows
