"""User and system configuration (YAML).

Read /etc/hyperconsole/config.yaml, then $XDG_CONFIG_HOME/hyperconsole/config.yaml on top of it.
Every problem is reported as one line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hyperconsole import paths
from hyperconsole.errors import ConfigError

DEFAULT_URI = "qemu:///system"
DEFAULT_NIXOS_DIR = "/etc/nixos"
DEFAULT_REVERT_COMMAND = "/nix/var/nix/profiles/system/bin/switch-to-configuration test"


@dataclass(frozen=True)
class Config:
    """Settings after merging files and command-line flags."""

    connections: dict[str, str] = field(default_factory=lambda: {"default": DEFAULT_URI})
    default_connection: str = "default"
    refresh: float = 2.0
    keymap: dict[str, str] = field(default_factory=dict)
    nixos_dir: str = DEFAULT_NIXOS_DIR
    rebuild_command: str = "nixos-rebuild"
    revert_command: str = DEFAULT_REVERT_COMMAND
    confirm_timeout: int = 120
    # The running system's link and the system profile (the demo has its own).
    current_system: str = "/run/current-system"
    system_profile: str = "/nix/var/nix/profiles/system"
    sources: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return self.connections.get(self.default_connection, DEFAULT_URI)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


def default_files() -> list[Path]:
    return [paths.SYSTEM_CONFIG_DIR / "config.yaml", paths.user_config_dir() / "config.yaml"]


def _check_refresh(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: refresh must be a number of seconds")
    if not 0.2 <= float(value) <= 3600:
        raise ConfigError(f"{where}: refresh must be between 0.2 and 3600 seconds, not {value}")
    return float(value)


def _check_str_map(value: Any, where: str, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{where}: {key} must be a mapping of names to strings")
    return dict(value)


def _merge(config: Config, data: dict[str, Any], where: str) -> Config:
    known = {
        "connections", "default_connection", "refresh", "keymap", "nixos_dir",
        "rebuild_command", "revert_command", "confirm_timeout",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}", hint="known keys: " + ", ".join(sorted(known)))
    changes: dict[str, Any] = {}
    if "connections" in data:
        changes["connections"] = {**config.connections, **_check_str_map(data["connections"], where, "connections")}
    if "keymap" in data:
        changes["keymap"] = {**config.keymap, **_check_str_map(data["keymap"], where, "keymap")}
    if "refresh" in data:
        changes["refresh"] = _check_refresh(data["refresh"], where)
    if "confirm_timeout" in data:
        value = data["confirm_timeout"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 86400:
            raise ConfigError(f"{where}: confirm_timeout must be whole seconds from 0 to 86400")
        changes["confirm_timeout"] = value
    for key in ("default_connection", "nixos_dir", "rebuild_command", "revert_command"):
        if key in data:
            if not isinstance(data[key], str) or not data[key].strip():
                raise ConfigError(f"{where}: {key} must be a non-empty string")
            changes[key] = data[key]
    merged = config.replace(**changes)
    if merged.default_connection not in merged.connections:
        raise ConfigError(f"{where}: default_connection {merged.default_connection!r} is not in connections")
    return merged


def load(files: list[Path] | None = None) -> Config:
    """Merge the config files that exist; raise ConfigError with one line on any problem."""
    config = Config()
    used: list[str] = []
    for path in default_files() if files is None else files:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.__class__.__name__})") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}:{line} is not valid YAML") from exc
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        config = _merge(config, data, str(path))
        used.append(str(path))
    return config.replace(sources=tuple(used))
