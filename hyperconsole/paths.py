"""Where hyperconsole keeps things: XDG config/state dirs and the system config dir."""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_CONFIG_DIR = Path("/etc/hyperconsole")


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def user_config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "hyperconsole"


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / "hyperconsole"


def demo_dir() -> Path:
    """Scratch area for --demo: a NixOS dir and the demo's rebuild logs."""
    return state_dir() / "demo"

