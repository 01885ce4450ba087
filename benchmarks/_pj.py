"""pjsua2 set-up shared by the benchmark's own processes (the far end and the baseline).

Our side never uses this: it goes through ``daemon.sip``. The settings here are the ones
docs/pjsua2.md explains: the null sound device with ``sndAutoCloseTime = -1`` (or the
conference clock stops and no RTP/DTMF leaves), RTP ports below Linux's ephemeral range.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pjsua2 as pj

__all__ = ["FarEnd", "endpoint", "loaded_max_calls"]


def loaded_max_calls() -> int:
    """PJSUA_MAX_CALLS of the pjsua2 this process loaded (32 for our source build, 4 for a default one): the
    default of ``UaConfig.maxCalls``, and pjsua lowers any larger value to it (the daemon reads it the same way)."""
    return int(pj.UaConfig().maxCalls)


@contextlib.contextmanager
def endpoint(sip_port: int, rtp_port: int, *, thread_cnt: int, max_calls: int = 4) -> Iterator[pj.Endpoint]:
    """A started Endpoint with a UDP transport on 127.0.0.1:``sip_port``; destroyed on exit."""
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = thread_cnt
    cfg.uaConfig.mainThreadOnly = thread_cnt == 0
    cfg.uaConfig.maxCalls = max_calls
    cfg.medConfig.sndAutoCloseTime = -1
    cfg.medConfig.threadCnt = 1
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = sip_port
    tcfg.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    try:
        yield ep
    finally:
        ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)


def account_config(uri: str, rtp_port: int) -> pj.AccountConfig:
    acfg = pj.AccountConfig()
    acfg.idUri = uri
    acfg.mediaConfig.transportConfig.port = rtp_port
    acfg.mediaConfig.transportConfig.portRange = 200
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    return acfg


class FarEnd:
    """The residents' phone as a child process (``benchmarks.far_end``), started and stopped around a run."""

    def __init__(self, port: int, *args: str) -> None:
        self.port = port
        self._cmd = [sys.executable, "-m", "benchmarks.far_end", "--port", str(port), *args]
        self._proc: subprocess.Popen[str] | None = None
        self.result: dict[str, Any] = {}

    def __enter__(self) -> FarEnd:
        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._proc.stdout is not None
        # pjlib logs a few lines to stdout before logConfig applies; "ready" follows once it is bound.
        for line in self._proc.stdout:
            if line.startswith("ready"):
                return self
        raise RuntimeError(f"far end exited before it was ready (status {self._proc.wait()})")

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        time.sleep(0.3)  # let the last BYEs land before it counts
        self._proc.send_signal(signal.SIGTERM)
        out, _err = self._proc.communicate(timeout=30)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        self.result = json.loads(lines[-1]) if lines else {"error": "far end printed nothing"}
