"""`e` on a VM: vCPUs and memory; says what applied live and what waits for the next boot."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.messages import ActionDone
from hyperconsole.virt import resources
from hyperconsole.virt.models import DomainInfo


def parse_positive_int(text: str, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValidationError(f"{what} must be a whole number, not {text.strip()!r}") from None
    if value <= 0:
        raise ValidationError(f"{what} must be at least 1")
    return value


class EditResourcesScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="edit.cancel")]

    def __init__(self, info: DomainInfo) -> None:
        super().__init__()
        self.info = info

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Resources of {self.info.name}", classes="box-title", markup=False)
            with Horizontal(classes="row"):
                yield Static("vCPUs", classes="label")
                yield Input(str(self.info.vcpus), id="vcpus", type="integer")
            with Horizontal(classes="row"):
                yield Static("Memory (MiB)", classes="label")
                yield Input(str(self.info.memory_kib // 1024), id="memory", type="integer")
            note = "Running VM: applied live where the hypervisor allows, else at next boot." \
                if self.info.state.is_active else "Applies at next start."
            yield Static(note, classes="hint")
            yield Static("", id="edit-error", classes="error", markup=False)
            yield Static("enter applies · esc cancels", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            vcpus = parse_positive_int(self.query_one("#vcpus", Input).value, "vCPUs")
            memory = parse_positive_int(self.query_one("#memory", Input).value, "memory")
        except ValidationError as exc:
            self.query_one("#edit-error", Static).update(str(exc))
            return
        self.query_one("#edit-error", Static).update("applying…")
        self.apply(vcpus, memory)

    @work(thread=True, exclusive=True, exit_on_error=False, description="edit resources")
    def apply(self, vcpus: int, memory_mib: int) -> None:
        label = f"edit {self.info.name}"
        try:
            result = resources.edit_resources(self.app.manager, self.info.uuid, vcpus, memory_mib)  # type: ignore[attr-defined]
        except HyperconsoleError as exc:
            self.app.call_from_thread(self.query_one("#edit-error", Static).update, str(exc))
            return
        self.app.post_message(ActionDone(label, detail=result.summary(), uuid=self.info.uuid))
        self.app.call_from_thread(self.dismiss, None)

    def action_cancel(self) -> None:
        self.dismiss(None)
