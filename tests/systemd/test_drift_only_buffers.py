"""packaging/pjsua2/delaybuf-drift-only.patch and jbuf-drift-only.patch: pjmedia's buffers shed drift, not jitter.

Both buffers are run from the loaded build's own library (tests/systemd/_pj_buffers.py, in a child process) on
five minutes of a producer and a consumer that each keep their own 20 ms clock but run late now and then (up to
50 ms, 5 % of periods, and once 80 ms in the first two seconds), as pjmedia's capture and playback threads and a
phone's packets do. Stock pjmedia, on the same schedule (build 3f1b6d2c7cd35bcb, seed 1): the delay buffer cut 11
times and made audio up 17 times after the first 5 s, the static jitter buffer 60 and 48 times; each a step in
what the far end hears. Patched, with one clock they do neither; with a producer 500 ppm fast they shed the
surplus, make nothing up, and stay bounded. The delay buffer sheds by resampling (PJMEDIA_DELAY_BUF_DRIFT_SHED_PPM:
a frame read from a sample more than a frame now and then, no step); the jitter buffer, whose frames are still
encoded, in a few cuts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SECONDS = 300


def _build_setting(name: str) -> int:
    try:
        import pjsua2_build_info  # type: ignore[import-not-found]  # written by build.sh next to pjsua2.py
    except ImportError:
        pytest.skip("not a source build of pjsua2")
    value = getattr(pjsua2_build_info, name, 0)
    if not value:
        pytest.skip(f"this build does not have the patch ({name} = {value})")
    return int(value)


def run(scenario: str, ppm: float, seed: int = 1) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.systemd._pj_buffers", scenario, str(SECONDS), str(ppm), str(seed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("seed", [1, 2])
def test_the_delay_buffer_between_one_cards_threads_neither_drops_nor_inserts(seed: int) -> None:
    _build_setting("DELAY_BUF_DRIFT_WINDOW_MS")
    out = run("delay_buffer", 0, seed)
    assert (out["dropped"], out["inserted"]) == (0, 0), out
    assert out["delay_ms_max"] < 180, out  # the conference's 8 frames and the one in flight: nothing overflowed
    # The first seconds' stall left more than the bursts need (the frames made up for it are kept): shed, but
    # only by resampling, a sample at a time, and no more than that surplus (160 samples, 10 ms, with both seeds)
    assert out["compressed_samples"] == out["compressed"] <= 480, out


def test_the_delay_buffer_sheds_a_faster_capture_clock_by_resampling_and_makes_nothing_up() -> None:
    _build_setting("DELAY_BUF_DRIFT_SHED_PPM")
    out = run("delay_buffer", 500)  # 150 ms (2,400 samples) more in 5 minutes than the consumer takes
    assert out["inserted"] == 0, out
    assert out["compressed_samples"] >= 800, out  # most of it shed without a step
    # what a 10 s window did not see (the bursts reach the buffer's capacity first) is cut on overflow, as stock
    assert out["dropped"] <= 6, out  # drift-only with one cut per shed: 7; stock's learning: 11 per 5 min at 0 ppm
    assert out["delay_ms_max"] < 200, out  # bounded: 160 ms of buffer and the frame in flight
    assert out["delay_ms_last"] < 120, out
    assert any("gradually" in line for line in out["log"]), out["log"]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_static_jitter_buffer_keeps_a_frame_it_concealed_instead_of_dropping_it_again(seed: int) -> None:
    _build_setting("JBUF_DRIFT_WINDOW_MS")
    out = run("jitter_buffer", 0, seed)
    assert (out["dropped"], out["inserted"]) == (0, 0), out
    assert out["delay_ms_max"] < 160, out  # the stall's 80 ms and the bursts on top: kept, not grown


def test_the_static_jitter_buffer_still_sheds_a_faster_sender() -> None:
    _build_setting("JBUF_DRIFT_WINDOW_MS")
    out = run("jitter_buffer", 500)  # 150 ms more in 5 minutes than the card takes
    assert out["inserted"] == 0, out
    assert 2 <= out["dropped"] <= 10, out  # a few cuts of several frames each, not one frame every 200 ms
    assert out["delay_ms_max"] <= 200, out
    assert any("Drift" in line for line in out["log"]), out["log"]
