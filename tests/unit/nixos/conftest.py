"""Fixtures for the NixOS core tests: isolated dirs and real stand-in executables."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _isolated_xdg(tmp_path, monkeypatch):
    # The timer and CLI subprocesses inherit these, so nothing touches the real home.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("HYPERCONSOLE_PROFILES_DIR", raising=False)


@pytest.fixture
def nixos_dir(tmp_path) -> Path:
    path = tmp_path / "etc-nixos"
    path.mkdir()
    (path / "configuration.nix").write_text("{ config, pkgs, ... }:\n{\n  imports = [ ./hardware-configuration.nix ];\n}\n")
    return path




@pytest.fixture
def recording_rebuild(script, tmp_path):
    """A nixos-rebuild stand-in that appends its action to calls.log; exits 1 when the action
    is listed in fail-actions (one per line)."""
    calls = tmp_path / "calls.log"
    failing = tmp_path / "fail-actions"
    failing.write_text("")
    path = script(
        "fake-rebuild",
        f"""\
        for last; do :; done
        echo "building the system configuration..."
        echo "$last" >> {calls}
        if grep -qx "$last" {failing}; then
          echo "error: activation of $last failed"
          exit 1
        fi
        echo "done: $last"
        """,
    )
    return path, calls, failing


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


PYTHON = sys.executable


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    """Poll a predicate until true or timeout (tests of timers and processes)."""
    return wait_for
