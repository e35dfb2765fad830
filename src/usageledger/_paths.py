"""One place that decides whether two paths name the same file: resolved real paths, not string equality."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["is_duckdb_file", "real_path", "same_file"]


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
        with open(path, "rb") as fh:
            return fh.read(12)[8:12] == b"DUCK"
    except OSError:
        return False
