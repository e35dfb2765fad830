"""The directory part of ``scripts/generate``: ``src/usageledger/_directory_endpoints.py`` from ``catalogue.DIRECTORY``.

Loaded by ``scripts/generate`` (which hands in the catalogue module and its shared helpers); not run on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

PATH = "src/usageledger/_directory_endpoints.py"

MODULE_DOC = '''"""The directory methods, written out from ``catalogue.DIRECTORY`` by ``scripts/generate``.

:class:`DirectoryMethods` gives ``Client`` one lazy list method per directory list (``client.projects(...)``,
``client.project_api_keys(project_id)``) and one retrieve method per item (``client.project(project_id)``);
:class:`AsyncDirectoryMethods` gives ``AsyncClient`` the same, with coroutines for the retrieves.
:class:`SeedDirectoryMethods` gives ``UsageApi`` ``list_<name>`` (one request, one page) and ``retrieve_<item>``.
Every method builds one :class:`~usageledger._directory.DirectoryCall` and hands it, with the class's one
``_directory_get`` hook, to :mod:`usageledger._directory`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Coroutine, Sequence
from typing import Any, Literal

from usageledger._directory import (
    AsyncDirectoryQuery,
    DirectoryCall,
    DirectoryQuery,
    Items,
    aretrieve,
    page,
    retrieve,
)
from usageledger._http import TimeoutTypes
from usageledger.directory_models import (
    {models},
)

