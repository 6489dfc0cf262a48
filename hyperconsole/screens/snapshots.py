"""`t` on a VM: its snapshots as a tree (the snapshots kind of the resource view); create,
revert (asks), delete (asks)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from hyperconsole import names, resources
from hyperconsole.resources import Targets
from hyperconsole.screens.base import ResourceActions
from hyperconsole.virt import snapshots
from hyperconsole.virt.models import DomainInfo
from hyperconsole.virt.snapshots import SnapshotInfo
from hyperconsole.widgets.form import Field
from hyperconsole.widgets.resource_view import ResourceView


class SnapshotsScreen(ResourceActions, ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close", id="snapshots.close")]

    def __init__(self, info: DomainInfo) -> None:
        super().__init__()
        self.info = info
        self.acting_host = info.host  # its listings and jobs go to the VM's own host

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            view = resources.SNAPSHOTS.view()
            view.title = f"Snapshots of {self.info.name}"
            yield view
            yield Static("", id="snap-status", markup=False)
            yield Static(self.hint(resources.SNAPSHOTS.actions), classes="hint", markup=False)
        yield Footer()  # over the pane's: the keys that work here

    @property
    def view(self) -> ResourceView:
        return self.query_one("#snapshots", ResourceView)

    @property
    def snapshots(self) -> list[SnapshotInfo]:
        return list(self.view.items.values())

    def on_mount(self) -> None:
        self.view.focus()
        self.load_snapshots()

    def load_snapshots(self) -> None:
        self.load(resources.SNAPSHOTS, self.info.uuid)

    def _status(self, text: str) -> None:
        self.query_one("#snap-status", Static).update(text)

    def show_snapshots(self, snaps: tuple[SnapshotInfo, ...], _uuid: str) -> None:
        self.view.set_items(resources.SNAPSHOTS.rows(snaps))  # in the listing's tree order
        self._status(f"{len(snaps)} snapshot(s); * marks the current one" if snaps else "no snapshots yet")

    def run_op(self, label: str, fn, *args) -> None:
        """`fn(manager, uuid, *args)` on this VM; the list is read again after it."""
        self.run_job(label, fn, self.info.uuid, *args, uuid=self.info.uuid, target=resources.on_host(self.info),
                     then=self.load_snapshots)

    def act_snapshots_create(self, _targets: Targets) -> None:
        self.ask_form(f"New snapshot of {self.info.name}", [
            Field("name", "Name", "", parse=lambda t: names.object_name(t, "snapshot name")),
            Field("description", "Description", ""),
        ], lambda v: self.run_op(f"snapshot {v['name']}", snapshots.create_snapshot, v["name"], v["description"]),
            submit="create")

    def act_snapshots_revert(self, targets: Targets) -> None:
        snap = targets.items[0]
        self.confirm("snapshots.revert", targets, f"{self.info.name}'s current state is lost unless it has a "
                     "snapshot.", lambda ok: ok and self.run_op(f"revert to {snap.name}", snapshots.revert_snapshot, snap.name))

    def act_snapshots_delete(self, targets: Targets) -> None:
        snap = targets.items[0]
        self.confirm("snapshots.delete", targets, f"Of {self.info.name}; its children are kept and re-parented.",
                     lambda ok: ok and self.run_op(f"delete snapshot {snap.name}", snapshots.delete_snapshot, snap.name))

    def action_close(self) -> None:
        self.dismiss(None)
