"""The virt modules written for operations import no Textual or Rich (DESIGN.md layer rule)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["hyperconsole.virt.domxml", "hyperconsole.virt.ops", "hyperconsole.virt.inventory"])
def test_no_ui_imports(module):
    code = (f"import sys, {module}; bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
