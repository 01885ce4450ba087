"""The directory file: apartments in CSV merged with [[apartments]], every rule of an apartment applied to each row,
every problem naming file:line, a number in both refused, 5,000 apartments loaded with O(1) lookups, exported."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.directory_bench import directory_text, write_panel
from daemon.config import default_config_text, directory_csv, load_config
from daemon.config._directory import read_directory
from daemon.errors import ConfigError

HEADER = "number,name,residents,codes,strategy,fallback\n"


def panel(tmp_path: Path, csv: str, *, toml_extra: str = "") -> Path:
    (tmp_path / "directory.csv").write_text(csv, encoding="utf-8")
    text = default_config_text().replace('"/var/lib/intercom"', f'"{tmp_path}"')
    path = tmp_path / "intercom.toml"
    path.write_text('directory = "directory.csv"\n' + text + toml_extra, encoding="utf-8")
    return path


def test_rows_become_apartments_merged_after_the_toml_ones(tmp_path: Path) -> None:
    csv = HEADER + (
        "# tower A\n"
        '1204,"Ana, Bia",sip:1204a@127.0.0.1:5080 sip:1204b@127.0.0.1:5080,582913 739184,sequential,sip:p@h\n'
        "\n"
        "1205,,sip:1205@127.0.0.1:5080,,,\n"
    )
    config, _ = load_config(panel(tmp_path, csv))
    names = [a.name for a in config.apartments]
    assert names == ["101", "Portaria", "Ana, Bia", "1205"]  # no name: the number names it
    ana = config.apartment_for_number("1204")
    assert ana is not None and ana.residents == ("sip:1204a@127.0.0.1:5080", "sip:1204b@127.0.0.1:5080")
    assert ana.codes == ("582913", "739184") and ana.strategy == "sequential" and ana.fallback == "sip:p@h"
    assert config.directory == str(tmp_path / "directory.csv")


def test_every_problem_names_its_file_and_line_and_never_quotes_a_code(tmp_path: Path) -> None:
    csv = HEADER + (
        "1204,A,101@host,5829,,\n"  # line 2: not a SIP URI
        "1205,B,sip:b@h,12a4,parallel,\n"  # line 3: a bad code
        "1206,C,sip:c@h,,sideways,\n"  # line 4: a strategy not accepted
        "1207,D,sip:d@h\n"  # line 5: too few fields
        "12x8,E,sip:e@h,,,\n"  # line 6: not a number
    )
    with pytest.raises(ConfigError) as info:
        load_config(panel(tmp_path, csv))
    text, where = str(info.value), tmp_path / "directory.csv"
    for line, what in ((2, "residents[0]: '101@host' is not a SIP URI"), (3, "codes[0]: a door code is 4 to 12")):
        assert f"{where}:{line}: {what}" in text
    assert f"{where}:4: strategy: 'sideways' is not accepted" in text
    assert f"{where}:5: 3 field(s) for 6 column(s)" in text
    assert f"{where}:6: number: '12x8' is not 1 to 8 digits" in text
    assert "12a4" not in text


def test_a_number_in_both_the_file_and_apartments_is_refused_naming_the_line(tmp_path: Path) -> None:
    toml = panel(tmp_path, HEADER + "1204,A,sip:a@h,,,\n101,B,sip:b@h,,,\n")
    toml.write_text(
        toml.read_text().replace('[[apartments]]\nname = "101"', '[[apartments]]\nname = "101"\nnumber = "101"')
    )
    with pytest.raises(ConfigError) as info:
        load_config(toml)
    assert f"{tmp_path / 'directory.csv'}:3: number: '101' is already apartments[0]'s" in str(info.value)


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("", "has no header line"),
        ("number,name,phone\n1,a,sip:a@h\n", "the header must name the columns"),
    ],
)
def test_a_file_that_is_not_a_directory_is_refused(tmp_path: Path, csv: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(panel(tmp_path, csv))


def test_a_missing_directory_file_is_refused(tmp_path: Path) -> None:
    path = panel(tmp_path, HEADER)
    (tmp_path / "directory.csv").unlink()
    with pytest.raises(ConfigError, match=r"the directory file .* does not exist"):
        load_config(path)


def test_five_thousand_apartments_load_and_a_number_is_one_dict_lookup(tmp_path: Path) -> None:
    config, _ = load_config(write_panel(tmp_path, 5000))
    assert len(config.apartments) == 5002
    assert config.apartment_for_number("5999") is config.apartments[-1]
    started = time.perf_counter()
    for _ in range(10_000):
        config.apartment_for_number("3217")
    per_lookup = (time.perf_counter() - started) / 10_000
    assert per_lookup < 50e-6  # a dict lookup (well under a microsecond), not a scan of 5,000 apartments


def test_export_is_a_directory_file_that_reads_back_without_its_codes(tmp_path: Path) -> None:
    config, _ = load_config(panel(tmp_path, directory_text(20)))
    text = directory_csv(config.apartments[2:])
    back, lines = read_directory(tmp_path / "export.csv", text)
    assert [(a.number, a.name, a.residents, a.strategy, a.fallback) for a in back] == [
        (a.number, a.name, a.residents, a.strategy, a.fallback) for a in config.apartments[2:]
    ]
    assert all(not a.codes for a in back) and lines[0] == 2
    assert not any(code in text for a in config.apartments for code in a.codes)
