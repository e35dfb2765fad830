"""Config files, fuzzed: wrong types, unknown or missing keys and broken TOML get one-line errors naming the key.

Hypothesis writes arbitrary ``usageledger.toml`` files from every section's real keys, unknown keys (some shaped
like an admin key) and values of every TOML type. Loading one either gives a ``Config`` or a :class:`ConfigError`
whose single line names the file, then the key at fault (``streams[1].group_by``), says what to do, and never shows
a key. The CLI (`sync`, `status`, `report`, `check`) turns each into one line on stderr and exit code 1, never a
traceback.
Examples: 400 per property by default, 4,000 with ``USAGELEDGER_HEAVY=1``.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from usageledger import catalogue
from usageledger._sections import ALERT_KEYS
from usageledger.cli import app
from usageledger.config import load_config
from usageledger.errors import ConfigError

from fixtures.leaks import canary_key, find_secret
from fixtures.reliability import HEAVY

pytestmark = pytest.mark.heavy

EXAMPLES: Final = 4000 if HEAVY else 400
KEY: Final = canary_key()
SECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "store": ("url",),
    "sync": ("lag_days", "minute_grace", "hour_grace", "since", "concurrency", "max_retries"),
    "orgs": ("name", "key_env", "base_url", "api_key"),
    "streams": ("endpoint", "bucket_width", "group_by", "filters"),
    "alerts": ALERT_KEYS,
    "names": ("projects", "users", "api_keys"),
}
tried: dict[str, int] = {"files": 0, "loaded": 0, "refused": 0}


# --- writing TOML -------------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """One TOML value (inline tables for mappings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_document(doc: dict[str, Any]) -> str:
    """Top-level values first, then ``[table]`` sections, then ``[[array]]`` entries (non-empty lists of tables)."""

    def is_array(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

    plain = {k: v for k, v in doc.items() if not isinstance(v, dict) and not is_array(v)}
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in plain.items()]
    for name, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{json.dumps(name)}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()]
    for name, value in doc.items():
        for entry in value if is_array(value) else []:
            lines.append(f"[[{json.dumps(name)}]]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


# --- strategies ---------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.booleans(),
    st.sampled_from(["15m", "36h", "90d", "1d", "1h", "1m", "soon", "12.50", "-3", "", KEY]),
    st.sampled_from(catalogue.ENDPOINT_NAMES),
    st.sampled_from(["project_id", "model", "line_item", "user_id", "api_key_id", "batch"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3),
    max_leaves=6,
)
unknown_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10) | st.just(KEY)


def table_of(section: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from(SECTIONS[section]) | unknown_keys
    return st.dictionaries(keys, values, max_size=5)


documents = st.tuples(
    st.fixed_dictionaries(
        {},
        optional={
            "store": table_of("store") | values,
            "sync": table_of("sync") | values,
            "orgs": st.lists(table_of("orgs"), max_size=3) | values,
            "streams": st.lists(table_of("streams"), max_size=3) | values,
            "alerts": table_of("alerts") | values,
            "names": table_of("names") | values,
        },
    ),
    st.dictionaries(unknown_keys, values, max_size=1),
).map(lambda sections_and_extra: {**sections_and_extra[0], **sections_and_extra[1]})
"""The sections, then at most one unknown top-level key (which may also replace a section). A ``tuples`` of the two,
not a ``flatmap``: the extra key does not depend on the sections, and a flatmap builds a new strategy at each draw
(~0.5 s of the module's CPU at 400 examples)."""


def check_refusal(message: str, doc: dict[str, Any], path: Path) -> None:
    """A refusal is one line that names the file, then the key at fault (or "not valid TOML"), and shows no key."""
    assert "\n" not in message, message
    assert not find_secret({"message": message}, KEY), message
    # Every refusal of a file's content names the file first. This check returned at that prefix, so after the
    # file was named the message's key went unchecked: the key is now checked after it.
    assert message.startswith(f"{path}: "), f"the message does not name the file first: {message!r}"
    message = message.removeprefix(f"{path}: ")
    if message.startswith("not valid TOML: "):
        return
    root = re.split(r"[.\[:]", message, maxsplit=1)[0]
    allowed = {k if not k.startswith("sk-") else "sk-admin-…" for k in doc}
    assert root in allowed, f"the message does not start with a key of the file: {message!r}"
    head, _, advice = message.partition(": ")
    assert head and len(advice) >= 8, f"no advice after the key: {message!r}"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_arbitrary_config_files_load_or_are_refused_naming_the_key(doc: dict[str, Any], tmp_path: Path) -> None:
    """Any generated file loads, or raises a one-line ConfigError that starts with the key at fault."""
    path = tmp_path / "usageledger.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    os.chmod(path, 0o600)
    tried["files"] += 1
    try:
        load_config(path)
    except ConfigError as exc:
        tried["refused"] += 1
        check_refusal(str(exc), doc, path)
    else:
        tried["loaded"] += 1


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80) | st.binary(max_size=80).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_is_a_config_or_a_toml_error(text: str, tmp_path: Path) -> None:
    """Random text: a valid config, a ConfigError, or 'not valid TOML' naming the file; never another exception."""
    path = tmp_path / "usageledger.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    os.chmod(path, 0o600)
    tried["files"] += 1
    try:
        load_config(path)
    except ConfigError as exc:
        tried["refused"] += 1
        assert "\n" not in str(exc), str(exc)
    else:
        tried["loaded"] += 1


