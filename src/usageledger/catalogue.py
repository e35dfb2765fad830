"""The endpoint catalogue: every fact about every endpoint, in one table.

Everything else in the package (client methods, pre-flight validation, CLI choices, the emulator's routes
and rules, the store's tables, the sync plan) reads these records. Adding an endpoint is one record here
plus one result model in :mod:`usageledger.models`; then ``scripts/generate`` writes its typed client and
``UsageApi`` methods and any new filter option of ``query`` and ``sync``.

Sources: the public API reference (its sections on parameters, limits, result fields and live behaviour);
the public OpenAPI excerpt kept in ``tests/data/usage-api.yaml`` pins it in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, get_args

from usageledger import directory_models, models
from usageledger._text import closest

BucketWidth = Literal["1m", "1h", "1d"]
BUCKET_WIDTHS: Final[tuple[BucketWidth, ...]] = get_args(BucketWidth)
BUCKET_SECONDS: Final[Mapping[BucketWidth, int]] = MappingProxyType({"1m": 60, "1h": 3600, "1d": 86400})

ColumnType = Literal["int", "str", "bool", "decimal"]
Origin = Literal["seed", "yaml", "sdk"]
"""Where a parameter first appears: the seed's old spec, the current public YAML, or only the SDK."""

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
ADMIN_KEY_PREFIX: Final = "sk-admin-"
ADMIN_KEY_ENV: Final = "OPENAI_ADMIN_KEY"
BASE_URL_ENV: Final = "OPENAI_BASE_URL"

COSTS_API_KEY_GROUPING_CUTOFF: Final = 1764979200
"""Costs grouped by ``api_key_id`` is refused for ranges starting before this Unix time (reference §10)."""


@dataclass(frozen=True, slots=True)
class Limit:
    """The ``limit`` rule for one bucket width: counts buckets, rejected (never clamped) outside the range."""

    default: int
    maximum: int
    minimum: int = 1


@dataclass(frozen=True, slots=True)
class Filter:
    """One filter query parameter.

    ``field`` is the grouping/result field the filter restricts (``project_ids`` restricts ``project_id``).
    ``allowed`` is the closed set of values where the API defines one. ``commas``: its values hold commas (a line
    item is ``gpt-4o, input_tokens``), so a command line takes one value per option, never a comma list.
    """

    name: str
    field: str
    kind: Literal["list", "bool"] = "list"
    allowed: tuple[str, ...] | None = None
    origin: Origin = "seed"
    commas: bool = False


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a flattened row: a grouping dimension, an additive metric or a plain attribute."""

    name: str
    type: ColumnType
    role: Literal["dimension", "metric", "attribute"]
    required: bool = False
    level: bool = False
    """A metric that is a level, not a count (vector stores' ``usage_bytes``): a bucket reports the level at its
    end, so a day's value is its last hour's, never the sum of its hours."""


# Value types of the grouping fields; every one not listed is a string.
_DIMENSION_TYPES: Final[Mapping[str, ColumnType]] = MappingProxyType({"batch": "bool"})

GROUP_FIELD_VALUES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "source": ("image.generation", "image.edit", "image.variation"),
        "size": ("256x256", "512x512", "1024x1024", "1792x1792", "1024x1792"),
        "context_level": ("low", "medium", "high"),
        "api_source": ("agents_api", "unlabeled"),
    }
)
"""Closed value sets of grouping fields, where the reference gives one."""

USAGE_LIMITS: Final[Mapping[BucketWidth, Limit]] = MappingProxyType(
    {"1m": Limit(default=60, maximum=1440), "1h": Limit(default=24, maximum=168), "1d": Limit(default=7, maximum=31)}
)
COSTS_LIMITS: Final[Mapping[BucketWidth, Limit]] = MappingProxyType({"1d": Limit(default=7, maximum=180)})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Everything known about one endpoint."""

    name: str
    path: str
    sdk_method: str
    result_object: str
    result_type: type[models.Result]
    filters: tuple[Filter, ...]
    group_by: tuple[str, ...]
    metrics: tuple[Column, ...]
    default_group_by: tuple[str, ...]
    in_seed: bool = True
    in_yaml: bool = True
    sdk_only_group_by: tuple[str, ...] = ()
    """Grouping fields that only the SDK knows (not the public YAML); the live API accepts them."""
    bucket_widths: tuple[BucketWidth, ...] = BUCKET_WIDTHS
    limits: Mapping[BucketWidth, Limit] = field(default_factory=lambda: USAGE_LIMITS)
    group_by_cutoffs: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Grouping fields the live API refuses for ranges that start before the given Unix time."""

    @property
    def seed_method(self) -> str:
        """The method name of the seed's ``UsageApi`` (and of ours for the three newer endpoints)."""
        return f"usage_{self.name}"

    @property
    def is_costs(self) -> bool:
        return self.name == "costs"

    @property
    def dimensions(self) -> tuple[Column, ...]:
        """The grouping fields as row columns, in catalogue order."""
        return tuple(Column(g, _DIMENSION_TYPES.get(g, "str"), "dimension") for g in self.group_by)

    @property
    def columns(self) -> tuple[Column, ...]:
        """Every column of a flattened row after ``bucket_start``/``bucket_end``: dimensions, then metrics."""
        return self.dimensions + self.metrics

    @property
    def additive_metrics(self) -> tuple[Column, ...]:
        return tuple(c for c in self.metrics if c.role == "metric")

    @property
    def natural_key(self) -> tuple[str, ...]:
        """What identifies one result row: the bucket start and the grouping values."""
        return ("bucket_start", *self.group_by)

    @property
    def filter_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.filters)

    @property
    def seed_params(self) -> tuple[str, ...]:
        """The keyword parameters of the seed's Perl method (for the seed's nine endpoints)."""
        seed_filters = tuple(f.name for f in self.filters if f.origin == "seed")
        return ("start_time", "end_time", "bucket_width", *seed_filters, "group_by", "limit", "page")

    def filter(self, name: str) -> Filter:
        for f in self.filters:
            if f.name == name:
                return f
        raise KeyError(name)

    def limit_for(self, bucket_width: BucketWidth) -> Limit:
        return self.limits[bucket_width]


