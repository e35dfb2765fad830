"""The emulator's directory: the admin API's nine lists and their retrieves, served from one :class:`DirectoryData`.

Routes come from the path templates of ``catalogue.DIRECTORY``. Lists have the API's envelope and the official SDK's
three pagination styles: ``after=<last_id>``, ``after=<id of the last item>`` (admin keys) and ``after=<next>``
(groups' lists, whose ``next`` is an opaque cursor). Limits and errors follow the usage endpoints' rules and shapes.
The data comes from the synthetic organisation (:mod:`usageledger.emulator.directory_synthetic`) or, in replay
mode, from a JSON file (:meth:`Directory.load`, format below).

Directory file: one JSON object; ``projects``, ``users``, ``admin_api_keys`` and ``groups`` are lists of the API's
objects; ``project_api_keys``, ``project_service_accounts``, ``project_users`` and ``project_groups`` map a project
ID to such a list, ``group_users`` a group ID. Every key is optional; each object is checked against the SDK's type.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

import msgspec

from usageledger import catalogue, rules
from usageledger._paths import read_user_text
from usageledger.catalogue import DirectoryEndpoint
from usageledger.emulator.messages import error_body
from usageledger.errors import ConfigError, ReplayError

__all__ = ["Directory", "DirectoryData", "Item"]

_ENCODER: Final = msgspec.json.Encoder()

Item = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DirectoryData:
    """The directory's objects: the organisation's lists by name, and the scoped lists by name and scope ID."""

    top: Mapping[str, list[Item]] = field(default_factory=dict)
    scoped: Mapping[str, Mapping[str, list[Item]]] = field(default_factory=dict)


class Directory:
    """Answers directory requests from ``data``."""

    def __init__(self, data: DirectoryData) -> None:
        self.data = data
        self._projects = {p["id"] for p in data.top.get("projects", [])}
        self._groups = {g["id"] for g in data.top.get("groups", [])}

    @classmethod
    def load(cls, path: Path) -> Directory:
        """A directory file (format in the module docstring), or :class:`ReplayError` naming what is wrong."""
        try:
            raw = json.loads(read_user_text(path))
        except (OSError, ConfigError, json.JSONDecodeError) as exc:
            raise ReplayError(f"{path}: not a readable JSON directory file: {exc}") from None
        if not isinstance(raw, dict):
            raise ReplayError(f"{path}: expected a JSON object of directory lists")
        top: dict[str, list[Item]] = {}
        scoped: dict[str, dict[str, list[Item]]] = {}
        for name, value in raw.items():
            ep = catalogue.DIRECTORY_BY_NAME.get(name)
            if ep is None:
                known = ", ".join(catalogue.DIRECTORY_BY_NAME)
                raise ReplayError(f"{path}: unknown list {name!r}; the lists are: {known}")
            if ep.path_params:
                if not isinstance(value, dict):
                    raise ReplayError(f"{path}: {name} maps a {ep.path_params[0]} to a list of objects")
                scoped[name] = {scope: _checked(path, f"{name}[{scope!r}]", ep, v) for scope, v in value.items()}
            else:
                top[name] = _checked(path, name, ep, value)
        return cls(DirectoryData(top, scoped))

    # --- answering -----------------------------------------------------------------------------------------

    def route(self, path: str) -> tuple[DirectoryEndpoint, dict[str, str], str | None] | None:
        """The directory list (or item) a path names, with its path IDs; ``None`` for no directory path."""
        for ep in catalogue.DIRECTORY:
            for template, item in ((ep.path, False), (ep.item_path, True)):
                pattern = "^" + re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", template) + "$"
                match = re.match(pattern, path)
                if match is not None:
                    args = {k: unquote(v) for k, v in match.groupdict().items()}
                    item_id = args.pop(ep.item_param) if item else None
                    return ep, args, item_id
        return None

    def answer(
        self, ep: DirectoryEndpoint, args: Mapping[str, str], item_id: str | None, query: str
    ) -> tuple[int, bytes]:
        """The status and body: 200 and the list or item, 400 for a bad parameter, 404 for an unknown ID."""
        try:
            return 200, self._answer(ep, args, item_id, query)
        except _Refused as exc:
            return exc.status, error_body(exc.message, "invalid_request_error", exc.param, exc.code)

    def _answer(self, ep: DirectoryEndpoint, args: Mapping[str, str], item_id: str | None, query: str) -> bytes:
        items = self._items(ep, args)
        if item_id is not None:
            for item in items:
                if item[ep.key_field] == item_id:
                    return _ENCODER.encode(item)
            raise _Refused(404, None, f"No {ep.item.replace('_', ' ')} found with ID '{item_id}'.", "not_found")
        return self._page(ep, items, _parse(ep, query))

    def _items(self, ep: DirectoryEndpoint, args: Mapping[str, str]) -> list[Item]:
        for name, known in (("project_id", self._projects), ("group_id", self._groups)):
            scope = args.get(name)
            if scope is not None and scope not in known:
                raise _Refused(404, None, f"No {name[:-3]} found with ID '{scope}'.", "not_found")
        if ep.path_params:
            items = self.data.scoped.get(ep.name, {}).get(args[ep.path_params[0]], [])
        else:
            items = self.data.top.get(ep.name, [])
        return sorted(items, key=lambda i: (i.get("created_at") or i.get("added_at") or 0, i[ep.key_field]))

    def _page(self, ep: DirectoryEndpoint, items: list[Item], q: _Query) -> bytes:
        if ep.name == "projects" and not q.params.get("include_archived"):
            items = [i for i in items if i["status"] == "active"]
        if q.params.get("owner_project_access") == "inactive":
            items = []  # every owner here still has access to the project
        emails = q.params.get("emails")
        if emails:
            wanted = {e.lower() for e in emails}
            items = [i for i in items if str(i.get("email", "")).lower() in wanted]
        if q.params.get("order") == "desc":
            items = items[::-1]
        start = 0
        if q.after is not None:
            key = _from_next(ep, q.after) if ep.pagination == "next" else q.after
            positions = [n for n, i in enumerate(items) if i[ep.key_field] == key]
            if not positions and key != _BEGINNING:
                raise _Refused(
                    400, "after", f"Invalid 'after': '{q.after}' is not a cursor of this list.", "invalid_cursor"
                )
            start = positions[0] + 1 if positions else 0
        limit = ep.limit.default if q.limit is None else q.limit
        data = items[start : start + limit]
        has_more = start + limit < len(items)
        body: dict[str, object] = {"object": "list", "data": data}
        if ep.pagination == "next":
            # The cursor holds the position reached: after the page's last item, or, for an empty page (groups
            # take limit=0), where the page began. has_more with no next would leave a client nowhere to go.
            reached = start + len(data)
            last = items[reached - 1][ep.key_field] if reached else _BEGINNING
            body["next"] = _to_next(ep, last) if has_more else None
        else:
            body["first_id"] = data[0][ep.key_field] if data else None
            body["last_id"] = data[-1][ep.key_field] if data else None
        body["has_more"] = has_more
        return _ENCODER.encode(body)


class _Refused(Exception):
    """A refused directory request: the status and the API's error fields."""

    def __init__(self, status: int, param: str | None, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.message, self.code = status, param, message, code


_BEGINNING: Final = ""
"""The key a groups ``next`` cursor holds for the start of a list (an empty first page, ``limit=0``)."""


def _to_next(ep: DirectoryEndpoint, key: str) -> str:
    return base64.urlsafe_b64encode(f"{ep.name}:{key}".encode()).decode().rstrip("=")


def _from_next(ep: DirectoryEndpoint, token: str) -> str | None:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    name, _, key = text.partition(":")
    return key if name == ep.name else None


@dataclass(frozen=True, slots=True)
class _Query:
    limit: int | None
    after: str | None
    params: Mapping[str, Any]


def _parse(ep: DirectoryEndpoint, query: str) -> _Query:
    """The query string, checked as the API checks it; :class:`_Refused` (400) names the parameter."""
    scalars: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for raw, value in parse_qsl(query, keep_blank_values=True):
        name = raw[:-2] if raw.endswith("[]") else raw
        lists.setdefault(name, []).append(value)
        scalars[name] = value
    known = {p.name: p for p in ep.params}
    params: dict[str, object] = {}
    for name, value in scalars.items():
        if name in ("limit", "after"):
            continue
        p = known.get(name)
        if p is None:
            allowed = ", ".join(f"'{n}'" for n in ("after", "limit", *known))
            raise _Refused(
                400,
                name,
                f"Unrecognized request argument supplied: {name}. Supported parameters are: {allowed}.",
                "unknown_parameter",
            )
        if p.kind == "bool":
            if value.lower() not in ("true", "false"):
                raise _Refused(400, name, f"Invalid value for '{name}': '{value}'. Expected a boolean.")
            params[name] = value.lower() == "true"
        elif p.kind == "choice":
            if value not in p.allowed:
                shown = ", ".join(f"'{a}'" for a in p.allowed)
                raise _Refused(400, name, f"Invalid value for '{name}': '{value}'. Supported values are: {shown}.")
            params[name] = value
        else:
            params[name] = _split(lists[name])
    limit = None
    if "limit" in scalars:
        parsed = rules.query_integer("limit", scalars["limit"])
        if isinstance(parsed, rules.Violation):
            raise _Refused(400, parsed.param, parsed.message, parsed.code)
        violation = rules.limit_violation(parsed, ep.limit)
        if violation is not None:
            raise _Refused(400, violation.param, violation.message, violation.code)
        limit = parsed
    after = scalars.get("after") or None
    return _Query(limit, after, params)


def _split(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(part for v in values for part in v.split(",") if part)


def _checked(path: Path, where: str, ep: DirectoryEndpoint, value: object) -> list[Item]:
    """The objects of one list, each checked against its SDK type; a bad one is a :class:`ReplayError`."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ReplayError(f"{path}: {where} must be a list of objects")
    for n, item in enumerate(value):
        try:
            msgspec.convert(item, ep.item_type)
        except msgspec.ValidationError as exc:
            raise ReplayError(f"{path}: {where}[{n}] is not a {ep.item.replace('_', ' ')}: {exc}") from None
    return list(value)
