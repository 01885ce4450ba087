"""A talk call through the daemon's SIP engine on the paced card: mouth-to-ear latency the panel adds each way,
audio dropped or inserted over the call, CPU per call, with and without a Pi-sized CPU quota (issue 14).

The call: the daemon's :class:`~daemon.sip.SipEngine` in a child process (the measured process; under the quota
it is alone in the cgroup) with ``[audio]``'s defaults, dials a baresip phone (G.711) on 127.0.0.1, which answers
after a ring, and connects the call to pjmedia's sound device on the paced card, with the card's echo path (40 ms,
-6 dB). The phone, the card and this harness run in a cgroup with a large CPU weight, the panel outside it
(benchmarks/_talk_peers.py). Both sides speak a chirp every 0.5 s for the whole call (benchmarks/_talk_signal.py):

* visitor -> resident: chirps played into the card's microphone, found where the card hands them out
  (``mic.monitor``) and in the panel's RTP packets to the phone;
* resident -> visitor: baresip plays chirps; found in its RTP packets to the panel and in the card's speaker
  (``spk.monitor``).

RTP is read on ``lo`` with the kernel's timestamps, and the card's sources with the time each block arrived
(benchmarks/_talk_capture.py): so the latency is **what the panel adds**, card to wire and wire to card (capture,
canceller, conference, encoder and packetisation one way; jitter buffer, decoder, conference and playback
buffer the other), with neither the phone's buffering nor its packetisation in it.

    python -m benchmarks.talk_call [--minutes 10] [--quota 0.25] [--period-us 10000] [--write-docs] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._proc import ROOT, emit, run_child
from benchmarks._talk_analysis import PHONE_RATE, analyse, card_markers, reanalysed
from benchmarks._talk_capture import RtpSniffer, StampedRecorder, panel_rtp_ports
from benchmarks._talk_child import talk_through_card
from benchmarks._talk_peers import FavouredPeers
from benchmarks._talk_report import HEADING, TITLE, figure_from, section, write_docs
from benchmarks._talk_signal import PERIOD_S, marker_track, pair
from benchmarks.cpu_quota import CpuQuota, quota_unavailable
from benchmarks.report import Figure
from daemon.simulation.paced_card import RATE, EchoPath, PacedCard, paced_card
from daemon.simulation.phone import free_port

__all__ = ["main", "measure", "talk_figure"]

PHONE_SINK = "phone"  # the card's third sink: where the resident's phone plays what it hears (paced)
CARD_LOOP_S = 15.0
START_S = 2.0  # the visitor starts this long after the call talks: the canceller and jitter buffer settle
# Where the visitor's chirps fall, after the phone's first packet (modulo PERIOD_S): the resident's chirps leave the
# phone 0.25 s after it, reach the card's speaker ~0.1 s later and its microphone as echo 40 ms after that
# (0.38-0.44 s); the visitor's start half a period away from that echo, so the two never overlap in the microphone
# (double-talk: the canceller's suppression took whole chirps, 138 of 1,200 in one call). TALKER_DELAY_S: paplay's
# start, from its spawn to its first sample in the microphone (roughly: the margin is +-0.19 s).
VISITOR_PHASE_S = 0.13
TALKER_DELAY_S = 0.05
RING_S = 1.0  # the phone answers after ringing this long (a resident takes seconds; the card opens as the panel dials)


# ----------------------------------------------------------------------------------------------- the child


async def _child_call(spec: dict[str, Any]) -> dict[str, Any]:
    """The measured process: the engine dials the phone, talks for ``seconds``, reports its CPU and stream stats."""
    return await talk_through_card(spec, stream_stats=True)


def child(spec: dict[str, Any]) -> None:
    import anyio

    if log := spec.get("log"):  # every log line (pjsip's at DEBUG) with its monotonic time
        import logging

        logging.basicConfig(filename=log, level=logging.DEBUG, format="%(mono).3f %(threadName)s %(name)s %(message)s")
        factory = logging.getLogRecordFactory()

        def stamped(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            record.mono = time.monotonic()
            return record

        logging.setLogRecordFactory(stamped)

    emit(anyio.run(_child_call, spec))


# ----------------------------------------------------------------------------------------------- one call


def _write_wav(path: Path, samples: np.ndarray[Any, Any], rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


def card_loop(card: PacedCard, tmp: Path, seconds: float) -> dict[str, Any]:
    """The card's own share: ``alsaloop`` copies the card's microphone to its speaker through ALSA's pulse plugin
    at the panel's 40 ms, no pjmedia; chirps timed as in the call (``mic.monitor`` -> ``spk.monitor``). Run with no
    echo path (it would feed the loop back into itself)."""
    chirps = _write_wav(tmp / "loop.wav", marker_track(RATE, seconds, up=True), RATE)
    argv = ["alsaloop", "-C", "default", "-P", "default", "-r", str(RATE), "-c", "1", "-f", "S16_LE", "-t", "40000"]
    loop = subprocess.Popen(
        argv, env={**os.environ, **card.alsa_environ()}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    mic, spk = StampedRecorder(card.server, "mic.monitor"), StampedRecorder(card.server, "spk.monitor")
    try:
        time.sleep(1.0)  # alsaloop opens both directions (a child process starting: nothing to wait on)
        with card.talk(chirps) as talker:
            talker.wait(timeout=seconds + 30)
    finally:
        for part in (mic, spk):
            part.stop()
        loop.terminate()
        loop.wait(timeout=10)
    return pair(*card_markers(mic.recording(), up=True), *card_markers(spk.recording(), up=True)).summary()


def one_call(
    seconds: float,
    quota: CpuQuota | None,
    tmp: Path,
    audio: dict[str, Any],
    loop_s: float = 0.0,
    raw_dir: Path | None = None,
    panel_shares: int = 0,
) -> dict[str, Any]:
    """A call of ``seconds`` of two-way chirps; the analysed figures (see :func:`analyse`); first, with
    ``loop_s``, the card's own loop (:func:`card_loop`). ``panel_shares``: see benchmarks/_talk_peers.py."""
    from tests.support.peers import Baresip

    tmp.mkdir(parents=True, exist_ok=True)
    # The phone speaks from its first RTP packet for longer than the call (baresip hangs up when its source ends).
    resident = marker_track(PHONE_RATE, seconds + START_S + 60, up=False, lead_s=PERIOD_S / 2)
    resident_wav = _write_wav(tmp / "resident.wav", resident, PHONE_RATE)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    # baresip plays what it hears into a sink of the card: paced (ALSA's null device made its player spin).
    phone = Baresip(tmp, audio_source=resident_wav, audio_player=f"alsa,pulse:{PHONE_SINK}", answermode="manual")
    stat_before = _cpu_times()
    with FavouredPeers(panel_shares) as favoured, paced_card(tmp / "card") as card:
        if quota is not None:
            favoured.weigh_quota(quota.path)
        card.pactl("load-module", "module-null-sink", f"sink_name={PHONE_SINK}", f"rate={PHONE_RATE}", "channels=1")
        phone.extra_env["PULSE_SERVER"] = card.server
        spec = {
            "seconds": seconds,
            "audio": audio,
            "loop_s": loop_s,
            "join": quota.join if quota else favoured.panel_join,
        }
        result = _call_on(card, phone, spec, quota, tmp)
        result["peers"] = favoured.describe()
    used = [after - before for before, after in zip(stat_before, _cpu_times(), strict=True)]
    result["steal_share"] = round(used[7] / max(1, sum(used[:8])), 4)  # field 8 of /proc/stat's "cpu": steal
    if "error" in result:
        return result
    if raw_dir is not None:  # kept before the analysis: a 10-minute call is not lost to a bug in it
        raw_dir.mkdir(parents=True, exist_ok=True)
        with (raw_dir / f"{'quota' if quota else 'free'}.pickle").open("wb") as f:
            pickle.dump({"mic": result["mic"], "spk": result["spk"], "packets": result["packets"]}, f)
    result.update(analyse(result.pop("mic"), result.pop("spk"), result.pop("packets")))
    result["audio"] = audio
    result["loadavg_before"], result["loadavg_after"] = load_before, Path("/proc/loadavg").read_text().split()[:3]
    return result


