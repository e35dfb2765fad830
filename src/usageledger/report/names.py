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
from pathlib import Path
from types import MappingProxyType
from typing import Final

from usageledger._sections import KINDS, IdKind, Names, names_from_mapping
from usageledger.errors import ConfigError

__all__ = ["KINDS", "IdKind", "Names", "load_names", "names_from_mapping"]

_CSV_KINDS: Final[Mapping[str, IdKind]] = MappingProxyType(
    {"project": "projects", "user": "users", "api_key": "api_keys"}
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
