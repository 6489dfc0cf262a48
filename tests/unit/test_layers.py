"""The layers of DESIGN.md: core imports no UI, CLI or demo; virt and nixos stay apart.

Checked twice: the import-linter contracts in pyproject.toml (static, every import statement),
and a clean interpreter that imports every core module (dynamic, what really gets loaded).
"""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE_PACKAGES = ("hyperconsole.virt", "hyperconsole.host", "hyperconsole.nixos", "hyperconsole.doctor")
CORE_MODULES = ("hyperconsole.config", "hyperconsole.profiles", "hyperconsole.errors", "hyperconsole.paths",
                "hyperconsole.names", "hyperconsole.sanitize", "hyperconsole.safefs", "hyperconsole.proc", "hyperconsole.schema")
FORBIDDEN_IN_CORE = ("textual", "rich", "argparse", "hyperconsole.cli", "hyperconsole.demo",
                     "hyperconsole.app", "hyperconsole.screens", "hyperconsole.widgets")


def core_modules() -> list[str]:
    names = list(CORE_MODULES)
    for package in CORE_PACKAGES:
        module = __import__(package, fromlist=["_"])
        names.append(package)
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
    return names


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a test dependency; ./run installs it"
    done = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "broken" not in done.stdout.lower().split("contracts:")[-1].split("kept")[0]


def test_core_loads_no_ui_cli_or_demo():
    modules = core_modules()
    assert len(modules) > 10
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {FORBIDDEN_IN_CORE!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core pulled in {out.stdout.strip()}"
