"""`n`: create a VM — name, vCPUs, memory, disk (new in a pool or an existing volume), boot ISO,
network (libvirt network or host bridge), firmware. Everything is validated before any call."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static

from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.host.bridges import host_bridges
from hyperconsole.messages import ActionDone
from hyperconsole.screens.edit import parse_positive_int
from hyperconsole.virt.create import NewDomainSpec, VolumeRef, create_domain
from hyperconsole.virt.networks import NetworkInfo, list_networks
from hyperconsole.virt.pools import PoolInfo, list_pools
from hyperconsole.virt.volumes import VolumeInfo, list_volumes


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


def build_spec(values: dict[str, str]) -> NewDomainSpec:
    """Form values → spec; one-line ValidationError on anything malformed."""
    name = values["name"]
    vcpus = parse_positive_int(values["vcpus"], "vCPUs")
    memory = parse_positive_int(values["memory"], "memory")
    disk_choice = values["disk"]
    disk: VolumeRef | None = None
    new_gib: int | None = None
    if disk_choice.startswith("new:"):
        disk = VolumeRef(disk_choice[4:], f"{name}.qcow2")
        new_gib = parse_positive_int(values["size"], "disk size")
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
    if values["firmware"] not in ("bios", "uefi"):
        raise ValidationError("firmware must be bios or uefi")
    return NewDomainSpec(name=name, vcpus=vcpus, memory_mib=memory, disk=disk, new_disk_gib=new_gib,
                         iso=iso, network=network, network_kind=kind, firmware=values["firmware"])


class CreateVmScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("ctrl+s", "create", "Create", id="create.submit"),
        Binding("escape", "cancel", "Cancel", id="create.cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static("New VM", classes="box-title")
            with VerticalScroll():
                for key, label, value in (("name", "Name", ""), ("vcpus", "vCPUs", "2"),
                                          ("memory", "Memory (MiB)", "2048"), ("size", "New disk (GiB)", "20")):
                    with Horizontal(classes="row"):
                        yield Static(label, classes="label")
                        yield Input(value, id=key)
                for key, label in (("disk", "Disk"), ("iso", "Boot ISO"), ("network", "Network")):
                    with Horizontal(classes="row"):
                        yield Static(label, classes="label")
                        yield Select([("loading…", "loading")], id=key, allow_blank=False)
                with Horizontal(classes="row"):
                    yield Static("Firmware", classes="label")
                    yield Select([("BIOS", "bios"), ("UEFI", "uefi")], id="firmware", value="bios",
                                 allow_blank=False)
            yield Static("", id="create-error", classes="error", markup=False)
            with Horizontal(classes="row"):
                yield Button("Create (ctrl+s)", id="create", variant="success")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self.load()

    @work(thread=True, exclusive=True, group="create-choices", exit_on_error=False, description="list pools")
    def load(self) -> None:
        try:
            choices = load_choices(self.app.manager)  # type: ignore[attr-defined]
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._error, f"cannot list pools and networks: {exc}")
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
            select = self.query_one(f"#{key}", Select)
            select.set_options(options)
            select.value = options[0][1]

    def _error(self, text: str) -> None:
        self.query_one("#create-error", Static).update(text)

    def values(self) -> dict[str, str]:
        out = {key: self.query_one(f"#{key}", Input).value for key in ("name", "vcpus", "memory", "size")}
        for key in ("disk", "iso", "network", "firmware"):
            value = self.query_one(f"#{key}", Select).value
            out[key] = value if isinstance(value, str) and value != "loading" else "none"
        return out

    def action_create(self) -> None:
        try:
            spec = build_spec(self.values())
        except ValidationError as exc:
            self._error(str(exc))
            return
        self._error("creating…")
        self.create(spec)

    @work(thread=True, exclusive=True, group="create", exit_on_error=False, description="create VM")
    def create(self, spec: NewDomainSpec) -> None:
        try:
            result = create_domain(self.app.manager, spec)  # type: ignore[attr-defined]
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._error, str(exc))
            return
        self.app.post_message(ActionDone(f"create {spec.name}", detail=result.summary(), uuid=result.uuid))
        self.app.call_from_thread(self.dismiss, None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_create()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "create":
            self.action_create()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)
