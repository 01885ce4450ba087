"""The talk-call benchmark's report: the section of docs/audio.md and figure 10 of ``python -m benchmarks``."""

from __future__ import annotations

import time
from typing import Any

from benchmarks._proc import ROOT
from benchmarks._talk_causes import CAUSES, PANEL_CAUSES
from benchmarks.report import Figure

__all__ = ["HEADING", "TITLE", "figure_from", "section", "write_docs"]

DOC = ROOT / "docs" / "audio.md"
BEGIN, END = "<!-- talk_call:begin -->", "<!-- talk_call:end -->"
HEADING = "## A 10-minute call: latency, frames, CPU"
TITLE = "10. A talk call: mouth-to-ear latency the panel adds, audio dropped or inserted, CPU"
DIRECTIONS = ("visitor_to_resident", "resident_to_visitor")
SHOWN_STEPS = 24  # the first discontinuities of each direction, with their times (the --json has up to 50)


def _dir_row(label: str, d: dict[str, Any]) -> str:
    return (
        f"| {label} | {d['latency_median_ms']} | {d['latency_p99_ms']} | {d['latency_min_ms']} - "
        f"{d['latency_max_ms']} | {d['markers_paired']} / {d['markers_sent']}{_double_talk(d)} | "
        f"{d['discontinuities']} ({d['dropped_ms']} / {d['inserted_ms']}) | {d['discontinuities_settled']} "
        f"({d['dropped_settled_ms']} / {d['inserted_settled_ms']}) |"
    )


def _double_talk(d: dict[str, Any]) -> str:
    n = d.get("missing_in_double_talk")
    return f" ({n} of the missing over the resident's echo)" if n else ""


