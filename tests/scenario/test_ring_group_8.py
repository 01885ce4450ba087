"""A parallel ring group of 8 through the whole daemon: eight real baresip phones ring at once.

On the pjsua2 source build (PJSUA_MAX_CALLS 32, packaging/pjsua2/config_site.h) all eight legs ring; pjproject's
default (4, the PyPI wheel's) would fail legs 5-8: the start-up warning for that is in tests/sip/test_pjsua_info.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from daemon.config import Apartment
from daemon.config._sip import MAX_CALLS_LIMIT
from daemon.simulation.phone import Baresip
from tests.scenario.conftest import Panel, run_panel, scenario_config
from tests.support.alsa import AlsaCapture

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

GROUP = 8


def loaded_max_calls() -> int:
    """PJSUA_MAX_CALLS of the pjsua2 the daemon will load: the source build says so in pjsua2_build_info
    (written beside it by packaging/pjsua2/build.sh); the wheel has no such module and stops at pjproject's
    default, 4 (asserted against the running engine in the tests below)."""
    try:
        import pjsua2_build_info  # type: ignore[import-not-found]  # only on a source build's PYTHONPATH
    except ImportError:
        return 4
    return int(pjsua2_build_info.MAX_CALLS)


@pytest.fixture
def phones(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[Baresip]]:
    count = getattr(request, "param", GROUP)
    with ExitStack() as stack:
        yield [stack.enter_context(Baresip(tmp_path, user=f"r{n}", answermode="manual")) for n in range(1, count + 1)]


def group_of(phones: list[Baresip]) -> Apartment:
    return Apartment(
        name="101", buttons=("101",), residents=tuple(p.uri for p in phones), codes=("1",), strategy="parallel"
    )


async def all_ringing(panel: Panel, phones: list[Baresip]) -> None:
    """Every phone got its INVITE and none of them has seen its call end: all the calls ring at the same time."""
    await panel.press()
    for phone in phones:
        await phone.wait_event("CALL_INCOMING", 10)
    closed = [p.user for p in phones if any(e.get("type") == "CALL_CLOSED" for e in p.all_events)]
    assert not closed, f"legs ended before all {len(phones)} rang: {closed}"
    assert panel.app.sip.info is not None and panel.app.sip.info.max_calls >= len(phones)
    assert await panel.app.visit_log.flush()  # events.jsonl is written behind the visit's start (WRITE_BEHIND_S)
    ringing = {e["target"] for e in panel.events() if e["event"] == "CALL_START"}
    assert ringing == {p.uri for p in phones}
    assert "DIAL_FAILED" not in panel.names()


source_build_only = pytest.mark.skipif(
    loaded_max_calls() < GROUP,
    reason=f"this pjsua2 places at most {loaded_max_calls()} calls at once (PJSUA_MAX_CALLS; the wheel): a parallel "
    f"group of {GROUP} needs the source build (./dev.sh test, or PYTHONPATH=<build>/python)",
)


@source_build_only
async def test_eight_ring_at_once_one_answers_the_others_are_cancelled_and_the_code_opens(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture, phones: list[Baresip]
) -> None:
    answerer, others = phones[5], [p for i, p in enumerate(phones) if i != 5]
    config = scenario_config(tmp_path, prompt_cache, [group_of(phones)], ring_timeout_seconds=20)
    async with run_panel(config) as panel:
        await all_ringing(panel, phones)
        answerer.accept()
        await answerer.wait_event("CALL_ESTABLISHED", 10)
        for phone in others:
            await phone.wait_event("CALL_CLOSED", 10)  # CANCEL as soon as one answered
        await anyio.sleep(0.8)  # the pace the other scenarios type codes at after the answer
        answerer.command("sndcode", "1")
        await panel.until(lambda: panel.relay_energized, 5, "relay energized")
        await answerer.wait_event("CALL_CLOSED", 10)  # hangup_after_open
        await panel.visit_done()
        (record,) = await panel.app.visit_history.recent(5)
        names = panel.names()
    assert record.outcome == "door_opened" and record.door_opened and record.answered_by == answerer.uri
    assert names.count("CALL_START") == GROUP and "DIAL_FAILED" not in names
    assert names.index("ANSWERED") < names.index("DOOR_OPEN")
    assert all(not any(e.get("type") == "CALL_ESTABLISHED" for e in p.all_events) for p in others)


@source_build_only
@pytest.mark.parametrize("phones", [GROUP, MAX_CALLS_LIMIT], indirect=True, ids=["8", "the-configured-maximum"])
async def test_all_ring_nobody_answers_the_ring_timeout_ends_every_leg(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture, phones: list[Baresip]
) -> None:
    config = scenario_config(tmp_path, prompt_cache, [group_of(phones)], ring_timeout_seconds=3)
    config = replace(config, sip=replace(config.sip, max_calls=max(config.sip.max_calls, len(phones))))
    async with run_panel(config) as panel:
        await all_ringing(panel, phones)
        for phone in phones:
            await phone.wait_event("CALL_CLOSED", 15)
        await panel.visit_done(timeout=30)
        (record,) = await panel.app.visit_history.recent(5)
        hangups = [e for e in panel.events() if e["event"] == "HANGUP"]
        assert panel.app.visits.current is None
        assert not panel.relay_energized
    assert record.outcome == "no_answer" and not record.door_opened
    assert sorted(e["target"] for e in hangups) == sorted(p.uri for p in phones)
    assert all(e["text"] == "ring timeout" for e in hangups)
