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

Most names need no file: :func:`resolve_names` reads them from the store's directory (``usageledger sync`` keeps it,
with history), and lets ``[names]`` and the file override them. The directory's name is the latest version's, so a
renamed project shows its current name, and an archived project or a deleted key, user or service account says so
(``Old tools (archived)``, ``ci-key (deleted)``): a deleted item keeps its name for the spend it had.
"""

from __future__ import annotations

import csv
import io
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from usageledger._paths import read_user_text
from usageledger._sections import KINDS, IdKind, Names, names_from_mapping
from usageledger._text import name_key, one_line
from usageledger.errors import ConfigError
from usageledger.store.directory import LISTED_LAST, BaseStore

__all__ = [
    "DIRECTORY_KINDS",
    "KINDS",
    "IdKind",
    "Names",
    "directory_label",
    "directory_names",
    "load_names",
    "names_from_mapping",
    "resolve_names",
    "shown_names",
    "with_id",
    "without_status",
]

DIRECTORY_KINDS: Final[Mapping[IdKind, tuple[str, ...]]] = MappingProxyType(
    {
        "projects": ("project",),
        # Service accounts own keys: their IDs appear where a key's owner is shown, named like users.
        "users": ("user", "project_service_account"),
        "api_keys": ("project_api_key", "admin_api_key"),
    }
)
"""Which directory kinds name each kind of ID."""

_STATUS_SAID: Final = ("archived", "deleted")

_CSV_KINDS: Final[Mapping[str, IdKind]] = MappingProxyType(
    {"project": "projects", "user": "users", "api_key": "api_keys"}
)


def _from_csv(path: Path) -> Names:
    tables: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    with io.StringIO(read_user_text(path), newline="") as fh:
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
            other = tables[kind].setdefault(ident, name)
            if other != name:  # the last line won without a word: one project shown under two names
                raise ConfigError(f"{path}:{line}: {ident} is named {other!r} on an earlier line; name it once")
    return names_from_mapping(tables, where=str(path))


class _RepeatedKey(ValueError):
    """A JSON object gives one key two values (caught in :func:`load_names`, which names the file)."""


def _no_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object whose keys are distinct: ``json`` keeps a repeated key's last value without a word (TOML
    refuses one itself), so one ID given two names would show the second."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out and out[key] != value:
            raise _RepeatedKey(f"{key} is given twice, as {out[key]!r} and {value!r}; name it once")
        out[key] = value
    return out


def load_names(path: Path) -> Names:
    """Read a names file; the format follows the suffix (``.toml``, ``.json`` or ``.csv``)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _from_csv(path)
        if suffix == ".toml":
            data: object = tomllib.loads(read_user_text(path))
        elif suffix == ".json":
            data = json.loads(read_user_text(path), object_pairs_hook=_no_repeated_keys)
        else:
            raise ConfigError(f"{path}: a names file must end in .toml, .json or .csv")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the names file ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from exc
    except _RepeatedKey as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table of sections ({', '.join(KINDS)})")
    return names_from_mapping(data, where=str(path))


def directory_label(ident: str, name: str | None, status: str | None, email: str | None = None) -> str:
    """How a directory item is shown: its name (else its email, else its ID), and ``(archived)`` or ``(deleted)``."""
    shown = name or email or ident
    return f"{shown} ({status})" if status in _STATUS_SAID else shown


def without_status(label: str) -> str:
    """A label as :func:`directory_label` gives it without the status it says: ``Old tools`` for ``Old tools
    (archived)``, so a project is found by the name it has, not only by how a table shows it."""
    for status in _STATUS_SAID:
        if label.endswith(f" ({status})"):
            return label.removesuffix(f" ({status})")
    return label


def directory_names(store: BaseStore, org: str | None = None) -> Names:
    """Names of every project, user, service account and API key the store's directory has ever seen (of ``org``, or
    of every org), each from its latest version: deleted items included, with their status said."""
    kinds = [k for ks in DIRECTORY_KINDS.values() for k in ks]
    where = f"kind IN ({', '.join(['%s'] * len(kinds))})"
    params: list[object] = [*kinds]
    if org is not None:
        where += " AND org = %s"
        params.append(org)
    rows = store.query(
        f"SELECT kind, id, name, email, status FROM directory_versions WHERE {where}"
        f" ORDER BY valid_from, org, {LISTED_LAST}",
        params,
    )
    tables: dict[IdKind, dict[str, str]] = {kind: {} for kind in KINDS}
    table_of = {k: id_kind for id_kind, ks in DIRECTORY_KINDS.items() for k in ks}
    for kind, ident, name, email, status in rows:  # later versions overwrite earlier ones
        tables[table_of[kind]][ident] = directory_label(ident, name, status, email)
    return Names(
        projects=MappingProxyType(tables["projects"]),
        users=MappingProxyType(tables["users"]),
        api_keys=MappingProxyType(tables["api_keys"]),
    )


def resolve_names(
    store: BaseStore, *, org: str | None = None, overrides: Names | None = None, distinct: bool = True
) -> Names:
    """The names every command shows: the store's directory, overridden by ``overrides`` (``[names]`` and a
    ``--names`` file, see :func:`load_names`).

    With ``distinct`` (the default) they are fit to show: each on one line (a newline or other control character
    the API sent is written as its escape, ``\\n``, so a name never reads as two rows of a table), and names two
    IDs of one kind share carry their ID (``Search (proj_abc)``, ``Search (proj_def)``: two projects called alike,
    or every org's ``Default project``, stay two rows a reader can tell apart). ``distinct=False`` gives the names
    as they are, to look an ID up by its name.
    """
    names = directory_names(store, org)
    names = names.merged(overrides) if overrides is not None else names
    return shown_names(names) if distinct else names


def shown_names(names: Names) -> Names:
    """``names`` fit to show in a table, a page or a message (see :func:`resolve_names`): each on one line, and two
    alike carry their IDs. Never for a ``--format json`` document, which carries any string and gives the ID beside
    each name: a script reads the name as the API (or ``[names]``) has it, ``"Search\\nAssistant"`` no escape."""
    return Names(projects=_distinct(names.projects), users=_distinct(names.users), api_keys=_distinct(names.api_keys))


def _distinct(table: Mapping[str, str]) -> Mapping[str, str]:
    # Alike by the rule every lookup by name follows (name_key: case, and runs of blanks and the ends, ignored):
    # "Search  Assistant" and "Search Assistant " read in a table as "Search Assistant" does, and were shown bare.
    shown = {ident: one_line(label) for ident, label in table.items()}
    held: dict[str, int] = {}
    for label in shown.values():
        held[name_key(label)] = held.get(name_key(label), 0) + 1
    return MappingProxyType(
        {ident: with_id(label, ident) if held[name_key(label)] > 1 else label for ident, label in shown.items()}
    )


def with_id(label: str, ident: str) -> str:
    """``Search (proj_abc)``: a name with its ID, for messages read later (alerts, logs); the ID alone if unnamed,
    and a label that carries its ID already (:func:`resolve_names` gives two alike names their IDs) as it is."""
    return label if label == ident or label.endswith(f" ({ident})") else f"{label} ({ident})"
