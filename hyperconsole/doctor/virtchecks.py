"""Checks of libvirt: reachable and how (read-write or read-only, and why), versions, the default
network, pools (active, free space), VMs wired to a dead bridge or an inactive network, VMs that
should have started with the host but are off. Safe fixes are the storage and networks panes' own
calls (start a network, start a pool)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from hyperconsole.config import Config
from hyperconsole.doctor.access import explain_no_write
from hyperconsole.doctor.model import (
    SEVERITY, Check, Context, Fix, Outcome, Status, fail, ok, skip, space_status, warn,
)
from hyperconsole.errors import HyperconsoleError

SOCKETS = ("/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock")


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def connection(ctx: Context) -> Outcome:
    try:
        manager = ctx.libvirt()
    except HyperconsoleError as exc:
        hint = "virtualisation.libvirtd.enable = true;"
        if ctx.config.uri.startswith("qemu:///system") and not any(os.path.exists(s) for s in SOCKETS):
            return fail(f"libvirt is not running: no socket at {SOCKETS[0]} ({exc.message})", hint)
        return fail(exc.message, hint)
    from hyperconsole.virt import inventory

    node = inventory.node_info(manager)
    try:
        hypervisor = f", {node.hypervisor} {_version(manager.conn.getVersion())}"
    except Exception:  # the test driver and some remote drivers have no hypervisor version
        hypervisor = f", {node.hypervisor}"
    versions = f"libvirt {node.libvirt_version}{hypervisor} on {node.hostname}"
    if not manager.readonly:
        return ok(f"{versions}, read-write")
    reason = manager.readonly_reason or "asked for"
    if reason.startswith("write access denied"):
        return warn(f"{versions}, read-only: {reason}", explain_no_write(ctx))
    return ok(f"{versions}, read-only ({reason})")


def _start_network(name: str) -> Fix:
    def apply(target: Any, _config: Config) -> str:
        from hyperconsole.virt import networks

        networks.start_network(target, name)
        return f"network {name} started"

    return Fix(f"start network {name}", f"libvirt network {name} (started, as s in pane 3 does)", apply)


def default_network(ctx: Context) -> Outcome:
    from hyperconsole.virt import networks

    manager = ctx.libvirt()
    found = {net.name: net for net in networks.list_networks(manager)}
    net = found.get("default")
    if net is None:
        return ok("no network named default (VMs use others)" if found else "no libvirt networks defined")
    if net.active:
        return ok(f"network default is active (bridge {net.bridge or '?'})")
    users = networks.network_users(manager, "default")
    on = f": VMs on it cannot start ({', '.join(users)})" if users else ""
    hint = "" if net.autostart else "also set it to start with the host (a in pane 3)"
    return Outcome(Status.FAIL if users else Status.WARN, f"network default is not active{on}", hint,
                   None if manager.readonly else _start_network("default"))


def _start_pools(names: list[str]) -> Fix:
    def apply(target: Any, _config: Config) -> str:
        from hyperconsole.virt import pools

        for name in names:
            pools.start_pool(target, name)
        return f"started {', '.join(names)}"

    return Fix(f"start pool{'s' * (len(names) > 1)} {', '.join(names)}",
               f"storage pool{'s' * (len(names) > 1)} {', '.join(names)} (started, as s in pane 4 does)", apply)


def pools_active(ctx: Context) -> Outcome:
    from hyperconsole.virt import pools

    manager = ctx.libvirt()
    found = pools.list_pools(manager)
    if not found:
        return warn("no storage pools: new VMs have nowhere to put their disks", "N in pane 4 creates one")
    inactive = [p.name for p in found if not p.active]
    if not inactive:
        return ok(f"{len(found)} pool{'s' * (len(found) > 1)} active: {', '.join(p.name for p in found)}")
    fix = None if manager.readonly else _start_pools(inactive)
    return warn(f"pool{'s' * (len(inactive) > 1)} not active: {', '.join(inactive)}: their volumes cannot be used",
                "", fix)


def pool_space(ctx: Context) -> Outcome:
    from hyperconsole import names
    from hyperconsole.virt import pools

    rows, worst = [], Status.PASS
    for pool in pools.list_pools(ctx.libvirt()):
        if not pool.active or pool.used_percent is None:
            continue
        free = 100.0 - pool.used_percent
        status = space_status(free)
        rows.append((status, f"{pool.name}: {names.human_size(pool.capacity * free / 100)} free of "
                             f"{names.human_size(pool.capacity)} ({free:.0f} %)"))
        worst = max(worst, status, key=SEVERITY.__getitem__)
    if not rows:
        return skip("no active pool reports its size")
    low = [text for status, text in rows if status is not Status.PASS]
    detail = "\n".join(text for _, text in rows)
    if worst is Status.PASS:
        return ok(f"every pool has 15 % or more free ({len(rows)} checked)", detail=detail)
    return Outcome(worst, "low space: " + "; ".join(low),
                   "grow the file system, or delete volumes (pane 4); VMs whose disks grow pause when it fills",
                   detail=detail)


def vm_nics(ctx: Context) -> Outcome:
    """A VM NIC on a host bridge that has no carrier (no member port up) or does not exist, or on
    a libvirt network that is not active. The bridges of NAT/routed/isolated networks are libvirt's
    own (no carrier until a VM runs), so only host bridges are checked for carrier, and only when
    libvirt runs on this machine."""
    from hyperconsole.host import interfaces
    from hyperconsole.virt import inventory, networks

    manager = ctx.libvirt()
    usage = inventory.usage(manager)
    nets = networks.list_networks(manager, usage)
    problems: list[str] = []
    for net in nets:
        if not net.active and usage.on_network(net.name):
            problems.append(f"{', '.join(usage.on_network(net.name))}: network {net.name} is not active")
    libvirt_bridges = {n.bridge for n in nets if n.forward_mode != "bridge" and n.bridge}
    host_bridges: dict[str, tuple[str, ...]] = {
        bridge: vms for bridge, vms in usage.by_bridge.items() if bridge not in libvirt_bridges}
    for net in nets:
        if net.forward_mode == "bridge" and net.bridge and usage.on_network(net.name):
            host_bridges[net.bridge] = tuple(sorted({*host_bridges.get(net.bridge, ()), *usage.on_network(net.name)}))
    local = not urlsplit(manager.uri).hostname
    if host_bridges and local:
        links = {i.name: i for i in interfaces.read_interfaces(ctx.netns)}
        for bridge, vms in sorted(host_bridges.items()):
            link = links.get(bridge)
            if link is None:
                problems.append(f"{', '.join(vms)}: bridge {bridge} does not exist on this host")
            elif link.kind != "bridge":
                problems.append(f"{', '.join(vms)}: {bridge} is a {link.kind} interface, not a bridge")
            elif link.carrier is None:
                problems.append(f"{', '.join(vms)}: bridge {bridge} is down")
            elif link.carrier is False:
                problems.append(f"{', '.join(vms)}: bridge {bridge} has no carrier (no member port is up)")
    problems.extend(f"cannot read VM {p}" for p in usage.problems)
    if problems:
        return warn(f"{len(problems)} VM network problem{'s' * (len(problems) > 1)}: {problems[0]}",
                    "start the network (pane 3, s), plug in or bring up the bridge's port, or move the NIC (pane 2, e)",
                    detail="\n".join(problems))
    checked = "" if local else " (bridges of a remote host not checked)"
    return ok(f"every VM NIC is on an active network or a bridge with carrier{checked}")


def autostart_off(ctx: Context) -> Outcome:
    from hyperconsole.virt import inventory

    off = inventory.autostart_shut_off(ctx.libvirt())
    if not off:
        return ok("every VM set to autostart is running")
    return warn(f"set to start with the host but shut off: {', '.join(off)}",
                "start them (pane 2, s) or, if they are off on purpose, turn autostart off (pane 2, a)")


CHECKS = (
    Check("libvirt.connection", "libvirt reachable, versions, read-write or read-only", connection),
    Check("libvirt.default-network", "the default network is active", default_network),
    Check("libvirt.pools", "storage pools active", pools_active),
    Check("libvirt.pool-space", "free space in each pool (warn < 15 %, fail < 5 %)", pool_space),
    Check("libvirt.vm-nics", "VM NICs on a bridge with carrier or an active network", vm_nics),
    Check("libvirt.autostart", "VMs that autostart but are shut off", autostart_off),
)
