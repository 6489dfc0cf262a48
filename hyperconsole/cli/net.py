"""`hyperconsole net …`: host bridges, VLANs, addresses, MTU, firewall ports and DNS written to
network.nix, plus `net show`.

Each change command: read network.nix → edit the model (validated; a refusal is one line and
nothing is written) → print the diff, warnings and impact → apply through ConfirmOrRevert exactly
like `profile apply`. A change touching the host's uplink (the default route or the SSH session's
interface, or any interface when they cannot be read) is always applied with confirm-or-revert:
`--confirm-timeout 0` is refused for it.
"""

from __future__ import annotations

import argparse
import sys

from hyperconsole import names
from hyperconsole.config import Config
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.host import interfaces as interfaces_mod
from hyperconsole.host import netconfig, netplan
from hyperconsole.changes import requests
from hyperconsole.cli.nixos import apply_changeset, ask_to_apply, confirm_timeout_arg, guarded, make_submitter
from hyperconsole.nixos.store import FragmentStore
from hyperconsole.sanitize import visible


def read_vm_nics(config: Config) -> list[tuple[str, str]]:
    """(VM, bridge) pairs for the impact preview, from libvirt when it answers (read-only);
    without libvirt the preview just names no VMs, it does not stop the change."""
    from hyperconsole.virt import networks
    from hyperconsole.virt.connection import ConnectionManager

    manager = ConnectionManager(config.uri, readonly=True)
    try:
        manager.connect()
        overview = networks.networks_overview(manager)
    except HyperconsoleError as exc:
        print(f"warning: cannot ask libvirt which VMs use the bridges ({exc})", file=sys.stderr)
        return []
    finally:
        manager.close()
    for problem in overview.usage.problems:
        print(f"warning: VM {problem}", file=sys.stderr)
    return netplan.vm_nic_pairs(overview.usage.by_bridge,
                                [(net.bridge, net.vms) for net in overview.networks])


def _apply_change(args: argparse.Namespace, config: Config, change: requests.Change) -> int:
    submitter = make_submitter(args, config)
    host = None
    if config.target_host:
        # Another machine's interfaces are not read from here: every interface may be its uplink,
        # so the change always goes through confirm-or-revert (armed on that machine).
        reason = f"{config.host_name or config.target_host} is another machine"
        host = interfaces_mod.HostNetwork(uplink=interfaces_mod.Uplink(known=False, reason=reason), error=reason)
    prepared = requests.prepare(change, FragmentStore(config.nixos_dir), vm_nics=read_vm_nics(config), host=host,
                                requested_timeout=args.confirm_timeout, configured_timeout=config.confirm_timeout)
    if prepared.changeset.is_empty:
        print(f"network.nix already says this ({prepared.plan.change.description}); nothing to change")
        return 0
    print(prepared.changeset.diff(), end="")
    for note in prepared.notes:
        print(note, file=sys.stderr if note.startswith(("warning:", "hint:")) else sys.stdout)
    if not ask_to_apply(args):
        return 1
    if prepared.plan.touches_uplink and args.no_rebuild:
        print("warning: not rebuilt; activate it with confirm-or-revert (`hyperconsole rebuild test` does not revert by itself)",
              file=sys.stderr)
    return apply_changeset(args, config, submitter, change, prepared.changeset, prepared.timeout)


# -- handlers -------------------------------------------------------------------------------------


@guarded
def cmd_bridge_add(args: argparse.Namespace, config: Config) -> int:
    return _apply_change(args, config, requests.BridgeAdd(args.name, tuple(args.iface or ()), rstp=args.rstp,
                                                          move_address=args.move_address))


@guarded
def cmd_bridge_remove(args: argparse.Namespace, config: Config) -> int:
    return _apply_change(args, config, requests.BridgeRemove(args.name))


@guarded
def cmd_vlan_add(args: argparse.Namespace, config: Config) -> int:
    return _apply_change(args, config, requests.VlanAdd(args.name, args.id, args.parent))