_f = Filter


def _m(
    name: str,
    type_: ColumnType = "int",
    *,
    required: bool = False,
    role: Literal["metric", "attribute"] = "metric",
    level: bool = False,
) -> Column:
    return Column(name, type_, role, required, level)


_PROJECT = _f("project_ids", "project_id")
_USERS = _f("user_ids", "user_id")
_KEYS = _f("api_key_ids", "api_key_id")
_MODELS = _f("models", "model")
_PER_MODEL_FILTERS = (_PROJECT, _USERS, _KEYS, _MODELS)
_PER_MODEL_GROUPS = ("project_id", "user_id", "api_key_id", "model")

_COMPLETIONS_METRICS = (
    _m("input_tokens", required=True),
    _m("output_tokens", required=True),
    _m("num_model_requests", required=True),
    _m("input_cached_tokens"),
    _m("input_cache_write_tokens"),
    _m("input_cache_write_30m_tokens"),
    _m("input_cache_write_12h_tokens"),
    _m("input_uncached_tokens"),
    _m("input_text_tokens"),
    _m("input_audio_tokens"),
    _m("input_image_tokens"),
    _m("input_cached_text_tokens"),
    _m("input_cached_audio_tokens"),
    _m("input_cached_image_tokens"),
    _m("output_text_tokens"),
    _m("output_audio_tokens"),
    _m("output_image_tokens"),
)
_COMPLETIONS_FILTERS = (*_PER_MODEL_FILTERS, _f("batch", "batch", kind="bool"))
_COMPLETIONS_GROUPS = (*_PER_MODEL_GROUPS, "batch", "service_tier", "api_source")


