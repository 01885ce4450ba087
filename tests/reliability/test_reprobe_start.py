"""Re-probe of issue 12's start class: what ``check-config`` accepted and ``run`` then died on (exit 70 and a
systemd restart loop, or a traceback), found against the real command line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.config import host_problems, parse_config
from daemon.errors import ConfigError
from tests.reliability._daemon import Intercomd, daemon_config, intercomctl, intercomd
from tests.support.child_env import child_env


def _env() -> dict[str, str]:
    return child_env()


def _check(config: Path) -> tuple[int, str]:
    done = intercomd("--config", str(config), "check-config")
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("voice", "problem"),
    [("zz-nonexistent", "espeak-ng has no voice 'zz-nonexistent'"), ("--help", "'--help' is not a voice name")],
)
def test_an_espeak_voice_that_does_not_exist_is_a_config_error(
    tmp_path: Path, prompt_cache: Path, voice: str, problem: str
) -> None:
    # Before: check-config said "valid" and run exited 70 ("espeak-ng -v zz-nonexistent failed"), restarted forever.
    config = daemon_config(
        tmp_path, prompt_cache, edits={'engine = "espeak-ng"': f'engine = "espeak-ng"\nvoice = "{voice}"'}
    )
    status, said = _check(config)
    assert status == 78 and f"prompts.voice: {problem}" in said, said
    run = intercomd("--config", str(config), "run")
    assert run.returncode == 78 and "Traceback" not in run.stderr


def test_a_voice_espeak_has_passes(tmp_path: Path, prompt_cache: Path) -> None:
    config = parse_config(daemon_config(tmp_path, prompt_cache).read_text())
    config = replace(config, prompts=replace(config.prompts, voice="pt-br+f3"))
    assert not [p for p in host_problems(config) if "voice" in p]


def test_a_book_length_prompt_text_is_refused() -> None:
    # Before: 160,000 characters passed check-config, and run synthesized them for longer than systemd waits.
    from daemon.config import default_config_text

    text = default_config_text() + '\n[prompts.text]\nwaiting = "' + "palavra " * 200 + '"\n'
    with pytest.raises(ConfigError, match=r"prompts: text\.waiting: 1,600 characters; at most 1,000"):
        parse_config(text)


def test_a_runtime_dir_that_cannot_be_made_is_found_by_check_config(tmp_path: Path, prompt_cache: Path) -> None:
    # Before (as root, as the unit's ExecStartPre would run it): access() said /proc writable, check-config said
    # valid, and run died with an ExceptionGroup traceback, exit 1, from the control socket's mkdir.
    config = daemon_config(tmp_path, prompt_cache, edits={f'"{tmp_path / "run"}"': '"/proc/intercom-probe/run"'})
    status, said = _check(config)
    assert status == 78 and "paths.runtime_dir: /proc/intercom-probe/run cannot be created" in said, said
    assert not Path("/proc/intercom-probe").exists()


def test_another_listener_on_the_control_socket_is_one_line_not_a_traceback(tmp_path: Path, prompt_cache: Path) -> None:
    # Before: "another intercomd is already listening" left run inside the app's task groups and came out as an
    # ExceptionGroup traceback with exit 1. A second intercomd started by hand on a panel does exactly this.
    config = daemon_config(tmp_path, prompt_cache)
    (tmp_path / "run").mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(tmp_path / "run" / "control.sock"))
        other.listen(1)
        run = intercomd("--config", str(config), "run")
    assert run.returncode == 70, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "another intercomd is already listening" in run.stderr


@pytest.mark.parametrize(
    ("args", "status", "said"),
    [
        (["demo", "--visits", "-1"], 78, "argument --visits: must be 1..1000"),  # before: ran nothing, exit 1
        (["demo", "--visits", "1" + "0" * 20], 78, "argument --visits: must be 1..1000"),  # before: a traceback
        (["demo", "--workdir", "/proc/intercom-demo", "--visits", "1"], 1, "cannot use --workdir /proc/intercom-demo"),
    ],
)
def test_the_demos_arguments_are_user_errors_not_tracebacks(args: list[str], status: int, said: str) -> None:
    done = intercomd(*args, timeout=120)
    assert done.returncode == status and said in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_a_sighup_during_start_up_does_not_end_the_daemon(tmp_path: Path) -> None:
    # Before: SIGHUP's default action ended intercomd until the app's handler was installed (after seconds of
    # prompt synthesis with an empty cache): `kill -HUP` there left it dead by signal, and systemd restarting it.
    config = daemon_config(tmp_path, tmp_path / "empty-cache")
    daemon = Intercomd(config)
    argv = [sys.executable, "-c", "import sys; from daemon.cli import main; sys.exit(main())", "--config", str(config)]
    with subprocess.Popen(
        [*argv, "run"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env()
    ) as process:
        try:
            assert process.stderr is not None
            process.stderr.readline()  # its first log line: main() has begun; prompt synthesis is still ahead
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while intercomctl(daemon.socket, "status").returncode != 0:
                assert process.poll() is None, f"intercomd ended by SIGHUP: {process.returncode}"
                assert time.monotonic() < deadline
                time.sleep(0.2)
        finally:
            process.terminate()
            process.wait(15)
    assert process.returncode == 0
