"""The catalogue agrees with the seed, the public YAML, the SDK 3.57 signatures and the examples."""

from __future__ import annotations

import inspect
import json
import re
import typing

import pytest
import yaml
from typer.testing import CliRunner

from usageledger import catalogue, rules
from usageledger.catalogue import ENDPOINTS
from usageledger.cli import app

from fixtures.data import EXAMPLES, SEED, SPEC

SEED_SIGNATURE = re.compile(r"^UsageResponse (usage_\w+)\((.*)\)$", re.MULTILINE)
COMMON_QUERY = {"start_time", "end_time", "bucket_width", "group_by", "limit", "page"}


def _seed_methods() -> dict[str, tuple[str, ...]]:
    text = SEED.read_text()
    return {m: tuple(p.split(" => ")[0].strip() for p in args.split(",")) for m, args in SEED_SIGNATURE.findall(text)}


def _sdk_endpoint_methods() -> set[str]:
    """The pinned SDK's usage and costs methods: those of its ``Usage`` resource that take a ``bucket_width``."""
    from openai.resources.admin.organization.usage import Usage

    return {
        name
        for name, value in vars(Usage).items()
        if inspect.isfunction(value) and "bucket_width" in inspect.signature(value).parameters
    }


def test_endpoints_are_the_sdks_and_the_yamls_with_unique_names_paths_and_objects() -> None:
    """The endpoints are exactly the pinned SDK's methods, and those marked `in_yaml` exactly the public YAML's
    paths: an endpoint dropped or added by mistake fails here against the two sources, with no count kept by hand
    (it was `len(ENDPOINTS) == 12`, one more file to edit per endpoint). Each has its own name, path, seed method
    and result object."""
    assert {e.sdk_method for e in ENDPOINTS} == _sdk_endpoint_methods()
    assert {e.path for e in ENDPOINTS if e.in_yaml} == set(_yaml_parameters())
    for attr in ("name", "path", "seed_method", "result_object", "result_type"):
        assert len({getattr(e, attr) for e in ENDPOINTS}) == len(ENDPOINTS), attr


def test_seed_methods_and_parameters_match_the_seed_document() -> None:
    """The seed's nine methods and their keyword parameters are exactly the catalogue's seed_params."""
    seed = _seed_methods()
    assert set(seed) == {e.seed_method for e in catalogue.SEED_ENDPOINTS}
    for endpoint in catalogue.SEED_ENDPOINTS:
        assert set(seed[endpoint.seed_method]) == set(endpoint.seed_params), endpoint.name


def _yaml_parameters() -> dict[str, dict[str, dict[str, typing.Any]]]:
    spec = yaml.safe_load(SPEC.read_text())
    return {path: {p["name"]: p for p in op["get"]["parameters"]} for path, op in spec["paths"].items()}


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.in_yaml], ids=lambda e: e.name)
def test_filters_and_groupings_match_the_public_yaml(endpoint: catalogue.Endpoint) -> None:
    """Every YAML parameter is in the catalogue; the catalogue adds only what it marks SDK-only."""
    params = _yaml_parameters()[endpoint.path]
    yaml_filters = set(params) - COMMON_QUERY
    assert yaml_filters == {f.name for f in endpoint.filters if f.origin != "sdk"}
    group_enum = params["group_by"]["schema"]["items"]["enum"]
    assert set(group_enum) == set(endpoint.group_by) - set(endpoint.sdk_only_group_by)
    assert params["bucket_width"]["schema"]["enum"] == list(endpoint.bucket_widths)
    for flt in endpoint.filters:
        if flt.name in params and flt.kind == "list":
            assert params[flt.name]["schema"]["items"].get("enum") == (list(flt.allowed) if flt.allowed else None)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_parameters_and_groupings_match_sdk_3_57(endpoint: catalogue.Endpoint) -> None:
    """The SDK's method for the endpoint takes exactly the catalogue's filters and group_by values."""
    from openai.resources.admin.organization.usage import Usage

    method = getattr(Usage, endpoint.sdk_method)
    hints = typing.get_type_hints(method)
    sdk_params = {
        n
        for n in inspect.signature(method).parameters
        if n not in {"self", "extra_headers", "extra_query", "extra_body", "timeout"}
    }
    assert sdk_params - COMMON_QUERY == set(endpoint.filter_names)
    group_literal = next(a for a in typing.get_args(hints["group_by"]) if typing.get_origin(a) is list)
    (literal,) = typing.get_args(group_literal)
    assert set(typing.get_args(literal)) == set(endpoint.group_by)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_result_objects_match_the_examples(endpoint: catalogue.Endpoint) -> None:
    """Each example response carries the catalogue's result object and every required metric."""
    page = json.loads((EXAMPLES / f"{endpoint.name}.json").read_text())
    result = page["data"][0]["results"][0]
    assert result["object"] == endpoint.result_object
    for column in endpoint.metrics:
        if column.required:
            assert column.name in result


