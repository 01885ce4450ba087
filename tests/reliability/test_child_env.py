"""Children the tests start load the pjsua2 the suite runs on: a daemon started without the caller's PYTHONPATH
ran on the wheel while the suite claimed the source build (on x86, silently), and found no pjsua2 at all on arm64."""

from __future__ import annotations

import subprocess
import sys

import pjsua2
import pytest

from tests.support.child_env import REPO, child_env


def test_a_child_process_loads_the_same_pjsua2_as_the_suite() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import pjsua2; print(pjsua2.__file__)"],
        env=child_env(),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == pjsua2.__file__


def test_the_repo_comes_first_and_the_callers_path_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/opt/pjsua2-build/python")
    assert child_env()["PYTHONPATH"].split(":") == [str(REPO), "/opt/pjsua2-build/python"]
