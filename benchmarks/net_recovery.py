"""Recovery on real (namespaced) networks: ours beside a panel on pjsua2's defaults, measured in the same run.

Both panels run in the netlab's panel namespace (tests/support/netlab.py), each registered with kamailio in
the PBX's namespace; then, one scenario at a time:

* failover: the first registrar stops. Ours: time until it is registered and calling through the second
  (``[sip.account] registrars``, default ``failover_seconds``). pjsua's defaults have one registrar per account
  and no failover: the time until it even notices the failure is given instead;
* address change: the panel's address changes (a new DHCP lease). Time until each is registered again;
* outage: the link carries nothing for ``--outage`` seconds (kamailio grants 30 s registrations, so
  refreshes fall inside it). Time from the link's return until each is registered again.

Waits are capped at ``--cap`` seconds ("> cap" in the table). Needs root (network namespaces), kamailio.
Run from the repository root:
``.venv/bin/python -m benchmarks.net_recovery [--cap 120] [--outage 90] [--only SCENARIO]``.
Prints a Markdown table (for docs/reliability.md); asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.netlab import PBX_IP, NetLab, netlab, netlab_available
from tests.support.netpeers import EngineProcess, NsKamailio

USERS = {"panel": "s3cret", "base": "s3cret"}
OURS_PORT, BASE_PORT = 5060, 5062
Row = tuple[str, str, str, str]


def _account(user: str, registrars: list[str]) -> dict[str, Any]:
    return {"uri": f"sip:{user}@{PBX_IP}", "registrars": registrars, "username": user, "password": USERS[user]}


@contextmanager
def _panels(
    tmp: Path, lab: NetLab, ours_registrars: list[str], base_registrar: str
) -> Iterator[tuple[EngineProcess, EngineProcess]]:
    ours_config = {"bind_address": "0.0.0.0", "port": OURS_PORT, "rtp_port": 20000}
    ours = EngineProcess(tmp / "ours", lab, {**ours_config, "account": _account("panel", ours_registrars)})
    base_account = {**_account("base", []), "registrar": base_registrar}
    base = EngineProcess(
        tmp / "base", lab, {"port": BASE_PORT, "account": base_account}, module="benchmarks.pjsua_default_panel"
    )
    with ExitStack() as stack:
        for panel in (ours, base):
            panel.start()
            stack.callback(panel.stop)
            # 75 s: a first REGISTER sent before the namespace's link settled is retried after retry_seconds (30)
            # plus up to 10 s of jitter; seen once on a loaded machine.
            panel.event("RegistrationChanged", 75, active=True)
        yield ours, base


def _after(panel: EngineProcess, t0: float, cap: float, match: Callable[[dict[str, Any]], bool]) -> float | None:
    """Seconds from ``t0`` to the first event after ``t0`` that ``match`` accepts; None past the cap."""
    for seen in panel.seen:
        if seen.get("event") and seen["at"] > t0 and match(seen):
            return float(seen["at"]) - t0
    left = t0 + cap - time.monotonic()
    if left <= 0:
        return None
    try:
        found = panel.wait_for(lambda m: bool(m.get("event")) and m["at"] > t0 and match(m), left)
    except TimeoutError:
        return None
    return float(found["at"]) - t0


def _registered(m: dict[str, Any]) -> bool:
    return m["event"] == "RegistrationChanged" and bool(m["active"])


def _text(seconds: float | None, cap: float) -> str:
    return f"> {cap:g} s" if seconds is None else f"{seconds:.1f} s"


def failover(tmp: Path, cap: float) -> Row:
    with (
        netlab(seed=1) as lab,
        NsKamailio(tmp / "k1", USERS, ns=lab.pbx) as first,
        NsKamailio(tmp / "k2", USERS, ns=lab.pbx) as second,
        _panels(tmp, lab, [first.registrar, second.registrar], first.registrar) as (ours, base),
    ):
        t0 = time.monotonic()
        first.stop()
        via_second = _after(ours, t0, cap, lambda m: _registered(m) and m["registrar"] == second.registrar)
        noticed = _after(base, t0, cap, lambda m: m["event"] == "RegistrationChanged" and not m["active"])
    return (
        "first registrar stops -> registered through the second",
        _text(via_second, cap),
        f"never (one registrar); notices after {_text(noticed, cap)}",
        "failover_seconds = 10 (default)",
    )


def address_change(tmp: Path, cap: float) -> Row:
    with (
        netlab(seed=2) as lab,
        NsKamailio(tmp / "k", USERS, ns=lab.pbx) as kamailio,
        _panels(tmp, lab, [kamailio.registrar], kamailio.registrar) as (ours, base),
    ):
        t0 = time.monotonic()
        lab.set_panel_address("10.77.0.9")
        ours_back = _after(ours, t0, cap, _registered)
        base_back = _after(base, t0, cap, _registered)
    return ("panel's address changes -> registered again", _text(ours_back, cap), _text(base_back, cap), "")


def outage(tmp: Path, cap: float, seconds: float) -> Row:
    with (
        netlab(seed=3) as lab,
        NsKamailio(tmp / "k", USERS, ns=lab.pbx, max_expires=30) as kamailio,
        _panels(tmp, lab, [kamailio.registrar], kamailio.registrar) as (ours, base),
    ):
        lab.outage(True)
        time.sleep(seconds)  # the outage itself: a script, not a test
        lab.outage(False)
        t0 = time.monotonic()
        ours_back = _after(ours, t0, cap, _registered)
        base_back = _after(base, t0, cap, _registered)
    return (
        f"{seconds:g} s outage ends -> registered again",
        _text(ours_back, cap),
        _text(base_back, cap),
        "30 s registrations; ours registers as soon as a probe is answered; pjsua retries after 300 s",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cap", type=float, default=120.0, help="longest wait per panel and scenario (s)")
    # Longer than a refresh period (25 s) plus pjsip's 32 s REGISTER timeout: some REGISTER then fails for sure.
    parser.add_argument("--outage", type=float, default=90.0, help="how long the link carries nothing (s)")
    parser.add_argument(
        "--only", choices=("failover", "address", "outage"), action="append", help="run just these scenarios"
    )
    args = parser.parse_args()
    only = set(args.only or ("failover", "address", "outage"))
    why = netlab_available()
    if why is not None:
        sys.exit(f"net_recovery: {why}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        if "failover" in only:
            rows.append(failover(Path(tmp) / "failover", args.cap))
        if "address" in only:
            rows.append(address_change(Path(tmp) / "address", args.cap))
        if "outage" in only:
            rows.append(outage(Path(tmp) / "outage", args.cap, args.outage))
    print("| scenario | ours | pjsua2 defaults | notes |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
