"""Command line: the TUI by default, plus non-interactive subcommands for every host change."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hyperconsole import __version__, config as config_mod, paths
from hyperconsole.config import Config
from hyperconsole.errors import HyperconsoleError

log = logging.getLogger("hyperconsole")


def _refresh(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or not 0.2 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0.2 and 3600 seconds")
    return value


def _add_common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # In subcommands the defaults are suppressed so `hyperconsole --demo profile list`
    # and `hyperconsole profile list --demo` mean the same thing.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--nixos-dir", metavar="DIR", default=default,
                        help="the host's NixOS configuration directory (default /etc/nixos)")
    parser.add_argument("--rebuild-cmd", metavar="CMD", default=default,
                        help="rebuild command; the action is passed as its last argument")
    parser.add_argument("--revert-cmd", metavar="CMD", default=default,
                        help="command that re-activates the previous system when a change is not confirmed")
    parser.add_argument("--demo", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="use the shipped test-driver host and a scratch NixOS directory")
    parser.add_argument("--hosts", metavar="FILE", type=Path, default=default,
                        help="a fleet: a YAML file naming each host's URI, NixOS checkout and target host")
    parser.add_argument("--host", metavar="NAME", default=default,
                        help="the fleet host a host change acts on (its NixOS checkout, pushed with --target-host)")


def _add_tui(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # Accepted before or after `tui`: `hyperconsole --readonly`, `hyperconsole tui --readonly`.
    def default(value):
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--connect", "-c", metavar="URI", action="append", default=default(None),
                        help="libvirt URI (default qemu:///system); repeat it to open several hosts")
    parser.add_argument("--readonly", action="store_true", default=default(False),
                        help="open read-only; hide every mutating action")
    parser.add_argument("--refresh", type=_refresh, metavar="SECONDS", default=default(None),
                        help="refresh interval (default 2)")
    parser.add_argument("--config", metavar="FILE", action="append", type=Path, default=default(None),
                        help="config file to read instead of the system and user ones (repeatable)")
    parser.add_argument("--demo-hosts", type=int, metavar="N", default=default(1),
                        help="with --demo: deal the demo's VMs out over N test-driver hosts (a fleet)")


def build_parser(subcommands: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperconsole",
        description="Keyboard-driven console for a NixOS virtualisation host.",
        add_help=subcommands,
    )
    parser.add_argument("--version", action="version", version=f"hyperconsole {__version__}")
    _add_tui(parser, suppress=False)
    _add_common(parser, suppress=False)
    parser.set_defaults(func=run_tui)
    if not subcommands:
        return parser
    sub_common = argparse.ArgumentParser(add_help=False)
    _add_common(sub_common, suppress=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    tui = subparsers.add_parser("tui", parents=[sub_common], help="the console (default)")
    _add_tui(tui, suppress=True)
    tui.set_defaults(func=run_tui)
    try:
        from hyperconsole.cli import nixos as nixos_commands
    except ImportError:  # pragma: no cover - the nixos package is part of the distribution
        nixos_commands = None
    if nixos_commands is not None:
        nixos_commands.register(subparsers, sub_common)
    from hyperconsole.cli import doctor as doctor_command, net as netcommands, privileged

    netcommands.register(subparsers, sub_common)
    privileged.register(subparsers, sub_common)
    doctor_command.register(subparsers, sub_common)
    from hyperconsole.cli import setup as setupcommands

    setupcommands.register(subparsers, sub_common)
    from hyperconsole.cli import fleet as fleetcommands

    fleetcommands.register(subparsers, sub_common)
    from hyperconsole.cli import backup as backupcommands
    backupcommands.register(subparsers, sub_common)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The console itself is parsed without importing every subcommand's module, so the
    libvirt connection starts sooner; anything else (a subcommand, --help) gets the full parser."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = build_parser(subcommands=False).parse_known_args(argv)
    if rest:
        args = build_parser().parse_args(argv)
    return args


def resolve(args: argparse.Namespace) -> Config:
    """Config files, then flags; --demo points everything at scratch places."""
    config = config_mod.load(args.config)
    changes: dict = {}
    if args.refresh is not None:
        changes["refresh"] = args.refresh
    if args.connect:
        changes["connections"] = {**config.connections, "cli": args.connect[0]}
        changes["default_connection"] = "cli"
    if args.demo:
        from hyperconsole.demo.libvirt import demo_uri

        changes["connections"] = {**config.connections, "demo": demo_uri()}
        changes["default_connection"] = "demo"
        changes["nixos_dir"] = str(paths.demo_dir() / "nixos")
    if args.nixos_dir:
        changes["nixos_dir"] = str(Path(args.nixos_dir).resolve())
    if args.rebuild_cmd:
        changes["rebuild_command"] = args.rebuild_cmd
    if args.revert_cmd:
        changes["revert_command"] = args.revert_cmd
    config = config.replace(**changes)
    if args.demo and getattr(args, "demo_hosts", 1) > 1:
        from hyperconsole import hosts
        from hyperconsole.demo.libvirt import fleet_uris

        fleet = tuple(hosts.spec_for(name, uri, config.nixos_dir, paths.demo_dir())
                      for name, uri in fleet_uris(args.demo_hosts, paths.demo_dir() / "fleet"))
        config = config.replace(fleet=fleet, connections={**config.connections, fleet[0].name: fleet[0].uri},
                                default_connection=fleet[0].name)
    config = _with_fleet(args, config)
    if args.demo:
        from hyperconsole.demo import nixos as demo

        # Scratch NixOS dir and a rebuild that really evaluates the fragments with nix-instantiate.
        config = demo.demo_config(config)
    return config


def _with_fleet(args: argparse.Namespace, config: Config) -> Config:
    """The fleet from --hosts FILE, several --connect, or connect_all; `--host NAME` then points
    the host changes at that host's checkout and target."""
    from hyperconsole import hosts

    if getattr(args, "hosts", None):
        fleet = hosts.load_hosts(args.hosts, config.nixos_dir)
    elif args.connect and len(args.connect) > 1:
        fleet = hosts.from_uris(args.connect, config.nixos_dir)
    elif config.connect_all and not args.connect and not args.demo:
        fleet = hosts.from_connections(config.connections, config.nixos_dir, where=", ".join(config.sources) or "config")
    else:
        fleet = ()
    if fleet:
        # The console's own connection is the fleet's first host (the default one if it is in it).
        first = next((h for h in fleet if h.name == config.default_connection), fleet[0])
        config = config.replace(fleet=fleet, connections={**config.connections, first.name: first.uri},
                                default_connection=first.name)
    name = getattr(args, "host", None)
    if name:
        config = config.for_host(hosts.find(config.hosts, name))
    return config


