"""Names for IDs: results carry only project, user and API key IDs; people want names.

A mapping comes from a file (TOML, JSON or CSV) or from the config file's ``[names]`` section. TOML, JSON and the
``[names]`` section share one shape, a table per kind of ID::

    [projects]
    proj_abc = "Search"
    [users]
    user-123 = "Ada"
    [api_keys]
    key_456 = "batch jobs"

A CSV file has the header ``kind,id,name`` where ``kind`` is ``project``, ``user`` or ``api_key``. Reports show the
name where one is known and the ID where it is not.
"""

from __future__ import annotations

import csv
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

from usageledger.errors import ConfigError

__all__ = ["KINDS", "IdKind", "Names", "load_names", "names_from_mapping"]

IdKind = Literal["projects", "users", "api_keys"]
KINDS: Final[tuple[IdKind, ...]] = ("projects", "users", "api_keys")
_CSV_KINDS: Final[Mapping[str, IdKind]] = MappingProxyType(
    {"project": "projects", "user": "users", "api_key": "api_keys"}
)


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
            raise ConfigError(f"{where}.{kind}: unknown section; use one of: {', '.join(KINDS)}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}.{kind}: expected a table of id = name, got {type(table).__name__}")
        checked: dict[str, str] = {}
        for key, name in table.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"{where}.{kind}: IDs must be non-empty strings, got {key!r}")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}.{kind}.{key}: the name must be a non-empty string, got {name!r}")
            checked[key] = name
        tables[kind] = MappingProxyType(checked)
    return Names(
        projects=tables.get("projects", _empty()),
        users=tables.get("users", _empty()),
        api_keys=tables.get("api_keys", _empty()),
    )


def _from_csv(path: Path) -> Names:
    tables: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or {"kind", "id", "name"} - set(reader.fieldnames):
            raise ConfigError(f"{path}: a names CSV needs the header kind,id,name")
        for line, row in enumerate(reader, start=2):
            kind = _CSV_KINDS.get((row["kind"] or "").strip())
            if kind is None:
                raise ConfigError(
                    f"{path}:{line}: kind {row['kind']!r} is not one of: {', '.join(_CSV_KINDS)}",
                )
            ident, name = (row["id"] or "").strip(), (row["name"] or "").strip()
            if not ident or not name:
                raise ConfigError(f"{path}:{line}: both id and name are required")
            tables[kind][ident] = name
    return names_from_mapping(tables, where=str(path))


def load_names(path: Path) -> Names:
    """Read a names file; the format follows the suffix (``.toml``, ``.json`` or ``.csv``)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _from_csv(path)
        if suffix == ".toml":
            with path.open("rb") as fh:
                data: object = tomllib.load(fh)
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise ConfigError(f"{path}: a names file must end in .toml, .json or .csv")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the names file ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table of sections ({', '.join(KINDS)})")
    return names_from_mapping(data, where=str(path))
