"""The Typer application and what every command shares: one-line errors, a console, common options."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from usageledger._secrets import MaskKeysFilter
from usageledger.errors import UsageLedgerError
from usageledger.store import BaseStore, open_existing_store

app = typer.Typer(
    name="usageledger",
    help="OpenAI organization Usage & Costs: query, emulate, sync, export, report and alert.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text: config sections such as [store] and [alerts] must print as written, never be
    # swallowed as rich markup, so no help string needs escaping.
    rich_markup_mode=None,
)

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear line on stderr and return the Exit to raise."""
    # The message is plain text: a config section such as [store] in it must print as written, not as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def open_for_reading(url: str) -> BaseStore:
    """The store every reading command uses: it must exist; a wait for a running sync is said once on stderr."""
    return open_existing_store(
        url, on_wait=lambda message: err_console.print(message, highlight=False, markup=False, soft_wrap=True)
    )


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file or socket operation: what failed, on which path, and what to check."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return reason
    hint = {
        FileNotFoundError: "check the path; missing folders are not created",
        IsADirectoryError: "give a file name, not a folder",
        NotADirectoryError: "a part of the path is a file, not a folder",
        FileExistsError: "pick a path that does not exist yet",
        PermissionError: "check the permissions of the path",
    }.get(type(exc))
    return f"{reason}: {' -> '.join(paths)}" + (f"; {hint}" if hint else "")


def friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors (and bad values) into one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except UsageLedgerError as exc:
            raise fail(str(exc)) from None
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, and keep Python from reporting the flush at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            raise typer.Exit(0) from None
        except OSError as exc:
            raise fail(describe_os_error(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def setup_logging(verbose: int = 0, log_format: str = "text") -> None:
    """Configure logging for the CLI; library code only ever logs."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from usageledger.cli._jsonlog import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskKeysFilter())
    root = logging.getLogger("usageledger")
    root.handlers[:] = [handler]
    root.setLevel(level)


@app.callback()
def _root() -> None:
    """OpenAI organization Usage & Costs: query, emulate, sync, export, report and alert."""
