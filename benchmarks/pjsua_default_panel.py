"""The baseline for benchmarks/net_recovery.py: a panel on pjsua2's defaults, nothing of ours.

One Endpoint (pjsua's default worker thread), one UDP transport on 0.0.0.0:``port``, one account with the
registrar and credentials and every other setting pjsua's own (retry 300 s after a failure, no address-change
handling, the old binding kept). Speaks the lines of tests/support/sip_harness.py that the benchmark reads:
``{"ready": port}``, ``{"event": "RegistrationChanged", ...}``; stdin ``{"cmd": "quit"}`` ends it.

Run by the benchmark inside the netlab's panel namespace: ``python -m benchmarks.pjsua_default_panel CONFIG_JSON``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pjsua2 as pj


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


class DefaultAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, registrar: str) -> None:
        super().__init__()
        self.registrar = registrar

    def onRegState(self, prm: Any) -> None:  # on pjsua's worker thread
        info = self.getInfo()
        expires = int(info.regExpiresSec)
        _say(
            {
                "event": "RegistrationChanged",
                "active": bool(info.regIsActive),
                "code": int(prm.code),
                "reason": str(prm.reason),
                "expires": 0 if expires >= 2**31 else expires,
                "registrar": self.registrar,
                "at": time.monotonic(),
            }
        )


def main(config: dict[str, Any]) -> None:
    account_fields = config["account"]
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    cfg.medConfig.sndAutoCloseTime = -1
    ep.libInit(cfg)
    tc = pj.TransportConfig()
    tc.port = int(config["port"])
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    ep.libStart()
    ep.audDevManager().setNullDev()
    acfg = pj.AccountConfig()
    acfg.idUri = account_fields["uri"]
    acfg.regConfig.registrarUri = account_fields["registrar"]
    acfg.sipConfig.authCreds.append(
        pj.AuthCredInfo("digest", "*", account_fields["username"], 0, account_fields["password"])
    )
    account = DefaultAccount(account_fields["registrar"])
    account.create(acfg, True)
    _say({"ready": int(config["port"])})
    try:
        for line in sys.stdin:
            if json.loads(line).get("cmd") == "quit":
                break
    finally:
        account.shutdown()
        del account
        ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
