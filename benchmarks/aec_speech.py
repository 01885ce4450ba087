"""Echo cancellation on speech through the paced card: the measurement behind docs/audio.md's decision.

The panel's own acoustic loop, isolated: pjmedia's sound device on the paced virtual card (PulseAudio null sinks,
:mod:`daemon.simulation.paced_card`), the resident's voice (espeak-ng speech) played to the panel's speaker from
pjsua2's conference as a call's audio would be, an echo path (``module-loopback`` speaker -> microphone with a
delay and a loss), and the visitor speaking into the microphone near the end (double-talk, then alone).

Each run records, in the SAME run, the microphone before cancellation (``parec`` on ``mic.monitor``) and what the
canceller sends towards the resident (a conference recorder on the capture port). The two are aligned by
cross-correlation, and so are the clean references (the resident's and the visitor's WAVs) to the microphone; the
references tell which 250 ms windows hold far-end speech only, double-talk, or the visitor alone. Figures:

* ERLE per window of far-end-only speech: microphone level minus sent level (about 0 dB with the canceller off,
  which checks the method);
* convergence: the first second (from the resident's first word) after which the median ERLE of each second of
  far-end-only speech stays >= 30 dB, with at least 2 s of such speech after it;
* the visitor's attenuation: the sent signal's projection onto the aligned visitor reference against the
  microphone's, during double-talk and alone (speech uncorrelated with the resident's does not bias it);
* CPU of the child process (pjsua2, the sound device, the canceller) as a share of one core.

Needs a pjsua2 built from source with ALSA and WebRTC (``PYTHONPATH=/tmp/pjsrc`` or ``./dev.sh build-pjsua2``).

    python -m benchmarks.aec_speech [--delays 20,40,80] [--loss-db 6] [--cancellers off,speex,webrtc,aec3]
                                    [--json out.json] [--write-docs] [--from-json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.simulation.paced_card import EchoPath, PacedCard, paced_card

__all__ = ["Canceller", "analyse_run", "canceller", "main"]

Signal = npt.NDArray[np.float64]

RATE = 16000
WINDOW = RATE // 4  # 250 ms
RESIDENT_TEXT = (
    "Oi, quem é? Pode entrar, vou abrir o portão agora. Empurre com força, ele está emperrado desde ontem. "
    "Se não abrir, me chame de novo pelo interfone, por favor. Quando subir, deixe as sacolas na portaria, "
    "o porteiro guarda para mim até a noite. Obrigado, e bom trabalho."
)
VISITOR_TEXT = "Boa tarde, é a entrega do mercado, tenho três sacolas para o apartamento cento e um."
VISITOR_OVERLAP_S = 4.0  # the visitor starts this long before the resident stops: double-talk, then alone
ERLE_TARGET_DB = 30.0
DOCS = Path(__file__).resolve().parent.parent / "docs"
BEGIN, END = "<!-- aec_speech:begin -->", "<!-- aec_speech:end -->"


@dataclass(frozen=True)
class Canceller:
    """One configuration of pjmedia's sound-port echo canceller (EpConfig.medConfig)."""

    name: str
    ec_options: int  # PJMEDIA_ECHO_* algorithm and flags; -1 = echo cancellation off (tail 0)
    tail_ms: int = 200
    latency_ms: int = 140  # sndPlayLatency and sndRecLatency
    ptime_ms: int = 20  # audioFramePtime: the conference's and the canceller's frame


# PJMEDIA_ECHO_SPEEX / _SIMPLE (the echo suppressor: [audio] half_duplex) / _WEBRTC / _WEBRTC_AEC3
ALGORITHMS = {"off": -1, "speex": 1, "half-duplex": 2, "webrtc": 3, "aec3": 4}
AGGRESSIVE = 0x3000  # PJMEDIA_ECHO_AGGRESSIVENESS_AGGRESSIVE: WebRTC's NLP suppresses more residual
SIMPLE_FIFO = 32  # PJMEDIA_ECHO_USE_SIMPLE_FIFO: the reference's drift buffer is a FIFO, not WSOLA (no time-stretch)
# PJMEDIA_ECHO_USE_NOISE_SUPPRESSOR / _GAIN_CONTROLLER: for Speex too on our build (config_site.h); Speex's
# denoiser also runs its residual-echo suppressor
NOISE_SUPPRESSOR = 128
GAIN_CONTROLLER = 256
FLAGS = {"aggr": AGGRESSIVE, "fifo": SIMPLE_FIFO, "ns": NOISE_SUPPRESSOR, "agc": GAIN_CONTROLLER}


