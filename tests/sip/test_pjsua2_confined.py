"""pjsua2 lives behind the one SIP owner thread: only its modules (daemon/sip/_pj_*.py) import the binding,
and the engine loads them only when it starts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMPORT = re.compile(r"^\s*(import pjsua2|from pjsua2 )", re.M)


def test_only_the_owner_modules_import_pjsua2() -> None:
    importers = sorted(
        str(p.relative_to(ROOT))
        for d in ("daemon", "hw")
        for p in (ROOT / d).rglob("*.py")
        if IMPORT.search(p.read_text(encoding="utf-8"))
    )
    assert importers, "no module imports pjsua2: the pattern is stale"
    assert all(re.fullmatch(r"daemon/sip/_pj_\w+\.py", p) for p in importers), importers


def test_importing_the_daemon_does_not_load_pjsua2() -> None:
    code = "import sys, daemon.app, daemon.sip; print('pjsua2' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False", done.stderr