def _setup_logging() -> None:
    from hyperconsole.cli.logfile import open_log

    try:
        handler: logging.Handler = open_log(paths.state_dir() / "hyperconsole.log")
    except HyperconsoleError as exc:
        print(f"hyperconsole: not logging to a file: {exc}", file=sys.stderr)
        handler = logging.NullHandler()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)


def open_manager(args: argparse.Namespace, config: Config):
    """The connection manager the console uses: read-only when asked (`--readonly`) or when the
    security profile applied to the host says `console: {libvirt: read-only}`. A security fragment
    that cannot be read (damaged, a planted link) does not keep the console from starting: it
    opens read-only and says why, since the profile it cannot read may demand that."""
    from hyperconsole import profiles
    from hyperconsole.nixos.store import FragmentStore
    from hyperconsole.virt.connection import ConnectionManager

    reason = "--readonly" if args.readonly else ""
    if not reason:
        try:
            profile = profiles.applied_profile(FragmentStore(config.nixos_dir))
        except HyperconsoleError as exc:
            log.warning("cannot read the applied security profile: %s", exc)
            reason = f"the applied security profile cannot be read: {exc}"
        else:
            if profile is not None and profile.libvirt_access == "read-only":
                reason = f"security profile {profile.name}"
    manager = ConnectionManager(config.uri, readonly=bool(reason))
    if reason:
        manager.readonly_reason = reason
    return manager


