"""The README's first command: `intercomd demo` runs a simulated panel where the resident opens the door."""

from __future__ import annotations

import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from daemon.demo import DEMO_AUDIO, _voiced_seconds

pytestmark = pytest.mark.peers


def test_demo_visit_opens_the_door_and_shows_the_event_log(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "demo", "--audio", "file", "--workdir", str(tmp_path)],
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


def test_demo_on_the_paced_card_plays_prompts_in_real_time(tmp_path: Path) -> None:
    """On the paced card (the demo's default where PulseAudio is installed) the speaker is recorded in real
    time: the visit's prompts are in speaker.wav, and the recording lasts at least as long as they sound."""
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "demo", "--audio", "paced", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "paced virtual card" in output
    # "porta aberta" took its real time between PLAYBACK_START and PLAYBACK_END (on the file card: ~0 s).
    start, end = (
        float(m)
        for m in re.findall(
            r'PLAYBACK_(?:START|END) \| \{[^}]*"text": "door_open"[^}]*"elapsed_seconds": ([\d.]+)', output
        )
    )
    voiced = _voiced_seconds(tmp_path / "speaker.wav")
    assert end - start > 1.0, output[-2000:]
    assert voiced > 1.0  # the recorded speaker holds the prompts' sound
    assert re.search(r"the speaker played \d+\.\d s of sound in \d+\.\d s", output)


def test_demo_audio_choices_are_the_demo_vocabulary() -> None:
    from daemon.cli import _parser

    for audio in DEMO_AUDIO:
        assert _parser().parse_args(["demo", "--audio", audio]).audio == audio
    with pytest.raises(SystemExit):
        _parser().parse_args(["demo", "--audio", "speakers"])
