"""Storage pane (`4`): pools with capacity bars and low-space warnings, and the volumes of the
pool under the cursor, listed once and read a page at a time so a pool of thousands of volumes
does not stall the console. Everything here goes through libvirt."""

from __future__ import annotations

import threading
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.widgets import ProgressBar, Static

from hyperconsole import names, presenters, resources
from hyperconsole.errors import HyperconsoleError
from hyperconsole.messages import ActionDone
from hyperconsole.resources import Targets
from hyperconsole.screens.base import PaneScreen
from hyperconsole.virt import inventory, upload
from hyperconsole.virt import pools as pool_ops
from hyperconsole.virt import volumes as volume_ops
from hyperconsole.virt.volumes import VolumeInfo, VolumeListing
from hyperconsole.widgets.form import Field, choice
from hyperconsole.widgets.resource_view import ResourceView

PAGE = resources.PAGE


class StorageScreen(PaneScreen):
    PANE_TITLE = "Storage"
    BINDINGS = resources.bindings(resources.STORAGE)

    def __init__(self) -> None:
        super().__init__()
        self.pool_name: str | None = None
        self.listing: VolumeListing | None = None
        self.volumes: list[VolumeInfo] = []
        self.usage: inventory.Usage | None = None
        self._upload_cancel: threading.Event | None = None

    def compose_body(self) -> ComposeResult:
        yield resources.POOLS.view()
        yield Static("", id="space-warning", classes="error")
        yield resources.VOLUMES.view()
        yield ProgressBar(id="upload", total=100, show_eta=True, classes="hidden")

    def on_mount(self) -> None:
        self.pools_view.focus()

    @property
    def pools_view(self) -> ResourceView:
        return self.query_one("#pools", ResourceView)

    @property
    def volumes_view(self) -> ResourceView:
        return self.query_one("#volumes", ResourceView)

    @property
    def pools(self) -> list[pool_ops.PoolInfo]:
        return list(self.pools_view.items.values())

    # -- data ---------------------------------------------------------------------------------------
    def render_data(self, kinds: frozenset[str]) -> None:
        if kinds & {"all", "connection"}:
            self.load(resources.POOLS)

    def show_pools(self, pools: list[pool_ops.PoolInfo]) -> None:
        self.pools_view.set_items(resources.POOLS.rows(pools))
        low = [f"{p.name} is {p.used_percent:.0f}% full" for p in pools
               if p.level in (pool_ops.SpaceLevel.WARN, pool_ops.SpaceLevel.CRITICAL)]
        self.query_one("#space-warning", Static).update(presenters.plain("Low space: " + "; ".join(low), wrap=True) if low else "")

    @on(ResourceView.Highlighted, "#pools")
    def _pool_highlighted(self, event: ResourceView.Highlighted) -> None:
        if event.key is not None and event.key != self.pool_name:
            self._select_pool(event.key)

    def _select_pool(self, name: str) -> None:
        """Another pool: its volumes replace the last one's."""
        self.pool_name = name
        self.listing = None
        self.volumes = []
        self.volumes_view.set_items({})
        self._load_volumes(name)

    def _load_volumes(self, pool_name: str, have: int = 0) -> None:
        """One listing per pool, then the first page(s); more on demand as the cursor nears the end."""
        pool = self.pools_view.items.get(pool_name)
        if pool is not None and not pool.active:
            self.listing, self.volumes = None, []
            self.volumes_view.title = f"Volumes of {pool_name}"
            self.volumes_view.set_items({})
            self.volumes_view.note = "pool is not running"
            return
        self.load(resources.VOLUMES, pool_name, have)

    def show_volumes(self, page: resources.VolumePage, pool_name: str, *_: Any) -> None:
        if pool_name != self.pool_name or (page.offset and page.listing is not self.listing):
            return  # the operator moved on to another pool meanwhile
        if not page.offset:  # a new listing, with which VMs use what
            self.listing, self.usage = page.listing, page.usage
            if page.usage and page.usage.problems:
                self.notify("\n".join(page.usage.problems), title="VM definitions", severity="warning", markup=False)
        self.volumes = (self.volumes if page.offset else []) + page.volumes
        view = self.volumes_view
        view.title = f"Volumes of {pool_name}"
        total = len(self.listing) if self.listing is not None else 0
        view.note = (f"{len(self.volumes)} loaded, more as the cursor nears the end"
                     if total > len(self.volumes) else "")
        usage = self.usage
        view.set_items(resources.VOLUMES.rows(presenters.VolumeRow(v, usage.users_of(v) if usage else ())
                                               for v in self.volumes))

    @on(ResourceView.Highlighted, "#volumes")
    def _volume_highlighted(self, _event: ResourceView.Highlighted) -> None:
        # Pages are read as the operator scrolls: a pool of thousands never loads at once.
        table = self.volumes_view.table
        listing = self.listing
        if (table.cursor_row >= table.row_count - 10 and listing is not None
                and len(self.volumes) < len(listing) and not self.loading(resources.VOLUMES)):
            self.load(resources.VOLUMES, self.pool_name, len(self.volumes), listing)

    def _reload(self) -> None:
        """After an operation: the same pool's volumes re-read in place (the cursor stays on its
        volume, or the row that took its place)."""
        self.load(resources.POOLS)
        if self.pool_name is not None:
            self._load_volumes(self.pool_name, len(self.volumes))

    def act_storage_switch(self, _targets: Targets) -> None:
        self.switch_table()

    def _job(self, label: str, fn, *args) -> None:
        self.run_job(label, fn, *args, then=self._reload)

    # -- pools -------------------------------------------------------------------------------------------
    def _each(self, targets: Targets, verb: str, fn, *args) -> None:
        self.run_each(targets, verb, fn, *args, then=self._reload)

    def act_pools_start(self, targets: Targets) -> None:
        self._each(targets, "start pool", pool_ops.start_pool)

    def act_pools_stop(self, targets: Targets) -> None:
        self.confirm("pools.stop", targets, "Their volumes stay on disk.",
                     lambda ok: ok and self._each(targets, "stop pool", pool_ops.stop_pool))

    def act_pools_refresh(self, targets: Targets) -> None:
        self._each(targets, "refresh pool", pool_ops.refresh_pool)

    def act_pools_autostart(self, targets: Targets) -> None:
        self.toggle_autostart(targets, pool_ops.set_pool_autostart, then=self._reload)

    def act_pools_delete(self, targets: Targets) -> None:
        def answered(result) -> None:
            ok, remove_dir = result
            if ok:
                self._each(targets, "delete pool", pool_ops.delete_pool, remove_dir)

        self.confirm("pools.delete", targets, "Stops them and removes their definitions.", answered,
                     option="also remove their directories if empty")

    def act_pools_new(self, _targets: Targets) -> None:
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
    def act_volumes_new(self, _targets: Targets) -> None:
        if (pool := self.pool_name) is None:
            return

        def then(v: dict[str, Any]) -> None:
            self._job(f"create {pool}/{v['name']}", volume_ops.create_volume, pool, v["name"], v["size"],
                      v["format"])

        self.ask_form(f"New volume in {pool}", [
            Field("name", "Name", "", parse=names.volume_name),
            Field("size", "Size (e.g. 20G)", "20G", parse=names.volume_size),
            choice("format", "Format", [("qcow2", "qcow2"), ("raw", "raw")]),
        ], then, submit="create")

    def act_volumes_grow(self, targets: Targets) -> None:
        vol, pool = targets.items[0].volume, self.pool_name

        def then(v: dict[str, Any]) -> None:
            self._job(f"grow {pool}/{vol.name}", volume_ops.resize_volume, pool, vol.name, v["size"])

        self.ask_form(f"Grow {vol.name} (now {presenters.size_bytes(vol.capacity)}; grow only)",
                      [Field("size", "New size", "", parse=names.volume_size)], then, submit="grow")

    def act_volumes_clone(self, targets: Targets) -> None:
        vol, pool = targets.items[0].volume, self.pool_name

        def then(v: dict[str, Any]) -> None:
            self._job(f"clone {pool}/{vol.name}", volume_ops.clone_volume, pool, vol.name, v["name"])

        self.ask_form(f"Clone {vol.name} in {pool}",
                      [Field("name", "New name", f"copy-of-{vol.name}", parse=names.volume_name)], then, submit="clone")

    def act_volumes_delete(self, targets: Targets) -> None:
        pool = self.pool_name
        used = [f"{row.name} (VM {', '.join(row.users)})" for row in targets.items if row.users]
        detail = ("In use: " + "; ".join(used) + ": those VMs will be missing a disk.") if used else "No VM uses them."

        def answered(ok: bool | None) -> None:
            if ok:
                for row in targets.items:
                    self._job(f"delete {pool}/{row.name}", volume_ops.delete_volume, pool, row.name, bool(row.users))

        self.confirm("volumes.delete", targets, detail, answered)

    # -- upload ------------------------------------------------------------------------------------------
    def act_storage_upload(self, _targets: Targets) -> None:
        if (pool := self.pools_view.items.get(self.pool_name or "")) is None:
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

    def act_storage_cancel_upload(self, _targets: Targets) -> None:
        if self._upload_cancel is not None:
            self._upload_cancel.set()
