"""Names for IDs: files in three formats, the config section, and the ID fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from usageledger.errors import ConfigError
from usageledger.report.names import Names, load_names, names_from_mapping, shown_names


def test_toml_json_and_csv_give_the_same_names(tmp_path: Path) -> None:
    """The three file formats describe one mapping identically."""
    toml = tmp_path / "names.toml"
    toml.write_text('[projects]\nproj_a = "Search"\n[users]\n"user-1" = "Ada"\n[api_keys]\nkey_9 = "batch"\n')
    js = tmp_path / "names.json"
    js.write_text(
        json.dumps({"projects": {"proj_a": "Search"}, "users": {"user-1": "Ada"}, "api_keys": {"key_9": "batch"}})
    )
    csv = tmp_path / "names.csv"
    csv.write_text("kind,id,name\nproject,proj_a,Search\nuser,user-1,Ada\napi_key,key_9,batch\n")
    loaded = [load_names(p) for p in (toml, js, csv)]
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0].project("proj_a") == "Search"
    assert loaded[0].user("user-1") == "Ada"
    assert loaded[0].api_key("key_9") == "batch"


def test_unknown_id_shows_the_id() -> None:
    """Where no name is known the ID itself is shown; a missing ID reads (none)."""
    names = names_from_mapping({"projects": {"proj_a": "Search"}})
    assert names.project("proj_b") == "proj_b"
    assert names.project(None) == "(none)"
    assert Names().user("user-7") == "user-7"


def test_file_names_win_over_config() -> None:
    """Merging keeps both sources, the later one winning on conflicts."""
    config = names_from_mapping({"projects": {"proj_a": "Old", "proj_b": "Kept"}})
    file = names_from_mapping({"projects": {"proj_a": "New"}})
    merged = config.merged(file)
    assert merged.project("proj_a") == "New" and merged.project("proj_b") == "Kept"
    assert len(merged) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"teams": {}}, r"names\.teams: unknown section"),
        ({"projects": "x"}, r"names\.projects: expected a table"),
        ({"projects": {"proj_a": 3}}, r"names\.projects\.proj_a"),
    ],
)
def test_bad_mapping_names_the_key(data: dict[str, object], message: str) -> None:
    """A wrong section or value raises ConfigError naming where it is."""
    with pytest.raises(ConfigError, match=message):
        names_from_mapping(data)


def test_bad_files_are_config_errors(tmp_path: Path) -> None:
    """Unreadable, malformed or unsupported files raise ConfigError with the path."""
    bad_csv = tmp_path / "n.csv"
    bad_csv.write_text("kind,id,name\nteam,t1,Core\n")
    with pytest.raises(ConfigError, match="kind 'team'"):
        load_names(bad_csv)
    bad_toml = tmp_path / "n.toml"
    bad_toml.write_text("[projects\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_names(bad_toml)
    with pytest.raises(ConfigError, match=r"\.toml, \.json or \.csv"):
        load_names(tmp_path / "n.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_names(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("suffix", "text", "message"),
    [
        (".csv", "kind,id,name\nproject,proj_a,Search\nproject,proj_a,Ads\n", r"n\.csv:3: proj_a is named 'Search'"),
        (".json", '{"projects": {"proj_a": "Search", "proj_a": "Ads"}}', r"n\.json: proj_a is given twice"),
        (".toml", '[projects]\nproj_a = "Search"\nproj_a = "Ads"\n', r"n\.toml: not valid TOML"),
    ],
)
def test_one_id_with_two_names_is_refused(tmp_path: Path, suffix: str, text: str, message: str) -> None:
    """A names file giving one project two names was read with the last one (CSV, JSON); now refused naming it.
    One name for two projects stays allowed: statements and alerts show the ID beside it."""
    path = tmp_path / f"n{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_names(path)
    same = tmp_path / "same.csv"
    same.write_text("kind,id,name\nproject,proj_a,Search\nproject,proj_a,Search\nproject,proj_b,Search\n")
    assert load_names(same).project("proj_b") == "Search"


def test_names_alike_but_for_case_or_blanks_carry_their_ids() -> None:
    """A big org's "Search Assistant", "search assistant", "Search  Assistant" and "Search Assistant " all read as
    one name in a table (and one for ``--project``): each carries its ID; a name alike with none stays bare."""
    table = {
        "proj_a": "Search Assistant",
        "proj_b": "search assistant",
        "proj_c": "Search  Assistant",
        "proj_d": "Search Assistant ",
        "proj_e": "Search Assistant 2",
    }
    shown = shown_names(Names(projects=table)).projects
    assert {ident: shown[ident] for ident in ("proj_c", "proj_d", "proj_e")} == {
        "proj_c": "Search  Assistant (proj_c)",
        "proj_d": "Search Assistant  (proj_d)",
        "proj_e": "Search Assistant 2",
    }
    assert shown["proj_a"] == "Search Assistant (proj_a)" and shown["proj_b"] == "search assistant (proj_b)"
