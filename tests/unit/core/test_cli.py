"""The command line as an operator meets it: one clear line and a non-zero status on errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hyperconsole import __version__, cli


def run(*args: str, env_extra: dict | None = None, tmp_path=None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "hyperconsole", *args], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"hyperconsole {__version__}"


def test_unreachable_uri_is_one_line_and_non_zero(tmp_path):
    out = run("--connect", "test://" + str(tmp_path / "nope.xml"))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hyperconsole: cannot connect to test://")
    assert "Traceback" not in out.stderr


def test_broken_config_is_one_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("refresh: [oops\n")
    out = run("--config", str(config), "--connect", "test:///default")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0] and "not valid YAML" in lines[0]


@pytest.mark.parametrize("value", ["0", "abc", "nan", "99999"])
def test_refresh_out_of_range_is_refused(value):
    out = run("--refresh", value, "--connect", "test:///default")
    assert out.returncode == 2 and "--refresh" in out.stderr


def test_flags_override_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("refresh: 5\nnixos_dir: /srv/nixos\n")
    args = cli.build_parser().parse_args(["--config", str(config), "--refresh", "1.5", "--connect", "qemu:///session",
                                          "--nixos-dir", str(tmp_path)])
    resolved = cli.resolve(args)
    assert resolved.refresh == 1.5 and resolved.uri == "qemu:///session" and resolved.nixos_dir == str(tmp_path)


def test_demo_points_at_shipped_host_and_scratch_nixos_dir():
    resolved = cli.resolve(cli.build_parser().parse_args(["--demo"]))
    assert resolved.uri.startswith("test:///") and resolved.uri.endswith("demo-host.xml")
    assert "demo" in resolved.nixos_dir and "hyperconsole.demo.rebuild" in resolved.rebuild_command
