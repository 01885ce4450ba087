"""systemd/install.sh and uninstall.sh, run for real into a scratch root (DESTDIR), twice, then undone.

The scratch root starts with the account files a fresh system has (useradd/groupadd edit them through
--prefix). install.sh then runs its real path: the venv and pip, pjsua2 built from source by
packaging/pjsua2/build.sh (from its cache: CI builds it first with `./dev.sh build-pjsua2`), the config, the unit,
`systemctl --root enable`. Only apt is skipped: it cannot install into a scratch root.

The tests of this module share one scratch root and run in file order: install twice, inspect, uninstall.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "systemd" / "install.sh"
UNINSTALL = REPO / "systemd" / "uninstall.sh"
SCRIPTS = [
    INSTALL,
    UNINSTALL,
    REPO / "packaging" / "pjsua2" / "build.sh",
    REPO / "packaging" / "arm64" / "test-arm64.sh",
]
SCRIPTS += [REPO / "dev.sh", REPO / ".ci" / "run"]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh needs root (useradd --prefix, chown)")
needs_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("useradd", "systemctl", "systemd-analyze", "swig")),
    reason="needs useradd, systemctl, systemd-analyze and swig (./dev.sh setup installs them)",
)

# A fresh system's account files (and shadow's "-" backups of them), as useradd finds them (audio exists on
# Debian; gpio only on Raspberry Pi OS), systemd's unit directory and /opt.
ACCOUNTS = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
    "etc/group": "root:x:0:\naudio:x:29:\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\n",
    "etc/gshadow": "root:*::\naudio:*::\n",
}
SEED = {**ACCOUNTS, **{f"{name}-": text for name, text in ACCOUNTS.items()}}
SEED_DIRS = ["etc/systemd/system/multi-user.target.wants", "opt"]

Tree = dict[str, tuple[str, int, str]]  # path -> (kind, mode, content hash or link target)


def snapshot(root: Path) -> Tree:
    """Every path under root with its type, permissions and content: two equal snapshots are the same tree."""
    out: Tree = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", 0, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def run_script(script: Path, root: Path) -> subprocess.CompletedProcess[str]:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pi-intercom" / "pjsua2"
    env = {
        **os.environ,
        "DESTDIR": str(root),
        # The interpreter the dev venv was made from, so the pjsua2 build cached by `./dev.sh build-pjsua2`
        # (keyed by the Python version) is the one reused.
        "PYTHON": getattr(sys, "_base_executable", sys.executable),
        "PJSUA2_CACHE": os.environ.get("PJSUA2_CACHE", str(cache)),
        "SYSTEMD_PAGER": "",
    }
    env.pop("PYTHONPATH", None)  # the installed venv must find its own pjsua2
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=1500, check=False)


@dataclass
class Installed:
    root: Path
    before: Tree
    first: Tree
    second: Tree


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("scratch-root")
    for rel, text in SEED.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel in SEED_DIRS:
        (root / rel).mkdir(parents=True, exist_ok=True)
    # Another enabled service (a fresh system has several), so the wants directory outlives our link.
    (root / SEED_DIRS[0] / "ssh.service").symlink_to("/lib/systemd/system/ssh.service")
    before = snapshot(root)
    results = []
    for _ in range(2):
        result = run_script(INSTALL, root)
        assert result.returncode == 0, result.stdout + result.stderr
        results.append(snapshot(root))
    yield Installed(root, before, results[0], results[1])


def test_scripts_pass_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    result = subprocess.run(
        ["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout


@needs_root
@needs_tools
@pytest.mark.timeout(1800)
def test_install_twice_gives_the_same_tree(installed: Installed) -> None:
    added = sorted(set(installed.second) - set(installed.first))
    removed = sorted(set(installed.first) - set(installed.second))
    changed = sorted(p for p in installed.first if p in installed.second and installed.first[p] != installed.second[p])
    assert (added, removed, changed) == ([], [], [])


@needs_root
@needs_tools
def test_install_made_user_groups_unit_and_config(installed: Installed) -> None:
    root = installed.root
    passwd = (root / "etc/passwd").read_text()
    assert "intercom:x:" in passwd and ":/var/lib/intercom:/usr/sbin/nologin" in passwd
    groups = {
        line.split(":")[0]: line.rstrip("\n").split(":")[3] for line in (root / "etc/group").read_text().splitlines()
    }
    assert "intercom" in groups["gpio"].split(",") and "intercom" in groups["audio"].split(",")
    unit = root / "etc/systemd/system/intercom.service"
    assert unit.read_bytes() == (REPO / "systemd/intercom.service").read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/intercom.service"
    assert wants.is_symlink() and os.readlink(wants) == "/etc/systemd/system/intercom.service"
    config = root / "etc/intercom/intercom.toml"
    st = config.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0
    intercom_gid = next(
        int(x.split(":")[2]) for x in (root / "etc/group").read_text().splitlines() if x.startswith("intercom:")
    )
    assert st.st_gid == intercom_gid
    assert (root / "opt/intercom/README.md").is_file()


@needs_root
@needs_tools
def test_installed_config_is_not_the_demo_and_is_refused_until_edited(installed: Installed) -> None:
    config = installed.root / "etc/intercom/intercom.toml"
    settings = tomllib.loads(config.read_text())
    assert settings["gpio"]["pin_factory"] == "auto"
    peers = [*settings["sip"]["inbound_allow"], *(r for a in settings["apartments"] for r in a["residents"])]
    assert peers and not any("127.0.0.1" in p or "localhost" in p for p in peers)
    intercomd = installed.root / "opt/intercom/.venv/bin/intercomd"
    result = subprocess.run(
        [str(intercomd), "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78, result.stdout + result.stderr
    assert "codes[0]" in result.stderr, result.stderr  # the placeholder door code is what is refused


@needs_root
@needs_tools
def test_installed_venv_imports_the_source_build_of_pjsua2(installed: Installed) -> None:
    python = installed.root / "opt/intercom/.venv/bin/python"
    probe = (
        "import pjsua2; ep = pjsua2.Endpoint(); ep.libCreate();"
        " import pjsua2_build_info as info;"
        " print('FOUND', pjsua2.__file__, ep.libVersion().full, info.MAX_CALLS); ep.libDestroy()"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    found = [line.split() for line in result.stdout.splitlines() if line.startswith("FOUND ")]
    assert len(found) == 1, result.stdout
    _, where, version, max_calls = found[0]
    assert where.startswith(str(installed.root / "opt/intercom/.venv/lib/")) and where.endswith("/pjsua2.py")
    assert version.startswith("2.15.1")
    assert max_calls == "32"  # pjsua2_build_info, installed with it: what the daemon reads
    # Compiled at install: the unit forbids writing .pyc files, and compiling pjsua2.py at every start cost 0.16 s
    # (x86) and 19 MB of resident memory (issue 18).
    assert list((Path(where).parent / "__pycache__").glob("pjsua2.cpython-*.pyc")), "pjsua2.py has no .pyc"


@needs_root
@needs_tools
def test_systemd_analyze_verify_on_the_installed_unit(installed: Installed, tmp_path: Path) -> None:
    """verify on the unit install.sh installed, its ExecStart pointed at the intercomd it installed.

    systemd-analyze --root would need a whole OS in the scratch root (sysinit.target, /bin/kill); the
    host's systemd checks the unit instead, and the one path that only exists in the scratch root is
    rewritten to where install.sh put it (and must be an executable there).
    """
    installed_unit = installed.root / "etc/systemd/system/intercom.service"
    intercomd = installed.root / "opt/intercom/.venv/bin/intercomd"
    assert intercomd.is_file() and os.access(intercomd, os.X_OK)
    text = installed_unit.read_text()
    assert "ExecStart=/opt/intercom/.venv/bin/intercomd " in text
    unit = tmp_path / "intercom.service"
    unit.write_text(text.replace("ExecStart=/opt/intercom/.venv/bin/intercomd ", f"ExecStart={intercomd} "))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


@needs_root
@needs_tools
def test_uninstall_leaves_no_trace(installed: Installed) -> None:
    """Last in this module: it removes what the tests above inspect."""
    result = run_script(UNINSTALL, installed.root)
    assert result.returncode == 0, result.stdout + result.stderr
    after = snapshot(installed.root)
    left = sorted(set(after) - set(installed.before))
    assert left == []
    assert after == installed.before
