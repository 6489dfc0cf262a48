"""Storage pane (`4`): pools with capacity bars and low-space warnings, and the volumes of the
pool under the cursor, listed once and read a page at a time so a pool of thousands of volumes
does not stall the console. Everything here goes through libvirt."""

from __future__ import annotations

import threading
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable, ProgressBar, Static

from hyperconsole import names, presenters
from hyperconsole.errors import HyperconsoleError
from hyperconsole.messages import ActionDone
from hyperconsole.screens.base import PaneScreen
from hyperconsole.virt import inventory, upload
from hyperconsole.virt import pools as pool_ops
from hyperconsole.virt import volumes as volume_ops
from hyperconsole.virt.volumes import VolumeInfo
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.form import Field, choice
from hyperconsole.widgets.tablesync import sync_rows

PAGE = 200
LEVEL_STYLE = {pool_ops.SpaceLevel.OK: "green", pool_ops.SpaceLevel.WARN: "yellow",
               pool_ops.SpaceLevel.CRITICAL: "bold red", pool_ops.SpaceLevel.UNKNOWN: "bright_black"}


def usage_bar(percent: float | None, level: pool_ops.SpaceLevel, width: int = 16) -> Text:
    if percent is None:
        return Text(presenters.DASH)
    filled = round(width * percent / 100)
    bar = Text("█" * filled, LEVEL_STYLE[level])
    bar.append("░" * (width - filled), "bright_black")
    bar.append(f" {percent:4.0f}%")
    return bar


def pool_cells(pool: pool_ops.PoolInfo) -> list[Text]:
    return [
        presenters.plain(pool.name, "bold"), presenters.plain(pool.kind),
        presenters.plain(pool.state, "green" if pool.active else "bright_black"),
        presenters.plain("yes" if pool.autostart else "no"),
        presenters.plain(presenters.size_bytes(pool.capacity) if pool.active else presenters.DASH),
        presenters.plain(presenters.size_bytes(pool.available) if pool.active else presenters.DASH),
        usage_bar(pool.used_percent, pool.level),
        presenters.plain(presenters.DASH if pool.volume_count is None else str(pool.volume_count)),
        presenters.plain(pool.path),
    ]


def volume_cells(vol: VolumeInfo, users: tuple[str, ...]) -> list[Text]:
    return [
        presenters.plain(vol.name), presenters.plain(vol.format or presenters.DASH),
        presenters.plain(presenters.size_bytes(vol.capacity)), presenters.plain(presenters.size_bytes(vol.allocation)),
        presenters.plain(", ".join(users)), presenters.plain(vol.path),
    ]


