"""Frozen dataclasses the rest of the app sees instead of libvirt objects."""

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


@dataclass(frozen=True)
class DomainInfo:
    """One row of the VM table: identity, state, configured size and live rates."""

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


@dataclass(frozen=True)
class DiskInfo:
    target: str
    device: str  # disk, cdrom, floppy, lun
    bus: str
    source: str  # path, volume pool/name, or network name; "" when empty (ejected cdrom)
    format: str = ""
    pool: str = ""
    volume: str = ""
    readonly: bool = False


@dataclass(frozen=True)
class NicInfo:
    mac: str
    kind: str  # network, bridge, user, direct …
    source: str  # network or bridge name
    model: str = ""
    target: str = ""  # host-side tap device when running
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class GraphicsInfo:
    kind: str  # vnc, spice
    port: int | None
    listen: str
    autoport: bool = False

    def tunnel_hint(self, host: str = "<host>") -> str:
        if self.port is None or self.port <= 0:
            return f"{self.kind.upper()} port is assigned when the VM runs"
        listen = self.listen or "127.0.0.1"
        if listen in ("0.0.0.0", "::"):
            listen = "127.0.0.1"
        return f"ssh -L {self.port}:{listen}:{self.port} {host}  then connect a {self.kind.upper()} viewer to localhost:{self.port}"


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    parent: str | None
    description: str
    state: str
    creation_time: int
    current: bool
    depth: int = 0


@dataclass(frozen=True)
class DomainDetails:
    """What the details pane shows; read from the domain XML on demand, never on the poll path."""

    uuid: str
    name: str
    description: str
    os_type: str
    firmware: str  # bios or uefi
    disks: tuple[DiskInfo, ...] = ()
    nics: tuple[NicInfo, ...] = ()
    graphics: tuple[GraphicsInfo, ...] = ()
    snapshots: tuple[SnapshotInfo, ...] = ()
    has_nvram: bool = False


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
class NetworkInfo:
    name: str
    uuid: str
    active: bool
    autostart: bool
    persistent: bool
    forward_mode: str
    bridge: str
    ip_ranges: tuple[str, ...] = ()


@dataclass(frozen=True)
class PoolInfo:
    name: str
    uuid: str
    active: bool
    autostart: bool
    kind: str
    path: str
    capacity: int
    allocation: int
    available: int


@dataclass(frozen=True)
class VolumeInfo:
    pool: str
    name: str
    path: str
    format: str
    capacity: int
    allocation: int


@dataclass(frozen=True)
class InventoryDiff:
    """Keys removed, added and changed since the previous tick (pollhelpers-style)."""

    removed: frozenset[str] = field(default_factory=frozenset)
    added: frozenset[str] = field(default_factory=frozenset)
    changed: frozenset[str] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not (self.removed or self.added or self.changed)
