"""VM list: the VMs kind of the resource view, updated in place by UUID; lifecycle keys act on the
selection, else the VM under the cursor."""

from __future__ import annotations

import importlib
import subprocess
from typing import Callable

from textual.app import ComposeResult

from hyperconsole import resources
from hyperconsole.names import vm_name
from hyperconsole.resources import Targets
from hyperconsole.screens.base import PaneScreen
from hyperconsole.virt.models import DomainInfo, DomainState
from hyperconsole.widgets.resource_view import ResourceView


def virt(module: str):
    """A VM operation module, imported with the first action rather than at start-up: they pull
    in every resource kind, and the first row should not wait for them."""
    return importlib.import_module(f"hyperconsole.virt.{module}")

class VmsScreen(PaneScreen):
    PANE_TITLE = "VMs"

    def compose_body(self) -> ComposeResult:
        yield resources.VMS.view()

    def on_mount(self) -> None:
        self.view.focus()

    # -- rendering ---------------------------------------------------------------------------------
    @property
    def view(self) -> ResourceView:
        return self.query_one("#vms", ResourceView)

    def on_resource_view_viewport_changed(self, message: ResourceView.ViewportChanged) -> None:
        """The sampler samples every tick the rows on screen (or all, sorted on a rate column);
        the others at its slower cadence. Rows that came into view are sampled at once rather
        than at the next refresh. The last viewport stays in force while other panes are shown:
        they need the counts, which lifecycle events keep exact."""
        if message.view is self.view:
            self.hc.sampler.set_interest(message.keys, message.sort_column)
            self.hc.poll_domains()

    def render_data(self, kinds: frozenset[str]) -> None:
        if not kinds & {"all", "domains"}:
            return
        diff = self.hc.view.last_diff
        if kinds == {"domains"}:
            # A tick: touch only the rows the sampler says were added, removed or changed.
            self.view.set_items(self.hc.view.domains, diff.added | diff.changed | diff.removed)
        else:  # first paint or pane shown again: every row
            self.view.set_items(self.hc.view.domains)

    # -- jobs ----------------------------------------------------------------------------------------
    def run_op(self, label: str, fn: Callable[..., object], uuid: str | None, *args: object) -> None:
        self.run_job(label, fn, *args, uuid=uuid)

    def _each(self, targets: Targets, verb: str, fn: Callable, allowed: Callable[[DomainInfo], bool],
              *args: object) -> None:
        """Run `fn` on every target in a state for it; say which were skipped and why."""
        fit = [t for t in targets.items if allowed(t)]
        skipped = [t.name for t in targets.items if not allowed(t)]
        if len(targets.items) > 1:
            self.notify(f"{verb.capitalize()} {targets.kind.describe([t.name for t in fit]) if fit else 'no VM'}",
                        markup=False)
        for info in fit:
            self.run_op(f"{verb} {info.name}", fn, info.uuid, info.uuid, *args)
        if skipped:
            self.notify(f"{verb}: skipped {', '.join(skipped)} (not in a state for it)",
                        severity="warning", markup=False)

    def act_vms_start(self, targets: Targets) -> None:
        self._each(targets, "start", virt("lifecycle").start,
                   lambda d: d.state in (DomainState.SHUTOFF, DomainState.CRASHED, DomainState.PMSUSPENDED))

    def act_vms_shutdown(self, targets: Targets) -> None:
        self._each(targets, "shutdown", virt("lifecycle").shutdown,
                   lambda d: d.state in (DomainState.RUNNING, DomainState.BLOCKED, DomainState.PAUSED))

    def act_vms_reboot(self, targets: Targets) -> None:
        self._each(targets, "reboot", virt("lifecycle").reboot, lambda d: d.state is DomainState.RUNNING)

    def act_vms_pause(self, targets: Targets) -> None:
        paused = [t for t in targets.items if t.state is DomainState.PAUSED]
        if paused:
            self._each(Targets(targets.kind, paused), "resume", virt("lifecycle").resume, lambda d: True)
        others = [t for t in targets.items if t.state is not DomainState.PAUSED]
        if others:
            self._each(Targets(targets.kind, others), "pause", virt("lifecycle").pause,
                       lambda d: d.state in (DomainState.RUNNING, DomainState.BLOCKED))

    def act_vms_autostart(self, targets: Targets) -> None:
        for value in (True, False):
            group = Targets(targets.kind, [t for t in targets.items if t.autostart is not value])
            if group.items:
                self._each(group, f"autostart {'on' if value else 'off'}", virt("lifecycle").set_autostart,
                           lambda d: d.persistent, value)

    def act_vms_save(self, targets: Targets) -> None:
        """Managed save: the VM's memory goes to disk; `s` later restores it."""
        self._each(targets, "save state", virt("lifecycle").managed_save,
                   lambda d: d.state in (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED))

    def act_vms_force_off(self, targets: Targets) -> None:
        running = Targets(targets.kind, [t for t in targets.items if t.state.is_active])
        if not running.items:
            self.notify("force off: none of them is running", severity="warning")
            return

        def answered(ok: bool | None) -> None:
            if ok:
                for info in running.items:
                    self.run_op(f"force off {info.name}", virt("lifecycle").force_off, info.uuid, info.uuid)

        self.confirm("vms.force_off", running, "Like pulling the power cord: unsaved guest data is lost.",
                     answered)

    def act_vms_delete(self, targets: Targets) -> None:
        def answered(result) -> None:
            ok, with_storage = result
            if ok:
                for info in targets.items:
                    self.view.selected.discard(info.uuid)
                    self.run_op(f"delete {info.name}", virt("lifecycle").delete, info.uuid, info.uuid, with_storage)

        detail = "Definitions, snapshots and saved state are removed."
        running = [t.name for t in targets.items if t.state.is_active]
        if running:
            detail = f"Running ({', '.join(running)}): forced off first. " + detail
        self.confirm("vms.delete", targets, detail, answered, option="also delete their disk volumes")

    def act_vms_console(self, targets: Targets) -> None:
        info = targets.items[0]
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
        command = virt("lifecycle").console_command(self.hc.manager.uri, info.uuid)
        try:
            with self.app.suspend():
                print(f"Serial console of {info.name}. Leave with Ctrl+] to return to hyperconsole.", flush=True)
                code = subprocess.call(command)
        except Exception as exc:  # suspend unsupported (no real terminal) or virsh missing
            self.notify(f"console: {exc}", severity="error", markup=False)
            return
        if code != 0:
            self.notify(f"console: virsh exited with status {code}", severity="error")

    def act_vms_clone(self, targets: Targets) -> None:
        info = targets.items[0]
        if info.state is not DomainState.SHUTOFF:
            self.notify(f"{info.name} is {info.state.label}: shut it off before cloning", severity="warning",
                        markup=False)
            return

        from hyperconsole.widgets.form import Field

        self.ask_form(f"Clone {info.name} (disks are copied in their pools)",
                      [Field("name", "New name", f"{info.name}-clone", parse=vm_name)],
                      lambda v: self.run_op(f"clone {info.name}", virt("clone").clone, info.uuid, info.uuid, v["name"]),
                      submit="clone")

    def act_vms_details(self, targets: Targets) -> None:
        from hyperconsole.screens.details import DetailsScreen

        self.app.push_screen(DetailsScreen(targets.items[0]))

    def act_vms_snapshots(self, targets: Targets) -> None:
        from hyperconsole.screens.snapshots import SnapshotsScreen

        self.app.push_screen(SnapshotsScreen(targets.items[0]))

    def act_vms_edit(self, targets: Targets) -> None:
        from hyperconsole.screens.edit import edit_resources

        edit_resources(self, targets.items[0])

    def act_vms_new(self, _targets: Targets) -> None:
        from hyperconsole.screens.create import CreateVmScreen

        self.app.push_screen(CreateVmScreen())