class StorageScreen(PaneScreen):
    BINDINGS = [
        Binding("tab", "switch_table", "Switch table", id="storage.switch"),
        Binding("s", "start", "Start pool", id="storage.start"),
        Binding("x", "stop", "Stop pool", id="storage.stop"),
        Binding("R", "refresh", "Refresh pool", id="storage.refresh"),
        Binding("a", "autostart", "Autostart", id="storage.autostart"),
        Binding("N", "new_pool", "New pool", id="storage.new_pool"),
        Binding("n", "new_volume", "New volume", id="storage.new_volume"),
        Binding("g", "grow", "Grow volume", id="storage.grow"),
        Binding("C", "clone", "Clone volume", id="storage.clone"),
        Binding("U", "upload", "Upload", id="storage.upload"),
        Binding("ctrl+x", "cancel_upload", "Cancel upload", id="storage.cancel_upload"),
        Binding("delete", "delete", "Delete", id="storage.delete"),
    ]
    MUTATING = frozenset({"start", "stop", "refresh", "autostart", "new_pool", "new_volume", "grow", "clone",
                          "upload", "cancel_upload", "delete"})

    def __init__(self) -> None:
        super().__init__()
        self.pools: list[pool_ops.PoolInfo] = []
        self.pool_name: str | None = None
        self.listing: volume_ops.VolumeListing | None = None
        self.volumes: list[VolumeInfo] = []
        self.usage: inventory.Usage | None = None
        self._upload_cancel: threading.Event | None = None
        self._loading_more = False

    def compose_body(self) -> ComposeResult:
        yield Static("Storage pools  (s start · x stop · R refresh · a autostart · N new · del delete)",
                     classes="box-title")
        pools: DataTable = DataTable(id="pools", cursor_type="row", zebra_stripes=True)
        for label in ("Name", "Type", "State", "Autostart", "Capacity", "Available", "Used", "Volumes", "Path"):
            pools.add_column(label, key=label.lower())
        yield pools
        yield Static("", id="space-warning", classes="error")
        yield Static("Volumes", id="volumes-title", classes="box-title")
        volumes: DataTable = DataTable(id="volumes", cursor_type="row", zebra_stripes=True)
        for label in ("Name", "Format", "Capacity", "Allocation", "Used by", "Path"):
            volumes.add_column(label, key=label.split()[0].lower())
        yield volumes
        yield ProgressBar(id="upload", total=100, show_eta=True, classes="hidden")

    def on_mount(self) -> None:
        self.query_one("#pools", DataTable).focus()

    # -- data ---------------------------------------------------------------------------------------
    def render_data(self, kinds: frozenset[str]) -> None:
        if kinds & {"all", "connection"}:
            self.load_pools()

    @work(thread=True, exclusive=True, group="pools", exit_on_error=False, description="list pools")
    def load_pools(self) -> None:
        try:
            pools = pool_ops.list_pools(self.hc.manager)
        except HyperconsoleError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        self.app.call_from_thread(self._show_pools, pools)

    def _show_pools(self, pools: list[pool_ops.PoolInfo]) -> None:
        self.pools = pools
        sync_rows(self.query_one("#pools", DataTable), {p.name: pool_cells(p) for p in pools})
        low = [f"{p.name} is {p.used_percent:.0f}% full" for p in pools
               if p.level in (pool_ops.SpaceLevel.WARN, pool_ops.SpaceLevel.CRITICAL)]
        self.query_one("#space-warning", Static).update(presenters.plain("Low space: " + "; ".join(low), wrap=True) if low else "")
        if self.pool_name is None and pools:
            self._select_pool(pools[0].name)

    @on(DataTable.RowHighlighted, "#pools")
    def _pool_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value != self.pool_name:
            self._select_pool(event.row_key.value)

    def _select_pool(self, name: str) -> None:
        self.pool_name = name
        self.listing = None
        self.volumes = []
        self._loading_more = False
        self.query_one("#volumes", DataTable).clear()
        self.load_volumes(name)

    @work(thread=True, exclusive=True, group="volumes", exit_on_error=False, description="list volumes")
    def load_volumes(self, pool_name: str) -> None:
        """One listing per pool, then the first page; more pages on demand (pagedown at the end)."""
        pool = next((p for p in self.pools if p.name == pool_name), None)
        if pool is not None and not pool.active:
            self.app.call_from_thread(self._show_volumes, pool_name, None, [], None, "pool is not running")
            return
        try:
            listing = volume_ops.open_volumes(self.hc.manager, pool_name)
            usage = inventory.usage(self.hc.manager)
            page = listing.page(0, PAGE)
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._show_volumes, pool_name, None, [], None, str(exc))
            return
        self.app.call_from_thread(self._show_volumes, pool_name, listing, page, usage, "")

    def _show_volumes(self, pool_name: str, listing, page: list[VolumeInfo], usage, error: str) -> None:
        if pool_name != self.pool_name:
            return  # the operator moved on to another pool meanwhile
        self.listing, self.usage = listing, usage
        if usage is not None and usage.problems:
            self.notify("\n".join(usage.problems), title="VM definitions", severity="warning", markup=False)
        self.volumes = page
        self._render_volumes(error)

    def _render_volumes(self, error: str = "") -> None:
        usage = self.usage
        rows = {v.name: volume_cells(v, usage.users_of(v) if usage else ()) for v in self.volumes}
        sync_rows(self.query_one("#volumes", DataTable), rows)
        total = len(self.listing) if self.listing is not None else 0
        shown = f"{len(self.volumes)} of {total}" if total > len(self.volumes) else str(total)
        title = f"Volumes of {self.pool_name}: {shown}  (n new · g grow · C clone · U upload · del delete)"
        if total > len(self.volumes):
            title += " · more load as the cursor nears the end"
        self.query_one("#volumes-title", Static).update(presenters.plain(error or title, "red" if error else "", wrap=True))

    @on(DataTable.RowHighlighted, "#volumes")
    def _volume_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # Pages are read as the operator scrolls: a pool of thousands never loads at once.
        table = event.data_table
        if table.cursor_row >= table.row_count - 10:
            self.load_more()

    def load_more(self) -> None:
        listing = self.listing
        if listing is not None and len(self.volumes) < len(listing) and not self._loading_more:
            self._loading_more = True
            self._more(listing, len(self.volumes))

    @work(thread=True, exclusive=True, group="volumes", exit_on_error=False, description="more volumes")
    def _more(self, listing: volume_ops.VolumeListing, offset: int) -> None:
        try:
            page = listing.page(offset, PAGE)
        except HyperconsoleError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            page = []
        self.app.call_from_thread(self._append, listing, page)

    def _append(self, listing, page: list[VolumeInfo]) -> None:
        self._loading_more = False
        if listing is self.listing:
            self.volumes = self.volumes + page
            self._render_volumes()

    def _reload(self) -> None:
        self.load_pools()
        if self.pool_name is not None:
            self._select_pool(self.pool_name)

    # -- selection helpers -----------------------------------------------------------------------
    def action_switch_table(self) -> None:
        pools, vols = self.query_one("#pools", DataTable), self.query_one("#volumes", DataTable)
        (vols if pools.has_focus else pools).focus()

    def _pool(self) -> pool_ops.PoolInfo | None:
        return next((p for p in self.pools if p.name == self.pool_name), None)

    def _volume(self) -> VolumeInfo | None:
        table = self.query_one("#volumes", DataTable)
        if not table.row_count:
            self.notify("no volume under the cursor (tab switches tables)", severity="warning")
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0))[0].value
        return next((v for v in self.volumes if v.name == key), None)

    def _job(self, label: str, fn, *args) -> None:
        self.run_job(label, fn, *args, then=self._reload)

    # -- pools -------------------------------------------------------------------------------------------
    def action_start(self) -> None:
        if (pool := self._pool()) is not None:
            self._job(f"start pool {pool.name}", pool_ops.start_pool, pool.name)

    def action_stop(self) -> None:
        if (pool := self._pool()) is not None:
            self.app.push_screen(ConfirmDialog(f"Stop pool {pool.name}?", "Its volumes stay on disk."),
                                 lambda ok: ok and self._job(f"stop pool {pool.name}", pool_ops.stop_pool, pool.name))

    def action_refresh(self) -> None:
        if (pool := self._pool()) is not None:
            self._job(f"refresh pool {pool.name}", pool_ops.refresh_pool, pool.name)

    def action_autostart(self) -> None:
        if (pool := self._pool()) is not None:
            on_ = not pool.autostart
            self._job(f"autostart {'on' if on_ else 'off'} {pool.name}", pool_ops.set_pool_autostart, pool.name, on_)

    def action_new_pool(self) -> None:
        self._kinds_then_form()

    @work(thread=True, exclusive=True, group="pool-kinds", exit_on_error=False, description="probe pool types")
    def _kinds_then_form(self) -> None:
        try:
            kinds = pool_ops.pool_kinds(self.hc.manager)
        except HyperconsoleError:
            kinds = ("dir",)
        self.app.call_from_thread(self._new_pool_form, kinds)

    def _new_pool_form(self, kinds: tuple[str, ...]) -> None:
        def then(v: dict[str, Any]) -> None:
            spec = pool_ops.NewPoolSpec(name=v["name"], kind=v["kind"], path=v["path"], device=v["device"].strip())
            self._job(f"create pool {spec.name}", pool_ops.create_pool, spec)

        self.ask_form("New storage pool", [
            Field("name", "Name", "", parse=names.pool_name),
            choice("kind", "Type", [(kind, kind) for kind in kinds]),
            Field("path", "Path", "/var/lib/libvirt/images/", parse=str.strip),
            Field("device", "Device (fs/logical)", ""),
        ], then, submit="create")

    # -- volumes -----------------------------------------------------------------------------------------
    def action_new_volume(self) -> None:
        if (pool := self._pool()) is None:
            return

        def then(v: dict[str, Any]) -> None:
            self._job(f"create {pool.name}/{v['name']}", volume_ops.create_volume, pool.name, v["name"], v["size"],
                      v["format"])

        self.ask_form(f"New volume in {pool.name}", [
            Field("name", "Name", "", parse=names.volume_name),
            Field("size", "Size (e.g. 20G)", "20G", parse=names.volume_size),
            choice("format", "Format", [("qcow2", "qcow2"), ("raw", "raw")]),
        ], then, submit="create")

    def action_grow(self) -> None:
        if self.pool_name is None or (vol := self._volume()) is None:
            return
        pool = self.pool_name

        def then(v: dict[str, Any]) -> None:
            self._job(f"grow {pool}/{vol.name}", volume_ops.resize_volume, pool, vol.name, v["size"])

        self.ask_form(f"Grow {vol.name} (now {presenters.size_bytes(vol.capacity)}; grow only)",
                      [Field("size", "New size", "", parse=names.volume_size)], then, submit="grow")

    def action_clone(self) -> None:
        if self.pool_name is None or (vol := self._volume()) is None:
            return
        pool = self.pool_name

        def then(v: dict[str, Any]) -> None:
            self._job(f"clone {pool}/{vol.name}", volume_ops.clone_volume, pool, vol.name, v["name"])

        self.ask_form(f"Clone {vol.name} in {pool}",
                      [Field("name", "New name", f"copy-of-{vol.name}", parse=names.volume_name)], then, submit="clone")

    def action_delete(self) -> None:
        if self.query_one("#pools", DataTable).has_focus:
            if (pool := self._pool()) is None:
                return

            def answered(result) -> None:
                ok, remove_dir = result
                if ok:
                    self._job(f"delete pool {pool.name}", pool_ops.delete_pool, pool.name, remove_dir)

            self.app.push_screen(ConfirmDialog(f"Delete pool {pool.name}?", "Stops it and removes its definition.",
                                               option="also remove its directory if empty"), answered)
            return
        if self.pool_name is None or (vol := self._volume()) is None:
            return
        pool = self.pool_name
        users = self.usage.users_of(vol) if self.usage else ()
        detail = ("Used by VM " + ", ".join(users) + ": it will be missing its disk.") if users else "No VM uses it."
        self.app.push_screen(ConfirmDialog(f"Delete volume {pool}/{vol.name}?", detail),
                             lambda ok: ok and self._job(f"delete {pool}/{vol.name}", volume_ops.delete_volume, pool,
                                                         vol.name, bool(users)))

    # -- upload ------------------------------------------------------------------------------------------
    def action_upload(self) -> None:
        if (pool := self._pool()) is None:
            return
        if self._upload_cancel is not None:
            self.notify("an upload is already running (ctrl+x cancels it)", severity="warning")
            return

        def then(v: dict[str, Any]) -> None:
            self._upload_cancel = threading.Event()
            bar = self.query_one("#upload", ProgressBar)
            bar.update(total=100, progress=0)
            bar.remove_class("hidden")
            label = f"upload {v['path']} into {pool.name}"
            self._upload(pool.name, v["path"], v["name"], self._upload_cancel, label,
                         self.hc.begin_task(label, pool.name))

        self.ask_form(f"Upload a local ISO or image into {pool.name}", [
            Field("path", "Local file", "", parse=str.strip),
            Field("name", "Volume name (optional)", "", parse=lambda t: names.volume_name(t) if t else None),
        ], then, submit="upload")

    @work(thread=True, exclusive=True, group="upload", exit_on_error=False, description="upload volume")
    def _upload(self, pool: str, path: str, name: str | None, cancel: threading.Event, label: str,
                task: str) -> None:
        bar = self.query_one("#upload", ProgressBar)

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(bar.update, total=max(total, 1), progress=done)

        try:
            result = upload.upload_volume(self.hc.manager, pool, path, name, on_progress=progress, cancel=cancel)
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone(label, error=str(exc), task=task))
        else:
            self.app.post_message(ActionDone(label, detail=result.summary(), task=task))
        self.app.call_from_thread(self._upload_finished)

    def _upload_finished(self) -> None:
        self._upload_cancel = None
        self.query_one("#upload", ProgressBar).add_class("hidden")
        self._reload()

    def action_cancel_upload(self) -> None:
        if self._upload_cancel is not None:
            self._upload_cancel.set()