def section(results: dict[str, dict[str, Any]], minutes: float, measured_at: float | None = None) -> str:
    """The docs section: what was measured, then one table per run (no quota, quota); ``measured_at`` (epoch
    seconds) is when the runs ended, now unless re-rendered from saved results."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(measured_at))
    lines = [
        BEGIN,
        HEADING,
        "",
        f"_Written by `python -m benchmarks.talk_call --write-docs` ({stamp}, {minutes:g} minutes per call)._",
        "",
        "One call through the daemon's SIP engine (`SipEngine`, `[audio]` defaults unless a run says otherwise) to",
        "baresip (G.711) on 127.0.0.1, which answers after a 1 s ring (the card opens as the panel dials), its audio",
        "on pjmedia's sound device on the paced card with the echo path on (40 ms, -6 dB); baresip plays what it hears",
        "into a third sink of the card. Each side speaks a 60 ms chirp every 0.5 s for the whole call. **Latency** is",
        "what the panel adds: visitor -> resident from the moment the card hands a chirp out on `mic.monitor` to the",
        "RTP packet carrying its first sample crossing `lo` (kernel timestamp): capture buffering, the canceller, the",
        "conference, the encoder and the 20 ms packetisation; resident -> visitor from the phone's packet crossing",
        "`lo` to the card taking the chirp's first sample from the panel (`spk.monitor`): jitter buffer, decoder,",
        "conference, playback buffering. The phone's own buffering and packetisation are in neither. The card's side",
        "is timed by the lower envelope of when its blocks reach a recorder, so it is early by up to one block of the",
        "card (the median block is in the table): the simulation's own granularity, not the panel's.",
        "**Dropped / inserted**: each chirp's position in the far end's sample stream minus its position in the near",
        "end's is constant while no audio is lost or added; a step of more than 2 ms between two chirps counts as a",
        "discontinuity (its size summed as dropped or inserted ms; pjmedia's jitter buffer works in 10 ms frames,",
        "the conference in 20 ms). The first 5 s (the jitter buffer and pjmedia's delay buffers finding their level)",
        "are also counted apart. Chirps found at the near end but not paired at the far end are counted too; a",
        "visitor's chirp missing where it overlapped the resident's echo in the microphone is double-talk (the",
        "canceller's suppression), not audio dropped. The visitor starts half a period from the resident's echo.",
        "**Causes** (benchmarks/_talk_causes.py): each discontinuity is given the stall that overlaps it, seen on",
        "the wire or at the card: the card (both of its recorders waiting over 60 ms at once: PulseAudio or the whole",
        "virtual machine stopped), the panel's sending (over 60 ms between its RTP packets; within 2 s of its first",
        'packet, the card opening: "call start"), the phone\'s sending (resident -> visitor only); the steps that',
        "undo a stall's effect over the next 15 s (the jitter buffer dropping the backlog) get the same cause. Steps",
        "in a direction's first 5 s are \"call start\"; the rest are the panel's own buffering: the jitter buffer",
        "(resident -> visitor), the capture side (visitor -> resident: pjmedia's delay buffer between the card's",
        "capture and the conference). The phone and the card are the simulation's (the phone is another device, a",
        "card's DMA does not stop): they run in a cgroup with a large CPU weight, the panel outside it.",
        "",
    ]
    for label, r in results.items():
        lines.append(f"**{label}**" + (f": {r['error']}" if "error" in r else ""))
        if "error" in r:
            lines.append("")
            continue
        s = r.get("stream") or {}
        cg = r.get("cgroup")
        lines += [
            "",
            "| direction | median ms | p99 ms | min - max ms | chirps paired / sent | discontinuities (dropped / "
            "inserted ms) | of which after the first 5 s |",
            "|---|---|---|---|---|---|---|",
            _dir_row("visitor -> resident (card -> wire)", r["visitor_to_resident"]),
            _dir_row("resident -> visitor (wire -> card)", r["resident_to_visitor"]),
            "",
            f"CPU of the engine's process over the call: **{100 * r['cpu_share_of_core']:.1f} % of one core** "
            f"({r['talk_seconds']} s). Jitter buffer (pjsua2 `StreamStat`): lost {s.get('jbuf_lost')}, discarded "
            f"{s.get('jbuf_discarded')}, empty {s.get('jbuf_empty')}, delay avg / max {s.get('jbuf_avg_delay_ms')} / "
            f"{s.get('jbuf_max_delay_ms')} ms; RTP received {s.get('rx_packets')}, lost {s.get('rx_lost')}. RTP on "
            f"the wire: {r['rtp']['to_phone_packets']} packets to the phone ({r['rtp']['to_phone_gaps']} sequence "
            f"gaps), {r['rtp']['from_phone_packets']} from it ({r['rtp']['from_phone_gaps']} gaps; "
            f"{r['rtp'].get('timestamp_jumps', 0)} timestamp jumps, {r['rtp'].get('foreign_packets', 0)} packets of "
            "another stream left out). Card block "
            f"(median recorder read interval) {r['card_read_interval_ms_median']} ms. Load average before / after: "
            f"{' '.join(r['loadavg_before'])} / {' '.join(r['loadavg_after'])} (2 cores shared with other jobs).",
        ]
        if clocks := _clocks(r["rtp"]):
            lines.append(clocks)
        lines += [
            f"{label}, {name.replace('_', ' ')}: not measured, {_unpaired(r)}."
            for name in DIRECTIONS
            if not r[name]["markers_sent"]
        ]
        if changed := r.get("audio"):
            lines.append(f"`[audio]` changed from the defaults for this call: {changed}.")
        if loop := r.get("card_loop"):
            lines.append(
                f"The card's own loop (`alsaloop` microphone -> speaker through ALSA's pulse plugin at 40 ms, no "
                f"pjmedia, {loop['markers_paired']} chirps): median {loop['latency_median_ms']} ms, p99 "
                f"{loop['latency_p99_ms']} ms, {loop['discontinuities']} discontinuities: what any program pays on "
                "this card for one capture plus one playback at this latency (the simulation's part of the two "
                "directions together; a Pi's `hw:` device would have its own)."
            )
        if cg:
            lines.append(
                f"The quota (cgroup v{cg['version']}) throttled the process in {cg['nr_throttled']} of "
                f"{cg['nr_periods']} periods ({cg['throttled_s']} s in all)."
            )
        if peers := r.get("peers"):
            lines.append(f"Scheduling: {peers}.")
        if (steal := r.get("steal_share")) is not None:
            lines.append(
                f"CPU time stolen by the hypervisor during the call: {100 * steal:.1f} % of the machine's (the whole "
                "virtual machine stops then: the card, the phone and the panel at once)."
            )
        lines += _causes(r)
        for name in DIRECTIONS:
            d = r[name]
            if d["steps_ms"]:
                pairs = list(zip(d["steps_ms"], d["step_times_s"], strict=True))
                steps = ", ".join(f"{size:+g} ms at {when:g} s" for size, when in pairs[:SHOWN_STEPS])
                more = f" ... ({d['discontinuities']} in all)" if d["discontinuities"] > SHOWN_STEPS else ""
                lines.append(f"Discontinuities {name.replace('_', ' ')}: {steps}{more}.")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def figure_from(saved: dict[str, Any]) -> Figure:
    fig = Figure(
        "fig10_talk",
        TITLE,
        target="0 discontinuities in a 10-minute call, with and without a Pi-sized quota (issue 14)",
    )
    rows = []
    for label, r in saved["results"].items():
        if "error" in r:
            rows.append([label, "error", r["error"][:200], "", "", "", "", ""])
            continue
        for name, key in (
            ("visitor -> resident", "visitor_to_resident"),
            ("resident -> visitor", "resident_to_visitor"),
        ):
            d = r[key]
            if not d["markers_sent"]:  # no chirp paired: a harness failure, not 0 discontinuities
                rows.append([f"{name}, {label}", "error", f"not measured: {_unpaired(r)}"] + [""] * 5)
                continue
            rows.append(
                [
                    f"{name}, {label}",
                    str(d["latency_median_ms"]),
                    str(d["latency_p99_ms"]),
                    f"{d['markers_paired']} / {d['markers_sent']}",
                    f"{d['discontinuities']} ({d['discontinuities_settled']})",
                    str(d.get("causes", {}).get("panel", "")),
                    f"{d['dropped_ms']} / {d['inserted_ms']}",
                    f"{100 * r['cpu_share_of_core']:.1f} %",
                ]
            )
    headers = [
        "direction, run",
        "median ms",
        "p99 ms",
        "chirps paired / sent",
        "discontinuities (after 5 s)",
        "of which the panel's",
    ]
    fig.tables.append(([*headers, "dropped / inserted ms", "CPU of one core"], rows))
    fig.notes.append(
        f"{saved['minutes']:g}-minute calls through SipEngine on the paced card (benchmarks/talk_call.py; "
        "docs/audio.md has the 10-minute run and what the latency includes: card <-> RTP on lo, the phone's "
        "buffering excluded)."
    )
    return fig


def _unpaired(r: dict[str, Any]) -> str:
    """Why a direction paired no chirp: the chirps found at each end and the packets seen each way."""
    found = r.get("markers_found")
    rtp = r.get("rtp", {})
    ends = ", ".join(f"{end.replace('_', ' ')} {n}" for end, n in found.items()) if found else "not recorded"
    stderr = f"; the panel's stderr: {r['panel_stderr'][:300]}" if r.get("panel_stderr") else ""
    return (
        f"no chirp paired (chirps found: {ends}; RTP packets to / from the phone {rtp.get('to_phone_packets')} / "
        f"{rtp.get('from_phone_packets')}, of another stream {rtp.get('foreign_packets')}{stderr})"
    )


def write_docs(text: str) -> None:
    """Replace the section between the markers, or append it at the end of docs/audio.md."""
    doc = DOC.read_text(encoding="utf-8")
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + text + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    DOC.write_text(doc, encoding="utf-8")


def _causes(r: dict[str, Any]) -> list[str]:
    """The discontinuities by cause (benchmarks/_talk_causes.py), both directions, and the stalls seen."""
    sent, heard = r["visitor_to_resident"].get("causes"), r["resident_to_visitor"].get("causes")
    if sent is None or heard is None:
        return []
    lines = [
        "",
        "| cause | the panel's? | visitor -> resident (net ms) | resident -> visitor (net ms) |",
        "|---|---|---|---|",
    ]
    for cause in CAUSES:
        if cause in sent["by_cause"] or cause in heard["by_cause"]:
            cells = [f"{d['by_cause'].get(cause, 0)} ({d['net_ms_by_cause'].get(cause, 0):+g})" for d in (sent, heard)]
            lines.append(f"| {cause} | {'yes' if cause in PANEL_CAUSES else 'no'} | {cells[0]} | {cells[1]} |")
    lines.append(f"| **the panel's** | | **{sent['panel']}** | **{heard['panel']}** |")

    def listed(stalls: list[list[float]]) -> str:
        shown = ", ".join(f"{ms:g} ms at {at:g} s" for at, ms in stalls[:12])
        return (shown + (f" ... ({len(stalls)} in all)" if len(stalls) > 12 else "")) or "none"

    lines += [
        "",
        "Stalls over 60 ms (times from the first resident chirp): the phone's sending "
        f"{listed(r['phone_send_stalls'])}; the card (both recorders waiting at once) "
        f"{listed(r.get('card_stalls', []))}; the panel's sending {listed(r['panel_send_stalls'])}.",
    ]
    return lines


def _clocks(rtp: dict[str, Any]) -> str | None:
    """The two senders' media clocks (benchmarks/_talk_capture.py: media_clock_ppm) and what their mismatch costs
    the receiving jitter buffer: one 20 ms frame inserted or dropped per ``20 ms / mismatch``."""
    panel, phone = rtp.get("panel_clock_ppm"), rtp.get("phone_clock_ppm")
    if panel is None or phone is None:
        return None
    mismatch = abs(panel - phone)
    every = f"one 20 ms frame every {0.020 / (mismatch * 1e-6):.0f} s" if mismatch >= 1 else "no frame in a call"
    return (
        f"Media clocks against the wire's (RTP timestamps over arrival times): the panel's {panel:+.1f} ppm (its "
        f"card's playback clocks its conference), the phone's {phone:+.1f} ppm; the mismatch, {mismatch:.1f} ppm, "
        f"costs the jitter buffer {every}."
    )
