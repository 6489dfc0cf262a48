"""Fixtures for the host-networking tests: isolated dirs, stand-in rebuild commands, the recorded
host (a bond, a VLAN, a bridge) and a monkeypatched interface reader for the CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from hyperconsole.host import interfaces

REPO = Path(__file__).resolve().parents[3]
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    # The CLI and the revert timer read config and state from XDG dirs; never the real home.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # A developer running the tests over SSH must not change what "uplink" means in a test.
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    # Timers and rebuilds run as plain processes here, never as transient systemd units.
    monkeypatch.setattr("hyperconsole.nixos.rebuild.under_systemd", lambda: False)
    monkeypatch.setattr("hyperconsole.nixos.revert.under_systemd", lambda: False)


def recorded_links() -> list[dict]:
    return json.loads((DATA / "ip-link-vlan-bond.json").read_text())


def recorded_addrs() -> list[dict]:
    return json.loads((DATA / "ip-addr-vlan-bond.json").read_text())


@pytest.fixture
def recorded_host() -> list[interfaces.InterfaceInfo]:
    return interfaces.parse_interfaces(recorded_links(), recorded_addrs())


@pytest.fixture
def nixos_dir(tmp_path) -> Path:
    path = tmp_path / "etc-nixos"
    path.mkdir()
    (path / "configuration.nix").write_text("{ config, pkgs, ... }:\n{\n  imports = [ ./hyperconsole ];\n}\n")
    return path




@pytest.fixture
def rebuild_cmds(script, tmp_path):
    """A nixos-rebuild stand-in logging its action to calls.log, and a revert stand-in logging
    "revert"; returns (common CLI args, calls.log path)."""
    calls = tmp_path / "calls.log"
    rebuild = script("fake-rebuild", f"""\
        for last; do :; done
        echo "building the system configuration..."
        echo "$last" >> {calls}
        """)
    revert = script("fake-revert", f"echo revert >> {calls}\n")
    return ["--rebuild-cmd", str(rebuild), "--revert-cmd", str(revert)], calls


@pytest.fixture
def fake_ip(script, monkeypatch):
    """Put a stand-in `ip` (a /bin/sh body) first on PATH, for an ip that fails, hangs or
    answers with recorded JSON."""

    def install(body: str) -> Path:
        path = script("ip", body)
        monkeypatch.setenv("PATH", f"{path.parent}{os.pathsep}{os.environ['PATH']}")
        return path

    return install


def process_gone(pid: int, wait: float = 5.0) -> bool:
    """True when pid no longer runs (exited, or a zombie nobody reaped yet) within `wait`
    seconds: a killed process closes its files a moment before the kernel marks it exited."""
    deadline = time.monotonic() + wait
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
