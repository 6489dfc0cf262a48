"""The registry the UI reads: per resource kind its key, how it is listed, columns, cells and
actions; and every action once, beside its binding — id (what a keymap remaps), key, description, whether it
mutates, what it acts on, whether it asks first.

`--readonly` and a read-only connection remove every mutating action (keys, footer, `?`, the
palette, hints) because screens ask `is_mutating` here, never a list of their own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Callable

from rich.text import Text
from textual.binding import Binding

from hyperconsole import presenters
from hyperconsole.widgets.resource_view import Column, ResourceView

if TYPE_CHECKING:  # the loaders import their core modules when first called, not at start-up
    from hyperconsole.host.interfaces import InterfaceInfo, InterfaceRate, InterfaceSampler
    from hyperconsole.virt.inventory import Usage
    from hyperconsole.virt.volumes import VolumeInfo, VolumeListing


class Scope(enum.Enum):
    TARGETS = "the selection, else the cursor row"
    CURSOR = "the cursor row"
    NONE = "nothing in the table"


@dataclass(frozen=True)
class Action:
    id: str  # binding id, "<kind or screen>.<name>"; the screen's handler is act_<kind>_<name>
    key: str
    description: str
    mutating: bool
    scope: Scope = Scope.CURSOR
    confirm: bool = False  # asks (a ConfirmDialog naming every target) before acting
    show: bool = True  # in the footer (`?` lists every action either way)

    @property
    def handler(self) -> str:
        return "act_" + self.id.replace(".", "_")

    def binding(self, on_view: bool) -> Binding:
        # On a table the action runs on its screen, which knows what the targets are for.
        target = "screen." if on_view else ""
        return Binding(self.key, f"{target}act('{self.id}')", self.description, show=self.show, id=self.id)


@dataclass(frozen=True)
class Kind:
    name: str  # view id and binding-id prefix
    title: str  # table title
    noun: str
    plural: str
    key: Callable[[Any], str]
    columns: tuple[Column, ...]
    cells: Callable[[Any], dict[str, Text]]
    search: Callable[[Any], str]
    actions: tuple[Action, ...] = ()
    sort: str = "name"
    selectable: bool = True
    # How it is listed: `load(manager, *args)`, a core call run off the UI thread (see
    # ResourceActions.load); or, for kinds listed on no one's request, what keeps them current.
    load: Callable[..., Any] | None = None
    fed_by: str = ""
    # Shown after the first column only when the console has more than one host open.
    fleet_columns: tuple[Column, ...] = ()

    def __post_init__(self) -> None:
        assert (self.load is None) != (not self.fed_by), f"{self.name}: a loader or a feed, one of them"

    def view(self, *, fleet: bool = False, **kwargs: Any) -> ResourceView:
        columns = (*self.columns[:1], *self.fleet_columns, *self.columns[1:]) if fleet else self.columns
        return _view_class(self)(self.title, columns, self.cells, self.search, sort=self.sort,
                                 selectable=self.selectable, id=self.name, **kwargs)

    def rows(self, items: Any) -> dict[str, Any]:
        """{key: item}, what a view of this kind shows."""
        return {self.key(item): item for item in items}

    def describe(self, labels: list[str]) -> str:
        """How an action names what it acts on: `VM a`, `3 VMs: a, b, c`."""
        if len(labels) == 1:
            return f"{self.noun} {labels[0]}"
        return f"{len(labels)} {self.plural}: {', '.join(labels)}"


@cache
def _view_class(kind: Kind) -> type[ResourceView]:
    """A ResourceView whose bindings are the kind's actions: the footer and `?` then list a
    table's keys only while that table has focus."""
    return type(f"{kind.name.title()}View", (ResourceView,),
                {"BINDINGS": [a.binding(on_view=True) for a in kind.actions]})


def bindings(actions: tuple[Action, ...]) -> list[Binding]:
    """Bindings of actions that live on a screen (not on one table)."""
    return [a.binding(on_view=False) for a in actions]


def _name(item: Any) -> str:
    return item.name


def _by_name(item: Any) -> tuple[str, str]:
    return (item.name.casefold(), item.name)


def _col(key: str, label: str, width: int, sort: Callable[[Any], Any] | None = None, *,
         descending: bool = False, priority: int = 0, flex: bool = False) -> Column:
    return Column(key, label, width, sort, descending, priority, flex)


# -- loaders (run in a worker thread; core modules imported on first use) --------------------------
PAGE = 200  # volumes read at a time: a pool of thousands never loads at once


def _pools(manager: Any) -> list[Any]:
    from hyperconsole.virt import pools

    return pools.list_pools(manager)


