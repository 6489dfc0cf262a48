"""Poll-path and connection types: domain state, the VM table row the sampler fills from bulk
stats, node facts and inventory diffs. Each resource kind's XML model lives in its own module
(domains, networks, pools, volumes, snapshots)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class DomainState(enum.IntEnum):
    """virDomainState, with the labels an operator reads."""

    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTDOWN = 4
    SHUTOFF = 5
    CRASHED = 6
    PMSUSPENDED = 7

    @property
    def label(self) -> str:
        return _STATE_LABELS[self]

    @property
    def is_active(self) -> bool:
        return self not in (DomainState.SHUTOFF, DomainState.NOSTATE)

    @classmethod
    def of(cls, value: int) -> "DomainState":
        try:
            return cls(value)
        except ValueError:
            return cls.NOSTATE


_STATE_LABELS = {
    DomainState.NOSTATE: "unknown",
    DomainState.RUNNING: "running",
    DomainState.BLOCKED: "blocked",
    DomainState.PAUSED: "paused",
    DomainState.SHUTDOWN: "shutting down",
    DomainState.SHUTOFF: "shut off",
    DomainState.CRASHED: "crashed",
    DomainState.PMSUSPENDED: "suspended",
}


class ConnectionState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """One row of the VM table: identity, state, configured size and live rates (slots: one
    compact record per VM, thousands of them)."""

    uuid: str
    name: str
    state: DomainState
    vcpus: int = 0
    memory_kib: int = 0
    max_memory_kib: int = 0
    autostart: bool = False
    persistent: bool = True
    managed_save: bool = False
    cpu_percent: float | None = None
    disk_read_bps: float | None = None
    disk_write_bps: float | None = None
    net_rx_bps: float | None = None
    net_tx_bps: float | None = None
    cpu_time_ns: int | None = None
    stale_seconds: float | None = None  # the row is from a sample this old: the last tick's call hung
    host: str = ""  # the fleet host it is on ("" with one host)

    @property
    def key(self) -> str:
        """Its row key: the UUID, qualified by the host in a fleet (one UUID may be on two hosts
        while a migration runs)."""
        return row_key(self.host, self.uuid)


def row_key(host: str, uuid: str) -> str:
    return f"{host}/{uuid}" if host else uuid


def split_key(key: str) -> tuple[str, str]:
    """(host, uuid) of a row key."""
    host, _, uuid = key.rpartition("/")
    return host, uuid


@dataclass(frozen=True)
class NodeInfo:
    hostname: str
    model: str
    memory_kib: int
    cpus: int
    mhz: int
    hypervisor: str
    libvirt_version: str
    uri: str


@dataclass(frozen=True)
class InventoryDiff:
    """Keys removed, added and changed since the previous tick (pollhelpers-style)."""

    removed: frozenset[str] = field(default_factory=frozenset)
    added: frozenset[str] = field(default_factory=frozenset)
    changed: frozenset[str] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not (self.removed or self.added or self.changed)
