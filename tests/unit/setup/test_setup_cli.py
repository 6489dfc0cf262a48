"""`hyperconsole setup --answers FILE [--dry-run]` as a process: one line per bad answer and exit 1;
a dry run prints every fragment and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyperconsole.host.interfaces import read_host

EXAMPLE = Path(__file__).parents[3] / "docs" / "setup-answers.example.yaml"


def _this_hosts_nic() -> str:
    nics = [i for i in read_host().interfaces if i.kind in ("physical", "bond") and i.carrier]
    if not nics:
        pytest.skip("this machine has no NIC with link to answer with")
    return nics[0].name


def _run(*argv: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyperconsole", "setup", *argv], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def test_dry_run_prints_the_fragments_and_writes_nothing(nixos_dir, tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text(EXAMPLE.read_text().replace("uplink: eno1", f"uplink: {_this_hosts_nic()}"))
    before = sorted(p.name for p in nixos_dir.iterdir())
    done = _run("--answers", str(answers), "--dry-run", "--nixos-dir", str(nixos_dir),
                "--secrets-dir", str(tmp_path / "secrets"), env={"SSH_CONNECTION": ""})
    assert done.returncode == 0, done.stderr
    for name in ("identity", "network", "storage", "virtualisation", "security-profile"):
        assert f"# --- hyperconsole/{name}.nix" in done.stdout
    assert "  services.openssh.settings.PermitRootLogin" in done.stdout
    assert done.stdout.rstrip().endswith("dry run: nothing was written")
    assert sorted(p.name for p in nixos_dir.iterdir()) == before and not (tmp_path / "secrets").exists()


def test_bad_answers_one_line_each_and_exit_1(nixos_dir, tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text("identity: {hostname: hv1., timezone: UTC, admin: {name: alice}}\n"
                       "network: {uplink: lo, mode: static, address: 10.0.0.5/33}\n")
    done = _run("--answers", str(answers), "--nixos-dir", str(nixos_dir), "--yes")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: answers.yaml: at $.identity.hostname: hostname 'hv1.' has a dot at the start, at the end or twice "
        "in a row (e.g. hv1 or hv1.example.com)",
        "error: answers.yaml: at $.network.uplink: uplink may not be 'lo': loopback carries no bridge, VLAN or address",
        "error: answers.yaml: at $.network.address: '10.0.0.5/33' is not an address with prefix, e.g. 192.168.100.1/24",
    ]
    assert not (nixos_dir / "hyperconsole").exists()


def test_broken_answers_file_is_one_line(tmp_path, nixos_dir):
    answers = tmp_path / "answers.yaml"
    answers.write_text("identity: [\n")
    done = _run("--answers", str(answers), "--nixos-dir", str(nixos_dir))
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1 and "is not valid YAML" in done.stderr
