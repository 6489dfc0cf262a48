"""Many hosts at once: one ConnectionManager per host, opened concurrently, each with its own state.

A host that hangs or cannot be reached never delays the others: every open (and every summary)
runs on that host's own call thread and the caller waits for it only until a deadline; past it
the host is *unreachable* with the reason, and its open goes on alone (connected when it answers
late). A host whose first open failed keeps retrying with the manager's own backoff, as a lost
connection does.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol
from urllib.parse import urlsplit

import libvirt

from hyperconsole.errors import HyperconsoleError
from hyperconsole.virt import inventory
from hyperconsole.virt.calls import Target, fail, split
from hyperconsole.virt.connection import ConnectionManager, StateChanged
from hyperconsole.virt.models import ConnectionState, DomainState

OPEN_DEADLINE = 10.0
CPU_SAMPLE_INTERVAL = 0.5
LOCAL_OPEN_WAIT = 1.0


def on_thread(name: str, fn: Callable, *args, **kwargs) -> Future:
    """`fn(*args)` on a daemon thread of its own: the caller can stop waiting at a deadline and a
    call stuck for good never holds up the process's exit."""
    future: Future = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to whoever waits, or dropped with the call
                future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class HostLike(Protocol):
    name: str
    uri: str


class HostState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class HostStatus:
    name: str
    uri: str
    state: HostState
    reason: str = ""  # why it is unreachable (or what the reconnect loop last said)
    readonly: bool = False
    last_sample: float | None = None  # wall-clock time of the last good sample


@dataclass(frozen=True)
class HostEvent:
    """A connection event of one host (a StateChanged or LifecycleEvent), tagged with the host."""

    host: str
    event: object


class FleetHost:
    def __init__(self, spec: HostLike, manager: ConnectionManager) -> None:
        self.spec = spec
        self.manager = manager
        self.opening = False
        self.open_error = ""
        self.last_sample: float | None = None
        self.summary_call: tuple[Future, float] | None = None  # a summary still running, since when

    @property
    def name(self) -> str:
        return self.spec.name

    def status(self) -> HostStatus:
        state = self.manager.state
        if state is ConnectionState.ACTIVE:
            host_state, reason = HostState.CONNECTED, ""
        elif self.opening and not self.open_error:
            host_state, reason = HostState.CONNECTING, ""
        else:
            host_state = HostState.UNREACHABLE
            reason = self.open_error or self.manager.last_error or "not connected"
        return HostStatus(self.name, self.spec.uri, host_state, reason, self.manager.readonly, self.last_sample)


