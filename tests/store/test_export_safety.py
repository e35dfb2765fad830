"""`export` never destroys what it reads: the store, its WAL and the config are refused as outputs, and every file
is written under a temporary name, so a failed export leaves no partial file and keeps the old one whole."""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from usageledger._paths import real_path, same_file
from usageledger.cli import app
from usageledger.errors import ParameterError
from usageledger.export import export
from usageledger.store import BaseStore, open_store

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

STORE = "usageledger.duckdb"
CONFIG = "usageledger.toml"


def _costs_rows(path: Path) -> int:
    with open_store(path) as opened:
        return int(opened.query("SELECT count(*) FROM costs")[0][0])


@pytest.fixture(scope="module")
def _synced_once(tmp_path_factory: pytest.TempPathFactory, emulator_url: str) -> Path:
    """A working directory with `init`'s config and a DuckDB store holding 20 days of the emulator's costs."""
    folder = tmp_path_factory.mktemp("export-safety")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
        mp.setenv("OPENAI_BASE_URL", emulator_url)
        for name in ("USAGELEDGER_CONFIG", "USAGELEDGER_STORE"):
            mp.delenv(name, raising=False)
        runner = CliRunner()
        init = runner.invoke(app, ["init"])
        assert init.exit_code == 0, init.output
        done = runner.invoke(app, ["sync", "-e", "costs", "--since", "20d", "--now", str(EMULATOR_NOW), "--quiet"])
        assert done.exit_code == 0, done.output
    assert _costs_rows(folder / STORE) > 0
    return folder


