"""The real ``intercomd`` with a broken or missing sound setup: it stays up, keeps calling, says why, and keeps
PortAudio's JACK/ALSA probe chatter out of its journal (stderr)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.app.conftest import Daemon, make_daemon, prompt_cache, short_dir

__all__ = ["make_daemon", "prompt_cache", "short_dir"]  # the app tests' fixtures, reused here

RESIDENT = "sip:101@127.0.0.1:5999"  # nothing listens there: the visit rings nobody, which is all it needs


def wait_for_the_call(daemon: Daemon) -> None:
    daemon.until(lambda: "INVITE sent" in daemon.log() or "CALL_START" in daemon.log(), 10, "the visit's call")


def test_no_alsa_pcm_at_all_the_daemon_keeps_calling_and_says_why(
    make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    # Before: Pa_Initialize's assertion SIGABRTed intercomd right after SIP started, and systemd restarted it for ever.
    empty = tmp_path / "asound.conf"
    empty.write_text("# no pcm.default, no cards\n", encoding="utf-8")
    daemon = make_daemon()
    daemon.write_config([RESIDENT])
    daemon.start(env={"ALSA_CONFIG_PATH": str(empty)})
    daemon.wait_log("speaker unavailable, the panel goes on calling without it", timeout=30)
    assert "SIGABRT" in daemon.log() and "check the ALSA setup" in daemon.log()
    daemon.ctl("press", "101")
    wait_for_the_call(daemon)  # the visit calls the resident without a speaker
    assert daemon.proc is not None and daemon.proc.poll() is None
    daemon.ctl("status")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(10) == 0


def test_jack_probe_messages_stay_out_of_the_journal(make_daemon: Callable[..., Daemon]) -> None:
    # The machine's own ALSA setup (here: no sound card, JACK's plugin installed) makes PortAudio's JACK host API
    # print "jack server is not running or cannot be started" to fd 2 on every start, whatever the log level.
    daemon = make_daemon()
    daemon.write_config([RESIDENT])
    daemon.start(env={"ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"})
    # speaker.start() has initialized PortAudio in the daemon's own process (a card or not, it says so)...
    daemon.until(lambda: "speaker unavailable" in daemon.log() or "speaker: '" in daemon.log(), 30, "the speaker")
    daemon.ctl("press", "101")  # ...and a prompt has tried the device
    wait_for_the_call(daemon)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(10) == 0
    log = daemon.log()
    assert "jack" not in log.lower() and "ALSA lib" not in log, log[-3000:]
