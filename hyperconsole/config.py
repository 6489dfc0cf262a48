"""User and system configuration (YAML).

Read /etc/hyperconsole/config.yaml, then $XDG_CONFIG_HOME/hyperconsole/config.yaml on top of it.
Every problem is reported as one line naming the file and the place: `<file>: at $.refresh: …`.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable

import msgspec
from msgspec import UNSET, Meta, UnsetType

from hyperconsole import paths, schema
from hyperconsole.hosts import HostSpec

DEFAULT_URI = "qemu:///system"
DEFAULT_NIXOS_DIR = "/etc/nixos"
DEFAULT_REVERT_COMMAND = "/nix/var/nix/profiles/system/bin/switch-to-configuration test"


@dataclass(frozen=True)
class Config:
    """Settings after merging files and command-line flags."""

    connections: dict[str, str] = field(default_factory=lambda: {"default": DEFAULT_URI})
    default_connection: str = "default"
    connect_all: bool = False  # open every connection as one fleet
    # The fleet (--hosts FILE, several --connect, connect_all); empty: one host, `uri` + `nixos_dir`.
    fleet: tuple[HostSpec, ...] = ()
    refresh: float = 2.0
    keymap: dict[str, str] = field(default_factory=dict)
    nixos_dir: str = DEFAULT_NIXOS_DIR
    rebuild_command: str = "nixos-rebuild"
    # Host changes pushed to another machine (`--host NAME` of a remote host): its ssh
    # destination for nixos-rebuild --target-host, sudo there, and how ssh is run.
    target_host: str | None = None
    host_name: str | None = None  # the fleet host acted on (`--host`); names its flake configuration
    use_remote_sudo: bool = False
    ssh_command: str = "ssh"
    revert_command: str = DEFAULT_REVERT_COMMAND
    confirm_timeout: int = 120
    # The running system's link and the system profile (the demo has its own).
    current_system: str = "/run/current-system"
    system_profile: str = "/nix/var/nix/profiles/system"
    sources: tuple[str, ...] = ()
    keymap_files: dict[str, str] = field(default_factory=dict)  # binding id -> file that set it

    @property
    def uri(self) -> str:
        return self.connections.get(self.default_connection, DEFAULT_URI)

    @property
    def hosts(self) -> tuple[HostSpec, ...]:
        """Every host this console acts on: the fleet, or the one configured connection."""
        return self.fleet or (HostSpec(self.default_connection, self.uri, self.nixos_dir),)

    def for_host(self, host: HostSpec) -> "Config":
        """This config acting on one host of the fleet: its NixOS checkout, its target."""
        return self.replace(nixos_dir=host.nixos_dir, target_host=host.target_host, host_name=host.name,
                            use_remote_sudo=host.use_remote_sudo,
                            connections={**self.connections, host.name: host.uri}, default_connection=host.name)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


_Text = Annotated[str, Meta(min_length=1, pattern=r"\S")]


def default_files() -> list[Path]:
    return [paths.SYSTEM_CONFIG_DIR / "config.yaml", paths.user_config_dir() / "config.yaml"]


class _File(msgspec.Struct, forbid_unknown_fields=True):
    """One config file as written; absent keys leave the earlier value."""

    connections: dict[str, _Text] | UnsetType = UNSET
    default_connection: _Text | UnsetType = UNSET
    connect_all: bool | UnsetType = UNSET
    refresh: Annotated[float, Meta(ge=0.2, le=3600)] | UnsetType = UNSET
    keymap: dict[str, _Text] | UnsetType = UNSET
    nixos_dir: _Text | UnsetType = UNSET
    rebuild_command: _Text | UnsetType = UNSET
    ssh_command: _Text | UnsetType = UNSET
    revert_command: _Text | UnsetType = UNSET
    confirm_timeout: Annotated[int, Meta(ge=0, le=86400)] | UnsetType = UNSET


def _checked(data: Any, where: str) -> _File:
    # msgspec names a bad dict value `$.keymap[...]`; look the key up so the path is exact.
    for section in ("connections", "keymap"):
        table = data.get(section) if isinstance(data, dict) else None
        if isinstance(table, dict):
            for key, value in table.items():
                if not isinstance(key, str) or not isinstance(value, str) or not value.strip():
                    raise schema.problem(where, f"$.{section}.{key}", "must be a non-empty string")
    return schema.convert(data, _File, where)


def _merge(config: Config, data: dict, where: str) -> Config:
    file = _checked(data, where)
    changes: dict[str, Any] = {
        f: getattr(file, f) for f in file.__struct_fields__
        if getattr(file, f) is not UNSET and f not in ("connections", "keymap")
    }
    if file.connections is not UNSET:
        changes["connections"] = {**config.connections, **file.connections}
    if file.keymap is not UNSET:
        changes["keymap"] = {**config.keymap, **file.keymap}
        changes["keymap_files"] = {**config.keymap_files, **{key: where for key in file.keymap}}
    merged = config.replace(**changes)
    if merged.default_connection not in merged.connections:
        raise schema.problem(where, "$.default_connection",
                             f"{merged.default_connection!r} is not in connections")
    return merged


def check_keymap(config: Config, known: Iterable[str]) -> None:
    """Every id the keymap rebinds must be a binding the app has (the app passes its ids in:
    they live in the UI, which this module may not import)."""
    known = set(known)
    for binding_id in config.keymap:
        if binding_id not in known:
            close = difflib.get_close_matches(binding_id, known, n=1)
            raise schema.problem(config.keymap_files.get(binding_id, "config"), f"$.keymap.{binding_id}",
                                 "unknown binding id",
                                 hint=f"did you mean {close[0]}?" if close else "? lists every binding id")


def load(files: list[Path] | None = None) -> Config:
    """Merge the config files that exist; raise ConfigError with one line on any problem."""
    config = Config()
    used: list[str] = []
    for path in default_files() if files is None else files:
        if not path.exists():
            continue
        data = schema.load_mapping(path, empty_ok=True)
        if data is None:
            continue
        config = _merge(config, data, str(path))
        used.append(str(path))
    return config.replace(sources=tuple(used))
