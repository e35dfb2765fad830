"""The Typer application and what every command shares: one-line errors, a console, the store it reads.

The options several commands take are declared in :mod:`usageledger.cli._flags`.
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import importlib
import inspect
import os
import re
import signal
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from difflib import get_close_matches
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup
from typer.models import ArgumentInfo, ParameterInfo

from usageledger._paths import expand_home, overwrite_refusal
from usageledger._text import closest
from usageledger.cli._commands import COMMANDS
from usageledger.errors import ConfigError, ParameterError, StoreError, UsageLedgerError

if TYPE_CHECKING:
    from rich.console import Console

    from usageledger.config import Config
    from usageledger.store import BaseStore

    console: Console
    """The console of stdout (rich), made on first import (PEP 562): a command that prints nothing rich never
    imports rich."""
    err_console: Console
    """The console of stderr, made like :data:`console`."""

_BY_NAME = {c.name: c for c in COMMANDS}


_click: Any = getattr(typer.core, "_click", None) or importlib.import_module("click")
"""click as the installed typer uses it: its own copy (typer 0.2x) or the click package."""


class _OneLineUsageError(_click.exceptions.UsageError):  # type: ignore[misc]
    """A usage error (a value the option's type refuses, an unknown option) shown as the CLI's other refusals are:
    one line, ``error: --flag: what is wrong; see usageledger CMD --help``, exit 2 as click's own."""

    def show(self, file: Any = None) -> None:
        command = " ".join(["usageledger", *_command_path(self.ctx)])
        # Masked as every other refusal is: click quotes the words it did not expect, and `status
        # postgresql://user:pw@host/db` (the flag forgotten) said the password twice, in the quote and the advice.
        from usageledger._keyshape import mask_keys

        typer.echo(mask_keys(f"error: {self.format_message()} (see `{command} --help`)"), err=True)


def _one_line(exc: Any) -> Any:
    """``exc`` (a click usage error) as a :class:`_OneLineUsageError` that names the flag first."""
    if getattr(exc, "possibilities", None) and exc.ctx is not None:  # never suggest a hidden option (`--now`)
        hidden = {o for p in exc.ctx.command.params if getattr(p, "hidden", False) for o in p.opts}
        exc.possibilities = [o for o in exc.possibilities if o not in hidden]
    message = exc.format_message()
    flag = getattr(exc, "option_name", None)
    argument = _argument_named(exc.ctx, flag) if isinstance(exc, _click.exceptions.NoSuchOption) else None
    if argument is not None:  # `statement --month 2026-11`, where forecast spells it as an option
        message = _as_argument(str(flag), argument)
    elif isinstance(exc, _click.exceptions.NoSuchOption) and (takers := _subcommands_taking(exc.ctx, flag)):
        # `credit --store s.duckdb list` said "No such option: --store", though every credit command takes it
        group = " ".join(["usageledger", *_command_path(exc.ctx)])
        shown = ", ".join(takers[:3]) + (f" and {len(takers) - 3} more" if len(takers) > 3 else "")
        message = (
            f"{flag} is an option of {shown}, not of `{group}`; give it after the command, as in"
            f" `{group} {takers[0]} {flag} …`"
        )
    extra = _EXTRA.fullmatch(message)
    spelled = spelled_as_option(exc.ctx.params) if extra is not None and exc.ctx is not None else None
    named = _argument_named(exc.ctx, spelled)
    if named is not None:  # `credit add --day 2026-11-01 5`: --day was read as DAY, so 5 was left over
        message, extra = _as_argument(str(spelled), named), None
    if extra is not None and " " not in extra[1] and _takes(exc.ctx, "--output"):  # `export -f delta lake/`
        message += f"; to write to {extra[1]}, pass --output {extra[1]}"
    elif extra is not None and " " not in extra[1] and (meant := _meant_option(exc.ctx, extra[1])) is not None:
        message += f"; for {meant}, pass {meant} {extra[1]}"  # `forecast 2026-12`, `report 30d`, `status u.duckdb`
    elif extra is not None and (one := _single_argument(exc.ctx)) is not None:  # `close 2026-10 2026-11`
        message += f"; {one} takes one value: run the command once for each"
    param = getattr(exc, "param", None)
    if isinstance(exc, _click.exceptions.MissingParameter) and (read := _arguments_read(exc.ctx, param)):
        message = message.rstrip(".") + f"; {read}"  # `credit add 500`: 500 was read as DAY, and AMOUNT is missing
    if isinstance(exc, _click.exceptions.BadParameter) and param is not None and exc.message:
        opts = [o for o in getattr(param, "opts", ()) if o.startswith("-")]
        shown = getattr(param, "metavar", None) or getattr(param, "human_readable_name", None) or param.name or ""
        name = max(opts, key=len) if opts else str(shown).upper()
        said = _NOT_A_NUMBER.sub(_number_words, str(exc.message).removeprefix("Value error, "))
        meant = _choice_meant(param, said)
        message = f"{name}: {said.rstrip('.') + meant if meant else said}"
    error = _OneLineUsageError(" ".join(message.split()).rstrip("."), ctx=exc.ctx)
    error.exit_code = exc.exit_code
    return error


_NOT_A_CHOICE: Final = re.compile(r"'(.*)' is not one of ")
"""click's words for a value outside an option's or argument's choices (`'completion' is not one of ...`)."""


def _choice_meant(param: Any, said: str) -> str:
    """``; did you mean completions?`` for a value close to one of ``param``'s choices (`query completion`, `query
    Costs`, `--format tabel`), as a config key's refusal says it; empty when none is close, or ``said`` is another
    refusal. The choices were listed, all twelve endpoints for ENDPOINT, and the one meant was left to be found."""
    refused = _NOT_A_CHOICE.match(said)
    choices = [str(c) for c in getattr(getattr(param, "type", None), "choices", None) or ()]
    if refused is None or not choices:
        return ""
    close = closest(refused[1].lower(), choices)
    return f"; did you mean {close}?" if close else ""


_NOT_A_NUMBER: Final = re.compile(r"is not a valid (int|integer|float)(?: range)?\b")
"""click's words for a value its number types refuse (`'2x' is not a valid int range`): a type name, not English."""


def _number_words(found: re.Match[str]) -> str:
    return "is not a whole number" if found[1] in ("int", "integer") else "is not a number"


_EXTRA: Final = re.compile(r"Got unexpected extra arguments? ?(?:\(s\))? ?\((.+)\)")
"""click's message for words left over after the options and arguments; the group is those words."""


_SHAPES: Final = (
    ("--store", re.compile(r"postgres(?:ql)?://\S+|\S+\.duckdb")),
    ("--month", re.compile(r"\d{4}-\d{2}")),
    ("--since", re.compile(r"\d+[dhw]|\d{4}-\d{2}-\d{2}(?:T\S*)?")),
    ("--date", re.compile(r"\d{4}-\d{2}-\d{2}")),
)
"""A word left over and the option it most likely was meant for, by its shape (a store, a month, a time, a day)."""


def _meant_option(ctx: Any, word: str) -> str | None:
    """The option of the command (not given on the command line) that a word left over was most likely meant for:
    one whose choices hold it (`report json`: --format), else one its shape fits (:data:`_SHAPES`)."""
    if ctx is None:
        return None
    for param in ctx.command.params:
        choices = getattr(getattr(param, "type", None), "choices", None) or ()
        if getattr(param, "param_type_name", "") == "option" and not getattr(param, "hidden", False):
            name = max(param.opts, key=len)
            if word in choices and _takes(ctx, name):
                return str(name)
    return next((flag for flag, shape in _SHAPES if shape.fullmatch(word) and _takes(ctx, flag)), None)


def _subcommands_taking(ctx: Any, flag: str | None) -> list[str]:
    """The names of a group's commands that take option ``flag`` (none when ``ctx`` is not a group's)."""
    group: Any = getattr(ctx, "command", None)
    if not flag or not hasattr(group, "list_commands"):  # a group (typer's own click has no `Group` at its top)
        return []
    takers = []
    for name in group.list_commands(ctx):
        try:  # each command's module is imported to read its options: one that fails to load is left out, as the
            command = group.get_command(ctx, name)  # usage error being told must not become its traceback
        except Exception:  # noqa: BLE001
            continue
        if command is not None and any(flag in p.opts for p in command.params):
            takers.append(name)
    return takers


def _command_path(ctx: Any) -> list[str]:
    """The subcommands' names down to ``ctx`` (not the root's: that is `-c`, or `python -m usageledger`)."""
    path: list[str] = []
    while ctx is not None and ctx.parent is not None:
        path.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return path


def _single_argument(ctx: Any) -> str | None:
    """The metavar of the command's one positional argument (``MONTH``, ``ID``), if it has exactly one."""
    arguments = [p for p in ctx.command.params if getattr(p, "param_type_name", "") == "argument"] if ctx else []
    if len(arguments) != 1:
        return None
    return str(getattr(arguments[0], "metavar", None) or (arguments[0].name or "").upper())


def _arguments_read(ctx: Any, missing: Any) -> str:
    """For an argument found missing after others were given: the command's arguments in order and what each given
    one was read as (``credit add takes DAY AMOUNT, and read 500 as DAY``), since the words given were taken in
    order and the one said missing may be the one the user thinks they gave. Empty when none was given."""
    if ctx is None or getattr(missing, "param_type_name", "") != "argument":
        return ""
    arguments = [p for p in ctx.command.params if getattr(p, "param_type_name", "") == "argument"]
    shown = [str(getattr(p, "metavar", None) or (p.name or "").upper()) for p in arguments]
    given = [
        f"{ctx.params[p.name]} as {name}"
        for p, name in zip(arguments, shown, strict=True)
        if p is not missing and isinstance(ctx.params.get(p.name), str | int)
    ]
    if not given:
        return ""
    command = " ".join(_command_path(ctx))
    return f"`{command}` takes {' '.join(shown)}, and read {', '.join(given)}"


def _takes(ctx: Any, flag: str) -> bool:
    """Whether the command has option ``flag`` and it was not given (a word left over then may be its value)."""
    param = next((p for p in ctx.command.params if flag in getattr(p, "opts", ())), None) if ctx else None
    if param is None:
        return False
    source = ctx.get_parameter_source(param.name)
    return source is None or source.name != "COMMANDLINE"


def spelled_as_option(values: typing.Mapping[str, object]) -> str | None:
    """The flag a value spells when it is its own parameter's name as an option: ``credit add --day 2026-11-01``,
    where a command that reads ``-5`` as a value (``ignore_unknown_options``) took ``--day`` as DAY's value."""
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, str) and value.lower() == flag:
            return flag
    return None


