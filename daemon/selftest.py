"""``intercomctl selftest`` on the app's side: the panel's safe hardware checks, SIP registration, and a
SIP OPTIONS ping to the registrar (or, on a direct-IP panel, to the residents)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.errors import SipError
from daemon.facade import SelftestRow
from hw.selftest import TonePlayer
from hw.selftest import run_selftest as run_hw_selftest

if TYPE_CHECKING:
    from daemon.config import Config
    from daemon.sip import SipEngine
    from hw.panel import Panel

__all__ = ["MAX_PINGED", "run_selftest"]

MAX_PINGED = 8  # OPTIONS targets per run: a selftest must stay quick on a panel with many residents
PING_WITHIN = 2.0


async def run_selftest(
    panel: Panel, engine: SipEngine, config: Config, play: TonePlayer | None = None
) -> list[SelftestRow]:
    """``play``: the speaker route's :meth:`~daemon.speaker_route.SpeakerRoute.play_check_tone`."""
    rows = [SelftestRow(r.check, r.passed, r.detail) for r in await run_hw_selftest(panel, play=play)]
    reg = engine.registration
    rows.append(
        SelftestRow(
            "sip registration",
            reg.active or not reg.configured,
            "direct-IP, no registrar" if not reg.configured else f"{reg.code} {reg.reason}",
        )
    )
    for uri in ping_targets(config):
        try:
            code = await engine.options_ping(uri, within=PING_WITHIN)
        except SipError as exc:
            rows.append(SelftestRow(f"SIP OPTIONS {uri}", False, str(exc)))
            continue
        # 405/501: the peer is there and answering, it just does not implement OPTIONS.
        rows.append(SelftestRow(f"SIP OPTIONS {uri}", 200 <= code < 300 or code in (405, 501), f"answered {code}"))
    return rows


def ping_targets(config: Config) -> list[str]:
    if config.sip.account.registrar:
        return [config.sip.account.registrar]
    residents = {uri for apt in config.apartments for uri in (*apt.residents, apt.fallback) if uri}
    return sorted(residents)[:MAX_PINGED]
