"""Files people write or save from a spreadsheet (the config, names, FX rates): one reader, `read_user_text`.

Excel's "CSV UTF-8" and Notepad start a file with a byte-order mark, which made the config "not valid TOML" and a
names CSV lack its header; a Latin-1 ``é`` was a UnicodeDecodeError traceback (names, rates) or silently replaced
(the config). Now a BOM is dropped and bytes that are not UTF-8 are a one-line error naming the file and line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from usageledger._paths import read_user_text
from usageledger.config import load_config
from usageledger.errors import ConfigError, ParameterError
from usageledger.report.fx import load_rates
from usageledger.report.names import load_names

BOM = b"\xef\xbb\xbf"


def test_a_byte_order_mark_is_dropped_and_other_bytes_kept(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(BOM + "kind,id,name\nproject,p,Café 👩\u200d💻\n".encode())
    assert read_user_text(path) == "kind,id,name\nproject,p,Café 👩\u200d💻\n"


def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"kind,id,name\nproject,p,Caf\xe9\n")
    with pytest.raises(ConfigError, match=r"f\.csv: line 2 holds a byte that is not UTF-8 \(0xe9\); save the file"):
        read_user_text(path)


def test_the_config_names_and_rates_read_a_bom(tmp_path: Path) -> None:
    config = tmp_path / "usageledger.toml"
    config.write_bytes(BOM + b'[store]\nurl = "ledger.duckdb"\n')
    assert load_config(config).store_url == str(tmp_path / "ledger.duckdb")  # beside the config
    for suffix, body in (
        ("csv", b"kind,id,name\nproject,proj_a,Search\n"),
        ("json", b'{"projects": {"proj_a": "Search"}}'),
        ("toml", b'[projects]\nproj_a = "Search"\n'),
    ):
        names = tmp_path / f"names.{suffix}"
        names.write_bytes(BOM + body)
        assert load_names(names).project("proj_a") == "Search", suffix
    rates = tmp_path / "rates.csv"
    rates.write_bytes(BOM + b"date,rate\n2026-11-01,0.92\n")
    assert load_rates(rates, "EUR").currency == "EUR"


def test_the_config_names_and_rates_refuse_latin1_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "usageledger.toml"
    config.write_bytes(b'[store]\nurl = "caf\xe9.duckdb"\n')
    with pytest.raises(ConfigError, match=r"line 2 holds a byte that is not UTF-8"):
        load_config(config)
    names = tmp_path / "names.csv"
    names.write_bytes(b"kind,id,name\nproject,proj_a,Caf\xe9\n")
    with pytest.raises(ConfigError, match=r"names\.csv: line 2 holds a byte that is not UTF-8"):
        load_names(names)
    rates = tmp_path / "rates.csv"
    rates.write_bytes(b"date,rate\n2026-11-01,0.92\xa0\n")
    with pytest.raises(ParameterError, match=r"^--fx: .*rates\.csv: line 2 holds a byte that is not UTF-8 \(0xa0\)"):
        load_rates(rates, "EUR")
