"""`hyperconsole fleet status` and `vm migrate` over test-driver hosts, and `--host` on host changes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hyperconsole.cli import main, parse_args, resolve
from tests.fixtures import build_host_xml, domain_xml, network_xml, pool_xml, test_uri, volume_xml

IMAGES = "/var/lib/libvirt/images"


def host(domains=(), memory_mib=64 * 1024, networks=()):
    return build_host_xml(domains=list(domains), memory_mib=memory_mib, networks=list(networks),
                          pools=[pool_xml("default", IMAGES, volumes=[volume_xml("db.qcow2", path=f"{IMAGES}/db.qcow2")])])


@pytest.fixture
def hosts_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    a = test_uri(tmp_path, host([domain_xml("web", vcpus=12, memory_mib=2048, nics=["default"]),
                                 domain_xml("db", state="shutoff", disks=[f"{IMAGES}/db.qcow2"]),
                                 domain_xml("w2", vcpus=8)], networks=[network_xml("default", mode=None)]), "a.xml")
    b = test_uri(tmp_path, host(memory_mib=4096), "b.xml")
    path = tmp_path / "hosts.yaml"
    path.write_text(f"hosts:\n  a: {{uri: '{a}'}}\n  b: {{uri: '{b}'}}\n"
                    f"  gone: {{uri: 'test://{tmp_path}/missing.xml'}}\n"
                    f"  far: {{uri: '{b}', target_host: root@far.example, nixos_dir: far}}\n")
    return path


def test_fleet_status_text(hosts_file, capsys):
    assert main(["--hosts", str(hosts_file), "fleet", "status"]) == 1  # one host is unreachable
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["HOST", "STATE", "CPU"]
    row_a = next(line for line in out if line.startswith("a "))
    assert "20/16" in row_a and "2 running, 1 shut off" in row_a
    assert "  warning: a is overcommitted: vCPUs 20/16 (1.2x)" in out
    gone = next(line for line in out if line.startswith("gone"))
    assert "unreachable" in gone and "no such file" in gone


def test_fleet_status_json(hosts_file, capsys):
    main(["--hosts", str(hosts_file), "fleet", "status", "--json"])
    data = {h["name"]: h for h in json.loads(capsys.readouterr().out)}
    assert data["a"]["vms"] == {"running": 2, "shut off": 1}
    assert data["a"]["vcpus_running"] == 20 and data["a"]["overcommit"] == ["vCPUs 20/16 (1.2x)"]
    assert data["b"]["state"] == "connected" and data["b"]["vms"] == {}
    assert data["gone"]["state"] == "unreachable"


def test_vm_migrate_refuses_with_one_line(hosts_file, capsys):
    assert main(["--hosts", str(hosts_file), "vm", "migrate", "web", "--to", "b"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: the target host has no network 'default' \(NIC [0-9a-f:]{17}\)\n", err), err


def test_vm_migrate_offline_moves_the_definition(hosts_file, capsys, tmp_path):
    # b has the pool with db.qcow2 at the same path: shared storage, nothing to copy.
    assert main(["--hosts", str(hosts_file), "vm", "migrate", "db", "--to", "b", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "migrating db offline from a to b, storage shared" in out and "db is now defined on b" in out


def test_vm_migrate_names_unknown_hosts(hosts_file, capsys):
    assert main(["--hosts", str(hosts_file), "vm", "migrate", "web", "--to", "nowhere"]) == 1
    assert "no host named 'nowhere'" in capsys.readouterr().err


def test_host_flag_points_host_changes_at_the_checkout(hosts_file, tmp_path):
    config = resolve(parse_args(["--hosts", str(hosts_file), "rebuild", "test", "--host", "far"]))
    assert config.nixos_dir == str(tmp_path / "far") and config.target_host == "root@far.example"
    assert config.host_name == "far" and [h.name for h in config.fleet] == ["a", "b", "gone", "far"]
    from hyperconsole.nixos.rebuild import RebuildRunner

    argv = RebuildRunner.from_config(config, use_systemd=False).argv("test")
    assert argv[2:] == ["nixos-rebuild", "--target-host", "root@far.example", "test"]
    local = resolve(parse_args(["--hosts", str(hosts_file), "net", "show", "--host", "a"]))
    assert local.target_host is None


def test_several_connect_make_a_fleet(tmp_path):
    config = resolve(parse_args(["--connect", "qemu:///system", "--connect", "qemu+ssh://root@b.example/system",
                                 "fleet", "status"]))
    assert [(h.name, h.target_host) for h in config.fleet] == [("local", None), ("b", "root@b.example")]
    assert config.uri == "qemu:///system"


def test_a_remote_hosts_network_change_is_always_on_trial(hosts_file, tmp_path, capsys):
    (tmp_path / "far").mkdir()
    code = main(["--hosts", str(hosts_file), "net", "firewall", "eth0", "--allow-tcp", "8443", "--host", "far",
                 "--confirm-timeout", "0", "--yes", "--rebuild-cmd", "true"])
    err = capsys.readouterr().err
    assert code == 1 and "far is another machine" in err and "a confirm timeout of 0 is refused" in err
    assert not (tmp_path / "far" / "hyperconsole" / "network.nix").exists()  # nothing written


@pytest.mark.parametrize("argv, message", [
    (["net", "show"], "net show reads this machine's interfaces, not far's"),
    (["generations"], "the generations of far are on that machine"),
    (["rollback", "3"], "the generations of far are on that machine"),
])
def test_local_only_commands_refuse_a_remote_host(hosts_file, capsys, argv, message):
    assert main(["--hosts", str(hosts_file), *argv, "--host", "far"]) == 1
    assert message in capsys.readouterr().err


def test_profile_apply_and_confirm_on_a_remote_host(hosts_file, tmp_path, monkeypatch, script, capsys):
    """The CLI end to end with stand-ins that record their argv: the trial is armed on the target,
    activated with --target-host, and confirm stops the target's timers before the switch."""
    repo = str(Path(__file__).resolve().parents[3])
    monkeypatch.setenv("PYTHONPATH", repo)
    log = tmp_path / "calls.log"
    recorder = f"""python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$(basename "$0")" "$@" >> {log}\n"""
    rebuild = script("rebuild", recorder)
    ssh = script("ssh", recorder)
    config = tmp_path / "config.yaml"
    config.write_text(f"ssh_command: {ssh}\nrebuild_command: {rebuild}\n")
    (tmp_path / "far").mkdir()
    common = ["--config", str(config), "--hosts", str(hosts_file)]
    assert main([*common, "profile", "apply", "management", "--host", "far", "--yes", "--confirm-timeout", "60"]) == 0
    assert main([*common, "confirm", "--host", "far"]) == 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [(c[0], c[-1] if c[0] == "rebuild" else c[-1].split()[0]) for c in calls]
    assert steps == [("ssh", "systemd-run"), ("rebuild", "test"), ("ssh", "systemd-run"),
                     ("ssh", "systemctl"), ("rebuild", "switch")]
    assert calls[1][-3:] == ["--target-host", "root@far.example", "test"]
    assert (tmp_path / "far" / "hyperconsole" / "security-profile.nix").exists()  # the checkout holds the change
    assert "confirmed" in capsys.readouterr().out