def test_limits_follow_the_reference() -> None:
    """Usage limits are 7/31, 24/168, 60/1440 per width; costs is 1d only with 7/180."""
    usage = catalogue.get("completions")
    assert {w: (usage.limit_for(w).default, usage.limit_for(w).maximum) for w in usage.bucket_widths} == {
        "1d": (7, 31),
        "1h": (24, 168),
        "1m": (60, 1440),
    }
    costs = catalogue.get("costs")
    assert costs.bucket_widths == ("1d",)
    assert (costs.limit_for("1d").default, costs.limit_for("1d").maximum) == (7, 180)


def test_filters_restrict_grouping_fields_and_defaults_are_groupable() -> None:
    """Each filter names a groupable field, and each default sync grouping is allowed."""
    for endpoint in ENDPOINTS:
        for flt in endpoint.filters:
            assert flt.field in endpoint.group_by, (endpoint.name, flt.name)
        assert set(endpoint.default_group_by) <= set(endpoint.group_by)
        assert endpoint.natural_key == ("bucket_start", *endpoint.group_by)


def test_unknown_endpoint_error_lists_the_names() -> None:
    """Asking for an unknown endpoint names every valid one."""
    with pytest.raises(KeyError, match="completions"):
        catalogue.get("completion")


@pytest.mark.parametrize(
    ("given", "meant"),
    [("completion", "completions"), ("Costs", "costs"), ("web_search", "web_search_calls"), ("usage", None)],
)
def test_an_unknown_endpoint_near_one_names_the_one_meant(given: str, meant: str | None) -> None:
    """`sync -e completion`, `export -e cost` and a config's `endpoint = "Costs"` listed the twelve names and left
    the one meant to be found; the one refusal (`catalogue.get`, behind all three) names it, as a config's unknown
    key does, and says nothing of the kind for a name near none."""
    with pytest.raises(KeyError) as info:
        catalogue.get(given)
    said = info.value.args[0]
    hint = f" (did you mean {meant}?)" if meant else ""
    assert said == f"unknown endpoint {given!r}{hint}; choose one of: {', '.join(catalogue.ENDPOINT_NAMES)}"
    done = CliRunner().invoke(app, ["sync", "-e", given, "--since", "2d"])
    assert done.exit_code == 2 and done.stderr == f"error: --endpoint: {said}\n"


def test_a_filter_whose_values_hold_commas_is_never_split() -> None:
    """A command line's comma list splits every filter but one whose values hold commas (a line item is `model,
    what was billed`): its values are taken whole, each stripped, and an empty one kept for the refusal."""
    assert {"line_items"} == set(catalogue.FILTERS_WITH_COMMAS)
    assert rules.filter_parts("line_items", ["gpt-4o, input ", "dall-e-3, 1024x1024"]) == [
        "gpt-4o, input",
        "dall-e-3, 1024x1024",
    ]
    assert rules.filter_parts("models", ["a, b", "c"]) == ["a", "b", "c"]
    assert rules.filter_parts("models", ["a,,b"]) == ["a", "", "b"]