def _tag(result_type: type[models.Result]) -> str:
    tag = result_type.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def _usage(
    name: str,
    result_type: type[models.Result],
    *,
    filters: tuple[Filter, ...],
    group_by: tuple[str, ...],
    metrics: tuple[Column, ...],
    default_group_by: tuple[str, ...],
    in_seed: bool = True,
    in_yaml: bool = True,
    sdk_only_group_by: tuple[str, ...] = (),
) -> Endpoint:
    return Endpoint(
        name=name,
        path=f"/organization/usage/{name}",
        sdk_method=name,
        result_object=_tag(result_type),
        result_type=result_type,
        filters=filters,
        group_by=group_by,
        metrics=metrics,
        default_group_by=default_group_by,
        in_seed=in_seed,
        in_yaml=in_yaml,
        sdk_only_group_by=sdk_only_group_by,
    )


def _per_model(name: str, result_type: type[models.Result], quantity: str) -> Endpoint:
    """An endpoint that counts one ``quantity`` and the requests per model: filtered and grouped by project, user,
    API key and model, grouped by project and model unless asked otherwise."""
    return _usage(
        name,
        result_type,
        filters=_PER_MODEL_FILTERS,
        group_by=_PER_MODEL_GROUPS,
        metrics=(_m(quantity, required=True), _m("num_model_requests", required=True)),
        default_group_by=("project_id", "model"),
    )


def _per_project(name: str, result_type: type[models.Result], quantity: str, *, level: bool = False) -> Endpoint:
    """An endpoint that counts one ``quantity`` per project, the only filter and grouping it has."""
    return _usage(
        name,
        result_type,
        filters=(_PROJECT,),
        group_by=("project_id",),
        metrics=(_m(quantity, required=True, level=level),),
        default_group_by=("project_id",),
    )


ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    _usage(
        "completions",
        models.CompletionsResult,
        filters=_COMPLETIONS_FILTERS,
        group_by=_COMPLETIONS_GROUPS,
        metrics=_COMPLETIONS_METRICS,
        default_group_by=("project_id", "model", "batch"),
        sdk_only_group_by=("api_source",),
    ),
    _per_model("embeddings", models.EmbeddingsResult, "input_tokens"),
    _per_model("moderations", models.ModerationsResult, "input_tokens"),
    _usage(
        "images",
        models.ImagesResult,
        filters=(
            _f("sources", "source", allowed=GROUP_FIELD_VALUES["source"]),
            _f("sizes", "size", allowed=GROUP_FIELD_VALUES["size"]),
            *_PER_MODEL_FILTERS,
        ),
        group_by=(*_PER_MODEL_GROUPS, "size", "source"),
        metrics=(_m("images", required=True), _m("num_model_requests", required=True)),
        default_group_by=("project_id", "model", "source", "size"),
    ),
    _per_model("audio_speeches", models.AudioSpeechesResult, "characters"),
    _per_model("audio_transcriptions", models.AudioTranscriptionsResult, "seconds"),
    _per_project("vector_stores", models.VectorStoresResult, "usage_bytes", level=True),
    _per_project("code_interpreter_sessions", models.CodeInterpreterSessionsResult, "num_sessions"),
    _usage(
        "file_search_calls",
        models.FileSearchCallsResult,
        filters=(_PROJECT, _USERS, _KEYS, _f("vector_store_ids", "vector_store_id", origin="yaml")),
        group_by=("project_id", "user_id", "api_key_id", "vector_store_id"),
        metrics=(_m("num_requests", required=True),),
        default_group_by=("project_id", "vector_store_id"),
        in_seed=False,
    ),
    _usage(
        "web_search_calls",
        models.WebSearchCallsResult,
        filters=(
            *_PER_MODEL_FILTERS,
            _f("context_levels", "context_level", allowed=GROUP_FIELD_VALUES["context_level"], origin="yaml"),
        ),
        group_by=(*_PER_MODEL_GROUPS, "context_level", "api_source"),
        metrics=(_m("num_model_requests", required=True), _m("num_requests", required=True)),
        default_group_by=("project_id", "model", "context_level"),
        in_seed=False,
        sdk_only_group_by=("api_source",),
    ),
    _usage(
        "decisions",
        models.DecisionsResult,
        filters=tuple(Filter(f.name, f.field, f.kind, f.allowed, "sdk") for f in _COMPLETIONS_FILTERS),
        group_by=_COMPLETIONS_GROUPS,
        metrics=_COMPLETIONS_METRICS,
        default_group_by=("project_id", "model", "batch"),
        in_seed=False,
        in_yaml=False,
        sdk_only_group_by=("api_source",),
    ),
    Endpoint(
        name="costs",
        path="/organization/costs",
        sdk_method="costs",
        result_object=_tag(models.CostsResult),
        result_type=models.CostsResult,
        filters=(
            _PROJECT,
            _f("api_key_ids", "api_key_id", origin="yaml"),
            _f("line_items", "line_item", origin="sdk", commas=True),
        ),
        group_by=("project_id", "line_item", "api_key_id", "user_id", "api_source"),
        metrics=(
            _m("amount_value", "decimal"),
            _m("currency", "str", role="attribute"),
            _m("quantity", "decimal"),
            _m("quantity_unit", "str", role="attribute"),
        ),
        default_group_by=("project_id", "line_item"),
        sdk_only_group_by=("user_id", "api_source"),
        bucket_widths=("1d",),
        limits=COSTS_LIMITS,
        group_by_cutoffs=MappingProxyType({"api_key_id": COSTS_API_KEY_GROUPING_CUTOFF}),
    ),
)