@dataclass(frozen=True)
class VolumePage:
    listing: "VolumeListing"
    offset: int
    volumes: "list[VolumeInfo]"
    usage: "Usage | None"  # which VMs use what: read with the listing, not per page


def _volumes(manager: Any, pool: str, have: int = 0, listing: "VolumeListing | None" = None) -> VolumePage:
    """A pool's listing and as many volumes as the view `have`s (at least a page), so a re-read
    keeps every row; given the listing, the page after those."""
    from hyperconsole.virt import inventory, volumes

    if listing is None:
        listing = volumes.open_volumes(manager, pool)
        return VolumePage(listing, 0, listing.page(0, max(have, PAGE)), inventory.usage(manager))
    return VolumePage(listing, have, listing.page(have, PAGE), None)


@dataclass(frozen=True)
class HostView:
    interfaces: "list[InterfaceInfo]"
    rates: "dict[str, InterfaceRate]"
    uplinks: list[str]


def _interfaces(_manager: Any, sampler: "InterfaceSampler") -> HostView:
    from hyperconsole.errors import HyperconsoleError
    from hyperconsole.host import interfaces

    host = interfaces.read_host()
    if host.error:
        raise HyperconsoleError(host.error)
    return HostView(list(host.interfaces), sampler.sample(), sorted(host.uplink.names))


def _networks(manager: Any) -> Any:
    from hyperconsole.virt import networks

    return networks.networks_overview(manager)


def _snapshots(manager: Any, uuid: str) -> Any:
    from hyperconsole.virt import snapshots

    return snapshots.list_snapshots(manager, uuid)


def _checks(manager: Any, config: Any, checks: Any, backup_records: Any = None) -> Any:
    """Every check of `checks` (the doctor's registry, or a subset), libvirt ones on the app's own
    connection; each under its own deadline, so this returns within the longest timeout.
    `backup_records`: the dir of the backup run records where they are not the host's (the demo)."""
    from hyperconsole import doctor

    ctx = doctor.Context(config, manager=manager)
    ctx.backup_records = backup_records
    try:
        return doctor.run_checks(checks, ctx)
    finally:
        ctx.close()


def _backup_jobs(_manager: Any, nixos_dir: str, records: Any = None) -> Any:
    from hyperconsole.backup import runner
    from hyperconsole.nixos.store import FragmentStore

    return runner.job_statuses(FragmentStore(nixos_dir), records)


def _backup_snapshots(_manager: Any, job: Any, records: Any = None) -> Any:
    from hyperconsole.backup import runner

    return runner.snapshots_view(job, records)


T, C, N = Scope.TARGETS, Scope.CURSOR, Scope.NONE

# -- VMs -------------------------------------------------------------------------------------------
VMS = Kind(
    "vms", "VMs", "VM", "VMs", key=lambda d: d.key,
    columns=(
        _col("name", "Name", 24, _by_name, flex=True),
        _col("state", "State", 16, lambda d: (d.state.label, d.name.casefold())),
        _col("vcpus", "vCPUs", 5, lambda d: d.vcpus, descending=True, priority=2),
        _col("memory", "Memory", 9, lambda d: d.memory_kib, descending=True),
        _col("cpu", "CPU %", 6, lambda d: d.cpu_percent if d.cpu_percent is not None else -1.0,
             descending=True),
        _col("disk", "Disk r/w", 15, lambda d: (d.disk_read_bps or 0) + (d.disk_write_bps or 0),
             descending=True, priority=3),
        _col("net", "Net rx/tx", 15, lambda d: (d.net_rx_bps or 0) + (d.net_tx_bps or 0),
             descending=True, priority=3),
        _col("autostart", "Auto", 4, lambda d: d.autostart, priority=1),
    ),
    cells=presenters.domain_cells, search=presenters.domain_search,
    fed_by="the sampler's ticks (app.view.domains)",
    fleet_columns=(_col("host", "Host", 10, lambda d: (d.host, d.name.casefold()), priority=1),),
    actions=(
        Action("vms.details", "enter", "Details", False),
        Action("vms.start", "s", "Start", True, T),
        Action("vms.shutdown", "x", "Shut down", True, T),
        Action("vms.force_off", "X", "Force off", True, T, confirm=True),
        Action("vms.reboot", "r", "Reboot", True, T),
        Action("vms.pause", "p", "Pause/resume", True, T),
        Action("vms.autostart", "a", "Autostart", True, T),
        Action("vms.save", "S", "Save state", True, T),
        Action("vms.delete", "delete", "Delete", True, T, confirm=True),
        Action("vms.console", "c", "Console", True),
        Action("vms.edit", "e", "Edit", True),
        Action("vms.snapshots", "t", "Snapshots", False),
        Action("vms.clone", "C", "Clone", True),
        Action("vms.migrate", "m", "Migrate", True),
        Action("vms.abort_migration", "ctrl+x", "Abort migration", True, N),
        Action("vms.new", "n", "New VM", True, N),
    ),
)

