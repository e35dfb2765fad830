"""Streams: what one sync keeps up to date, and how a stream's rows are told apart in the store.

A stream is an endpoint, a bucket width, a ``group_by`` set and filters. Its id is derived from those four, so the
same definition always lands on the same rows, whichever config file or flags produced it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

import msgspec

from usageledger import catalogue, rules
from usageledger._secrets import refuse_key
from usageledger.catalogue import BucketWidth, Endpoint
from usageledger.errors import ConfigError, ParameterError
from usageledger.rules import FilterValue

__all__ = ["FilterValue", "Stream", "default_streams", "encode_group_key"]

_KEY_ENCODER: Final = msgspec.json.Encoder()


def encode_group_key(values: Sequence[str | bool | None]) -> str:
    """The text key of one result row's grouping values, in the stream's ``group_by`` order.

    A JSON array: deterministic, and NULL (``null``) stays distinct from every value, including the string
    ``"null"`` (``"null"``) and from ``false``. An ungrouped row has the key ``[]``.
    """
    return _KEY_ENCODER.encode(list(values)).decode()


@dataclass(frozen=True, slots=True, eq=False)
class Stream:
    """One stream: an endpoint read at one bucket width, grouped one way, optionally filtered."""

    endpoint: Endpoint
    bucket_width: BucketWidth
    group_by: tuple[str, ...] = ()
    filters: tuple[tuple[str, FilterValue], ...] = ()
    """``(name, value)`` pairs sorted by name; list values sorted and de-duplicated."""

    @classmethod
    def create(
        cls,
        endpoint: str | Endpoint,
        bucket_width: str = "1d",
        group_by: Sequence[str] = (),
        filters: Mapping[str, Sequence[str] | str | bool] | None = None,
    ) -> Stream:
        """Validate a stream definition with the live API's own rules (:func:`usageledger.rules.check_definition`,
        what every request of the stream is checked with) and normalise it: group_by in catalogue order, filters
        sorted by name, list values sorted and de-duplicated. A broken rule is a :class:`ConfigError` that starts
        with the parameter (``bucket_width``, ``group_by``, ``filters.<name>``).
        """
        ep = endpoint if isinstance(endpoint, Endpoint) else _endpoint(endpoint)
        try:  # as the client reads it: "model" one field (it was m, o, d, e, l), "model,project_id" two
            group_by = rules.group_by_names(group_by)
        except ParameterError as exc:
            raise ConfigError(str(exc)) from None
        norm: dict[str, FilterValue] = {}
        for name, value in sorted((filters or {}).items()):
            try:
                kind = ep.filter(name).kind if name in ep.filter_names else None
                norm[name] = rules.filter_value(f"filters.{name}", value, kind)
                value_now = norm[name]
                if not isinstance(value_now, bool):  # a key where an ID goes was saved in the store's streams
                    for item in value_now:
                        refuse_key(f"filters.{name}", item)
            except ParameterError as exc:
                raise ConfigError(str(exc)) from None
        violation = rules.check_definition(ep, bucket_width, group_by, norm)
        if violation is not None:
            param = violation.param if violation.param in ("bucket_width", "group_by") else f"filters.{violation.param}"
            raise ConfigError(f"{param}: {violation.message}")
        ordered = tuple(g for g in ep.group_by if g in set(group_by))
        canonical = {k: v if isinstance(v, bool) else tuple(sorted(set(v))) for k, v in norm.items()}
        return cls(ep, bucket_width, ordered, tuple(canonical.items()))  # type: ignore[arg-type]

    @property
    def id(self) -> str:
        """A readable, deterministic id, e.g. ``completions.1d.project_id+model+batch``."""
        base = f"{self.endpoint.name}.{self.bucket_width}.{'+'.join(self.group_by) or 'total'}"
        if self.filters:
            return f"{base}.{hashlib.sha256(self.filters_json.encode()).hexdigest()[:10]}"
        return base

    @property
    def filters_json(self) -> str:
        """The filters as canonical JSON (sorted keys, sorted values)."""
        return json.dumps(
            {k: (v if isinstance(v, bool) else list(v)) for k, v in self.filters},
            separators=(",", ":"),
            sort_keys=True,
        )

    @property
    def is_default(self) -> bool:
        """Whether this is the endpoint's default stream (daily, default grouping, unfiltered)."""
        return self in default_streams()

    def query_filters(self) -> dict[str, list[str] | bool]:
        """The filters as request keyword arguments."""
        return {k: (v if isinstance(v, bool) else list(v)) for k, v in self.filters}

    def _identity(self) -> tuple[object, ...]:
        return (self.endpoint.name, self.bucket_width, self.group_by, self.filters)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __str__(self) -> str:
        return self.id


def _endpoint(name: str) -> Endpoint:
    try:
        return catalogue.get(name)
    except KeyError as exc:
        raise ConfigError(f"endpoint: {exc.args[0]}") from None


@cache
def default_streams() -> tuple[Stream, ...]:
    """Every endpoint daily, grouped by its catalogue ``default_group_by`` (costs: project and line item)."""
    return tuple(Stream.create(ep, "1d", ep.default_group_by) for ep in catalogue.ENDPOINTS)
