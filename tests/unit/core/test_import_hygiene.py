"""Core modules must import without Textual or Rich (DESIGN.md layers), checked in a clean process."""

from __future__ import annotations

import pkgutil
import subprocess
import sys


CORE_PACKAGES = ("hyperconsole.virt", "hyperconsole.host", "hyperconsole.nixos")
CORE_MODULES = ("hyperconsole.config", "hyperconsole.profiles", "hyperconsole.errors", "hyperconsole.paths")


def core_modules() -> list[str]:
    names = list(CORE_MODULES)
    for package in CORE_PACKAGES:
        module = __import__(package, fromlist=["_"])
        names.append(package)
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
    return names


def test_core_imports_no_textual_or_rich():
    modules = core_modules()
    assert len(modules) > 10
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core pulled in {out.stdout.strip()}"