def canceller(spec: str) -> Canceller:
    """``name[:tail=ms][:lat=ms][:ptime=ms][:aggr][:fifo][:ns][:agc]``, e.g. ``speex:lat=40:ns`` (the name is the
    spec itself)."""
    algorithm, *options = spec.split(":")
    fields: dict[str, int] = {"ec_options": ALGORITHMS[algorithm]}
    for option in options:
        key, _, value = option.partition("=")
        if key in FLAGS:
            fields["ec_options"] |= FLAGS[key]
        else:
            fields[{"tail": "tail_ms", "lat": "latency_ms", "ptime": "ptime_ms"}[key]] = int(value)
    return Canceller(spec, **fields)


DEFAULT_SET = ("off", "speex", "webrtc", "aec3")


def speak(text: str, out: Path, voice: str = "pt-br") -> Path:
    raw = out.with_suffix(".22k.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True, capture_output=True)
    return out


def read_wav(path: Path) -> Signal:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        if w.getnchannels() == 2:
            data = data[::2]
    return data / 32768.0


def level_db(x: Signal) -> float:
    if x.size == 0:
        return -120.0
    return 10 * math.log10(max(float(np.mean(x * x)), 1e-12))


def lag_of(reference: Signal, signal: Signal) -> int:
    """The delay (in samples) of ``reference`` inside ``signal``: signal[n + lag] ~ reference[n]."""
    n = 1 << math.ceil(math.log2(len(reference) + len(signal)))
    corr = np.fft.irfft(np.fft.rfft(signal, n) * np.conj(np.fft.rfft(reference, n)), n)
    best = int(np.argmax(np.abs(corr)))
    # n >= len(reference) + len(signal): lags in [0, len(signal)) are positive, the rest wrapped negatives
    # (n // 2 as the split misread a reference placed past the middle of the FFT length as a negative lag)
    return best if best < len(signal) else best - n


def shifted(reference: Signal, lag: int, length: int) -> Signal:
    """``reference`` placed at ``lag`` in a signal of ``length`` samples (zeros elsewhere)."""
    out = np.zeros(length)
    start, src = max(lag, 0), max(-lag, 0)
    count = max(0, min(length - start, len(reference) - src))
    out[start : start + count] = reference[src : src + count]
    return out


def analyse_run(mic: Signal, sent: Signal, far: Signal, near: Signal, sent_lag: int | None = None) -> dict[str, Any]:
    """Figures of one run: ``mic`` before cancellation, ``sent`` after it, the clean references; ``sent_lag``,
    where ``sent`` lies against ``mic`` (samples), when the caller knows it better than one cross-correlation
    over the whole run."""
    if sent_lag is None:
        sent_lag = lag_of(mic, sent)
    sent_aligned = shifted(sent, -sent_lag, len(mic))
    far_ref = shifted(far, lag_of(far, mic), len(mic))
    near_ref = shifted(near, lag_of(near, mic), len(mic))
    count = len(mic) // WINDOW
    far_lv = [level_db(far_ref[i * WINDOW : (i + 1) * WINDOW]) for i in range(count)]
    near_lv = [level_db(near_ref[i * WINDOW : (i + 1) * WINDOW]) for i in range(count)]
    far_on = [lv > max(far_lv) - 30 for lv in far_lv]
    near_on = [lv > max(near_lv) - 30 for lv in near_lv]
    first_far = next(i for i, on in enumerate(far_on) if on)
    # Windows the sent recording does not cover (it started later or ended sooner) would read as total
    # cancellation: they count in no figure.
    covered = [-sent_lag <= i * WINDOW and (i + 1) * WINDOW <= len(sent) - sent_lag for i in range(count)]
    far_on = [on and ok for on, ok in zip(far_on, covered, strict=True)]
    near_on = [on and ok for on, ok in zip(near_on, covered, strict=True)]
    timeline: list[dict[str, float]] = []
    erle: list[tuple[float, float]] = []
    for i in range(count):
        seg = slice(i * WINDOW, (i + 1) * WINDOW)
        t = round((i - first_far) * WINDOW / RATE, 2)
        mic_db, sent_db = level_db(mic[seg]), level_db(sent_aligned[seg])
        timeline.append({"t": t, "mic_db": round(mic_db, 1), "sent_db": round(sent_db, 1)})
        if far_on[i] and not near_on[i]:
            erle.append((t, mic_db - sent_db))
    far_only = [i for i in range(count) if far_on[i] and not near_on[i]]
    # Speech has pauses (low ERLE windows between words): judge each second by the median of its windows.
    by_second: dict[int, list[float]] = {}
    for t, e in erle:
        by_second.setdefault(int(t), []).append(e)
    seconds = sorted(by_second)
    medians = [float(np.median(by_second[s])) for s in seconds]
    converged = next(
        (s for k, s in enumerate(seconds) if seconds[-1] - s >= 2 and all(m >= ERLE_TARGET_DB for m in medians[k:])),
        None,
    )
    settled = [e for t, e in erle if t >= 2.0]
    return {
        # far WAV -> speaker -> air -> microphone -> recorder: the delay the canceller's reference must match
        "loop_delay_ms": round(1000 * lag_of(far, sent) / RATE),
        "echo_at_mic_dbfs": round(level_db(np.concatenate([mic[_window(i)] for i in far_only])), 1),
        "erle_median_after_2s_db": round(float(np.median(settled)), 1) if settled else None,
        "erle_p10_after_2s_db": round(float(np.percentile(settled, 10)), 1) if settled else None,
        "converged_s": converged,
        "erle_median_by_second_db": [round(m, 1) for m in medians],
        "visitor_double_talk_db": _visitor_gain(mic, sent_aligned, near_ref, far_on, near_on, both=True),
        "visitor_alone_db": _visitor_gain(mic, sent_aligned, near_ref, far_on, near_on, both=False),
        "timeline": timeline,
    }


def _window(i: int) -> slice:
    return slice(i * WINDOW, (i + 1) * WINDOW)


def _visitor_gain(
    mic: Signal, sent: Signal, near_ref: Signal, far_on: list[bool], near_on: list[bool], *, both: bool
) -> float | None:
    """How much of the visitor's voice is sent (dB, 0 = all of it): projections onto the visitor's reference."""
    picked = [i for i, (f, n) in enumerate(zip(far_on, near_on, strict=True)) if n and f == both]
    if not picked:
        return None
    idx = np.concatenate([np.arange(i * WINDOW, (i + 1) * WINDOW) for i in picked])
    ref = near_ref[idx]
    energy = float(np.dot(ref, ref))
    g_mic, g_sent = float(np.dot(mic[idx], ref)) / energy, float(np.dot(sent[idx], ref)) / energy
    if g_mic <= 0 or g_sent <= 0:
        return -60.0
    return round(20 * math.log10(g_sent / g_mic), 1)


# ----------------------------------------------------------------------------------------------- the runs


def run_one(
    card: PacedCard, setup: Canceller, far: Path, near: Path, tmp: Path, seconds: float, near_at: float
) -> dict[str, Any]:
    """One child process per run (one Endpoint per process, a clean start per canceller); the microphone is
    recorded here, before and after the child, so it covers the whole run."""
    sent, mic, stats = tmp / f"{setup.name}-sent.wav", tmp / f"{setup.name}-mic.wav", tmp / "stats.json"
    cmd = [sys.executable, "-m", "benchmarks.aec_speech", "--child", json.dumps(asdict(setup))]
    cmd += [str(far), str(sent), str(seconds), str(stats)]
    with card.record_microphone(mic):
        proc = subprocess.Popen(cmd, env={**os.environ, **card.alsa_environ()})
        with contextlib.suppress(subprocess.TimeoutExpired):  # expected: the child still plays the resident
            proc.wait(timeout=near_at)
        with card.talk(near) as talker:
            talker.wait(timeout=seconds + 10)
        if proc.wait(timeout=seconds + 30) != 0:
            raise RuntimeError(f"child run failed ({setup.name})")
    report = analyse_run(read_wav(mic), read_wav(sent), read_wav(far), read_wav(near))
    report.update(json.loads(stats.read_text(encoding="utf-8")))
    return report


def child(spec: dict[str, Any], far: str, out: str, seconds: float, stats_path: str) -> None:
    import pjsua2 as pj

    setup = Canceller(**spec)
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.medConfig.clockRate = RATE
    cfg.medConfig.sndClockRate = RATE
    cfg.medConfig.channelCount = 1
    cfg.medConfig.sndPlayLatency = setup.latency_ms
    cfg.medConfig.sndRecLatency = setup.latency_ms
    cfg.medConfig.audioFramePtime = setup.ptime_ms
    cfg.medConfig.ecTailLen = 0 if setup.ec_options < 0 else setup.tail_ms
    cfg.medConfig.ecOptions = max(setup.ec_options, 0)
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
    cpu0, wall0 = os.times(), time.monotonic()
    adm.getCaptureDevMedia().startTransmit(recorder)
    player.startTransmit(adm.getPlaybackDevMedia())
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ep.libHandleEvents(20)
    cpu1, wall1 = os.times(), time.monotonic()
    player.stopTransmit(adm.getPlaybackDevMedia())
    adm.getCaptureDevMedia().stopTransmit(recorder)
    del player, recorder
    ep.libDestroy()
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    Path(stats_path).write_text(json.dumps({"cpu_share_of_core": round(cpu / (wall1 - wall0), 3)}), encoding="utf-8")


# ----------------------------------------------------------------------------------------------- the report


def summary_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| echo path | canceller | echo at mic (dBFS) | ERLE 1st / 2nd / 3rd s (dB) | ERLE median / p10 after 2 s (dB) "
        "| stays >= 30 dB from (s) | visitor in double-talk / alone (dB) | CPU (share of a core) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path, runs in results.items():
        for name, r in runs.items():
            first = " / ".join(str(x) for x in r["erle_median_by_second_db"][:3])
            lines.append(
                f"| {path} | {name} | {r['echo_at_mic_dbfs']} | {first} | {r['erle_median_after_2s_db']} / "
                f"{r['erle_p10_after_2s_db']} | {r['converged_s'] if r['converged_s'] is not None else 'never'} | "
                f"{r['visitor_double_talk_db']} / {r['visitor_alone_db']} | {r['cpu_share_of_core']} |"
            )
    return "\n".join(lines)


def plot(runs: dict[str, dict[str, Any]], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    first = next(iter(runs.values()))
    ax.plot(
        [p["t"] for p in first["timeline"]],
        [p["mic_db"] for p in first["timeline"]],
        color="0.6",
        lw=1,
        label="microphone (echo + visitor), before the canceller",
    )
    for name, r in runs.items():
        ax.plot([p["t"] for p in r["timeline"]], [p["sent_db"] for p in r["timeline"]], lw=1.2, label=f"sent: {name}")
    ax.set_xlabel("seconds from the resident's first word")
    ax.set_ylabel("level per 250 ms (dBFS)")
    ax.set_ylim(-100, 5)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", ncol=4)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_docs(results: dict[str, dict[str, dict[str, Any]]], loss_db: float) -> None:
    doc = DOCS / "audio.md"
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise RuntimeError(f"{doc} has no {BEGIN} ... {END} section")
    body = (
        f"{BEGIN}\n_Written by `python -m benchmarks.aec_speech --write-docs` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, echo path loss {loss_db} dB)._\n\n"
        f"{summary_table(results)}\n{END}"
    )
    head, rest = text.split(BEGIN, 1)
    doc.write_text(head + body + rest.split(END, 1)[1], encoding="utf-8")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delays", default="20,40,80", help="echo path delays in ms, comma-separated")
    ap.add_argument("--loss-db", type=float, default=6.0)
    ap.add_argument(
        "--cancellers",
        default=",".join(DEFAULT_SET),
        help="specs: name[:tail=ms][:lat=ms][:ptime=ms][:aggr][:fifo][:ns][:agc]",
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--write-docs", action="store_true", help="update docs/audio.md's table and docs/img/aec_*.png")
    ap.add_argument("--from-json", type=Path, help="re-render docs/audio.md and the plots from an earlier --json")
    args = ap.parse_args()
    if args.from_json:
        render(json.loads(args.from_json.read_text(encoding="utf-8")), args.loss_db)
        return
    chosen = [canceller(spec) for spec in args.cancellers.split(",")]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="aec-") as tmpdir:
        tmp = Path(tmpdir)
        far = speak(RESIDENT_TEXT, tmp / "resident.wav")
        near = speak(VISITOR_TEXT, tmp / "visitor.wav")
        far_s, near_s = len(read_wav(far)) / RATE, len(read_wav(near)) / RATE
        near_at = far_s - VISITOR_OVERLAP_S
        seconds = near_at + near_s + 1.0
        with paced_card(tmp / "card") as card:
            for delay in (int(d) for d in args.delays.split(",")):
                module = card.add_echo_path(EchoPath(delay, -args.loss_db))
                key = f"{delay} ms"
                results[key] = {}
                for chosen_one in chosen:
                    results[key][chosen_one.name] = run_one(card, chosen_one, far, near, tmp, seconds, near_at)
                    brief = {k: v for k, v in results[key][chosen_one.name].items() if k != "timeline"}
                    print(key, chosen_one.name, json.dumps(brief), flush=True)
                card.remove_module(module)
    print(summary_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if args.write_docs:
        render(results, args.loss_db)


def render(results: dict[str, dict[str, dict[str, Any]]], loss_db: float) -> None:
    write_docs(results, loss_db)
    for key, runs in results.items():
        title = f"Echo sent towards the resident, echo path {key} / -{loss_db} dB"
        plot(runs, title, DOCS / "img" / f"aec_{key.replace(' ', '')}.png")


if __name__ == "__main__":
    main()
