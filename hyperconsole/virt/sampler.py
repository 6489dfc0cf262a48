"""DomainSampler: one listAllDomains + one getAllDomainStats per tick, rates from two samples.

Facts that change only when a domain is (re)defined — vCPUs, memory, autostart, persistence,
managed save — are fetched once per domain and again only when it is marked dirty (lifecycle
event or our own operation), so steady-state calls per tick do not grow with the number of VMs.
No XMLDesc here: details are read on demand elsewhere.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class _Static:
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
            self.mark_dirty()
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
            dirty_all, self._dirty_all = self._dirty_all, False

        calls = 1
        doms = conn.listAllDomains(0)
        stats_by_uuid, extra_calls = self._bulk_stats(conn, doms)
        calls += extra_calls
        now = self._clock()

        stale = [dom for dom in doms if dirty_all or dom.UUIDString() in dirty
                 or dom.UUIDString() not in self._static]
        if stale:
            calls += self._refresh_static(conn, stale)
        current: dict[str, DomainInfo] = {}
        for dom in doms:
            uuid = dom.UUIDString()
            static = self._static.get(uuid)
            if static is None:
                continue  # undefined between the list and the query
            stats = stats_by_uuid.get(uuid)
            if stats is None:  # driver without bulk stats: per-domain fallback
                try:
                    stats = self._fallback_stats(dom)
                except libvirt.libvirtError as exc:
                    if errors.is_no_domain(exc):
                        continue
                    raise
                calls += 1
            current[uuid] = self._build(uuid, dom.name(), static, stats, now)

        for gone in set(self._static) - set(current):
            self._static.pop(gone, None)
            self._counters.pop(gone, None)
        previous = self._previous
        diff = InventoryDiff(
            removed=frozenset(previous.keys() - current.keys()),
            added=frozenset(current.keys() - previous.keys()),
            changed=frozenset(k for k in current.keys() & previous.keys() if current[k] != previous[k]),
        )
        self._previous = current
        return Tick(current, diff, calls, time.perf_counter() - started)

    def _bulk_stats(self, conn: libvirt.virConnect, doms: list) -> tuple[dict[str, dict], int]:
        if self.bulk_stats is False or not doms:
            return {}, 0
        try:
            result = conn.getAllDomainStats(STATS_GROUPS, self._flags)
        except libvirt.libvirtError as exc:
            if self._flags and errors.code(exc) in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT,
                                                     libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
                self._flags = 0  # older daemon: no NOWAIT
                return self._bulk_stats(conn, doms)
            if errors.is_no_support(exc):
                self.bulk_stats = False
                return {}, 1
            raise
        self.bulk_stats = True
        return {dom.UUIDString(): stats for dom, stats in result}, 1

    @staticmethod
    def _fallback_stats(dom) -> dict:
        state, _max, _mem, _vcpus, cpu_time = dom.info()
        return {"state.state": state, "cpu.time": cpu_time}

    def _refresh_static(self, conn: libvirt.virConnect, doms: list) -> int:
        """Static facts for new or changed domains; returns the libvirt calls it made.

        Autostart, persistence and managed save come from three filtered lists, whatever the
        number of domains; only vCPUs and memory need one info() per domain.
        """
        flagged = {
            name: {d.UUIDString() for d in conn.listAllDomains(flag)}
            for name, flag in (
                ("autostart", libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART),
                ("persistent", libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT),
                ("managed_save", libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE),
            )
        }
        for dom in doms:
            uuid = dom.UUIDString()
            try:
                _state, max_mem, mem, vcpus, _cpu = dom.info()
            except libvirt.libvirtError as exc:
                if errors.is_no_domain(exc):
                    self._static.pop(uuid, None)
                    continue
                raise
            self._static[uuid] = _Static(
                vcpus, mem, max_mem, uuid in flagged["autostart"], uuid in flagged["persistent"],
                uuid in flagged["managed_save"])
        return 3 + len(doms)

    def _build(self, uuid: str, name: str, static: _Static, stats: dict, now: float) -> DomainInfo:
        state = DomainState.of(int(stats.get("state.state", 0)))
        vcpus = int(stats.get("vcpu.current", static.vcpus) or static.vcpus)
        memory = int(stats.get("balloon.current", static.memory_kib) or static.memory_kib)
        counters = _Counters(
            now,
            stats.get("cpu.time"),
            _sum(stats, "block", "block.count", "rd.bytes"),
            _sum(stats, "block", "block.count", "wr.bytes"),
            _sum(stats, "net", "net.count", "rx.bytes"),
            _sum(stats, "net", "net.count", "tx.bytes"),
        )
        old = self._counters.get(uuid)
        self._counters[uuid] = counters
        info = DomainInfo(
            uuid=uuid, name=name, state=state, vcpus=vcpus, memory_kib=memory,
            max_memory_kib=static.max_memory_kib, autostart=static.autostart,
            persistent=static.persistent, managed_save=static.managed_save,
            cpu_time_ns=counters.cpu_ns,
        )
        if old is None or not state.is_active:
            return info
        seconds = now - old.at
        cpu = _rate(counters.cpu_ns, old.cpu_ns, seconds)
        return replace(
            info,
            cpu_percent=None if cpu is None else min(100.0, cpu / 1e9 / max(vcpus, 1) * 100.0),
            disk_read_bps=_rate(counters.rd, old.rd, seconds),
            disk_write_bps=_rate(counters.wr, old.wr, seconds),
            net_rx_bps=_rate(counters.rx, old.rx, seconds),
            net_tx_bps=_rate(counters.tx, old.tx, seconds),
        )
