"""Shared frame of every pane: header, body, status bar, footer; re-renders on DataChanged."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Sequence

from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header
from textual.worker import get_current_worker

from hyperconsole import presenters, resources
from hyperconsole.errors import HyperconsoleError
from hyperconsole.messages import ActionDone, DataChanged
from hyperconsole.resources import Kind, Scope, Targets
from hyperconsole.viewstate import pending_badge
from hyperconsole.virt.models import row_key
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.resource_view import ResourceView
from hyperconsole.widgets.statusbar import StatusBar

if TYPE_CHECKING:
    from hyperconsole.app import HyperconsoleApp
    from hyperconsole.widgets.form import Field


log = logging.getLogger(__name__)


def one_line(exc: Exception) -> str:
    """What the operator reads of a failure: the error's own words, never a traceback."""
    if isinstance(exc, HyperconsoleError):
        return str(exc)
    log.error("unexpected failure", exc_info=exc)
    return f"{exc.__class__.__name__}: {exc}"


class Loaded(Message):
    """What a kind's loader returned for `args`, or the one line it failed with."""

    bubble = False  # for the screen that asked

    def __init__(self, kind: Kind, args: tuple[Any, ...], result: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.kind, self.args, self.result, self.error = kind, args, result, error


class ResourceActions:  # a mixin for Screen and ModalScreen
    """Runs the registry's actions (`act('vms.start')`): resolves what they act on — the
    selection, else the cursor row, of the table the action belongs to — and hides the mutating
    ones on a read-only connection."""

    acting_host = ""  # the fleet host this screen's listings and jobs act on ("": the console's own)

    @property
    def hc(self) -> "HyperconsoleApp":
        return self.app  # type: ignore[return-value]

    @property
    def manager(self):
        """The connection of the host this screen acts on."""
        return self.hc.manager_of(self.acting_host)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action != "act" or not parameters:
            return True
        if self.hc.view.readonly and resources.is_mutating(action, parameters):
            return False
        return self.available(str(parameters[0]))

    def available(self, action_id: str) -> bool:
        """Override: whether an action can work right now (hidden from footer and `?` if not)."""
        return True

    # -- listing -------------------------------------------------------------------------------
    def load(self, kind: Kind, *args: Any) -> None:
        """List `kind` (its registry loader, given `args`) off the UI thread. The answer arrives as
        Loaded: `show_<kind>(result, *args)` puts it on screen (by default the view's rows, updated
        in place by key); a failure is one line in that table's title, the other tables go on."""
        self.run_worker(partial(self._load, kind, args), thread=True, group=f"load-{kind.name}",  # type: ignore[attr-defined]
                        exclusive=True, exit_on_error=False, description=f"list {kind.plural}")

    def _load(self, kind: Kind, args: tuple[Any, ...]) -> None:
        assert kind.load is not None, f"{kind.name} is fed by {kind.fed_by}"
        try:
            message = Loaded(kind, args, kind.load(self.manager, *args))
        except Exception as exc:
            message = Loaded(kind, args, error=one_line(exc))
        if not get_current_worker().is_cancelled:  # a newer listing of the kind was asked for
            self.post_message(message)  # type: ignore[attr-defined]

    def loading(self, kind: Kind) -> bool:
        return any(w.group == f"load-{kind.name}" and w.node is self and not w.is_finished
                   for w in self.app.workers)  # type: ignore[attr-defined]

    def on_loaded(self, message: Loaded) -> None:
        kind = message.kind
        view = self.query_one(f"#{kind.name}", ResourceView)  # type: ignore[attr-defined]
        if message.error is not None:
            view.note = "not listed: " + (message.error.splitlines() or [""])[0]
            log.warning("listing %s failed: %s", kind.plural, message.error)
            return
        view.note = ""
        show = getattr(self, f"show_{kind.name}", None)
        if show is not None:
            show(message.result, *message.args)
        else:
            view.set_items(kind.rows(message.result))

    def action_act(self, action_id: str) -> None:
        action = resources.ACTIONS[action_id]
        kind = resources.KINDS.get(action_id.split(".", 1)[0])
        targets = Targets(kind)
        if kind is not None and action.scope is not Scope.NONE:
            view = self.query_one(f"#{kind.name}", ResourceView)
            keys = view.targets() if action.scope is Scope.TARGETS else [view.cursor_key]
            targets.items = [view.items[k] for k in keys if k in view.items]
            if not targets.items:
                self.notify(f"{action.description}: no {kind.noun} under the cursor", severity="warning")
                return
        getattr(self, action.handler)(targets)

    def confirm(self, action_id: str, targets: Targets, detail: str, then: Callable[[bool], None],
                option: str | None = None) -> None:
        """Ask `<Action> <what>?` naming every target; `then(answer)` (with the option when offered)."""
        question = targets.question(resources.ACTIONS[action_id])
        self.app.push_screen(ConfirmDialog(question, detail, option=option), then)

    def ask_form(self, title: str, fields: "Sequence[Field]", then: Callable[[Any], None], *,
                 check: Callable[[dict[str, Any]], Any] | None = None, submit: str = "apply") -> None:
        """The one way a screen asks for input: a Form of typed fields (see widgets/form.py).
        Invalid fields (and a `check` that raises ValidationError) keep the form open with the
        input as typed; `then(result)` runs once everything is valid, unless cancelled."""
        from hyperconsole.widgets.form import Form

        self.app.push_screen(Form(title, fields, check=check, submit=submit),
                             lambda result: result is not None and then(result))

    def run_job(self, label: str, fn: Callable[..., object], *args: object, uuid: str | None = None,
                target: str = "", then: Callable[[], None] | None = None, host: str | None = None) -> None:
        """Run `fn(manager, *args)` off the UI thread, entered in the task log as it starts; the app
        reports the outcome in one line and the log keeps it whole. `manager` is the connection of
        `host` (default: the host this screen acts on); `target` defaults to the VM named by `uuid`."""
        host = self.acting_host if host is None else host
        key = row_key(host, uuid) if uuid else None
        if not target and key in self.hc.view.domains:
            target = resources.on_host(self.hc.view.domains[key])
        self._run_job(label, fn, args, uuid, self.hc.begin_task(label, target), then, host)

    @work(thread=True, group="jobs", exit_on_error=False, description="operator job")
    def _run_job(self, label: str, fn: Callable[..., object], args: tuple[object, ...], uuid: str | None,
                 task: str, then: Callable[[], None] | None, host: str = "") -> None:
        try:
            result = fn(self.hc.manager_of(host), *args)
        except Exception as exc:
            self.app.post_message(ActionDone(label, error=one_line(exc), uuid=uuid, task=task, host=host))
        else:
            self.app.post_message(ActionDone(label, detail=presenters.describe_result(result), uuid=uuid, task=task,
                                             host=host))
        if then is not None:
            self.app.call_from_thread(then)

    def run_each(self, targets: Targets, verb: str, fn: Callable[..., object], *args: object,
                 then: Callable[[], None] | None = None) -> None:
        """One job per target, `<verb> <name>`: `fn(manager, name, *args)`."""
        for item in targets.items:
            self.run_job(f"{verb} {item.name}", fn, item.name, *args, then=then)

    def toggle_autostart(self, targets: Targets, fn: Callable[..., object],
                         then: Callable[[], None] | None = None) -> None:
        """Autostart flipped on every target: `fn(manager, name, on)`."""
        for on_ in (True, False):
            group = Targets(targets.kind, [t for t in targets.items if t.autostart is not on_])
            self.run_each(group, f"autostart {'on' if on_ else 'off'}", fn, on_, then=then)

    def switch_table(self) -> None:
        """Focus the next table of the screen (tab)."""
        views = list(self.query(ResourceView))
        at = next((i for i, view in enumerate(views) if view.has_focus_within), -1)
        views[(at + 1) % len(views)].focus()

    def hint(self, *groups: tuple[resources.Action, ...]) -> str:
        """`n New snapshot · r Revert …`: the keys that work here, without mutating ones when read-only."""
        return " · ".join(f"{self.app.get_key_display(a.binding(False))} {a.description}"
                          for group in groups for a in group if not (a.mutating and self.hc.view.readonly))


class PaneScreen(ResourceActions, Screen):
    """A top-level pane reached by a number key (or `:` and its name)."""

    PANE_TITLE = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.compose_body()
        yield StatusBar()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_screen_resume(self) -> None:
        self.update_status()
        self.render_data(frozenset({"all"}))

    @on(DataChanged)
    def _data_changed(self, message: DataChanged) -> None:
        self.update_status()
        self.render_data(message.kinds)

    def update_status(self) -> None:
        view = self.hc.view
        self.title = self.PANE_TITLE
        where = f"{len(view.fleet)} hosts" if view.fleet else presenters.short_uri(view.uri)
        self.sub_title = where + (" · read-only" if view.readonly else "")
        bar = self.query_one(StatusBar)
        bar.state = view.connection.value
        bar.uri = where
        bar.readonly = view.readonly
        bar.demo = view.demo
        bar.simulated = view.simulated
        bar.message = view.status_message
        bar.pending = pending_badge(view.pending)

    def render_data(self, kinds: frozenset[str]) -> None:
        """Override: redraw from self.hc.view. Runs on the UI thread; must not block."""
