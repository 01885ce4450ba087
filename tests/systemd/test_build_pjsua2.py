"""packaging/pjsua2/build.sh: the source tarball's checksum is enforced, a second run is a no-op, and the
build has what config_site.h promises (more than pjproject's default 4 calls at once).

Tests that need the build build it once if the cache is cold (minutes: CI builds it first with
`./dev.sh build-pjsua2`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "pjsua2" / "build.sh"
KNOWN = REPO / "packaging" / "pjsua2" / "known-sha256.txt"
VENDORED_SHA = "f70f6f253c4a327e0436a6ee5db09e830dcde634bf052ac9d5e33004b5c9dab0"

needs_swig = pytest.mark.skipif(shutil.which("swig") is None, reason="swig not installed (./dev.sh setup)")


def build(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD), *args],
        env={**os.environ, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_known_checksums_name_both_archives() -> None:
    lines = KNOWN.read_text().splitlines()
    sums = [line.split()[0] for line in lines]
    assert VENDORED_SHA in sums  # ../shared/vendor/pjproject-2.15.1.tar.gz.sha256
    assert len(sums) == 2 and all(len(s) == 64 for s in sums)  # and GitHub's archive of the same tag


def test_a_tarball_with_an_unknown_checksum_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "pjproject-2.15.1.tar.gz"
    fake.write_bytes(b"not pjproject")
    result = build({"PJPROJECT_TARBALL": str(fake), "PJSUA2_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 1
    assert "unknown SHA-256" in result.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_pjproject_sha256_must_match_the_tarball(tmp_path: Path) -> None:
    fake = tmp_path / "pjproject-2.15.1.tar.gz"
    fake.write_bytes(b"not pjproject")
    env = {"PJPROJECT_TARBALL": str(fake), "PJPROJECT_SHA256": VENDORED_SHA, "PJSUA2_CACHE": str(tmp_path / "c")}
    result = build(env)
    assert result.returncode == 1
    assert "PJPROJECT_SHA256 says" in result.stderr


@needs_swig
@pytest.mark.timeout(1800)
def test_a_second_run_is_a_no_op() -> None:
    first = build({}, timeout=1700)  # the developer's cache (CI: already built by ./dev.sh build-pjsua2)
    assert first.returncode == 0, first.stderr
    out = Path(first.stdout.splitlines()[-1])
    files = sorted(out.iterdir())
    assert [f.name for f in files if f.name.startswith("_pjsua2")] and (out / "pjsua2.py").is_file()
    # Compiled with the build: importing the SWIG module without its .pyc cost 19 MB resident (issue 18).
    assert list((out / "__pycache__").glob("pjsua2.cpython-*.pyc")), "the build left pjsua2.py without bytecode"
    before = {f: (f.stat().st_mtime_ns, f.stat().st_size) for f in out.parent.rglob("*")}
    started = time.monotonic()
    second = build({})
    elapsed = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == str(out)
    assert "cached:" in second.stderr
    assert elapsed < 15, elapsed  # hashes and a lookup, no compile
    after = {f: (f.stat().st_mtime_ns, f.stat().st_size) for f in out.parent.rglob("*")}
    assert after == before  # nothing in the cached build was touched


# Places N calls at once (to a port nobody answers: each stays in CALLING) and prints how many pjsua took.
# In a child process: a pjsua2 library per test, with its own threads, gone with the process.
PLACE_CALLS = """
import sys
import pjsua2 as pj
n = int(sys.argv[1])
ep = pj.Endpoint()
ep.libCreate()
cfg = pj.EpConfig()
cfg.logConfig.level = cfg.logConfig.consoleLevel = 0
cfg.uaConfig.maxCalls = n
ep.libInit(cfg)
tc = pj.TransportConfig()
tc.port = 0
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
ep.libStart()
ep.audDevManager().setNullDev()
acc = pj.Account()
ac = pj.AccountConfig()
ac.idUri = "sip:panel@127.0.0.1"
acc.create(ac)
calls = []
for i in range(n):
    call = pj.Call(acc)
    try:
        call.makeCall(f"sip:leg{i}@127.0.0.1:9", pj.CallOpParam(True))
    except pj.Error as e:
        print("REFUSED", e.status)
        break
    calls.append(call)
print("PLACED", len(calls))
ep.hangupAllCalls()
ep.libHandleEvents(50)
del calls, call
ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)
"""


def place_calls(pythonpath: str | None, n: int) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run(
        [sys.executable, "-c", PLACE_CALLS, str(n)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [line for line in result.stdout.splitlines() if line.startswith(("PLACED", "REFUSED"))]


@needs_swig
@pytest.mark.timeout(1800)
def test_the_source_build_places_32_calls_at_once() -> None:
    """config_site.h's PJSUA_MAX_CALLS: pjproject's default (4) would refuse the 5th leg of a ring group."""
    built = build({}, timeout=1700)
    assert built.returncode == 0, built.stderr
    out = built.stdout.splitlines()[-1]
    assert place_calls(out, 32) == ["PLACED 32"]
    info = (Path(out) / "pjsua2_build_info.py").read_text()
    assert "MAX_CALLS = 32  #" in info and "SOURCE_BUILD = True" in info  # what the daemon may read
    # Our patches to pjproject were applied, with config_site.h's settings for the Speex one
    patches = (
        '"speex-early-residual.patch","speex-echo-suppress.patch","swig-jb-discard-algo.patch",'
        '"delaybuf-drift-only.patch","jbuf-drift-only.patch",'
    )
    assert f"PATCHES = ({patches})" in info
    assert "SPEEX_AEC_EARLY_HOLD_MS = 1000  #" in info and "SPEEX_AEC_REARM_MS = 1000  #" in info
    assert "SPEEX_AEC_EARLY_GAIN = 0.25  #" in info
    assert "SPEEX_AEC_ECHO_SUPPRESS_DB = 60  #" in info and "SPEEX_AEC_ECHO_SUPPRESS_ACTIVE_DB = 15  #" in info
    # the drift-only buffers (tests/systemd/test_drift_only_buffers.py runs them)
    for buffer, surplus in (("DELAY_BUF", 40), ("JBUF", 60)):
        assert f"{buffer}_DRIFT_WINDOW_MS = 10000  #" in info and f"{buffer}_DRIFT_SURPLUS_MS = {surplus}  #" in info
        assert f"{buffer}_DRIFT_KEEP_MS = 30  #" in info
    assert "DELAY_BUF_DRIFT_SHED_PPM = 2000  #" in info
    # swig-jb-discard-algo.patch: the jitter buffer's discard algorithm is an int the daemon can set ([audio]
    # jitter_discard); without it the binding exports an opaque pointer and assigning 1 raises TypeError
    assert read_jb_discard(out) == "2 1 1"


READ_JB_DISCARD = """
import pjsua2 as pj
config = pj.MediaConfig()
default = config.jbDiscardAlgo  # pjsua's default: progressive (2)
config.jbDiscardAlgo = pj.PJMEDIA_JB_DISCARD_STATIC
print(default, config.jbDiscardAlgo, pj.PJMEDIA_JB_DISCARD_STATIC)
"""


def read_jb_discard(pythonpath: str) -> str:
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": pythonpath}
    result = subprocess.run(
        [sys.executable, "-c", READ_JB_DISCARD], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()
