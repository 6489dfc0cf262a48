"""A host change described as data, never as rendered Nix: `net.bridge.add {name, ifaces, rstp}`,
`profile.apply {name, toggles}`, `trial.confirm`, … The CLI, the panes and the root request unit
turn one into fragments through the same code (`prepare`), so the unit never trusts a rendering
made by the operator: it re-validates the data and renders it itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union

import msgspec
from msgspec import Meta

from hyperconsole import profiles
from hyperconsole.backup import jobs
from hyperconsole.host import netconfig, netplan
from hyperconsole.nixos.store import ChangeSet, FragmentStore

_Name = Annotated[str, Meta(min_length=1, max_length=64)]
_Port = Annotated[int, Meta(ge=0, le=65535)]
_Timeout = Annotated[int, Meta(ge=0, le=86400)]


class _Change(msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag_field="kind"):
    category = ""  # what `operators_may_change` must list for an operator to ask for it ("" = any operator)

    @property
    def kind(self) -> str:
        return self.__struct_config__.tag  # type: ignore[attr-defined]


class _Net(_Change, frozen=True):
    category = "network"


class BridgeAdd(_Net, frozen=True, tag="net.bridge.add"):
    name: _Name
    ifaces: tuple[_Name, ...] = ()
    rstp: bool = False
    move_address: bool = False


class BridgeRemove(_Net, frozen=True, tag="net.bridge.remove"):
    name: _Name


class VlanAdd(_Net, frozen=True, tag="net.vlan.add"):
    name: _Name
    id: int
    parent: _Name


class VlanRemove(_Net, frozen=True, tag="net.vlan.remove"):
    name: _Name


class AddressSet(_Net, frozen=True, tag="net.addr.set"):
    iface: _Name
    dhcp: bool = False
    address: str | None = None
    gateway: str | None = None


class MtuSet(_Net, frozen=True, tag="net.mtu"):
    iface: _Name
    mtu: int | None


class FirewallChange(_Net, frozen=True, tag="net.firewall"):
    """Ports opened and closed on top of what is there (the CLI's --allow/--remove)."""
    iface: _Name
    open_tcp: tuple[_Port, ...] = ()
    open_udp: tuple[_Port, ...] = ()
    close_tcp: tuple[_Port, ...] = ()
    close_udp: tuple[_Port, ...] = ()


class FirewallSet(_Net, frozen=True, tag="net.firewall.set"):
    """Exactly these ports open on the interface (the Networks pane's form)."""
    iface: _Name
    tcp: tuple[_Port, ...] = ()
    udp: tuple[_Port, ...] = ()


class DnsSet(_Net, frozen=True, tag="net.dns"):
    servers: tuple[Annotated[str, Meta(max_length=64)], ...] = ()


class ProfileApply(_Change, frozen=True, tag="profile.apply"):
    category = "profile"
    name: _Name
    toggles: tuple[_Name, ...] = ()


class _Backup(_Change, frozen=True):
    category = "backups"


class BackupJobAdd(_Backup, frozen=True, tag="backup.job.add"):
    job: jobs.Job


class BackupJobEdit(_Backup, frozen=True, tag="backup.job.edit"):
    job: jobs.Job


class BackupJobRemove(_Backup, frozen=True, tag="backup.job.remove"):
    name: _Name


class TrialConfirm(_Change, frozen=True, tag="trial.confirm"):
    """Keep the pending trial (any operator may keep or revert a trial: it changes nothing new)."""


class TrialRevert(_Change, frozen=True, tag="trial.revert"):
    change_id: Annotated[str, Meta(pattern=r"^[0-9a-f]{1,32}$")] | None = None


class Rollback(_Change, frozen=True, tag="rollback"):
    category = "rollback"
    generation: Annotated[int, Meta(ge=1)] | None = None


Change = Union[BridgeAdd, BridgeRemove, VlanAdd, VlanRemove, AddressSet, MtuSet, FirewallChange, FirewallSet,
               DnsSet, ProfileApply, BackupJobAdd, BackupJobEdit, BackupJobRemove, TrialConfirm, TrialRevert, Rollback]
BACKUP_CHANGES = (BackupJobAdd, BackupJobEdit, BackupJobRemove)
NETWORK_CHANGES = (BridgeAdd, BridgeRemove, VlanAdd, VlanRemove, AddressSet, MtuSet, FirewallChange, FirewallSet, DnsSet)
CATEGORIES = ("network", "profile", "rollback", "backups")


class Request(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The document an operator hands over: one change and how to apply it."""
    version: Literal[1]
    id: Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
    created: float
    change: Change
    confirm_timeout: _Timeout | None = None  # None: as the root CLI chooses by default
    rebuild: bool = True


def network_edit(change: _Net) -> netplan.Edit:
    """The netconfig edit a network request stands for (the same calls the `net` commands make)."""
    c = change
    edits = {
        BridgeAdd: lambda cfg, ex: netconfig.add_bridge(cfg, c.name, list(c.ifaces), rstp=c.rstp, existing=ex),
        BridgeRemove: lambda cfg, ex: netconfig.remove_bridge(cfg, c.name, existing=ex),
        VlanAdd: lambda cfg, ex: netconfig.add_vlan(cfg, c.name, c.id, c.parent, existing=ex),
        VlanRemove: lambda cfg, ex: netconfig.remove_vlan(cfg, c.name, existing=ex),
        AddressSet: lambda cfg, ex: netconfig.set_address(cfg, c.iface, dhcp=c.dhcp, address=c.address,
                                                          gateway=c.gateway, existing=ex),
        MtuSet: lambda cfg, ex: netconfig.set_mtu(cfg, c.iface, c.mtu, existing=ex),
        FirewallChange: lambda cfg, ex: netconfig.change_firewall_ports(
            cfg, c.iface, open_tcp=c.open_tcp, open_udp=c.open_udp, close_tcp=c.close_tcp, close_udp=c.close_udp,
            existing=ex),
        FirewallSet: lambda cfg, ex: netconfig.set_firewall_ports(cfg, c.iface, tcp=c.tcp, udp=c.udp, existing=ex),
        DnsSet: lambda cfg, ex: netconfig.set_nameservers(cfg, list(c.servers), existing=ex),
    }
    return edits[type(change)]


@dataclass(frozen=True)
class Prepared:
    """A change rendered against the fragments on disk now; nothing written."""
    changeset: ChangeSet
    timeout: int
    description: str
    notes: tuple[str, ...] = ()  # warnings and impact, for the operator
    plan: netplan.NetworkPlan | None = None


def prepare(change: _Change, store: FragmentStore, *, requested_timeout: int | None, configured_timeout: int,
            vm_nics=(), host=None, catalog: profiles.Catalog | None = None) -> Prepared:
    """Validate and render a fragment change (network or profile); raises the one-line error of
    the model on bad input. The timeout follows the root CLI's rules (never 0 on the uplink)."""
    if isinstance(change, ProfileApply):
        changeset = profiles.prepare_profile_change(store, catalog or profiles.load_catalog(), change.name,
                                                    change.toggles)
        timeout = configured_timeout if requested_timeout is None else requested_timeout
        return Prepared(changeset, timeout, changeset.message.removeprefix("hyperconsole: "))
    if isinstance(change, BACKUP_CHANGES):
        # A schedule cannot cut anyone off: switched directly, never on trial.
        if isinstance(change, BackupJobAdd):
            changeset = jobs.add(store, change.job)
        elif isinstance(change, BackupJobEdit):
            changeset = jobs.replace(store, change.job)
        else:
            changeset = jobs.remove(store, change.name)
        return Prepared(changeset, 0, changeset.message.removeprefix("hyperconsole: "))
    if not isinstance(change, NETWORK_CHANGES):
        raise TypeError(f"{change.kind} is not a fragment change")
    planned = netplan.plan(store, network_edit(change), vm_nics=vm_nics, host=host,
                           move_address=getattr(change, "move_address", False))
    timeout = planned.timeout(requested_timeout, configured_timeout)
    notes = [f"warning: {w}" for w in planned.warnings]
    if planned.change.stranded:
        notes.append(f"hint: --move-address moves the addressing of {', '.join(planned.change.stranded)} to the bridge")
    if planned.impact.bridges_changed:
        notes.append(f"bridges changed: {', '.join(planned.impact.bridges_changed)}")
    if planned.impact.vms_on_them:
        notes.append(f"VMs on them: {', '.join(planned.impact.vms_on_them)}")
    return Prepared(planned.changeset, timeout, planned.changeset.message.removeprefix("hyperconsole: "),
                    tuple(notes), planned)
