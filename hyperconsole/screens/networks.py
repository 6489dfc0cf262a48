"""Networks pane (`3`): the host's interfaces (bridges with members, VLANs, bonds, rates, the VMs
on each bridge) and libvirt's networks. Host changes (bridges, VLANs, addresses, MTU) go to the
network.nix fragment with confirm-or-revert, mandatory when they reach the host's uplink; libvirt
networks are changed through libvirt directly."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Log, Static

from hyperconsole import names, presenters, resources
from hyperconsole.errors import HyperconsoleError
from hyperconsole.host import interfaces as interfaces_mod
from hyperconsole.changes import requests
from hyperconsole.host import netplan
from hyperconsole.resources import HostView, Targets
from hyperconsole.sanitize import visible
from hyperconsole.screens.hostchange import HostChangePane
from hyperconsole.virt import networks
from hyperconsole.widgets.form import Field, choice, yes_no
from hyperconsole.widgets.resource_view import ResourceView


def parse_ports(text: str) -> list[int]:
    return [names.whole_number(p, "port", 1, 65535) for p in text.replace(",", " ").split()]


def interface(text: str) -> str:
    return names.interface_name(text.strip())


def interface_list(text: str) -> list[str]:
    return [names.interface_name(m, "member") for m in text.replace(",", " ").split()]


def lease_text(leases: networks.LeaseList) -> Text:
    if not leases.supported:
        return presenters.plain(f"DHCP leases of {leases.network}: not available ({leases.reason})", "dim", wrap=True)
    if not leases.leases:
        return presenters.plain(f"DHCP leases of {leases.network}: none", "dim", wrap=True)
    text = presenters.plain(f"DHCP leases of {leases.network}: ", "bold", wrap=True)
    for lease in leases.leases:
        expires = time.strftime("%H:%M", time.localtime(lease.expires)) if lease.expires else "never"
        text.append("\n  " + visible(f"{lease.ip:<20} {lease.mac}  {lease.hostname or '-'}  expires {expires}"))
    return text


class NetworksScreen(HostChangePane):
    PANE_TITLE = "Networks"
    BINDINGS = resources.bindings(resources.NETWORKS_PANE)

    LOCAL_ONLY = frozenset(a.id for a in resources.NETWORKS_PANE if a.mutating) | {"ifaces.delete"}
    LOCAL_ONLY_WHY = ("Host interfaces of {host} are not read from here: change its networking with "
                      "`hyperconsole net … --host {host}` (confirm-or-revert armed on {host}); "
                      "its libvirt networks are below.")

    def __init__(self) -> None:
        super().__init__()
        self.host: HostView | None = None
        self.overview: networks.NetworksOverview | None = None
        self._sampler = interfaces_mod.InterfaceSampler()
        self._domain_count = -1

    def compose_body(self) -> ComposeResult:
        yield Static("", id="pending-banner")
        ifaces = resources.INTERFACES.view()
        ifaces.border_subtitle = "host changes go to network.nix"
        yield ifaces
        yield resources.NETWORKS.view()
        yield Static("", id="leases")
        yield Log(id="rebuild-log", highlight=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#ifaces", ResourceView).focus()

    # -- data -----------------------------------------------------------------------------------------
    def render_data(self, kinds: frozenset[str]) -> None:
        super().render_data(kinds)
        if "change-host" in kinds:
            kinds = kinds | {"all"}
        if kinds & {"all", "host"} and self.remote:
            self.query_one("#ifaces", ResourceView).set_items({})
            self.query_one("#ifaces", ResourceView).note = "not read from here (a remote host)"
        elif kinds & {"all", "host"}:
            self.load(resources.INTERFACES, self._sampler)
        domain_count = len(self.hc.view.domains)
        if kinds & {"all", "connection"} or domain_count != self._domain_count:
            # Which VM sits where needs every domain's XML: read it when VMs come or go, not per tick.
            self._domain_count = domain_count
            self.load(resources.NETWORKS)

    def changed_on_disk(self) -> None:
        if not self.remote:
            self.load(resources.INTERFACES, self._sampler)

    def _vms_on(self, bridge: str) -> tuple[str, ...]:
        if self.overview is None:
            return ()
        return self.overview.usage.on_bridge(bridge, self.overview.networks)

    def show_ifaces(self, view: HostView, *_: Any) -> None:
        self.host = view
        self.query_one("#ifaces", ResourceView).set_items(resources.INTERFACES.rows(
            presenters.InterfaceRow(i, view.rates.get(i.name), i.name in view.uplinks, self._vms_on(i.name))
            for i in view.interfaces))

    def show_nets(self, overview: networks.NetworksOverview) -> None:
        self.overview = overview
        if overview.usage.problems:
            self.notify("\n".join(overview.usage.problems), title="VM definitions", severity="warning", markup=False)
        self.query_one("#nets", ResourceView).set_items(resources.NETWORKS.rows(overview.networks))
        if self.host is not None:
            self.show_ifaces(self.host)  # the VMs column depends on the overview

    @on(ResourceView.Highlighted, "#nets")
    def _network_highlighted(self, event: ResourceView.Highlighted) -> None:
        if event.key is not None:
            self.load_leases(event.key)

    @work(thread=True, exclusive=True, group="net-leases", exit_on_error=False, description="DHCP leases")
    def load_leases(self, name: str) -> None:
        try:
            leases = networks.dhcp_leases(self.hc.manager, name)
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._show_leases, presenters.plain(f"DHCP leases of {name}: {exc}", "red", wrap=True))
            return
        self.app.call_from_thread(self._show_leases, lease_text(leases))

    def _show_leases(self, text: Text) -> None:
        self.query_one("#leases", Static).update(text)

    def act_networks_switch(self, _targets: Targets) -> None:
        self.switch_table()

    # -- host changes (network.nix) ---------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="net-plan", exit_on_error=False, description="plan network change")
    def plan(self, change: requests.Change) -> None:
        overview = self.overview
        pairs = [] if overview is None else netplan.vm_nic_pairs(
            overview.usage.by_bridge, [(n.bridge, n.vms) for n in overview.networks])
        try:
            # The host is read afresh: the uplink decision must not rest on a table that went stale.
            prepared = requests.prepare(change, self.controller.store, vm_nics=pairs, requested_timeout=None,
                                        configured_timeout=self.hc.config.confirm_timeout)
            planned, timeout = prepared.plan, prepared.timeout
        except HyperconsoleError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="not changed", severity="error", markup=False)
            return
        self.app.call_from_thread(self._ask, change, planned, timeout)

    def _ask(self, change: requests.Change, planned: netplan.NetworkPlan, timeout: int) -> None:
        notes = []  # the plan's warnings say when the change reaches the uplink
        if planned.impact.bridges_changed:
            notes.append("Bridges changed: " + ", ".join(planned.impact.bridges_changed))
        if planned.impact.vms_on_them:
            notes.append("VMs on them: " + ", ".join(planned.impact.vms_on_them))
        notes += [f"warning: {w}" for w in planned.warnings]
        notes.append(planned.changeset.diff())
        self.ask_apply(planned.change.description.capitalize() + "?", change, planned.changeset, timeout,
                       planned.change.description, extra="\n".join(notes))

    def _existing_iface(self) -> str:
        return self.query_one("#ifaces", ResourceView).cursor_key or ""

    def _iface_field(self, label: str = "Interface") -> Field:
        return Field("iface", label, self._existing_iface(), parse=interface)

    def act_networks_bridge(self, _targets: Targets) -> None:
        def then(v: dict[str, Any]) -> None:
            self.plan(requests.BridgeAdd(v["name"], tuple(v["members"]), rstp=v["rstp"], move_address=v["move"]))

        self.ask_form("New bridge (network.nix)", [
            Field("name", "Name", "br0", parse=interface),
            Field("members", "Members", self._existing_iface(), parse=interface_list),
            yes_no("rstp", "RSTP"),
            yes_no("move", "Move members' address to the bridge", True),
        ], then)

    def act_networks_vlan(self, _targets: Targets) -> None:
        def then(v: dict[str, Any]) -> None:
            self.plan(requests.VlanAdd(v["name"], v["id"], v["iface"]))

        parent = self._existing_iface()
        self.ask_form("New VLAN (network.nix)", [
            Field("name", "Name", f"{parent}.10" if parent else "", parse=interface),
            Field("id", "VLAN id", "10", parse=lambda t: names.whole_number(t, "VLAN id", 1, 4094)),
            self._iface_field("Parent"),
        ], then)

    def act_networks_address(self, _targets: Targets) -> None:
        def then(v: dict[str, Any]) -> None:
            if v["address"] == "dhcp":
                self.plan(requests.AddressSet(v["iface"], dhcp=True))
            else:
                self.plan(requests.AddressSet(v["iface"], address=v["address"], gateway=v["gateway"]))

        def address(text: str) -> str:
            text = text.strip()
            return "dhcp" if text.lower() == "dhcp" else str(names.cidr(text, names.Role.HOST))

        self.ask_form("Address (network.nix)", [
            self._iface_field(),
            Field("address", "dhcp or CIDR", "dhcp", parse=address),
            Field("gateway", "Gateway", "", parse=lambda t: t.strip() or None),
        ], then)

    def act_networks_mtu(self, _targets: Targets) -> None:
        def then(v: dict[str, Any]) -> None:
            self.plan(requests.MtuSet(v["iface"], v["mtu"]))

        self.ask_form("MTU (network.nix)", [
            self._iface_field(), Field("mtu", "MTU", "1500", parse=lambda t: names.whole_number(t, "MTU", 68, 65535)),
        ], then)

    def act_networks_firewall(self, _targets: Targets) -> None:
        def then(v: dict[str, Any]) -> None:
            self.plan(requests.FirewallSet(v["iface"], tuple(v["tcp"]), tuple(v["udp"])))

        self.ask_form("Firewall ports open on an interface (network.nix)", [
            self._iface_field(), Field("tcp", "TCP ports", "", parse=parse_ports),
            Field("udp", "UDP ports", "", parse=parse_ports),
        ], then)

    def act_networks_dns(self, _targets: Targets) -> None:
        def then(v: dict[str, Any]) -> None:
            self.plan(requests.DnsSet(tuple(v["servers"])))

        self.ask_form("DNS servers (network.nix)", [
            Field("servers", "Nameservers", "", parse=lambda t: t.replace(",", " ").split()),
        ], then)

    # -- libvirt networks -----------------------------------------------------------------------------------
    def _reload_networks(self) -> None:
        self.load(resources.NETWORKS)

    def _net_op(self, label: str, fn, *args) -> None:
        self.run_job(label, fn, *args, then=self._reload_networks)

    def _each(self, targets: Targets, verb: str, fn, *args) -> None:
        self.run_each(targets, verb, fn, *args, then=self._reload_networks)

    def act_nets_start(self, targets: Targets) -> None:
        self._each(targets, "start network", networks.start_network)

    def act_nets_stop(self, targets: Targets) -> None:
        users = sorted({vm for net in targets.items for vm in net.vms})
        detail = ("VMs on them lose their network: " + ", ".join(users)) if users else ""
        self.confirm("nets.stop", targets, detail, lambda ok: ok and self._each(targets, "stop network",
                                                                                networks.stop_network))

    def act_nets_autostart(self, targets: Targets) -> None:
        self.toggle_autostart(targets, networks.set_network_autostart, then=self._reload_networks)

    def act_nets_new(self, _targets: Targets) -> None:
        def spec(v: dict[str, Any]) -> networks.NewNetworkSpec:
            made = networks.NewNetworkSpec(name=v["name"], mode=v["mode"], cidr=v["cidr"].strip() or None,
                                         dhcp_start=v["start"].strip() or None, dhcp_end=v["end"].strip() or None,
                                         bridge=v["bridge"].strip())
            networks.validate_network_spec(made)
            return made

        self.ask_form("New libvirt network", [
            Field("name", "Name", "", parse=names.network_name),
            choice("mode", "Mode", [(m, m) for m in networks.MODES]),
            Field("cidr", "Address/prefix", "192.168.150.1/24"),
            Field("start", "DHCP start", "192.168.150.100"),
            Field("end", "DHCP end", "192.168.150.200"),
            Field("bridge", "Bridge (bridge mode)", ""),
        ], lambda made: self._net_op(f"create network {made.name}", networks.create_network, made), check=spec,
            submit="create")

    def act_nets_dhcp(self, targets: Targets) -> None:
        net = targets.items[0]
        ipv4 = next((r for r in net.ips if r.family == "ipv4"), None)
        start, end = ipv4.dhcp[0] if ipv4 and ipv4.dhcp else ("", "")

        def then(v: dict[str, Any]) -> None:
            self._net_op(f"DHCP range of {net.name}", networks.set_dhcp_range, net.name, v["start"].strip(), v["end"].strip())

        self.ask_form(f"DHCP range of {net.name}", [Field("start", "Start", start), Field("end", "End", end)], then)

    def act_nets_delete(self, targets: Targets) -> None:
        users = sorted({vm for net in targets.items for vm in net.vms})
        detail = ("Used by: " + ", ".join(users) + ". They lose these networks.") if users else "No VM uses them."
        self.confirm("nets.delete", targets, detail,
                     lambda ok: ok and self._each(targets, "delete network", networks.delete_network))

    def act_ifaces_delete(self, targets: Targets) -> None:
        info = targets.items[0].info
        name = info.name
        if info.kind == "bridge":
            self.plan(requests.BridgeRemove(name))
        elif info.kind == "vlan":
            self.plan(requests.VlanRemove(name))
        else:
            self.notify(f"{name} is a {info.kind} interface: only bridges and VLANs are removed here",
                        severity="warning", markup=False)
