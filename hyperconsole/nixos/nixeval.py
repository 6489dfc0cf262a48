"""Checking Nix files with the real `nix-instantiate`, without nixpkgs: parse a file, or evaluate a
NixOS module called with stub arguments. Used by `nixos status --add-import` (before it replaces
configuration.nix) and by the demo's stand-in rebuild (on every fragment)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

TIMEOUT = 120.0
STUB_ARGS = '{ config = { }; lib = { }; pkgs = { }; options = { }; modulesPath = "/"; }'


def nix_instantiate() -> str | None:
    return shutil.which("nix-instantiate")


def path_expr(path: Path) -> str:
    """`path` as a Nix path expression; a path literal cannot hold spaces or most punctuation,
    a quoted string cast always works."""
    return "(/. + " + json.dumps(str(path)) + ")"


def module_expr(path: Path) -> str:
    """The module in `path`, called with stub arguments when it is a function."""
    return f"let m = import {path_expr(path)}; in if builtins.isFunction m then m {STUB_ARGS} else m"


def run(nix: str, *argv: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """nix-instantiate ARGV; past `timeout` a failed result saying so (never an exception). No
    daemon and no builds: the build-users group is cleared so nix does not ask for one."""
    env = dict(os.environ)
    env.setdefault("NIX_CONFIG", "build-users-group =")
    try:
        return subprocess.run([nix, *argv], capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess([nix, *argv], 1, "", f"error: nix-instantiate took longer than {timeout:g}s")