class Fleet:
    """The hosts of one console, by name, in the order given."""

    def __init__(self, hosts: Iterable[HostLike], *, readonly: bool = False,
                 listener: Callable[[HostEvent], None] | None = None,
                 manager_factory: Callable[[str, bool], ConnectionManager] | None = None) -> None:
        make = manager_factory or (lambda uri, ro: ConnectionManager(uri, readonly=ro))
        # Opening a local URI (the test driver parsing its host file, a local daemon) costs this
        # process CPU; at most one per core at once, so the first host answers early instead of
        # all of them late. A remote open mostly waits on the network: those all start at once.
        self._local_opens = threading.Semaphore(max(1, os.cpu_count() or 1))
        self.hosts: dict[str, FleetHost] = {}
        self._listener = listener
        self._closed = False
        for spec in hosts:
            if spec.name in self.hosts:
                raise HyperconsoleError(f"host {spec.name!r} is given twice")
            host = FleetHost(spec, make(spec.uri, readonly))
            host.manager.add_listener(lambda event, name=spec.name: self._emit(name, event))
            self.hosts[spec.name] = host

    def _emit(self, name: str, event: object) -> None:
        if isinstance(event, StateChanged) and event.state is ConnectionState.ACTIVE:
            self.hosts[name].open_error = ""
        if self._listener is not None:
            self._listener(HostEvent(name, event))

    def __iter__(self):
        return iter(self.hosts.values())

    def host(self, name: str) -> FleetHost:
        try:
            return self.hosts[name]
        except KeyError:
            raise HyperconsoleError(f"no host named {name!r}", hint="hosts: " + ", ".join(self.hosts)) from None

    def manager(self, name: str) -> ConnectionManager:
        return self.host(name).manager

    def statuses(self) -> list[HostStatus]:
        return [host.status() for host in self]

    def note_sample(self, name: str, when: float | None = None) -> None:
        self.host(name).last_sample = time.time() if when is None else when

    # -- opening ----------------------------------------------------------------------------------
    def open_all(self, deadline: float = OPEN_DEADLINE, *, retry: bool = True,
                 on_open: Callable[[str], None] | None = None) -> list[HostStatus]:
        """Open every host at once and wait at most `deadline` seconds in all. `on_open(name)` is
        called (from that host's thread) as each one answers, so the first host's rows can be
        shown before the slowest host answers. A host that failed keeps retrying in the background
        with `retry`; one that has not answered by the deadline is reported unreachable and is
        connected when its open returns."""
        futures = {host.name: self._start_open(host, retry, on_open) for host in self}
        wait(list(futures.values()), timeout=deadline)
        for name, future in futures.items():
            host = self.hosts[name]
            if not future.done():
                host.open_error = f"no answer within {deadline:g}s"
        return self.statuses()

    def _start_open(self, host: FleetHost, retry: bool, on_open) -> Future:
        host.opening, host.open_error = True, ""

        local = "://" in host.spec.uri and not urlsplit(host.spec.uri).hostname

        def connect() -> None:
            # A slot is waited for a short while only: a local open that hangs delays the next
            # one by LOCAL_OPEN_WAIT at most.
            slot = local and self._local_opens.acquire(timeout=LOCAL_OPEN_WAIT)
            try:
                host.manager.connect()
            except HyperconsoleError as exc:
                host.open_error = str(exc)
                if retry and not self._closed:
                    host.manager.connection_lost(host.manager.last_error or str(exc))
                return
            finally:
                host.opening = False
                if slot:
                    self._local_opens.release()
            if self._closed:
                host.manager.close()
            elif on_open is not None:
                on_open(host.name)

        return on_thread(f"open-{host.name}", connect)

    def close(self) -> None:
        self._closed = True
        for host in self:
            host.manager.close()


# -- a host at a glance (fleet status, the dashboard's host rows) ----------------------------------


@dataclass(frozen=True)
class HostSummary:
    name: str
    uri: str
    state: str  # HostState value
    reason: str = ""
    hostname: str = ""
    cpus: int = 0
    memory_kib: int = 0
    free_memory_kib: int | None = None
    cpu_percent: float | None = None  # host CPU busy, from two samples; None where the driver has none
    vms: dict[str, int] = field(default_factory=dict)  # state label -> count
    vcpus_running: int = 0
    memory_running_kib: int = 0  # allocated to running VMs
    vcpus_defined: int = 0
    memory_defined_kib: int = 0

    @property
    def overcommit(self) -> list[str]:
        """One phrase per resource the running VMs are given more of than the host has."""
        warnings = []
        if self.cpus and self.vcpus_running > self.cpus:
            warnings.append(f"vCPUs {self.vcpus_running}/{self.cpus} ({self.vcpus_running / self.cpus:.1f}x)")
        if self.memory_kib and self.memory_running_kib > self.memory_kib:
            warnings.append(f"memory {self.memory_running_kib / self.memory_kib:.0%} of the host's")
        return warnings

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "overcommit": self.overcommit}


_STATS = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_BALLOON


def _cpu_busy(conn: libvirt.virConnect, interval: float) -> float | None:
    def sample() -> tuple[int, int]:
        stats = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
        busy = sum(stats.get(k, 0) for k in ("kernel", "user"))
        return busy, busy + stats.get("idle", 0) + stats.get("iowait", 0)

    try:
        busy0, total0 = sample()
        time.sleep(interval)
        busy1, total1 = sample()
    except libvirt.libvirtError:  # the test driver and some remote drivers have no node CPU stats
        return None
    return 100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else None


