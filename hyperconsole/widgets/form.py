"""The one form every dialog uses: typed fields, inline errors that keep the input, selects for
choices.

A field shows exactly what was typed (no input type that silently drops characters: `1.5` stays
`1.5` and is refused, it never becomes `15`). `enter` moves to the next field and submits on the
last one; `ctrl+s` submits from anywhere; `esc` cancels. On submit every field is parsed by its
own validator; a field that fails shows the validator's one line under it and the form stays
open with everything as typed. Then the optional `check` sees all parsed values together (for
rules that span fields); its error shows under the form. The form returns what `check` returned
(or the dict of parsed values), or None when cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Footer, Input, Select, Static

from hyperconsole.errors import ValidationError
from hyperconsole.sanitize import visible, visible_lines

Parse = Callable[[Any], Any]


def _text(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Field:
    """One labelled field. `parse` turns what was entered into the value the caller gets, or
    raises ValidationError with one line (the validators of `hyperconsole.names`)."""

    key: str
    label: str
    value: Any = ""
    parse: Parse = _text
    choices: tuple[tuple[str, Any], ...] = ()  # (label, value): shown as a select
    password: bool = False
    suggest: tuple[str, ...] = ()  # searchable: typing completes to the first entry it starts (→ accepts)

    @property
    def is_choice(self) -> bool:
        return bool(self.choices)


def choice(key: str, label: str, options: Sequence[tuple[str, Any]]) -> Field:
    """A select of (label, value) options, the first one chosen."""
    options = tuple(options)
    return Field(key, label, options[0][1], choices=options)


def yes_no(key: str, label: str, value: bool = False) -> Field:
    return Field(key, label, value, choices=(("yes", True), ("no", False)))


class Form(ModalScreen[Any]):
    DEFAULT_CSS = """
    Form { align: center middle; }
    Form .field-error { color: $error; height: auto; padding-left: 22; }
    Form .field-error.-empty { display: none; }
    Form #form-fields { height: auto; max-height: 30; }
    """
    ESCAPE_LABEL = "cancel"  # what esc does, as the hint line says it
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
        Binding("ctrl+s", "submit", "Submit", id="form.submit"),
    ]

    def __init__(self, title: str, fields: Sequence[Field], *, check: Callable[[dict[str, Any]], Any] | None = None,
                 submit: str = "apply", wide: bool = False, intro: Any = None) -> None:
        super().__init__()
        keys = [f.key for f in fields]
        assert len(set(keys)) == len(keys), f"duplicate field keys in {keys}"
        self.title_text = title
        self.fields = list(fields)
        self.check = check
        self.submit_label = submit
        self.wide = wide
        self.intro = intro  # a renderable (already sanitised) shown above the fields

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide" if self.wide else "dialog"):
            # Titles name VMs, pools and interfaces as the system has them.
            yield Static(visible(self.title_text), classes="box-title", markup=False)
            if self.intro is not None:
                yield Static(self.intro, id="form-intro", markup=False)
            with VerticalScroll(id="form-fields"):
                for field in self.fields:
                    with Horizontal(classes="row"):
                        yield Static(field.label, classes="label", markup=False)
                        yield self._widget(field)
                    yield Static("", id=f"e-{field.key}", classes="field-error -empty", markup=False)
            yield Static("", id="form-error", classes="error", markup=False)
            yield Static(f"enter next field · ctrl+s {self.submit_label} · esc {self.ESCAPE_LABEL}", classes="hint")
        yield Footer()  # over the pane's, whose keys do not work while the form is open

    @staticmethod
    def _widget(field: Field) -> Widget:
        if field.is_choice:
            return Select([(visible(label), value) for label, value in field.choices], value=field.value,
                          allow_blank=False, id=f"f-{field.key}")
        suggester = SuggestFromList(field.suggest, case_sensitive=False) if field.suggest else None
        return Input(str(field.value), password=field.password, id=f"f-{field.key}", suggester=suggester)

    def on_mount(self) -> None:
        if self.fields:
            self.widget(self.fields[0].key).focus()

    def widget(self, key: str) -> Input | Select:
        return self.query_one(f"#f-{key}")  # type: ignore[return-value]

    def set_choices(self, key: str, options: Sequence[tuple[str, Any]]) -> None:
        """Replace a select's options (e.g. once they are loaded); the first is chosen."""
        select = self.widget(key)
        assert isinstance(select, Select)
        select.set_options([(visible(label), value) for label, value in options])
        if options:
            select.value = options[0][1]

    # -- errors --------------------------------------------------------------------------------
    def field_error(self, key: str, text: str) -> None:
        label = self.query_one(f"#e-{key}", Static)
        label.update(visible_lines(text))
        label.set_class(not text, "-empty")

    def show_error(self, text: str) -> None:
        """A problem of the whole form (or of the operation it started); the form stays open."""
        self.query_one("#form-error", Static).update(visible_lines(text))

    # -- keys ----------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        keys = [f.key for f in self.fields]
        key = (event.input.id or "")[2:]
        if key in keys and keys.index(key) + 1 < len(keys):
            self.widget(keys[keys.index(key) + 1]).focus()
        else:
            self.action_submit()

    def raw_values(self) -> dict[str, Any]:
        return {f.key: self.widget(f.key).value for f in self.fields}

    def action_submit(self) -> None:
        values: dict[str, Any] = {}
        first_bad: str | None = None
        for field, raw in zip(self.fields, self.raw_values().values()):
            try:
                values[field.key] = field.parse(raw)
            except ValidationError as exc:
                self.field_error(field.key, str(exc))
                first_bad = first_bad or field.key
            else:
                self.field_error(field.key, "")
        if first_bad is not None:
            self.show_error("")
            self.widget(first_bad).focus()
            return
        try:
            result = self.check(values) if self.check is not None else values
        except ValidationError as exc:
            self.show_error(str(exc))
            return
        self.show_error("")
        self.submitted(result)

    def submitted(self, result: Any) -> None:
        """Every field is valid: by default the form closes and returns `result`. Dialogs that
        run their operation while open (and show its error here) override this."""
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
