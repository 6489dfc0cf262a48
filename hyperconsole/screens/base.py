"""Shared frame of every pane: header, body, status bar, footer; re-renders on DataChanged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

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
        bar.message = view.connection_message or view.poll_error
        bar.pending = pending_badge(view.pending)

    def render_data(self, kinds: frozenset[str]) -> None:
        """Override: redraw from self.hc.view. Runs on the UI thread; must not block."""

    def ask_form(self, title: str, fields: list[tuple[str, str, str]],
                 then: Callable[[dict[str, str]], None]) -> None:
        """A modal form of (key, label, initial value); `then(values)` runs unless cancelled."""
        from hyperconsole.widgets.form import InputDialog

        self.app.push_screen(InputDialog(title, fields), lambda values: values is not None and then(values))

    @work(thread=True, group="jobs", exit_on_error=False, description="operator job")
    def run_job(self, label: str, fn: Callable[..., object], *args: object, uuid: str | None = None,
                then: Callable[[], None] | None = None) -> None:
        """Run `fn(manager, *args)` off the UI thread; the app reports the outcome in one line."""
        try:
            result = fn(self.hc.manager, *args)
        except HyperconsoleError as exc:
            self.app.post_message(ActionDone(label, error=str(exc), uuid=uuid))
        except Exception as exc:  # never a traceback in front of the operator
            self.app.post_message(ActionDone(label, error=f"{exc.__class__.__name__}: {exc}", uuid=uuid))
        else:
            self.app.post_message(ActionDone(label, detail=presenters.describe_result(result), uuid=uuid))
        if then is not None:
            self.app.call_from_thread(then)
