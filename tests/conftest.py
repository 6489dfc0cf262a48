"""Shared test settings: isolated XDG dirs so no test reads or writes the operator's files."""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(base / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(base / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache"))
    # the host-wide backup run records (root's, read by operators) stay out of the test host's /var/lib
    monkeypatch.setattr("hyperconsole.backup.runner.SHARED_DIR", base / "var-lib-backups")


def write_script(path: Path, body: str) -> Path:
    """An executable /bin/sh script (stand-ins for nixos-rebuild, revert commands, …)."""
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def script(tmp_path):
    """Write an executable shell script into tmp_path/bin and return its path."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)

    def make(name: str, body: str) -> Path:
        return write_script(bindir / name, body)

    return make


@pytest.fixture
def libvirt_calls():
    """Every libvirt-python method counted while the test runs (tests/libvirt_calls.py)."""
    from tests.libvirt_calls import LibvirtCalls

    calls = LibvirtCalls()
    with calls.patched():
        yield calls
