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


def test_a_keymap_naming_an_unknown_binding_is_one_line_before_the_console_starts(tmp_path):
    from tests.fixtures import build_host_xml, domain_xml, test_uri

    config = tmp_path / "config.yaml"
    config.write_text("keymap: {vms.start: g, vms.strat: S}\n")
    uri = test_uri(tmp_path, build_host_xml(domains=[domain_xml("alpha", "shutoff")]))
    out = run("--config", str(config), "--connect", uri, "--nixos-dir", str(tmp_path))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line == f"hyperconsole: {config}: at $.keymap.vms.strat: unknown binding id (did you mean vms.start?)"


def test_a_profile_that_says_read_only_opens_the_console_read_only(tmp_path, monkeypatch):
    """`console: {libvirt: read-only}` in the applied profile: the connection is opened with
    openReadOnly, so libvirt itself refuses every change, and the reason is shown."""
    import libvirt

    from hyperconsole import profiles
    from hyperconsole.nixos.store import FragmentStore
    from tests.fixtures import build_host_xml, domain_xml, test_uri

    shipped = tmp_path / "profiles"
    shipped.mkdir()
    (shipped / "locked.yaml").write_text(
        "name: locked\nsummary: VMs are watched, not changed\nconsole: {libvirt: read-only}\n"
        "nixos:\n  services:\n    openssh:\n      enable: true\n")
    (shipped / "open.yaml").write_text("name: open\nsummary: s\nnixos:\n  services:\n    openssh:\n      enable: true\n")
    monkeypatch.setenv("HYPERCONSOLE_PROFILES_DIR", str(shipped))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    nixos = tmp_path / "nixos"
    nixos.mkdir()
    store = FragmentStore(nixos)
    uri = test_uri(tmp_path, build_host_xml(domains=[domain_xml("alpha", "shutoff")]))
    config = cli.resolve(cli.build_parser().parse_args(["--connect", uri, "--nixos-dir", str(nixos)]))
    args = cli.parse_args(["--connect", uri])

    assert cli.open_manager(args, config).readonly is False  # no profile applied yet
    store.commit(profiles.prepare_profile_change(store, profiles.load_catalog(), "open"))
    assert cli.open_manager(args, config).readonly is False
    store.commit(profiles.prepare_profile_change(store, profiles.load_catalog(), "locked"))
    manager = cli.open_manager(args, config)
    manager.connect()
    try:
        assert manager.readonly and manager.readonly_reason == "security profile locked"
        with pytest.raises(libvirt.libvirtError):
            manager.conn.lookupByName("alpha").create()
    finally:
        manager.close()

    # A fragment that cannot be read (here a planted link in its place) still lets the console
    # start, read-only, saying why.
    fragment = store.path(profiles.FRAGMENT_NAME)
    fragment.unlink()
    fragment.symlink_to(tmp_path / "elsewhere.nix")
    manager = cli.open_manager(args, config)
    assert manager.readonly and manager.readonly_reason.startswith("the applied security profile cannot be read")
    assert "symbolic link" in manager.readonly_reason


@pytest.mark.parametrize("argv", [["--readonly"], ["tui", "--readonly"], ["--readonly", "tui"],
                                  ["--demo", "--readonly"], ["tui", "--demo", "--readonly"]])
def test_readonly_is_accepted_wherever_the_console_starts(argv):
    # `./run demo --readonly` is `hyperconsole --demo --readonly`.
    args = cli.parse_args(argv)
    assert args.readonly is True and args.func is cli.run_tui


def test_tui_subcommand_takes_the_console_flags_through_main(tmp_path):
    out = run("tui", "--readonly", "--refresh", "3", "--connect", "test://" + str(tmp_path / "nope.xml"))
    # Parsed (not a usage error, status 2): it got as far as opening the connection.
    assert out.returncode == 1 and out.stderr.startswith("hyperconsole: cannot connect to test://"), out.stderr
