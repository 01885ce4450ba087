"""Re-probe of issue 12's control class against a running ``intercomd`` through the real ``intercomctl``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability._daemon import Intercomd, daemon_config
from tests.support.peers import Sipp


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intercomd]:
    workdir = tmp_path_factory.mktemp("reprobe-control")
    with Intercomd(daemon_config(workdir, tmp_path_factory.mktemp("reprobe-cache"))) as running:
        yield running


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("sip:a@127.0.0.1:9;transport=tcp", "asks for transport=tcp but the panel's sip.transport is 'udp'"),
        ("sips:a@127.0.0.1", "is a sips: URI, which needs sip.transport = 'tls'"),
        ("sip:::::", "is not a SIP URI"),
        ("sip:a@127.0.0.1:99999", "is not a SIP URI"),
    ],
)
def test_dial_refuses_what_the_panel_cannot_dial_in_words(daemon: Intercomd, uri: str, said: str) -> None:
    # Before: pjsua's own error reached the client and the journal ("pjsua_call_make_call(acc.getId(),
    # &pj_dst_uri, ...) error: Unsuitable transport selected (PJSIP_ETPNOTSUITABLE) [../src/pjsua2/call.cpp:712]").
    done = daemon.ctl("dial", uri)
    assert done.returncode == 1, done
    assert said in done.stderr and "pjsua_call_make_call" not in done.stderr, done.stderr
    assert "call.cpp" not in daemon.journal()


@pytest.mark.peers
def test_forgotten_dials_cannot_hold_every_call_slot(tmp_path: Path, prompt_cache: Path) -> None:
    # Before: `intercomctl dial` rang with no time limit; two dials to a phone that never answers filled this
    # panel's two call slots for good, and every visitor after that heard "out of service" (dial_failed).
    with Sipp(tmp_path, "uas_never_answer") as far:
        config = daemon_config(
            tmp_path,
            prompt_cache,
            edits={
                '"sip:101@127.0.0.1:5080"': f'"{far.uri("resident")}"',
                "ring_timeout_seconds = 30": "ring_timeout_seconds = 2",
                'bind_address = "127.0.0.1"': 'bind_address = "127.0.0.1"\nmax_calls = 2',
            },
        )
        with Intercomd(config) as daemon:
            for _ in range(2):
                assert daemon.ctl("dial", far.uri("manual")).returncode == 0
            time.sleep(3)  # past the ring timeout: the dials must have given their slots back
            assert daemon.ctl("press", "101").returncode == 0
            deadline = time.monotonic() + 15
            while (
                not (rows := json.loads(daemon.ctl("history", "--json").stdout)) or rows[0]["outcome"] == "in_progress"
            ):
                assert time.monotonic() < deadline, rows
                time.sleep(0.2)
    assert rows[0]["outcome"] == "no_answer", rows[0]
