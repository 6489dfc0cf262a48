"""The hosts of a fleet: name, libvirt URI, the local NixOS checkout of each, and where its host
changes are pushed (`nixos-rebuild --target-host`).

A fleet comes from one of: `--hosts FILE` (schema-checked YAML, below), several `--connect URI`,
or every entry of the config's `connections` when it says `connect_all: true`. Without any of
them the console has one host, the configured connection with the configured NixOS dir.

    hosts:
      alpha:
        uri: qemu+ssh://root@alpha.example/system
        nixos_dir: hosts/alpha          # default hosts/<name>, relative to this file
        target_host: root@alpha.example # default: user@host of an ssh URI; none for a local URI
        use_remote_sudo: false

A host whose URI names no remote machine is this machine: its NixOS dir is the configured one
and its changes are applied locally. Every other host's changes are built from its checkout
here and activated on it over ssh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import UNSET, Meta, UnsetType

from hyperconsole import names, paths, schema
from hyperconsole.errors import ConfigError, ValidationError

HOSTS_SUBDIR = "hosts"
_Text = Annotated[str, Meta(min_length=1, pattern=r"\S")]


@dataclass(frozen=True)
class HostSpec:
    name: str
    uri: str
    nixos_dir: str
    target_host: str | None = None  # ssh destination of nixos-rebuild --target-host; None: this machine
    use_remote_sudo: bool = False

    @property
    def remote(self) -> bool:
        return self.target_host is not None


def uri_host(uri: str) -> tuple[str | None, str | None]:
    """(user, host) a libvirt URI names; host None for a local one (`qemu:///system`, `test:///…`)."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        return None, None
    if not host:
        return None, None
    return parts.username, host


def target_for(uri: str) -> str | None:
    """The ssh destination of a URI's machine, or None when the URI is local."""
    user, host = uri_host(uri)
    if host is None:
        return None
    return names.ssh_destination(f"{user}@{host}" if user else host)


def default_name(uri: str, taken: set[str]) -> str:
    """A host name for a bare `--connect URI`: the machine's name (its first label), else 'local';
    `-2`, `-3` … when taken."""
    _user, host = uri_host(uri)
    base = (host or "local").split(".")[0] if host and not host[0].isdigit() else (host or "local")
    base = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in base).strip("-.") or "host"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return names.host_name(name)


def spec_for(name: str, uri: str, local_nixos_dir: str, checkouts: Path) -> HostSpec:
    """A host from a name and a URI alone: local URIs use this machine's NixOS dir, remote ones
    the checkout `<checkouts>/hosts/<name>` and the URI's user@host as target."""
    names.host_name(name)
    target = target_for(uri)
    nixos_dir = local_nixos_dir if target is None else str(checkouts / HOSTS_SUBDIR / name)
    return HostSpec(name, uri, nixos_dir, target)


def from_uris(uris: list[str], local_nixos_dir: str, checkouts: Path | None = None) -> tuple[HostSpec, ...]:
    taken: set[str] = set()
    hosts = []
    for uri in uris:
        name = default_name(uri, taken)
        taken.add(name)
        hosts.append(spec_for(name, uri, local_nixos_dir, checkouts or paths.user_config_dir()))
    return tuple(hosts)


def from_connections(connections: dict[str, str], local_nixos_dir: str, where: str = "config",
                     checkouts: Path | None = None) -> tuple[HostSpec, ...]:
    hosts = []
    for name, uri in connections.items():
        try:
            hosts.append(spec_for(name, uri, local_nixos_dir, checkouts or paths.user_config_dir()))
        except ValidationError as exc:
            raise schema.problem(where, f"$.connections.{name}", exc.message, hint=exc.hint) from None
    return tuple(hosts)


class _Entry(msgspec.Struct, forbid_unknown_fields=True):
    uri: _Text
    nixos_dir: _Text | UnsetType = UNSET
    target_host: str | None | UnsetType = UNSET
    use_remote_sudo: bool = False


class _File(msgspec.Struct, forbid_unknown_fields=True):
    hosts: dict[str, Any]


def parse_hosts(data: Any, where: str, base: Path, local_nixos_dir: str) -> tuple[HostSpec, ...]:
    """The hosts of a hosts file's data; ConfigError naming the file and the place otherwise."""
    file = schema.convert(data, _File, where)
    if not file.hosts:
        raise schema.problem(where, "$.hosts", "names no host")
    hosts = []
    for name, data_entry in file.hosts.items():
        at = f"$.hosts.{name}"
        # One entry at a time, so an error names the host (msgspec would say `$.hosts[...]`).
        entry = schema.convert(data_entry, _Entry, where, at)
        try:
            names.host_name(name)
            target = target_for(entry.uri) if entry.target_host is UNSET else entry.target_host
            if target is not None:
                names.ssh_destination(target)
        except ValidationError as exc:
            raise schema.problem(where, at, exc.message, hint=exc.hint) from None
        if entry.nixos_dir is not UNSET:
            nixos_dir = str((base / entry.nixos_dir).resolve())
        elif target is None:
            nixos_dir = local_nixos_dir
        else:
            nixos_dir = str((base / HOSTS_SUBDIR / name).resolve())
        if entry.use_remote_sudo and target is None:
            raise schema.problem(where, f"{at}.use_remote_sudo", "needs a target_host (the host is local)")
        hosts.append(HostSpec(name, entry.uri, nixos_dir, target, entry.use_remote_sudo))
    return tuple(hosts)


def load_hosts(path: Path, local_nixos_dir: str) -> tuple[HostSpec, ...]:
    data = schema.load_mapping(path)
    return parse_hosts(data, str(path), path.resolve().parent, local_nixos_dir)


def find(hosts: tuple[HostSpec, ...], name: str) -> HostSpec:
    for host in hosts:
        if host.name == name:
            return host
    known = ", ".join(h.name for h in hosts) or "none"
    raise ConfigError(f"no host named {name!r}", hint=f"hosts: {known}")
