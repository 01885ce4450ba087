"""A small network of the test suite's own: the panel and the PBX in network namespaces, joined by an impaired link.

    panel ns (10.77.0.2/24) -- veth -- wan ns: impair_bridge.py (user-space L2 bridge) -- veth -- pbx ns (10.77.0.3/24)

Traffic never leaves these namespaces (nothing is routed out; the wan namespace has no address at all). Tests
run programs in a namespace with :meth:`NetLab.popen`, change the link with :meth:`impair` / :meth:`outage`, and
change the panel's address with :meth:`set_panel_address`. Needs root (or CAP_NET_ADMIN) and iproute2; where
namespaces cannot be made, :func:`netlab_available` says why and the tests skip with that reason.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.child_env import child_env

__all__ = ["PANEL_IP", "PBX_IP", "NetLab", "netlab", "netlab_available"]

PANEL_IP = "10.77.0.2"
PBX_IP = "10.77.0.3"
PREFIX = 24
_ROOT = Path(__file__).resolve().parents[2]
_serial = itertools.count()


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=check)


def netlab_available() -> str | None:
    """None when namespaces can be made here, else the reason."""
    if shutil.which("ip") is None or shutil.which("ethtool") is None:
        return "iproute2 (ip) and ethtool are needed (Debian packages iproute2, ethtool)"
    name = f"icprobe{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10, check=False)
    if result.returncode != 0:
        return f"network namespaces are not permitted here: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10, check=False)
    return None


@dataclass
class NetLab:
    panel: str  # namespace names
    pbx: str
    wan: str
    panel_if: str
    bridge: subprocess.Popen[str]
    panel_ip: str = PANEL_IP
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(self, ns: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside namespace ``ns``; it is killed when the lab closes, if still running."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)  # type: ignore[call-overload]
        self._children.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )

    def _control(self, line: str) -> str:
        assert self.bridge.stdin is not None and self.bridge.stdout is not None
        self.bridge.stdin.write(line + "\n")
        self.bridge.stdin.flush()
        answer = self.bridge.stdout.readline().strip()
        if answer.startswith("error") or not answer:
            raise RuntimeError(f"impair bridge: {line!r}: {answer or 'no answer (bridge died?)'}")
        return answer

    def impair(
        self,
        *,
        loss: float = 0.0,
        jitter_ms: float = 0.0,
        delay_ms: float = 0.0,
        reorder: float = 0.0,
        seed: int | None = None,
    ) -> None:
        words = f"set loss={loss} jitter_ms={jitter_ms} delay_ms={delay_ms} reorder={reorder}"
        self._control(words + (f" seed={seed}" if seed is not None else ""))

    def outage(self, on: bool) -> None:
        self._control(f"outage {'on' if on else 'off'}")

    def stats(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = json.loads(self._control("stats"))
        return result

    def set_panel_address(self, address: str) -> None:
        """The panel's DHCP lease changed: the old address goes, the new one comes (same subnet)."""
        _ip("addr", "flush", "dev", self.panel_if, ns=self.panel)
        _ip("addr", "add", f"{address}/{PREFIX}", "dev", self.panel_if, ns=self.panel)
        self.panel_ip = address

    def panel_link(self, up: bool) -> None:
        _ip("link", "set", self.panel_if, "up" if up else "down", ns=self.panel)

    def close(self) -> None:
        for proc in [*self._children]:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        if self.bridge.poll() is None:
            with suppress(RuntimeError, OSError):
                self._control("quit")
            try:
                self.bridge.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.bridge.wait(timeout=3)
        for stream in (self.bridge.stdin, self.bridge.stdout):
            if stream is not None:
                stream.close()
        for ns in (self.panel, self.pbx, self.wan):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


@contextmanager
def netlab(seed: int = 1) -> Iterator[NetLab]:
    tag = f"ic{os.getpid() % 100000}x{next(_serial)}"
    panel, pbx, wan = f"{tag}p", f"{tag}b", f"{tag}w"
    made: list[str] = []
    try:
        for ns in (panel, pbx, wan):
            _ip("netns", "add", ns)
            made.append(ns)
        for side, ns, address in (("p", panel, PANEL_IP), ("b", pbx, PBX_IP)):
            inner, outer = f"{tag}{side}", f"{tag}{side}w"
            _ip("link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer, "netns", wan)
            _ip("addr", "add", f"{address}/{PREFIX}", "dev", inner, ns=ns)
            for dev, where in ((inner, ns), (outer, wan)):
                _ip("link", "set", dev, "up", ns=where)
            _ip("link", "set", outer, "promisc", "on", ns=wan)
            # No offloads: the bridge forwards frames as the packet socket sees them, so checksums must be filled in
            # (veth leaves them to "hardware") and a 64 KiB segmentation super-frame would not fit the other side.
            for dev, where in ((inner, ns), (outer, wan)):
                offloads = ["tx", "off", "tso", "off", "gso", "off", "gro", "off"]
                subprocess.run(
                    ["ip", "netns", "exec", where, "ethtool", "-K", dev, *offloads],
                    capture_output=True,
                    timeout=10,
                    check=True,
                )
            _ip("link", "set", "lo", "up", ns=ns)
        bridge = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                wan,
                sys.executable,
                "-m",
                "tests.support.impair_bridge",
                f"{tag}pw",
                f"{tag}bw",
                str(seed),
            ],
            cwd=_ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert bridge.stdout is not None
        if bridge.stdout.readline().strip() != "ready":
            bridge.kill()
            raise RuntimeError("impair bridge did not start")
    except BaseException:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)
        raise
    lab = NetLab(panel, pbx, wan, f"{tag}p", bridge)
    try:
        yield lab
    finally:
        lab.close()
