"""The broken-config tables' raw material: the embedded default and ways to change one line of it."""

from __future__ import annotations

from pathlib import Path

from daemon.config import default_config_text

BASE = default_config_text()
APT0_CODES = 'codes = ["4711"]'
APT1_CODES = 'codes = ["2580"]'
RESIDENT = 'residents = ["sip:101@127.0.0.1:5080"]'


def with_lines(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def resident(uri: str) -> str:
    return with_lines(RESIDENT, f'residents = ["{uri}"]')


def sip(lines: str) -> str:
    return with_lines("inbound_refuse_status = 603", f"inbound_refuse_status = 603\n{lines}")


def timing(lines: str) -> str:
    return with_lines('other_apartment_press = "queue"', f'other_apartment_press = "queue"\n{lines}')


def account(lines: str) -> str:
    return with_lines('registrar = ""', f'registrar = ""\n{lines}')


def hermetic(tmp_path: Path, text: str = BASE) -> str:
    """``text`` with its directories under ``tmp_path``: host checks then see only what the test made."""
    for key, default in (("state_dir", "/var/lib"), ("cache_dir", "/var/cache"), ("runtime_dir", "/run")):
        text = text.replace(f'{key} = "{default}/intercom"', f'{key} = "{tmp_path / key}"')
    return text


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path