def _cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat's ``cpu`` line: user, nice, system, idle, iowait, irq, softirq,
    steal, ...), in ticks."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _call_on(card: PacedCard, phone: Any, spec: dict[str, Any], quota: CpuQuota | None, tmp: Path) -> dict[str, Any]:
    """The call itself on a running card: its result, with the recordings and packets (not yet analysed)."""
    seconds, audio, loop_s = spec["seconds"], spec["audio"], spec["loop_s"]
    with phone:
        loop = card_loop(card, tmp, loop_s) if loop_s > 0 and shutil.which("alsaloop") else None
        card.add_echo_path(EchoPath(delay_ms=40, gain_db=-6.0))
        panel_rtp = panel_rtp_ports(phone.rtp_ports, free_port())
        sniffer = RtpSniffer(phone.rtp_ports, panel_rtp)
        mic, spk = StampedRecorder(card.server, "mic.monitor"), StampedRecorder(card.server, "spk.monitor")
        try:
            # $TALK_CALL_CHILD_LOG: a diagnosis aid, the engine's log (pjsip's at DEBUG) with monotonic times
            call = {
                "uri": phone.uri,
                "rtp_port": panel_rtp.start,
                "audio": audio,
                "log": os.environ.get("TALK_CALL_CHILD_LOG"),
            }
            visitor = _Visitor(tmp / "visitor.wav", seconds, sniffer)
            result = _talk(card, call, seconds, quota, visitor, (phone, spec["join"]))
        finally:
            for part in (mic, spk, sniffer):
                part.stop()
    if "error" not in result:
        result.update(mic=mic.recording(), spk=spk.recording(), packets=list(sniffer.packets))
        if loop is not None:
            result["card_loop"] = loop
    return result


