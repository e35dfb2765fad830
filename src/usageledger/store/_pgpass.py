"""A PostgreSQL store's password kept where libpq itself reads it, never in ``usageledger.toml``.

``init --store postgresql://user:pw@host/db`` wrote that URL, password and all, into the config, a file that gets
copied, shared and committed. It now writes the URL without the password and keeps the password in the password
file libpq reads (``PGPASSFILE``, else ``~/.pgpass``; on Windows ``%APPDATA%\\postgresql\\pgpass.conf``), as the line
``host:port:dbname:user:password``. Every later command connects with the URL alone and libpq finds the password
there, as ``psql`` does. An entry libpq would already use is left alone; one for the same server, database and user
with another password is never overwritten.
"""

from __future__ import annotations

import getpass
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from usageledger._secrets import url_without_password
from usageledger.errors import ConfigError

__all__ = ["PasswordPlan", "conninfo", "pgpass_path", "plan_password", "save_password"]

_DEFAULT_PORT: Final = "5432"


def conninfo(url: str) -> dict[str, str]:
    """The connection parameters libpq reads from the store ``url`` (``user``, ``password``, ``host``, ...,
    percent-decoded), or none for a URL it cannot read or without psycopg (opening the store says why)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - depends on the installed extras
        return {}
    try:
        return {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(url).items() if v is not None}
    except psycopg.Error:
        return {}


def pgpass_path() -> Path:
    """The password file libpq reads: ``PGPASSFILE``, else ``~/.pgpass`` (Windows: ``%APPDATA%\\postgresql\\
    pgpass.conf``)."""
    named = os.environ.get("PGPASSFILE")
    if named:
        return Path(named).expanduser()
    if os.name == "nt":  # pragma: no cover - Windows
        return Path(os.environ.get("APPDATA") or Path.home()) / "postgresql" / "pgpass.conf"
    return Path.home() / ".pgpass"


def _escape(field: str) -> str:
    """A field as the password file writes it: ``\\`` and ``:`` escaped with a backslash."""
    return field.replace("\\", "\\\\").replace(":", "\\:")


def _fields(line: str) -> tuple[list[str | None], str] | None:
    """A password file's line as libpq reads it: its four keys (None for ``*`` alone, the wildcard; ``\\*`` is a star)
    and the password, unescaped; None for a comment, a blank line or one with fewer than five fields."""
    if not line or line.startswith("#"):
        return None
    keys: list[str | None] = []
    current: list[str] = []
    wildcard = True  # the field so far is a lone unescaped `*`, or empty
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            current.append(line[i + 1])
            wildcard = False
            i += 2
            continue
        if ch == ":" and len(keys) < 4:
            keys.append(None if wildcard and current == ["*"] else "".join(current))
            current, wildcard = [], True
        elif ch == ":":
            break  # libpq ends the password at an unescaped colon
        else:
            current.append(ch)
        i += 1
    if len(keys) < 4:
        return None
    return keys, "".join(current)


@dataclass(frozen=True, slots=True)
class PasswordPlan:
    """Where a store URL's password goes: the URL to write without it, the file, the entry's keys, and whether the
    file already holds that entry (``present``: its line) or it is to be added. Its ``repr`` leaves the password out."""

    bare_url: str
    path: Path
    keys: tuple[tuple[str, str, str, str], ...]
    password: str = field(repr=False)
    present: int | None
    """The line of ``path`` libpq already takes this password from, or None: the entry is to be added."""
    from_environment: bool = False
    """``PGPASSWORD`` gives the same password: nothing is saved."""

    @property
    def entries(self) -> str:
        """The entries' keys as the file writes them (``host:port:dbname:user``), for a message: never the password."""
        return ", ".join(":".join(_escape(k) for k in key) for key in self.keys)


