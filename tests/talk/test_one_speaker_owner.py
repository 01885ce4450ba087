"""Only the speaker route plays the panel's speaker: every prompt, click and self-test tone in the daemon goes
through ``daemon/speaker_route.py``, which knows when a talk call's audio has the card (a second open of a Pi's
``hw:`` device fails, and a beep would cut into the call). A new direct call to ``Speaker.play`` elsewhere in
``daemon/`` would bypass it; so would calling ``hw.selftest.run_selftest`` without the route's ``play``, which
plays the panel's speaker directly (the self-test's tone did so until issue 14's last round)."""

from __future__ import annotations

import ast
from pathlib import Path

DAEMON = Path(__file__).resolve().parents[2] / "daemon"
ROUTE = DAEMON / "speaker_route.py"


def _speaker_play_calls(path: Path) -> list[int]:
    """Lines calling ``<something>.speaker.play(...)`` or ``<something>._speaker.play(...)``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "play"
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr in ("speaker", "_speaker")
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_speaker_route_calls_speaker_play() -> None:
    elsewhere = {
        str(path.relative_to(DAEMON)): lines
        for path in sorted(DAEMON.rglob("*.py"))
        if path != ROUTE and (lines := _speaker_play_calls(path))
    }
    assert elsewhere == {}
    assert _speaker_play_calls(ROUTE), "the route itself plays through the speaker (the check would find nothing)"


def test_the_hardware_selftest_is_given_the_routes_player() -> None:
    calls = [
        node
        for path in sorted(DAEMON.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "run_hw_selftest"
    ]
    assert calls, "daemon/ no longer runs the hardware self-test under this name: update this check"
    assert all(any(k.arg == "play" for k in call.keywords) for call in calls)
