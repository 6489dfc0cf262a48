"""DomainSampler: one getAllDomainStats per tick (it lists every domain with its stats; a driver
without bulk stats gets listAllDomains plus per-domain info), rates from two samples.

Facts that change only when a domain is (re)defined — vCPUs, memory, autostart, persistence,
managed save — are fetched once per domain and again only when it is marked dirty (lifecycle
event or our own operation), so steady-state calls per tick do not grow with the number of VMs.
No XMLDesc here: details are read on demand elsewhere.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import libvirt

from hyperconsole.virt import errors
from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt.models import DomainInfo, DomainState, InventoryDiff

STATS_GROUPS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)
NOWAIT = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)

# Lifecycle events after which vCPUs, memory, persistence or managed save may differ; pause,
# resume and crash only change the state, which every tick reads anyway.
STATIC_CHANGING_EVENTS = frozenset({
    libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED,
    libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STOPPED,
})


@dataclass(frozen=True)
class _Static:
    name: str  # a rename is a (re)define, which marks the domain dirty
    vcpus: int
    memory_kib: int
    max_memory_kib: int
    autostart: bool
    persistent: bool
    managed_save: bool


@dataclass(frozen=True)
class _Counters:
    at: float
    cpu_ns: int | None
    rd: int | None
    wr: int | None
    rx: int | None
    tx: int | None


@dataclass(frozen=True)
class Tick:
    domains: dict[str, DomainInfo]
    diff: InventoryDiff
    calls: int
    seconds: float


def _sum(stats: dict, prefix: str, count_key: str, field: str) -> int | None:
    count = stats.get(count_key)
    if count is None:
        return None
    total = 0
    for i in range(int(count)):
        total += int(stats.get(f"{prefix}.{i}.{field}", 0) or 0)
    return total


def _rate(new: int | None, old: int | None, seconds: float) -> float | None:
    if new is None or old is None or seconds <= 0 or new < old:
        return None
    return (new - old) / seconds


class DomainSampler:
    """Collects the VM table for one connection. Not re-entrant: ticks must not overlap."""

    def __init__(self, manager: ConnectionManager, clock=time.monotonic) -> None:
        self.manager = manager
        self._clock = clock
        self._static: dict[str, _Static] = {}
        self._counters: dict[str, _Counters] = {}
        self._previous: dict[str, DomainInfo] = {}
        self._built_from: dict[str, tuple[_Static, dict]] = {}
        self._dirty: set[str] = set()
        self._dirty_all = False
        self._dirty_lock = threading.Lock()
        self._generation = -1
        self._flags = NOWAIT
        self.bulk_stats: bool | None = None  # None until probed

    def mark_dirty(self, uuid: str | None = None) -> None:
        """Refetch static facts for one domain (or all) on the next tick. Thread-safe."""
        with self._dirty_lock:
            if uuid is None:
                self._dirty_all = True
            else:
                self._dirty.add(uuid)

    def note_event(self, uuid: str, event: int) -> None:
        """A lifecycle event: refetch static facts only when the event can have changed them."""
        if event in STATIC_CHANGING_EVENTS:
            self.mark_dirty(uuid)

    @property
    def domains(self) -> dict[str, DomainInfo]:
        return dict(self._previous)

    def tick(self) -> Tick:
        started = time.perf_counter()
        try:
            return self._tick(started)
        except libvirt.libvirtError as exc:
            self.manager.check_error(exc)
            raise errors.VirtError.wrap("refresh failed", exc) from exc

    def _tick(self, started: float) -> Tick:
        conn = self.manager.conn
        if self.manager.generation != self._generation:
            # A new connection: counters from the old one would give nonsense rates.
            self._generation = self.manager.generation
            self._counters.clear()
            self._built_from.clear()
            self.mark_dirty()
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
            dirty_all, self._dirty_all = self._dirty_all, False

        # getAllDomainStats lists every domain, active or not, with its stats: one call is the
        # whole inventory. listAllDomains is only needed where the driver has no bulk stats.
        calls = 0
        pairs = self._bulk_stats(conn)
        if pairs is None:
            pairs = [(dom, None) for dom in conn.listAllDomains(0)]
        calls += 1
        now = self._clock()
        keyed = [(dom.UUIDString(), dom, stats) for dom, stats in pairs]
        stale = [dom for uuid, dom, _stats in keyed if dirty_all or uuid in dirty or uuid not in self._static]
        if stale:
            calls += self._refresh_static(conn, stale)
        current: dict[str, DomainInfo] = {}
        for uuid, dom, stats in keyed:
            static = self._static.get(uuid)
            if static is None:
                continue  # undefined between the list and the query
            if stats is None:  # driver without bulk stats: per-domain fallback
                try:
                    stats = self._fallback_stats(dom)
                except libvirt.libvirtError as exc:
                    if errors.is_no_domain(exc):
                        continue
                    raise
                calls += 1
            current[uuid] = self._build(uuid, static.name, static, stats, now)

        for gone in set(self._static) - set(current):
            self._static.pop(gone, None)
            self._counters.pop(gone, None)
            self._built_from.pop(gone, None)
        previous = self._previous
        diff = InventoryDiff(
            removed=frozenset(previous.keys() - current.keys()),
            added=frozenset(current.keys() - previous.keys()),
            changed=frozenset(k for k in current.keys() & previous.keys()
                              if current[k] is not previous[k] and current[k] != previous[k]),
        )
        self._previous = current
        return Tick(current, diff, calls, time.perf_counter() - started)

    def _bulk_stats(self, conn: libvirt.virConnect) -> list | None:
        """[(virDomain, stats)] for every domain, or None where the driver has no bulk stats."""
        if self.bulk_stats is False:
            return None
        try:
            result = conn.getAllDomainStats(STATS_GROUPS, self._flags)
        except libvirt.libvirtError as exc:
            if self._flags and errors.code(exc) in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT,
                                                     libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
                self._flags = 0  # older daemon: no NOWAIT
                return self._bulk_stats(conn)
            if errors.is_no_support(exc):
                self.bulk_stats = False
                return None
            raise
        self.bulk_stats = True
        return result

    @staticmethod
    def _fallback_stats(dom) -> dict:
        state, _max, _mem, _vcpus, cpu_time = dom.info()
        return {"state.state": state, "cpu.time": cpu_time}

    # Below this many stale domains, three calls each beat three lists of every domain.
    FILTERED_LISTS_FROM = 32

    def _refresh_static(self, conn: libvirt.virConnect, doms: list) -> int:
        """Static facts for new or changed domains; returns the libvirt calls it made.

        Autostart, persistence and managed save come from three filtered lists when many domains
        are stale (start-up, reconnect), else from three calls per domain; vCPUs and memory
        always need one info() per domain.
        """
        calls = 0
        flagged: dict[str, set[str]] | None = None
        if len(doms) >= self.FILTERED_LISTS_FROM:
            flagged = {
                name: {d.UUIDString() for d in conn.listAllDomains(flag)}
                for name, flag in (
                    ("autostart", libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART),
                    ("persistent", libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT),
                    ("managed_save", libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE),
                )
            }
            calls += 3
        for dom in doms:
            uuid = dom.UUIDString()
            try:
                _state, max_mem, mem, vcpus, _cpu = dom.info()
                if flagged is not None:
                    autostart, persistent, managed = (uuid in flagged[k] for k in ("autostart", "persistent",
                                                                                   "managed_save"))
                else:
                    persistent = bool(dom.isPersistent())
                    autostart = persistent and bool(dom.autostart())
                    managed = persistent and bool(dom.hasManagedSaveImage(0))
                    calls += 3 if persistent else 1
            except libvirt.libvirtError as exc:
                if errors.is_no_domain(exc):
                    self._static.pop(uuid, None)
                    continue
                raise
            calls += 1
            self._static[uuid] = _Static(dom.name(), vcpus, mem, max_mem, autostart, persistent, managed)
        return calls

    def _build(self, uuid: str, name: str, static: _Static, stats: dict, now: float) -> DomainInfo:
        previous = self._previous.get(uuid)
        if ("cpu.time" not in stats and previous is not None and self._built_from.get(uuid) == (static, stats)):
            # Nothing moved and there are no counters to turn into rates: same row as last tick.
            return previous
        self._built_from[uuid] = (static, stats)
        state = DomainState.of(int(stats.get("state.state", 0)))
        vcpus = int(stats.get("vcpu.current", static.vcpus) or static.vcpus)
        memory = int(stats.get("balloon.current", static.memory_kib) or static.memory_kib)
        cpu_ns = stats.get("cpu.time")
        rates: dict[str, float | None] = {}
        if cpu_ns is not None or "block.count" in stats or "net.count" in stats:
            counters = _Counters(
                now, cpu_ns,
                _sum(stats, "block", "block.count", "rd.bytes"), _sum(stats, "block", "block.count", "wr.bytes"),
                _sum(stats, "net", "net.count", "rx.bytes"), _sum(stats, "net", "net.count", "tx.bytes"),
            )
            old = self._counters.get(uuid)
            self._counters[uuid] = counters
            if old is not None and state.is_active:
                seconds = now - old.at
                cpu = _rate(counters.cpu_ns, old.cpu_ns, seconds)
                rates = {
                    "cpu_percent": None if cpu is None else min(100.0, cpu / 1e9 / max(vcpus, 1) * 100.0),
                    "disk_read_bps": _rate(counters.rd, old.rd, seconds),
                    "disk_write_bps": _rate(counters.wr, old.wr, seconds),
                    "net_rx_bps": _rate(counters.rx, old.rx, seconds),
                    "net_tx_bps": _rate(counters.tx, old.tx, seconds),
                }
        return DomainInfo(
            uuid=uuid, name=name, state=state, vcpus=vcpus, memory_kib=memory,
            max_memory_kib=static.max_memory_kib, autostart=static.autostart,
            persistent=static.persistent, managed_save=static.managed_save, cpu_time_ns=cpu_ns, **rates,
        )
