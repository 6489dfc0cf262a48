"""`n`: create a VM — name, vCPUs, memory, disk (new in a pool or an existing volume), boot ISO,
network (libvirt network or host bridge), firmware, through the one form. Everything is validated
before any call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import work

from hyperconsole import names
from hyperconsole.errors import HyperconsoleError
from hyperconsole.host.bridges import host_bridges
from hyperconsole.messages import ActionDone
from hyperconsole.screens.edit import memory_field, vcpus_field
from hyperconsole.virt.create import NewDomainSpec, VolumeRef, create_domain
from hyperconsole.virt.networks import NetworkInfo, list_networks
from hyperconsole.virt.pools import PoolInfo, list_pools
from hyperconsole.virt.volumes import VolumeInfo, list_volumes
from hyperconsole.widgets.form import Field, Form, choice


@dataclass(frozen=True)
class Choices:
    pools: list[PoolInfo]
    volumes: list[VolumeInfo]
    networks: list[NetworkInfo]
    bridges: list[str]


def load_choices(manager) -> Choices:
    pools = list_pools(manager)
    volumes: list[VolumeInfo] = []
    for pool in pools:
        if pool.active:
            volumes.extend(list_volumes(manager, pool.name))
    return Choices(pools, volumes, list_networks(manager), host_bridges())


def is_iso(volume: VolumeInfo) -> bool:
    return volume.format == "iso" or volume.name.lower().endswith(".iso")


def build_spec(values: dict[str, Any]) -> NewDomainSpec:
    """Parsed form values → spec; one-line ValidationError on a combination that cannot work."""
    name = values["name"]
    disk_choice = values["disk"]
    disk: VolumeRef | None = None
    new_gib: int | None = None
    if disk_choice.startswith("new:"):
        disk = VolumeRef(disk_choice[4:], f"{name}.qcow2")
        new_gib = values["size"]
    elif disk_choice.startswith("vol:"):
        pool, _, volume = disk_choice[4:].partition("/")
        disk = VolumeRef(pool, volume)
    iso = None
    if values["iso"].startswith("vol:"):
        pool, _, volume = values["iso"][4:].partition("/")
        iso = VolumeRef(pool, volume)
    network, kind = None, "network"
    if values["network"].startswith("net:"):
        network = values["network"][4:]
    elif values["network"].startswith("br:"):
        network, kind = values["network"][3:], "bridge"
    return NewDomainSpec(name=name, vcpus=values["vcpus"], memory_mib=values["memory"], disk=disk,
                         new_disk_gib=new_gib, iso=iso, network=network, network_kind=kind,
                         firmware=values["firmware"])


LOADING = [("loading…", "loading")]  # anything without a prefix below means "none"


class CreateVmScreen(Form):
    """The one form, with its choices loaded from libvirt and the VM created while it stays open
    (a libvirt error shows under the form, the input kept)."""

    def __init__(self) -> None:
        super().__init__("New VM", [
            Field("name", "Name", "", parse=names.vm_name),
            vcpus_field(2),
            memory_field(2048),
            Field("size", "New disk (GiB)", "20", parse=lambda t: names.whole_number(t, "disk size (GiB)", 1, 65536)),
            choice("disk", "Disk", LOADING),
            choice("iso", "Boot ISO", LOADING),
            choice("network", "Network", LOADING),
            choice("firmware", "Firmware", [("BIOS", "bios"), ("UEFI", "uefi")]),
        ], check=build_spec, submit="create", wide=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.load()

    @work(thread=True, exclusive=True, group="create-choices", exit_on_error=False, description="list pools")
    def load(self) -> None:
        try:
            choices = load_choices(self.app.manager)  # type: ignore[attr-defined]
        except HyperconsoleError as exc:
            self.app.call_from_thread(self.show_error, f"cannot list pools and networks: {exc}")
            return
        self.app.call_from_thread(self._fill, choices)

    def _fill(self, choices: Choices) -> None:
        disks = [(f"new qcow2 disk in pool {p.name}", f"new:{p.name}") for p in choices.pools if p.active]
        disks += [(f"existing volume {v.pool}/{v.name}", f"vol:{v.pool}/{v.name}")
                  for v in choices.volumes if not is_iso(v)]
        disks.append(("no disk", "none"))
        isos = [("none", "none")] + [(f"{v.pool}/{v.name}", f"vol:{v.pool}/{v.name}")
                                     for v in choices.volumes if is_iso(v)]
        nets = [(f"libvirt network {n.name}", f"net:{n.name}") for n in choices.networks]
        nets += [(f"host bridge {b}", f"br:{b}") for b in choices.bridges]
        nets.append(("no network", "none"))
        for key, options in (("disk", disks), ("iso", isos), ("network", nets)):
            self.set_choices(key, options)

    def submitted(self, result: NewDomainSpec) -> None:
        self.show_error("creating…")
        self.create(result, self.app.begin_task(f"create {result.name}", result.name))  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="create", exit_on_error=False, description="create VM")
    def create(self, spec: NewDomainSpec, task: str) -> None:
        label = f"create {spec.name}"
        try:
            result = create_domain(self.app.manager, spec)  # type: ignore[attr-defined]
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone(label, error=str(exc), task=task))
            self.app.call_from_thread(self.show_error, str(exc))
            return
        self.app.post_message(ActionDone(label, detail=result.summary(), uuid=result.uuid, task=task))
        self.app.call_from_thread(self.dismiss, None)
