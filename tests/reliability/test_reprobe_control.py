"""Re-probe of issue 12's control class against a running ``intercomd`` through the real ``intercomctl``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability._daemon import Intercomd, daemon_config


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
