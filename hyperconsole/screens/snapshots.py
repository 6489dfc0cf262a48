"""`t` on a VM: its snapshots as a tree (the snapshots kind of the resource view); create,
revert (asks), delete (asks)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from hyperconsole import names, resources
from hyperconsole.errors import HyperconsoleError
from hyperconsole.messages import ActionDone
from hyperconsole.resources import Targets
from hyperconsole.screens.base import ResourceActions
from hyperconsole.virt import snapshots
from hyperconsole.virt.models import DomainInfo
from hyperconsole.virt.snapshots import SnapshotInfo
from hyperconsole.widgets.form import Field, Form
from hyperconsole.widgets.resource_view import ResourceView


class SnapshotsScreen(ResourceActions, ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close", id="snapshots.close")]

    def __init__(self, info: DomainInfo) -> None:
        super().__init__()
        self.info = info

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
        self._run_op(label, fn, args, self.app.begin_task(label, self.info.name))  # type: ignore[attr-defined]

    @work(thread=True, group="snapshot-ops", exit_on_error=False, description="snapshot operation")
    def _run_op(self, label: str, fn, args: tuple, task: str) -> None:
        try:
            fn(self.hc.manager, self.info.uuid, *args)
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone(label, error=str(exc), uuid=self.info.uuid, task=task))
            self.app.call_from_thread(self._status, f"{label}: {exc}")
            return
        self.app.post_message(ActionDone(label, uuid=self.info.uuid, task=task))
        self.app.call_from_thread(self.load_snapshots)

    def act_snapshots_create(self, _targets: Targets) -> None:
        def answered(values: dict[str, str] | None) -> None:
            if values is not None:
                self.run_op(f"snapshot {values['name']}", snapshots.create_snapshot, values["name"], values["description"])

        self.app.push_screen(Form(f"New snapshot of {self.info.name}", [
            Field("name", "Name", "", parse=lambda t: names.object_name(t, "snapshot name")),
            Field("description", "Description", ""),
        ], submit="create"), answered)

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
