"""The measured process of the talk benchmarks (talk_call, aec_call): one call through SipEngine on the card.

The engine dials the phone (``spec["uri"]``), waits for the call's media, connects pjmedia's sound device, prints
``TALKING`` for the parent, talks for ``spec["seconds"]`` and hangs up; it reports its CPU as a share of one core.
"""

from __future__ import annotations

import os
import time
from typing import Any

from daemon.simulation.phone import free_port

__all__ = ["talk_through_card"]


async def talk_through_card(spec: dict[str, Any], *, stream_stats: bool = False) -> dict[str, Any]:
    """One call as above; ``stream_stats``: also pjsua2's stream statistics, read just before the hang-up."""
    import anyio

    from daemon.bridge import LoopBridge
    from daemon.config._sip import SipAccountConfig, SipConfig
    from daemon.sip import CallHandle, MediaActive, SipEngine
    from hw.settings import AudioConfig

    config = SipConfig(
        bind_address="127.0.0.1",
        port=free_port(),
        rtp_port=spec["rtp_port"],
        account=SipAccountConfig(uri="sip:panel@127.0.0.1"),
    )
    active: set[CallHandle] = set()
    media = anyio.Event()
    audio = AudioConfig(**spec["audio"])  # [audio]'s defaults unless the command line changed one
    async with SipEngine(config, LoopBridge(), audio) as engine, anyio.create_task_group() as tg:
        if not engine.has_sound_device:
            return {"error": f"this pjsua2 has no sound device ({engine.info}): the talk path needs a source build"}

        async def drain() -> None:
            async for event in engine.events:
                if isinstance(event, MediaActive):
                    active.add(event.handle)
                    media.set()

        tg.start_soon(drain)
        call = await engine.dial(spec["uri"], ring_timeout=10)
        with anyio.fail_after(10):
            while call not in active:
                await media.wait()
                media = anyio.Event()
        await engine.connect_sound_device(call)
        cpu0, wall0 = os.times(), time.monotonic()
        print("TALKING", flush=True)
        await anyio.sleep(spec["seconds"])
        cpu1, wall1 = os.times(), time.monotonic()
        stats = await engine.stream_stats(call) if stream_stats else None
        await engine.hangup(call)
        tg.cancel_scope.cancel()
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    result: dict[str, Any] = {
        "cpu_share_of_core": round(cpu / (wall1 - wall0), 4),
        "talk_seconds": round(wall1 - wall0, 1),
    }
    if stream_stats:
        result["stream"] = None if stats is None else stats.__dict__
    return result
