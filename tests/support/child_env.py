"""The environment for a child Python process the tests start (the daemon, a peer engine, the impairment relay)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO", "child_env"]

REPO = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """This environment with the repo first on PYTHONPATH, then whatever was there: `./dev.sh test` puts the
    pjsua2 source build on PYTHONPATH, and a child that lost it ran on the wheel instead (on x86, silently) or
    found no pjsua2 at all (arm64, which has no wheel)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