@pytest.fixture
def synced(_synced_once: Path, tmp_path: Path, emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's copy of the synced working directory (config, store and its lock files), as the current one."""
    shutil.copytree(_synced_once, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("USAGELEDGER_CONFIG", raising=False)
    monkeypatch.delenv("USAGELEDGER_STORE", raising=False)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_ADMIN_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", emulator_url)
    return tmp_path


def _refused(args: list[str]) -> str:
    result = CliRunner().invoke(app, ["export", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert "--output" in message and "export to another file" in message
    assert len(message.splitlines()) == 1, message
    return message


@pytest.mark.parametrize(
    "output",
    [STORE, f"./{STORE}", f"sub/../{STORE}", "ABSOLUTE", "LINK", f"{STORE}.wal", f"./{STORE}.wal", f"{STORE}.lock"],
)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_onto_the_store_is_refused(synced: Path, output: str, fmt: str) -> None:
    """-o naming the store (relative, ./, .., absolute, through a symlink), its WAL or lock is refused; no row lost."""
    before = _costs_rows(synced / STORE)
    store_bytes = (synced / STORE).read_bytes()
    (synced / "sub").mkdir()
    link = f"link.{fmt}"  # named as its format: a name saying another is refused before the store is looked at
    (synced / link).symlink_to(synced / STORE)
    target = {"ABSOLUTE": str(synced / STORE), "LINK": link}.get(output, output)
    message = _refused(["-e", "costs", "-f", fmt, "-o", target])
    assert "store" in message
    assert (synced / STORE).read_bytes() == store_bytes
    assert _costs_rows(synced / STORE) == before
    assert not (synced / f"{STORE}.wal").exists()
    # The sync left its lock files beside the store (see docs/STORE.md); the export wrote nothing.
    locks = [f"{STORE}.lock", f"{STORE}.readers"]
    assert sorted(p.name for p in synced.iterdir()) == sorted([STORE, *locks, CONFIG, "sub", link])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_onto_another_duckdb_store_is_refused(synced: Path, fmt: str) -> None:
    """Only the store being read was protected: `-o other.duckdb` turned another store into CSV."""
    shutil.copy(synced / STORE, synced / "other.duckdb")
    kept = (synced / "other.duckdb").read_bytes()
    assert "other.duckdb is a DuckDB store" in _refused(["-e", "costs", "-f", fmt, "-o", "other.duckdb"])
    (synced / "dir").mkdir()
    shutil.copy(synced / STORE, synced / "dir" / "costs.csv")  # a store under a name the directory export writes
    assert "is a DuckDB store" in _refused(["-e", "costs,completions", "-o", "dir"])
    assert (synced / "other.duckdb").read_bytes() == kept == (synced / "dir" / "costs.csv").read_bytes()


def test_export_into_a_fifo_writes_through_it(synced: Path) -> None:
    """`-o fifo` was renamed over: the FIFO became a regular file and its reader got nothing (`-o /dev/null`, as
    root, replaced the device). A FIFO or device is written straight through and stays what it was."""
    fifo = synced / "rows.fifo"
    os.mkfifo(fifo)
    with open(synced / "read.csv", "wb") as sink:  # a file, not a pipe nobody drains while the export writes
        reader = subprocess.Popen(["cat", str(fifo)], stdout=sink)
        try:
            result = CliRunner().invoke(app, ["export", "-e", "costs", "-o", str(fifo)])
            reader.wait(timeout=60)
        finally:
            reader.kill()
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    lines = (synced / "read.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("org,stream,bucket_start") and len(lines) - 1 == _costs_rows(synced / STORE)
    assert not [p for p in synced.iterdir() if p.name.endswith(".tmp")]


def test_export_of_every_endpoint_onto_the_store_is_refused(synced: Path) -> None:
    """Without -e (a directory export) the store path is still refused, not turned into a directory or truncated."""
    before = _costs_rows(synced / STORE)
    _refused(["-o", STORE])
    _refused(["-f", "parquet", "--partition-by", "day", "-o", STORE])
    assert (synced / STORE).is_file() and _costs_rows(synced / STORE) == before


@pytest.mark.parametrize("output", [CONFIG, f"./{CONFIG}", "ABSOLUTE", "LINK"])
def test_export_onto_the_config_is_refused(synced: Path, output: str) -> None:
    """-o naming the config in use (found in the working directory) is refused and the config is unchanged."""
    config = (synced / CONFIG).read_bytes()
    (synced / "conf-link").symlink_to(synced / CONFIG)
    target = {"ABSOLUTE": str(synced / CONFIG), "LINK": "conf-link"}.get(output, output)
    message = _refused(["-e", "costs", "-o", target])
    assert "config" in message
    assert (synced / CONFIG).read_bytes() == config


def test_export_onto_an_explicit_config_is_refused(synced: Path) -> None:
    """--config elsewhere/u.toml protects that file, whatever spelling -o uses."""
    (synced / "elsewhere").mkdir()
    moved = synced / "elsewhere" / "u.toml"
    os.replace(synced / CONFIG, moved)
    # a relative [store] url is the config folder's file: the moved config names the store it was written beside
    text = moved.read_text()
    assert 'url = "usageledger.duckdb"' in text
    moved.write_text(text.replace('url = "usageledger.duckdb"', 'url = "../usageledger.duckdb"'))
    config = moved.read_bytes()
    _refused(["-e", "costs", "--config", str(moved), "-o", "elsewhere/../elsewhere/u.toml"])
    assert moved.read_bytes() == config
    fine = CliRunner().invoke(app, ["export", "-e", "costs", "--config", str(moved), "-o", "costs.csv"])
    assert fine.exit_code == 0, fine.output
    assert (synced / "costs.csv").read_text().startswith("org,stream,bucket_start")
    assert fine.stderr.rstrip().endswith("rows to costs.csv (1 file).")  # not "(1 files)"


def test_same_file_compares_real_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative, ./, .., symlinked and hard-linked spellings of one file are the same file; a sibling is not."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "s").symlink_to(tmp_path / "a")
    os.link(tmp_path / "a", tmp_path / "h")
    for spelling in ("a", "./a", "d/../a", str(tmp_path / "a"), "s", "h"):
        assert same_file(spelling, tmp_path / "a"), spelling
    assert same_file("missing", tmp_path / "missing")
    assert not same_file("a.wal", "a") and not same_file("d/a", "a")
    assert real_path("s") == real_path(tmp_path / "a")


class Failing:
    """Yields the store's first batches (if any), then fails as a lost connection or full disk would, mid-write."""

    def __init__(self, store: BaseStore, fail_on: str = "", after: int = 1) -> None:
        self.store = store
        self.after = after
        self.real = store.iter_batches
        self.fail_on = fail_on

    def __call__(self, sql: str, params: Any, schema: pa.Schema, batch_rows: int) -> Iterator[pa.Table]:
        batches = self.real(sql, params, schema, batch_rows)
        if self.fail_on and f"FROM {self.fail_on} " not in sql:
            yield from batches
            return
        yield from itertools.islice(batches, self.after)
        raise OSError("No space left on device")


@pytest.fixture
def store(synced: Path) -> Iterator[BaseStore]:
    """The synced DuckDB store, opened in-process."""
    with open_store(synced / STORE) as opened:
        yield opened


def _leftovers(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if ".tmp" in p.name)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_failed_export_keeps_the_existing_file_and_leaves_no_partial(
    store: BaseStore, synced: Path, monkeypatch: pytest.MonkeyPatch, fmt: Any
) -> None:
    """An error after the first batch leaves the old output byte for byte and no temporary file behind."""
    target = synced / f"costs.{fmt}"
    target.write_bytes(b"the previous export\n")
    monkeypatch.setattr(store, "iter_batches", Failing(store))
    with pytest.raises(OSError, match="No space"):
        export(store, fmt, target, endpoints=["costs"], batch_rows=5)
    assert target.read_bytes() == b"the previous export\n"
    assert _leftovers(synced) == []
    fresh = synced / f"new.{fmt}"
    with pytest.raises(OSError, match="No space"):
        export(store, fmt, fresh, endpoints=["costs"], batch_rows=5)
    assert not fresh.exists() and _leftovers(synced) == []


def test_failed_directory_export_renames_nothing(
    store: BaseStore, synced: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory export whose second table fails leaves the first table's old file too: all or nothing. (The
    store holds costs alone, and a table without rows is never read, so costs is the one that fails.)"""
    out = synced / "out"
    out.mkdir()
    (out / "usage_embeddings.csv").write_text("old embeddings\n")
    monkeypatch.setattr(store, "iter_batches", Failing(store, fail_on="costs"))
    with pytest.raises(OSError, match="No space"):
        export(store, "csv", out, endpoints=["embeddings", "costs"], batch_rows=5)
    assert (out / "usage_embeddings.csv").read_text() == "old embeddings\n"
    assert sorted(p.name for p in out.iterdir()) == ["usage_embeddings.csv"]


def test_failed_partitioned_export_keeps_the_old_dataset(
    store: BaseStore, synced: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hive-partitioned export that fails mid-way leaves the previous dataset's files and no staging directory."""
    lake = synced / "lake"
    first = export(store, "parquet", lake, endpoints=["costs"], partition_by="day")
    assert first.rows["costs"] > 0 and first.files
    before = {p: p.read_bytes() for p in first.files}
    monkeypatch.setattr(store, "iter_batches", Failing(store, after=20))
    with pytest.raises(OSError, match="No space"):
        export(store, "parquet", lake, endpoints=["costs"], partition_by="day", batch_rows=5)
    assert {p: p.read_bytes() for p in lake.rglob("*.parquet")} == before
    assert _leftovers(synced) == []


def test_successful_partitioned_export_replaces_whole_days(store: BaseStore, synced: Path) -> None:
    """Re-exporting a day replaces its files (a stale extra part goes); the result lists only final paths."""
    lake = synced / "lake"
    first = export(store, "parquet", lake, endpoints=["costs"], partition_by="day")
    day_dir = first.files[0].parent
    (day_dir / "part-9.parquet").write_bytes(b"stale")
    again = export(store, "parquet", lake, endpoints=["costs"], partition_by="day")
    assert again.files == first.files and all(p.exists() for p in again.files)
    assert not (day_dir / "part-9.parquet").exists()
    assert _leftovers(synced) == []


def test_library_export_refuses_the_store_path(store: BaseStore, synced: Path) -> None:
    """The library guards the DuckDB store too, and a caller can protect more paths."""
    with pytest.raises(ParameterError, match="--output"):
        export(store, "csv", synced / STORE, endpoints=["costs"])
    with pytest.raises(ParameterError, match="the report"):
        export(store, "csv", synced / "r.csv", endpoints=["costs"], protect={"the report": "./r.csv"})
    assert not (synced / "r.csv").exists() and _costs_rows_open(store) > 0


def _costs_rows_open(store: BaseStore) -> int:
    return int(store.query("SELECT count(*) FROM costs")[0][0])


def test_export_through_a_symlink_replaces_its_target_and_keeps_the_link(store: BaseStore, synced: Path) -> None:
    """-o a symlink to an ordinary file writes that file, as before, and the link stays a link."""
    (synced / "real.csv").write_text("old\n")
    (synced / "via.csv").symlink_to(synced / "real.csv")
    export(store, "csv", synced / "via.csv", endpoints=["costs"])
    assert (synced / "via.csv").is_symlink()
    assert (synced / "real.csv").read_text().startswith("org,stream,bucket_start")
    assert _leftovers(synced) == []


def test_export_refuses_a_stream_the_store_does_not_hold(synced: Path) -> None:
    """`--stream bogus` exported a header and nothing else, exit 0; it is refused naming the store's streams."""
    result = CliRunner().invoke(app, ["export", "-e", "costs", "--stream", "costs.1d.bogus", "-o", "-"])
    assert result.exit_code == 2 and result.stdout == "", result.output
    message = result.stderr.strip()
    assert message.startswith("error: --stream: costs.1d.bogus is not a stream of this store (see `usageledger status`")
    assert "costs.1d" in message.split("status`:", 1)[1] and len(message.splitlines()) == 1
    good = CliRunner().invoke(
        app, ["export", "-e", "costs", "--stream", message.split(": ")[-1].split(",")[0].rstrip(")")]
    )
    assert good.exit_code == 0 and good.stdout.count("\n") > 1, good.output


def _entries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("partition_by", [None, "day"], ids=["parquet-files", "partitioned"])
def test_a_failed_folder_export_leaves_nothing_it_created(
    store: BaseStore, synced: Path, monkeypatch: pytest.MonkeyPatch, partition_by: Any
) -> None:
    """`export --format parquet --output new/lake/` cut short by a full disk left `new/lake/` behind, empty: it now
    leaves no folder it made, and in a folder that was there, nothing new; so does a single file into a new folder."""
    before = _entries(synced)
    monkeypatch.setattr(store, "iter_batches", Failing(store, after=2))
    for target in (synced / "new" / "lake", synced / "new" / "lake" / "costs.parquet"):
        if target.suffix and partition_by is not None:
            continue  # a partitioned export is a folder
        endpoints = ["costs"] if target.suffix else ["costs", "embeddings"]
        with pytest.raises(OSError, match="No space"):
            export(store, "parquet", target, endpoints=endpoints, partition_by=partition_by, batch_rows=5)
        assert _entries(synced) == before
    kept = synced / "kept"
    kept.mkdir()
    with pytest.raises(OSError, match="No space"):
        export(store, "parquet", kept, endpoints=["costs", "embeddings"], partition_by=partition_by, batch_rows=5)
    assert kept.is_dir() and _entries(kept) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["-e", "costs", "-f", "csv", "-o", "{new}/costs.csv"],
        ["-e", "costs", "-f", "parquet", "-o", "{new}/costs.parquet"],
        ["-e", "costs", "-f", "jsonl", "-o", "{new}/costs.jsonl"],
        ["-f", "focus", "-o", "{new}/focus.csv"],
        ["-f", "parquet", "-o", "{new}/"],
    ],
    ids=["csv", "parquet", "jsonl", "focus", "folder"],
)
def test_every_export_makes_the_folder_it_writes_into(synced: Path, argv: list[str]) -> None:
    """`export -f csv -o missing/costs.csv` was refused ("directory missing does not exist") while `-o missing/`
    made its folder: every format now makes a missing folder, as `report --html` does."""
    new = synced / "made" / "here"
    done = CliRunner().invoke(app, ["export", *(a.format(new=new) for a in argv)])
    assert done.exit_code == 0, done.output
    assert new.is_dir() and any(new.iterdir()) and _leftovers(synced) == []
