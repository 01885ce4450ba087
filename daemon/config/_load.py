"""Reading the configuration: bytes from the file, UTF-8 text, TOML, then the dataclasses and secrets.

Every way a file can be unusable is a :class:`~daemon.errors.ConfigError` naming the file and what to do, never a
traceback: missing, a directory, unreadable, empty, huge, not UTF-8 (with the byte offset), TOML syntax. A UTF-8
byte-order mark (Windows editors write one) is accepted.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import replace
from importlib import resources
from pathlib import Path

from daemon.config._directory import MAX_DIRECTORY_BYTES, with_directory
from daemon.config._host import host_problems
from daemon.config._model import Config, config_warnings
from daemon.errors import ConfigError
from daemon.settings_schema import build

__all__ = ["MAX_CONFIG_BYTES", "check_config", "default_config_text", "load_config", "parse_config"]

# A panel's configuration is a few kilobytes; a larger file is a mistake (a log, an image) and is not parsed.
MAX_CONFIG_BYTES = 1 << 20
_MAX_SECRET_BYTES = 4096
_BOM = "\ufeff"


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse and validate TOML text. Raises :class:`ConfigError` listing every problem."""
    text = text.removeprefix(_BOM)
    if not text.strip():
        raise ConfigError("the file is empty; `intercomd --print-default-config` prints an example", source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"TOML syntax error: {exc}", source) from exc
    except RecursionError as exc:  # tomllib recurses once per nested [ or {: a few hundred exhaust the stack
        raise ConfigError("TOML nested too deeply (arrays or inline tables inside each other)", source) from exc
    problems: list[str] = []
    config = build(Config, data, problems)
    if problems or config is None:
        raise ConfigError(problems, source)
    return config


def read_text(path: Path, what: str, limit: int) -> str:
    """The UTF-8 text of ``path`` (a regular file of at most ``limit`` bytes), or a ConfigError saying why not.

    Opened without blocking and checked to be a regular file before reading: a FIFO or a device given by
    mistake must not hang or flood the daemon.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} does not exist", str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", str(path)) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory, not a file" if stat.S_ISDIR(mode) else "not a regular file"
        raise ConfigError(f"{what} is {kind}", str(path))
    with os.fdopen(fd, "rb") as file:
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read {what}: {exc.strerror}", str(path)) from exc
    if len(data) > limit:
        raise ConfigError(f"{what} is larger than {limit:,} bytes; is it the right file?", str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{what} is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}); "
            "save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
            str(path),
        ) from exc


def load_config(path: Path | str, *, environ: dict[str, str] | None = None) -> tuple[Config, list[str]]:
    """Load ``path``; return the config and warnings (e.g. a password file readable by others).

    The SIP password may come from ``INTERCOM_SIP_PASSWORD`` in the environment (systemd's
    ``LoadCredential``/``EnvironmentFile``) or ``sip.account.password_file``. What depends on this host
    (directories, addresses, TLS files) is checked by :func:`daemon.config.host_problems`.
    """
    path = Path(path)
    env = os.environ if environ is None else environ
    config = parse_config(read_text(path, "the configuration file", MAX_CONFIG_BYTES), str(path))
    if config.directory:
        directory = path.parent / Path(config.directory).expanduser()  # an absolute path stays as it is
        text = read_text(directory, "the directory file (directory)", MAX_DIRECTORY_BYTES).removeprefix(_BOM)
        config = with_directory(replace(config, directory=str(directory)), text, directory, str(path))
    warnings = config_warnings(config, str(path))
    account = config.sip.account
    if account.password:
        warnings += _world_readable(path, "sip.account.password")
    if account.password_file:
        secret = Path(account.password_file)
        what = f"sip.account.password_file: {secret}"
        try:
            password = read_text(secret, what, _MAX_SECRET_BYTES).strip()
        except ConfigError as exc:
            raise ConfigError(exc.problems, str(path)) from exc
        if not password:
            raise ConfigError(f"{what} is empty", str(path))
        warnings += _world_readable(secret, "sip.account.password_file")
        account = replace(account, password=password)
    if config.gpio.pin_factory == "mock" and env.get("INVOCATION_ID"):  # systemd sets it for every service
        warnings.append(
            f"{path}: gpio.pin_factory = 'mock' under systemd: the pins are SIMULATED, this panel's buttons and "
            'door relay do nothing; use pin_factory = "auto" on a real panel'
        )
    if env.get("INTERCOM_SIP_PASSWORD"):
        if not account.username:
            warnings.append(
                f"{path}: INTERCOM_SIP_PASSWORD is set but sip.account.username is not: the password is never used"
            )
        account = replace(account, password=env["INTERCOM_SIP_PASSWORD"])
    return replace(config, sip=replace(config.sip, account=account)), warnings


def check_config(path: Path | str, *, environ: dict[str, str] | None = None) -> tuple[Config, list[str]]:
    """Everything ``run`` checks before it starts anything (``check-config`` and a reload check the same):
    :func:`load_config`, then whether this host can run it (:func:`~daemon.config.host_problems`)."""
    config, warnings = load_config(path, environ=environ)
    problems = host_problems(config)
    if problems:
        raise ConfigError(problems, str(path))
    return config, warnings


def _world_readable(path: Path, key: str) -> list[str]:
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & (stat.S_IROTH | stat.S_IRGRP):
        return [f"{path}: holds a password ({key}) but is readable by group/others; chmod 600 it"]
    return []


def default_config_text() -> str:
    """The embedded example config (a simulated panel calling a phone on 127.0.0.1)."""
    return resources.files("daemon").joinpath("default-config.toml").read_text(encoding="utf-8")
