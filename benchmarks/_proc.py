"""The machine and the process: what the report prints next to every number, and child processes."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["child_env", "emit", "footprint", "machine", "run_child", "smaps_rollup"]

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    """x86 has "model name"; a Raspberry Pi has "Model" (the board) and "Hardware" (the SoC)."""
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip().lower(), value.strip())
        for key in ("model name", "model", "hardware"):
            if fields.get(key) and not fields[key].isdigit():
                return fields[key]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _pjsua2_version() -> str:
    try:
        import pjsua2_build_info  # type: ignore[import-not-found]  # written beside the source build's pjsua2.py
    except ImportError:
        return f"{_version('pjsua2-python')} (PyPI wheel)" if _version("pjsua2-python") != "not installed" else "none"
    return f"{pjsua2_build_info.PJPROJECT_VERSION} (source build {pjsua2_build_info.BUILD_KEY})"


def machine() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "pjsua2": _pjsua2_version(),
        "anyio": _version("anyio"),
        "gpiozero": _version("gpiozero"),
    }


# Calls between RSS samples in figure 5's runs: the series separates pool warm-up from steady growth.
SAMPLE_EVERY = 100


def footprint() -> dict[str, int]:
    """Threads (kernel's view, so pjsua's native threads count too), open fds and RSS of this process."""
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "threads": int(fields["Threads"].strip()),
        "py_threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")),
        "rss_kb": int(fields["VmRSS"].split()[0]),
    }


def smaps_rollup(pid: int) -> dict[str, int]:
    """VmRSS, PSS and USS (private clean + dirty) of ``pid`` in kB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        fields[key] = int(value.split()[0])
    status = Path(f"/proc/{pid}/status").read_text()
    vmrss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return {
        "rss_kb": vmrss,
        "pss_kb": fields["Pss"],
        "uss_kb": fields["Private_Clean"] + fields["Private_Dirty"],
        "anon_kb": fields.get("Anonymous", 0),
    }


def child_env(**extra: str) -> dict[str, str]:
    """This environment with the repo first on PYTHONPATH and what was there after it: `./dev.sh bench` puts the
    pjsua2 source build on PYTHONPATH, and a child given the repo alone ran on the wheel, or found no pjsua2."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_child(module: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> args`` and return the JSON object on its last stdout line.

    A child that crashes (pjsua2 aborts the process on some misuse) becomes ``{"error": ...}`` so the
    report can say what happened instead of the whole run failing.
    """
    # faulthandler: a native crash in a run (pjsua2, PortAudio) prints the Python stacks into its error.
    cmd = [sys.executable, "-X", "faulthandler", "-m", f"benchmarks.{module}", *args]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"{module}: timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"{module} exited {proc.returncode}: " + " | ".join(tail)}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def emit(result: dict[str, Any]) -> None:
    """A child's one line of output. Flushed, so the parent sees it even if pjsua2 aborts at exit."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
