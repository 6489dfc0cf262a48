"""Real nix-instantiate for the Nix tier: FAIL when missing in CI, skip elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

STUB_ARGS = '{ config = { }; lib = { }; pkgs = { }; options = { }; modulesPath = ""; }'


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _isolated_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


class Nix:
    """Thin wrapper over nix-instantiate returning (ok, stdout or error text)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        # No daemon and no nixbld group on test machines: keep nix from complaining about them.
        self.env = {**os.environ, "NIX_CONFIG": "build-users-group ="}

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *argv], capture_output=True, text=True, env=self.env, timeout=60)

    def parse_file(self, path: Path) -> subprocess.CompletedProcess:
        return self._run(["--parse", str(path)])

    def eval_file(self, path: Path):
        """Evaluate a fragment as NixOS would see its data: call it with stub args if a function."""
        expr = (
            f"let m = import (/. + {json.dumps(str(path.resolve()))}); in "
            f"if builtins.isFunction m then m {STUB_ARGS} else m"
        )
        done = self._run(["--eval", "--strict", "--json", "-E", expr])
        if done.returncode != 0:
            raise AssertionError(f"nix-instantiate --eval failed for {path}:\n{done.stderr}")
        return json.loads(done.stdout)

    def eval_text(self, text: str, tmp_path: Path):
        path = tmp_path / "fragment.nix"
        path.write_text(text, encoding="utf-8")
        parsed = self.parse_file(path)
        if parsed.returncode != 0:
            raise AssertionError(f"nix-instantiate --parse failed:\n{parsed.stderr}\n--- text ---\n{text}")
        return self.eval_file(path)


@pytest.fixture(scope="session")
def nix() -> Nix:
    binary = shutil.which("nix-instantiate")
    if binary is None:
        if _in_ci():
            pytest.fail("nix-instantiate is not installed, and CI must run the Nix tier")
        pytest.skip("nix-instantiate is not installed")
    return Nix(binary)
