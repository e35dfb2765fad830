"""The config file's report sections, ``[alerts]``, ``[names]`` and ``[teams]``, as typed and validated records.

They sit below both :mod:`usageledger.config` (which refuses a mistake in any section, whichever command runs) and
:mod:`usageledger.report` (which acts on them), so the config layer never imports the report layer. The report
modules re-export these names: ``usageledger.report.alerts.AlertConfig`` and ``usageledger.report.names.Names``
stay where users found them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Literal

from usageledger._amounts import parse_amount
from usageledger._text import closest, one_line
from usageledger.errors import ConfigError, ParameterError
from usageledger.timeutil import parse_duration

__all__ = [
    "ALERT_KEYS",
    "KINDS",
    "MAD_SCALE",
    "RESERVED_TEAMS",
    "UNASSIGNED",
    "AlertConfig",
    "AnomalyRule",
    "Budget",
    "IdKind",
    "Names",
    "names_from_mapping",
    "parse_alert_config",
    "parse_teams",
]

IdKind = Literal["projects", "users", "api_keys"]
KINDS: Final[tuple[IdKind, ...]] = ("projects", "users", "api_keys")

MAD_SCALE: Final = Decimal("0.6745")
"""Makes the MAD comparable with a standard deviation for normal data (Iglewicz and Hoaglin)."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Spending limits in the costs' currency; ``None`` means no limit."""

    daily: Decimal | None = None
    monthly: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AnomalyRule:
    threshold: Decimal = Decimal("3.5")
    window_days: int = 28
    min_increase: Decimal = Decimal("1.00")
    min_baseline_days: int = 7

    def describe(self) -> str:
        return (
            f"robust z-score of the day's spend against the {self.window_days} days before it "
            f"(z = {MAD_SCALE} * (spend - median) / MAD); alert when z > {self.threshold} "
            f"and the increase over the median is at least {self.min_increase}"
        )


def _no_projects() -> Mapping[str, Budget]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Thresholds for ``usageledger check``, from the config's ``[alerts]`` section and/or flags."""

    budget: Budget = Budget()
    project_budgets: Mapping[str, Budget] = field(default_factory=_no_projects)
    anomaly: AnomalyRule = AnomalyRule()
    stale_after: timedelta = timedelta(hours=48)
    """Staleness fires when the newest bucket ended longer ago (:func:`stale_after_span` reads it)."""
    forecast_over: Decimal | None = None
    """Alert when this month's forecast month-end spend is above it (``check --forecast-over``)."""
    credit_below: Decimal | None = None
    """Alert when the prepaid credit balance is below it (``check --credit-below``)."""

    def replace(self, **changes: Any) -> AlertConfig:
        return dataclasses.replace(self, **changes)


# -- [alerts] ---------------------------------------------------------------------------------------------

ALERT_KEYS: Final = (
    "daily_budget",
    "monthly_budget",
    "stale_after",
    "anomaly_threshold",
    "anomaly_window_days",
    "anomaly_min_increase",
    "anomaly_min_baseline_days",
    "projects",
    "forecast_over",
    "credit_below",
)
_PROJECT_KEYS: Final = ("daily_budget", "monthly_budget")


def _money(key: str, value: object, *, money: bool = True) -> Decimal:
    try:
        return parse_amount(value, param=key, example='150 or "12.50"', money=money)
    except ParameterError as exc:
        raise ConfigError(str(exc)) from None


