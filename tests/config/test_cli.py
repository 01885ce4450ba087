"""``intercomd check-config`` and ``run`` share every check: a user's mistake is exit 78, one message, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import default_config_text, parse_config
from tests.config.configs import BASE, hermetic, with_lines


def intercomd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def assert_refused(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 78, (done.returncode, done.stderr)
    assert expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


def test_check_config_exits_78_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "intercom.toml"
    path.write_text(with_lines("pulse_seconds = 3.0", "pulse_seconds = inf").replace("port = 5070", "port = -3"))
    done = intercomd("--config", str(path), "check-config")
    assert_refused(done, "2 configuration problem(s)")
    assert "relay.pulse_seconds: inf is not a finite number" in done.stderr
    assert "sip.port: -3 out of range" in done.stderr


def test_options_after_the_subcommand_work(tmp_path: Path) -> None:
    path = tmp_path / "intercom.toml"
    path.write_text(hermetic(tmp_path))
    done = intercomd("check-config", "--config", str(path), "--log-level", "debug")
    assert done.returncode == 0, done.stderr
    assert f"{path}: configuration is valid" in done.stdout
    # Given before the subcommand too, the option after it wins; one before it is not reset by the subparser.
    assert intercomd("--config", "/nonexistent", "check-config", "--config", str(path)).returncode == 0
    assert intercomd("--config", str(path), "check-config").returncode == 0


def test_a_bad_log_level_is_refused_without_a_traceback(tmp_path: Path) -> None:
    assert_refused(intercomd("check-config", "--log-level", "VERBOSE"), "invalid choice: 'VERBOSE'")
    assert_refused(intercomd("check-config", env={"INTERCOM_LOG_LEVEL": "loud"}), "INTERCOM_LOG_LEVEL: 'LOUD'")


def test_run_refuses_what_check_config_refuses_before_starting_anything(tmp_path: Path) -> None:
    path = tmp_path / "intercom.toml"
    long_dir = tmp_path / ("r" * 110)
    path.write_text(hermetic(tmp_path).replace(str(tmp_path / "runtime_dir"), str(long_dir)))
    for command in ("check-config", "run"):
        assert_refused(intercomd("--config", str(path), command), "paths.runtime_dir: the control socket")
    assert not (tmp_path / "state_dir").exists()  # run stopped before making anything


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(BASE.encode("latin-1"), "is not UTF-8: byte 0xe3 at offset", id="latin-1"),
        pytest.param(b"", "the file is empty", id="empty"),
        pytest.param(b"[1, 2]\n", "TOML syntax error", id="toml-a-list"),
    ],
)
def test_a_broken_file_is_refused_without_a_traceback(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "intercom.toml"
    path.write_bytes(content)
    assert_refused(intercomd("--config", str(path), "check-config"), expected)


def test_a_directory_or_fifo_as_config_is_refused_without_blocking(tmp_path: Path) -> None:
    assert_refused(intercomd("check-config", "--config", str(tmp_path)), "is a directory, not a file")
    os.mkfifo(tmp_path / "fifo")
    assert_refused(intercomd("check-config", "--config", str(tmp_path / "fifo")), "is not a regular file")


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "intercom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + hermetic(tmp_path).encode())
    done = intercomd("check-config", "--config", str(path))
    assert done.returncode == 0, done.stderr


def test_print_default_config_is_the_shipped_example() -> None:
    done = intercomd("--print-default-config")
    assert done.returncode == 0
    assert parse_config(done.stdout) == parse_config(default_config_text())
