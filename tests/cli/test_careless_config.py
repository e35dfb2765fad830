"""usageledger.toml as someone in a hurry writes it: the cases that still went wrong, one test each."""

from __future__ import annotations

import tomllib

import pytest

from usageledger.config import parse_config
from usageledger.errors import ConfigError


def _config(text: str) -> object:
    return parse_config(tomllib.loads(text))


@pytest.mark.parametrize(
    ("team", "shown"),
    [('"Search "', 'teams."Search "'), ('"A\\nB"', 'teams."A\\nB"'), ('"\\tOps"', 'teams."\\tOps"')],
)
def test_a_team_name_that_cannot_be_shown_as_written_is_refused(team: str, shown: str) -> None:
    """A [teams] name is what `report --by team` prints and `--team` takes: "A\\nB" printed its row over two lines,
    "Search " a team that looked like another. Refused, as an org's name is, with the name meant."""
    with pytest.raises(ConfigError) as caught:
        _config(f'[teams]\n{team} = ["proj_a"]\n')
    message = str(caught.value)
    assert message.startswith(f"{shown}: the team name has spaces at either end or a character that does not print")
    assert "\n" not in message and "\t" not in message


def test_two_team_names_alike_but_for_case_or_spacing_are_refused() -> None:
    """`Search` and `search` were two teams `--team` could not tell apart (its match ignores case and spacing): it
    picked neither and said they were teams "in several orgs". Refused, naming both, with the two fixes."""
    with pytest.raises(ConfigError) as caught:
        _config('[teams]\nSearch = ["proj_a"]\nsearch = ["proj_b"]\n')
    assert str(caught.value) == (
        "teams.search: the same name as team 'Search' but for case or spacing, which --team cannot tell apart; list"
        " the projects of both under one name, or give the teams two names"
    )
    with pytest.raises(ConfigError, match=r"^teams\.\"data platform\": the same name as team 'Data  platform'"):
        _config('[teams]\n"Data  platform" = ["proj_a"]\n"data platform" = ["proj_b"]\n')


def test_team_names_that_differ_are_kept_as_written() -> None:
    """Names that print and differ (inner spaces, other letters, non-ASCII) are teams as written."""
    config = parse_config(tomllib.loads('[teams]\n"Data platform" = ["proj_a"]\n"Équipe β" = ["proj_b"]\n'))
    assert dict(config.teams) == {"proj_a": "Data platform", "proj_b": "Équipe β"}