BY_NAME: Final[Mapping[str, Endpoint]] = MappingProxyType({e.name: e for e in ENDPOINTS})
BY_PATH: Final[Mapping[str, Endpoint]] = MappingProxyType({e.path: e for e in ENDPOINTS})
BY_OBJECT: Final[Mapping[str, Endpoint]] = MappingProxyType({e.result_object: e for e in ENDPOINTS})
ENDPOINT_NAMES: Final[tuple[str, ...]] = tuple(e.name for e in ENDPOINTS)
USAGE_ENDPOINTS: Final[tuple[Endpoint, ...]] = tuple(e for e in ENDPOINTS if not e.is_costs)
SEED_ENDPOINTS: Final[tuple[Endpoint, ...]] = tuple(e for e in ENDPOINTS if e.in_seed)
COMMON_PARAMS: Final[tuple[str, ...]] = ("start_time", "end_time", "bucket_width", "group_by", "limit", "page")
FILTERS_WITH_COMMAS: Final[frozenset[str]] = frozenset(f.name for e in ENDPOINTS for f in e.filters if f.commas)
"""The filters whose values hold commas (``line_items``): never split as a comma list (:func:`rules.filter_parts`)."""


def get(name: str) -> Endpoint:
    """The endpoint called ``name``, with an error that lists the valid names (a list or another object given for
    the name as well: it was ``unhashable type: 'list'``, naming neither the endpoint nor the names)."""
    if not isinstance(name, str):
        raise KeyError(
            f"an endpoint is one name, got {type(name).__name__}; choose one of: {', '.join(ENDPOINT_NAMES)}"
        )
    try:
        return BY_NAME[name]
    except KeyError:
        # the one meant, as a config's unknown key names it: `-e completion`, `endpoint = "Costs"`, `-e web_search`
        close = closest(name.lower(), ENDPOINT_NAMES)
        meant = f" (did you mean {close}?)" if close else ""
        raise KeyError(f"unknown endpoint {name!r}{meant}; choose one of: {', '.join(ENDPOINT_NAMES)}") from None


# --- the directory: the admin API's lists that name the IDs in usage ------------------------------------------

Pagination = Literal["last_id", "item_id", "next"]
"""How a directory list pages, as the official SDK does it (its ``pagination.py``): send back the page's
``last_id`` (``ConversationCursorPage``), the ``id`` of the page's last item (``CursorPage``), or the page's ``next``
(``NextCursorPage``)."""

DIRECTORY_LIMIT: Final = Limit(default=20, maximum=100)
GROUP_LIMIT: Final = Limit(default=100, maximum=1000, minimum=0)


@dataclass(frozen=True, slots=True)
class DirectoryParam:
    """One query parameter of a directory list besides ``after`` and ``limit``."""

    name: str
    kind: Literal["bool", "list", "choice"]
    doc: str
    allowed: tuple[str, ...] = ()
    default: str | None = None


