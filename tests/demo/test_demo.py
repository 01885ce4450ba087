"""The README's first command: `intercomd demo` runs a simulated panel where the resident opens the door."""

from __future__ import annotations

import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest

pytestmark = pytest.mark.peers


def test_demo_visit_opens_the_door_and_shows_the_event_log(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # The per-visit event log, in the replaced system's `NAME | {json}` form, as it happened.
    events = re.findall(r"\] ([A-Z_]+) \| \{", output)
    for name in ("BUTTON_PRESSED", "CALL_START", "ANSWERED", "DTMF", "DOOR_OPEN", "HANGUP", "OUTCOME"):
        assert name in events, events
    assert re.search(r"outcome door_opened +door opened: yes", output)
    # The speaker really played: ALSA's file plugin holds the last prompt ("porta aberta").
    with wave.open(str(tmp_path / "alsa" / "last.wav")) as played:
        assert played.getnframes() > played.getframerate()  # more than a second of speech
