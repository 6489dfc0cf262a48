"""DomainSampler: one bulk stats call per tick, rates from two samples.

What a tick asks for follows what the operator sees (`set_interest`): the rows on screen are
sampled every tick with one `domainListGetStats`, and with them a slice of the others, so that
every domain is sampled every SLOW_TICKS ticks without one call over thousands of them holding up
a tick. The whole inventory comes with one `getAllDomainStats` every LIST_TICKS ticks (a driver
without bulk stats gets listAllDomains plus per-domain info). Counts stay exact in between
because state changes arrive as lifecycle events: a domain with an event is sampled on the next
tick, and a domain defined or undefined makes that tick a full one. Sorted on a rate column, or
with nobody saying what is shown, every tick is a full one. A row not sampled in a tick keeps its
last figures (its rates are the averages since the sample before); on its next sample its rates
cover the whole gap.

Facts that change only when a domain is (re)defined — vCPUs, memory, autostart, persistence,
managed save — are fetched once per domain and again only when it is marked dirty (lifecycle
event or our own operation), so steady-state calls per tick do not grow with the number of VMs.
No XMLDesc here: details are read on demand elsewhere.

A tick has a deadline. libvirt calls run on a call thread the tick can stop waiting for: a call
past its deadline is abandoned (it finishes on its own thread, its result is discarded) and named
in the tick's `stuck`. The domains that did not answer keep their last row, marked stale with its
age; the others are asked one by one, each call with a short deadline, so the domain whose call
hangs (a QEMU that stopped answering its monitor) is found and left out of later bulk calls until
its abandoned call returns.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Callable, Collection, Protocol

import libvirt

from hyperconsole.virt import errors
from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt.models import DomainInfo, DomainState, InventoryDiff

# Only what the VM list shows. No VCPU or BALLOON group: in the QEMU driver each is a monitor
# round trip per domain, and vCPUs and memory come with the static facts (refetched on events).
FAST_GROUPS = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_INTERFACE
STATS_GROUPS = FAST_GROUPS | libvirt.VIR_DOMAIN_STATS_BLOCK
# Block stats are the dearest group (two monitor round trips per domain, about twice the daemon
# CPU of all the others together): asked every BLOCK_TICKS ticks, so a disk rate is the average
# over that many refreshes; every tick when sorted on disk, at once for rows that came into view.
BLOCK_TICKS = 3
# While only some rows are of interest: every domain sampled once in this many ticks (a slice of
# those off screen each tick), and the inventory listed whole at least this often (a safety net:
# defines and undefines arrive as events, a reconnect lists everything anyway).
SLOW_TICKS = 5
LIST_TICKS = 30
# VM list columns whose sort order depends on figures only a sample brings (resources.VMS):
# sorted on one of them, every domain is sampled every tick so the order is right.
RATE_COLUMNS = frozenset({"cpu", "disk", "net"})
# Events after which the inventory itself may differ: the next tick lists every domain.
INVENTORY_EVENTS = frozenset({libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED})
NOWAIT = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)
_NOWAIT_REFUSED = (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED)

# Lifecycle events after which vCPUs, memory, persistence or managed save may differ; pause,
# resume and crash only change the state, which every tick reads anyway.
STATIC_CHANGING_EVENTS = frozenset({
    libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED,
    libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STOPPED,
})

# Below this many stale domains, three calls each beat three lists of every domain.
FILTERED_LISTS_FROM = 32


class StatsSource(Protocol):
    """Figures a driver does not report, added to what it does (the demo simulates load)."""

    simulated: bool

    def figures(self, uuid: str, stats: dict, now: float) -> dict:
        """`stats` as the driver returned it, with the source's counters added."""


@dataclass(frozen=True)
class StuckCall:
    call: str  # "getAllDomainStats", "domainListGetStats web-01"
    seconds: float

    def __str__(self) -> str:
        return f"{self.call} stuck for {self.seconds:.0f} s"


@dataclass(frozen=True, slots=True)
class _Static:
    name: str  # a rename is a (re)define, which marks the domain dirty
    vcpus: int
    memory_kib: int
    max_memory_kib: int
    autostart: bool
    persistent: bool
    managed_save: bool


@dataclass(frozen=True, slots=True)
class _Counters:
    at: float
    cpu_ns: int | None
    rd: int | None
    wr: int | None
    rx: int | None
    tx: int | None
    block_at: float | None = None  # rd/wr are from this sample (block stats come less often)


