"""`t` on a VM: its snapshots as a tree; create, revert (asks), delete (asks)."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from hyperconsole import names, presenters
from hyperconsole.errors import HyperconsoleError
from hyperconsole.messages import ActionDone
from hyperconsole.sanitize import visible
from hyperconsole.virt import snapshots
from hyperconsole.virt.models import DomainInfo
from hyperconsole.virt.snapshots import SnapshotInfo
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.form import Field, Form


class SnapshotsScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("n", "create", "New snapshot", id="snapshots.create"),
        Binding("r", "revert", "Revert", id="snapshots.revert"),
        Binding("delete", "delete", "Delete", id="snapshots.delete"),
        Binding("escape,q", "close", "Close", id="snapshots.close"),
    ]
    MUTATING = frozenset({"create", "revert", "delete"})

    def __init__(self, info: DomainInfo) -> None:
        super().__init__()
        self.info = info
        self.snapshots: list[SnapshotInfo] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(presenters.plain(f"Snapshots of {self.info.name}", "bold"), classes="box-title")
            table: DataTable = DataTable(id="snap-table", cursor_type="row")
            table.add_column("Name", key="name")
            table.add_column("State", key="state")
            table.add_column("Created", key="created")
            table.add_column("Description", key="description")
            yield table
            yield Static("", id="snap-status", markup=False)
            yield Static("n new · r revert · del delete · esc close", classes="hint")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.app.view.readonly:  # type: ignore[attr-defined]
            return False
        return True

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.load()

    @work(thread=True, exclusive=True, group="snapshots", exit_on_error=False, description="list snapshots")
    def load(self) -> None:
        try:
            snaps = snapshots.list_snapshots(self.app.manager, self.info.uuid)  # type: ignore[attr-defined]
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._status, f"cannot list snapshots: {exc}")
            return
        self.app.call_from_thread(self._fill, snaps)

    def _status(self, text: str) -> None:
        self.query_one("#snap-status", Static).update(text)

    def _fill(self, snaps: list[SnapshotInfo]) -> None:
        import datetime as dt

        self.snapshots = snaps
        table = self.query_one(DataTable)
        table.clear()
        for snap in snaps:
            name = Text("  " * snap.depth + ("└ " if snap.depth else ""))
            name.append(visible(snap.name), "bold" if snap.current else "")
            if snap.current:
                name.append(" *", "green")
            created = dt.datetime.fromtimestamp(snap.creation_time).strftime("%Y-%m-%d %H:%M") if snap.creation_time else ""
            table.add_row(name, presenters.plain(snap.state), Text(created), presenters.plain(snap.description), key=snap.name)
        self._status(f"{len(snaps)} snapshot(s); * marks the current one" if snaps else "no snapshots yet")

    def current(self) -> SnapshotInfo | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key, _ = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0))
        return next((s for s in self.snapshots if s.name == key.value), None)

    def run_op(self, label: str, fn, *args) -> None:
        self._run_op(label, fn, args, self.app.begin_task(label, self.info.name))  # type: ignore[attr-defined]

    @work(thread=True, group="snapshot-ops", exit_on_error=False, description="snapshot operation")
    def _run_op(self, label: str, fn, args: tuple, task: str) -> None:
        try:
            fn(self.app.manager, self.info.uuid, *args)  # type: ignore[attr-defined]
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone(label, error=str(exc), uuid=self.info.uuid, task=task))
            self.app.call_from_thread(self._status, f"{label}: {exc}")
            return
        self.app.post_message(ActionDone(label, uuid=self.info.uuid, task=task))
        self.app.call_from_thread(self.load)

    def action_create(self) -> None:
        def answered(values: dict[str, str] | None) -> None:
            if values is not None:
                self.run_op(f"snapshot {values['name']}", snapshots.create_snapshot, values["name"], values["description"])

        self.app.push_screen(Form(f"New snapshot of {self.info.name}", [
            Field("name", "Name", "", parse=lambda t: names.object_name(t, "snapshot name")),
            Field("description", "Description", ""),
        ], submit="create"), answered)

    def action_revert(self) -> None:
        snap = self.current()
        if snap is None:
            return

        def answered(ok: bool | None) -> None:
            if ok:
                self.run_op(f"revert to {snap.name}", snapshots.revert_snapshot, snap.name)

        self.app.push_screen(ConfirmDialog(f"Revert {self.info.name} to snapshot {snap.name}?",
                                           "The VM's current state is lost unless it has a snapshot."), answered)

    def action_delete(self) -> None:
        snap = self.current()
        if snap is None:
            return

        def answered(ok: bool | None) -> None:
            if ok:
                self.run_op(f"delete snapshot {snap.name}", snapshots.delete_snapshot, snap.name)

        self.app.push_screen(ConfirmDialog(f"Delete snapshot {snap.name} of {self.info.name}?",
                                           "Its children are kept and re-parented."), answered)

    def action_close(self) -> None:
        self.dismiss(None)

    @on(DataTable.RowSelected)
    def _ignore(self, event: DataTable.RowSelected) -> None:
        event.stop()
