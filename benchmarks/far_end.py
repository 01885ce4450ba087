"""The far end (the residents' phones): a pjsua2 UAS in its own process on 127.0.0.1.

It answers every call (180, then 200 after ``--answer-after`` seconds), hangs up itself after a random
time in ``[--hangup-min, --hangup-max]`` seconds (never, if ``--hangup-max`` is 0), and may send ``--dtmf``
digits ``--dtmf-after`` seconds after answering. It tells apart the calls *it* ended from the calls the
caller ended: when the caller's own scheduled hang-up comes later than any far-end hang-up, every
caller-side BYE that arrives before the far end's time is a hang-up that hit the wrong call.
One thread polls pjsua (``threadCnt = 0``), so every callback runs here and the
far end never competes with itself. On SIGTERM it prints one JSON line and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import time

import pjsua2 as pj

from benchmarks._pj import account_config, endpoint
from benchmarks._proc import emit


class Phone(pj.Account):  # type: ignore[misc]  # untyped library
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args
        self.calls: dict[int, Answered] = {}  # kept until DISCONNECTED (a dropped Call hangs itself up)
        self.to_answer: list[Answered] = []
        self.stats = {"calls": 0, "ended_by_far_end": 0, "ended_by_caller": 0, "dtmf_sent": 0}
        self.dtmf_sent_at: list[float] = []

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = Answered(self, prm.callId)
        self.calls[prm.callId] = call
        self.to_answer.append(call)  # answered on the next poll turn, not inside the callback
        self.stats["calls"] += 1

    def turn(self, now: float) -> None:
        for call in list(self.to_answer):
            if not call.ringing:  # 180 first, as a phone does; the answer after --answer-after seconds
                call.ringing = True
                call.answer_at = now + self.args.answer_after
                self._answer(call, 180)
            if now >= call.answer_at:
                self.to_answer.remove(call)
                self._answer(call, 200)
        for call in list(self.calls.values()):
            call.due(now)

    @staticmethod
    def _answer(call: Answered, code: int) -> None:
        op = pj.CallOpParam()
        op.statusCode = code
        with contextlib.suppress(pj.Error):  # the caller may have cancelled meanwhile
            call.answer(op)


class Answered(pj.Call):  # type: ignore[misc]  # untyped library
    def __init__(self, phone: Phone, call_id: int) -> None:
        super().__init__(phone, call_id)
        self.phone = phone
        self.hangup_at = self.dtmf_at = float("inf")
        self.hanging_up = self.ringing = False
        self.answer_at = float("inf")

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        ci = self.getInfo()
        args = self.phone.args
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            now = time.monotonic()
            if args.hangup_max > 0:
                self.hangup_at = now + random.uniform(args.hangup_min, args.hangup_max)
            if args.dtmf:
                self.dtmf_at = now + args.dtmf_after
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            key = "ended_by_far_end" if self.hanging_up else "ended_by_caller"
            self.phone.stats[key] += 1
            self.phone.calls.pop(ci.id, None)

    def due(self, now: float) -> None:
        if now >= self.dtmf_at:
            self.dtmf_at = float("inf")
            self.phone.dtmf_sent_at.append(time.monotonic())
            self.dialDtmf(self.phone.args.dtmf)
            self.phone.stats["dtmf_sent"] += 1
        if now >= self.hangup_at and not self.hanging_up:
            self.hanging_up = True  # set first: DISCONNECTED fires inside hangup()
            with contextlib.suppress(pj.Error):
                self.hangup(pj.CallOpParam())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rtp-port", type=int, default=21000)
    ap.add_argument("--hangup-min", type=float, default=0.0)
    ap.add_argument("--hangup-max", type=float, default=0.0)
    ap.add_argument("--answer-after", type=float, default=0.0, help="seconds of ringing before the answer")
    ap.add_argument("--dtmf", default="")
    ap.add_argument("--dtmf-after", type=float, default=0.3)
    ap.add_argument("--max-calls", type=int, default=32)
    args = ap.parse_args()
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with endpoint(args.port, args.rtp_port, thread_cnt=0, max_calls=args.max_calls) as ep:
        phone = Phone(args)
        phone.create(account_config(f"sip:phone@127.0.0.1:{args.port}", args.rtp_port))
        print("ready", flush=True)
        parent = os.getppid()
        # Stop with the parent too: a parent aborted by pjlib never runs its clean-up, and an orphaned
        # far end would keep the port and break every later run.
        while not stop and os.getppid() == parent:
            ep.libHandleEvents(5)
            phone.turn(time.monotonic())
        for call in list(phone.calls.values()):
            call.hanging_up = True
            with contextlib.suppress(pj.Error):
                call.hangup(pj.CallOpParam())
        phone.calls.clear()
        phone.to_answer.clear()
        emit({**phone.stats, "dtmf_sent_at": phone.dtmf_sent_at})
        phone.shutdown()


if __name__ == "__main__":
    main()