@dataclass(frozen=True)
class Tick:
    domains: dict[str, DomainInfo]
    diff: InventoryDiff
    seconds: float
    stuck: tuple[StuckCall, ...] = ()  # calls abandoned at their deadline and not returned yet


@dataclass
class _Abandoned:
    call: str
    since: float
    uuid: str | None  # the one domain it asked about; None: a call over every domain
    explained: bool = False  # a domain whose own call hangs was found after it


class _Stuck(Exception):
    pass


# [(uuid, virDomain, stats)] of the domains that answered, {uuid: virDomain} of those that did not.
_Collected = tuple[list[tuple[str, object, dict]], dict[str, object] | None]


class CallThread:
    """Runs calls one at a time on a daemon thread, so the caller can stop waiting at a deadline.

    An abandoned call keeps its thread: the thread finishes the call (nobody reads the result)
    and exits, and the next call starts a fresh thread. Daemon threads, so a call stuck for good
    never holds up the process's exit.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue | None = None

    def submit(self, fn: Callable, *args) -> Future:
        if self._queue is None:
            self._queue = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(self._queue,), name=self._name, daemon=True).start()
        future: Future = Future()
        self._queue.put((future, fn, args))
        return future

    def abandon(self) -> None:
        """The call in progress is left to finish alone; its thread exits after it."""
        if self._queue is not None:
            self._queue.put(None)
            self._queue = None

    @staticmethod
    def _serve(calls: queue.SimpleQueue) -> None:
        while (item := calls.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the waiting tick, or discarded with the call
                future.set_exception(exc)


def _sum(stats: dict, prefix: str, count_key: str, field: str) -> int | None:
    count = stats.get(count_key)
    if not count:  # not reported, or no such device (a VM without a NIC has no network rate, not 0)
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
    """Collects the VM table for one connection. Not re-entrant: ticks must not overlap.

    `deadline` bounds a call over every domain (the bulk stats, the list), `call_deadline` a call
    about one domain; `stats_source` adds figures the driver does not report; `host` names the
    fleet host on every row (its rows are keyed by UUID all the same).
    """

    def __init__(self, manager: ConnectionManager, clock=time.monotonic, *, deadline: float = 3.0,
                 call_deadline: float = 1.0, stats_source: StatsSource | None = None, host: str = "") -> None:
        self.manager = manager
        self.host = host
        self._clock = clock
        self.deadline = deadline
        self.call_deadline = call_deadline
        self.stats_source = stats_source
        self._static: dict[str, _Static] = {}
        self._counters: dict[str, _Counters] = {}
        self._previous: dict[str, DomainInfo] = {}
        self._sampled_at: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._dirty_all = False
        self._lock = threading.Lock()  # dirty marks and abandoned calls; both change off the tick
        self._abandoned: dict[Future, _Abandoned] = {}
        self._calls = CallThread(f"libvirt-call-{host}" if host else "libvirt-call")
        self._budget_ends = 0.0
        self._generation = -1
        self._flags = NOWAIT
        self.bulk_stats: bool | None = None  # None until probed
        self._interest: frozenset[str] | None = None  # None: every domain is of interest
        self._sort_column: str | None = None
        self._touched: set[str] = set()  # domains with an event since the last tick
        self._full_next = False  # the first tick is a full one anyway (it probes bulk stats)
        self._since_full = 0
        self._ticks = 0
        self._block_next = True
        self._doms: dict[str, object] = {}  # virDomain by UUID, from the last full tick
        self._order: list[str] = []  # the UUIDs of the last full tick, sliced tick by tick
        self._next_slice = 0

    def set_interest(self, keys: Collection[str] | None, sort_column: str | None = None) -> None:
        """The UUIDs whose rows are on screen and the column the list is sorted on (None: every
        domain is shown). Thread-safe; a domain that comes into view is sampled on the next tick."""
        interest = None if keys is None else frozenset(keys)
        with self._lock:
            if interest is None or self._interest is None or not interest <= self._interest:
                self._block_next = True  # rows that came into view get every figure at once
            self._interest = interest
            self._sort_column = sort_column

    @property
    def simulated(self) -> bool:
        return self.stats_source is not None and self.stats_source.simulated

    def mark_dirty(self, uuid: str | None = None) -> None:
        """Refetch static facts for one domain (or all) on the next tick. Thread-safe."""
        with self._lock:
            if uuid is None:
                self._dirty_all = True
            else:
                self._dirty.add(uuid)

    def note_event(self, uuid: str, event: int) -> None:
        """A lifecycle event: the domain is sampled on the next tick (every domain after a define
        or undefine); its static facts are refetched when the event can have changed them."""
        with self._lock:
            self._touched.add(uuid)
            if event in INVENTORY_EVENTS:
                self._full_next = True
        if event in STATIC_CHANGING_EVENTS:
            self.mark_dirty(uuid)

    def _plan(self, dirty: set[str], dirty_all: bool) -> tuple[dict[str, object] | None, int]:
        """The domains this tick samples ({uuid: virDomain}, or None for every domain) and the
        stat groups it asks for."""
        with self._lock:
            interest, sort_column = self._interest, self._sort_column
            touched, self._touched = self._touched, set()
            full, self._full_next = self._full_next, False
            block, self._block_next = self._block_next, False
        self._since_full += 1
        self._ticks += 1
        groups = STATS_GROUPS if block or sort_column == "disk" or self._ticks % BLOCK_TICKS == 0 else FAST_GROUPS
        if (full or dirty_all or interest is None or sort_column in RATE_COLUMNS
                or self._since_full >= LIST_TICKS or not self.manager.has_events):
            return None, groups
        wanted = interest | touched | dirty
        if not wanted <= self._doms.keys():
            return None, groups  # a domain not seen in a full tick yet
        size = -(-len(self._order) // SLOW_TICKS)
        if self._next_slice >= len(self._order):
            self._next_slice = 0
        wanted = wanted.union(self._order[self._next_slice:self._next_slice + size])
        self._next_slice += size
        doms = self._doms
        return {uuid: doms[uuid] for uuid in wanted if uuid in doms}, groups

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

    # -- calls with a deadline ---------------------------------------------------------------------
    def _call(self, call: str, fn: Callable, *args, timeout: float, uuid: str | None = None):
        """fn(*args) on the call thread; past `timeout` it is abandoned and _Stuck is raised.

        A call about one domain also ends with the tick's budget: however many domains hang, the
        tick ends in time, and those not asked wait for the next tick (their rows marked stale).

        A call whose earlier copy is still out is not made again: it would only hang beside it (and
        hold another of the daemon's workers). A call over every domain is made again once the
        domain that held it up has been found, since later copies leave that domain out."""
        with self._lock:
            if any(a.call == call and (a.uuid is not None or not a.explained) for a in self._abandoned.values()):
                raise _Stuck(call)
        since = self._clock()
        if uuid is not None:
            timeout = min(timeout, self._budget_ends - since)
            if timeout <= 0:
                raise _Stuck(call)  # not asked: nothing abandoned
        future = self._calls.submit(fn, *args)
        try:
            return future.result(timeout)
        except FutureTimeout:
            pass
        self._calls.abandon()
        with self._lock:
            if uuid is not None:  # the domain that holds up the calls over every domain is found
                for earlier in self._abandoned.values():
                    earlier.explained = True
            self._abandoned[future] = _Abandoned(call, since, uuid)
        future.add_done_callback(self._returned)
        raise _Stuck(call)

    def _returned(self, future: Future) -> None:
        """An abandoned call came back: its result is discarded, its domain is asked again."""
        with self._lock:
            self._abandoned.pop(future, None)

    def _stuck_domains(self) -> set[str]:
        with self._lock:
            return {a.uuid for a in self._abandoned.values() if a.uuid is not None}

    def stuck_calls(self) -> tuple[StuckCall, ...]:
        now = self._clock()
        with self._lock:
            found = sorted(self._abandoned.values(), key=lambda a: a.since)
        return tuple(StuckCall(a.call, now - a.since) for a in found)

    # -- one tick ----------------------------------------------------------------------------------
    def _tick(self, started: float) -> Tick:
        conn = self.manager.conn
        self._budget_ends = self._clock() + 2 * self.deadline  # one bulk call, then one by one
        if self.manager.generation != self._generation:
            # A new connection: counters from the old one would give nonsense rates, and calls
            # abandoned on it end with it.
            self._generation = self.manager.generation
            self._counters.clear()
            self._calls.abandon()
            with self._lock:
                self._abandoned.clear()
            self.mark_dirty()
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            dirty_all, self._dirty_all = self._dirty_all, False

        wanted, groups = self._plan(dirty, dirty_all) if self.bulk_stats else (None, STATS_GROUPS)
        fresh, silent = self._collect(conn, wanted, groups)
        now = self._clock()
        if silent is None:  # not even the list answered: every row is as old as its sample
            silent = dict.fromkeys(self._previous)
            wanted = None
        if wanted is None:
            self._since_full = self._next_slice = 0
            self._doms = {uuid: dom for uuid, dom, _stats in fresh}
            self._doms.update((uuid, dom) for uuid, dom in silent.items() if dom is not None)
            self._order = list(self._doms)
        new = [(uuid, dom) for uuid, dom, _stats in fresh if dirty_all or uuid in dirty or uuid not in self._static]
        if new:
            silent.update(self._refresh_static(conn, new))
        # Rows not sampled this tick stay as they are (a sampled one that did not come back was
        # undefined meanwhile; its event makes the next tick a full one).
        current: dict[str, DomainInfo] = (
            {} if wanted is None else {uuid: row for uuid, row in self._previous.items() if uuid not in wanted})
        for uuid, _dom, stats in fresh:
            static = self._static.get(uuid)
            if static is None or uuid in silent:
                continue  # undefined between the list and the query, or its facts did not come
            if self.stats_source is not None:
                stats = self.stats_source.figures(uuid, stats, now)
            current[uuid] = self._build(uuid, static, stats, now)
            self._sampled_at[uuid] = now
        for uuid, dom in silent.items():
            row = self._silent_row(uuid, dom, now)
            if row is not None:
                current[uuid] = row
        unanswered = silent.keys() & (dirty | (set(self._static) if dirty_all else set()))
        if unanswered:
            with self._lock:
                self._dirty |= unanswered  # asked again once they answer

        previous = self._previous
        # A tick that sampled a few domains compares only those: its cost follows the screen,
        # not the inventory.
        asked = (previous.keys() | current.keys() if wanted is None
                 else wanted.keys() | silent.keys() | {uuid for uuid, _dom, _stats in fresh})
        for gone in [k for k in asked if k not in current]:
            for known in (self._static, self._counters, self._sampled_at, self._doms):
                known.pop(gone, None)
        diff = InventoryDiff(
            removed=frozenset(k for k in asked if k in previous and k not in current),
            added=frozenset(k for k in asked if k in current and k not in previous),
            changed=frozenset(k for k in asked if k in current and k in previous
                              and current[k] is not previous[k] and current[k] != previous[k]),
        )
        self._previous = current
        return Tick(current, diff, time.perf_counter() - started, self.stuck_calls())

    def _silent_row(self, uuid: str, dom, now: float) -> DomainInfo | None:
        """A domain whose stats did not come: its last row (or what is known of it) marked stale,
        with its state where that one short call still answers (it needs no monitor)."""
        old = self._previous.get(uuid)
        since = self._sampled_at.setdefault(uuid, now)  # never sampled: stale since first seen
        if dom is None:  # the list did not come either
            return None if old is None else replace(old, stale_seconds=now - since)
        name = self._name(uuid, dom)
        try:
            state = DomainState.of(self._call(f"state {name}", dom.state, 0, timeout=self.call_deadline,
                                              uuid=uuid)[0])
        except _Stuck:
            state = old.state if old is not None else DomainState.NOSTATE
        except libvirt.libvirtError as exc:
            if errors.is_no_domain(exc):
                return None
            raise
        if old is None:
            return DomainInfo(uuid=uuid, name=name, state=state, stale_seconds=now - since, host=self.host)
        return replace(old, state=state, stale_seconds=now - since)

    def _name(self, uuid: str, dom) -> str:
        static = self._static.get(uuid)
        return static.name if static is not None else dom.name()

    def _collect(self, conn: libvirt.virConnect, wanted: dict[str, object] | None, groups: int) -> _Collected:
        """The domains that answered and those that did not (None when not even the list came
        back); `wanted`: the domains to sample, None for every domain (then listed afresh)."""
        stuck = self._stuck_domains()
        if self.bulk_stats is not False:
            try:
                return self._bulk(conn, stuck, wanted, groups)
            except _Stuck:
                pass
        return self._one_by_one(conn, stuck)

    def _bulk(self, conn: libvirt.virConnect, stuck: set[str], wanted: dict[str, object] | None,
              groups: int) -> _Collected:
        if wanted is not None:
            listed = list(wanted.items())
        elif not stuck:
            # getAllDomainStats lists every domain, active or not, with its stats: one call is
            # the whole inventory.
            pairs = self._call("getAllDomainStats", self._all_stats, conn, groups, timeout=self.deadline)
            if pairs is not None:
                return [(dom.UUIDString(), dom, stats) for dom, stats in pairs], {}
            return self._one_by_one(conn, stuck)  # the driver has no bulk stats
        else:
            listed = self._list(conn)
        others = [dom for uuid, dom in listed if uuid not in stuck]
        pairs = self._call("domainListGetStats", self._stats_of, conn, others, groups, timeout=self.deadline)
        fresh = [(dom.UUIDString(), dom, stats) for dom, stats in pairs]
        return fresh, {uuid: dom for uuid, dom in listed if uuid in stuck}

    def _one_by_one(self, conn: libvirt.virConnect, stuck: set[str]) -> _Collected:
        """The list, then each domain on its own with a short deadline: one that hangs is found."""
        try:
            listed = self._list(conn)
        except _Stuck:
            return [], None
        fresh, silent = [], {}
        call = "domainListGetStats" if self.bulk_stats is not False else "info"
        for uuid, dom in listed:
            if uuid in stuck:
                silent[uuid] = dom
                continue
            try:
                stats = self._call(f"{call} {self._name(uuid, dom)}", self._stats_of_one, conn, dom,
                                   timeout=self.call_deadline, uuid=uuid)
            except _Stuck:
                silent[uuid] = dom
                continue
            except libvirt.libvirtError as exc:
                if errors.is_no_domain(exc):
                    continue
                raise
            fresh.append((uuid, dom, stats))
        return fresh, silent

    def _list(self, conn: libvirt.virConnect) -> list[tuple[str, object]]:
        doms = self._call("listAllDomains", conn.listAllDomains, 0, timeout=self.deadline)
        return [(dom.UUIDString(), dom) for dom in doms]

    # -- the calls themselves (on the call thread) -------------------------------------------------
    def _all_stats(self, conn: libvirt.virConnect, groups: int) -> list | None:
        """[(virDomain, stats)] for every domain, or None where the driver has no bulk stats."""
        try:
            result = self._with_flags(conn.getAllDomainStats, groups)
        except libvirt.libvirtError as exc:
            if errors.is_no_support(exc):
                self.bulk_stats = False
                return None
            raise
        self.bulk_stats = True
        return result

    def _stats_of(self, conn: libvirt.virConnect, doms: list, groups: int) -> list:
        return self._with_flags(conn.domainListGetStats, groups, doms) if doms else []

    def _with_flags(self, fn: Callable, groups: int, *lead) -> list:
        try:
            return fn(*lead, groups, self._flags)
        except libvirt.libvirtError as exc:
            if self._flags and errors.code(exc) in _NOWAIT_REFUSED:
                self._flags = 0  # older daemon: no NOWAIT
                return fn(*lead, groups, 0)
            raise

    def _stats_of_one(self, conn: libvirt.virConnect, dom) -> dict:
        if self.bulk_stats is False:  # driver without bulk stats
            state, _max, _mem, _vcpus, cpu_time = dom.info()
            return {"state.state": state, "cpu.time": cpu_time}
        # No NOWAIT here on purpose: a domain whose job is held by a call stuck in its monitor
        # then makes this call wait, which is how the stuck domain is told from the others.
        result = conn.domainListGetStats([dom], STATS_GROUPS, 0)
        return result[0][1] if result else {}

    def _refresh_static(self, conn: libvirt.virConnect, doms: list[tuple[str, object]]) -> dict[str, object]:
        """Static facts for new or changed domains; returns {uuid: virDomain} of those whose facts
        did not come.

        Read for all of them in one call with the deadline of a bulk call; if that hangs, one by
        one, so only the domain that hangs is left out.
        """
        silent: dict[str, object] = {}
        try:
            found = self._call("domain facts", self._read_static, conn, doms, timeout=self.deadline)
        except _Stuck:
            found = {}
            for uuid, dom in doms:
                try:
                    found.update(self._call(f"domain facts {self._name(uuid, dom)}", self._read_static, conn,
                                            [(uuid, dom)], timeout=self.call_deadline, uuid=uuid))
                except _Stuck:
                    silent[uuid] = dom
        for uuid, _dom in doms:
            if uuid in found:
                self._static[uuid] = found[uuid]
            elif uuid not in silent:
                self._static.pop(uuid, None)  # undefined meanwhile
        return silent

    @staticmethod
    def _read_static(conn: libvirt.virConnect, doms: list[tuple[str, object]]) -> dict[str, _Static]:
        """Autostart, persistence and managed save come from three filtered lists when many
        domains are stale (start-up, reconnect), else from three calls per domain; vCPUs and
        memory always need one info() per domain."""
        flagged: dict[str, set[str]] | None = None
        if len(doms) >= FILTERED_LISTS_FROM:
            flagged = {
                name: {d.UUIDString() for d in conn.listAllDomains(flag)}
                for name, flag in (
                    ("autostart", libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART),
                    ("persistent", libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT),
                    ("managed_save", libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE),
                )
            }
        found: dict[str, _Static] = {}
        for uuid, dom in doms:
            try:
                _state, max_mem, mem, vcpus, _cpu = dom.info()
                if flagged is not None:
                    autostart, persistent, managed = (uuid in flagged[k] for k in ("autostart", "persistent",
                                                                                   "managed_save"))
                else:
                    persistent = bool(dom.isPersistent())
                    autostart = persistent and bool(dom.autostart())
                    managed = persistent and bool(dom.hasManagedSaveImage(0))
                found[uuid] = _Static(dom.name(), vcpus, mem, max_mem, autostart, persistent, managed)
            except libvirt.libvirtError as exc:
                if not errors.is_no_domain(exc):
                    raise
        return found

    def _build(self, uuid: str, static: _Static, stats: dict, now: float) -> DomainInfo:
        previous = self._previous.get(uuid)
        state = DomainState.of(int(stats.get("state.state", 0)))
        vcpus = int(stats.get("vcpu.current", static.vcpus) or static.vcpus)
        memory = int(stats.get("balloon.current", static.memory_kib) or static.memory_kib)
        cpu_ns = stats.get("cpu.time")
        rates: dict[str, float | None] = {}
        block = "block.count" in stats
        if cpu_ns is not None or block or "net.count" in stats:
            old = self._counters.get(uuid)
            if block:
                rd = _sum(stats, "block", "block.count", "rd.bytes")
                wr = _sum(stats, "block", "block.count", "wr.bytes")
            else:  # not asked this tick: the last block sample stays the base of the next rate
                rd, wr = (None, None) if old is None else (old.rd, old.wr)
            counters = _Counters(
                now, cpu_ns, rd, wr,
                _sum(stats, "net", "net.count", "rx.bytes"), _sum(stats, "net", "net.count", "tx.bytes"),
                now if block else None if old is None else old.block_at,
            )
            self._counters[uuid] = counters
            if old is not None and state.is_active:
                seconds = now - old.at
                cpu = _rate(counters.cpu_ns, old.cpu_ns, seconds)
                rates = {
                    "cpu_percent": None if cpu is None else min(100.0, cpu / 1e9 / max(vcpus, 1) * 100.0),
                    "net_rx_bps": _rate(counters.rx, old.rx, seconds),
                    "net_tx_bps": _rate(counters.tx, old.tx, seconds),
                }
                if block and old.block_at is not None:
                    rates["disk_read_bps"] = _rate(rd, old.rd, now - old.block_at)
                    rates["disk_write_bps"] = _rate(wr, old.wr, now - old.block_at)
                elif not block and previous is not None:  # the rate of the last block sample
                    rates["disk_read_bps"] = previous.disk_read_bps
                    rates["disk_write_bps"] = previous.disk_write_bps
        info = DomainInfo(
            uuid=uuid, name=static.name, state=state, vcpus=vcpus, memory_kib=memory,
            max_memory_kib=static.max_memory_kib, autostart=static.autostart,
            persistent=static.persistent, managed_save=static.managed_save, cpu_time_ns=cpu_ns, host=self.host,
            **rates,
        )
        # Nothing moved (no counters, same facts): the same row object, which the diff skips and
        # which keeps one record per VM rather than a copy per tick.
        return previous if previous is not None and previous == info else info
