"""The command line: parse, call the library, format. Each command group lives in its own module.

The commands are listed in :data:`usageledger.cli._commands.COMMANDS`, and a command's module is imported only when
the command runs: ``usageledger --help`` and ``usageledger version`` never import pyarrow, DuckDB or the reports (nor
rich: see ``cli/_app.py``).
``usageledger.cli.app`` (for tests and embedding) is the application with every command registered.
"""

from __future__ import annotations

import errno
import importlib
import io
import os
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final

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
    skip_httpx_command_line()
    if sys.argv[1:2] == ["sync"]:
        skip_numpy()
    standard_streams()
    drop_unusable_sizes(os.environ)
    try:
        _app.app()
    except OSError as exc:  # `version` and `--help` write outside the commands' error handling
        if exc.errno not in _WRITE_FAILURES:
            raise
        sys.stderr.write(f"error: {exc.strerror or exc}\n")  # `version > /dev/full` was a traceback
        raise SystemExit(1) from None


HTTPX_CLI: Final = "httpx._main"
"""httpx's own command line, which ``import httpx`` imports whenever click, pygments and rich are installed."""


def skip_httpx_command_line() -> None:
    """Keep ``import httpx`` from importing httpx's command line (click, pygments, rich's progress and syntax).

    Every command that talks to the API pays that import, ~25-40 ms of CPU a run (a quiet `sync` from cron, each
    `serve --sync-every` child), and no usageledger command runs httpx's command line. httpx imports it in a
    ``try``, and a ``None`` in :data:`sys.modules` is an ImportError there: ``httpx.main`` becomes httpx's own
    stand-in, everything else is untouched. Nothing is done once httpx is imported (embedding, tests).
    """
    if "httpx" not in sys.modules:
        sys.modules.setdefault(HTTPX_CLI, None)  # type: ignore[arg-type]  # None: "not importable" (importlib)


NUMPY: Final = "numpy"


def skip_numpy() -> None:
    """Keep numpy out of a `sync` process: pyarrow imports it at its own import whenever it is installed, and no
    step of a sync uses it (pages are read by Arrow's JSON reader and written by DuckDB, the costs window is built
    from buffers: ``usageledger._arrays``).

    numpy's import is ~0.1 s of CPU, and its code and objects ~12 MB of a sync's peak RSS (bench/BENCHMARKS.md).
    A finder first in :data:`sys.meta_path` makes ``import numpy`` an ImportError, which pyarrow (and DuckDB,
    pandas' check in pyarrow) take as "not installed". Not a ``None`` in :data:`sys.modules`: psycopg asks
    ``"numpy" in sys.modules`` before it dumps its first integer and then reads ``numpy.integer``, so every `sync`
    into a PostgreSQL store ended in a traceback (``'NoneType' object has no attribute 'integer'``). Only the
    console script's `sync` does this, and nothing is done once numpy is imported (embedding, tests).
    """
    if NUMPY not in sys.modules:
        sys.meta_path.insert(0, _NotImportable(NUMPY))


class _NotImportable:
    """A :data:`sys.meta_path` finder for which a package and its modules are not installed."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == self.name or fullname.startswith(self.name + "."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


_WRITE_FAILURES: Final = frozenset({errno.EBADF, errno.ENOSPC, errno.EDQUOT, errno.EIO})
"""Why writing to standard output can fail (closed, a full disk, a quota, a device error): one line, not a
traceback."""


_CLOSED: Final = "standard output is closed; run the command with it open, or redirect it to a file"


def drop_unusable_sizes(environ: MutableMapping[str, str]) -> None:
    """Forget ``COLUMNS``/``LINES`` when they are not a positive number: rich takes ``COLUMNS=0`` (what some CI
    runners and containers export when ``tput cols`` knows no terminal) as a width of zero and prints nothing at
    all, so `report`, `status` and even `error:` lines came out empty with exit 0 or 1. Without them rich asks the
    terminal, else uses 80 columns."""
    for name in ("COLUMNS", "LINES"):
        value = environ.get(name)
        if value is not None and not (value.strip().isdigit() and int(value) > 0):
            del environ[name]


class _ClosedBytes(io.RawIOBase):
    """``sys.stdout.buffer`` of :class:`_ClosedOutput`: ``export`` writes its bytes there, refused the same way."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raise OSError(errno.EBADF, _CLOSED)


class _ClosedOutput(io.TextIOBase):
    """``sys.stdout`` when the command was started with its output closed (``>&-``): Python leaves it ``None``, and
    rich then drops every line without a word, so `report >&-` printed nothing and exited 0. Writing here fails
    instead, as any other write that cannot happen (`> /dev/full`) fails: one error line, exit 1. A command that
    prints nothing (``serve``, ``sync --quiet``) runs as before."""

    encoding = "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: object) -> int:
        raise OSError(errno.EBADF, _CLOSED)

    @property
    def buffer(self) -> _ClosedBytes:
        return _ClosedBytes()


def standard_streams() -> None:
    """Make the three standard streams safe to use before any file is opened.

    * A closed descriptor 0, 1 or 2 is opened on ``/dev/null``: otherwise the next file opened (the store, its lock
      file, an export) gets that number, and anything written to "standard error" lands in it. ``sys.stdout`` then
      refuses writes (:class:`_ClosedOutput`); ``sys.stderr`` writes to ``/dev/null``, as the user asked.
    * Whatever an output's encoding lacks (``PYTHONIOENCODING=ascii`` or ``latin-1``, a legacy console's code page)
      is written as what reads as it (``…`` as ``...``, ``€`` as ``EUR``, the trend's blocks as ``_.,:-=+#``:
      :func:`usageledger._text.ascii_text`), where it was a ``?`` each, and never a ``UnicodeEncodeError``
      traceback; rich draws its tables in ASCII there by itself. Data (``query``'s CSV and JSON lines, ``export``)
      stays UTF-8 (:func:`usageledger.cli._app.data_stdout`). The C locale (``LC_ALL=C``, no locale at all) is left
      to Python, which writes UTF-8 there (PEP 538/540): a container's or cron's missing locale is rarely a
      terminal that cannot show UTF-8, and ASCII there would strip every name's accents and CJK.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
            os.set_inheritable(fd, True)
    if sys.stdin is None:  # `mcp <&-` was an AttributeError traceback: a closed input reads as an empty one
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (for the process's life)
    if sys.stdout is None:
        sys.stdout = _ClosedOutput()
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115 (for the process's life)
    from usageledger._text import ASCII_ERRORS, ASCII_ESCAPE_ERRORS

    for stream, errors in ((sys.stdout, ASCII_ERRORS), (sys.stderr, ASCII_ESCAPE_ERRORS)):
        if isinstance(stream, io.TextIOWrapper) and not _app.encodes_everything(stream):
            stream.reconfigure(errors=errors)
