"""Echo cancellation on speech through the paced card: the measurement behind docs/audio.md's decision.

The panel's own acoustic loop, isolated: pjmedia's sound device on the paced virtual card (PulseAudio null sinks,
:mod:`daemon.simulation.paced_card`), the resident's voice (espeak-ng speech) played to the panel's speaker from
pjsua2's conference as a call's audio would be, an echo path (``module-loopback`` speaker -> microphone with a
delay and a loss), and what the panel's microphone sends towards the resident recorded from the conference. The
visitor speaks into the microphone for the double-talk part. Each canceller (off as the baseline, Speex, WebRTC
AEC, AEC3) runs the same audio in one process run each.

Figures: echo return loss enhancement over time (residual echo with the canceller vs without, in 250 ms windows
of far-end speech), the time after which it stays above 30 dB, and the visitor's level during double-talk against
the visitor alone (the canceller must not eat the near-end talker).

Needs a pjsua2 built from source with ALSA and WebRTC (``./dev.sh build-pjsua2``; the wheel has no sound device).

    python -m benchmarks.aec_speech [--delay-ms 40] [--loss-db 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

from daemon.simulation.paced_card import EchoPath, PacedCard, paced_card

__all__ = ["main"]

RATE = 16000
WINDOW = RATE  # 1 s: runs start a few tens of ms apart, and speech energy over 1 s is steady enough to compare
RESIDENT_TEXT = (
    "Oi, quem é? Pode entrar, vou abrir o portão agora. Empurre com força, ele está emperrado desde ontem. "
    "Se não abrir, me chame de novo pelo interfone, por favor."
)
VISITOR_TEXT = "Boa tarde, é a entrega do mercado, tenho três sacolas para o apartamento cento e um."
CANCELLERS = {"off": None, "speex": 1, "webrtc": 3, "aec3": 4}


def speak(text: str, out: Path, voice: str = "pt-br") -> Path:
    raw = out.with_suffix(".22k.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True, capture_output=True)
    return out


def samples(path: Path) -> array.array[int]:
    with wave.open(str(path), "rb") as w:
        data = array.array("h", w.readframes(w.getnframes()))
        if w.getnchannels() == 2:
            data = data[::2]
        return data


def level_db(x: array.array[int] | list[int]) -> float:
    if not x:
        return -120.0
    return 10 * math.log10(max(sum(v * v for v in x) / len(x), 1e-3) / 32768**2)


def windows(x: array.array[int]) -> list[float]:
    return [level_db(x[i : i + WINDOW]) for i in range(0, len(x) - WINDOW + 1, WINDOW)]


def run_one(card: PacedCard, canceller: int | None, far: Path, near: Path | None, out: Path, seconds: float) -> None:
    """One process per run: pjsua2 allows one Endpoint per process, and a clean start per canceller."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.aec_speech",
        "--child",
        str(canceller if canceller is not None else -1),
        str(far),
        str(near or ""),
        str(out),
        str(seconds),
    ]
    env = {**os.environ, **card.alsa_environ()}
    proc = subprocess.Popen(cmd, env=env)
    if near is not None:
        time.sleep(seconds / 2)  # the visitor starts talking half-way: converged echo first, double-talk after
        with card.talk(near) as talker:
            talker.wait(timeout=seconds + 10)
    if proc.wait(timeout=seconds + 30) != 0:
        raise RuntimeError(f"child run failed ({canceller})")


