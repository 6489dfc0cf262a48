"""Fleet hosts: the hosts file schema, names from URIs, config connections and connect_all."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperconsole import config as config_mod, hosts
from hyperconsole.errors import ConfigError, ValidationError
from hyperconsole.names import ssh_destination


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return path


def test_hosts_file_defaults(tmp_path):
    path = write(tmp_path, """
hosts:
  alpha: {uri: "qemu+ssh://root@alpha.example/system"}
  here: {uri: "qemu:///system"}
  beta:
    uri: qemu+tls://beta.example/system
    nixos_dir: checkouts/beta
    target_host: admin@beta.example
    use_remote_sudo: true
""")
    alpha, here, beta = hosts.load_hosts(path, "/etc/nixos")
    assert alpha == hosts.HostSpec("alpha", "qemu+ssh://root@alpha.example/system",
                                   str(tmp_path.resolve() / "hosts" / "alpha"), "root@alpha.example")
    assert here.nixos_dir == "/etc/nixos" and not here.remote
    assert beta.nixos_dir == str(tmp_path.resolve() / "checkouts" / "beta")
    assert beta.target_host == "admin@beta.example" and beta.use_remote_sudo


@pytest.mark.parametrize("text, message", [
    ("hosts: {}", "at $.hosts: names no host"),
    ("hosts: {a: {uri: x, colour: red}}", "at $.hosts.a: unknown key 'colour'"),
    ("hosts: {a: {nixos_dir: /x}}", "at $.hosts.a: missing key 'uri'"),
    ("hosts: {'../x': {uri: 'qemu:///system'}}", "at $.hosts.../x: host name"),
    ("hosts: {a: {uri: 'qemu:///system', target_host: '-oProxyCommand=x'}}", "ssh destination"),
    ("hosts: {a: {uri: 'qemu:///system', use_remote_sudo: true}}", "needs a target_host"),
    ("- a\n- b", "at $: the top level must be a mapping"),
])
def test_hosts_file_refusals(tmp_path, text, message):
    with pytest.raises(ConfigError, match=None) as info:
        hosts.load_hosts(write(tmp_path, text), "/etc/nixos")
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "hosts.yaml"))


def test_names_from_uris(tmp_path):
    found = hosts.from_uris(["qemu+ssh://root@alpha.example/system", "qemu+ssh://alpha.other/system",
                             "qemu:///system", "qemu+ssh://root@10.0.0.5/system"], "/etc/nixos", tmp_path)
    assert [h.name for h in found] == ["alpha", "alpha-2", "local", "10.0.0.5"]
    assert [h.target_host for h in found] == ["root@alpha.example", "alpha.other", None, "root@10.0.0.5"]
    assert found[2].nixos_dir == "/etc/nixos"
    assert found[0].nixos_dir == str(tmp_path / "hosts" / "alpha")


def test_connect_all_from_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("connections: {a: 'test:///x.xml', b: 'qemu+ssh://root@b/system'}\nconnect_all: true\n")
    config = config_mod.load([path])
    assert config.connect_all
    found = hosts.from_connections(config.connections, config.nixos_dir, checkouts=tmp_path)
    assert [(h.name, h.remote) for h in found] == [("default", False), ("a", False), ("b", True)]
    # without a fleet the console has one host: the default connection
    assert config.hosts == (hosts.HostSpec("default", config.uri, config.nixos_dir),)


@pytest.mark.parametrize("dest", ["-oProxyCommand=x", "a b", "root@", "x;y", "", "a@b@c"])
def test_ssh_destination_refusals(dest):
    with pytest.raises(ValidationError):
        ssh_destination(dest)


def test_find_names_the_hosts():
    with pytest.raises(ConfigError, match="no host named 'c'.*hosts: a, b"):
        hosts.find((hosts.HostSpec("a", "x", "/"), hosts.HostSpec("b", "y", "/")), "c")
