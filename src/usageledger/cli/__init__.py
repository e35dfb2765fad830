"""The command line: parse, call the library, format. Each command group lives in its own module.

The commands are listed in :data:`usageledger.cli._commands.COMMANDS`, and a command's module is imported only when
the command runs: ``usageledger --help`` and ``usageledger version`` never import pyarrow, DuckDB or the reports (nor
rich: see ``cli/_app.py``).
``usageledger.cli.app`` (for tests and embedding) is the application with every command registered.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from usageledger.cli import _app
from usageledger.cli._commands import COMMANDS

if TYPE_CHECKING:
    from typer import Typer

    app: Typer

__all__ = ["app", "main"]


def load_all() -> None:
    """Import every command module, so that ``app`` holds every command."""
    for command in COMMANDS:
        importlib.import_module(f"{__name__}.{command.module}")


def __getattr__(name: str) -> Any:
    if name == "app":
        load_all()
        return _app.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
BLAS_THREADS_ENV = "OPENBLAS_NUM_THREADS"


def main() -> None:
    """Console-script entry point: only the command that runs is imported.

    The command's Arrow buffers come from the C allocator unless ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise:
    Arrow's default (mimalloc) keeps a heap per thread, and a year's sync decodes pages in several threads; it
    peaked about 150 MB higher with it (bench/BENCHMARKS.md). Set before pyarrow is first imported.

    numpy's OpenBLAS starts one thread per core when numpy is imported, unless ``OPENBLAS_NUM_THREADS`` says
    otherwise. No command does linear algebra, so it gets one: a `sync` then starts with about 0.08 s less CPU on
    two cores (more on bigger machines) and the same wall time (bench/BENCHMARKS.md).
    """
    os.environ.setdefault(ARROW_POOL_ENV, "system")
    os.environ.setdefault(BLAS_THREADS_ENV, "1")
    _app.app()
