"""`e` on a VM: vCPUs and memory through the one form; the change is shown and confirmed
("vCPUs 2 → 4, memory 2.0 GiB → 4.0 GiB: apply?") before anything is applied."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hyperconsole import names
from hyperconsole.virt import resources
from hyperconsole.virt.models import DomainInfo
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.form import Field

if TYPE_CHECKING:
    from hyperconsole.screens.base import PaneScreen

MAX_VCPUS = 4096  # the host's own limit is checked when the change is applied
MAX_MEMORY_MIB = 64 * 1024 * 1024  # 64 TiB


def vcpus_field(value: int) -> Field:
    return Field("vcpus", "vCPUs", str(value), parse=lambda t: names.whole_number(t, "vCPUs", 1, MAX_VCPUS))


def memory_field(mib: int) -> Field:
    return Field("memory", "Memory (MiB)", str(mib),
                 parse=lambda t: names.whole_number(t, "memory (MiB)", resources.MIN_MEMORY_MIB, MAX_MEMORY_MIB))


def change_summary(info: DomainInfo, vcpus: int, memory_mib: int) -> str:
    """'vCPUs 2 → 4, memory 2.0 GiB → 4.0 GiB'; empty when nothing changes."""
    parts = []
    if vcpus != info.vcpus:
        parts.append(f"vCPUs {info.vcpus} → {vcpus}")
    old_mib = info.memory_kib // 1024
    if memory_mib != old_mib:
        parts.append(f"memory {names.human_size(old_mib * 1024**2)} → {names.human_size(memory_mib * 1024**2)}")
    return ", ".join(parts)


def edit_resources(pane: "PaneScreen", info: DomainInfo) -> None:
    def confirm(values: dict[str, Any]) -> None:
        vcpus, memory = values["vcpus"], values["memory"]
        summary = change_summary(info, vcpus, memory)
        if not summary:
            pane.notify(f"{info.name}: nothing to change")
            return
        when = ("applied live where the hypervisor allows, else at next boot" if info.state.is_active
                else "applies at next start")
        pane.app.push_screen(
            ConfirmDialog(f"{summary}: apply?", f"{info.name}: {when}."),
            lambda ok: ok and pane.run_job(f"edit {info.name}", resources.edit_resources, info.uuid, vcpus, memory,
                                           uuid=info.uuid, host=info.host))

    pane.ask_form(f"Resources of {info.name}", [vcpus_field(info.vcpus), memory_field(info.memory_kib // 1024)],
                  confirm, submit="review")
