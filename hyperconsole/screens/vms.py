"""VM list: the VMs kind of the resource view, updated in place by UUID; lifecycle keys act on the
selection, else the VM under the cursor."""

from __future__ import annotations

import importlib
import subprocess
import threading
from typing import Callable

from textual import work
from textual.app import ComposeResult

from hyperconsole import presenters, resources
from hyperconsole.names import migrate_uri, vm_name
from hyperconsole.resources import Targets, on_host
from hyperconsole.screens.base import PaneScreen, one_line
from hyperconsole.virt.models import ConnectionState, DomainInfo, DomainState, split_key
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.form import Field, choice
from hyperconsole.widgets.resource_view import ResourceView


def virt(module: str):
    """A VM operation module, imported with the first action rather than at start-up: they pull
    in every resource kind, and the first row should not wait for them."""
    return importlib.import_module(f"hyperconsole.virt.{module}")

class VmsScreen(PaneScreen):
    PANE_TITLE = "VMs"

    def compose_body(self) -> ComposeResult:
        yield resources.VMS.view(fleet=len(self.hc.polls) > 1)  # the Host column with several hosts

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
        if message.view is not self.view:
            return
        by_host: dict[str, list[str]] = {name: [] for name in self.hc.polls}
        for key in message.keys:  # each host's sampler hears of its own rows
            host, uuid = split_key(key)
            by_host.setdefault(host, []).append(uuid)
        for name, poll in self.hc.polls.items():
            poll.sampler.set_interest(by_host[name], message.sort_column)
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

    def run_on(self, verb: str, fn: Callable[..., object], info: DomainInfo, *args: object) -> None:
        """`fn(manager of the VM's host, uuid, *args)`, reported as `<verb> <name> [on <host>]`."""
        self.run_job(f"{verb} {on_host(info)}", fn, info.uuid, *args, uuid=info.uuid, host=info.host)

    def _each(self, targets: Targets, verb: str, fn: Callable, allowed: Callable[[DomainInfo], bool],
              *args: object) -> None:
        """Run `fn` on every target in a state for it; say which were skipped and why."""
        fit = [t for t in targets.items if allowed(t)]
        skipped = [on_host(t) for t in targets.items if not allowed(t)]
        if len(targets.items) > 1:
            self.notify(f"{verb.capitalize()} {Targets(targets.kind, fit).describe() if fit else 'no VM'}",
                        markup=False)
        for info in fit:
            self.run_on(verb, fn, info, *args)
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
                    self.run_on("force off", virt("lifecycle").force_off, info)

        self.confirm("vms.force_off", running, "Like pulling the power cord: unsaved guest data is lost.",
                     answered)

    def act_vms_delete(self, targets: Targets) -> None:
        def answered(result) -> None:
            ok, with_storage = result
            if ok:
                for info in targets.items:
                    self.view.selected.discard(info.key)
                    self.run_on("delete", virt("lifecycle").delete, info, with_storage)

        detail = "Definitions, snapshots and saved state are removed."
        running = [on_host(t) for t in targets.items if t.state.is_active]
        if running:
            detail = f"Running ({', '.join(running)}): forced off first. " + detail
        self.confirm("vms.delete", targets, detail, answered, option="also delete their disk volumes")

    def act_vms_console(self, targets: Targets) -> None:
        info = targets.items[0]
        if info.state not in (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED):
            self.notify(f"{info.name} is {info.state.label}: start it first", severity="warning", markup=False)
            return
        uri = self.hc.manager_of(info.host).uri
        if uri.startswith("test:"):
            # virsh would only fail after the screen was handed over: say why up front.
            self.notify("This host is libvirt's test driver (the demo): its VMs are simulated, with no guest "
                        "running and so no serial console to attach to. On a real host, c opens the VM's "
                        "serial console (ctrl+] returns here).", title=f"No console for {info.name}",
                        timeout=12, markup=False)
            return
        command = virt("lifecycle").console_command(uri, info.uuid)
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
                      lambda v: self.run_on("clone", virt("clone").clone, info, v["name"]),
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

    # -- migration (several hosts) ----------------------------------------------------------------
    def available(self, action_id: str) -> bool:
        if action_id == "vms.migrate":
            return len(self.hc.polls) > 1
        if action_id == "vms.abort_migration":
            return self.hc.migration is not None
        return True

    def act_vms_migrate(self, targets: Targets) -> None:
        """Choose the target host; the preflight refuses in one line before anything starts; then
        the question names what happens, and the job's progress is in the status bar."""
        info = targets.items[0]
        if self.hc.migration is not None:
            self.notify("A migration is running: wait for it or abort it (ctrl+x)", severity="warning")
            return
        others = [name for name, poll in self.hc.polls.items()
                  if name != info.host and poll.manager.state is ConnectionState.ACTIVE]
        if not others:
            self.notify(f"migrate {on_host(info)}: no other connected host", severity="warning", markup=False)
            return
        offline = not info.state.is_active
        how = "offline: it is shut off" if offline else "live: it keeps running"
        fields = [choice("to", "Target host", [(n, n) for n in others])]
        if not offline:
            fields.append(Field("via", "Migration address (optional, e.g. tcp://10.0.0.2)", "", parse=migrate_uri))
        self.ask_form(f"Migrate {on_host(info)} ({how})", fields,
                      lambda values: self._preflight(info, values["to"], offline, values.get("via")), submit="check")

    @work(thread=True, group="migrate-preflight", exclusive=True, exit_on_error=False, description="migration preflight")
    def _preflight(self, info: DomainInfo, to: str, offline: bool, via: str | None) -> None:
        migrate = virt("migrate")
        source = self.hc.manager_of(info.host)
        try:
            plan = migrate.preflight(source, self.hc.manager_of(to), info.name, offline=offline)
            migrate.check_driver(source, plan)
        except Exception as exc:
            self.app.call_from_thread(self.notify, f"{on_host(info)} → {to}: {one_line(exc)}",
                                      title="Migration refused", severity="error", timeout=10, markup=False)
            return
        self.app.call_from_thread(self._confirm_migration, info, to, plan, via)

    def _confirm_migration(self, info: DomainInfo, to: str, plan, via: str | None) -> None:
        copied = [d.target for d in plan.disks if not d.shared]
        storage = f"Disks copied: {', '.join(copied)}." if copied else "Storage is shared (or there is none)."
        detail = " ".join([storage, *(f"Note: {n}." for n in plan.notes),
                           "ctrl+x aborts; the VM then stays on its host." if plan.live else
                           "The source keeps its volumes."])
        question = f"Migrate VM {info.name} {'live' if plan.live else 'offline'} from {info.host} to {to}?"
        self.app.push_screen(ConfirmDialog(question, detail),
                             lambda ok: ok and self._start_migration(info, to, plan, via))

    def _start_migration(self, info: DomainInfo, to: str, plan, via: str | None) -> None:
        migrate = virt("migrate")
        cancel = threading.Event()
        self.hc.migration = cancel
        label = f"migrate {info.name} {info.host} → {to}"
        self.hc.view.migration = f"{label}: starting"
        self.refresh_bindings()

        def progress(p) -> None:  # on the job's thread
            self.app.call_from_thread(self._progress, label, p)

        def run(source, plan):
            return migrate.migrate(source, self.hc.manager_of(to), plan, cancel=cancel, on_progress=progress,
                                   migrate_uri=via)

        def ended() -> None:
            self.hc.migration = None
            self.hc.view.migration = ""
            self.refresh_bindings()
            self.update_status()
            self.hc.poll_domains(to)

        self.run_job(label, run, plan, uuid=info.uuid, host=info.host, target=on_host(info), then=ended)
        self.update_status()

    def _progress(self, label: str, progress) -> None:
        if self.hc.migration is not None:
            self.hc.view.migration = f"{label}: {presenters.migration_progress(progress)} · ctrl+x aborts"
            self.hc.update_status_bar()

    def act_vms_abort_migration(self, _targets: Targets) -> None:
        if self.hc.migration is not None:
            self.hc.migration.set()
            self.notify("Aborting the migration: the VM stays on its host", severity="warning")
