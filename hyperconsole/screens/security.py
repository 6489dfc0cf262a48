"""Security pane (`6`): the host's profile and hardening toggles, written as a NixOS fragment and
applied with confirm-or-revert. Shows the current choice, every profile with its summary, a diff
of the change (side by side, unified when the terminal is narrow), and the rebuild log; a trial
change counts down until confirmed."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Log, OptionList, SelectionList, Static
from textual.widgets.option_list import Option

from hyperconsole import profiles, resources
from hyperconsole.changes import requests
from hyperconsole.errors import HyperconsoleError
from hyperconsole.nixos.revert import default_confirm_timeout
from hyperconsole.nixos.store import ChangeSet
from hyperconsole.sanitize import visible, visible_lines
from hyperconsole.screens.hostchange import HostChangePane
from hyperconsole.setup import guard
from hyperconsole.widgets.sidediff import side_by_side, unified


@dataclass(frozen=True)
class SecurityState:
    catalog: profiles.Catalog
    current: profiles.Selection | None


class SecurityScreen(HostChangePane):
    PANE_TITLE = "Security"
    BINDINGS = resources.bindings(resources.SECURITY)
    # Below 100 columns a side-by-side diff has no room: the screen gets -narrow and shows the
    # unified one instead (hyperconsole.tcss).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]

    def __init__(self) -> None:
        super().__init__()
        self.state: SecurityState | None = None
        self.changeset: ChangeSet | None = None
        self.refusal = ""  # why the previewed change may not be applied (lock-out guard)
        self._filled = False

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="security"):
            with Vertical(id="sec-left", classes="box"):
                yield Static("Security profile", classes="box-title")
                yield Static("reading…", id="sec-current")
                yield Static("Profiles", classes="spark-label")
                yield OptionList(id="sec-profiles")
                yield Static("Hardening toggles (space)", classes="spark-label")
                yield SelectionList[str](id="sec-toggles")
                yield Static("", id="sec-problems", classes="error")
            with Vertical(id="sec-right"):
                yield Static("", id="pending-banner")
                yield Static("Change preview", classes="box-title")
                with VerticalScroll(id="sec-diff-box"):
                    yield Static("", id="sec-diff")
                    yield Static("", id="sec-diff-unified")
                yield Static("Rebuild log", classes="box-title")
                yield Log(id="rebuild-log", highlight=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.load()

    # -- loading ---------------------------------------------------------------------------------
    def act_security_reload(self, _targets: object = None) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="security-load", exit_on_error=False, description="read profiles")
    def load(self) -> None:
        try:
            catalog = profiles.load_catalog()
            state = SecurityState(catalog, profiles.current_selection(self.controller.store))
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._show_error, str(exc))
            return
        self.app.call_from_thread(self._fill, state)

    def _show_error(self, text: str) -> None:
        self.query_one("#sec-current", Static).update(Text(visible_lines(text), "red"))

    def _fill(self, state: SecurityState) -> None:
        self.state = state
        current = state.current
        line = Text()
        if current is None:
            line.append("no profile written yet by hyperconsole", "yellow")
        else:
            line.append(current.profile, "bold green")
            line.append("  toggles: " + (", ".join(current.toggles) or "none"))
        line.append(f"\nNixOS dir {self.hc.change_config.nixos_dir}", "dim")
        self.query_one("#sec-current", Static).update(line)
        if not self._filled:  # keep the operator's cursor and ticks on reload
            options = self.query_one("#sec-profiles", OptionList)
            for name, profile in sorted(state.catalog.profiles.items()):
                prompt = Text(name, "bold")
                prompt.append("  " + visible(profile.summary), "dim")
                options.add_option(Option(prompt, id=name))
            chosen = current.profile if current else next(iter(sorted(state.catalog.profiles)), None)
            if chosen is not None:
                options.highlighted = options.get_option_index(chosen)
            toggles = self.query_one("#sec-toggles", SelectionList)
            for name, toggle in sorted(state.catalog.toggles.items()):
                label = Text(name, "bold")
                label.append("  " + visible(toggle.summary), "dim")
                toggles.add_option((label, name, bool(current and name in current.toggles)))
            self._filled = True
        problems = visible_lines("\n".join(state.catalog.problems))
        self.query_one("#sec-problems", Static).update(Text(problems))
        self.preview()

    # -- preview ---------------------------------------------------------------------------------
    def selection(self) -> tuple[str | None, tuple[str, ...]]:
        options = self.query_one("#sec-profiles", OptionList)
        name = None
        if options.highlighted is not None:
            name = options.get_option_at_index(options.highlighted).id
        toggles = tuple(self.query_one("#sec-toggles", SelectionList).selected)
        return name, toggles

    @on(OptionList.OptionHighlighted, "#sec-profiles")
    @on(SelectionList.SelectedChanged, "#sec-toggles")
    def _selection_changed(self, _event) -> None:
        if self.state is not None:
            self.preview()

    def preview(self) -> None:
        name, toggles = self.selection()
        if name is not None and self.state is not None:
            self._prepare(name, toggles)

    @work(thread=True, exclusive=True, group="security-preview", exit_on_error=False, description="diff profile")
    def _prepare(self, name: str, toggles: tuple[str, ...]) -> None:
        store = self.controller.store
        try:
            changeset = profiles.prepare_profile_change(store, self.state.catalog, name, toggles)
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._show_diff, None, str(exc))
            return
        refusal = ""
        if not self.hc.view.demo:  # the demo activates nothing, so it cannot lock anyone out
            try:
                guard.check_changeset(store, changeset)
            except HyperconsoleError as exc:
                refusal = str(exc)
        self.app.call_from_thread(self._show_diff, changeset, refusal)

    def _show_diff(self, changeset: ChangeSet | None, error: str) -> None:
        """The change as a diff; `error` is why it cannot be made (with a changeset: the lock-out
        guard's refusal, shown above the diff, and `a` says it instead of applying)."""
        self.changeset = changeset
        self.refusal = error if changeset is not None else ""
        wide, narrow = self.query_one("#sec-diff", Static), self.query_one("#sec-diff-unified", Static)
        if changeset is not None and not changeset.is_empty:
            change = next(c for c in changeset.changes if c.changed)
            titles = {"old_title": f"{change.name}.nix now", "new_title": "after apply"}
            wide_diff = side_by_side(change.old_text, change.new_text, **titles)
            narrow_diff = unified(change.old_text, change.new_text, **titles)
            if self.refusal:
                refusal = Text(visible_lines(self.refusal) + "\n", "bold red")
                wide_diff, narrow_diff = Group(refusal, wide_diff), Group(refusal, narrow_diff)
            wide.update(wide_diff)
            narrow.update(narrow_diff)
            return
        if changeset is None:
            message = Text(error, "red")
        else:
            message = Text("This profile and these toggles are what the host has now: nothing to apply.", "dim")
        wide.update(message)
        narrow.update(message)

    # -- applying (confirm-or-revert, log, keep/undo come from HostChangePane) -------------------------
    def changed_on_disk(self) -> None:
        self.load()

    def act_security_apply(self, _targets: object = None) -> None:
        name, toggles = self.selection()
        changeset = self.changeset
        if name is None or changeset is None:
            return
        if self.refusal:
            self.notify(self.refusal, severity="error")
            return
        timeout = default_confirm_timeout(changeset, self.hc.config.confirm_timeout)
        description = f"security profile {name}" + (f" + {', '.join(toggles)}" if toggles else "")
        self.ask_apply(f"Apply security profile {name}?", requests.ProfileApply(name, tuple(toggles)), changeset,
                       timeout, description)

    def render_data(self, kinds: frozenset[str]) -> None:
        """Nothing from libvirt here; profile data is read on mount, after each action and when
        host changes go to another host."""
        super().render_data(kinds)
