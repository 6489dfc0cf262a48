"""`enter` on a VM: disks, NICs, graphics with an ssh -L hint, snapshots — read on demand."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from hyperconsole import presenters
from hyperconsole.errors import HyperconsoleError
from hyperconsole.host.session import tunnel_host
from hyperconsole.sanitize import visible
from hyperconsole.virt import lifecycle
from hyperconsole.virt.domains import DomainDetails
from hyperconsole.virt.models import DomainInfo


def _section(title: str) -> Text:
    return Text(f"\n{title}", "bold underline")


def render_details(info: DomainInfo, details: DomainDetails, host: str) -> Group:
    parts: list = []
    head = Table.grid(padding=(0, 2))
    head.add_row("name", presenters.plain(details.name, wrap=True))
    head.add_row("uuid", Text(details.uuid))
    head.add_row("state", Text(info.state.label, presenters.STATE_STYLES.get(info.state, "")))
    head.add_row("vCPUs / memory", f"{info.vcpus} / {presenters.size_kib(info.memory_kib)}")
    head.add_row("firmware", Text(details.firmware + (" (NVRAM)" if details.has_nvram else "")))
    if details.description:
        head.add_row("description", presenters.plain(details.description, wrap=True))
    parts.append(head)

    parts.append(_section("Disks"))
    disks = Table("target", "device", "bus", "format", "source", box=None, padding=(0, 1))
    for disk in details.disks:
        source = disk.source or "(empty)"
        if disk.pool:
            source = f"{disk.pool}/{disk.volume}"
        disks.add_row(*(presenters.plain(x) for x in (disk.target, disk.device, disk.bus, disk.format)),
                      presenters.plain(source + ("  [ro]" if disk.readonly else ""), wrap=True))
    parts.append(disks if details.disks else Text("none"))

    parts.append(_section("Network interfaces"))
    nics = Table("MAC", "type", "source", "model", "IP", box=None, padding=(0, 1))
    for nic in details.nics:
        nics.add_row(*(presenters.plain(x) for x in (nic.mac, nic.kind, nic.source, nic.model)),
                     presenters.plain(", ".join(nic.addresses) or "unknown", wrap=True))
    parts.append(nics if details.nics else Text("none"))

    parts.append(_section("Graphics"))
    if details.graphics:
        for graphics in details.graphics:
            port = graphics.port if graphics.port and graphics.port > 0 else "auto"
            parts.append(Text(f"{graphics.kind.upper()}  port {port}  listen {graphics.listen or '127.0.0.1'}"))
            parts.append(Text("  " + graphics.tunnel_hint(host), "italic"))
    else:
        parts.append(Text("none"))

    parts.append(_section("Snapshots"))
    if details.snapshots:
        for snap in details.snapshots:
            line = Text("  " * snap.depth + ("└ " if snap.depth else ""))
            line.append(visible(snap.name), "bold" if snap.current else "")
            if snap.current:
                line.append("  (current)", "green")
            if snap.description:
                line.append(f"  {visible(snap.description)}", "italic")
            parts.append(line)
    else:
        parts.append(Text("none"))
    return Group(*parts)


class DetailsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,enter", "close", "Close", id="details.close")]

    def __init__(self, info: DomainInfo) -> None:
        super().__init__()
        self.info = info

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(presenters.plain(f"VM {self.info.name}", "bold"), classes="box-title")
            with VerticalScroll(id="details-body"):
                yield Static("loading…", id="details")
            yield Static("esc closes", classes="hint")

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, description="read VM details")
    def load(self) -> None:
        try:
            details = lifecycle.get_details(self.app.manager_of(self.info.host), self.info.uuid)  # type: ignore[attr-defined]
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._show, presenters.plain(f"cannot read details: {exc}", "red", wrap=True))
            return
        host = tunnel_host(lifecycle.ssh_target(self.app.manager_of(self.info.host).uri))  # type: ignore[attr-defined]
        self.app.call_from_thread(self._show, render_details(self.info, details, host))

    def _show(self, renderable) -> None:
        self.query_one("#details", Static).update(renderable)

    def action_close(self) -> None:
        self.dismiss(None)
