"""``intercomd hash-pin``: read a PIN from the terminal (or stdin) and print the ``pin_hash`` line for ``[[pins]]``.

The hash is made with the panel's salt (``[access] salt`` of the configuration, or ``--salt``). A configuration
with no salt yet gets a new one, printed as the ``salt = ...`` line to paste under ``[access]``. The PIN itself
is never printed, echoed or logged.
"""

from __future__ import annotations

import getpass
import sys
import tomllib
from pathlib import Path
from typing import TextIO

from daemon.access import PIN_DIGITS, hash_pin, new_panel_salt
from daemon.config._access import salt_problems
from daemon.config._visit import guessable

__all__ = ["run_hash_pin"]

EX_OK, EX_USAGE, EX_CONFIG = 0, 64, 78


def _config_salt(path: Path) -> str:
    """``[access] salt`` of the configuration file, "" when it has none or cannot be read."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ""
    access = data.get("access")
    salt = access.get("salt", "") if isinstance(access, dict) else ""
    return salt if isinstance(salt, str) else ""


def _read_pin(stdin: TextIO, stderr: TextIO) -> str | None:
    if stdin.isatty():
        first = getpass.getpass("PIN: ")
        if getpass.getpass("again: ") != first:
            stderr.write("intercomd hash-pin: the two PINs differ\n")
            return None
        return first
    return stdin.readline().strip()


def run_hash_pin(
    config: Path,
    salt: str | None,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    new_salt = False
    if salt is None:
        salt = _config_salt(config)
    if not salt:
        salt, new_salt = new_panel_salt(), True
    if problems := salt_problems(salt):
        stderr.write(f"intercomd hash-pin: {problems[0]}\n")
        return EX_CONFIG
    pin = _read_pin(stdin, stderr)
    if pin is None:
        return EX_USAGE
    try:
        line = f'pin_hash = "{hash_pin(pin, salt)}"\n'
    except ValueError:
        stderr.write(f"intercomd hash-pin: a PIN is {PIN_DIGITS.start} to {PIN_DIGITS.stop - 1} digits 0-9\n")
        return EX_USAGE
    if guessable(pin):
        stderr.write("intercomd hash-pin: warning: one digit repeated or a run like 1234 is the first thing tried\n")
    if new_salt:
        stderr.write(f"intercomd hash-pin: {config} has no [access] salt: a new one; paste it under [access]\n")
        stdout.write(f'salt = "{salt}"\n')
    stdout.write(line)
    return EX_OK
