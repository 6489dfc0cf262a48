"""Fixtures for the setup wizard's core tests: a scratch NixOS dir shaped like a fresh install,
a real public key, and host facts built from real interface records."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hyperconsole import profiles
from hyperconsole.host.interfaces import InterfaceInfo, Uplink
from hyperconsole.setup import answers as A
from hyperconsole.setup.guard import Session
from hyperconsole.setup.validate import HostFacts, timezones
from tests.unit.nixos.conftest import _isolated_xdg, recording_rebuild, wait_for_fixture  # noqa: F401


@pytest.fixture
def nixos_dir(tmp_path) -> Path:
    """/etc/nixos right after nixos-install: configuration.nix and hardware-configuration.nix."""
    path = tmp_path / "etc-nixos"
    path.mkdir()
    (path / "configuration.nix").write_text(
        "{ config, pkgs, ... }:\n{\n  imports = [ ./hardware-configuration.nix ];\n"
        "  boot.loader.systemd-boot.enable = true;\n  system.stateVersion = \"25.05\";\n}\n")
    (path / "hardware-configuration.nix").write_text(
        "{ config, lib, pkgs, modulesPath, ... }:\n{\n  networking.useDHCP = lib.mkDefault true;\n}\n")
    return path


@pytest.fixture(scope="session")
def public_key(tmp_path_factory) -> str:
    where = tmp_path_factory.mktemp("keys") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(where)],
                   check=True, timeout=30)
    return (where.with_suffix(".pub")).read_text().strip()


def nic(name: str, carrier: bool | None = True, kind: str = "physical", speed: int | None = 1000) -> InterfaceInfo:
    return InterfaceInfo(name, 2, kind, None, "up" if carrier else "down", carrier, speed, 1500,
                         "52:54:00:00:00:01", (), None)


def facts(**changes) -> HostFacts:
    base = dict(interfaces=(nic("lo", kind="loopback"), nic("eno1"), nic("eno2", carrier=False)),
                uplink=Uplink(frozenset({"eno1"})), timezones=timezones(), catalog=profiles.load_catalog(),
                volume_groups=("vg0",), zfs_datasets=None, nested_capable=True, cpu_vendor="intel",
                session=Session(None))
    base.update(changes)
    return HostFacts(**base)


def good_answers(key: str, **steps) -> A.Answers:
    values = dict(
        identity=A.Identity("hv1", "Europe/Berlin", A.Admin("alice", [key])),
        network=A.Network(uplink="eno1", mode="static", address="192.0.2.10/24", gateway="192.0.2.1",
                          dns=["192.0.2.53"]),
        security=A.Security("management", ["strict-ssh"]),
    )
    values.update(steps)
    return A.Answers(**values)