BAD_FILES: Final = [
    ("colour = 1", "colour: unknown key"),
    ("[store]\nurl = 3", "store.url: must be a non-empty string"),
    ("[store]\npath = 'x.duckdb'", "store.path: unknown key"),
    ("[sync]\nlag_days = '3'", "sync.lag_days: must be an integer"),
    ("[sync]\nretries = 3", "sync.retries: unknown key"),
    ("[sync]\nsince = 'a while'", "sync.since"),
    ("[[orgs]]\nkey_env = 'A'", "orgs[0].name: missing"),
    ("[[orgs]]\nname = 'a'\n[[orgs]]\nname = 'b'\nbase_url = 5", "orgs[1].base_url: must be a non-empty string"),
    ("[[orgs]]\nname = 'a'\ntoken = 'x'", "orgs[0].token: unknown key"),
    ("[[orgs]]\nname = 'a'\nkey_env = 'K'\n[[orgs]]\nname = 'c'\nkey_env = 'K'", "orgs[1].key_env: org 'c' reads"),
    ("[[streams]]\nendpoint = 'costs'\n[[streams]]\nendpoint = 'images'\ngroup_by = 'model'", "streams[1].group_by"),
    ("[[streams]]\nendpoint = 'costs'\nwidth = '1d'", "streams[0].width: unknown key"),
    ("[[streams]]\nbucket_width = '1d'", "streams[0].endpoint: missing"),
    ("[alerts]\ndaily_budget = 'lots'", "alerts.daily_budget"),
    ("[alerts]\nbudget = 5", "alerts.budget: unknown key"),
    ("[alerts.projects.proj_a]\ndaily = 5", "alerts.projects.proj_a.daily: unknown key"),
    ("[names]\nproj_1 = 'Search'", "names.proj_1: unknown section"),
    ("[names.projects]\nproj_1 = 5", "names.projects.proj_1"),
    ("streams = 3", "streams: must be an array of tables"),
    ("[sync\nlag_days = 3", "not valid TOML"),
]


@pytest.mark.parametrize("command", ["sync", "status", "report", "check"])
@pytest.mark.parametrize(("text", "expected"), BAD_FILES, ids=[e.split(":")[0] for _, e in BAD_FILES])
def test_every_command_refuses_a_bad_config_with_one_line_naming_the_key(
    command: str, text: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync`, `status`, `report` and `check` refuse each bad file: exit 1, one stderr line naming the key."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", KEY)
    (tmp_path / "usageledger.toml").write_text(text + "\n")
    os.chmod(tmp_path / "usageledger.toml", 0o600)
    result = CliRunner().invoke(app, [command])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output and not find_secret({"out": result.output}, KEY)
    tried["files"] += 1


def test_a_world_readable_file_holding_a_key_is_refused_with_chmod_first_whatever_else_is_wrong(tmp_path: Path) -> None:
    """A 0644 file holding a key is refused with the chmod 600 fix before any other error; 0600 loads."""
    path = tmp_path / "usageledger.toml"
    for extra in ("", "base_url = 5\n", "colour = 1\n", "[sync\n"):
        path.write_text(f"[[orgs]]\nname = 'a'\napi_key = '{KEY}'\n{extra}")
        os.chmod(path, 0o644)
        with pytest.raises(ConfigError, match=f"chmod 600 {re.escape(str(path))}") as caught:
            load_config(path)
        assert not find_secret({"message": str(caught.value)}, KEY)
    os.chmod(path, 0o600)
    path.write_text(f"[[orgs]]\nname = 'a'\napi_key = '{KEY}'\n")
    assert load_config(path).orgs[0].api_key == KEY


def test_fuzz_counts_are_reported() -> None:
    """The fuzz above ran (prints how many files were tried, loaded and refused)."""
    print(f"config fuzz: {tried}")
    assert tried["files"] >= 2 * EXAMPLES
