"""Panes that change the host through NixOS fragments (Security, Networks): apply a prepared
change with confirm-or-revert, stream the rebuild into a log, show the trial's countdown, and
keep (`k`) or revert (`u`) it. The trial may have been started by another pane, the CLI or an
earlier session: it is read from the NixOS dir, not remembered here."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.widgets import Log, Static

from hyperconsole.errors import HyperconsoleError
from hyperconsole.messages import ActionDone
from hyperconsole.nixos.rebuild import RebuildLine
from hyperconsole.nixos.revert import ConfirmOrRevert, PendingChange, controller_for
from hyperconsole.nixos.store import ChangeSet
from hyperconsole.sanitize import visible
from hyperconsole.screens.base import PaneScreen
from hyperconsole.widgets.confirm import ConfirmDialog


class HostChangePane(PaneScreen):
    BINDINGS = [
        Binding("k", "keep", "Keep trial", id="host.keep"),
        Binding("u", "undo", "Revert trial", id="host.undo"),
    ]
    MUTATING = frozenset({"keep", "undo"})

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick_countdown)
        self.load_pending()

    @property
    def controller(self) -> ConfirmOrRevert:
        return controller_for(self.hc.config, demo=self.hc.view.demo)

    @property
    def pending(self) -> PendingChange | None:
        return self.hc.view.pending

    # -- the trial ------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="pending", exit_on_error=False, description="read pending change")
    def load_pending(self) -> None:
        try:
            pending = self.controller.pending()
        except HyperconsoleError as exc:
            self.app.call_from_thread(self.notify, f"cannot read the pending change: {exc}", severity="error",
                                      markup=False)
            return
        self.app.call_from_thread(self._set_pending, pending)

    def _set_pending(self, pending: PendingChange | None) -> None:
        self.hc.view.pending = pending
        self.update_status()
        banner = self.query_one("#pending-banner", Static)
        if pending is None:
            banner.update("")
            banner.remove_class("pending")
            return
        banner.add_class("pending")
        if pending.state in ("starting", "testing"):
            text = f"Trial rebuild running: {pending.description}"
        else:
            text = (f"Trial active: {pending.description}. Reverts by itself in {int(pending.remaining())} s "
                    "unless kept: k keeps it, u reverts now.")
        banner.update(Text(visible(text)))

    def _tick_countdown(self) -> None:
        pending = self.pending
        if pending is None:
            return
        if pending.state != "testing" and pending.remaining() <= 0:
            self.load_pending()  # the timer has fired: read what the revert left behind
            self.changed_on_disk()
        self._set_pending(pending)

    def changed_on_disk(self) -> None:
        """Override: re-read what this pane shows after a change was applied, kept or reverted."""

    # -- applying ---------------------------------------------------------------------------------
    def log_line(self, line: RebuildLine) -> None:
        """Called on the worker thread for each rebuild output line."""
        self.app.call_from_thread(self.query_one("#rebuild-log", Log).write_line, f"{line.elapsed:6.1f}s  {visible(line.text)}")

    def ask_apply(self, question: str, changeset: ChangeSet, timeout: int, description: str,
                  extra: str = "") -> None:
        if changeset.is_empty:
            self.notify("nothing to apply: the fragment already says this")
            return
        how = (f"Activated on trial with `test`; it reverts by itself after {timeout} s unless you keep it (k)."
               if timeout else "Applied with `switch` directly.")

        def answered(ok: bool | None) -> None:
            if ok:
                self.query_one("#rebuild-log", Log).clear()
                self.apply(changeset, timeout, description)

        self.app.push_screen(ConfirmDialog(question, "\n".join(filter(None, [extra, how]))), answered)

    @work(thread=True, exclusive=True, group="host-change", exit_on_error=False, description="apply host change")
    def apply(self, changeset: ChangeSet, timeout: int, description: str) -> None:
        label = "apply " + description
        try:
            outcome = self.controller.apply(changeset, timeout=timeout, description=description,
                                            on_line=self.log_line)
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone(label, error=str(exc)))
        else:
            if outcome.reverted:
                error = f"{outcome.rebuild.action} {outcome.rebuild.status}; {outcome.rolled_back}"
                self.app.post_message(ActionDone(label, error=error))
            elif outcome.rebuild is not None and not outcome.rebuild.ok:
                self.app.post_message(ActionDone(label, error=outcome.rebuild.summary()))
            elif outcome.pending is not None:
                self.app.post_message(ActionDone(label, detail=f"on trial: keep it with k within {timeout} s"))
            else:
                self.app.post_message(ActionDone(label, detail="applied"))
        self._after_change()

    def _after_change(self) -> None:
        self.app.call_from_thread(self.load_pending)
        self.app.call_from_thread(self.changed_on_disk)

    def action_keep(self) -> None:
        if self.pending is None:
            self.notify("no trial change is waiting to be kept")
            return
        self._keep()

    @work(thread=True, exclusive=True, group="host-change", exit_on_error=False, description="keep trial change")
    def _keep(self) -> None:
        try:
            result = self.controller.confirm(on_line=self.log_line)
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone("keep trial change", error=str(exc)))
        else:
            if result.ok:
                self.app.post_message(ActionDone("keep trial change", detail="made permanent with switch"))
            else:
                self.app.post_message(ActionDone("keep trial change", error=result.summary()))
        self._after_change()

    def action_undo(self) -> None:
        if self.pending is None:
            self.notify("no trial change to revert")
            return

        def answered(ok: bool | None) -> None:
            if ok:
                self._undo()

        self.app.push_screen(ConfirmDialog("Revert the trial change now?",
                                           "The fragment files are restored and the previous system re-activated."),
                             answered)

    @work(thread=True, exclusive=True, group="host-change", exit_on_error=False, description="revert trial change")
    def _undo(self) -> None:
        try:
            outcome = self.controller.revert_now(reason="reverted by the operator", on_line=self.log_line)
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone("revert trial change", error=str(exc)))
        else:
            detail = outcome.warning if outcome is not None and outcome.warning else "reverted"
            self.app.post_message(ActionDone("revert trial change", detail=detail))
        self._after_change()
