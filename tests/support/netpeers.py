"""SIP peers inside a netlab namespace: kamailio and sipp on the PBX's address, the engine in the panel's.

The same programs as :mod:`tests.support.peers`, started with ``ip netns exec`` and listening on the
namespace's address instead of 127.0.0.1 (each namespace has its own loopback and ports).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from daemon.simulation.phone import PeerProcess
from tests.support.child_env import child_env
from tests.support.netlab import PBX_IP, NetLab
from tests.support.peers import Kamailio, Sipp

__all__ = ["EngineProcess", "NsKamailio", "ns_sipp_argv"]


def _udp_bound_in(ns: str, port: int) -> bool:
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "ss", "-Hlun", f"sport = :{port}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return bool(result.stdout.strip())


class NsKamailio(Kamailio):
    """:class:`Kamailio` in namespace ``ns``, listening on ``address``."""

    def __init__(self, workdir: Path, users: dict[str, str], *, ns: str, address: str = PBX_IP, **kw: Any) -> None:
        super().__init__(workdir, users, **kw)
        self.ns = ns
        self.address = address

    @property
    def registrar(self) -> str:
        return f"sip:{self.address}:{self.port}"

    def uri(self, user: str) -> str:
        return f"sip:{user}@{self.address}:{self.port}"

    def _config(self) -> str:
        text = super()._config().replace("127.0.0.1", self.address)
        # Which address each binding names, in its log: what an address change is about.
        save = 'if (!save("location"))'
        text = text.replace(save, f'xlog("L_INFO", "REGISTER from $si:$sp contact $ct\\n");\n        {save}')
        found = 'if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }'
        assert found in text
        return text.replace(found, f'{found}\n        xlog("L_INFO", "$rm for $rU to $ru branches $bR\\n");')

    def _spawn(self, argv: list[str]) -> None:
        super()._spawn(["ip", "netns", "exec", self.ns, *argv])

    def start(self) -> Self:
        run = self.workdir / "run"
        run.mkdir(exist_ok=True)
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(self._config())
        argv = ["kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(run), "-P", str(run / "k.pid"), "-m", "32"]
        self._spawn([*argv, "-M", "8", "-w", str(run)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"kamailio exited:\n{self.log_text()[-3000:]}")
            if _udp_bound_in(self.ns, self.port):
                time.sleep(0.2)  # bound, and its workers forked
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"kamailio did not bind its port:\n{self.log_text()[-3000:]}")


def ns_sipp_argv(sipp: Sipp, ns: str, address: str, extra: list[str]) -> list[str]:
    """``sipp``'s command line, run in ``ns`` and bound to ``address``."""
    argv = sipp._argv(extra)
    argv[argv.index("127.0.0.1")] = address
    return ["ip", "netns", "exec", ns, *argv]


class EngineProcess(PeerProcess):
    """The SIP engine (tests/support/sip_harness.py) in the panel's namespace (or ``ns``); its events as dicts."""

    name = "engine"

    def __init__(
        self,
        workdir: Path,
        lab: NetLab,
        config: dict[str, Any],
        module: str = "tests.support.sip_harness",
        ns: str | None = None,
    ) -> None:
        super().__init__(Path(workdir))
        self.lab = lab
        self.ns = ns or lab.panel
        self.ready_timeout = 15.0  # the whole daemon (benchmarks/net_visit_panel.py) synthesizes its prompts first
        self.config = config
        self.module = module  # another harness speaking the same lines (benchmarks/pjsua_default_panel.py)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        argv = [sys.executable, "-m", self.module, json.dumps(self.config)]
        root = Path(__file__).resolve().parents[2]
        with open(self.log_path, "ab") as log:
            self._proc = self.lab.popen(
                self.ns,
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=root,
                env=child_env(),
            )
        # One reader for the process's life: its stdout is read with blocking calls.
        threading.Thread(target=self._read, name="engine-stdout", daemon=True).start()
        self.wait_for(lambda m: "ready" in m, self.ready_timeout)
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            if raw.startswith(b"{"):  # pjlib prints a few lines of its own at start (the baseline's)
                self.lines.put(json.loads(raw))

    def send(self, timeout: float = 10, **command: Any) -> dict[str, Any]:
        """Send a command; return its answer (the next line that is not an event) within ``timeout`` s."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(command).encode() + b"\n")
        self._proc.stdin.flush()
        return self.wait_for(lambda m: "event" not in m, timeout)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first message (not yet seen) that ``match`` accepts; events passed over are kept in ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"engine: nothing matched within {timeout} s; log:\n{self.log_text()[-3000:]}")
            try:
                message = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(message)
            if match(message):
                return message

    def event(self, kind: str, timeout: float, **fields: Any) -> dict[str, Any]:
        return self.wait_for(
            lambda m: m.get("event") == kind and all(m.get(k) == v for k, v in fields.items()), timeout
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.write(b'{"cmd": "quit"}\n')
                proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(timeout=5)
