"""Pure functions from models to table cells and labels (no widgets, no I/O)."""

from __future__ import annotations

import humanize
from rich.text import Text

from hyperconsole.sanitize import visible

from hyperconsole.virt.models import DomainInfo, DomainState

STATE_STYLES = {
    DomainState.RUNNING: "green",
    DomainState.PAUSED: "yellow",
    DomainState.SHUTOFF: "bright_black",
    DomainState.CRASHED: "bold red",
    DomainState.BLOCKED: "yellow",
    DomainState.SHUTDOWN: "yellow",
    DomainState.PMSUSPENDED: "cyan",
    DomainState.NOSTATE: "red",
}

DASH = "–"


def plain(value: object, style: str = "", *, wrap: bool = False) -> Text:
    """Text from libvirt or the system, shown literally: `[red]` stays `[red]`, and control
    characters are made visible (`\\x1b`) so the terminal never acts on them. Every string
    from libvirt or the system reaches a widget through here (or `sanitize.visible`)."""
    if wrap:
        return Text(visible(value), style=style)
    return Text(visible(value), style=style, no_wrap=True, overflow="ellipsis")


def size_kib(kib: int) -> str:
    if kib <= 0:
        return DASH
    return humanize.naturalsize(kib * 1024, binary=True, format="%.1f")


def size_bytes(value: int | float | None) -> str:
    if value is None or value < 0:
        return DASH
    return humanize.naturalsize(value, binary=True, format="%.1f")


def rate(value: float | None) -> str:
    if value is None:
        return DASH
    return humanize.naturalsize(value, binary=True, format="%.0f") + "/s"


def pair(a: float | None, b: float | None) -> str:
    if a is None and b is None:
        return DASH
    return f"{rate(a)} {rate(b)}"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:5.1f}%"


COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("sel", " ", 1),
    ("name", "Name", 24),
    ("state", "State", 16),
    ("vcpus", "vCPUs", 5),
    ("memory", "Memory", 9),
    ("cpu", "CPU %", 7),
    ("disk", "Disk r/w", 19),
    ("net", "Net rx/tx", 19),
    ("autostart", "Auto", 4),
)


def domain_cells(info: DomainInfo, selected: bool) -> dict[str, Text]:
    """One table row as {column key: cell}; the table updates only cells whose value changed."""
    state = info.state.label + (" (saved)" if info.managed_save and not info.state.is_active else "")
    style = STATE_STYLES.get(info.state, "")
    if info.stale_seconds is not None:  # its stats call hangs: the row is its last sample
        state, style = f"{state}, {info.stale_seconds:.0f}s old", f"{style} dim"
    return {
        "sel": plain("●" if selected else " ", "bold cyan"),
        "name": plain(info.name),
        "state": plain(state, style),
        "vcpus": plain(str(info.vcpus) if info.vcpus else DASH, ""),
        "memory": plain(size_kib(info.memory_kib)),
        "cpu": plain(percent(info.cpu_percent)),
        "disk": plain(pair(info.disk_read_bps, info.disk_write_bps)),
        "net": plain(pair(info.net_rx_bps, info.net_tx_bps)),
        "autostart": plain("yes" if info.autostart else "no", "green" if info.autostart else "bright_black"),
    }


def sort_key(info: DomainInfo) -> tuple[str, str]:
    return (info.name.casefold(), info.uuid)


def short_uri(uri: str) -> str:
    """test:///very/long/path/host.xml → test:///…/host.xml; other URIs unchanged."""
    prefix = "test:///"
    if uri.startswith(prefix) and uri.count("/") > 4:
        return prefix + "…/" + uri.rsplit("/", 1)[1]
    return uri


def describe_result(result: object) -> str:
    """Operations return small result objects; a notification shows their summary."""
    if isinstance(result, str):
        return result
    summary = getattr(result, "summary", None)
    return summary() if callable(summary) else ""
