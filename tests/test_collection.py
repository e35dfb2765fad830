"""What collecting the suite costs: no test module imports a heavy package at module level.

Every pytest-xdist worker imports every test module to collect it, whichever modules it then runs, so a package a
test module imports at its top is paid once per worker. The packages below cost 0.2-0.65 s of CPU each to import
(the openai SDK, mcp, openapi-core, matplotlib, pandas through ``pyarrow.dataset`` or deltalake, polars): at module
level they doubled a worker's collection (6.6 s of CPU against 3.0 s). The modules that use them import them where
they are used, and ``if TYPE_CHECKING:`` for annotations; the source is read with :mod:`ast`, so nothing is imported
here.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

TESTS: Final = Path(__file__).resolve().parent
HEAVY: Final = frozenset(
    {"deltalake", "matplotlib", "mcp", "openai", "openapi_core", "pandas", "polars", "pyarrow.dataset"}
)


def _heavy(name: str) -> bool:
    return any(name == h or name.startswith(h + ".") for h in HEAVY)


def _top_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, module)`` of the imports a module runs when it is imported: its body, ``try`` and ``if`` blocks but
    ``if TYPE_CHECKING:``; not functions or classes' methods."""
    found: list[tuple[int, str]] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                todo += node.body
            todo += node.orelse
        elif isinstance(node, ast.Try):
            todo += [*node.body, *node.orelse, *node.finalbody, *(s for h in node.handlers for s in h.body)]
        elif isinstance(node, (ast.With, ast.For, ast.While)):
            todo += node.body
    return found


def test_no_test_module_imports_a_heavy_package_at_module_level() -> None:
    """Each heavy package is imported inside the fixture or test that uses it, never at a test module's top."""
    offenders = [
        f"{path.relative_to(TESTS)}:{line}: {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, module in _top_level_imports(ast.parse(path.read_text(encoding="utf-8")))
        if _heavy(module)
    ]
    assert offenders == [], "import these where they are used (see this module's docstring):\n" + "\n".join(offenders)


def test_the_check_sees_an_import_at_the_top_and_not_one_in_a_function_or_for_types() -> None:
    """The reader above flags a module-level import (also in ``try``), not one in a function or ``TYPE_CHECKING``."""
    source = (
        "import json\nimport polars as pl\ntry:\n    from openai import OpenAI\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    from mcp import ClientSession\n"
        "def f():\n    import matplotlib\n"
    )
    flagged = [module for _, module in _top_level_imports(ast.parse(source)) if _heavy(module)]
    assert sorted(flagged) == ["openai", "polars"]
