"""systemd's view of the real daemon: Type=notify readiness, watchdog pings, exit statuses."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from daemon.prompt_texts import PROMPT_NAMES
from tests.app.conftest import Daemon
from tests.support.peers import sip_options

RESIDENT = "sip:101@127.0.0.1:5999"  # never called by these tests: nothing needs to listen there


def test_ready_only_after_prompts_are_cached_and_sip_is_up(make_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    cold_cache = tmp_path / "cold-cache"  # a first boot: every prompt is synthesized before READY
    daemon = make_daemon(cache=cold_cache)
    daemon.write_config([RESIDENT])

    def snapshot() -> tuple[int, int | None]:
        # Taken on the listener thread as READY=1 arrives, while the daemon carries on: what existed then.
        return len(list(cold_cache.rglob("*.wav"))), sip_options(daemon.port, timeout=1.0)

    daemon.start(wait_ready=False, on_ready=snapshot)
    ready_after = daemon.wait_ready()
    assert daemon.notify is not None
    taken = daemon.notify.ready_snapshot
    assert isinstance(taken, tuple), "no snapshot taken at READY=1"
    wavs, options = taken
    assert wavs >= len(PROMPT_NAMES), "READY before the prompts were in the cache"
    assert options is not None, "READY before SIP answered"
    assert daemon.status()["registration"]["active"] is True
    # The heap start-up left was settled before READY (daemon.heap): its full collection is no visit's pause.
    log_text = daemon.log()
    settled = re.search(r"heap settled: (\d+) objects", log_text)
    assert settled is not None, log_text[-2000:]
    assert int(settled.group(1)) > 10_000, "start-up leaves tens of thousands of objects (imports, pjsua2, anyio)"
    assert log_text.index("heap settled") < log_text.index("intercom ready")
    # No WATCHDOG_USEC in the environment: no pings (a daemon outside systemd must not spam a socket).
    time.sleep(0.3)
    assert daemon.notify.count("WATCHDOG=1") == 0
    print(f"\nstart -> READY=1 (cold prompt cache): {ready_after:.2f} s")
    assert ready_after < 15

    # A second boot on the now-warm cache is what a panel does after a restart: report it too.
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(5) == 0
    warm = make_daemon(cache=cold_cache)
    warm.write_config([RESIDENT])
    print(f"start -> READY=1 (warm prompt cache): {warm.start(wait_ready=False).wait_ready():.2f} s")


def test_watchdog_pings_at_half_the_interval(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    daemon.write_config([RESIDENT])
    daemon.start(env={"WATCHDOG_USEC": "400000"})  # 0.4 s: pings every 0.2 s
    assert daemon.notify is not None
    first = daemon.notify.count("WATCHDOG=1")
    time.sleep(1.2)
    pings = daemon.notify.count("WATCHDOG=1") - first
    assert 4 <= pings <= 8, pings


def test_watchdog_meant_for_another_process_is_ignored(make_daemon: Callable[..., Daemon]) -> None:
    # systemd sets WATCHDOG_PID; a wrapper that exec'd us without clearing it must not make us ping.
    daemon = make_daemon()
    daemon.write_config([RESIDENT])
    daemon.start(env={"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"})
    time.sleep(0.6)
    assert daemon.notify is not None and daemon.notify.count("WATCHDOG=1") == 0


def test_bad_config_exits_78_without_ready(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    daemon.write_config(["101@nowhere"])  # not a SIP URI
    daemon.start(wait_ready=False)
    assert daemon.wait_exit(15) == 78
    assert daemon.notify is not None and daemon.notify.count("READY=1") == 0
    assert "residents[0]" in daemon.log()


def test_sigterm_when_idle_exits_0_and_says_stopping(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    daemon.write_config([RESIDENT])
    daemon.start()
    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(3) == 0
    print(f"\nSIGTERM -> exit (idle): {time.monotonic() - sent:.2f} s")
    assert daemon.notify is not None
    daemon.notify.first("STOPPING=1", 1)
    assert not daemon.socket.exists(), "the control socket is removed on the way out"


def test_sigint_behaves_as_sigterm(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    daemon.write_config([RESIDENT])
    daemon.start()
    daemon.signal(signal.SIGINT)
    assert daemon.wait_exit(3) == 0
