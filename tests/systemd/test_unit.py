"""The unit file: systemd-analyze verify is clean, the security score is recorded, and it agrees with the code.

systemd is not PID 1 here, so verify runs on a temporary copy whose ExecStart names an existing binary:
otherwise it (rightly) fails on /opt/intercom/.venv/bin/intercomd not being installed. verify exits 0
even for unknown keys or bad values, so the test demands an empty stderr as well.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config import DEFAULT_CONFIG_PATH, PathsConfig

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "intercom.service"
SECURITY_DOC = REPO / "docs" / "systemd-security.txt"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)")


def unit_lines() -> list[str]:
    return UNIT.read_text().splitlines()


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit_lines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture
def testable_unit(tmp_path: Path) -> Iterator[Path]:
    true = shutil.which("true")
    assert true
    copy = tmp_path / "intercom.service"
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={true}", UNIT.read_text(), flags=re.MULTILINE)
    copy.write_text(text)
    yield copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE
    env = {**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False, env=env)


@needs_analyze
def test_systemd_analyze_verify_is_clean(testable_unit: Path) -> None:
    result = analyze("verify", "--man=no", str(testable_unit))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # any "Unknown key" or "Failed to parse" is a failure


@needs_analyze
def test_verify_would_catch_a_mistake(testable_unit: Path) -> None:
    """The check above is only worth something if a typo makes noise: prove it does."""
    testable_unit.write_text(testable_unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strcit"))
    assert "protect system" in analyze("verify", "--man=no", str(testable_unit)).stderr.lower()


def exposure(unit: Path) -> float:
    result = analyze("security", "--offline=yes", "--no-pager", str(unit))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for intercom\.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout[-500:]
    return float(match.group(1))


@needs_analyze
def test_security_exposure_is_low_and_recorded(testable_unit: Path) -> None:
    score = exposure(testable_unit)
    assert score <= 2.0  # "OK" territory; the devices and network a door intercom needs keep it above 1
    recorded = re.search(r"exposure: (\d+\.\d)", SECURITY_DOC.read_text())
    assert recorded, f"{SECURITY_DOC} has no 'exposure: N.N' line"
    assert float(recorded.group(1)) == score, f"update {SECURITY_DOC}: the unit now scores {score}"


def test_unit_matches_the_code() -> None:
    s = settings()
    # The console script pyproject.toml installs, and the config path intercomd defaults to.
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "intercomd" in scripts
    assert s["ExecStart"] == [f"/opt/intercom/.venv/bin/intercomd --config {DEFAULT_CONFIG_PATH}"]
    # systemd's directories are the PathsConfig defaults.
    paths = PathsConfig()
    assert paths.state_dir == "/var/lib/" + s["StateDirectory"][0]
    assert paths.cache_dir == "/var/cache/" + s["CacheDirectory"][0]
    assert paths.runtime_dir == "/run/" + s["RuntimeDirectory"][0]
    assert str(DEFAULT_CONFIG_PATH.parent) == "/etc/" + s["ConfigurationDirectory"][0]
    # What the daemon's own code depends on.
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] == ["10"]
    assert s["RestartPreventExitStatus"] == ["78"]  # cli.EX_CONFIG: a bad config is not restarted in a loop
    assert s["SupplementaryGroups"] == ["gpio audio"]
    assert "PrivateUsers" not in s  # would unmap gpio/audio
    assert "ProcSubset" not in s  # gpiozero reads /proc/cpuinfo


def test_unit_parses_as_ini() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string("\n".join(line for line in unit_lines() if not line.startswith("#")))
    assert parser.sections() == ["Unit", "Service", "Install"]


# install.sh and uninstall.sh are run for real into a scratch root (and shellchecked) in test_install.py.