def child(canceller: int, far: str, near: str, out: str, seconds: float) -> None:
    import pjsua2 as pj

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.medConfig.clockRate = RATE
    cfg.medConfig.sndClockRate = RATE
    cfg.medConfig.channelCount = 1
    cfg.medConfig.sndPlayLatency = int(os.environ.get("AEC_SND_LATENCY_MS", "140"))
    cfg.medConfig.sndRecLatency = int(os.environ.get("AEC_SND_LATENCY_MS", "140"))
    cfg.medConfig.ecTailLen = 0 if canceller < 0 else int(os.environ.get("AEC_TAIL_MS", "200"))
    cfg.medConfig.ecOptions = max(canceller, 0)
    verbose = int(os.environ.get("AEC_LOG", "0"))
    cfg.logConfig.level = verbose
    cfg.logConfig.consoleLevel = verbose
    ep.libInit(cfg)
    ep.libStart()
    adm = ep.audDevManager()
    names = [adm.getDevInfo(i).name for i in range(adm.getDevCount())]
    index = next(i for i, n in enumerate(names) if n.startswith("default") or "paced" in n)
    adm.setCaptureDev(index)
    adm.setPlaybackDev(index)
    player = pj.AudioMediaPlayer()
    player.createPlayer(far, pj.PJMEDIA_FILE_NO_LOOP)
    recorder = pj.AudioMediaRecorder()
    recorder.createRecorder(out)
    try:
        adm.getCaptureDevMedia().startTransmit(recorder)
        player.startTransmit(adm.getPlaybackDevMedia())
    except pj.Error as exc:
        print("devices:", names, "chose", index, "error:", exc.info(), file=sys.stderr)
        raise
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ep.libHandleEvents(20)
    player.stopTransmit(adm.getPlaybackDevMedia())
    adm.getCaptureDevMedia().stopTransmit(recorder)
    del player, recorder
    ep.libDestroy()


def analyse(runs: dict[str, Path], near_alone: Path, far_seconds: float) -> dict[str, Any]:
    base = windows(samples(runs["off"]))
    visitor = level_db(samples(near_alone))
    report: dict[str, Any] = {
        "visitor_alone_db": round(visitor, 1),
        "echo_off_db": round(level_db(samples(runs["off"])), 1),
    }
    for name, path in runs.items():
        if name == "off" or name.endswith("+dt"):
            continue
        res = windows(samples(path))
        erle = [round(b - r, 1) for b, r in zip(base, res, strict=False) if b > -60]  # windows with far-end echo
        converged = next((i for i in range(len(erle)) if all(e >= 30 for e in erle[i:])), None)
        off_all, on_all = samples(runs["off"]), samples(path)
        tail = slice(2 * RATE, min(len(off_all), len(on_all)))
        dt_path = runs.get(f"{name}+dt")
        entry: dict[str, Any] = {
            "erle_db_by_second": erle,
            "erle_db_after_2s": round(level_db(off_all[tail]) - level_db(on_all[tail]), 1),
            "converged_after_s": converged,
        }
        if dt_path is not None:
            dt = samples(dt_path)
            half = len(dt) // 2  # the visitor talks in the second half, over the resident
            entry["double_talk_visitor_db"] = round(level_db(dt[half:]), 1)
        report[name] = entry
    report["far_seconds"] = far_seconds
    return report


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delay-ms", type=int, default=40)
    ap.add_argument("--loss-db", type=float, default=6.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aec-") as tmpdir:
        tmp = Path(tmpdir)
        far = speak(RESIDENT_TEXT, tmp / "resident.wav")
        near = speak(VISITOR_TEXT, tmp / "visitor.wav")
        seconds = len(samples(far)) / RATE + 0.5
        runs: dict[str, Path] = {}
        with paced_card(tmp / "card") as card:
            card.add_echo_path(EchoPath(args.delay_ms, -args.loss_db))
            for name, option in CANCELLERS.items():
                runs[name] = tmp / f"{name}.wav"
                run_one(card, option, far, None, runs[name], seconds)
                if option is not None:
                    runs[f"{name}+dt"] = tmp / f"{name}-dt.wav"
                    run_one(card, option, far, near, runs[f"{name}+dt"], seconds)
            alone = tmp / "visitor-alone.wav"
            with card.record_microphone(alone), card.talk(near) as talker:
                talker.wait(timeout=30)
        report = analyse(runs, alone, seconds)
    report["echo_path"] = {"delay_ms": args.delay_ms, "loss_db": args.loss_db}
    print(json.dumps({k: v for k, v in report.items() if k != "erle"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