def _talk(
    card: PacedCard,
    call: dict[str, Any],
    seconds: float,
    quota: CpuQuota | None,
    visitor: _Visitor,
    peer: tuple[Any, Callable[[], None]],
) -> dict[str, Any]:
    """The engine's child process (joining its cgroup with ``peer[1]``) dials, ``peer[0]`` (the phone) answers."""
    phone, join = peer
    spec = {**call, "seconds": seconds + START_S + 1.0}
    cmd = [sys.executable, "-X", "faulthandler", "-m", "benchmarks.talk_call", "--child", json.dumps(spec)]
    # Its stderr (warnings; libasound's plugins print there too) to a file: a pipe read only after the call would
    # stop the writing thread, a card thread among them, once 64 KiB had piled up.
    stderr_path = card.directory.parent / "panel-stderr.log"
    with (
        stderr_path.open("w") as stderr,
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **card.alsa_environ()},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            preexec_fn=join,  # noqa: PLW1509 - only writes our pid into cgroup.procs
        ) as proc,
    ):
        assert proc.stdout is not None
        try:
            phone.wait_event_sync("CALL_INCOMING", timeout=30)
        except TimeoutError:
            proc.kill()
            proc.communicate(timeout=30)
            return {"error": f"the phone did not ring: {_tail(stderr_path)}"}
        time.sleep(RING_S)  # the resident takes the call after a ring (a phone's pace: nothing to wait on)
        phone.accept()
        line = proc.stdout.readline()  # "TALKING", or nothing if the child failed before the call talked
        if line.strip() != "TALKING":
            proc.kill()
            proc.communicate(timeout=30)
            return {"error": f"the call did not talk: {line.strip()} {_tail(stderr_path)}"}
        time.sleep(START_S)  # the call settles before the visitor speaks (a child's clock: nothing to wait on)
        with card.talk(visitor.track()) as talker:
            talker.wait(timeout=seconds + 30)
        out, _err = proc.communicate(timeout=60)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"child exited {proc.returncode}: {_tail(stderr_path)}"}
    result: dict[str, Any] = json.loads(lines[-1])
    if warnings := _tail(stderr_path):  # e.g. "cannot open the sound card for this call": the report shows it
        result["panel_stderr"] = warnings
    if quota is not None:
        result["cgroup"] = _throttling(quota)
    return result


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


class _Visitor:
    """The visitor's chirp track (written before the call), started between the resident's echoes."""

    def __init__(self, path: Path, seconds: float, sniffer: RtpSniffer) -> None:
        self.path, self.sniffer = _write_wav(path, marker_track(RATE, seconds, up=True), RATE), sniffer

    def track(self) -> Path:
        """The track, returned at the moment to start it (its first chirp half a period from the echo)."""
        first = next((p.at for p in list(self.sniffer.packets) if p.direction == "from_phone"), None)
        if first is not None:
            time.sleep((first + VISITOR_PHASE_S - time.monotonic() - TALKER_DELAY_S) % PERIOD_S)
        return self.path


def _throttling(quota: CpuQuota) -> dict[str, Any]:
    """Periods throttled and the time spent throttled (v2 ``throttled_usec``, v1 ``throttled_time`` in ns)."""
    stat = dict(line.split() for line in (quota.path / "cpu.stat").read_text().splitlines())
    usec = int(stat["throttled_usec"]) if "throttled_usec" in stat else int(stat.get("throttled_time", 0)) // 1000
    return {"version": quota.version, **quota.throttled(), "throttled_s": round(usec / 1e6, 1)}


def talk_figure(minutes: float, errors: list[str]) -> Figure:
    """The talk figure of ``python -m benchmarks`` (group ``talk``): this module run as a child."""
    if os.geteuid() != 0:
        return Figure("fig10_talk", TITLE, missing="reading RTP on lo (AF_PACKET) needs root")
    result = run_child("talk_call", "--emit", "--minutes", f"{minutes:g}", timeout=2 * 60 * minutes + 300)
    if "error" in result:
        errors.append(str(result["error"]))
        return Figure("fig10_talk", TITLE, missing=str(result["error"]))
    return figure_from(result)