def run_fleet_tui(args: argparse.Namespace, config: Config) -> int:
    """Every host of the fleet in one console: all opened at once on their own threads; the app
    starts at once and each host's rows appear as it answers."""
    import threading

    from hyperconsole.virt.fleet import Fleet
    from hyperconsole.virt.sampler import DomainSampler

    access = open_manager(args, config)  # read-only by flag or by the applied profile, for every host
    fleet = Fleet(config.hosts, readonly=access.forced_readonly)
    for host in fleet:
        host.manager.readonly_reason = access.readonly_reason
    stats_source = None
    if args.demo:
        from hyperconsole.demo.stats import SimulatedStats

        stats_source = SimulatedStats()  # the test driver reports states only
    from hyperconsole.app import HyperconsoleApp

    app = HyperconsoleApp(fleet.manager(config.hosts[0].name), config, demo=args.demo, fleet=fleet,
                          sampler_factory=lambda m, host: DomainSampler(m, host=host, stats_source=stats_source))

    def opened(name: str) -> None:  # on the host's own thread
        if args.demo:
            from hyperconsole.demo import libvirt as demo

            demo.prepare(fleet.manager(name))
        app.host_opened(name)

    threading.Thread(target=fleet.open_all, kwargs={"on_open": opened}, name="fleet-open", daemon=True).start()
    try:
        app.run()
    finally:
        from concurrent.futures import wait

        from hyperconsole.virt.fleet import on_thread

        wait([on_thread("fleet-close", fleet.close)], timeout=2.0)  # a hung host does not hold up the exit
    return 0


def run_tui(args: argparse.Namespace, config: Config) -> int:
    if len(config.fleet) > 1:
        return run_fleet_tui(args, config)
    import threading
    from concurrent.futures import Future

    from hyperconsole.virt.sampler import DomainSampler

    manager = open_manager(args, config)
    stats_source = None
    if args.demo:
        from hyperconsole.demo.stats import SimulatedStats

        stats_source = SimulatedStats()  # the test driver reports states only
    sampler = DomainSampler(manager, stats_source=stats_source)
    opened: Future = Future()  # the first tick (None if it failed), or why the connection did not open

    def connect() -> None:
        try:
            manager.connect()
            if args.demo:
                from hyperconsole.demo import libvirt as demo

                demo.prepare(manager)
                threading.Thread(target=_demo_backups, args=(config, manager), name="demo-backups",
                                 daemon=True).start()
        except BaseException as exc:
            opened.set_exception(exc)
            return
        try:
            opened.set_result(sampler.tick())
        except HyperconsoleError:
            opened.set_result(None)  # the app's own poll retries and reports it in the status bar

    # libvirt releases the GIL while it works, so opening the connection and taking the first
    # sample overlap the UI's imports and the app's own start (styles, layout, the empty table)
    # instead of preceding them: on a big test-driver host the open is most of the start-up.
    opener = threading.Thread(target=connect, name="libvirt-open", daemon=True)
    opener.start()
    from hyperconsole.app import HyperconsoleApp

    if opened.done() and isinstance(opened.exception(), HyperconsoleError):
        print(f"hyperconsole: {opened.exception()}", file=sys.stderr)  # failed at once: before any screen
        return 1
    backup_parts = None
    if args.demo:
        from hyperconsole.demo import backup as demo_backup

        backup_parts = demo_backup.parts()
    app = HyperconsoleApp(manager, config, demo=args.demo, sampler=sampler, opening=opened,
                          backup_parts=backup_parts)
    app.run()
    if app.start_error is not None:
        print(f"hyperconsole: {app.start_error}", file=sys.stderr)
        return 1
    return 0


def _demo_backups(config: Config, manager) -> None:
    """The demo's backup job, repository and first snapshots, made beside the console's start."""
    from hyperconsole.demo import backup as demo_backup

    try:
        demo_backup.ensure(config.nixos_dir, manager.conn)
    except HyperconsoleError as exc:
        log.warning("demo backups not prepared: %s", exc)


class _QuietWhenClosed:
    """sys.stdout while a command runs: once the reader has gone (`hyperconsole … | head -1`),
    output is dropped instead of raising BrokenPipeError, so the command ends as it would have,
    quietly; a host change in progress is never cut short by its output."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        # Point the descriptor at /dev/null: what is still buffered, and every later write, goes there.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextmanager
def _quiet_when_output_closes() -> Iterator[None]:
    original = sys.stdout
    guard = _QuietWhenClosed(original)
    sys.stdout = guard
    try:
        yield
    finally:
        guard.flush()  # block-buffered output to a pipe is written here, not at interpreter exit
        sys.stdout = original


def main(argv: list[str] | None = None) -> int:
    with _quiet_when_output_closes():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    for key, value in (("demo", False), ("nixos_dir", None), ("rebuild_cmd", None), ("revert_cmd", None),
                       ("hosts", None), ("host", None), ("connect", None), ("refresh", None), ("config", None),
                       ("demo_hosts", 1)):
        if not hasattr(args, key):
            setattr(args, key, value)
    _setup_logging()
    try:
        config = resolve(args)
        return int(args.func(args, config) or 0)
    except HyperconsoleError as exc:
        print(f"hyperconsole: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
