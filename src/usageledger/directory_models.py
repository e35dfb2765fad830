"""Typed models of the admin API's directory: projects, users, keys, service accounts, groups and the list page.

Field for field the official SDK's types (openai 3.57, ``types/admin/organization/``), as ``msgspec`` structs decoded
straight from the response bytes. As in :mod:`usageledger.models`, unknown fields are ignored, and a closed value set
the API may grow (``status``, ``role``, ``group_type``) is a plain string so a new value does not fail a page.
"""

from __future__ import annotations

from typing import Generic, TypeAlias, TypeVar

import msgspec

__all__ = [
    "AdminApiKey",
    "AdminApiKeyOwner",
    "DirectoryItem",
    "DirectoryPage",
    "Group",
    "GroupUser",
    "OrganizationUser",
    "Project",
    "ProjectApiKey",
    "ProjectApiKeyOwner",
    "ProjectGroup",
    "ProjectServiceAccount",
    "ProjectUser",
    "ServiceAccountOwner",
    "UserOwner",
    "UserProject",
    "UserProjects",
]


class _Item(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Common base of the directory's objects."""


class Project(_Item, kw_only=True):
    id: str
    created_at: int
    object: str = "organization.project"
    name: str | None = None
    archived_at: int | None = None
    status: str | None = None
    """``active`` or ``archived``."""
    external_key_id: str | None = None


class UserProject(_Item, kw_only=True):
    id: str | None = None
    name: str | None = None
    role: str | None = None


class UserProjects(_Item, kw_only=True):
    data: list[UserProject]
    object: str = "list"


class OrganizationUser(_Item, kw_only=True):
    id: str
    added_at: int
    object: str = "organization.user"
    email: str | None = None
    name: str | None = None
    role: str | None = None
    """``owner`` or ``reader``."""
    api_key_last_used_at: int | None = None
    created: int | None = None
    is_service_account: bool | None = None
    is_scim_managed: bool | None = None
    projects: UserProjects | None = None


class AdminApiKeyOwner(_Item, kw_only=True):
    id: str | None = None
    created_at: int | None = None
    name: str | None = None
    object: str | None = None
    role: str | None = None
    type: str | None = None


class AdminApiKey(_Item, kw_only=True):
    id: str
    created_at: int
    owner: AdminApiKeyOwner
    redacted_value: str
    object: str = "organization.admin_api_key"
    name: str | None = None
    expires_at: int | None = None
    last_used_at: int | None = None


class UserOwner(_Item, kw_only=True):
    id: str
    created_at: int
    email: str
    name: str
    role: str


class ServiceAccountOwner(_Item, kw_only=True):
    id: str
    created_at: int
    name: str
    role: str


class ProjectApiKeyOwner(_Item, kw_only=True):
    type: str | None = None
    """``user`` or ``service_account``."""
    user: UserOwner | None = None
    service_account: ServiceAccountOwner | None = None


class ProjectApiKey(_Item, kw_only=True):
    id: str
    created_at: int
    name: str
    owner: ProjectApiKeyOwner
    owner_project_access: str
    """``active`` or ``inactive``: whether the owner currently has access to the project."""
    redacted_value: str
    object: str = "organization.project.api_key"
    last_used_at: int | None = None
    expires_at: int | None = None


class ProjectServiceAccount(_Item, kw_only=True):
    id: str
    created_at: int
    name: str
    role: str
    """``owner``, ``member`` or ``none``."""
    object: str = "organization.project.service_account"


class ProjectUser(_Item, kw_only=True):
    id: str
    added_at: int
    role: str
    """``owner`` or ``member``."""
    object: str = "organization.project.user"
    email: str | None = None
    name: str | None = None


class Group(_Item, kw_only=True):
    id: str
    created_at: int
    name: str
    group_type: str = "group"
    """``group`` or ``tenant_group``."""
    is_scim_managed: bool = False


class GroupUser(_Item, kw_only=True):
    id: str
    name: str
    email: str | None = None


class ProjectGroup(_Item, kw_only=True):
    group_id: str
    group_name: str
    project_id: str
    created_at: int
    group_type: str = "group"
    object: str = "project.group"


DirectoryItem: TypeAlias = (
    Project
    | OrganizationUser
    | AdminApiKey
    | ProjectApiKey
    | ProjectServiceAccount
    | ProjectUser
    | Group
    | GroupUser
    | ProjectGroup
)

T = TypeVar("T")


class DirectoryPage(msgspec.Struct, Generic[T], kw_only=True, omit_defaults=True):
    """The list envelope ``{object: "list", data, first_id, last_id, has_more}``; groups' lists add ``next``."""

    data: list[T]
    has_more: bool = False
    object: str = "list"
    first_id: str | None = None
    last_id: str | None = None
    next: str | None = None