def measure(
    minutes: float,
    quota_share: float,
    period_us: int,
    audio: dict[str, Any] | None = None,
    raw_dir: Path | None = None,
    free: bool = True,
    panel_shares: int = 0,
) -> dict[str, dict[str, Any]]:
    """The call without a quota (unless ``free`` is False), then (``quota_share`` > 0) under it. ``audio``:
    AudioConfig fields to change; ``raw_dir``: where to keep each call's recordings and packets (``--from-raw``
    analyses them again)."""
    audio = audio or {}
    seconds = minutes * 60
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="talk-call-") as tmpdir:
        if free:
            loop_s = min(CARD_LOOP_S, seconds)
            results["no quota"] = one_call(seconds, None, Path(tmpdir) / "free", audio, loop_s, raw_dir, panel_shares)
            print(json.dumps({"no quota": results["no quota"]}), file=sys.stderr, flush=True)
        if quota_share > 0:
            label = f"quota: {100 * quota_share:g} % of one core per {period_us / 1000:g} ms"
            if (why := quota_unavailable()) is not None:
                results[label] = {"error": f"not measured: {why}"}
            else:
                with CpuQuota(round(quota_share * period_us), period_us) as quota:
                    results[label] = one_call(seconds, quota, Path(tmpdir) / "quota", audio, 0.0, raw_dir, panel_shares)
    return results


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of each call (the docs: 10)")
    ap.add_argument("--quota", type=float, default=0.25, help="share of one core for the second call (0: none)")
    ap.add_argument("--period-us", type=int, default=10_000, help="the quota's period")
    ap.add_argument("--quota-only", action="store_true", help="only the call under the quota (one run per lock)")
    ap.add_argument(
        "--panel-shares", type=int, default=0, help="the panel's CPU weight over the machine's other jobs (0: none)"
    )
    ap.add_argument(
        "--sound-latency-ms", type=int, help="[audio] sound_latency_ms for the call (default: the daemon's)"
    )
    ap.add_argument("--capture-latency-ms", type=int, help="[audio] capture_latency_ms (default: the daemon's)")
    ap.add_argument(
        "--jitter-discard", choices=["none", "static", "progressive"], help="[audio] jitter_discard (the daemon's)"
    )
    ap.add_argument(
        "--silence-suppression", choices=["on", "off"], help="[audio] silence_suppression (default: the daemon's)"
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--from-json", type=Path, nargs="+", help="re-render the docs section from earlier --json files")
    ap.add_argument("--raw", type=Path, help="keep each call's recordings and RTP packets in this directory")
    ap.add_argument("--from-raw", type=Path, help="analyse a call kept by --raw again (prints the figures)")
    ap.add_argument("--reanalyse", type=Path, help="a --json file: its calls analysed again from --raw DIR")
    ap.add_argument("--write-docs", action="store_true", help=f"write the section '{HEADING}' of docs/audio.md")
    ap.add_argument("--emit", action="store_true", help="print the results as one JSON line (python -m benchmarks)")
    args = ap.parse_args()
    if args.from_raw:
        print(json.dumps(reanalysed(args.from_raw), indent=1))
        return
    if args.reanalyse:
        if args.raw is None:
            raise SystemExit("--reanalyse needs --raw DIR (where the run kept its calls)")
        saved = json.loads(args.reanalyse.read_text(encoding="utf-8"))
        for label, result in saved["results"].items():
            kept = args.raw / f"{'free' if label == 'no quota' else 'quota'}.pickle"
            if "error" not in result and kept.exists():
                result.update(reanalysed(kept))
        args.reanalyse.write_text(json.dumps(saved, indent=1), encoding="utf-8")
        return
    if args.from_json:  # several files (e.g. the free and the quota run, each under the lock): their calls in order
        saved_runs = [json.loads(path.read_text(encoding="utf-8")) for path in args.from_json]
        results = {k: v for s in saved_runs for k, v in s["results"].items()}
        ended = max(path.stat().st_mtime for path in args.from_json)
        write_docs(section(results, saved_runs[0]["minutes"], ended))
        return
    audio = {
        key: value
        for key, value in (
            ("sound_latency_ms", args.sound_latency_ms),
            ("capture_latency_ms", args.capture_latency_ms),
            ("jitter_discard", args.jitter_discard),
            ("silence_suppression", None if args.silence_suppression is None else args.silence_suppression == "on"),
        )
        if value is not None
    }
    results = measure(args.minutes, args.quota, args.period_us, audio, args.raw, not args.quota_only, args.panel_shares)
    if args.json:
        args.json.write_text(json.dumps({"minutes": args.minutes, "results": results}, indent=1), encoding="utf-8")
    text = section(results, args.minutes)
    print(text, flush=True)
    if args.write_docs:
        write_docs(text)
    if args.emit:
        emit({"minutes": args.minutes, "results": results})
    if any("error" in r for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