def _keys(url: str) -> tuple[tuple[str, str, str, str], ...]:
    """The ``(host, port, dbname, user)`` libpq matches the password file against, one per host of ``url``, with
    libpq's defaults: the environment's ``PGHOST``..., else ``localhost``, 5432, the OS user and the user's name."""
    info = conninfo(url)
    user = info.get("user") or os.environ.get("PGUSER") or getpass.getuser()
    dbname = info.get("dbname") or os.environ.get("PGDATABASE") or user
    hosts = (info.get("host") or info.get("hostaddr") or os.environ.get("PGHOST") or "localhost").split(",")
    ports = (info.get("port") or os.environ.get("PGPORT") or _DEFAULT_PORT).split(",")
    if len(ports) == 1:  # one port for every host; else one each (libpq refuses any other count when it connects)
        ports = ports * len(hosts)
    return tuple(
        dict.fromkeys(
            (host or "localhost", port or _DEFAULT_PORT, dbname, user) for host, port in zip(hosts, ports, strict=False)
        )
    )


def plan_password(url: str) -> PasswordPlan | None:
    """Where the password of the store ``url`` goes, or None when ``url`` holds none (``PGPASSWORD`` or a password
    file gives it, or no password is needed). A :class:`ConfigError` of one line naming the file and the fix when
    the file holds another password for the same server, database and user (never overwritten), or when libpq
    would not read the file (its mode lets others read it, or it is not a file)."""
    password = conninfo(url).get("password")
    if not password:
        return None
    bare = url_without_password(url)
    if conninfo(bare) != {k: v for k, v in conninfo(url).items() if k != "password"}:  # never a config with it
        raise ConfigError(
            "cannot take the password out of the store URL to keep it out of the config; give --store without the"
            f" password, and put it in {pgpass_path()} as host:port:dbname:user:password (chmod 600)"
        )
    keys = _keys(url)
    path = pgpass_path()
    if os.environ.get("PGPASSWORD") == password:  # libpq reads it before any file: it needs nothing saved
        return PasswordPlan(bare, path, keys, password, None, from_environment=True)
    if os.environ.get("PGPASSWORD"):
        raise ConfigError(
            "PGPASSWORD holds another password than the store URL's, and libpq reads it before any password file,"
            " so the URL would not connect without its password: unset PGPASSWORD (or correct it), then run init again"
        )
    present = _present(path, keys, password)
    return PasswordPlan(bare, path, keys, password, present)


def _present(path: Path, keys: tuple[tuple[str, str, str, str], ...], password: str) -> int | None:
    """The first line of ``path`` that gives ``password`` for every one of ``keys`` (None: one of them has no line,
    or there is no file); a :class:`ConfigError` when the line libpq would take for one of them holds another
    password, or when libpq would not read the file at all."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the password file {path} is not a file; remove it, or set PGPASSFILE to a file")
        mode = stat.S_IMODE(info.st_mode)
        if os.name != "nt" and mode & 0o077:  # libpq ignores such a file (with a warning on stderr)
            raise ConfigError(
                f"the password file {path} can be read by others (mode {mode:04o}), so libpq ignores it; run: chmod"
                f" 600 {path}, then init again"
            )
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the password file {path}: {exc.strerror or exc}; check it, or set PGPASSFILE"
        ) from None
    taken: list[int] = []
    for key in keys:
        number = next((n for n, line in enumerate(lines, 1) if _matches(line, key)), None)
        if number is None:
            return None
        fields = _fields(lines[number - 1])
        if fields is not None and fields[1] != password:  # libpq takes the first line that matches: kept
            raise ConfigError(
                f"the password file {path} gives another password for {':'.join(_escape(k) for k in key)} (line"
                f" {number}); correct or remove that line and run init again, or give --store without the password"
                " to use the one saved"
            )
        taken.append(number)
    return min(taken)


def _matches(line: str, key: tuple[str, str, str, str]) -> bool:
    """Whether libpq takes ``line`` of a password file for ``key`` (host, port, dbname, user)."""
    fields = _fields(line)
    return fields is not None and all(f is None or f == k for f, k in zip(fields[0], key, strict=True))


def save_password(plan: PasswordPlan) -> None:
    """Append the plan's entries to its password file (made, mode 0600, with its folder, when missing)."""
    if plan.present is not None or plan.from_environment:
        return
    text = "".join(f"{':'.join(_escape(k) for k in key)}:{_escape(plan.password)}\n" for key in plan.keys)
    path = plan.path
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8", errors="surrogateescape") as fh:
            if fh.tell() and not path.read_bytes().endswith(b"\n"):
                fh.write("\n")  # a last line without its end would run into ours
            fh.write(text)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the password file {path}: {exc.strerror or exc}; set PGPASSFILE to a file you can write"
        ) from None
