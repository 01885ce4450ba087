"""Event -> broker-delivered latency of the MQTT link, and how it catches up after a broker outage.

``python -m benchmarks.mqtt_latency [--n 500] [--gap-ms 5] [--qos 1] [--outage 200]``

A real Mosquitto on 127.0.0.1 (tests/mqtt/broker.py), the MQTT link fed by a real VisitLog (as the app's
events are), and a subscriber in a separate process that timestamps each message on arrival with the
same clock (``time.monotonic``: CLOCK_MONOTONIC is one clock for every process on Linux). Latency is from
the ``VisitLog.event()`` call (what the visit does) to the subscriber's receipt, events spaced ``--gap-ms``
so that one does not queue behind the other. Then the broker is stopped, ``--outage`` events happen, the
broker is started again, and the time from restart until the last of them is delivered is measured.
Prints one JSON line (benchmarks' convention) and a short summary on stderr.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from benchmarks._proc import emit
from benchmarks._stats import summarize
from daemon.mqtt import MqttConfig
from tests.mqtt.broker import Mosquitto
from tests.mqtt.fakes import FakeApp
from tests.mqtt.harness import running_link, until

# The subscriber process: prints "<monotonic> <visit>" per doorbell event, flushed, and "ready" once subscribed.
SUBSCRIBER = """
import sys, time, asyncio, json, aiomqtt
async def main(port, topic):
    while True:
        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier="bench-sub", clean_session=False) as c:
                await c.subscribe(topic, qos=1)
                print("ready", flush=True)
                async for m in c.messages:
                    print(time.monotonic(), json.loads(m.payload)["visit"], flush=True)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


class SubscriberProcess:
    def __init__(self, port: int, topic: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, str(port), topic], stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.arrivals: dict[str, float] = {}
        self.ready = anyio.Event()

    async def read(self) -> None:
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        while True:
            line = await anyio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
            if not line:
                return
            if line.startswith("ready"):
                self.ready.set()
                continue
            at, visit = line.split()
            self.arrivals.setdefault(visit, float(at))  # the first arrival (QoS 1 may repeat one)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def measure(n: int, gap: float, qos: int, outage: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker", persistence=True).start()
        sub = SubscriberProcess(broker.port, "intercom/bench/event/doorbell/#")
        config = replace(
            MqttConfig(host="127.0.0.1", port=broker.port, panel_id="bench"),
            qos=qos,  # type: ignore[arg-type]
            reconnect_min_seconds=0.05,
            reconnect_max_seconds=0.5,
            timeout_seconds=3.0,
        )
        try:
            async with FakeApp() as app, anyio.create_task_group() as tg:
                tg.start_soon(sub.read)
                with anyio.fail_after(20):
                    await sub.ready.wait()
                async with running_link(config, app) as link:
                    await until(lambda: link.health().connected)
                    sent: dict[str, float] = {}
                    for i in range(n):
                        visit = f"L{i:05}"
                        sent[visit] = time.monotonic()
                        app.emit("BUTTON_PRESSED", visit, "101", "started")
                        await anyio.sleep(gap)
                    await until(lambda: all(v in sub.arrivals for v in sent), timeout=60)
                    latency = [(sub.arrivals[v] - t) * 1000 for v, t in sent.items()]

                    broker.stop()
                    await until(lambda: not link.health().connected)
                    outage_visits = [f"O{i:05}" for i in range(outage)]
                    for visit in outage_visits:
                        app.emit("BUTTON_PRESSED", visit, "101", "started")
                        await anyio.lowlevel.checkpoint()  # as visits do; the app's event stream holds 256
                    await until(lambda: link.health().queued == outage)
                    restarted = time.monotonic()
                    broker.start()
                    await until(lambda: all(v in sub.arrivals for v in outage_visits), timeout=120)
                    recovery = (max(sub.arrivals[v] for v in outage_visits) - restarted) * 1000
                    in_order = sorted(outage_visits, key=lambda v: sub.arrivals[v]) == outage_visits
                tg.cancel_scope.cancel()
        finally:
            sub.close()
            broker.stop()
    return {
        "latency_ms": summarize(latency),
        "qos": qos,
        "gap_ms": gap * 1000,
        "outage_events": outage,
        "outage_recovery_ms": recovery,
        "outage_in_order": in_order,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--gap-ms", type=float, default=5.0)
    ap.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    ap.add_argument("--outage", type=int, default=200, help="events that happen while the broker is down")
    args = ap.parse_args()
    result = anyio.run(measure, args.n, args.gap_ms / 1000, args.qos, args.outage)
    emit(result)
    lat = result["latency_ms"]
    print(
        f"event -> delivered: median {lat['median']:.2f} ms, p99 {lat['p99']:.2f} ms, max {lat['max']:.2f} ms "
        f"(n={lat['n']}, QoS {args.qos}); {args.outage} events queued in an outage delivered "
        f"{result['outage_recovery_ms']:.0f} ms after the broker restarted, in order: {result['outage_in_order']}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