def _as_argument(flag: str, argument: str) -> str:
    return f"{flag}: {argument} is an argument of this command, not an option; give the value alone, without {flag}"


def _argument_named(ctx: Any, flag: str | None) -> str | None:
    """The metavar of the command's positional argument that ``flag`` (``--month``) names, if it has one."""
    if ctx is None or not flag or not flag.startswith("--"):
        return None
    wanted = flag[2:].replace("-", "_").lower()
    for param in ctx.command.params:
        if getattr(param, "param_type_name", "") == "argument" and (param.name or "").lower() == wanted:
            return str(getattr(param, "metavar", None) or param.name.upper())
    return None


@contextlib.contextmanager
def _usage_errors_in_one_line() -> Iterator[None]:
    """Re-raise a click usage error as :class:`_OneLineUsageError`; help shown for a bare group passes as it is."""
    try:
        yield
    except _click.exceptions.UsageError as exc:
        if isinstance(exc, _OneLineUsageError) or type(exc).__name__ == "NoArgsIsHelpError":
            raise
        raise _one_line(exc) from None


class LazyGroup(TyperGroup):
    """The root command: lists commands from :data:`~usageledger.cli._commands.COMMANDS` and imports a command's
    module only when it runs (or its own help is asked for), so start-up costs only what the command needs."""

    # Contexts, commands and formatters are typed loosely: typer 0.2x vendors click, so they are click's classes or
    # typer's copies of them depending on the installed typer.

    def make_context(self, info_name: Any, args: list[str], *rest: Any, **kwargs: Any) -> Any:
        if args[:1] == ["--version"]:  # as most tools take it: the `version` command, before anything else is read
            args = ["version", *args[1:]]
        with _usage_errors_in_one_line():  # the root's own options, `No such command`
            return super().make_context(info_name, args, *rest, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors_in_one_line():  # a sub-command's options, parsed in its own make_context
            return super().invoke(ctx)

    def list_commands(self, ctx: Any) -> list[str]:
        return [*_BY_NAME, *(name for name in self.commands if name not in _BY_NAME)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in _BY_NAME:
            # The module registers its commands on `app` as it is imported; turn the new ones into click commands.
            importlib.import_module(f"{__package__}.{_BY_NAME[cmd_name].module}")
            for info in app.registered_commands:
                assert info.callback is not None
                name = info.name or typer.main.get_command_name(info.callback.__name__)
                if name not in self.commands:
                    self.commands[name] = typer.main.get_command_from_info(
                        info, pretty_exceptions_short=app.pretty_exceptions_short, rich_markup_mode=app.rich_markup_mode
                    )
            for group in app.registered_groups:  # sub-command groups, such as `credit add|list|remove`
                assert group.typer_instance is not None
                group_name = group.name or group.typer_instance.info.name
                if isinstance(group_name, str) and group_name not in self.commands:
                    self.commands[group_name] = typer.main.get_group_from_info(
                        group,
                        pretty_exceptions_short=app.pretty_exceptions_short,
                        suggest_commands=True,
                        rich_markup_mode=app.rich_markup_mode,
                    )
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list of ``--help``: from the table for commands not imported yet, without importing them."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows: list[tuple[str, str]] = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is None:
                rows.append((name, TyperCommand(name, help=_BY_NAME[name].summary).get_short_help_str(limit)))
            elif not loaded.hidden:
                rows.append((name, loaded.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        # Typer suggests only among the commands imported so far: suggest among every command instead.
        if args and not args[0].startswith("-") and args[0] not in self.list_commands(ctx):
            matches = get_close_matches(args[0], self.list_commands(ctx))
            if matches:
                ctx.fail(f"No such command {args[0]!r}. Did you mean {', '.join(repr(m) for m in matches)}?")
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            refuse_blank_option_values(command, rest)
            ctx.meta[_TYPED] = typed_values(command, rest)
        return name, command, rest


_TYPED: Final = "usageledger.typed"
"""The click context's ``meta`` key (shared by the command's context) of :func:`typed_values`."""


def typed_values(command: Any, args: Sequence[str]) -> dict[str, str]:
    """Each value option's text as typed, by its long name (the last one given): what converting it loses. A path
    option's ``Path`` drops a trailing ``/``, so ``report --html out/`` wrote a file named ``out`` and said
    ``wrote out``; :func:`refuse_overwriting` reads the ``/`` here."""
    subcommands = getattr(command, "commands", None)
    if isinstance(subcommands, dict) and args and args[0] in subcommands:
        return typed_values(subcommands[args[0]], args[1:])
    names = {
        opt: max(param.opts, key=len)
        for param in getattr(command, "params", ())
        if getattr(param, "param_type_name", "") == "option" and not getattr(param, "is_flag", False)
        for opt in param.opts
    }
    typed: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i] != "--":
        flag, eq, value = args[i].partition("=")
        if flag in names and (eq or i + 1 < len(args)):
            if not eq:
                i += 1
                value = args[i]
            typed[names[flag]] = value
        i += 1
    return typed


def typed_value(flag: str) -> str | None:
    """Option ``flag``'s text as typed on this command line (see :func:`typed_values`), or ``None``."""
    ctx = _click.globals.get_current_context(silent=True)
    typed = ctx.meta.get(_TYPED, {}) if ctx is not None else {}
    return typed.get(flag) if isinstance(typed, dict) else None


def refuse_blank_option_values(command: Any, args: Sequence[str]) -> None:
    """Refuse an option given an empty or blank value on the command line, before its type reads it.

    :func:`refuse_empty_values` sees values once they are converted, and a path option has by then turned ``''`` into
    ``Path('.')`` (``statement --csv ''`` said "``.`` is a directory", ``--png ''`` wrote into the working directory):
    the raw arguments are the one place every option type can be checked alike. So is an option given no value: last
    on the line (`report --org`: "Option '--org' requires an argument (see `usageledger --help`)", the root's help),
    or followed by another option, which it then took for its value (`report --org --store s.duckdb` read the store
    as a word left over). A group's sub-command (`credit list`) is checked as the command it is.
    """
    subcommands = getattr(command, "commands", None)
    if isinstance(subcommands, dict) and args and args[0] in subcommands:
        refuse_blank_option_values(subcommands[args[0]], args[1:])
        return
    takes_value = {
        opt: param
        for param in getattr(command, "params", ())
        # typer vendors click in some versions, so the option's class is told by its attributes
        if getattr(param, "param_type_name", "") == "option"
        and not getattr(param, "is_flag", False)
        and not getattr(param, "count", False)
        for opt in param.opts
    }
    options = {  # every spelling: `--no-revisions` too
        opt
        for param in getattr(command, "params", ())
        for opt in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))
    } | {"--help"}
    for i, arg in enumerate(args):
        if arg == "--":
            return
        flag, eq, value = arg.partition("=")
        if not eq:
            flag, value = arg, args[i + 1] if i + 1 < len(args) else "x"
        if flag in takes_value and not value.strip():
            name = max(takes_value[flag].opts, key=len)
            hint = "" if takes_value[flag].required else f", or leave {name} out for its default"
            raise fail(f"{name}: the value is empty; give a value{hint}", EXIT_USAGE)
        if flag in takes_value and not eq and (i + 1 == len(args) or args[i + 1] in options):
            name = max(takes_value[flag].opts, key=len)
            if i + 1 == len(args):
                hint = "" if takes_value[flag].required else f", or leave {name} out for its default"
                raise fail(f"{name}: no value given; write {name} VALUE{hint}", EXIT_USAGE)
            own = "own " if args[i + 1] in takes_value[flag].opts else ""
            raise fail(
                f"{name}: no value given ({args[i + 1]} was read as its {own}value); write {name} VALUE", EXIT_USAGE
            )
    _refuse_repeated(takes_value, args)
    given = {arg.partition("=")[0] for arg in args}
    for param in {id(p): p for p in takes_value.values()}.values():
        envvars = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
        for envvar in (e for e in envvars if isinstance(e, str)):
            raw = os.environ.get(envvar)
            if raw and not raw.strip() and not given & set(param.opts):  # "" is unset, as click reads it
                # `USAGELEDGER_STORE='  '` said "--store: the value is empty" though no --store was given
                name = max(param.opts, key=len)
                raise fail(
                    f"{envvar}: the environment variable is set but empty; unset it, or give it a value ({name})"
                )


def _refuse_repeated(takes_value: dict[str, Any], args: Sequence[str]) -> None:
    """Refuse an option of one value given twice with different values (`--since 30d ... --since 7d`, `--store a
    --store b`): click keeps the last without a word, and which one the user meant is a guess. A list option
    (`--group-by a --group-by b`) takes each, and the same value twice is the same request."""
    seen: dict[int, tuple[Any, list[str]]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        flag, eq, value = arg.partition("=")
        param = takes_value.get(flag)
        if param is not None:
            if not eq:
                value = args[i + 1] if i + 1 < len(args) else ""
                i += 1
            if not getattr(param, "multiple", False):
                seen.setdefault(id(param), (param, []))[1].append(value)
        i += 1
    for param, values in seen.values():
        if len(set(values)) > 1:
            name = max(param.opts, key=len)
            shown = ", ".join(repr(v) for v in dict.fromkeys(values))
            raise fail(f"{name}: given {len(values)} times ({shown}); give it once", EXIT_USAGE)


app = typer.Typer(
    name="usageledger",
    help="OpenAI organization Usage & Costs: query, emulate, sync, export, report and alert.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text: config sections such as [store] and [alerts] must print as written, never be
    # swallowed as rich markup, so no help string needs escaping.
    rich_markup_mode=None,
    cls=LazyGroup,
)


def reader_gone() -> typer.Exit:
    """The reader of stdout went away (`| head`): stdout goes to /dev/null, so nothing more is written and Python does
    not report the flush at exit; the Exit to raise ends the command with 0, as a program cut short by its reader
    should (under `set -o pipefail` a 1 would fail the script)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return typer.Exit(0)


def _make_console(stderr: bool) -> Console:
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.segment import Segment

    from usageledger._text import terminal_safe

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich's own handling exits with 1: end as every other writer to a closed pipe does (:func:`reader_gone`).
            self.quiet = True
            raise reader_gone()

        def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterator[Segment]:
            # Names, line items and notes come from the API and from files: a control character in one (an ESC that
            # clears the screen or rewrites a line) is shown escaped, never sent raw. rich's own styles and cursor
            # moves are control segments or styles, not text, so they pass.
            safe = (
                segment
                if segment.control or segment.text.isprintable() or segment.text == "\n"
                else Segment(terminal_safe(segment.text), segment.style, segment.control)
                for segment in super().render(renderable, options)
            )
            yield from (safe if self.is_terminal else _without_trailing_blanks(safe))

    def _without_trailing_blanks(segments: Iterable[Segment]) -> Iterator[Segment]:
        # Into a pipe or a file, no line ends in the blanks rich pads a title or a wrapped line with to the table's
        # or the console's width (`report | grep 'total$'`, a diff of two runs). A line not yet ended (a prompt) is
        # left as it is.
        line: list[Segment] = []
        for segment in segments:
            if segment.control or "\n" not in segment.text:
                line.append(segment)
                continue
            *ended, rest = segment.text.split("\n")
            for part in ended:
                line.append(Segment(part, segment.style))
                while line and not line[-1].control and not line[-1].text.rstrip(" "):
                    line.pop()
                if line and not line[-1].control:
                    line[-1] = Segment(line[-1].text.rstrip(" "), line[-1].style)
                yield from line
                yield Segment("\n", segment.style)
                line = []
            if rest:
                line.append(Segment(rest, segment.style))
        yield from line

    return _Console(stderr=stderr)


def __getattr__(name: str) -> Any:
    # `console` and `err_console` are made when first imported: rich costs ~35 ms, which `version` need not pay.
    if name in ("console", "err_console"):
        made = globals()[name] = _make_console(stderr=name == "err_console")
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _err_console() -> Console:
    """:data:`err_console`, made if need be (a name of this module read inside it skips ``__getattr__``)."""
    made: Console = globals().get("err_console") or __getattr__("err_console")
    return made


def resolve_store(store: str | None, config: Config) -> str:
    """The store a command uses: ``--store`` (or ``USAGELEDGER_STORE``), else the config's ``[store] url``, else the
    default (:meth:`~usageledger.config.Config.store_source`), checked by :func:`~usageledger.store.check_store_url`;
    a refusal of one not given as ``--store`` starts with where it came from (``[store] url in ./usageledger.toml``),
    the place to change."""
    from usageledger.errors import StoreError
    from usageledger.store import check_store_url

    url, source = config.store_source(store, override_source=given_as("store", "--store"))
    try:
        checked = check_store_url(url)
    except StoreError as exc:
        if source == "--store":
            raise
        raise StoreError(f"{source}: {exc}") from None
    ctx = _click.globals.get_current_context(silent=True)
    if ctx is not None:  # what this command's store refusals say to change (see store_elsewhere)
        ctx.meta[_ELSEWHERE] = (checked, _elsewhere(source, config))
    return checked


_ELSEWHERE: Final = "usageledger.store_elsewhere"


def _elsewhere(source: str, config: Config) -> str:
    """How to read another store than the one that came from ``source``, naming the config file actually read."""
    if source.startswith("[store] url in "):
        return f"change {source} (or pass --store)"
    if source not in ("--store", "the default"):  # the environment variable --store was read from
        return f"set {source} to another (or pass --store)"
    return f"pass --store (or set [store] url in {config.path or 'usageledger.toml'})"


def store_elsewhere(url: str) -> str | None:
    """How to read another store than ``url``, as :func:`resolve_store` worked it out for this command (``None``
    when ``url`` did not come from it): the missing store's line then names the config file that was read."""
    ctx = _click.globals.get_current_context(silent=True)
    remembered = ctx.meta.get(_ELSEWHERE) if ctx is not None else None
    return remembered[1] if remembered is not None and remembered[0] == url else None


def given_as(param: str, flag: str) -> str:
    """Where the running command read ``param`` from: ``flag``, or the environment variable click took it from
    (``USAGELEDGER_STORE`` for ``--store``), so a fix names the place the user must change."""
    ctx = _click.globals.get_current_context(silent=True)
    source = ctx.get_parameter_source(param) if ctx is not None else None
    if source is not None and source.name == "ENVIRONMENT":
        envvar = next((p.envvar for p in ctx.command.params if p.name == param), None)
        if isinstance(envvar, str):
            return envvar
    return flag


P = ParamSpec("P")
R = TypeVar("R")


EXIT_USAGE: Final = 2
"""The exit code of bad input: a value refused (:class:`ParameterError`, an empty value), as Typer's own usage errors
(an unknown option, a value the option's type refuses) exit."""


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear line on stderr (key-shaped text masked, whatever its source) and return the Exit to raise."""
    from rich.markup import escape

    from usageledger._secrets import mask_keys
    from usageledger._text import one_line

    # The message is plain text: a config section such as [store] in it must print as written, not as markup. It
    # may quote what the user typed, newlines and escape sequences included: those print as escapes, on one line.
    _err_console().print(f"[bold red]error:[/] {escape(one_line(mask_keys(message)))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def say(text: str, to: Console | None = None) -> None:
    """Print ``text`` as written (no markup, no highlighting: a path such as ``data[raw].csv`` or an API message
    with ``[request id …]`` stays whole) and never wrapped, so a path or command can be copied whole; key-shaped
    text masked, as :func:`fail` does; on stderr unless ``to`` names another console."""
    from usageledger._secrets import mask_keys

    (to or _err_console()).print(mask_keys(text), highlight=False, markup=False, soft_wrap=True)


def stdout_is_utf8() -> bool:
    """Whether standard output encodes every character (UTF-8); ``PYTHONIOENCODING=latin-1``, a legacy console's
    code page does not, and :func:`usageledger.cli.standard_streams` has it write
    what reads as each character it cannot (``...`` for ``…``)."""
    return encodes_everything(sys.stdout)


def encodes_everything(stream: object) -> bool:
    """Whether ``stream``'s encoding is a UTF (a stream that names none is taken as UTF-8)."""
    from usageledger._text import encodes_everything as writes_all

    return writes_all(getattr(stream, "encoding", None))


@contextlib.contextmanager
def data_stdout() -> Iterator[None]:
    """Standard output as UTF-8 for the block, whatever its encoding: data (``query``'s CSV and JSON lines) is written
    exactly, where text for people follows the output's encoding (``PYTHONIOENCODING=ascii``: ``...`` for ``…``).
    `query -f csv > costs.csv` there must keep a project's ``名``, not turn it into a ``?``."""
    import io

    out = sys.stdout
    if encodes_everything(out) or not isinstance(out, io.TextIOWrapper):
        yield
        return
    out.flush()
    utf8 = io.TextIOWrapper(out.buffer, encoding="utf-8", newline="\n", write_through=True)
    sys.stdout = utf8
    try:
        yield
    finally:
        sys.stdout = out
        utf8.flush()
        utf8.detach()  # the buffer is standard output's: left open


def echo_json(document: dict[str, Any]) -> None:
    """Print a ``--format json`` document on stdout: every command's one way. Where standard output is not UTF-8,
    every character past ASCII is written as its escape (``\\u00dc``): the same JSON, where it was a ``?`` in place
    of a name's ``Ü`` or ``名``, data lost in a file a script reads."""
    from usageledger.report.jsonout import dumps

    typer.echo(dumps(document, ascii_only=not stdout_is_utf8()))


def announce(text: str, to: Console) -> None:
    """:func:`say` for a server's status lines (ready, stopped): a daemon started with its output closed or on a
    full disk (`serve ... >&-`) serves on without them, where any other command fails on an output it cannot write.
    """
    with contextlib.suppress(OSError):
        say(text, to)


def open_for_reading(url: str) -> BaseStore:
    """The store every reading command uses: it must exist; a wait for a running sync is said once on stderr."""
    from usageledger.store import open_existing_store

    return open_existing_store(url, on_wait=say, elsewhere=store_elsewhere(url))


@contextlib.contextmanager
def open_for_writing(url: str, what: str) -> Iterator[BaseStore]:
    """An existing store, opened to write (and migrated): never creates one. ``what`` (``credit add``, ``close``) is a
    brief write: two at once wait for each other, saying so, instead of one being refused as if a sync held the
    store; a running sync's store is refused at once, in one line (`close` opened it to read first, said "waiting
    for the running sync", then refused it anyway)."""
    from usageledger.store import check_store_url, is_postgres_url, open_store
    from usageledger.store.duckdb import no_store_message

    url = check_store_url(url)  # `sqlite:///x.db` is an unsupported store, not a missing one
    if not is_postgres_url(url) and not Path(url).exists():
        raise StoreError(no_store_message(url, store_elsewhere(url)))
    opened = open_store(url, migrate=False, brief=what, on_wait=say)
    try:
        if not opened.applied_migrations():
            raise StoreError(
                "no usageledger store there: it holds none of usageledger's tables; run `usageledger sync` first"
            )
        opened.migrate()
        yield opened
    finally:
        opened.close()


def refuse_overwriting(
    flag: str,
    path: Path,
    *,
    store_url: str,
    config_path: Path | None,
    example: str,
    other_outputs: Sequence[tuple[str, Path | None]] = (),
) -> None:
    """Refuse an output file that is the store, its WAL or lock files, the config in use (by any spelling: a
    symlink, a hard link, ``./``) or any DuckDB file: what a command writes beside its reading never destroys data.
    ``other_outputs`` (flag, path) are the command's other files, its outputs and the files it reads (``--names``,
    ``--fx``): one of them named twice would be overwritten (`report --names n.csv --html n.csv` replaced the names
    file with the page). A directory is refused too, naming ``flag`` and a file in it called ``example``, before any
    figure is computed (``report --html out/`` built the whole report, then failed without naming --html)."""
    from usageledger.store import store_files

    if str(path) == "-":  # `statement --csv -` wrote a file named `-` into the working directory, said "wrote -"
        raise fail(
            f"{flag}: - is not stdout here, it would be a file named '-'; give a file name, such as {example}",
            EXIT_USAGE,
        )
    if path.is_dir():
        raise fail(f"{flag}: {path} is a directory; give a file name, such as {path / example}", EXIT_USAGE)
    typed = typed_value(flag)
    if typed is not None and typed.endswith(("/", os.sep)):  # `--html out/`: the folder meant, not a file `out`
        raise fail(f"{flag}: {typed} names a folder; give a file name in it, such as {path / example}", EXIT_USAGE)
    if (blocked := file_in_the_way(path)) is not None:  # `--csv notes.txt/s.csv`: said after the statement printed
        raise fail(
            f"{flag}: {blocked} is a file, not a folder, so {path} cannot be made; give a path in a folder", EXIT_USAGE
        )

    kept: list[tuple[str, str | Path]] = [*store_files(store_url)]
    if config_path is not None:
        kept.append(("the config file in use", config_path))
    kept += [(f"the file of {other}", other_path) for other, other_path in other_outputs if other_path is not None]
    reason = overwrite_refusal(path, kept)
    if reason is not None:
        raise fail(f"{flag}: {reason}: write to another file", EXIT_USAGE)


def listen_flags(host: str, port: int) -> tuple[str, int]:
    """``--host`` and ``--port`` of a server command (``emulator``, ``serve``), read by
    :func:`usageledger._uvicorn.listen_address`: a port out of range or a URL given as the host is bad input, exit 2,
    where a port found taken when the server binds it is a failure, exit 1."""
    from usageledger._uvicorn import listen_address
    from usageledger.errors import ListenError

    try:
        return listen_address(host, port)
    except ListenError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def file_in_the_way(path: Path) -> Path | None:
    """The nearest existing part of ``path``'s folders when it is not a folder (a file), so nothing can be written
    there: it said "File exists: notes.txt; pick a path that does not exist yet", naming no flag."""
    existing = next((p for p in path.parents if os.path.lexists(p)), None)
    return existing if existing is not None and not existing.is_dir() else None


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file or socket operation: what failed, on which path, and what to check."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return reason
    hint = {
        FileNotFoundError: "check that the path exists",
        IsADirectoryError: "give a file name, not a folder",
        NotADirectoryError: "a part of the path is a file, not a folder",
        FileExistsError: "pick a path that does not exist yet",
        PermissionError: "check the permissions of the path",
    }.get(type(exc))
    return f"{reason}: {' -> '.join(paths)}" + (f"; {hint}" if hint else "")


def _flag_names(fn: Callable[..., object]) -> dict[str, tuple[str, bool]]:
    """Each parameter of a command function: the flag it is typed as (``config_path`` -> ``--config``), and whether
    it may be left out."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except (NameError, TypeError):
        hints = {}
    names: dict[str, tuple[str, bool]] = {}
    for name, param in inspect.signature(fn).parameters.items():
        infos = [
            m for m in getattr(hints.get(name, param.annotation), "__metadata__", ()) if isinstance(m, ParameterInfo)
        ]
        if isinstance(param.default, ParameterInfo):
            infos.append(param.default)
        # In `Annotated[..., typer.Option("--filter")]` the first flag is stored as the info's default.
        spelled = [d for info in infos for d in (info.default, *(getattr(info, "param_decls", None) or ()))]
        decls = [d for d in spelled if isinstance(d, str) and d.startswith("--")]
        optional = param.default is not inspect.Parameter.empty
        arguments = [info for info in infos if isinstance(info, ArgumentInfo)]
        if arguments:  # named as the help shows it: its metavar (`ID`), else the parameter's name in capitals
            names[name] = (getattr(arguments[0], "metavar", None) or name.upper(), False)
        else:
            names[name] = (decls[0] if decls else "--" + name.replace("_", "-"), optional)
    return names


def refuse_empty_values(fn: Callable[..., object], values: dict[str, object]) -> None:
    """Refuse a flag or argument given as an empty or blank string (``--output ''``, ``--org ''``, ``--since ' '``).

    An empty value is a mistake (an unset shell variable, a stray quote), never a way to say "the default": read
    as the default it would export into the working directory, drop a filter or report the wrong period. So is a
    value that is its own parameter spelled as an option (:func:`spelled_as_option`): an argument typed with a flag,
    or an option that took its own flag as its value.
    """
    blank = [
        name
        for name, value in values.items()
        if any(isinstance(v, str) and not v.strip() for v in (value if isinstance(value, list | tuple) else (value,)))
    ]
    if blank:
        flag, optional = _flag_names(fn).get(blank[0], (blank[0], False))
        hint = f", or leave {flag} out for its default" if optional else ""
        raise fail(f"{flag}: the value is empty; give a value{hint}", EXIT_USAGE)
    spelled = spelled_as_option(values)
    if spelled is not None:  # `credit add --store s --day 2026-11-01`: DAY got '--day'
        name = spelled[2:].replace("-", "_")
        flag, _ = _flag_names(fn).get(name, (name.upper(), False))
        said = f"{flag}: no value given ({flag} was read as its own value); write {flag} VALUE"
        raise fail(_as_argument(spelled, flag) if not flag.startswith("--") else said, EXIT_USAGE)


_PATH_STRINGS: Final = frozenset({"output", "path"})
"""String parameters that name a file to write (``export --output``, which is a ``str`` so that ``-`` is stdout;
``init --path``, a ``str`` so that a trailing ``/`` is seen)."""


def home_expanded(values: dict[str, object]) -> dict[str, object]:
    """The path parameters whose value starts with ``~``, made the home folder (:func:`_paths.expand_home`), as
    ``--store`` already is. ``--html=~/r.html`` (no shell expands after ``=``) wrote ``./~/r.html``: a folder named
    ``~`` in the working directory, one ``rm -rf ~`` away from the home folder."""
    return {
        name: (type(value)(expand_home(str(value))) if isinstance(value, Path) else expand_home(value))
        for name, value in values.items()
        if (isinstance(value, Path) or (isinstance(value, str) and name in _PATH_STRINGS))
        and str(value).startswith("~")
    }


def comma_list(flag: str, values: typing.Iterable[str] | None) -> list[str] | None:
    """A list flag given repeated or as a comma list (``--group-by a,b``), ``None`` when not given.

    An empty part (``--group-by ',model'``, ``a,,b``) is refused like an empty value, never silently dropped: bad
    input, exit 2, as ``--project-ids ',,'`` is.
    """
    if values is None:
        return None
    parts = [part.strip() for value in values for part in value.split(",")]
    if not all(parts):
        raise ParameterError(
            flag, f"{','.join(values)!r} holds an empty value; give non-empty values, or leave {flag} out"
        )
    return parts


EXIT_SIGTERM: Final = 128 + signal.SIGTERM
"""143: the shell's code for a process ended by SIGTERM, kept so callers (systemd, cron, CI) see what happened."""

STOP_GRACE: float = 30.0
"""Seconds a command has, after SIGTERM, to stop the way Ctrl-C stops it; past them it ends at once, exit 143.

Python delivers the interruption as an exception wherever the main thread is, and some places swallow it: inside an
import's module-lock callback it is "ignored" and leaves the import lock held, so a sync whose threads were importing
waited on it for ever and SIGTERM (and a second one) never stopped it. The store is as safe as after SIGKILL: its
writes are transactions, and the next command marks the run abandoned. Below systemd's 90 s before SIGKILL."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises SIGINT, so a command stops the way Ctrl-C stops it: a sync records its run
    and streams as ``interrupted``, an export removes its staged files, and the block ends with one line and exit
    code 143. Every command runs in it (:func:`friendly_errors`); a server that installs its own handlers while it
    serves (uvicorn) has them, and this one back when it stops.

    A process started with SIGINT ignored (``cmd &`` in a script, which then stops it with ``kill``) gets Python's
    SIGINT handler for the block, else the relayed signal would be ignored too and SIGTERM would not stop the run.
    Outside the main thread (signals cannot be handled there) the block runs as it is. A block that has not ended
    :data:`STOP_GRACE` seconds after SIGTERM (the interruption was swallowed) ends the process at once, exit 143.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    stopped = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if not received:  # a low-level thread: it takes none of threading's locks, which the interrupted code may hold
            _thread.start_new_thread(_end_unless_stopped, (stopped, STOP_GRACE))
        received.append(signum)
        if _importing(frame):  # an interruption raised in importlib's own code can leave the import lock held
            _thread.start_new_thread(_signal_again, (signum,))
            return
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise  # the command's own ending, said already
    except (KeyboardInterrupt, Exception) as exc:
        # After SIGTERM, whatever the interrupted code raised is the stop's doing: DuckDB, interrupted in a
        # statement, raises its own error ("Query interrupted") in place of the KeyboardInterrupt.
        if received:
            raise fail("interrupted by SIGTERM", EXIT_SIGTERM) from None
        if _interrupted_query(exc):  # Ctrl-C inside a DuckDB statement
            raise fail("interrupted", 130) from None
        raise
    finally:
        stopped.set()
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _importing(frame: FrameType | None) -> bool:
    """Whether the main thread was stopped inside the import machinery: a KeyboardInterrupt there (in a module-lock
    callback, between taking the import lock and the ``try`` that lets it go) is "ignored" with the lock still held,
    and every later import, in any thread, waits for ever."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib."):
            return True
        frame = frame.f_back
    return False


def _signal_again(signum: int) -> None:
    """Deliver ``signum`` again a moment later, when the import that was running has most likely finished."""
    time.sleep(_RESIGNAL_AFTER)
    os.kill(os.getpid(), signum)


_RESIGNAL_AFTER: Final = 0.05
"""Seconds before a signal deferred out of an import (:func:`_importing`) is delivered again."""


def _end_unless_stopped(stopped: threading.Event, grace: float) -> None:
    """After SIGTERM, in a thread of its own: end the process with exit 143 unless the command's block ended within
    ``grace`` seconds (:data:`STOP_GRACE`)."""
    if stopped.wait(grace):
        return
    message = f"error: interrupted by SIGTERM, and not stopped within {grace:g} s: ended at once\n"
    os.write(sys.stderr.fileno(), message.encode())
    os._exit(EXIT_SIGTERM)


def _interrupted_query(exc: BaseException) -> bool:
    """DuckDB's answer to a SIGINT that arrives during a statement: it stops the statement and raises its own
    ``InterruptException`` (or a ``RuntimeError`` reading "Query interrupted") instead of ``KeyboardInterrupt``."""
    return type(exc).__name__ == "InterruptException" or (
        type(exc) is RuntimeError and str(exc).strip() == "Query interrupted"
    )


def friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into one line on stderr and exit code 1, never a traceback; bad input (a
    :class:`ParameterError`, raised where the command reads it or deep in the library, and an empty value) exits 2,
    as Typer's own usage errors do. Refuse empty values first (:func:`refuse_empty_values`). SIGTERM stops the
    command as Ctrl-C does (:func:`sigterm_as_interrupt`)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            refuse_empty_values(wrapper, dict(kwargs))
            kwargs.update(home_expanded(kwargs))
            with sigterm_as_interrupt():
                return fn(*args, **kwargs)
        except ParameterError as exc:  # bad input, as Typer's own usage errors: exit 2, from any command
            raise fail(str(exc), EXIT_USAGE) from None
        except ConfigError as exc:  # a flag's value refused (`--config missing.toml`, `--base-url ftp://…`) is bad
            # input too: it exited 1 where `--fx missing.csv` exited 2; the set-up's own errors (the config file's
            # contents, an environment variable) stay 1
            raise fail(str(exc), EXIT_USAGE if exc.source.startswith("--") else 1) from None
        except UsageLedgerError as exc:
            raise fail(str(exc)) from None
        except BrokenPipeError:
            raise reader_gone() from None
        except OSError as exc:
            raise fail(describe_os_error(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def settle() -> None:
    """Before a long-running command's loop (``sync``, ``emulator``, ``serve``): put every object alive now out of
    the garbage collector's reach for the rest of the process (:func:`gc.freeze`).

    What is alive at that point is nearly all imported modules (typer, rich, httpx, DuckDB's and the package's
    own: some 300,000 objects), which live as long as the process anyway; left in the collector's oldest
    generation, every full collection walks all of them again. A year's CLI sync took 4-7 % less wall time
    (``bench/BENCHMARKS.md``). Only the command line does this: the library never touches the host's collector.
    """
    import gc

    gc.freeze()


def setup_logging(verbose: int = 0, log_format: str = "text") -> None:
    """Configure logging for the CLI; library code only ever logs."""
    import logging  # with the secrets filter, only for commands that log: `version` needs neither

    from usageledger._secrets import MaskKeysFilter

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
