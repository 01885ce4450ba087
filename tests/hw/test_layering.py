"""hw/ is a layer of its own, and one bridge is the only way into the loop: checked on the source, not by review."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
    return names


def test_hw_modules_import_nothing_from_daemon() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "daemon")
        for path in sorted((ROOT / "hw").rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(offenders) >= 10  # the walk really saw hw/


def test_importing_all_of_hw_loads_no_daemon_module() -> None:
    modules = sorted(p.stem for p in (ROOT / "hw").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('hw.' + m)\n"
        "print(sorted(m for m in sys.modules if m == 'daemon' or m.startswith('daemon.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


def test_from_thread_only_in_the_bridge() -> None:
    users = sorted(
        str(path.relative_to(ROOT))
        for top in ("daemon", "hw")
        for path in (ROOT / top).rglob("*.py")
        if "from_thread" in path.read_text(encoding="utf-8")
    )
    assert users == ["daemon/bridge.py"]
