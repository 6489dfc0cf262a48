"""Doctor tests: a Context over a per-test config, and fake commands on a PATH of their own (for
recorded output where this machine lacks the real program, and for commands that hang)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hyperconsole import doctor
from hyperconsole.config import Config


def write_command(bindir: Path, name: str, script: str) -> Path:
    """An executable `name` in bindir running the shell `script`."""
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def bindir(tmp_path) -> Path:
    return tmp_path / "bin"


@pytest.fixture
def make_ctx(tmp_path, bindir):
    contexts = []

    def make(config: Config | None = None, *, manager=None, fake_first: bool = True, **attrs) -> doctor.Context:
        path = os.environ.get("PATH", os.defpath)
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{path}" if fake_first else path}
        ctx = doctor.Context(config or Config(nixos_dir=str(tmp_path / "nixos"),
                                              current_system=str(tmp_path / "current-system"),
                                              system_profile=str(tmp_path / "profiles" / "system")),
                             manager=manager, env=env)
        for key, value in attrs.items():
            setattr(ctx, key, value)
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


def run_one(ctx: doctor.Context, check_id: str) -> doctor.Result:
    (result,) = doctor.run_checks(doctor.select(doctor.CHECKS, [check_id]), ctx)
    return result
