"""The issue-18 benchmarks (memory breakdown, CPU quota) with tiny samples, so they cannot rot unnoticed.

Asserts that each runs, prints its table and, for the quota, leaves no cgroup behind; never a timing or a
size (a slow or busy machine must not fail here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cpu_quota import CpuQuota, quota_unavailable
from benchmarks.memory_breakdown import smaps_rollup, top_mappings
from benchmarks.report import Figure
from tests.support.child_env import child_env

ROOT = Path(__file__).resolve().parents[2]
PEERS = pytest.mark.skipif(
    shutil.which("kamailio") is None or shutil.which("baresip") is None,
    reason="needs kamailio and baresip (./dev.sh setup installs them)",
)
QUOTA = pytest.mark.skipif(quota_unavailable() is not None, reason=f"no CPU quota here: {quota_unavailable()}")


def _run(*args: str, timeout: float) -> str:
    # child_env: the pjsua2 source build on PYTHONPATH stays there (with the repo alone, the daemon the benchmark
    # starts found no pjsua2 where the venv has no wheel, and never registered).
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    return proc.stdout


def test_memory_of_this_process_is_read_from_proc() -> None:
    mem = smaps_rollup(os.getpid())
    assert 0 < mem["uss_kb"] <= mem["pss_kb"] <= mem["rss_kb"]
    mappings = top_mappings(os.getpid(), top=5)
    assert len(mappings) == 5
    assert all(kb > 0 for _name, kb in mappings)


@QUOTA
def test_a_quota_cgroup_holds_its_child_and_is_removed_on_exit() -> None:
    with CpuQuota(50_000, 100_000) as quota:
        name = quota.path.name
        out = subprocess.run(
            [sys.executable, "-c", "print(open('/proc/self/cgroup').read())"],
            preexec_fn=quota.join,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    assert name in out
    assert not quota.path.exists()


@PEERS
@pytest.mark.peers
@pytest.mark.timeout(240)
def test_memory_breakdown_prints_its_table() -> None:
    out = _run("benchmarks.memory_breakdown", "--no-traced", "--visits", "2", timeout=220)
    assert "9a. Memory after start and after the visits, beside baresip" in out
    for row in (
        "intercomd |",
        "baresip |",
        "bare interpreter |",
        "libStart",
        "app, after 2 visits (2 opened the door) |",
        "baresip, idle, after the visits |",
        "PortAudio initialized |",
    ):
        assert row in out, row


@QUOTA
@PEERS
@pytest.mark.peers
@pytest.mark.timeout(480)
def test_cpu_quota_prints_its_table_and_removes_its_cgroup() -> None:
    # --slice-row-us 0: the slice is a system-wide setting; a test does not change it under other jobs' feet (the
    # made-up result below checks the row's report).
    args = ("--starts", "1", "--presses", "2", "--load-calls", "10", "--slice-row-us", "0")
    out = _run("benchmarks.cpu_quota", *args, timeout=420)
    assert "9b. Under a Pi-sized CPU quota" in out
    for row in (
        "start -> READY, warm cache, 25 % of one core",
        "fig 1, ours: press qualified -> INVITE, 25 %",
        "fig 2, ours: press qualified -> first prompt buffer in ALSA, 25 %",
        "fig 4, ours: far end's dialDtmf -> relay pin high, 25 %",
        "SIP engine started (pjsua2 init, transport, account) |",
        "runner executes Dial |",
        "25 % of one core per 10 ms | 8 | 10 at 50/s |",
        # the garbage collections table: the settled heap's rows and the same quota with the heap left unsettled
        "fig 1, ours: press qualified -> INVITE, 25 % of one core per 10 ms, heap not settled at READY",
        "CPU (figure 1's presses) | objects frozen at READY | collections |",
    ):
        assert row in out, row
    lines = out.splitlines()
    gc_rows = lines[next(i for i, line in enumerate(lines) if "objects frozen at READY" in line) + 1 :]
    settled = next(line for line in gc_rows if line.strip().startswith("25 % of one core per 10 ms | "))
    assert int(settled.split("|")[1].replace(",", "")) > 10_000, settled  # start-up's objects, frozen at READY
    assert "error" not in out.split("note:")[0], out[-3000:]
    # This run's cgroup only: a concurrent run's may exist meanwhile.
    removed = [line for line in out.splitlines() if line.startswith("cgroup /sys/fs/cgroup/")]
    assert removed and removed[-1].endswith(" removed"), out[-2000:]


def _press_result(label_ms: float) -> dict[str, object]:
    """A figure-1 harness result as press_stages emits it: two presses, their stamps and what followed."""
    from benchmarks.press_stages import STAGES

    visits, invites, stages = [], [], []
    for i in range(2):
        edge = 100.0 + i
        qualified = edge + 0.05
        visits.append({"edge": edge, "opened": edge + 0.5})
        invites.append(qualified + label_ms / 1000)
        row: dict[str, object] = {"invite_ms": label_ms, "cpu_to_invite_ms": 3.0}
        for n, (key, *_rest) in enumerate(STAGES):
            row[key] = (0.1 * (n + 1), 1.0 + 0.2 * n)
        stages.append(row)
    return {
        "visits": visits,
        "invites": invites,
        "first_buffers": [v["edge"] + 0.06 for v in visits],
        "dtmf_sent_at": [v["edge"] + 0.48 for v in visits],
        "stages": stages,
    }


def _table(figure: Figure, first_header: str) -> list[list[str]]:
    return next(rows for headers, rows in figure.tables if headers[0] == first_header)


def test_the_quota_figure_reads_every_part_of_a_result() -> None:
    """quota_report on a made-up result (no peers, no cgroup): every table and verdict is produced."""
    from benchmarks.cpu_quota import press_runs
    from benchmarks.quota_report import figure_from
    from benchmarks.report import console

    labels = (("no quota", 2.0), ("quota", 12.0), ("quota, 1 ms slice", 4.0), ("quota, heap unsettled", 130.0))
    press = {label: press_runs(_press_result(ms)) for label, ms in labels}
    for label, runs in press.items():
        if label != "quota, heap unsettled":  # that row runs ours alone
            runs["baseline_ms"] = [25.0, 50.0]
    gc_row = {"collections": 17, "full": 0, "longest_ms": 0.5, "longest_full_ms": 0.0, "total_ms": 4.4}
    press["quota"].update(gc=gc_row, heap_frozen=46_475)
    unsettled = {**gc_row, "full": 1, "longest_ms": 127.1, "longest_full_ms": 127.1, "total_ms": 132.2}
    press["quota, heap unsettled"].update(gc=unsettled, heap_frozen=0)
    for stage in press["quota, heap unsettled"]["stages"]:
        del stage["outbox"]  # no press of that run went through an outbox: its column has no such row
    stage = {"interpreter start (before the first import)": 0.05, "import daemon.app": 0.5}
    result = {
        "quota": 0.25,
        "period_us": 10_000,
        "ready_cold_s": 4.0,
        "ready_cold_quota_s": 13.0,
        "ready_s": {"no quota": [1.0], "quota": [4.0]},
        "import_s": {"no quota": [0.7], "quota": [3.0]},
        "stages": {"warm, no quota": [stage], "warm, quota": [stage, "start_stages exited 1"]},
        "press": press,
        "group": {
            "quota": {
                "calls": 20,
                "rate": 50,
                "sizes": {"8": {"invite_ms": [3.0], "presses": 1, "served": 1, "rang": [8], "failed": 0}},
            }
        },
        "cgroup": {"version": 1, "nr_periods": 10, "nr_throttled": 5},
        "loadavg": ["0.5", "0.5", "0.5"],
        "slice_us": 5000,
        "slice_row_us": 1000,
    }
    text = console([figure_from(result)])
    for expected in (
        "fig 1, ours: press qualified -> INVITE, 25 % of one core per 10 ms | 2 | 12.000",
        "fig 2, ours: press qualified -> first prompt buffer in ALSA, no quota | 2 | 10.000",
        "fig 4, ours: far end's dialDtmf -> relay pin high, 25 % of one core per 10 ms | 2 | 20.000",
        "import daemon.app | 0.500 | 0.500",
        "runner executes Dial",
        "| 8 | 20 at 50/s | 1 | 1 | 8-8 | 0 |",
        "(target p99 10 ms: NOT met)",
        "READY with a warm prompt cache under the quota: at most 4.0 s (target 5 s): met",
        "fig 1, ours: press qualified -> INVITE, 25 % of one core per 10 ms, CFS bandwidth slice 1 ms | 2 | 4.000",
        "kernel.sched_cfs_bandwidth_slice_us at 1000 instead of the kernel default 5000",
        "median 4.0 ms, p99 4.0 ms over 2 presses (target: met)",
        "25 % of one core per 10 ms | 46,475 | 17 | 0 | 0.0 | 0.5 | 4.4",
        "25 % of one core per 10 ms, heap not settled at READY (the daemon before) "
        "| 0 | 17 | 1 | 127.1 | 127.1 | 132.2",
        "fig 1, ours: press qualified -> INVITE, 25 % of one core per 10 ms, heap not settled at READY (the daemon "
        "before) | 2 | 130.000",
    ):
        assert expected in text, expected
    assert "fig 1, baseline: edge -> INVITE, 25 % of one core per 10 ms, heap" not in text
    # The stage table keys each column by stage: the run without an outbox row stays on its own rows.
    path = {row[0]: row for row in _table(figure_from(result), "stage of the press path (press qualified = 0)")}
    assert path["outbox thread hands it to the bridge (a panel with an outbox)"][-2:] == ["- / -", "-"]
    assert path["INVITE arrives at the relay"][-2] == "130.000 / 130.000"
    assert path["pjsua2 makeCall starts"][-2] == path["pjsua2 makeCall starts"][1]  # same made-up stamps


def test_start_stages_name_every_second_of_a_start() -> None:
    from benchmarks.start_stages import stage_seconds

    r = {
        "t_process": 10.05,
        "t_imported": 10.55,
        "t_config": 10.56,
        "t_ready": 11.5,
        "spans": {"panel": [10.6, 10.61], "sip": [10.7, 11.4]},
    }
    stages = stage_seconds(r, spawned=10.0)
    assert abs(sum(stages.values()) - 1.5) < 1e-9  # spawn to READY, nothing lost between the stamps
    assert list(stages)[:3] == [
        "interpreter start (before the first import)",
        "import daemon.app",
        "configuration loaded and checked",
    ]
    assert abs(stages["SIP engine started (pjsua2 init, transport, account)"] - 0.7) < 1e-9
