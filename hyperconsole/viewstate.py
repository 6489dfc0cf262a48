"""What the app knows right now; screens read it when they are shown or told it changed."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hyperconsole.host.metrics import HostSample
from hyperconsole.virt.models import ConnectionState, DomainInfo, InventoryDiff, NodeInfo
from hyperconsole.virt.sampler import StuckCall

if TYPE_CHECKING:
    from hyperconsole.nixos.revert import PendingChange

HISTORY = 60


@dataclass
class ViewState:
    uri: str = ""
    demo: bool = False
    readonly: bool = False
    readonly_reason: str = ""
    connection: ConnectionState = ConnectionState.DISCONNECTED
    connection_message: str = ""
    domains: dict[str, DomainInfo] = field(default_factory=dict)
    last_diff: InventoryDiff = field(default_factory=InventoryDiff)
    last_tick_seconds: float = 0.0  # collect + diff + table update
    stuck: tuple[StuckCall, ...] = ()  # libvirt calls the last tick gave up waiting for
    simulated: bool = False  # the VM figures come from the demo's stats source, not the driver
    host: HostSample | None = None
    node: NodeInfo | None = None
    cpu_history: deque = field(default_factory=lambda: deque([0.0] * HISTORY, maxlen=HISTORY))
    mem_history: deque = field(default_factory=lambda: deque([0.0] * HISTORY, maxlen=HISTORY))
    rx_history: deque = field(default_factory=lambda: deque([0.0] * HISTORY, maxlen=HISTORY))
    tx_history: deque = field(default_factory=lambda: deque([0.0] * HISTORY, maxlen=HISTORY))
    poll_errors: dict[str, str] = field(default_factory=dict)  # "host poll" → its last error, until it succeeds
    pending: PendingChange | None = None  # a host change on trial, waiting to be kept
    notice: str = ""  # said in every pane's status bar until a new trial begins: a revert nobody asked for
    fleet: tuple[str, ...] = ()  # the hosts of the VM list, when more than one
    host_notes: list[str] = field(default_factory=list)  # fleet hosts not answering, since when
    migration: str = ""  # the migration in progress, as the status bar says it

    @property
    def status_message(self) -> str:
        """The status bar's line: the connection's news, a call that hangs, what failed."""
        parts = [self.migration, self.connection_message, *self.host_notes]
        if self.stuck:
            more = f" (+{len(self.stuck) - 1} more)" if len(self.stuck) > 1 else ""
            parts.append(f"{self.stuck[0]}{more}")
        parts += [f"{source}: {error}" for source, error in self.poll_errors.items()]
        parts.append(self.notice)
        return " · ".join(part for part in parts if part)

    def record_host(self, sample: HostSample) -> None:
        self.host = sample
        self.cpu_history.append(sample.cpu_percent)
        self.mem_history.append(sample.memory_percent)
        self.rx_history.append(sample.net_rx_bps or 0.0)
        self.tx_history.append(sample.net_tx_bps or 0.0)


def pending_badge(pending: PendingChange | None) -> str:
    if pending is None:
        return ""
    if pending.state == "testing":
        return "TRIAL REBUILD"
    return f"REVERT IN {int(pending.remaining())}s (6, k keeps)"