# -- storage ---------------------------------------------------------------------------------------
POOLS = Kind(
    "pools", "Storage pools", "pool", "pools", key=_name,
    columns=(
        _col("name", "Name", 12, _by_name),
        _col("kind", "Type", 7, lambda p: p.kind, priority=2),
        _col("state", "State", 8, lambda p: p.state),
        _col("autostart", "Auto", 4, lambda p: p.autostart, priority=3),
        _col("capacity", "Capacity", 9, lambda p: p.capacity, descending=True, priority=1),
        _col("available", "Available", 9, lambda p: p.available, descending=True),
        _col("used", "Used", 13, lambda p: p.used_percent or 0.0, descending=True),
        _col("volumes", "Volumes", 7, lambda p: p.volume_count or 0, descending=True, priority=2),
        _col("path", "Path", 24, lambda p: p.path, priority=4, flex=True),
    ),
    cells=presenters.pool_cells, search=lambda p: f"{p.name} {p.state} {p.kind} {p.path}", load=_pools,
    actions=(
        Action("pools.start", "s", "Start pool", True, T),
        Action("pools.stop", "x", "Stop pool", True, T, confirm=True),
        Action("pools.refresh", "R", "Refresh pool", True, T),
        Action("pools.autostart", "a", "Autostart", True, T),
        Action("pools.delete", "delete", "Delete pool", True, T, confirm=True),
        Action("pools.new", "N", "New pool", True, N),
    ),
)

VOLUMES = Kind(
    "volumes", "Volumes", "volume", "volumes", key=_name,
    columns=(
        _col("name", "Name", 24, _by_name),
        _col("format", "Format", 6, lambda v: v.volume.format, priority=2),
        _col("capacity", "Capacity", 10, lambda v: v.volume.capacity, descending=True),
        _col("allocation", "Allocation", 10, lambda v: v.volume.allocation, descending=True, priority=1),
        _col("users", "Used by", 16, lambda v: v.users),
        _col("path", "Path", 30, lambda v: v.volume.path, priority=3, flex=True),
    ),
    cells=presenters.volume_cells, search=lambda v: f"{v.name} {' '.join(v.users)}", load=_volumes,
    actions=(
        Action("volumes.new", "n", "New volume", True, N),
        Action("volumes.grow", "g", "Grow volume", True),
        Action("volumes.clone", "C", "Clone volume", True),
        Action("volumes.delete", "delete", "Delete volume", True, T, confirm=True),
    ),
)

STORAGE = (
    Action("storage.switch", "tab", "Switch table", False, N),
    Action("storage.upload", "U", "Upload", True, N),
    Action("storage.cancel_upload", "ctrl+x", "Cancel upload", True, N),
)

# -- networks --------------------------------------------------------------------------------------
INTERFACES = Kind(
    "ifaces", "Host interfaces", "interface", "interfaces", key=_name,
    columns=(
        _col("name", "Name", 14, _by_name),
        _col("kind", "Kind", 8, lambda r: r.info.kind, priority=2),
        _col("state", "State", 8, lambda r: r.info.state),
        _col("link", "Link", 4, lambda r: r.info.carrier or False, priority=3),
        _col("speed", "Speed", 10, lambda r: r.info.speed_mbps or 0, descending=True, priority=4),
        _col("mtu", "MTU", 5, lambda r: r.info.mtu, priority=3),
        _col("addresses", "Addresses", 28, lambda r: len(r.info.addresses)),
        _col("relation", "Bridge / VLAN / bond", 22, lambda r: r.info.master or "", priority=1),
        _col("rate", "rx/tx", 13, lambda r: (r.rate.rx_bps or 0) + (r.rate.tx_bps or 0) if r.rate else 0,
             descending=True, priority=2),
        _col("vms", "VMs", 16, lambda r: r.vms, priority=1, flex=True),
    ),
    cells=presenters.interface_cells, search=lambda r: f"{r.name} {r.info.kind} {r.info.state}",
    load=_interfaces,
    selectable=False,
    actions=(Action("ifaces.delete", "delete", "Remove bridge/VLAN", True),),
)