@guarded
def cmd_vlan_remove(args: argparse.Namespace, config: Config) -> int:
    return _apply_change(args, config, requests.VlanRemove(args.name))


@guarded
def cmd_addr_set(args: argparse.Namespace, config: Config) -> int:
    return _apply_change(args, config, requests.AddressSet(args.iface, dhcp=args.dhcp, address=args.address,
                                                           gateway=args.gateway))


@guarded
def cmd_mtu(args: argparse.Namespace, config: Config) -> int:
    return _apply_change(args, config, requests.MtuSet(args.iface, args.mtu))


@guarded
def cmd_firewall(args: argparse.Namespace, config: Config) -> int:
    return _apply_change(args, config, requests.FirewallChange(
        args.iface, open_tcp=tuple(args.allow_tcp or ()), open_udp=tuple(args.allow_udp or ()),
        close_tcp=tuple(args.remove_tcp or ()), close_udp=tuple(args.remove_udp or ())))


@guarded
def cmd_dns(args: argparse.Namespace, config: Config) -> int:
    return _apply_change(args, config, requests.DnsSet(tuple(args.server or ())))


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f}k"


@guarded
def cmd_show(args: argparse.Namespace, config: Config) -> int:
    if config.target_host:
        raise HyperconsoleError(f"net show reads this machine's interfaces, not {config.host_name or config.target_host}'s",
                                hint=f"run it there: ssh {config.target_host} hyperconsole net show")
    host = interfaces_mod.read_host(args.netns)
    if host.error:
        raise HyperconsoleError(host.error)
    uplinks = host.uplink.names
    header = f"{'NAME':<16}{'KIND':<10}{'STATE':<15}{'CARRIER':<8}{'SPEED':>7} {'MTU':>6}  {'MAC':<18}DETAILS"
    print(header)
    for i in host.interfaces:
        details = []
        if i.bridge:
            details.append(f"members={','.join(i.bridge.members) or '-'} stp={'on' if i.bridge.stp else 'off'}")
        if i.vlan:
            details.append(f"vlan {i.vlan.id} on {i.vlan.parent}")
        if i.bond:
            details.append(f"bond {i.bond.mode} slaves={','.join(i.bond.slaves) or '-'}")
        if i.master:
            details.append(f"in {i.master}")
        details += [a.cidr for a in i.addresses if a.scope != "link"]
        if i.name in uplinks:
            details.append("[uplink]")
        carrier = "-" if i.carrier is None else ("yes" if i.carrier else "no")
        speed = f"{i.speed_mbps}M" if i.speed_mbps else "-"
        print(visible(f"{i.name:<16}{i.kind:<10}{i.state:<15}{carrier:<8}{speed:>7} {i.mtu:>6}  {(i.mac or '-'):<18}{' '.join(details)}"))
    return 0


# -- registration -----------------------------------------------------------------------------------


