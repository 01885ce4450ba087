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
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._aec_call_signal import aligned_to_mic, band_limit, sent_on_card_time, visitor_levels
from benchmarks._proc import ROOT, emit
from benchmarks._talk_capture import RtpSniffer, StampedRecorder, panel_rtp_ports
from benchmarks._talk_child import talk_through_card
from benchmarks.aec_speech import RATE, Signal, analyse_run, lag_of, plot, read_wav, speak
from daemon.simulation.paced_card import EchoPath, PacedCard, paced_card
from daemon.simulation.phone import free_port

__all__ = ["main", "one_call", "resident_speech"]

PHONE_RATE = 8000
LEAD_S = 3.0  # silence before the resident's first word: the panel connects the card after the call is answered
OVERLAP_S = 4.0  # the visitor starts this long before the resident's last word
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
PLOT = ROOT / "docs" / "img" / "aec_call.png"
BEGIN, END = "<!-- aec_call:begin -->", "<!-- aec_call:end -->"


# ----------------------------------------------------------------------------------------------- signals


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
    return await talk_through_card(spec)


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
        panel_rtp = panel_rtp_ports(phone.rtp_ports, free_port())
        spec = {"uri": phone.uri, "rtp_port": panel_rtp.start, "audio": audio, "seconds": seconds}
        sniffer = RtpSniffer(phone.rtp_ports, panel_rtp)
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
        "| lowest second from 2 s (dB) | ERLE per second, first 6 (dB) | visitor in double-talk / alone (dB) "
        "| unsent | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if "error" in r:
            lines.append(f"| {r['name']} | {r.get('build', '')} | error: {r['error']} | | | | | | | |")
            continue
        seconds = r["erle_median_by_second_db"]
        first = ", ".join(str(x) for x in seconds[:6])
        lowest = min(seconds[2:], default=float("nan"))
        lines.append(
            f"| {r['name']} | {Path(r['build']).parent.name if r['build'] != 'environment' else 'env'} | "
            f"{r['echo_delay_ms']} | "
            f"{r['erle_median_after_2s_db']} / {r['erle_p10_after_2s_db']} | "
            f"{r['converged_s'] if r['converged_s'] is not None else 'never'} | {lowest} | {first} | "
            f"{r['visitor_double_talk_db']} / {r['visitor_alone_db']} | {r['unsent_share']} | "
            f"{r['loadavg'][0]} |"
        )
    return "\n".join(lines)


def write_docs(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    mtime = args.from_json.stat().st_mtime if args.from_json else time.time()
    text = DOCS.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise RuntimeError(f"{DOCS} has no {BEGIN} ... {END} section")
    body = (
        f"{BEGIN}\n_Written by `python -m benchmarks.aec_call --write-docs` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(mtime))}; "
        f"echo path {args.delay_ms} ms / -{args.loss_db} dB, "
        f"the resident speaking {args.resident_s:.0f} s)._\n\n{summary_table(runs)}\n{END}"
    )
    head, rest = text.split(BEGIN, 1)
    DOCS.write_text(head + body + rest.split(END, 1)[1], encoding="utf-8")
    # The first call off and the first call on each build, as the level sent over the call
    shown: dict[str, dict[str, Any]] = {}
    for r in runs:
        if "timeline" in r:
            shown.setdefault("canceller off" if r["name"] == "off" else f"on, build {Path(r['build']).parent.name}", r)
    if shown:
        title = f"Echo level sent to the resident in a real call (echo path {args.delay_ms} ms / -{args.loss_db} dB)"
        plot(shown, title, PLOT)


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
    ap.add_argument("--from-json", type=Path, help="re-render docs/audio.md's table from an earlier --json")
    args = ap.parse_args()
    if args.from_json:
        write_docs(json.loads(args.from_json.read_text(encoding="utf-8")), args)
        return
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