def summarize(target: Target, name: str = "", *, cpu_interval: float = CPU_SAMPLE_INTERVAL) -> HostSummary:
    """Node facts, VMs by state and what they are given, from one bulk stats call. Raises VirtError."""
    conn, manager = split(target)
    node = inventory.node_info(target)
    try:
        records = conn.getAllDomainStats(_STATS, 0)
    except libvirt.libvirtError as exc:
        raise fail(manager, "read VM stats", exc) from exc
    vms: dict[str, int] = {}
    vcpus_running = memory_running = vcpus_defined = memory_defined = 0
    for dom, stats in records:
        state = DomainState.of(stats.get("state.state", 0))
        vms[state.label] = vms.get(state.label, 0) + 1
        vcpus = stats.get("vcpu.current") or stats.get("vcpu.maximum") or 0
        memory = stats.get("balloon.maximum") or stats.get("balloon.current") or 0
        if not vcpus or not memory:  # drivers without these stats: the domain's own info
            try:
                _state, max_mem, _mem, nr_vcpus, _cpu = dom.info()
            except libvirt.libvirtError:
                max_mem, nr_vcpus = 0, 0
            vcpus, memory = vcpus or nr_vcpus, memory or max_mem
        vcpus_defined += vcpus
        memory_defined += memory
        if state.is_active:
            vcpus_running += vcpus
            memory_running += memory
    try:
        free = inventory.free_memory_kib(conn)
    except libvirt.libvirtError:
        free = None
    return HostSummary(
        name=name or node.hostname, uri=node.uri, state=HostState.CONNECTED.value, hostname=node.hostname,
        cpus=node.cpus, memory_kib=node.memory_kib, free_memory_kib=free,
        cpu_percent=_cpu_busy(conn, cpu_interval) if cpu_interval > 0 else None, vms=vms,
        vcpus_running=vcpus_running, memory_running_kib=memory_running,
        vcpus_defined=vcpus_defined, memory_defined_kib=memory_defined,
    )


def summarize_all(fleet: Fleet, deadline: float = OPEN_DEADLINE, *,
                  cpu_interval: float = CPU_SAMPLE_INTERVAL) -> list[HostSummary]:
    """Every host's summary, each asked on its own thread; a host that does not answer within
    `deadline` (or is not connected) is listed with its state and reason."""
    futures: dict[str, Future] = {}
    for host in fleet:
        if host.summary_call is not None and not host.summary_call[0].done():
            continue  # its last summary still hangs: no second call piles up behind it
        if host.status().state is HostState.CONNECTED:
            futures[host.name] = on_thread(f"summary-{host.name}", summarize, host.manager, host.name,
                                           cpu_interval=cpu_interval)
            host.summary_call = (futures[host.name], time.monotonic())
    wait(list(futures.values()), timeout=deadline)
    out = []
    for host in fleet:
        status = host.status()
        future = futures.get(host.name)
        if future is None and host.summary_call is not None and not host.summary_call[0].done():
            waited = time.monotonic() - host.summary_call[1]
            out.append(HostSummary(host.name, host.spec.uri, HostState.UNREACHABLE.value,
                                   f"no answer to the last call, asked {waited:.0f}s ago"))
        elif future is None:
            out.append(HostSummary(host.name, host.spec.uri, status.state.value, status.reason))
        elif not future.done():
            out.append(HostSummary(host.name, host.spec.uri, HostState.UNREACHABLE.value,
                                   f"no answer within {deadline:g}s"))
        elif future.exception() is not None:
            out.append(HostSummary(host.name, host.spec.uri, HostState.UNREACHABLE.value, str(future.exception())))
        else:
            fleet.note_sample(host.name)
            out.append(future.result())
    return out
