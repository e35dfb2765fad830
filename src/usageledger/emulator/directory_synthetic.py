"""The synthetic organisation's directory, drawn from the seed and consistent with its activity.

* every project, user and API key that usage names is in the directory; projects have names, users names and emails;
* with 47 days of history or more, one project is archived and some keys are deleted a third of the way in
  (:func:`retirements`); from that day on they have no usage (:mod:`usageledger.emulator.org` reads the days), so the
  last 31 days name only live things. Archived projects are listed with ``include_archived=true``; deleted keys are
  no longer listed, as in reality;
* each project has a service account; its keys are owned by project users or by the service account;
* groups (teams) have members and project access: project 0 has two groups, every third project none.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from usageledger.emulator.activity import DAY, mix
from usageledger.emulator.config import EmulatorConfig
from usageledger.emulator.directory import Directory, DirectoryData, Item

__all__ = ["MIN_DAYS_FOR_RETIREMENTS", "Retirements", "retirements", "synthetic_directory"]

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
_WORLD_PROJECT_NAMES: Final = (
    "Search Assistant",
    "search assistant",
    "SEARCH ASSISTANT",
    "Search  Assistant",
    "Search Assistant ",
    "Customer Success Knowledge Base Retrieval-Augmented Generation Pipeline (EU West)",
    "検索アシスタント",
    "客户支持机器人",
    "데이터 파이프라인",
    "営業インサイト・ダッシュボード（アジア太平洋地域、本番環境）",
    "🚀 Launch Bot",
    "Support 🤖 Bot",
    "👩‍💻 Developer Tools",
    "🇯🇵 Japan Rollout",
    "مساعد البحث",
    "בוט תמיכה",
    "Search مساعد 2",
    "תמיכה Support 3",
    "Café Recommendations",
    "Marketing Copy",
    "Internal Tools — Legal & Compliance Review of Vendor Contracts, Phase 2",
    "Voice Agent",
)
"""``names="world"``'s project names, in order, then again with a number (``検索アシスタント 2``): names differing
only by case or spaces (a doubled one, a trailing one), 70 characters and more, wide CJK, emoji (one a joined
sequence, one a flag), Arabic and Hebrew alone and mixed with Latin, and a Latin accent."""
_WORLD_FIRST: Final = ("山田", "محمد", "José", "Zoë", "דוד", "민준", "Siobhán", "伟", "Ngọc", "Ada")
_WORLD_LAST: Final = ("太郎", "العلي", "Núñez", "O'Brien", "כהן", "김", "Ní Bhriain", "王", "Nguyễn", "Lovelace")
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
    """What is archived and deleted, and from which day: the last ``config.archived`` projects (by default one, of
    three or more), and the last key of every other project that has two or more, all a third of the way into the
    history."""
    days = org.config.days
    if days < MIN_DAYS_FOR_RETIREMENTS:
        return Retirements({}, {})
    day = day0 + days // 3
    projects = org.projects
    count = org.config.archived
    if count is None:
        count = 1 if len(projects) >= 3 else 0
    archived = {p.id: day for p in projects[len(projects) - count :]} if count else {}
    keys = {p.api_keys[-1]: day for p in projects if p.index % 2 == 0 and len(p.api_keys) >= 2 and p.id not in archived}
    return Retirements(archived, keys)


def _ident(rng: random.Random, prefix: str, n: int) -> str:
    return prefix + "".join(rng.choice(_ALNUM) for _ in range(n))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class _Builder:
    """Draws the directory of a synthetic organisation whose history starts at ``first_time``."""

    def __init__(self, org: Organisation, first_time: int, retired: Retirements) -> None:
        rng = random.Random(mix(org.config.seed, 0xD1))
        self.retired = retired
        # Creation times hang off a start that does not move with `days` (up to 400), and every draw is made
        # whatever is retired, so an organisation read with more history has the same objects, only some retired.
        before = min(first_time, first_time + (org.config.days - 400) * DAY) - 30 * DAY
        end = (first_time // DAY + org.config.days) * DAY  # the history's end: the emulator's "now", to the day
        world = org.config.names == "world"
        firsts, lasts = (_WORLD_FIRST, _WORLD_LAST) if world else (_FIRST, _LAST)
        people = [(f, last) for last in lasts for f in firsts]
        rng.shuffle(people)
        names = _WORLD_PROJECT_NAMES if world else _PROJECT_NAMES
        users: list[Item] = []
        for i, uid in enumerate(org.users):
            first, last = people[i % len(people)]
            suffix = "" if i < len(people) else str(i // len(people))
            users.append(
                {
                    "object": "organization.user",
                    "id": uid,
                    "name": f"{first} {last}",
                    "email": f"{_local_part(first, last)}{suffix}@example.com",
                    "role": "owner" if i == 0 else "reader",
                    "added_at": before - rng.randint(1, 300) * DAY,
                }
            )
        self.users = {u["id"]: u for u in users}
        self.projects: dict[str, Item] = {}
        self.service_accounts: dict[str, list[Item]] = {}
        self.project_users: dict[str, list[Item]] = {}
        self.keys: dict[str, list[Item]] = {}
        for p in org.projects:
            name = names[p.index % len(names)]
            if p.index >= len(names):
                name += f" {p.index // len(names) + 1}"
            slug = _slug(name) or p.id[-8:].lower()  # a name of no Latin letter has no slug
            archived = retired.projects.get(p.id)
            archived_second = rng.randint(0, DAY - 1)
            created = before - rng.randint(0, 200) * DAY
            self.projects[p.id] = {
                "object": "organization.project",
                "id": p.id,
                "name": name,
                "created_at": created,
                "archived_at": None if archived is None else archived * DAY + archived_second,
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
                "name": f"{slug}-bot",
                "role": "member",
                "created_at": created + 60,
            }
            self.service_accounts[p.id] = [bot]
            listed: list[Item] = []
            for k, key_id in enumerate(p.api_keys):
                deleted = retired.keys.get(key_id)
                last_used_before = rng.randint(60, 3600)
                # Used until its usage stops: the day its project was archived or it was deleted, else the end of
                # the history. Every listed key said null (never used) while its usage went on, so `keys` flagged
                # every key of the demo "never used" unless a stream grouped by api_key_id was synced.
                stopped = retired.until(p.id, key_id)
                last_day = end // DAY if stopped is None else stopped
                if k % 2 == 1:
                    owner: Item = {"type": "service_account", "service_account": _owner(bot, "role")}
                else:
                    member = members[0] if k == 0 else members[-1]
                    owner = {"type": "user", "user": _owner(member, "role", "email", created_at=member["added_at"])}
                key = {
                    "object": "organization.project.api_key",
                    "id": key_id,
                    "name": f"{name if world else slug}-{_key_name(k)}",
                    "redacted_value": f"sk-proj-****{key_id[-4:]}",
                    "created_at": created + 120 + k * 60,
                    "last_used_at": last_day * DAY - last_used_before,
                    "expires_at": None,
                    "owner": owner,
                    "owner_project_access": "active",
                }
                if deleted is None:
                    listed.append(key)
            self.keys[p.id] = listed  # deleted keys are no longer listed (nor retrieved)
        owners = [u for u in users if u["role"] == "owner"]
        self.admin_keys = [
            {
                "object": "organization.admin_api_key",
                "id": _ident(rng, "key_", 16),
                "name": label,
                "redacted_value": f"sk-admin-****{_ident(rng, '', 4)}",
                "created_at": before + k * 7 * DAY,
                "expires_at": None if k != 2 else before + 400 * DAY,
                # the ledger's own key reads usage every day, terraform's now and then; billing-export's was never
                # used (every admin key said null, so the demo's `keys` flagged all three as unused)
                "last_used_at": (None, end - 3600, end - 9 * DAY - 7200)[(k + 1) % 3],
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

    def data(self) -> DirectoryData:
        return DirectoryData(
            top={
                "projects": list(self.projects.values()),
                "users": list(self.users.values()),
                "admin_api_keys": self.admin_keys,
                "groups": self.groups,
            },
            scoped={
                "project_api_keys": self.keys,
                "project_service_accounts": self.service_accounts,
                "project_users": self.project_users,
                "project_groups": self.project_groups,
                "group_users": self.group_users,
            },
        )


def synthetic_directory(org: Organisation, first_time: int, retired: Retirements) -> Directory:
    """The directory of ``org``, whose history starts at ``first_time``, with ``retired`` archived or deleted."""
    return Directory(_Builder(org, first_time, retired).data())


def _key_name(k: int) -> str:
    """The ``k``-th key's name in its project: prod, staging, ci, then prod-2, staging-2, ci-2, prod-3, ..."""
    label = _KEY_NAMES[k % len(_KEY_NAMES)]
    return label if k < len(_KEY_NAMES) else f"{label}-{k // len(_KEY_NAMES) + 1}"


def _local_part(first: str, last: str) -> str:
    """An email's part before the ``@``: ``ada.lovelace``, ``山田.太郎``, ``siobhán.ní-bhriain`` (SMTPUTF8 mail)."""
    return f"{first}.{last}".lower().replace(" ", "-")


def _owner(source: Item, *fields: str, created_at: object = ...) -> Item:
    out = {"id": source["id"], "name": source["name"], **{f: source[f] for f in fields}}
    if created_at is ...:
        out["created_at"] = source.get("created_at", source.get("added_at"))
    elif created_at is not None:
        out["created_at"] = created_at
    return out
