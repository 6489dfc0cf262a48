"""Doctor (`7`, `:doctor`): every check's status, why and hint; the row under the cursor in full
below the table (enter adds its detail lines). `r` runs the checks again, `f` applies the row's
safe fix after asking, through the same core call as the pane that would do it by hand. The
checks run in a worker, each under its own deadline: the pane never waits on them."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widgets import Static

from hyperconsole import presenters, resources
from hyperconsole.resources import Targets
from hyperconsole.screens.base import PaneScreen
from hyperconsole.widgets.resource_view import ResourceView


class DoctorScreen(PaneScreen):
    PANE_TITLE = "Doctor"
    expanded: reactive[bool] = reactive(False)

    def compose_body(self) -> ComposeResult:
        yield resources.CHECKS.view()
        yield Static("", id="check-detail")

    @property
    def view(self) -> ResourceView:
        return self.query_one("#checks", ResourceView)

    @property
    def checks(self) -> tuple[Any, ...]:
        """The registry (an app may hold a subset: `HyperconsoleApp.doctor_checks`)."""
        from hyperconsole import doctor

        return self.hc.doctor_checks or doctor.CHECKS

    def on_mount(self) -> None:
        self.view.focus()
        self.rerun()

    def rerun(self) -> None:
        self.view.note = f"running {len(self.checks)} checks…"
        self._show_detail()
        records = self.hc.backup_parts.get("records")
        self.load(resources.CHECKS, self.hc.config, self.checks, records.dir if records is not None else None)

    def show_checks(self, results: list[Any], *_args: Any) -> None:
        from hyperconsole import doctor

        self.view.set_items(resources.CHECKS.rows(results))
        counts = doctor.summary(results)
        self.view.note = " · ".join(f"{counts[k]} {k}" for k in ("fail", "warn", "pass", "skip") if counts[k])
        self._show_detail()
        self.refresh_bindings()

    def cursor_result(self) -> Any:
        key = self.view.cursor_key
        return self.view.items.get(key) if key is not None else None

    @on(ResourceView.Highlighted, "#checks")
    def _highlighted(self, _event: ResourceView.Highlighted) -> None:
        self.expanded = False
        self._show_detail()
        self.refresh_bindings()

    def watch_expanded(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        result = self.cursor_result()
        box = self.query_one("#check-detail", Static)
        box.set_class(self.expanded, "expanded")
        if result is None:
            box.update(Text("Checking the host…" if self.loading(resources.CHECKS) else "No checks run.", "dim"))
        else:
            box.update(presenters.check_text(result, full=self.expanded))

    def available(self, action_id: str) -> bool:
        if action_id == "checks.fix":
            result = self.cursor_result()
            return result is not None and result.fix is not None and not self.loading(resources.CHECKS)
        if action_id == "checks.details":
            return self.cursor_result() is not None
        return True

    # -- actions ---------------------------------------------------------------------------------
    def act_checks_details(self, _targets: Targets) -> None:
        self.expanded = not self.expanded

    def act_checks_rerun(self, _targets: Targets) -> None:
        self.rerun()

    def act_checks_fix(self, targets: Targets) -> None:
        result = targets.items[0]
        fix = result.fix
        if fix is None:
            self.notify(f"{result.id}: no safe fix; the hint says what to do", severity="warning")
            return

        def answered(yes: bool) -> None:
            if yes:
                self.run_job(fix.label, fix.apply, self.hc.config, target=result.id, then=self.rerun)

        self.confirm("checks.fix", targets, f"{fix.label}: touches {fix.touches}.", answered)
