"""Integration (tier 3): a real remote connection, `qemu+ssh://`, to this machine.

The test starts its own sshd on a loopback port (its own host key, its own authorized_keys with a
test key; nothing of the machine's ssh setup is used or changed beyond /run/sshd, which sshd needs
and which is removed again if the test made it) and reaches the integration libvirtd through it:
libvirt runs ssh, the remote side runs virt-ssh-helper, which talks to the daemon's socket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

libvirt = pytest.importorskip("libvirt")

from hyperconsole.hosts import HostSpec  # noqa: E402
from hyperconsole.nixos.remote import TargetHost  # noqa: E402
from hyperconsole.virt import inventory  # noqa: E402
from hyperconsole.virt.connection import ConnectionManager  # noqa: E402
from hyperconsole.virt.fleet import Fleet, HostState, summarize_all  # noqa: E402
from tests.integration.conftest import _unavailable  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path_factory):
    if os.geteuid() != 0:
        _unavailable("needs root (logs in as root)")
    for tool in (SSHD, shutil.which("ssh"), shutil.which("ssh-keygen"), shutil.which("virt-ssh-helper")):
        if not tool or not os.path.exists(tool):
            _unavailable(f"missing {tool or 'ssh/ssh-keygen/virt-ssh-helper'} (apt: openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    d.chmod(0o700)
    for key in ("host_key", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True, timeout=30)
    (d / "authorized_keys").write_text((d / "id.pub").read_text())
    port = _free_port()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text()}")
    # libvirt runs `ssh` (or the URI's command=): this one checks the host key against the test's
    # known_hosts and writes nothing to the machine's own.
    (d / "ssh").write_text(f"#!/bin/sh\nexec ssh -F none -o UserKnownHostsFile={d / 'known_hosts'} "
                           "-o StrictHostKeyChecking=yes \"$@\"\n")
    (d / "ssh").chmod(0o755)
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n")
    made_run_dir = not os.path.isdir("/run/sshd")
    if made_run_dir:
        os.makedirs("/run/sshd", mode=0o755)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdin=subprocess.DEVNULL,
                            stdout=open(d / "sshd.log", "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                _unavailable(f"sshd did not start: {(d / 'sshd.log').read_text(errors='replace')[-500:]}")
            time.sleep(0.05)
    try:
        yield port, d
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if made_run_dir:
            shutil.rmtree("/run/sshd", ignore_errors=True)


def ssh_uri(port: int, d: Path) -> str:
    # The remote side runs virt-ssh-helper, which opens the daemon's default socket (a socket=
    # parameter would make it use netcat instead).
    return f"qemu+ssh://root@127.0.0.1:{port}/system?keyfile={d / 'id'}&command={d / 'ssh'}"


def test_qemu_ssh_lists_the_daemons_vms(libvirtd, sshd, tiny_vm):
    port, d = sshd
    name = tiny_vm(start=True)
    manager = ConnectionManager(ssh_uri(port, d))
    try:
        manager.connect()
        assert name in inventory.domain_names(manager)
        assert manager.conn.getURI().startswith("qemu+ssh://")
        assert manager.conn.lookupByName(name).isActive()
    finally:
        manager.close()


def test_a_fleet_of_the_local_daemon_and_the_same_daemon_over_ssh(libvirtd, sshd, tiny_vm):
    port, d = sshd
    name = tiny_vm(start=True)
    fleet = Fleet([HostSpec("here", libvirtd.uri, "/etc/nixos"), HostSpec("remote", ssh_uri(port, d), "/x", "root@127.0.0.1"),
                   HostSpec("refused", ssh_uri(_free_port(), d), "/y", "root@127.0.0.1")])
    try:
        statuses = {s.name: s for s in fleet.open_all(deadline=30, retry=False)}
        assert statuses["here"].state is HostState.CONNECTED and statuses["remote"].state is HostState.CONNECTED
        assert statuses["refused"].state is HostState.UNREACHABLE and statuses["refused"].reason
        summaries = {s.name: s for s in summarize_all(fleet, deadline=30, cpu_interval=0.2)}
        assert summaries["remote"].vms.get("running", 0) >= 1
        assert summaries["remote"].vms == summaries["here"].vms  # the same daemon, seen two ways
        assert summaries["remote"].cpu_percent is not None and summaries["remote"].free_memory_kib
    finally:
        fleet.close()
    assert name


def test_target_host_commands_survive_a_real_ssh_and_remote_shell(sshd):
    """The argv the revert timer and the revert are sent with arrives word for word."""
    port, d = sshd
    target = TargetHost("root@127.0.0.1", ssh_command=f"{d / 'ssh'} -p {port} -i {d / 'id'}")
    words = ["a b", "$HOME", "it's", "x;y", "*"]
    done = subprocess.run(target.over_ssh(["printf", "%s\\n", *words]), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == words