def _checked(check, text: str):
    try:
        return check(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _iface_arg(text: str) -> str:
    return _checked(names.interface_name, text)


def _number_arg(what: str):
    """Digits only ('1.5', '1e3', '+3' are refused, never rewritten); the range is the model's."""
    return lambda text: _checked(lambda t: names.whole_number(t, what, 0, 2**31), text)


def _mtu_arg(text: str) -> int | None:
    return None if text == "default" else _number_arg("MTU")(text)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    change = argparse.ArgumentParser(add_help=False)
    change.add_argument("--no-rebuild", action="store_true", help="only write the fragment")
    change.add_argument("--confirm-timeout", type=confirm_timeout_arg, metavar="N",
                        help="seconds to confirm before it reverts (0: switch directly, refused when the "
                             "change touches the host's uplink)")
    change.add_argument("--yes", action="store_true", help="do not ask before applying (the diff is still shown)")
    parents = [common, change]

    net = subparsers.add_parser("net", help="host networking (bridges, VLANs, addresses, MTU, firewall, DNS)",
                                parents=[common])
    net_sub = net.add_subparsers(dest="net_command", required=True,
                                 metavar="{show,bridge,vlan,addr,mtu,firewall,dns}")
    p = net_sub.add_parser("show", help="the host's interfaces", parents=[common])
    p.add_argument("--netns", metavar="NS", help="read another network namespace")
    p.set_defaults(func=cmd_show)

    bridge = net_sub.add_parser("bridge", help="host bridges", parents=[common])
    bridge_sub = bridge.add_subparsers(dest="bridge_command", required=True, metavar="{add,remove}")
    p = bridge_sub.add_parser("add", help="create a bridge with member interfaces", parents=parents)
    p.add_argument("name", type=_iface_arg)
    p.add_argument("--iface", action="append", type=_iface_arg, metavar="IF", help="member interface (repeatable)")
    p.add_argument("--rstp", action="store_true", help="enable RSTP on the bridge")
    p.add_argument("--move-address", action="store_true",
                   help="move the members' addresses, DHCP and default route to the bridge")
    p.set_defaults(func=cmd_bridge_add)
    p = bridge_sub.add_parser("remove", help="remove a bridge", parents=parents)
    p.add_argument("name", type=_iface_arg)
    p.set_defaults(func=cmd_bridge_remove)

    vlan = net_sub.add_parser("vlan", help="VLAN interfaces", parents=[common])
    vlan_sub = vlan.add_subparsers(dest="vlan_command", required=True, metavar="{add,remove}")
    p = vlan_sub.add_parser("add", help="add a VLAN on a parent interface", parents=parents)
    p.add_argument("name", type=_iface_arg)
    p.add_argument("--id", type=_number_arg("VLAN id"), required=True, metavar="N", help="VLAN id 1-4094")
    p.add_argument("--parent", type=_iface_arg, required=True, metavar="IF")
    p.set_defaults(func=cmd_vlan_add)
    p = vlan_sub.add_parser("remove", help="remove a VLAN", parents=parents)
    p.add_argument("name", type=_iface_arg)
    p.set_defaults(func=cmd_vlan_remove)

    addr = net_sub.add_parser("addr", help="interface addresses", parents=[common])
    addr_sub = addr.add_subparsers(dest="addr_command", required=True, metavar="{set}")
    p = addr_sub.add_parser("set", help="DHCP or a static address (+ default gateway)", parents=parents)
    p.add_argument("iface", type=_iface_arg, metavar="IF")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--dhcp", action="store_true")
    how.add_argument("--address", metavar="CIDR", help="e.g. 192.0.2.10/24 or 2001:db8::10/64")
    p.add_argument("--gateway", metavar="IP", help="default gateway, inside the address's subnet")
    p.set_defaults(func=cmd_addr_set)

    p = net_sub.add_parser("mtu", help="an interface's MTU", parents=parents)
    p.add_argument("iface", type=_iface_arg, metavar="IF")
    p.add_argument("mtu", type=_mtu_arg, metavar="N", help=f"{netconfig.MTU_MIN}-65535, or 'default' to drop the setting")
    p.set_defaults(func=cmd_mtu)

    p = net_sub.add_parser("firewall", help="ports the firewall opens on an interface", parents=parents)
    p.add_argument("iface", type=_iface_arg, metavar="IF")
    for proto in ("tcp", "udp"):
        p.add_argument(f"--allow-{proto}", type=_number_arg("port"), nargs="+", action="extend", metavar="P",
                       help=f"open {proto.upper()} ports")
        p.add_argument(f"--remove-{proto}", type=_number_arg("port"), nargs="+", action="extend", metavar="P",
                       help=f"close {proto.upper()} ports opened here before")
    p.set_defaults(func=cmd_firewall)

    p = net_sub.add_parser("dns", help="the host's nameservers", parents=parents)
    servers = p.add_mutually_exclusive_group(required=True)
    servers.add_argument("--server", action="append", metavar="IP", help="a nameserver, in order (repeatable)")
    servers.add_argument("--clear", action="store_true", help="drop the nameservers set here")
    p.set_defaults(func=cmd_dns)
