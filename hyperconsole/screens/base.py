"""Shared frame of every pane: header, body, status bar, footer; re-renders on DataChanged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from textual import on, work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from hyperconsole import presenters
from hyperconsole.errors import HyperconsoleError
from hyperconsole.messages import ActionDone, DataChanged
from hyperconsole.viewstate import pending_badge
from hyperconsole.widgets.statusbar import StatusBar

if TYPE_CHECKING:
    from hyperconsole.app import HyperconsoleApp
    from hyperconsole.widgets.form import Field


class PaneScreen(Screen):
    """A top-level pane reached by a number key."""

    # Actions that change something; `--readonly` or a read-only connection removes them.
    MUTATING: frozenset[str] = frozenset()

    @property
    def hc(self) -> "HyperconsoleApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.compose_body()
        yield StatusBar()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.hc.view.readonly:
            return False
        return True

    def on_screen_resume(self) -> None:
        self.update_status()
        self.render_data(frozenset({"all"}))

    @on(DataChanged)
    def _data_changed(self, message: DataChanged) -> None:
        self.update_status()
        self.render_data(message.kinds)

    def update_status(self) -> None:
        view = self.hc.view
        bar = self.query_one(StatusBar)
        bar.state = view.connection.value
        bar.uri = presenters.short_uri(view.uri)
        bar.readonly = view.readonly
        bar.demo = view.demo
        bar.simulated = view.simulated
        bar.message = view.status_message
        bar.pending = pending_badge(view.pending)

    def render_data(self, kinds: frozenset[str]) -> None:
        """Override: redraw from self.hc.view. Runs on the UI thread; must not block."""

    def ask_form(self, title: str, fields: "Sequence[Field]", then: Callable[[Any], None], *,
                 check: Callable[[dict[str, Any]], Any] | None = None, submit: str = "apply") -> None:
        """The one way a pane asks for input: a Form of typed fields (see widgets/form.py).
        Invalid fields (and a `check` that raises ValidationError) keep the form open with the
        input as typed; `then(result)` runs once everything is valid, unless cancelled."""
        from hyperconsole.widgets.form import Form

        self.app.push_screen(Form(title, fields, check=check, submit=submit),
                             lambda result: result is not None and then(result))

    def run_job(self, label: str, fn: Callable[..., object], *args: object, uuid: str | None = None,
                target: str = "", then: Callable[[], None] | None = None) -> None:
        """Run `fn(manager, *args)` off the UI thread, entered in the task log as it starts; the app
        reports the outcome in one line and the log keeps it whole. `target` defaults to the VM
        named by `uuid`."""
        if not target and uuid in self.hc.view.domains:
            target = self.hc.view.domains[uuid].name
        self._run_job(label, fn, args, uuid, self.hc.begin_task(label, target), then)

    @work(thread=True, group="jobs", exit_on_error=False, description="operator job")
    def _run_job(self, label: str, fn: Callable[..., object], args: tuple[object, ...], uuid: str | None,
                 task: str, then: Callable[[], None] | None) -> None:
        try:
            result = fn(self.hc.manager, *args)
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone(label, error=str(exc), uuid=uuid, task=task))
        except Exception as exc:  # never a traceback in front of the operator
            self.app.post_message(ActionDone(label, error=f"{exc.__class__.__name__}: {exc}", uuid=uuid, task=task))
        else:
            self.app.post_message(ActionDone(label, detail=presenters.describe_result(result), uuid=uuid, task=task))
        if then is not None:
            self.app.call_from_thread(then)
