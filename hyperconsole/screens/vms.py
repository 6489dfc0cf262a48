"""VM list: live table updated in place by UUID, filter, selection, lifecycle keys."""

from __future__ import annotations

import subprocess
from typing import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input

from hyperconsole import presenters
from hyperconsole.names import vm_name
from hyperconsole.screens.base import PaneScreen
from hyperconsole.virt import clone, lifecycle
from hyperconsole.virt.models import DomainInfo, DomainState
from hyperconsole.widgets.confirm import ConfirmDialog


class VmsScreen(PaneScreen):
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="vms.filter"),
        Binding("enter", "details", "Details", id="vms.details"),
        Binding("space", "select", "Select", id="vms.select"),
        Binding("s", "start", "Start", id="vms.start"),
        Binding("x", "shutdown", "Shutdown", id="vms.shutdown"),
        Binding("X", "force_off", "Force off", id="vms.force_off"),
        Binding("r", "reboot", "Reboot", id="vms.reboot"),
        Binding("p", "pause", "Pause/resume", id="vms.pause"),
        Binding("a", "autostart", "Autostart", id="vms.autostart"),
        Binding("c", "console", "Console", id="vms.console"),
        Binding("n", "new", "New VM", id="vms.new"),
        Binding("e", "edit", "Edit", id="vms.edit"),
        Binding("t", "snapshots", "Snapshots", id="vms.snapshots"),
        Binding("C", "clone", "Clone", id="vms.clone"),
        Binding("S", "save", "Save state", id="vms.save"),
        Binding("delete", "delete", "Delete", id="vms.delete"),
        Binding("escape", "clear", "Clear", show=False, id="vms.clear"),
    ]
    MUTATING = frozenset({"start", "shutdown", "force_off", "reboot", "pause", "autostart",
                          "console", "new", "edit", "delete", "clone", "save"})

    def __init__(self) -> None:
        super().__init__()
        self.selected: set[str] = set()
        self.filter_text = ""
        self._cells: dict[str, dict[str, object]] = {}

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="filter by name or state — enter keeps, esc clears", id="filter",
                    classes="hidden")
        table: DataTable = DataTable(id="vms", cursor_type="row", zebra_stripes=True)
        for key, label, width in presenters.COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table

    def on_mount(self) -> None:
        self.query_one("#vms", DataTable).focus()

    # -- rendering ---------------------------------------------------------------------------------
    @property
    def table(self) -> DataTable:
        return self.query_one("#vms", DataTable)

    def _matches(self, info: DomainInfo) -> bool:
        needle = self.filter_text.casefold()
        return not needle or needle in info.name.casefold() or needle in info.state.label

    def render_data(self, kinds: frozenset[str]) -> None:
        if not kinds & {"all", "domains", "selection"}:
            return
        domains = self.hc.view.domains
        diff = self.hc.view.last_diff
        if kinds == {"domains"} and self._cells:
            # A tick: touch only the rows the sampler says were added, removed or changed.
            touched = diff.added | diff.changed | (diff.removed & self._cells.keys())
        else:  # first paint, filter or selection change, pane shown again: every row
            touched = set(domains) | set(self._cells)
        self._sync_rows(touched, domains)
        self.selected &= set(domains)

    def _sync_rows(self, uuids: set[str], domains: dict[str, DomainInfo]) -> None:
        table = self.table
        cursor_uuid = self.cursor_uuid
        reorder = False
        for uuid in uuids:
            info = domains.get(uuid)
            old = self._cells.get(uuid)
            if info is None or not self._matches(info):
                if old is not None:
                    table.remove_row(uuid)
                    del self._cells[uuid]
                continue
            cells = presenters.domain_cells(info, uuid in self.selected)
            if old is None:
                table.add_row(*cells.values(), key=uuid)
                reorder = True
            else:
                for column, cell in cells.items():
                    if old[column] != cell:  # only cells that changed are touched
                        table.update_cell(uuid, column, cell)
                reorder = reorder or old["name"] != cells["name"]
            self._cells[uuid] = cells
        if reorder:
            table.sort("name", key=lambda text: (text.plain.casefold(), text.plain))
            if cursor_uuid in self._cells:
                table.move_cursor(row=table.get_row_index(cursor_uuid), animate=False)

    @property
    def cursor_uuid(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            key, _ = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0))
        except Exception:
            return None
        return key.value

    def _info(self, uuid: str | None) -> DomainInfo | None:
        return self.hc.view.domains.get(uuid) if uuid else None

    def targets(self) -> list[DomainInfo]:
        """The selection if there is one, else the row under the cursor."""
        domains = self.hc.view.domains
        if self.selected:
            return [domains[u] for u in sorted(self.selected, key=lambda u: presenters.sort_key(domains[u])) if u in domains]
        info = self._info(self.cursor_uuid)
        return [info] if info else []

    def current(self) -> DomainInfo | None:
        return self._info(self.cursor_uuid)

    # -- filter and selection ------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.render_data(frozenset({"domains"}))

    @on(Input.Submitted, "#filter")
    def _filter_kept(self, _event: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        if not box.value:
            box.add_class("hidden")
        self.table.focus()

    def action_clear(self) -> None:
        box = self.query_one("#filter", Input)
        if box.value or not box.has_class("hidden"):
            box.value = ""
            box.add_class("hidden")
            self.filter_text = ""
            self.render_data(frozenset({"domains"}))
        elif self.selected:
            self.selected.clear()
            self.render_data(frozenset({"selection"}))
        self.table.focus()

    def key_escape(self) -> None:
        # The filter box swallows bindings while focused; esc must still clear it.
        if self.query_one("#filter", Input).has_focus:
            self.action_clear()

    def action_select(self) -> None:
        uuid = self.cursor_uuid
        if uuid is None:
            return
        self.selected ^= {uuid}
        self._sync_rows({uuid}, self.hc.view.domains)
        table = self.table
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    # -- jobs ----------------------------------------------------------------------------------------
    def run_op(self, label: str, fn: Callable[..., object], uuid: str | None, *args: object) -> None:
        self.run_job(label, fn, *args, uuid=uuid)

    def _each(self, verb: str, fn: Callable, allowed: Callable[[DomainInfo], bool]) -> None:
        targets = self.targets()
        if not targets:
            self.notify("no VM under the cursor", severity="warning")
            return
        skipped = [t.name for t in targets if not allowed(t)]
        for info in targets:
            if allowed(info):
                self.run_op(f"{verb} {info.name}", fn, info.uuid, info.uuid)
        if skipped:
            self.notify(f"{verb}: skipped {', '.join(skipped)} (not in a state for it)",
                        severity="warning", markup=False)

    def action_start(self) -> None:
        self._each("start", lifecycle.start, lambda d: d.state in (DomainState.SHUTOFF, DomainState.CRASHED, DomainState.PMSUSPENDED))

    def action_shutdown(self) -> None:
        self._each("shutdown", lifecycle.shutdown, lambda d: d.state in (DomainState.RUNNING, DomainState.BLOCKED, DomainState.PAUSED))

    def action_reboot(self) -> None:
        self._each("reboot", lifecycle.reboot, lambda d: d.state is DomainState.RUNNING)

    def action_pause(self) -> None:
        for info in self.targets():
            if info.state is DomainState.PAUSED:
                self.run_op(f"resume {info.name}", lifecycle.resume, info.uuid, info.uuid)
            elif info.state in (DomainState.RUNNING, DomainState.BLOCKED):
                self.run_op(f"pause {info.name}", lifecycle.pause, info.uuid, info.uuid)
            else:
                self.notify(f"{info.name} is {info.state.label}: nothing to pause", severity="warning", markup=False)

    def action_autostart(self) -> None:
        for info in self.targets():
            if not info.persistent:
                self.notify(f"{info.name} is transient: autostart needs a defined VM", severity="warning", markup=False)
                continue
            self.run_op(f"autostart {'off' if info.autostart else 'on'} {info.name}", lifecycle.set_autostart,
                        info.uuid, info.uuid, not info.autostart)

    def action_force_off(self) -> None:
        targets = [t for t in self.targets() if t.state.is_active]
        if not targets:
            self.notify("force off: no running VM selected", severity="warning")
            return
        names = ", ".join(t.name for t in targets)

        def answered(ok: bool | None) -> None:
            if ok:
                for info in targets:
                    self.run_op(f"force off {info.name}", lifecycle.force_off, info.uuid, info.uuid)

        self.app.push_screen(ConfirmDialog(f"Force off {names}?",
                                           "Like pulling the power cord: unsaved guest data is lost."), answered)

    def action_delete(self) -> None:
        info = self.current()
        if info is None:
            return

        def answered(result) -> None:
            ok, with_storage = result
            if ok:
                self.selected.discard(info.uuid)
                self.run_op(f"delete {info.name}", lifecycle.delete, info.uuid, info.uuid, with_storage)

        detail = "Its definition, snapshots and saved state are removed."
        if info.state.is_active:
            detail = "It is running and will be forced off first. " + detail
        self.app.push_screen(ConfirmDialog(f"Delete VM {info.name}?", detail,
                                           option="also delete its disk volumes"), answered)

    def action_console(self) -> None:
        info = self.current()
        if info is None:
            return
        if info.state not in (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED):
            self.notify(f"{info.name} is {info.state.label}: start it first", severity="warning", markup=False)
            return
        if self.hc.manager.uri.startswith("test:"):
            # virsh would only fail after the screen was handed over: say why up front.
            self.notify("This host is libvirt's test driver (the demo): its VMs are simulated, with no guest "
                        "running and so no serial console to attach to. On a real host, c opens the VM's "
                        "serial console (ctrl+] returns here).", title=f"No console for {info.name}",
                        timeout=12, markup=False)
            return
        command = lifecycle.console_command(self.hc.manager.uri, info.uuid)
        try:
            with self.app.suspend():
                print(f"Serial console of {info.name}. Leave with Ctrl+] to return to hyperconsole.", flush=True)
                code = subprocess.call(command)
        except Exception as exc:  # suspend unsupported (no real terminal) or virsh missing
            self.notify(f"console: {exc}", severity="error", markup=False)
            return
        if code != 0:
            self.notify(f"console: virsh exited with status {code}", severity="error")

    def action_clone(self) -> None:
        info = self.current()
        if info is None:
            return
        if info.state is not DomainState.SHUTOFF:
            self.notify(f"{info.name} is {info.state.label}: shut it off before cloning", severity="warning",
                        markup=False)
            return

        from hyperconsole.widgets.form import Field

        self.ask_form(f"Clone {info.name} (disks are copied in their pools)",
                      [Field("name", "New name", f"{info.name}-clone", parse=vm_name)],
                      lambda v: self.run_op(f"clone {info.name}", clone.clone, info.uuid, info.uuid, v["name"]),
                      submit="clone")

    def action_save(self) -> None:
        """Managed save: the VM's memory goes to disk; `s` later restores it."""
        self._each("save state", lifecycle.managed_save,
                   lambda d: d.state in (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED))

    def action_details(self) -> None:
        from hyperconsole.screens.details import DetailsScreen

        info = self.current()
        if info is not None:
            self.app.push_screen(DetailsScreen(info))

    def action_snapshots(self) -> None:
        from hyperconsole.screens.snapshots import SnapshotsScreen

        info = self.current()
        if info is not None:
            self.app.push_screen(SnapshotsScreen(info))

    def action_edit(self) -> None:
        from hyperconsole.screens.edit import edit_resources

        info = self.current()
        if info is not None:
            edit_resources(self, info)

    def action_new(self) -> None:
        from hyperconsole.screens.create import CreateVmScreen

        self.app.push_screen(CreateVmScreen())

    @on(DataTable.RowSelected, "#vms")
    def _row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_details()