@dataclass(frozen=True, slots=True)
class DirectoryEndpoint:
    """One directory list (``GET path``) and its retrieve-by-id twin (``GET path/{item_param}``)."""

    name: str
    """The list method's name: ``projects``, ``project_api_keys``."""
    item: str
    """The retrieve method's name: ``project``, ``project_api_key``."""
    path: str
    item_param: str
    item_type: type[directory_models.DirectoryItem]
    pagination: Pagination
    sdk_method: str
    """The official SDK's list method under ``client.admin.organization``."""
    limit: Limit = DIRECTORY_LIMIT
    params: tuple[DirectoryParam, ...] = ()
    key_field: str = "id"
    """The field that identifies an item (a project group has no ``id``: it is ``group_id``)."""

    @property
    def path_params(self) -> tuple[str, ...]:
        """The path's placeholders, in order: ``("project_id",)`` for a project's keys."""
        return tuple(re.findall(r"{(\w+)}", self.path))

    @property
    def item_path(self) -> str:
        return f"{self.path}/{{{self.item_param}}}"

    def param(self, name: str) -> DirectoryParam:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


_dm = directory_models
_ORDER = DirectoryParam("order", "choice", "Sort order by creation time.", ("asc", "desc"), "asc")
_PROJECTS = "/organization/projects/{project_id}"

DIRECTORY: Final[tuple[DirectoryEndpoint, ...]] = (
    DirectoryEndpoint(
        "projects",
        "project",
        "/organization/projects",
        "project_id",
        _dm.Project,
        "last_id",
        "projects.list",
        params=(DirectoryParam("include_archived", "bool", "``True`` to list archived projects too."),),
    ),
    DirectoryEndpoint(
        "users",
        "user",
        "/organization/users",
        "user_id",
        _dm.OrganizationUser,
        "last_id",
        "users.list",
        params=(DirectoryParam("emails", "list", "Only the users with these email addresses."),),
    ),
    DirectoryEndpoint(
        "admin_api_keys",
        "admin_api_key",
        "/organization/admin_api_keys",
        "key_id",
        _dm.AdminApiKey,
        "item_id",
        "admin_api_keys.list",
        params=(_ORDER,),
    ),
    DirectoryEndpoint(
        "project_api_keys",
        "project_api_key",
        f"{_PROJECTS}/api_keys",
        "api_key_id",
        _dm.ProjectApiKey,
        "last_id",
        "projects.api_keys.list",
        params=(
            DirectoryParam(
                "owner_project_access",
                "choice",
                "Keys whose owner has access to the project (``active``), has lost it (``inactive``), or both "
                "(``any``); when omitted, the API shows the keys its membership rules let you see.",
                ("active", "inactive", "any"),
            ),
        ),
    ),
    DirectoryEndpoint(
        "project_service_accounts",
        "project_service_account",
        f"{_PROJECTS}/service_accounts",
        "service_account_id",
        _dm.ProjectServiceAccount,
        "last_id",
        "projects.service_accounts.list",
    ),
    DirectoryEndpoint(
        "project_users",
        "project_user",
        f"{_PROJECTS}/users",
        "user_id",
        _dm.ProjectUser,
        "last_id",
        "projects.users.list",
    ),
    DirectoryEndpoint(
        "groups",
        "group",
        "/organization/groups",
        "group_id",
        _dm.Group,
        "next",
        "groups.list",
        limit=GROUP_LIMIT,
        params=(_ORDER,),
    ),
    DirectoryEndpoint(
        "group_users",
        "group_user",
        "/organization/groups/{group_id}/users",
        "user_id",
        _dm.GroupUser,
        "next",
        "groups.users.list",
        limit=GROUP_LIMIT,
        params=(_ORDER,),
    ),
    DirectoryEndpoint(
        "project_groups",
        "project_group",
        f"{_PROJECTS}/groups",
        "group_id",
        _dm.ProjectGroup,
        "next",
        "projects.groups.list",
        params=(_ORDER,),
        key_field="group_id",
    ),
)
DIRECTORY_BY_NAME: Final[Mapping[str, DirectoryEndpoint]] = MappingProxyType({d.name: d for d in DIRECTORY})
