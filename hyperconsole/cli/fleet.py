"""`hyperconsole fleet status` and `hyperconsole vm migrate`: every host at a glance, and moving a
VM from one host to another with progress (ctrl-c aborts the job)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from hyperconsole.cli.nixos import guarded
from hyperconsole.config import Config
from hyperconsole.errors import HyperconsoleError
from hyperconsole.names import human_size
from hyperconsole.sanitize import visible


def _open_fleet(config: Config, names: list[str] | None = None, deadline: float = 10.0):
    from hyperconsole.virt.fleet import Fleet

    hosts = [h for h in config.hosts if names is None or h.name in names]
    fleet = Fleet(hosts)
    fleet.open_all(deadline, retry=False)
    return fleet


def _size(kib: int | None) -> str:
    return human_size(kib * 1024 if kib is not None else None, dash="-")


@guarded
def cmd_status(args: argparse.Namespace, config: Config) -> int:
    from hyperconsole.virt.fleet import summarize_all

    fleet = _open_fleet(config, deadline=args.timeout)
    try:
        summaries = summarize_all(fleet, deadline=args.timeout)
    finally:
        fleet.close()
    if args.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
        return 0 if all(s.state == "connected" for s in summaries) else 1
    print(f"{'HOST':<14}{'STATE':<13}{'CPU':>5}  {'MEMORY (free/total)':<21}{'VCPUS':>11}  {'VM MEMORY':<18}VMS")
    for s in summaries:
        if s.state != "connected":
            print(visible(f"{s.name:<14}{s.state:<13}{'':>5}  {'':<21}{'':>11}  {'':<18}{s.reason}"))
            continue
        cpu = "-" if s.cpu_percent is None else f"{s.cpu_percent:.0f}%"
        memory = f"{_size(s.free_memory_kib)}/{_size(s.memory_kib)}"
        vcpus = f"{s.vcpus_running}/{s.cpus}"
        vm_memory = f"{_size(s.memory_running_kib)}/{_size(s.memory_kib)}"
        vms = ", ".join(f"{n} {label}" for label, n in sorted(s.vms.items())) or "none"
        print(visible(f"{s.name:<14}{s.state:<13}{cpu:>5}  {memory:<21}{vcpus:>11}  {vm_memory:<18}{vms}"))
        for warning in s.overcommit:
            print(visible(f"  warning: {s.name} is overcommitted: {warning}"))
    return 0 if all(s.state == "connected" for s in summaries) else 1


def _progress_line(progress) -> str:
    percent = "" if progress.percent is None else f"{progress.percent:5.1f}%  "
    downtime = "" if progress.downtime_ms is None else f"  downtime {progress.downtime_ms} ms"
    return (f"[{progress.elapsed_ms / 1000:6.1f}s] {progress.phase}: {percent}"
            f"{human_size(progress.data_remaining)} remaining at {human_size(progress.rate_bps)}/s{downtime}")


def _source_of(fleet, name: str, wanted: str | None) -> str:
    """The host holding the VM: --from, or the one connected host that has it."""
    from hyperconsole.virt import domains
    from hyperconsole.virt.fleet import HostState

    if wanted:
        fleet.host(wanted)
        return wanted
    holders = []
    for host in fleet:
        if host.status().state is not HostState.CONNECTED:
            continue
        try:
            domains.domain(host.manager, name)
        except HyperconsoleError:  # not there (or not answering): not the source
            continue
        holders.append(host.name)
    if not holders:
        raise HyperconsoleError(f"no connected host has a VM {name!r}")
    if len(holders) > 1:
        raise HyperconsoleError(f"VM {name!r} is on several hosts ({', '.join(holders)})", hint="say which with --from")
    return holders[0]


@guarded
def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    from hyperconsole.virt import migrate
    from hyperconsole.virt.fleet import HostState

    fleet = _open_fleet(config)
    try:
        target_host = fleet.host(args.to)
        source_name = _source_of(fleet, args.name, args.source)
        if source_name == args.to:
            raise HyperconsoleError(f"VM {args.name} is already on {args.to}")
        for host in (fleet.host(source_name), target_host):
            status = host.status()
            if status.state is not HostState.CONNECTED:
                raise HyperconsoleError(f"host {host.name} is {status.state.value}: {status.reason}")
        source, target = fleet.manager(source_name), target_host.manager
        plan = migrate.preflight(source, target, args.name, offline=args.offline,
                                 copy_storage=False if args.no_copy_storage else None)
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
        how = "live" if plan.live else "offline"
        copied = [d.target for d in plan.disks if not d.shared]
        print(visible(f"migrating {args.name} {how} from {source_name} to {args.to}"
                      + (f", copying disks {', '.join(copied)}" if copied else ", storage shared")))
        cancel = threading.Event()
        previous = signal.getsignal(signal.SIGINT)

        def interrupt(_sig, _frame) -> None:
            if not cancel.is_set():
                print("\naborting the migration (ctrl-c again to stop waiting)", file=sys.stderr, flush=True)
                cancel.set()
            else:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, interrupt)
        try:
            result = migrate.migrate(source, target, plan, cancel=cancel, migrate_uri=args.migrate_uri,
                                     on_progress=lambda p: print(_progress_line(p), flush=True))
        finally:
            signal.signal(signal.SIGINT, previous)
    finally:
        fleet.close()
    print(visible(f"{args.name} now runs on {args.to}" if result.live else f"{args.name} is now defined on {args.to}"))
    if result.kept_on_source:
        print(visible(f"the source volumes were kept on {source_name}: {', '.join(result.kept_on_source)}"))
    return 0


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    fleet = subparsers.add_parser("fleet", help="every host of the fleet", parents=[common])
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="{status}")
    p = fleet_sub.add_parser("status", help="per host: state, VMs by state, CPU and memory, allocation",
                             parents=[common])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for a host before calling it unreachable (default 10)")
    p.set_defaults(func=cmd_status)

    vm = subparsers.add_parser("vm", help="VM operations across hosts", parents=[common])
    vm_sub = vm.add_subparsers(dest="vm_command", required=True, metavar="{migrate}")
    p = vm_sub.add_parser("migrate", help="move a VM to another host (live when it runs)", parents=[common])
    p.add_argument("name", metavar="NAME")
    p.add_argument("--to", required=True, metavar="HOST", help="the target host's name")
    p.add_argument("--from", dest="source", metavar="HOST", help="the source host (default: the host that has it)")
    p.add_argument("--offline", action="store_true", help="the VM is shut off: copy its definition and disks")
    p.add_argument("--no-copy-storage", action="store_true", help="refuse instead of copying disks the target lacks")
    p.add_argument("--migrate-uri", metavar="URI", help="where the target's QEMU listens, e.g. tcp://10.0.0.2")
    p.set_defaults(func=cmd_migrate)
