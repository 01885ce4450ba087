"""PortAudio in a daemon: a broken ALSA setup must not abort the panel, and its JACK/ALSA chatter stays off stderr.

Each case runs in a subprocess with its own ``ALSA_CONFIG_PATH``, since alsa-lib reads its configuration once per
PortAudio initialization and a SIGABRT would take the test runner with it.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hw._portaudio import _symbol, find_device, probe
from hw.errors import AudioError

ROOT = Path(__file__).parents[2]

# A whole panel on mock pins: built, its run() started (which probes and opens the speaker), a prompt played
# and a doorbell pressed. Prints the speaker's health and what the panel posted, as JSON.
PANEL_SCRIPT = """
import json, logging, sys
import anyio
from gpiozero.pins.mock import MockFactory
from hw.events import ButtonPressed
from hw.panel import Panel
from hw.settings import ButtonConfig, PanelConfig
from hw.speaker import tone

logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="LOG %(levelname)s %(name)s %(message)s")

async def main():
    events = []
    config = PanelConfig(buttons=(ButtonConfig("101", 17, min_press_ms=0.0),))
    factory = MockFactory()
    with Panel(config, pin_factory=factory, post=events.append) as panel:
        async with anyio.create_task_group() as tg:
            tg.start_soon(panel.run)
            with anyio.fail_after(20):
                while panel.speaker.health().detail == "not checked yet":
                    await anyio.sleep(0.01)
            played = await panel.speaker.play(*tone(440.0, 0.05))
            factory.pin(17).drive_low()
            with anyio.fail_after(5):
                while not any(isinstance(e, ButtonPressed) for e in events):
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        health = panel.speaker.health()
        print("RESULT " + json.dumps({"ok": health.ok, "detail": health.detail, "played": played.ok,
                                      "events": [type(e).__name__ for e in events]}))

anyio.run(main)
"""


def run_panel(alsa_config: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    env = {**os.environ, "ALSA_CONFIG_PATH": str(alsa_config), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    env.pop("JACK_NO_START_SERVER", None)
    proc = subprocess.run(
        [sys.executable, "-c", PANEL_SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc, json.loads(lines[-1].removeprefix("RESULT "))


def test_no_alsa_pcm_at_all_leaves_the_panel_up_without_its_speaker(tmp_path: Path) -> None:
    # Without any PCM definition PortAudio's Pa_Initialize fails an assertion and SIGABRTs (rc -6) the process
    # that calls it: before the probe, that was the daemon itself.
    config = tmp_path / "asound.conf"
    config.write_text("# an ALSA setup with no pcm.default and no cards\n", encoding="utf-8")
    proc, result = run_panel(config, tmp_path)
    assert result["ok"] is False and result["played"] is False
    assert "SIGABRT" in str(result["detail"]) and "ALSA" in str(result["detail"]), result
    assert result["events"] == ["ButtonPressed"]  # the panel still works
    assert "speaker unavailable, the panel goes on calling without it" in proc.stdout


def test_default_pcm_on_a_missing_card_is_reported_not_fatal(tmp_path: Path) -> None:
    config = tmp_path / "asound.conf"
    config.write_text("pcm.!default { type hw card 7 }\nctl.!default { type hw card 7 }\n", encoding="utf-8")
    _, result = run_panel(config, tmp_path)
    assert result["ok"] is False and result["played"] is False
    assert "output device 'default' not found" in str(result["detail"]), result
    assert result["events"] == ["ButtonPressed"]


def test_jack_and_alsa_probe_messages_go_to_the_debug_log_not_stderr(tmp_path: Path) -> None:
    # This setup makes PortAudio's JACK host API print "jack server is not running or cannot be started" (and
    # friends) on fd 2 when it initializes in the daemon's own process.
    config = tmp_path / "asound.conf"
    config.write_text("pcm.!default { type hw card 7 }\nctl.!default { type hw card 7 }\n", encoding="utf-8")
    proc, _ = run_panel(config, tmp_path)
    assert "jack" not in proc.stderr.lower() and "ALSA lib" not in proc.stderr, proc.stderr
    assert "LOG DEBUG hw._portaudio jack: jack server is not running" in proc.stdout, proc.stdout[-3000:]


def test_probe_reports_a_working_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "asound.conf"
    config.write_text("pcm.!default { type null }\n", encoding="utf-8")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(config))
    result = probe()
    assert result.ok, result
    assert "1 with outputs" in result.detail


class FakePortAudio:
    """The part of pyaudio.PyAudio that device lookup reads: a device list and the defaults."""

    def __init__(self, devices: list[tuple[str, int, int]], default_output: int = 0, default_input: int = 0) -> None:
        self.devices = devices
        self.defaults = {"output": default_output, "input": default_input}

    def get_device_count(self) -> int:
        return len(self.devices)

    def get_device_info_by_index(self, i: int) -> dict[str, object]:
        name, outs, ins = self.devices[i]
        return {"index": i, "name": name, "maxOutputChannels": outs, "maxInputChannels": ins}

    def get_default_output_device_info(self) -> dict[str, object]:
        return self.get_device_info_by_index(self.defaults["output"])

    def get_default_input_device_info(self) -> dict[str, object]:
        return self.get_device_info_by_index(self.defaults["input"])


def test_device_lookup_one_rule_for_both_directions() -> None:
    pa = FakePortAudio(
        [("USB Audio: hw:1,0", 2, 1), ("mic only", 0, 1), ("default", 2, 2), ("HDMI", 8, 0)],
        default_output=2,
        default_input=1,
    )
    assert find_device(pa, "HDMI", "output") == 3  # exact
    assert find_device(pa, "usb audio", "output") == 0  # case-insensitive substring
    assert find_device(pa, "mic only", "input") == 1
    assert find_device(pa, "default", "output") == 2
    with pytest.raises(AudioError, match=r"output device 'mic only' not found; .*'USB Audio: hw:1,0', 'default'"):
        find_device(pa, "mic only", "output")  # no outputs: never picked for the speaker
    with pytest.raises(AudioError, match="input device 'HDMI' not found"):
        find_device(pa, "HDMI", "input")
    with pytest.raises(AudioError, match="devices: none"):
        find_device(FakePortAudio([]), "default", "output")


def test_a_library_without_the_message_hook_is_tolerated() -> None:
    # An alsa-lib older than 1.1.6 has no snd_lib_error_set_local: its chatter stays, PortAudio still starts.
    libc = ctypes.CDLL(None)
    assert _symbol(libc, "snd_lib_error_set_local_not_here") is None
    assert _symbol(None, "jack_set_error_function") is None
    assert _symbol(libc, "getpid") is not None