NETWORKS = Kind(
    "nets", "libvirt networks", "network", "networks", key=_name,
    columns=(
        _col("name", "Name", 14, _by_name),
        _col("state", "State", 8, lambda n: n.active),
        _col("autostart", "Auto", 4, lambda n: n.autostart, priority=3),
        _col("forward", "Forward", 8, lambda n: n.forward_mode, priority=2),
        _col("bridge", "Bridge", 10, lambda n: n.bridge, priority=2),
        _col("ipv4", "IPv4", 18, lambda n: presenters.ipv4_of(n).cidr if presenters.ipv4_of(n) else ""),
        _col("dhcp", "DHCP range", 31, None, priority=1),
        _col("vms", "VMs", 16, lambda n: n.vms, priority=1, flex=True),
    ),
    cells=presenters.network_cells, search=lambda n: f"{n.name} {n.forward_mode} {n.bridge}", load=_networks,
    actions=(
        Action("nets.new", "n", "New network", True, N),
        Action("nets.start", "s", "Start net", True, T),
        Action("nets.stop", "x", "Stop net", True, T, confirm=True),
        Action("nets.autostart", "a", "Autostart", True, T),
        Action("nets.dhcp", "e", "DHCP range", True),
        Action("nets.delete", "delete", "Delete network", True, T, confirm=True),
    ),
)

NETWORKS_PANE = (
    Action("networks.switch", "tab", "Switch table", False, N),
    Action("networks.bridge", "b", "New bridge", True, N),
    Action("networks.vlan", "v", "New VLAN", True, N),
    Action("networks.address", "i", "Address", True, N),
    Action("networks.mtu", "m", "MTU", True, N),
    Action("networks.firewall", "f", "Firewall ports", True, N),
    Action("networks.dns", "d", "DNS", True, N),
)

# -- snapshots (a dialog over the VM list) ---------------------------------------------------------
SNAPSHOTS = Kind(
    "snapshots", "Snapshots", "snapshot", "snapshots", key=_name,
    columns=(
        _col("name", "Name", 30, None),
        _col("state", "State", 10, lambda s: s.state),
        _col("created", "Created", 16, lambda s: s.creation_time, descending=True),
        _col("description", "Description", 30, lambda s: s.description.casefold(), priority=1, flex=True),
    ),
    cells=presenters.snapshot_cells, search=lambda s: f"{s.name} {s.description}", load=_snapshots,
    sort="", selectable=False,  # a tree: shown in its own order until a column is picked
    actions=(
        Action("snapshots.create", "n", "New snapshot", True, N),
        Action("snapshots.revert", "r", "Revert", True, confirm=True),
        Action("snapshots.delete", "delete", "Delete", True, confirm=True),
    ),
)

# -- backups ---------------------------------------------------------------------------------------
BACKUP_JOBS = Kind(
    "bjobs", "Backup jobs", "job", "jobs", key=_name,
    columns=(
        _col("name", "Job", 14, _by_name),
        _col("schedule", "Schedule", 14, lambda j: j.job.schedule),
        _col("next", "Next run", 20, lambda j: j.next_run, priority=2),
        _col("last", "Last run", 10, lambda j: (j.last or {}).get("ok", None) is True),
        _col("age", "Age", 8, lambda j: -((j.last or {}).get("finished") or 0.0), priority=1),
        _col("size", "Stored", 9, lambda j: j.size or 0, descending=True, priority=1),
        _col("vms", "VMs", 16, lambda j: ",".join(j.job.vms), priority=3),
        _col("repo", "Repository", 24, lambda j: j.job.repository, priority=4, flex=True),
    ),
    cells=presenters.backup_job_cells, search=lambda j: f"{j.name} {' '.join(j.job.vms)} {j.job.repository}",
    load=_backup_jobs, selectable=False,
    actions=(
        Action("bjobs.run", "r", "Run now", True),
        Action("bjobs.new", "n", "New job", True, N),
        Action("bjobs.edit", "e", "Edit job", True),
        Action("bjobs.delete", "delete", "Remove job", True, confirm=True),
        Action("bjobs.prune", "P", "Prune", True),
        Action("bjobs.check", "v", "Verify", True),  # restic check locks the repository
        Action("bjobs.test", "T", "Restore test", True),
    ),
)