__all__ = ["AsyncDirectoryMethods", "DirectoryMethods", "SeedDirectoryMethods"]
'''

STYLE_DOC = {
    "last_id": "paged by sending back each page's ``last_id`` as ``after``",
    "item_id": "paged by sending back the ID of each page's last item as ``after``",
    "next": "paged by sending back each page's ``next`` as ``after``",
}
TIMEOUT_DOC = "Seconds or an ``httpx.Timeout`` per request; default the client's."


def _param_type(p: Any, literal: Callable[[Any], str]) -> str:
    if p.kind == "bool":
        return "bool | None"
    if p.kind == "choice":
        return f"{literal(p.allowed)} | None"
    return "Sequence[str] | None"


def _param_doc(p: Any, code: Callable[[Any], str]) -> str:
    text = p.doc
    if p.allowed:
        text += f" One of {code(p.allowed)}"
        text += f" (API default ``{p.default}``)." if p.default else "."
    return text


def _limit_doc(ep: Any, per: str, lowest: int = 0) -> str:
    rule = ep.limit
    return f"Items {per}, {max(rule.minimum, lowest)} to {rule.maximum} (API default {rule.default})."


def _path_doc(name: str) -> str:
    return f"The ``{name}`` in the path."


def generate(catalogue: ModuleType, h: Any) -> str:
    """The module text; ``h`` is ``scripts/generate``'s namespace (``literal``, ``code``, ``docstring``, ...)."""
    parts = [h.HEADER, MODULE_DOC.replace("{models}", ",\n    ".join(_model_names(catalogue))), ""]
    for kind in ("sync", "async", "seed"):
        parts += _class(catalogue, h, kind)
    return "\n".join(parts)


def _model_names(catalogue: ModuleType) -> list[str]:
    return sorted({ep.item_type.__name__ for ep in catalogue.DIRECTORY} | {"DirectoryPage"})


_CLASS_HEAD = {
    "sync": ("DirectoryMethods", "The directory lists and items for ``Client``: lazy lists, blocking retrieves."),
    "async": ("AsyncDirectoryMethods", "The async twin of :class:`DirectoryMethods`: lazy lists, awaited retrieves."),
    "seed": ("SeedDirectoryMethods", "``UsageApi``'s directory face: ``list_<name>`` pages and ``retrieve_<item>``."),
}


def _class(catalogue: ModuleType, h: Any, kind: str) -> list[str]:
    name, doc = _CLASS_HEAD[kind]
    hook = "async def" if kind == "async" else "def"
    out = [
        "",
        f"class {name}(ABC):",
        f'    """{doc}"""',
        "",
        "    @abstractmethod",
        f"    {hook} _directory_get(self, path: str, items: Items, timeout: TimeoutTypes) -> bytes:",
        '        """One GET of ``path`` with the query ``items``: the 200 body, or the client\'s typed error."""',
        "",
    ]
    for ep in catalogue.DIRECTORY:
        out.append(_list_method(ep, h, kind))
        out.append(_retrieve_method(ep, h, kind))
    return out


def _list_method(ep: Any, h: Any, kind: str) -> str:
    item = ep.item_type.__name__
    path_params = [f"{p}: str" for p in ep.path_params]
    params = [f"{p.name}: {_param_type(p, h.literal)} = None" for p in ep.params]
    entries = [(p, _path_doc(p)) for p in ep.path_params]
    entries += [(p.name, _param_doc(p, h.code)) for p in ep.params]
    if kind == "seed":
        params = ["after: str | None = None", *params, "limit: int | None = None"]
        entries += [
            ("after", "The cursor from the previous page, sent back as it came."),
            ("limit", _limit_doc(ep, "in this page")),
        ]
        method, returns = f"list_{ep.name}", f"DirectoryPage[{item}]"
        first = f"One page of {ep.name.replace('_', ' ')}: one request."
    else:
        params.append("limit: int | None = None")
        entries.append(("limit", _limit_doc(ep, "per request (every page is followed)", 1)))
        method = ep.name
        returns = f"{'AsyncDirectoryQuery' if kind == 'async' else 'DirectoryQuery'}[{item}]"
        first = f"Every item of ``{ep.name}``: a lazy query of every page."
    params.append("timeout: TimeoutTypes = None")
    entries.append(("timeout", h.TIMEOUT_DOC))
    about = (
        f"``GET {ep.path}``, {STYLE_DOC[ep.pagination]}; each item is a "
        f":class:`~usageledger.directory_models.{item}`. The official SDK's "
        f"``admin.organization.{ep.sdk_method}``."
    )
    doc = h.docstring(first, [about, *h.args_doc(entries)])
    signature = ", ".join([*path_params, "*", *params])
    path_args = "{" + ", ".join(f'"{p}": {p}' for p in ep.path_params) + "}"
    values = "{" + ", ".join(f'"{p.name}": {p.name}' for p in ep.params) + "}"
    call = f'DirectoryCall("{ep.name}", {path_args}, {values}, limit'
    if kind == "seed":
        body = f"return page(self._directory_get, {call}, after=after, timeout=timeout), {item})"
    else:
        query = "AsyncDirectoryQuery" if kind == "async" else "DirectoryQuery"
        body = f"return {query}(self._directory_get, {call}, timeout=timeout), {item})"
    return f"    def {method}(self, {signature}) -> {returns}:\n        {doc}\n        {body}\n"


def _retrieve_method(ep: Any, h: Any, kind: str) -> str:
    item = ep.item_type.__name__
    ids = [*ep.path_params, ep.item_param]
    entries = [(p, _path_doc(p)) for p in ids] + [("timeout", h.TIMEOUT_DOC)]
    doc = h.docstring(
        f"One {ep.item.replace('_', ' ')} by ID.",
        [f"``GET {ep.item_path}``; returns a :class:`~usageledger.directory_models.{item}`.", *h.args_doc(entries)],
    )
    signature = ", ".join([*(f"{p}: str" for p in ids), "*", "timeout: TimeoutTypes = None"])
    path_args = "{" + ", ".join(f'"{p}": {p}' for p in ep.path_params) + "}"
    call = f'DirectoryCall("{ep.name}", {path_args}, item_id={ep.item_param}, timeout=timeout)'
    method = f"retrieve_{ep.item}" if kind == "seed" else ep.item
    if kind == "async":
        # A plain method returning the coroutine: its IDs and timeout are checked at the call, as every async
        # method's arguments are, not when (or if) it is awaited.
        return (
            f"    def {method}(self, {signature}) -> Coroutine[Any, Any, {item}]:\n        {doc}\n"
            f"        return aretrieve(self._directory_get, {call}, {item})\n"
        )
    return (
        f"    def {method}(self, {signature}) -> {item}:\n        {doc}\n"
        f"        return retrieve(self._directory_get, {call}, {item})\n"
    )