def _positive_int(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: expected a whole number of at least {minimum}, got {value!r}")
    return value


def key_path(where: str, key: object) -> str:
    """``where.key`` for a message, the key as TOML would write it: bare when it is a bare key, else quoted with
    its control characters escaped, so a key such as ``"a\\nb"`` keeps a refusal on one line and still says which
    key is at fault. ``where`` empty: the key alone."""
    text = str(key)
    if not _BARE_KEY.fullmatch(text):
        text = '"' + one_line(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    return f"{where}.{text}" if where else text


_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def _budget(where: str, table: Mapping[str, object], keys: Sequence[str]) -> Budget:
    return Budget(
        daily=_money(f"{where}.daily_budget", table["daily_budget"]) if "daily_budget" in table else None,
        monthly=_money(f"{where}.monthly_budget", table["monthly_budget"]) if "monthly_budget" in table else None,
    )


def check_keys(where: str, table: Mapping[str, object], allowed: Sequence[str]) -> None:
    """The one refusal of a key a config table does not take (every section's): it names the key, the one it most
    likely meant (`[sotre]` is `store`) and the keys the table takes."""
    for key in table:
        if key not in allowed:
            close = closest(str(key), allowed)
            meant = f" (did you mean {close}?)" if close else ""
            raise ConfigError(f"{key_path(where, key)}: unknown key{meant}; expected one of: {', '.join(allowed)}")


STALE_AFTER_MINIMUM: Final = 3600
"""The shortest staleness limit: buckets are an hour at the finest the store keeps final, so `0s` (which fired on
every run) or `30m` cannot be judged."""


def stale_after_span(value: object, param: str) -> timedelta:
    """A staleness limit (``48h``; ``check --stale-after``, ``[alerts] stale_after``): a bare number, a negative
    span or one under an hour is a one-line :class:`ParameterError` naming ``param``."""
    return timedelta(seconds=parse_duration(value, param=param, minimum=STALE_AFTER_MINIMUM))


def parse_alert_config(section: Mapping[str, object], *, where: str = "alerts") -> AlertConfig:
    """Validate the config's raw ``[alerts]`` mapping; an unknown key or a wrong type raises ``ConfigError``
    naming the key."""
    check_keys(where, section, ALERT_KEYS)
    defaults = AnomalyRule()
    rule = AnomalyRule(
        threshold=_money(
            f"{where}.anomaly_threshold", section.get("anomaly_threshold", defaults.threshold), money=False
        ),
        window_days=_positive_int(
            f"{where}.anomaly_window_days", section.get("anomaly_window_days", defaults.window_days), 2
        ),
        min_increase=_money(
            f"{where}.anomaly_min_increase", section.get("anomaly_min_increase", defaults.min_increase)
        ),
        min_baseline_days=_positive_int(
            f"{where}.anomaly_min_baseline_days",
            section.get("anomaly_min_baseline_days", defaults.min_baseline_days),
            1,
        ),
    )
    if rule.min_baseline_days > rule.window_days:
        raise ConfigError(f"{where}.anomaly_min_baseline_days: cannot exceed anomaly_window_days")
    stale = AlertConfig().stale_after
    if "stale_after" in section:
        raw = section["stale_after"]
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ConfigError(f'{where}.stale_after: expected a duration such as "36h", got {raw!r}')
        try:
            stale = stale_after_span(raw, f"{where}.stale_after")
        except ParameterError as exc:
            raise ConfigError(str(exc)) from None
    projects: dict[str, Budget] = {}
    raw_projects = section.get("projects", {})
    if not isinstance(raw_projects, Mapping):
        raise ConfigError(
            f"{where}.projects: expected a table of project (its ID or name) = {{ daily_budget, monthly_budget }}"
        )
    for project_id, table in raw_projects.items():
        at = key_path(f"{where}.projects", project_id)
        if not isinstance(table, Mapping):
            raise ConfigError(f"{at}: expected a table with daily_budget and/or monthly_budget")
        if not str(project_id).strip() or str(project_id) != str(project_id).strip():
            # an empty or padded key matches no row: the budget would guard nothing, with no word said
            raise ConfigError(
                f"{at}: the project is empty or padded with spaces; write its ID as issued (proj_...) or its name"
            )
        check_keys(at, table, _PROJECT_KEYS)
        projects[str(project_id)] = _budget(at, table, _PROJECT_KEYS)
    return AlertConfig(
        budget=_budget(where, section, _PROJECT_KEYS),
        project_budgets=MappingProxyType(projects),
        anomaly=rule,
        stale_after=stale,
        forecast_over=_money(f"{where}.forecast_over", section["forecast_over"])
        if "forecast_over" in section
        else None,
        credit_below=_money(f"{where}.credit_below", section["credit_below"]) if "credit_below" in section else None,
    )


# -- [names] ----------------------------------------------------------------------------------------------------------


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Names:
    """ID → name, per kind of ID. Lookups fall back to the ID itself."""

    projects: Mapping[str, str] = field(default_factory=_empty)
    users: Mapping[str, str] = field(default_factory=_empty)
    api_keys: Mapping[str, str] = field(default_factory=_empty)

    def project(self, project_id: str | None) -> str:
        """The project's name where known, else its ID (``(none)`` for a missing ID)."""
        return self._lookup(self.projects, project_id)

    def user(self, user_id: str | None) -> str:
        return self._lookup(self.users, user_id)

    def api_key(self, api_key_id: str | None) -> str:
        return self._lookup(self.api_keys, api_key_id)

    def merged(self, other: Names) -> Names:
        """A copy where ``other``'s names win over this one's."""
        return Names(
            projects=MappingProxyType({**self.projects, **other.projects}),
            users=MappingProxyType({**self.users, **other.users}),
            api_keys=MappingProxyType({**self.api_keys, **other.api_keys}),
        )

    def __len__(self) -> int:
        return len(self.projects) + len(self.users) + len(self.api_keys)

    @staticmethod
    def _lookup(table: Mapping[str, str], key: str | None) -> str:
        if key is None:
            return "(none)"
        return table.get(key, key)


def names_from_mapping(data: Mapping[str, object], *, where: str = "names") -> Names:
    """Validate a ``{kind: {id: name}}`` mapping (the TOML/JSON shape or the config's ``[names]``).

    Unknown kinds and non-string IDs or names raise :class:`ConfigError` naming the offending key.
    """
    tables: dict[IdKind, Mapping[str, str]] = {}
    for kind, table in data.items():
        if kind not in KINDS:
            raise ConfigError(f"{key_path(where, kind)}: unknown section; use one of: {', '.join(KINDS)}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}.{kind}: expected a table of id = name, got {type(table).__name__}")
        checked: dict[str, str] = {}
        for key, name in table.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"{where}.{kind}: IDs must be non-empty strings, got {key!r}")
            if not isinstance(name, str) or not name:
                raise ConfigError(
                    f"{key_path(f'{where}.{kind}', key)}: the name must be a non-empty string, got {name!r}"
                )
            checked[key] = name
        tables[kind] = MappingProxyType(checked)
    return Names(
        projects=tables.get("projects", _empty()),
        users=tables.get("users", _empty()),
        api_keys=tables.get("api_keys", _empty()),
    )


# -- [teams] ----------------------------------------------------------------------------------------------------------

UNASSIGNED: Final = "unassigned"
"""The team of a project in no ``[teams]`` entry and no directory group, and of spend with no project."""

RESERVED_TEAMS: Final = (UNASSIGNED, "total")
"""The rows of spend by team that are no team (the unassigned spend, and the total row): no ``[teams]`` name."""


def parse_teams(section: Mapping[str, object], *, where: str = "teams") -> Mapping[str, str]:
    """Validate the config's ``[teams]`` (team name = [project IDs]) into ``{project_id: team}``.

    A project belongs to one team: one listed under two teams raises :class:`ConfigError` naming both.
    """
    teams: dict[str, str] = {}
    for team, projects in section.items():
        if not isinstance(team, str) or not team.strip():
            raise ConfigError(f"{where}: team names must be non-empty strings, got {team!r}")
        if not isinstance(projects, list) or not all(isinstance(p, str) and p for p in projects):
            raise ConfigError(
                f'{key_path(where, team)}: expected a list of project IDs, such as ["proj_abc"], got {projects!r}'
            )
        for project in projects:
            other = teams.setdefault(project, team)
            if other != team:
                raise ConfigError(
                    f"{key_path(where, team)}: project {project} is already in team {other}; list it once"
                )
    return MappingProxyType(teams)
