"""One place that decides whether two paths name the same file (resolved real paths, not string equality) and
whether an output path may be written, and one reader of the text files people write (the config, names, rates,
replays)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from usageledger._secrets import key_named, mask_keys
from usageledger.errors import ConfigError

__all__ = [
    "expand_home",
    "from_file",
    "is_duckdb_file",
    "is_stream",
    "make_folder",
    "naming_full_disk",
    "overwrite_refusal",
    "read_user_text",
    "real_path",
    "remove_made",
    "same_file",
    "temp_beside",
    "write_whole_text",
]


def read_user_text(path: str | Path) -> str:
    """The text of a file a person wrote or saved from a spreadsheet: UTF-8, with a leading byte-order mark dropped
    (Excel's "CSV UTF-8" and Notepad write one). Bytes that are not UTF-8 (a Latin-1 ``é``) are a
    :class:`~usageledger.errors.ConfigError` saying where, never a ``UnicodeDecodeError`` traceback or silently
    replaced characters. ``OSError`` as ``Path.read_bytes`` raises it."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line} holds a byte that is not UTF-8 (0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None


def from_file(value: str, file: str | Path | None) -> str:
    """A path written in ``file`` (a config), as the file means it: a relative one is relative to the file's folder,
    wherever the command runs (``--config team/usageledger.toml`` with ``url = "ledger.duckdb"`` is
    ``team/ledger.duckdb``, not a new empty store in the working directory). A leading ``~`` is the home folder
    (:func:`expand_home`); an absolute path, a URL (``postgresql://``), or a path read with no file is kept as
    written."""
    if file is None or _as_written(value):
        return expand_home(value)
    folder = os.path.dirname(os.fspath(file))
    return os.path.join(folder, value) if folder else value


def expand_home(path: str) -> str:
    """``path`` with a leading ``~`` or ``~user`` made that home folder, as a shell does for a word it sees: a path
    that reached usageledger unexpanded (``[store] url = "~/ledger.duckdb"``, ``USAGELEDGER_STORE=~/x`` in a
    systemd unit, ``--store=~/x``) names the same file DuckDB opens, never a folder named ``~`` in the working
    directory. Anything else is kept as given."""
    return os.path.expanduser(path) if path.startswith("~") else path


def in_file(path: str, file: str | Path) -> str:
    """``path`` (as the user gave it, relative to the working directory) as it must be written in ``file`` for
    :func:`from_file` to read it back as the same path: relative to the file's folder. The inverse of ``from_file``;
    a URL or an absolute path is kept as given."""
    if _as_written(path):
        return path
    folder = os.path.dirname(os.fspath(file)) or os.curdir
    return os.path.relpath(path, folder)


def _as_written(value: str) -> bool:
    """A value no folder changes: empty, absolute, ``~``, ``:memory:``, or anything with a scheme (``postgresql:``,
    and the ``md:``/``s3:`` the store refuses by its scheme)."""
    return not value or os.path.isabs(value) or value.startswith(("~", ":")) or bool(_SCHEME.match(value))


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def real_path(path: str | Path) -> Path:
    """``path`` made absolute with ``.``, ``..`` and symlinks resolved; it need not exist."""
    return Path(os.path.realpath(os.fspath(path)))


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name one file: equal real paths, or (both existing) one inode, e.g. a hard link."""
    if real_path(a) == real_path(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_duckdb_file(path: str | Path) -> bool:
    """True when ``path`` is a DuckDB database file (bytes 8 to 12 read ``DUCK``): never a file to overwrite."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # opening a FIFO to read would wait for a writer
            return False
        with open(path, "rb") as fh:
            return fh.read(12)[8:12] == b"DUCK"
    except OSError:
        return False


def overwrite_refusal(path: str | Path, kept: Sequence[tuple[str, str | Path]]) -> str | None:
    """Why writing ``path`` would destroy data, or leak the key, or ``None``: it is one of ``kept`` (``(what,
    path)``, by any spelling: a symlink, a hard link, ``./``) or any DuckDB file, or it is named by an API key
    (``-o "$OPENAI_ADMIN_KEY.csv"``: the key in a file's name, in every listing of its folder). The one rule behind
    every command's output files."""
    if key_named(path):
        shown = mask_keys(str(path))
        return f"{shown} is named by an API key (pasted into the path?), which every listing of its folder would show"
    for what, protected in kept:
        if same_file(path, protected):
            return f"{path} is {what} ({protected}) and would be overwritten"
    if is_duckdb_file(path):
        return f"{path} is a DuckDB store and would be overwritten"
    return None


def is_stream(path: str | Path) -> bool:
    """True when ``path`` exists and is not a regular file or a folder (a FIFO, ``/dev/stdout``, a device): written
    straight through, never replaced by a renamed file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def temp_beside(final: Path) -> Path:
    """A new hidden name beside ``final`` (``.name.<random>.tmp``) for a file written whole, then renamed into place:
    the one spelling of every such temporary file (reports, statements, exports)."""
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")


def make_folder(folder: Path) -> tuple[Path, ...]:
    """Make ``folder`` and its missing parents, the one rule of every output (a file's folder, an export's
    directory): a folder that does not exist yet is made, never refused. The folders made, deepest first, for
    :func:`remove_made` to take away when the output then fails, so a failure leaves nothing it created."""
    made: list[Path] = []
    missing = folder
    while not os.path.lexists(missing) and missing != missing.parent:
        made.append(missing)
        missing = missing.parent
    if made and key_named(made[0]):  # `init --path out/$OPENAI_ADMIN_KEY/u.toml`: the key as a folder's name
        raise ConfigError(
            f"{mask_keys(str(folder))}: a folder to make is named by an API key (pasted into the path?); give a path"
            " without the key"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return tuple(made)


def remove_made(made: Sequence[Path]) -> None:
    """Remove the folders :func:`make_folder` made, deepest first, each only while it is empty (something another
    process put there meanwhile is kept, with its folders)."""
    for folder in made:
        with contextlib.suppress(OSError):
            folder.rmdir()


def write_whole_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all, as ``export`` writes its files: under a temporary name
    beside it, renamed into place once written, its folder made when missing (:func:`make_folder`). A failure (a
    full disk) leaves no partial file, the old one as it was and no folder it made; ``write_text`` truncated it
    first, and left it empty. A FIFO or device is written through, and a symlink keeps pointing at the file it names,
    which is replaced."""
    if is_stream(path):
        path.write_text(text, encoding="utf-8")
        return
    final = real_path(path) if path.is_symlink() else path
    made = make_folder(final.parent)
    temp = temp_beside(final)
    try:
        with naming_full_disk(path), open(temp, "x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, final)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        remove_made(made)
        if isinstance(exc, OSError) and exc.filename == str(temp):  # the path given, not a name never typed
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


@contextlib.contextmanager
def naming_full_disk(path: str | Path | IO[bytes]) -> Iterator[None]:
    """A full disk (or quota) while writing ``path`` named with it: the error a write raises names no file, so the
    one line said only "No space left on device". A stream is named by its ``name``; stdout (``> file``, ``| cmd``)
    as "standard output"."""
    if not isinstance(path, str | Path):
        name = str(getattr(path, "name", "the output stream"))
        path = "standard output" if name == "<stdout>" else name
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
