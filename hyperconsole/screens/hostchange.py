"""Panes that change the host through NixOS fragments (Security, Networks): apply a prepared
change with confirm-or-revert, stream the rebuild into a log, show the trial's countdown, and
keep (`k`) or revert (`u`) it. The trial may have been started by another pane, the CLI or an
earlier session: the app reads it from the NixOS dir (and notices when it goes away); this pane
shows what the app knows and re-reads its own data when the trial begins or ends."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.widgets import Log, Static

from hyperconsole import resources
from hyperconsole.changes.requests import Change
from hyperconsole.changes.submit import Direct, Privileged, submitter_for
from hyperconsole.errors import HyperconsoleError
from hyperconsole.messages import ActionDone
from hyperconsole.nixos.rebuild import RebuildLine, RebuildResult
from hyperconsole.nixos.revert import ConfirmOrRevert, PendingChange, controller_for
from hyperconsole.nixos.store import ChangeSet
from hyperconsole.sanitize import visible
from hyperconsole.screens.base import PaneScreen
from hyperconsole.tasklog import fragment_names, revert_task_id
from hyperconsole.widgets.confirm import ConfirmDialog

_UNSEEN = object()


def rebuild_error(result: RebuildResult, *notes: str) -> str:
    """A failed rebuild whole, for the toast and the task log: how it ended and where its log is,
    then `notes` (what was undone), then its error lines and last output."""
    head = f"{result.action} rebuild {result.status}"
    if result.returncode is not None:
        head += f" (exit {result.returncode})"
    if result.log_path is not None:
        head += f"; log {result.log_path}"
    return "\n".join([head, *notes, *result.summary()])


class HostChangePane(PaneScreen):
    BINDINGS = resources.bindings(resources.HOST_CHANGE)

    _shown_change: object = _UNSEEN  # the trial this pane last showed, by change id

    # Actions that read or change this machine's own state and cannot act on a remote host yet.
    LOCAL_ONLY: frozenset[str] = frozenset()
    LOCAL_ONLY_WHY = ""

    def available(self, action_id: str) -> bool:
        if action_id == "host.switch":
            return self.hc.change_spec is not None
        if action_id in self.LOCAL_ONLY and self.remote:
            return False
        return action_id not in ("host.keep", "host.undo") or self.pending is not None

    def on_mount(self) -> None:
        self.set_interval(1.0, self._countdown)
        # (Textual runs each class's on_mount, and subclasses call this one too: mounted once.)
        if self.hc.change_spec is not None and not self.query("#acting-host"):
            self.mount(Static(self._acting_text(), id="acting-host"), before=self.query_one("#pending-banner"))

    @property
    def remote(self) -> bool:
        spec = self.hc.change_spec
        return spec is not None and spec.remote

    @property
    def acting_host(self) -> str:  # type: ignore[override]
        """libvirt listings (networks …) come from the host changes act on, when it is open here."""
        spec = self.hc.change_spec
        return spec.name if spec is not None and spec.name in self.hc.polls else ""

    def _show_acting_host(self) -> None:
        for static in self.query("#acting-host").results(Static):
            static.update(self._acting_text())

    def _acting_text(self) -> Text:
        spec = self.hc.change_spec
        if spec is None:
            return Text("")
        where = (f"remote: nixos-rebuild --target-host {spec.target_host} from {spec.nixos_dir}" if spec.remote
                 else f"this machine, {spec.nixos_dir}")
        text = f"Host changes act on {spec.name} ({where}) · h switches host"
        if spec.remote and self.LOCAL_ONLY_WHY:
            text += f"\n{self.LOCAL_ONLY_WHY.format(host=spec.name)}"
        return Text(visible(text))

    def act_host_switch(self, _targets: object = None) -> None:
        self.hc.switch_change_host()

    def render_data(self, kinds: frozenset[str]) -> None:
        if "change-host" in kinds:
            self._show_acting_host()
            self.refresh_bindings()
            self.changed_on_disk()

    def _countdown(self) -> None:
        if self.pending is not None and self.is_current:
            self.update_status()

    @property
    def controller(self) -> ConfirmOrRevert:
        return controller_for(self.hc.change_config, demo=self.hc.view.demo)

    @property
    def submitter(self) -> Direct | Privileged:
        """Who carries out the change: this process (root) or, for an operator without root, the
        request unit; Unavailable refuses with the one line why."""
        return submitter_for(self.hc.change_config, demo=self.hc.view.demo)

    @property
    def pending(self) -> PendingChange | None:
        return self.hc.view.pending

    # -- the trial ------------------------------------------------------------------------------
    def update_status(self) -> None:
        super().update_status()
        pending = self.pending
        change = pending.change_id if pending is not None else None
        if change != self._shown_change:
            if self._shown_change is not _UNSEEN:
                self.changed_on_disk()  # a trial began, was kept or was reverted: re-read
            self._shown_change = change
            self.refresh_bindings()  # k / u work only while a trial is pending
        banner = self.query_one("#pending-banner", Static)
        if pending is None:
            banner.update("")
            banner.remove_class("pending")
            return
        banner.add_class("pending")
        if pending.state in ("starting", "testing"):
            text = f"Trial rebuild running: {pending.description}"
        elif pending.state == "reverting":
            text = f"Reverting: {pending.description}"
        else:
            text = (f"Trial active: {pending.description}. Reverts by itself in {int(pending.remaining())} s "
                    "unless kept: k keeps it, u reverts now.")
        banner.update(Text(visible(text)))

    def changed_on_disk(self) -> None:
        """Override: re-read what this pane shows after a change was applied, kept or reverted."""

    # -- applying ---------------------------------------------------------------------------------
    def log_line(self, line: RebuildLine) -> None:
        """Called on the worker thread for each rebuild output line."""
        self.app.call_from_thread(self.query_one("#rebuild-log", Log).write_line, f"{line.elapsed:6.1f}s  {visible(line.text)}")

    def ask_apply(self, question: str, change: Change, changeset: ChangeSet, timeout: int, description: str,
                  extra: str = "") -> None:
        if changeset.is_empty:
            self.notify("nothing to apply: the fragment already says this")
            return
        how = (f"Activated on trial with `test`; it reverts by itself after {timeout} s unless you keep it (k)."
               if timeout else "Applied with `switch` directly.")

        def answered(ok: bool | None) -> None:
            if ok:
                self.query_one("#rebuild-log", Log).clear()
                label = "apply " + description
                task = self.hc.begin_task(label, fragment_names(changeset.previous_texts()))
                self.apply(change, changeset, timeout, description, label, task)

        self.app.push_screen(ConfirmDialog(question, "\n".join(filter(None, [extra, how]))), answered)

    @work(thread=True, exclusive=True, group="host-change", exit_on_error=False, description="apply host change")
    def apply(self, change: Change, changeset: ChangeSet, timeout: int, description: str, label: str,
              task: str) -> None:
        try:
            outcome = self.submitter.apply(change, changeset, timeout=timeout, description=description,
                                           on_line=self.log_line)
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone(label, error=str(exc), task=task))
        else:
            if outcome.reverted:
                error = (rebuild_error(outcome.rebuild, outcome.rolled_back) if outcome.rebuild is not None
                         else outcome.rolled_back)
                self.app.post_message(ActionDone(label, error=error, task=task))
            elif outcome.rebuild is not None and not outcome.rebuild.ok:
                self.app.post_message(ActionDone(label, error=rebuild_error(outcome.rebuild), task=task))
            elif outcome.pending is not None:
                self.app.post_message(ActionDone(label, detail=f"on trial: keep it with k within {timeout} s",
                                                 task=task))
            else:
                self.app.post_message(ActionDone(label, detail="applied", task=task))
        self._after_change()

    def _after_change(self) -> None:
        # This session made the change: the app re-reads the trial without announcing it. A
        # change applied with `switch` leaves no trial behind, so the pane re-reads here too.
        self.app.call_from_thread(self.hc.refresh_pending, announce=False)
        self.app.call_from_thread(self.changed_on_disk)

    def act_host_keep(self, _targets: object = None) -> None:
        pending = self.pending
        if pending is None:
            self.notify("no trial change is waiting to be kept")
            return
        label = f"keep {pending.description}"
        self._keep(label, self.hc.begin_task(label, fragment_names(pending.previous_texts)))

    @work(thread=True, exclusive=True, group="host-change", exit_on_error=False, description="keep trial change")
    def _keep(self, label: str, task: str) -> None:
        try:
            result = self.submitter.confirm(on_line=self.log_line)
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone(label, error=str(exc), task=task))
        else:
            if result.ok:
                self.app.post_message(ActionDone(label, detail="made permanent with switch", task=task))
            else:
                self.app.post_message(ActionDone(label, error=rebuild_error(result), task=task))
        self._after_change()

    def act_host_undo(self, _targets: object = None) -> None:
        pending = self.pending
        if pending is None:
            self.notify("no trial change to revert")
            return

        def answered(ok: bool | None) -> None:
            if ok:
                label = f"revert {pending.description}"
                task = self.hc.begin_task(label, fragment_names(pending.previous_texts),
                                          task_id=revert_task_id(pending.change_id))
                self._undo(pending.change_id, label, task)

        self.app.push_screen(ConfirmDialog("Revert the trial change now?",
                                           "The fragment files are restored and the previous system re-activated."),
                             answered)

    @work(thread=True, exclusive=True, group="host-change", exit_on_error=False, description="revert trial change")
    def _undo(self, change_id: str, label: str, task: str) -> None:
        try:
            outcome = self.submitter.revert_now(change_id, reason="reverted by the operator", on_line=self.log_line)
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone(label, error=str(exc), task=task))
        else:
            if outcome is None:
                self.app.post_message(ActionDone(label, error="the change was kept or reverted meanwhile", task=task))
            elif outcome.result is not None and not outcome.result.ok:
                self.app.post_message(ActionDone(label, error=rebuild_error(outcome.result), task=task))
            else:
                self.app.post_message(ActionDone(label, detail=outcome.warning or "reverted", task=task))
        self._after_change()
