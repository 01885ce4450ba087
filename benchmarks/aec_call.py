"""Echo cancellation in a real call: ERLE, convergence and the visitor, through the daemon's SIP engine.

:mod:`benchmarks.aec_speech` measures the canceller on the panel's isolated acoustic loop. This measures it
where it works: a call. The daemon's :class:`~daemon.sip.SipEngine` (in a child process, ``[audio]``'s defaults
unless a setting says otherwise) dials a baresip phone (G.711 over RTP on 127.0.0.1) and connects the call to
pjmedia's sound device on the paced card, with the card's echo path (speaker -> microphone, fixed delay and loss).
The resident speaks espeak-ng sentences from the phone for ``--resident-s`` seconds (after a silent lead, so the
card is connected before the first word); the visitor speaks into the microphone over the resident's last 4 s
(double-talk) and then alone.

In the same call: the microphone before the canceller (``parec`` on ``mic.monitor``) and what the panel sends
the resident, taken from the RTP packets on the wire (``AF_PACKET`` on ``lo``: needs root), so neither the phone's
recording nor its end cuts it. The microphone is band-limited to G.711's 4 kHz (what the wire can carry), both are
analysed as :func:`benchmarks.aec_speech.analyse_run` analyses the isolated loop: ERLE per far-end-only 250 ms
window, the median after 2 s, convergence (the first second from which every second's median stays >= 30 dB), the
visitor's level in double-talk and alone. A window whose samples crossed the wire in no packet (the stream's
silence detection sent nothing) is silent at the resident's ear and counts as such; their share is reported.

Canceller off and on alternate in the same run; with ``--builds A,B`` (two pjsua2 python directories) the "on"
call runs on each build in turn, so two builds are compared under the same load.

    python -m benchmarks.aec_call [--repeats 2] [--resident-s 40] [--delay-ms 40] [--loss-db 6]
                                  [--builds DIR_A,DIR_B] [--json out.json] [--write-docs]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._proc import ROOT, emit
from benchmarks._talk_capture import Packet, RtpSniffer, StampedRecorder
from benchmarks._talk_signal import g711_decode
from benchmarks.aec_speech import RATE, WINDOW, Signal, analyse_run, lag_of, level_db, read_wav, shifted, speak
from daemon.simulation.paced_card import EchoPath, PacedCard, paced_card
from daemon.simulation.phone import free_port

__all__ = ["band_limit", "main", "resident_speech", "sent_on_card_time", "upsample"]

PHONE_RATE = 8000
LEAD_S = 3.0  # silence before the resident's first word: the panel connects the card after the call is answered
OVERLAP_S = 4.0  # the visitor starts this long before the resident's last word
ENVELOPE_PACKETS = 51  # 1 s of 20 ms packets: the window of the arrival-time envelope
RESIDENT_SENTENCES = (
    "Oi, quem é? Pode entrar, vou abrir o portão agora. Empurre com força, ele está emperrado desde ontem.",
    "Se não abrir, me chame de novo pelo interfone, por favor.",
    "Quando subir, deixe as sacolas na portaria, o porteiro guarda para mim até a noite.",
    "Ah, e se tiver alguma coisa para assinar, pode deixar com ele também, eu confiro depois.",
    "O elevador de serviço fica à esquerda, logo depois da caixa de correio. Não use o social, está em obras.",
    "Se o porteiro não estiver, toque de novo que eu desço para buscar, demoro uns cinco minutos.",
    "Obrigado, e bom trabalho. Até mais.",
)
VISITOR_TEXT = "Boa tarde, é a entrega do mercado, tenho três sacolas para o apartamento cento e um."
DOCS = ROOT / "docs" / "audio.md"
BEGIN, END = "<!-- aec_call:begin -->", "<!-- aec_call:end -->"


# ----------------------------------------------------------------------------------------------- signals


def upsample(x: Signal, factor: int) -> Signal:
    """Band-limited upsampling by an integer factor (zero-padded spectrum)."""
    spectrum = np.fft.rfft(x)
    padded = np.zeros(len(x) * factor // 2 + 1, dtype=complex)
    padded[: len(spectrum)] = spectrum
    return np.fft.irfft(padded, len(x) * factor) * factor


def band_limit(x: Signal, rate: int, cutoff_hz: float) -> Signal:
    """``x`` with nothing above ``cutoff_hz`` (what a G.711 call can carry of the microphone)."""
    spectrum = np.fft.rfft(x)
    spectrum[int(cutoff_hz * len(x) / rate) :] = 0
    return np.fft.irfft(spectrum, len(x))


def resident_speech(tmp: Path, seconds: float) -> tuple[Path, float]:
    """The resident's WAV for the phone (8 kHz: a silent lead, sentences for about ``seconds``, then silence past
    the call's end, as baresip hangs up when its source ends) and its speech's length."""
    parts: list[Signal] = []
    total = 0.0
    while total < seconds:
        sentence = RESIDENT_SENTENCES[len(parts) % len(RESIDENT_SENTENCES)]
        parts.append(read_wav(speak(sentence, tmp / f"resident-{len(parts)}.wav")))
        parts.append(np.zeros(RATE // 2))  # a breath between sentences
        total += (len(parts[-2]) + len(parts[-1])) / RATE
    speech = np.concatenate([np.zeros(int(LEAD_S * RATE)), *parts])
    at_8k = band_limit(speech, RATE, PHONE_RATE / 2 - 100)[::2]
    padded = np.concatenate([at_8k, np.zeros(PHONE_RATE * 60)])
    return _write(tmp / "resident-8k.wav", padded, PHONE_RATE), total


def _write(path: Path, x: Signal, rate: int) -> Path:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes())
    return path


# ----------------------------------------------------------------------------------------------- the child


async def _child_call(spec: dict[str, Any]) -> dict[str, Any]:
    """The panel: the engine dials the phone, connects the card, talks for ``seconds``, reports its CPU."""
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
    async with SipEngine(config, LoopBridge(), AudioConfig(**spec["audio"])) as engine, anyio.create_task_group() as tg:
        if not engine.has_sound_device:
            return {"error": f"this pjsua2 has no sound device ({engine.info}): a source build is needed"}

        async def drain() -> None:
            nonlocal media
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
        await engine.hangup(call)
        tg.cancel_scope.cancel()
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return {"cpu_share_of_core": round(cpu / (wall1 - wall0), 4), "talk_seconds": round(wall1 - wall0, 1)}


def child(spec: dict[str, Any]) -> None:
    import anyio

    emit(anyio.run(_child_call, spec))


# ----------------------------------------------------------------------------------------------- one call


def one_call(
    card: PacedCard,
    echo: EchoPath,
    tmp: Path,
    name: str,
    audio: dict[str, Any],
    build: str | None,
    signals: dict[str, Any],
) -> dict[str, Any]:
    """One call with ``audio`` (``[audio]`` settings) on ``build`` (a pjsua2 python directory, or the
    environment's): the resident speaks, the visitor joins; the figures of :func:`analyse_run`. The echo path is
    set up for this call alone (``module-loopback``'s delay grew by 150 ms over a call at a load of 8 and never
    came back: a path shared by the calls of a run would give each a different room)."""
    from tests.support.peers import Baresip

    workdir = tmp / name
    workdir.mkdir(parents=True, exist_ok=True)
    resident_s, visitor_s = signals["resident_s"], signals["visitor_s"]
    seconds = LEAD_S + resident_s + visitor_s - OVERLAP_S + 2.0
    env = {**os.environ, **card.alsa_environ()}
    if build:
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{build}"
    load_before = os.getloadavg()
    module = card.add_echo_path(echo)
    with Baresip(workdir, audio_source=signals["resident_8k"]) as phone:
        rtp_base = 10000 + phone.port % 20000  # Baresip's rtp_ports
        panel_rtp = 21000 + (free_port() % 50) * 200
        spec = {"uri": phone.uri, "rtp_port": panel_rtp, "audio": audio, "seconds": seconds}
        sniffer = RtpSniffer(range(rtp_base, rtp_base + 100), range(panel_rtp, panel_rtp + 100))
        mic, spk = StampedRecorder(card.server, "mic.monitor"), StampedRecorder(card.server, "spk.monitor")
        try:
            result = _talk(card, spec, env, signals["visitor"], LEAD_S + resident_s - OVERLAP_S)
        finally:
            for part in (mic, spk, sniffer):
                part.stop()
            card.remove_module(module)
    if "error" in result:
        return result
    mic_rec = mic.recording()
    placed = sent_on_card_time(list(sniffer.packets), float(mic_rec.times_of(np.zeros(1))[0]))
    if placed is None:
        return {"error": "no RTP from the panel to the phone was seen (the sniffer needs root)"}
    sent, unsent = placed
    # The resident as the speaker played it (the microphone's card clock: one lag for the whole call, whatever
    # the jitter buffer inserted or dropped), and the microphone as G.711 can carry it.
    far = band_limit(spk.recording().samples(), RATE, PHONE_RATE / 2)
    mic_samples = band_limit(mic_rec.samples(), RATE, PHONE_RATE / 2)
    if signals.get("keep"):
        keep = Path(signals["keep"])
        keep.mkdir(parents=True, exist_ok=True)
        for kept, x in (("mic", mic_samples), ("sent", sent), ("spk", far)):
            _write(keep / f"{name}-{kept}.wav", x, RATE)
    aligned, near = aligned_to_mic(mic_samples, sent), read_wav(signals["visitor"])
    report = analyse_run(mic_samples, aligned, far, near, 0)
    report.pop("loop_delay_ms")  # far WAV -> recorder in aec_speech; here "far" is the speaker's own recording
    report.update(visitor_levels(mic_samples, aligned, far, near))
    report.update(result)
    # speaker -> microphone, measured (the two recordings started apart: their first samples' card times)
    spk_start = float(spk.recording().times_of(np.zeros(1))[0])
    mic_start = float(mic_rec.times_of(np.zeros(1))[0])
    report["echo_delay_ms"] = round(1000 * (lag_of(far, mic_samples) / RATE + mic_start - spk_start))
    report["unsent_share"] = unsent
    report["loadavg"] = [round(x, 2) for x in (*load_before, *os.getloadavg())]
    report["build"] = build or "environment"
    return report


def sent_on_card_time(packets: list[Packet], card_start: float) -> tuple[Signal, float] | None:
    """What the panel sent the phone, decoded at 16 kHz and placed in the time of the microphone recording whose
    first sample the card handed out at ``card_start`` (monotonic); and the share of the stream's time no packet
    covered (silence detection, stalls).

    Each packet goes where its RTP timestamp puts it, shifted by the lower envelope (over 1 s) of its arrival
    time minus its timestamp time. The timestamps alone drift from the card: frames the panel drops or inserts
    between the card and the stream do not show in them (1.5 s in 13 s was seen at a load of 15, and far-end
    windows then compared the wrong seconds); arrival times alone carry the scheduler's jitter, which breaks the
    sample alignment the visitor's projection needs. The envelope follows the first and ignores the second."""
    chosen = [p for p in packets if p.direction == "to_phone"]
    if not chosen:
        return None
    ssrc = Counter(p.ssrc for p in chosen).most_common(1)[0][0]
    chosen = [p for p in chosen if p.ssrc == ssrc]
    stamps = [0]
    for before, after in itertools.pairwise(chosen):
        stamps.append(stamps[-1] + ((after.timestamp - before.timestamp + (1 << 31)) % (1 << 32)) - (1 << 31))
    arrival = np.asarray([(p.at - card_start) * PHONE_RATE for p in chosen])
    offset = arrival - np.asarray(stamps, dtype=np.float64)
    half = ENVELOPE_PACKETS // 2
    padded = np.concatenate([np.full(half, np.inf), offset, np.full(half, np.inf)])
    envelope = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1).min(axis=1)
    positions = [round(stamp + shift) for stamp, shift in zip(stamps, envelope, strict=True)]
    start = min(positions)
    length = max(positions) - start + max(len(p.payload) for p in chosen)
    at_8k, filled = np.zeros(length), np.zeros(length, dtype=bool)
    for pos, p in zip(positions, chosen, strict=True):
        payload = g711_decode(p.payload, p.payload_type)
        at_8k[pos - start : pos - start + len(payload)] = payload
        filled[pos - start : pos - start + len(payload)] = True
    lead = start * (RATE // PHONE_RATE)  # the card's recording started before the call
    sent = np.concatenate([np.zeros(max(lead, 0)), upsample(at_8k, RATE // PHONE_RATE)])[max(-lead, 0) :]
    return sent, round(1.0 - float(filled.mean()), 3)


def aligned_to_mic(mic: Signal, sent: Signal, block: int = RATE // 2, search: int = RATE * 30 // 1000) -> Signal:
    """``sent`` moved block by block (0.5 s) onto ``mic``'s samples. The path between them is not one delay
    for a whole call: pjmedia's buffers drop, insert and time-stretch audio (the lag moved by 7 ms within the
    visitor's 6 s in one call), and the visitor's projection needs them aligned to the sample. Each block takes
    the lag at which it correlates with the microphone (within ``search`` of the last one, and only where it
    does correlate: where the canceller removed the echo, nothing in ``sent`` matches, and the last lag holds)."""
    lag, out = lag_of(mic, sent), np.zeros(len(mic))
    for start in range(0, len(mic), block):
        segment = mic[start : start + block]
        low = start + lag - search
        if low >= 0 and len(segment) == block:
            candidate = sent[low : low + block + 2 * search]
            found = low + lag_of(segment, candidate) - start
            moved = sent[start + found : start + found + block]
            if abs(found - lag) <= search and len(moved) == block and _correlation(segment, moved) > 0.5:
                lag = found
        piece = sent[max(start + lag, 0) : start + lag + block]
        out[start : start + len(piece)] = piece
    return out


def visitor_levels(mic: Signal, sent: Signal, far: Signal, near: Signal) -> dict[str, float | None]:
    """The visitor's level in what was sent against the visitor's part of the microphone, by 250 ms windows of
    double-talk and of the visitor alone: levels, not :func:`analyse_run`'s projections, which need the sample
    alignment that pjmedia's buffers break now and then within a call (projections read -6 to -12 dB where the
    levels matched). The visitor's part of the microphone is its reference scaled by its projection (one card
    clock: aligned to the sample). In double-talk the sent level also holds the residual echo, so the figure is
    an upper bound of the visitor's level there."""
    far_ref = shifted(far, lag_of(far, mic), len(mic))
    near_ref = shifted(near, lag_of(near, mic), len(mic))
    near_ref *= float(np.dot(mic, near_ref)) / max(float(np.dot(near_ref, near_ref)), 1e-12)
    count = len(mic) // WINDOW
    far_lv = [level_db(far_ref[i * WINDOW : (i + 1) * WINDOW]) for i in range(count)]
    near_lv = [level_db(near_ref[i * WINDOW : (i + 1) * WINDOW]) for i in range(count)]
    result: dict[str, float | None] = {}
    for key, both in (("visitor_double_talk_db", True), ("visitor_alone_db", False)):
        picked = [i for i in range(count) if near_lv[i] > max(near_lv) - 30 and (far_lv[i] > max(far_lv) - 30) == both]
        if not picked:
            result[key] = None
            continue
        idx = np.concatenate([np.arange(i * WINDOW, (i + 1) * WINDOW) for i in picked])
        result[key] = round(level_db(sent[idx]) - level_db(near_ref[idx]), 1)
    return result


def _correlation(a: Signal, b: Signal) -> float:
    energy = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b)) / energy if energy > 0 else 0.0


def _talk(
    card: PacedCard, spec: dict[str, Any], env: dict[str, str], visitor: Path, visitor_at: float
) -> dict[str, Any]:
    cmd = [sys.executable, "-X", "faulthandler", "-m", "benchmarks.aec_call", "--child", json.dumps(spec)]
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "TALKING", or nothing if the child failed before the call talked
        if line.strip() != "TALKING":
            proc.kill()
            _out, err = proc.communicate(timeout=30)
            return {"error": f"the call did not talk: {line.strip()} {' | '.join(err.strip().splitlines()[-5:])}"}
        time.sleep(visitor_at)  # the resident speaks meanwhile (the phone's clock: nothing to wait on)
        with card.talk(visitor) as talker:
            talker.wait(timeout=spec["seconds"] + 30)
        out, err = proc.communicate(timeout=spec["seconds"] + 60)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"child exited {proc.returncode}: {' | '.join(err.strip().splitlines()[-5:])}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# ----------------------------------------------------------------------------------------------- the report


def summary_table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| call | build | echo delay (ms) | ERLE median / p10 after 2 s (dB) | stays >= 30 dB from (s) "
        "| ERLE per second, first 6 (dB) | visitor in double-talk / alone (dB) | unsent | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if "error" in r:
            lines.append(f"| {r['name']} | {r.get('build', '')} | error: {r['error']} | | | | | | |")
            continue
        first = ", ".join(str(x) for x in r["erle_median_by_second_db"][:6])
        lines.append(
            f"| {r['name']} | {Path(r['build']).parent.name if r['build'] != 'environment' else 'env'} | "
            f"{r['echo_delay_ms']} | "
            f"{r['erle_median_after_2s_db']} / {r['erle_p10_after_2s_db']} | "
            f"{r['converged_s'] if r['converged_s'] is not None else 'never'} | {first} | "
            f"{r['visitor_double_talk_db']} / {r['visitor_alone_db']} | {r['unsent_share']} | "
            f"{r['loadavg'][0]} |"
        )
    return "\n".join(lines)


def write_docs(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    text = DOCS.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise RuntimeError(f"{DOCS} has no {BEGIN} ... {END} section")
    body = (
        f"{BEGIN}\n_Written by `python -m benchmarks.aec_call --write-docs` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; echo path {args.delay_ms} ms / -{args.loss_db} dB, "
        f"the resident speaking {args.resident_s:.0f} s)._\n\n{summary_table(runs)}\n{END}"
    )
    head, rest = text.split(BEGIN, 1)
    DOCS.write_text(head + body + rest.split(END, 1)[1], encoding="utf-8")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--resident-s", type=float, default=40.0, help="seconds of the resident's speech")
    ap.add_argument("--delay-ms", type=int, default=40)
    ap.add_argument("--loss-db", type=float, default=6.0)
    ap.add_argument("--builds", default="", help="pjsua2 python directories to compare, comma-separated")
    ap.add_argument("--no-off", action="store_true", help="skip the canceller-off baseline")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep each call's microphone and sent audio (16 kHz WAVs) here")
    ap.add_argument("--write-docs", action="store_true", help="update docs/audio.md's aec_call table")
    args = ap.parse_args()
    builds: list[str | None] = [b for b in args.builds.split(",") if b] or [None]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="aec-call-") as tmpdir:
        tmp = Path(tmpdir)
        resident_8k, resident_s = resident_speech(tmp, args.resident_s)
        visitor = speak(VISITOR_TEXT, tmp / "visitor.wav")
        signals = {
            "resident_8k": resident_8k,
            "resident_s": resident_s,
            "visitor": visitor,
            "visitor_s": len(read_wav(visitor)) / RATE,
            "keep": str(args.keep) if args.keep else "",
        }
        with paced_card(tmp / "card") as card:
            for repeat in range(args.repeats):
                plan: list[tuple[str, dict[str, Any], str | None]] = []
                if not args.no_off:
                    plan.append(("off", {"echo_cancellation": False}, builds[0]))
                plan += [("on", {}, build) for build in builds]
                for name, audio, build in plan:
                    echo = EchoPath(args.delay_ms, -args.loss_db)
                    run = one_call(card, echo, tmp, f"{name}-{repeat}-{len(runs)}", audio, build, signals)
                    run["name"] = name
                    runs.append(run)
                    brief = {k: v for k, v in run.items() if k != "timeline"}
                    print(json.dumps(brief), flush=True)
    print(summary_table(runs))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1), encoding="utf-8")
    if args.write_docs:
        write_docs(runs, args)


if __name__ == "__main__":
    main()
