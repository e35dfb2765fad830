"""Layers point down and errors live in one tree.

The import graph is read from the source with :mod:`ast`, not from ``sys.modules``, so it holds every import the
code can ever run: at module level, under ``if TYPE_CHECKING:``, and inside functions and methods (a lazy import
postpones a cycle, it does not remove it). Relative imports are resolved against the importing module's package.

An edge goes to the module an import names. ``from a.b import c`` is an edge to ``a.b.c`` when ``a/b/c.py`` (or
``a/b/c/__init__.py``) exists, else to ``a.b``, the module that defines ``c``. The parent packages that Python
initialises on the way (``a`` and ``a.b``) are not edges: a package ``__init__`` only re-exports its submodules, so a
submodule importing its sibling through the package name would otherwise close a loop through every ``__init__``
that re-exports it. A module importing its own package's ``__init__`` explicitly (``from a.b import name`` where
``name`` is not a submodule) is an edge like any other, and a cycle through it fails the test.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import usageledger
from usageledger.errors import UsageLedgerError

PACKAGE_DIR = Path(usageledger.__file__).parent
SRC = PACKAGE_DIR.parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module under ``src/``: dotted name -> (file, is a package ``__init__``)."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def _imported(node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, tuple[Path, bool]]) -> set[str]:
    """The modules of the package one import statement names (see the module docstring for the rule)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    targets = set()
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in modules:
            targets.add(submodule)
        elif base in modules:
            targets.add(base)
    return targets


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its source."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _imported(node, package, modules)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or one module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere_in_src() -> None:
    """No group of modules in src/ imports each other in a loop, counting imports inside functions."""
    graph = import_graph()
    assert "usageledger.emulator.messages" in graph["usageledger.emulator.server"]
    assert cycles(graph) == []


def test_the_cycle_finder_sees_a_lazy_import() -> None:
    """The finder reports a loop closed only by an import inside a function (what the emulator had)."""
    graph = {"a.handler": {"a.faults"}, "a.server": {"a.handler"}, "a.faults": set()}
    assert cycles(graph) == []
    graph["a.handler"].add("a.server")
    assert cycles(graph) == [["a.handler", "a.server"]]
    source = "def transport():\n    from .server import Transport\n"
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom))
    assert _imported(node, "a", {"a.server": (Path("s.py"), False), "a": (Path("i.py"), True)}) == {"a.server"}


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# Who may not import whom: (importers, forbidden targets). The house layout's arrows, read one way.
FORBIDDEN = [
    (("usageledger.config",), ("usageledger.report", "usageledger.sync", "usageledger.cli")),
    (("usageledger.emulator",), ("usageledger.client", "usageledger._http", "usageledger.usage_api")),
    (("usageledger.emulator",), ("usageledger.store", "usageledger.sync", "usageledger.report", "usageledger.cli")),
    (("usageledger.store",), ("usageledger.sync", "usageledger.report", "usageledger.client", "usageledger.cli")),
    (
        ("usageledger.errors",),
        ("usageledger._secrets", "usageledger.config", "usageledger.store", "usageledger.report"),
    ),
]


def test_config_does_not_import_report() -> None:
    """The config layer sits below the reports: nothing in config.py imports usageledger.report."""
    assert not {m for m in import_graph()["usageledger.config"] if m.startswith("usageledger.report")}


def test_layers_point_down() -> None:
    """The emulator never imports the client, the store never the sync or reports, the library never the CLI."""
    graph = import_graph()
    wrong = sorted(
        (importer, target)
        for importers, targets in FORBIDDEN
        for importer in graph
        if any(_under(importer, i) for i in importers)
        for target in graph[importer]
        if any(_under(target, t) for t in targets)
    )
    # `python -m usageledger` is an entry point, the console script's twin: it is the command line, not the library
    library = [m for m in graph if not _under(m, "usageledger.cli") and m != "usageledger.__main__"]
    wrong += sorted((m, t) for m in library for t in graph[m] if _under(t, "usageledger.cli"))
    assert wrong == []


def test_the_emulator_handler_and_its_servers_meet_only_in_messages() -> None:
    """The transport and the server import the shared messages module, never the handler."""
    graph = import_graph()
    for thin in ("usageledger.emulator.server", "usageledger.emulator.transport"):
        assert "usageledger.emulator.handler" not in graph[thin]
        assert "usageledger.emulator.messages" in graph[thin]


def _error_classes() -> Iterator[type[BaseException]]:
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="usageledger."):
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                yield value


def test_every_error_class_derives_from_the_one_base() -> None:
    """Each public exception class defined anywhere in the package is a UsageLedgerError.

    A private class (a leading underscore) is a signal raised and caught inside its own module and never reaches a
    caller, so it is exempt.
    """
    classes = {cls for cls in _error_classes() if not cls.__name__.startswith("_")}
    names = {cls.__name__ for cls in classes}
    assert {"AlertDeliveryError", "ReplayError", "EmulatorConfigError", "ConfigError"} <= names
    assert sorted(cls.__qualname__ for cls in classes if not issubclass(cls, UsageLedgerError)) == []
    assert all(cls.__module__ == "usageledger.errors" for cls in classes)


def test_moved_errors_stay_importable_where_they_were() -> None:
    """AlertDeliveryError and ReplayError are still importable from their old modules, as the same classes."""
    from usageledger import errors
    from usageledger.emulator.replay import ReplayError
    from usageledger.report.alerts import AlertDeliveryError

    assert (AlertDeliveryError, ReplayError) == (errors.AlertDeliveryError, errors.ReplayError)


def test_a_fault_rate_out_of_range_is_a_config_error() -> None:
    """The emulator's fault configuration refuses a bad rate with an error from the one tree, naming the field."""
    from usageledger.emulator import FaultConfig
    from usageledger.errors import ConfigError

    with pytest.raises(ConfigError, match="rate_5xx") as info:
        FaultConfig(rate_5xx=2.0)
    assert isinstance(info.value, ValueError)


def test_no_test_module_imports_conftest() -> None:
    """Fixtures come from the ``tests/fixtures`` plugins: no test module imports ``conftest`` (which pytest may load
    under another name, giving two copies of every fixture and constant)."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = (
                    [node.module or "", *(alias.name for alias in node.names)] if node.level else [node.module or ""]
                )
            else:
                continue
            if any(name == "conftest" or name.endswith(".conftest") for name in names):
                offenders.append(f"{path.relative_to(tests)}:{node.lineno}")
    assert offenders == []
