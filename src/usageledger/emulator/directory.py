"""The synthetic organisation's directory: names for every ID its usage holds, served like the admin API.

Drawn from the seed, beside :class:`~usageledger.emulator.org.Organisation` and consistent with its activity:

* every project, user and API key that usage names is in the directory; projects have names, users names and emails;
* with 47 days of history or more, one project is archived and some keys are deleted a third of the way in
  (:func:`retirements`); from that day on they have no usage, so the last 31 days name only live things. Archived
  projects are listed with ``include_archived=true``; deleted keys are no longer listed, as in reality;
* each project has a service account; its keys are owned by project users or by the service account;
* groups (teams) have members and project access: one project has two groups, every third project none.

:class:`Directory` answers the nine lists and their retrieves with the API's envelope and the SDK's three pagination
styles: ``after=<last_id>``, ``after=<id of the last item>`` (admin keys) and ``after=<next>`` (groups' lists, whose
``next`` is an opaque cursor). Limits and errors follow the usage endpoints' rules and shapes.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, unquote

import msgspec

from usageledger import catalogue, rules
from usageledger.catalogue import DirectoryEndpoint
from usageledger.emulator.activity import DAY, mix
from usageledger.emulator.config import EmulatorConfig
from usageledger.emulator.messages import error_body

__all__ = ["Directory", "Retirements", "retirements"]

_ENCODER: Final = msgspec.json.Encoder()
_ALNUM: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_PROJECT_NAMES: Final = (
    "Search Assistant",
    "Support Bot",
    "Data Pipeline",
    "Marketing Copy",
    "Internal Tools",
    "Mobile App",
    "Research Lab",
    "Sales Insights",
    "Docs QA",
    "Voice Agent",
)
_FIRST: Final = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim", "Margaret")
_LAST: Final = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lee")
_GROUPS: Final = ("Platform", "Research", "Growth", "Finance", "Data")
_KEY_NAMES: Final = ("prod", "staging", "ci")
MIN_DAYS_FOR_RETIREMENTS: Final = 47
"""With fewer days of history nothing is archived or deleted (the last 31 days must name only live things)."""


class _Project(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def users(self) -> tuple[str, ...]: ...
    @property
    def api_keys(self) -> tuple[str, ...]: ...


class Organisation(Protocol):
    """What the directory reads of :class:`usageledger.emulator.org.Organisation` (which imports this module)."""

    @property
    def config(self) -> EmulatorConfig: ...
    @property
    def users(self) -> tuple[str, ...]: ...
    @property
    def projects(self) -> Sequence[_Project]: ...


@dataclass(frozen=True, slots=True)
class Retirements:
    """The day (Unix day number) from which an archived project or a deleted key has no usage."""

    projects: Mapping[str, int]
    keys: Mapping[str, int]

    def until(self, project_id: object, api_key_id: object) -> int | None:
        days = [d for d in (self.projects.get(str(project_id)), self.keys.get(str(api_key_id))) if d is not None]
        return min(days) if days else None


def retirements(org: Organisation, day0: int) -> Retirements:
    """What is archived and deleted, and from which day: the last project (of three or more), and the last key of
    every other project that has two or more, all a third of the way into the history."""
    days = org.config.days
    if days < MIN_DAYS_FOR_RETIREMENTS:
        return Retirements({}, {})
    day = day0 + days // 3
    projects = org.projects
    archived = {projects[-1].id: day} if len(projects) >= 3 else {}
    keys = {p.api_keys[-1]: day for p in projects if p.index % 2 == 0 and len(p.api_keys) >= 2 and p.id not in archived}
    return Retirements(archived, keys)


def _ident(rng: random.Random, prefix: str, n: int) -> str:
    return prefix + "".join(rng.choice(_ALNUM) for _ in range(n))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


Item = dict[str, Any]


@dataclass(slots=True)
class _List:
    """One list's items in the API's order (creation time, then ID), and the items no longer listed."""

    items: list[Item]
    hidden: list[Item]


class Directory:
    """The directory of a synthetic organisation at ``first_time`` (the first second of its history)."""

    def __init__(self, org: Organisation, first_time: int, retired: Retirements) -> None:
        rng = random.Random(mix(org.config.seed, 0xD1))
        self.retired = retired
        before = first_time - 30 * DAY
        people = [(f, last) for last in _LAST for f in _FIRST]
        rng.shuffle(people)
        users: list[Item] = []
        for i, uid in enumerate(org.users):
            first, last = people[i % len(people)]
            suffix = "" if i < len(people) else str(i // len(people))
            users.append(
                {
                    "object": "organization.user",
                    "id": uid,
                    "name": f"{first} {last}",
                    "email": f"{first.lower()}.{last.lower()}{suffix}@example.com",
                    "role": "owner" if i == 0 else "reader",
                    "added_at": before - rng.randint(1, 300) * DAY,
                }
            )
        self.users = {u["id"]: u for u in users}
        self.projects: dict[str, Item] = {}
        self.service_accounts: dict[str, list[Item]] = {}
        self.project_users: dict[str, list[Item]] = {}
        self.keys: dict[str, _List] = {}
        for p in org.projects:
            name = _PROJECT_NAMES[p.index % len(_PROJECT_NAMES)]
            if p.index >= len(_PROJECT_NAMES):
                name += f" {p.index // len(_PROJECT_NAMES) + 1}"
            archived = retired.projects.get(p.id)
            created = before - rng.randint(0, 200) * DAY
            self.projects[p.id] = {
                "object": "organization.project",
                "id": p.id,
                "name": name,
                "created_at": created,
                "archived_at": None if archived is None else archived * DAY + rng.randint(0, DAY - 1),
                "status": "active" if archived is None else "archived",
                "external_key_id": None,
            }
            members = [
                {
                    "object": "organization.project.user",
                    "id": uid,
                    "name": self.users[uid]["name"],
                    "email": self.users[uid]["email"],
                    "role": "owner" if k == 0 else "member",
                    "added_at": created + k * 3600,
                }
                for k, uid in enumerate(p.users)
            ]
            self.project_users[p.id] = members
            bot = {
                "object": "organization.project.service_account",
                "id": _ident(rng, "svc_acct_", 24),
                "name": f"{_slug(name)}-bot",
                "role": "member",
                "created_at": created + 60,
            }
            self.service_accounts[p.id] = [bot]
            listed: list[Item] = []
            hidden: list[Item] = []
            for k, key_id in enumerate(p.api_keys):
                deleted = retired.keys.get(key_id)
                if k % 2 == 1:
                    owner: Item = {"type": "service_account", "service_account": _owner(bot, "role")}
                else:
                    member = members[0] if k == 0 else members[-1]
                    owner = {"type": "user", "user": _owner(member, "role", "email", created_at=member["added_at"])}
                key = {
                    "object": "organization.project.api_key",
                    "id": key_id,
                    "name": f"{_slug(name)}-{_KEY_NAMES[k % len(_KEY_NAMES)]}",
                    "redacted_value": f"sk-proj-****{key_id[-4:]}",
                    "created_at": created + 120 + k * 60,
                    "last_used_at": None if deleted is None else deleted * DAY - rng.randint(60, 3600),
                    "expires_at": None,
                    "owner": owner,
                    "owner_project_access": "active",
                }
                (listed if deleted is None else hidden).append(key)
            self.keys[p.id] = _List(listed, hidden)
        owners = [u for u in users if u["role"] == "owner"]
        self.admin_keys = [
            {
                "object": "organization.admin_api_key",
                "id": _ident(rng, "key_", 16),
                "name": label,
                "redacted_value": f"sk-admin-****{_ident(rng, '', 4)}",
                "created_at": before + k * 7 * DAY,
                "expires_at": None if k != 2 else before + 400 * DAY,
                "last_used_at": None,
                "owner": {"type": "user", "object": "organization.user", **_owner(owners[0], "role")},
            }
            for k, label in enumerate(("usage-ledger", "terraform", "billing-export"))
        ]
        self._groups(org, rng, before)

    def _groups(self, org: Organisation, rng: random.Random, before: int) -> None:
        count = min(len(_GROUPS), max(2, len(org.projects) // 2 + 1))
        self.groups: list[Item] = [
            {
                "object": "group",
                "id": _ident(rng, "group_", 24),
                "name": _GROUPS[g],
                "group_type": "group",
                "is_scim_managed": False,
                "created_at": before + g * DAY,
            }
            for g in range(count)
        ]
        self.group_users: dict[str, list[Item]] = {g["id"]: [] for g in self.groups}
        for user in self.users.values():
            for g in rng.sample(self.groups, rng.randint(1, min(2, count))):
                self.group_users[g["id"]].append({"object": "group.user", **_owner(user, "email", created_at=None)})
        self.project_groups: dict[str, list[Item]] = {}
        for p in org.projects:
            chosen = [] if p.index % 3 == 2 else [self.groups[p.index % count]]
            if p.index == 0:
                chosen.append(self.groups[1 % count])
            self.project_groups[p.id] = [
                {
                    "object": "project.group",
                    "project_id": p.id,
                    "group_id": g["id"],
                    "group_name": g["name"],
                    "group_type": g["group_type"],
                    "created_at": self.projects[p.id]["created_at"] + DAY,
                }
                for g in chosen
            ]

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
        project = args.get("project_id")
        if project is not None and project not in self.projects:
            raise _Refused(404, None, f"No project found with ID '{project}'.", "not_found")
        group = args.get("group_id")
        if group is not None and group not in self.group_users:
            raise _Refused(404, None, f"No group found with ID '{group}'.", "not_found")
        lists: dict[str, list[Item]] = {
            "projects": list(self.projects.values()),
            "users": list(self.users.values()),
            "admin_api_keys": self.admin_keys,
            "groups": self.groups,
        }
        if project is not None:
            lists |= {
                "project_api_keys": self.keys[project].items,
                "project_service_accounts": self.service_accounts[project],
                "project_users": self.project_users[project],
                "project_groups": self.project_groups[project],
            }
        if group is not None:
            lists["group_users"] = self.group_users[group]
        return sorted(lists[ep.name], key=lambda i: (i.get("created_at") or i.get("added_at") or 0, i[ep.key_field]))

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
            if not positions:
                raise _Refused(
                    400, "after", f"Invalid 'after': '{q.after}' is not a cursor of this list.", "invalid_cursor"
                )
            start = positions[0] + 1
        limit = ep.limit.default if q.limit is None else q.limit
        data = items[start : start + limit]
        has_more = start + limit < len(items)
        body: dict[str, object] = {"object": "list", "data": data}
        if ep.pagination == "next":
            last = data[-1][ep.key_field] if data else None
            body["next"] = _to_next(ep, last) if has_more and last is not None else None
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


def _owner(source: Item, *fields: str, created_at: object = ...) -> Item:
    out = {"id": source["id"], "name": source["name"], **{f: source[f] for f in fields}}
    if created_at is ...:
        out["created_at"] = source.get("created_at", source.get("added_at"))
    elif created_at is not None:
        out["created_at"] = created_at
    return out


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
        try:
            limit = int(scalars["limit"])
        except ValueError:
            raise _Refused(
                400, "limit", f"Invalid value for 'limit': '{scalars['limit']}'. Expected an integer.", "invalid_type"
            ) from None
        violation = rules.limit_violation(limit, ep.limit)
        if violation is not None:
            raise _Refused(400, violation.param, violation.message, violation.code)
    after = scalars.get("after") or None
    return _Query(limit, after, params)


def _split(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(part for v in values for part in v.split(",") if part)
