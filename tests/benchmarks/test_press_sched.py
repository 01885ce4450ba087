"""benchmarks.press_sched's reading of a scheduler trace, on a made-up one (no perf, no cgroup)."""

from __future__ import annotations

from benchmarks.press_sched import analyze, parse_perf, summary

# The loop (100) runs on CPU 0 and wakes the SIP owner (101) on CPU 1 at 1.003 s; the owner only runs once the
# cgroup's period timer refills the quota at 1.010 s, with 1.5 ms of the period's 2.5 ms charged: a throttle with
# budget left, the runtime held on the other CPU.
TRACE = """\
0/0 [000] 1.000000: timer:hrtimer_expire_entry: hrtimer=0xffff0001 function=sched_cfs_period_timer now=1
0/0 [000] 1.002000: sched:sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> \
next_comm=python next_pid=100 next_prio=120
100/100 [000] 1.003000: sched:sched_wakeup: comm=sip-owner pid=101 prio=120 target_cpu=001
100/100 [000] 1.003000: sched:sched_stat_runtime: comm=python pid=100 runtime=1500000 [ns]
100/100 [000] 1.003500: sched:sched_switch: prev_comm=python prev_pid=100 prev_prio=120 prev_state=S ==> \
next_comm=swapper/0 next_pid=0 next_prio=120
0/0 [001] 1.010000: timer:hrtimer_expire_entry: hrtimer=0xffff0001 function=sched_cfs_period_timer now=1
0/0 [001] 1.010100: sched:sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> \
next_comm=sip-owner next_pid=101 next_prio=120
100/101 [001] 1.010700: sched:sched_stat_runtime: comm=sip-owner pid=101 runtime=500000 [ns]
100/101 [001] 1.010700: sched:sched_switch: prev_comm=sip-owner prev_pid=101 prev_prio=120 prev_state=S ==> \
next_comm=swapper/1 next_pid=0 next_prio=120
0/0 [000] 1.020000: timer:hrtimer_expire_entry: hrtimer=0xffff0001 function=sched_cfs_period_timer now=1
"""


def test_a_throttle_with_budget_left_is_found_at_its_stage() -> None:
    trace = parse_perf(TRACE.splitlines(), pid=100)
    assert [(r.tid, r.cpu) for r in trace.runs] == [(100, 0), (101, 1)]
    result = {
        "pid": 100,
        "thread_names": {"101": "sip-owner"},
        "visits": [{"edge": 0.952, "stamps": [["check", 1.0021, 0.0], ["dial", 1.0029, 0.0]]}],
        "invites": [1.0105],
    }
    a = analyze(result, trace, period=0.010, quota=0.25)
    (press,) = a["presses"]
    assert abs(press["invite_ms"] - 8.5) < 1e-6
    assert press["refills_crossed"] == 1 and press["period_used_before_ms"] == 0
    assert press["path_threads"] == {"loop (MainThread)": [1.5, [0]]}  # the owner's runtime is charged after
    (wait,) = press["waits"]
    assert wait["thread"] == "sip-owner" and wait["stage"] == "dial" and wait["woken_from_cpu"] == 0
    assert wait["period_used_ms"] == 1.5
    assert wait["kind"] == "throttled, released by the refill timer, with budget left in the period (stranded on a CPU)"
    assert "1  with budget left in the period (stranded on a CPU) | stage dial | sip-owner" in summary(a)
