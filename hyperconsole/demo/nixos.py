"""The scratch NixOS directory and rebuild/revert commands used by `--demo`.

The demo "system" lives under `<demo state>/system`, laid out like /nix/var/nix/profiles
(`system-N-link` symlinks, `system` pointing at the current one), so `list_generations` reads
it with the same code as a real host.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from hyperconsole import paths, safefs
from hyperconsole.config import DEFAULT_REVERT_COMMAND, Config
from hyperconsole.nixos.store import FragmentStore

DEMO_CONFIGURATION = """\
# Demo NixOS configuration created by `hyperconsole --demo`: a scratch directory, not a real host.
{ config, lib, pkgs, ... }:
{
  imports = [ ./hyperconsole ];
  networking.hostName = "demo";
  system.stateVersion = "24.05";
}
"""


def demo_system_dir() -> Path:
    return paths.demo_dir() / "system"


def demo_profiles_dir(system_dir: Path | None = None) -> Path:
    return (system_dir or demo_system_dir()) / "profiles"


def demo_booted_link(system_dir: Path | None = None) -> Path:
    return (system_dir or demo_system_dir()) / "booted-system"


def demo_commands(nixos_dir: Path, system_dir: Path | None = None) -> tuple[str, str]:
    """(rebuild command, revert command) running the demo entry point with this interpreter."""
    base = [sys.executable, "-m", "hyperconsole.demo.rebuild", "--state", str(system_dir or demo_system_dir()), str(nixos_dir)]
    return shlex.join(base), shlex.join(base + ["revert"])


def prepare_demo_nixos(nixos_dir: Path, system_dir: Path | None = None) -> Path:
    """Create (once) a minimal configuration.nix, the fragments dir and generation 1."""
    from hyperconsole.demo.rebuild import DemoSystem

    nixos_dir = Path(nixos_dir)
    safefs.ensure_dir(nixos_dir, parents=True)
    configuration = nixos_dir / "configuration.nix"
    if not configuration.exists():
        safefs.atomic_write(configuration, DEMO_CONFIGURATION.encode())
    FragmentStore(nixos_dir).ensure_index()
    system = DemoSystem(system_dir or demo_system_dir(), nixos_dir)
    if not system.generations():
        system.new_generation(activate=True)
        system.set_booted_to_current()
    return nixos_dir


def demo_config(config: Config, system_dir: Path | None = None) -> Config:
    """The config for a --demo run: scratch dir prepared, demo commands unless set explicitly."""
    nixos_dir = prepare_demo_nixos(Path(config.nixos_dir), system_dir)
    rebuild, revert = demo_commands(nixos_dir, system_dir)
    system_dir = system_dir or demo_system_dir()
    changes = {"current_system": str(system_dir / "current-system"),
               "system_profile": str(demo_profiles_dir(system_dir) / "system")}
    if config.rebuild_command == "nixos-rebuild":
        changes["rebuild_command"] = rebuild
    if config.revert_command == DEFAULT_REVERT_COMMAND:
        changes["revert_command"] = revert
    return config.replace(**changes)