BACKUP_SNAPSHOTS = Kind(
    "bsnaps", "Snapshots", "snapshot", "snapshots", key=lambda r: r.snapshot.short_id,
    columns=(
        _col("time", "Time", 19, lambda r: r.snapshot.time, descending=True),
        _col("vm", "VM", 18, lambda r: r.vm.casefold(), flex=True),
        _col("id", "Id", 8, lambda r: r.snapshot.short_id, priority=2),
        _col("size", "Size", 9, lambda r: r.size or 0, descending=True),
        _col("added", "Added", 9, lambda r: r.added or 0, descending=True, priority=1),
        _col("quiesced", "Quiesced", 8, lambda r: r.quiesced, priority=1),
        _col("state", "VM state", 8, lambda r: r.snapshot.tag("hc-state"), priority=3),
    ),
    cells=presenters.backup_snapshot_cells, search=lambda r: f"{r.vm} {r.snapshot.short_id}",
    load=_backup_snapshots, sort="time", selectable=False,
    actions=(
        Action("bsnaps.restore_new", "R", "Restore as new", True),
        Action("bsnaps.restore_in_place", "I", "Restore in place", True, confirm=True),
    ),
)

BACKUPS_PANE = (
    Action("backups.switch", "tab", "Switch table", False, N),
    Action("backups.cancel", "ctrl+x", "Cancel run", True, N),
)

# -- the task log (the app keeps it; `l` shows it) -------------------------------------------------
TASKS = Kind(
    "tasks", "Task log", "task", "tasks", key=lambda t: t.id,
    columns=(
        _col("started", "Started", 19, lambda t: t.started, descending=True),
        _col("ended", "Ended", 10, lambda t: t.ended or 0.0, descending=True, priority=1),
        _col("result", "Result", 8, lambda t: t.result.value),
        _col("task", "Task", 44, lambda t: t.label.casefold(), flex=True),
        _col("target", "Target", 20, lambda t: t.target.casefold()),
    ),
    cells=presenters.task_cells, search=lambda t: f"{t.label} {t.target} {t.result.value}",
    sort="started", selectable=False, fed_by="the app's task log (app.tasks), as jobs begin and end",
)

# -- the doctor (pane 7) -----------------------------------------------------------------------------
_SEVERITY = {"fail": 0, "warn": 1, "skip": 2, "pass": 3}
CHECKS = Kind(
    "checks", "Doctor", "check", "checks", key=lambda r: r.id,
    columns=(
        _col("status", "Status", 6, lambda r: (_SEVERITY[r.status.value], r.id)),
        _col("check", "Check", 24, lambda r: r.id),
        _col("why", "Why", 60, lambda r: r.why.casefold(), flex=True),
        _col("hint", "Hint", 40, lambda r: r.hint.casefold(), priority=1),
    ),
    cells=presenters.check_cells, search=lambda r: f"{r.id} {r.status.value} {r.why} {r.hint}", load=_checks,
    sort="", selectable=False,  # in the registry's order (by area) until a column is picked
    actions=(
        Action("checks.details", "enter", "Details", False),
        Action("checks.rerun", "r", "Re-run", False, N),
        Action("checks.fix", "f", "Fix", True, confirm=True),
    ),
)

# -- host changes (Networks and Security panes) ----------------------------------------------------
HOST_CHANGE = (
    Action("host.keep", "k", "Keep trial", True, N),
    Action("host.undo", "u", "Revert trial", True, N),
    Action("host.switch", "h", "Switch host", False, N),  # with several hosts: which one changes act on
)
SECURITY = (
    Action("security.apply", "a", "Apply", True, N),
    Action("security.reload", "R", "Reload", False, N),
)

KINDS: dict[str, Kind] = {k.name: k for k in (VMS, POOLS, VOLUMES, INTERFACES, NETWORKS, SNAPSHOTS, TASKS, CHECKS,
                                               BACKUP_JOBS, BACKUP_SNAPSHOTS)}
ACTIONS: dict[str, Action] = {
    a.id: a for group in (*(k.actions for k in KINDS.values()), STORAGE, NETWORKS_PANE, HOST_CHANGE, SECURITY,
                          BACKUPS_PANE)
    for a in group
}


def on_host(item: Any) -> str:
    """An item's name, with its fleet host when it has one: `web on alpha`."""
    host = getattr(item, "host", "")
    return f"{item.name} on {host}" if host else item.name


def is_mutating(action: str, parameters: tuple[object, ...]) -> bool:
    """Whether a binding's action (`act('vms.start')`) changes anything."""
    spec = ACTIONS.get(str(parameters[0])) if action == "act" and parameters else None
    return spec is not None and spec.mutating


@dataclass
class Targets:
    """What an action acts on, resolved once by the screen before its handler runs."""

    kind: Kind | None
    items: list[Any] = field(default_factory=list)

    def describe(self) -> str:
        """`VM a`, `2 VMs: a on alpha, b on beta` (the host is named where the item has one)."""
        if self.kind is None:
            return ""
        return self.kind.describe([on_host(item) for item in self.items])

    def question(self, action: Action) -> str:
        """`Force off 3 VMs: a, b, c?`"""
        return f"{action.description} {self.describe()}?"
