"""Integration (tier 3): our ConnectionManager + DomainSampler survive a libvirtd crash.

libvirtd is SIGKILLed mid-session (QEMU keeps running) and started again; the manager must
notice on its own (close callback / keepalive, or a failing sampler tick handing the error to
``check_error``), reconnect with its backoff, bump ``generation`` and re-register lifecycle
events, all without the test calling ``connect()`` again.
"""

from __future__ import annotations

import threading
import time

import pytest

libvirt = pytest.importorskip("libvirt")

from hyperconsole.virt.connection import ConnectionManager, LifecycleEvent, StateChanged  # noqa: E402
from hyperconsole.virt.errors import VirtError  # noqa: E402
from hyperconsole.virt.models import ConnectionState, DomainState  # noqa: E402
from hyperconsole.virt.sampler import DomainSampler  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SHORT_BACKOFF = (0.2, 0.5, 0.5, 1.0)


def wait_until(predicate, timeout: float, step: float = 0.05):
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def call_bounded(fn, timeout: float):
    """Run ``fn`` in a daemon thread; ('ok', value) / ('error', exc) / ('hung', None).
    A hang in our code must fail the test, not freeze the session."""
    box: list = []

    def run():
        try:
            box.append(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 — reported to the caller
            box.append(("error", exc))

    t = threading.Thread(target=run, daemon=True, name="bounded-call")
    t.start()
    t.join(timeout)
    return box[0] if box else ("hung", None)


class Recorder:
    """Thread-safe listener: events arrive on libvirt's event thread / the reconnect thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self.events: list[object] = []

    def __call__(self, event: object) -> None:
        with self._lock:
            self.events.append(event)

    def snapshot(self) -> list[object]:
        with self._lock:
            return list(self.events)

    def lifecycle(self, name: str, event: int, since: int = 0) -> list[LifecycleEvent]:
        return [e for e in self.snapshot()[since:]
                if isinstance(e, LifecycleEvent) and e.name == name and e.event == event]

    def states(self, since: int = 0) -> list[StateChanged]:
        return [e for e in self.snapshot()[since:] if isinstance(e, StateChanged)]


def by_name(tick, name: str):
    found = [d for d in tick.domains.values() if d.name == name]
    return found[0] if found else None


def test_reconnect_after_libvirtd_killed_and_restarted(libvirtd, tiny_vm):
    name = tiny_vm(start=True)
    rec = Recorder()
    manager = ConnectionManager(libvirtd.uri, listener=rec)
    manager.BACKOFF = SHORT_BACKOFF
    manager.connect()
    sampler = DomainSampler(manager)
    try:
        assert manager.state is ConnectionState.ACTIVE
        assert not manager.readonly
        before = by_name(sampler.tick(), name)
        assert before is not None and before.state is DomainState.RUNNING
        gen_before = manager.generation
        uuid = before.uuid

        mark = len(rec.snapshot())
        t0 = time.monotonic()
        libvirtd.kill()
        assert not libvirtd.running

        # 1. The manager notices by itself (close callback / keepalive) ...
        left = wait_until(lambda: manager.state is not ConnectionState.ACTIVE, timeout=5.0)
        detected_by = "close callback" if left else ""
        if not left:
            # ... or, failing that, a sampler tick whose error goes through check_error.
            outcome, value = call_bounded(sampler.tick, timeout=15.0)
            assert outcome != "hung", "sampler.tick() hung on a dead libvirtd"
            assert outcome == "error" and isinstance(value, VirtError), \
                f"tick on a dead daemon should raise VirtError, got {outcome}: {value!r}"
            left = wait_until(lambda: manager.state is not ConnectionState.ACTIVE, timeout=5.0)
            detected_by = "failing tick"
        assert left, (f"manager stayed ACTIVE {time.monotonic() - t0:.1f}s after libvirtd was "
                      f"killed; events: {rec.states(mark)}")
        lost = [s for s in rec.states(mark) if s.state is ConnectionState.DISCONNECTED]
        assert lost, f"no DISCONNECTED StateChanged after the kill: {rec.states(mark)}"
        print(f"\nconnection loss detected by {detected_by} after {time.monotonic() - t0:.2f}s: "
              f"{lost[0].message!r}")

        # While the daemon is down a tick fails with one line and never hangs.
        outcome, value = call_bounded(sampler.tick, timeout=15.0)
        assert outcome == "error", f"tick while libvirtd is down: {outcome} {value!r}"
        assert "\n" not in str(value)

        # 2. Daemon back: the manager reconnects on its own.
        libvirtd.start()
        t1 = time.monotonic()
        back = wait_until(lambda: manager.state is ConnectionState.ACTIVE, timeout=20.0, step=0.1)
        assert back, (f"manager did not return to ACTIVE within 20 s of libvirtd restarting "
                      f"(state {manager.state}, last error {manager.last_error!r}); "
                      f"events: {rec.states(mark)}")
        print(f"reconnected {time.monotonic() - t1:.2f}s after libvirtd answered")
        assert manager.generation > gen_before
        assert any(s.state is ConnectionState.ACTIVE and s.message == "reconnected"
                   for s in rec.states(mark))

        # 3. The sampler works on the new connection and still sees the same running QEMU.
        outcome, tick = call_bounded(sampler.tick, timeout=15.0)
        assert outcome == "ok", f"first tick after reconnect: {outcome} {tick!r}"
        after = tick.domains.get(uuid)
        assert after is not None and after.name == name
        assert after.state is DomainState.RUNNING
        assert after.cpu_time_ns and after.cpu_time_ns >= (before.cpu_time_ns or 0)

        # 4. Lifecycle events were re-registered: pause through another connection.
        mark2 = len(rec.snapshot())
        other = libvirtd.connect()
        try:
            other.lookupByName(name).suspend()
            got = wait_until(lambda: rec.lifecycle(name, libvirt.VIR_DOMAIN_EVENT_SUSPENDED, mark2),
                             timeout=10.0)
            assert got, ("no SUSPENDED lifecycle event at the listener after reconnect: events "
                         f"were not re-registered ({rec.snapshot()[mark2:]})")
            assert got[0].uuid == uuid
            other.lookupByName(name).resume()
            assert wait_until(lambda: rec.lifecycle(name, libvirt.VIR_DOMAIN_EVENT_RESUMED, mark2),
                              timeout=10.0)
        finally:
            other.close()
        outcome, tick = call_bounded(sampler.tick, timeout=15.0)
        assert outcome == "ok" and tick.domains[uuid].state is DomainState.RUNNING
    finally:
        # The daemon is session-scoped: it must be up again whatever happened above.
        if not libvirtd.running:
            libvirtd.start()
        call_bounded(manager.close, timeout=10.0)


def test_retry_now_skips_backoff_and_reconnects(libvirtd):
    """A long backoff, the operator's "retry now": reconnects without waiting it out."""
    rec = Recorder()
    manager = ConnectionManager(libvirtd.uri, listener=rec)
    manager.BACKOFF = (60.0,)
    manager.connect()
    try:
        gen = manager.generation
        libvirtd.kill()
        # a read through our code on the dead connection must hand the error to check_error
        outcome, value = call_bounded(lambda: DomainSampler(manager).tick(), timeout=15.0)
        assert outcome != "hung", "tick hung on a dead libvirtd"
        assert wait_until(lambda: manager.state is not ConnectionState.ACTIVE, timeout=5.0), \
            f"manager stayed ACTIVE after libvirtd was killed ({outcome}: {value!r})"
        libvirtd.start()
        time.sleep(0.3)
        assert manager.state is not ConnectionState.ACTIVE  # still waiting out the 60 s backoff
        manager.retry_now()
        assert wait_until(lambda: manager.state is ConnectionState.ACTIVE, timeout=10.0), \
            f"retry_now() did not reconnect (state {manager.state}, {manager.last_error!r})"
        assert manager.generation == gen + 1
        assert manager.conn.listAllDomains(0) is not None
    finally:
        if not libvirtd.running:
            libvirtd.start()
        call_bounded(manager.close, timeout=10.0)
