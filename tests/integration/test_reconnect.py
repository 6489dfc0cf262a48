"""Integration (tier 3): our ConnectionManager + DomainSampler survive a libvirtd crash.

libvirtd is SIGKILLed mid-session (QEMU keeps running) and started again; the manager must
notice on its own (close callback / keepalive, or a failing sampler tick handing the error to
``check_error``), reconnect with its backoff, bump ``generation`` and re-register lifecycle
events, all without anyone calling ``connect()`` again.

Our code runs in a child process (this file run as a script, driven line by line over a pipe),
while the test process owns the daemon (kill/start). Reason: libvirt's event loop is one per
process; a hang in a connection callback stalls it for every later test in the session, so a
reconnect bug must fail *this* test with its stack, not freeze or poison the rest of the tier.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

libvirt = pytest.importorskip("libvirt")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

SHORT_BACKOFF = (0.2, 0.5, 0.5, 1.0)
REPO = Path(__file__).resolve().parents[2]


# ============================================================== child side (our code runs here)


def _wait_until(predicate, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def _bounded(fn, timeout: float):
    """Run fn in a daemon thread: ('ok', value) | ('error', exc) | ('hung', None)."""
    box: list = []

    def run():
        try:
            box.append(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 — reported
            box.append(("error", exc))

    t = threading.Thread(target=run, daemon=True, name="bounded-call")
    t.start()
    t.join(timeout)
    return box[0] if box else ("hung", None)


def _thread_stacks() -> str:
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        if names.get(ident, "").startswith(("libvirt", "bounded")):
            out.append(f"--- thread {names[ident]}:\n" + "".join(traceback.format_stack(frame)[-4:]))
    return "\n".join(out)


def _child_main() -> None:
    """Commands on stdin, one JSON answer per line on stdout."""
    from hyperconsole.virt.connection import ConnectionManager, LifecycleEvent, StateChanged
    from hyperconsole.virt.models import ConnectionState
    from hyperconsole.virt.sampler import DomainSampler

    lock = threading.Lock()
    events: list = []

    def listener(ev):
        with lock:
            events.append(ev)

    def states():
        with lock:
            return [(e.state.value, e.message) for e in events if isinstance(e, StateChanged)]

    manager = None
    sampler = None

    def tick(timeout=15.0):
        outcome, value = _bounded(sampler.tick, timeout)
        if outcome == "ok":
            return {"outcome": "ok",
                    "domains": {d.name: [d.uuid, d.state.name, d.cpu_time_ns] for d in value.domains.values()}}
        if outcome == "error":
            return {"outcome": "error", "type": type(value).__name__, "error": str(value)}
        return {"outcome": "hung", "stacks": _thread_stacks()}

    def status():
        return {"state": manager.state.value, "generation": manager.generation,
                "last_error": manager.last_error, "states": states()}

    for line in sys.stdin:
        cmd, *args = line.split()
        out: dict = {}
        try:
            if cmd == "connect":
                manager = ConnectionManager(args[0], listener=listener)
                manager.BACKOFF = tuple(float(x) for x in args[1].split(","))
                manager.connect()
                sampler = DomainSampler(manager)
                out = {**status(), "readonly": manager.readonly, "tick": tick()}
            elif cmd == "await_lost":  # passive first (close callback / keepalive), then a tick
                t0 = time.monotonic()
                left = _wait_until(lambda: manager.state is not ConnectionState.ACTIVE, 3.0)
                out["detected_by"] = "close callback or keepalive" if left else ""
                if not left:
                    out["tick"] = tick()
                    left = _wait_until(lambda: manager.state is not ConnectionState.ACTIVE, 5.0)
                    out["detected_by"] = "failing sampler tick" if left else ""
                out.update(status(), left=bool(left), seconds=time.monotonic() - t0)
                if not left:
                    out["stacks"] = _thread_stacks()
            elif cmd == "await_active":
                t0 = time.monotonic()
                back = _wait_until(lambda: manager.state is ConnectionState.ACTIVE, float(args[0]), 0.1)
                out.update(status(), active=bool(back), seconds=time.monotonic() - t0)
                if not back:
                    out["stacks"] = _thread_stacks()
            elif cmd == "tick":
                out = tick()
            elif cmd == "status":
                out = status()
            elif cmd == "await_event":  # name, libvirt event number
                name, number = args[0], int(args[1])

                def found():
                    with lock:
                        return [[e.uuid, e.event, e.detail] for e in events
                                if isinstance(e, LifecycleEvent) and e.name == name and e.event == number]

                out = {"events": _wait_until(found, 10.0) or [], "stacks": ""}
                if not out["events"]:
                    out["stacks"] = _thread_stacks()
            elif cmd == "retry_now":
                manager.retry_now()
                out = status()
            elif cmd == "close":
                outcome, _ = _bounded(manager.close, 3.0)
                out = {"outcome": outcome}
                print(json.dumps(out), flush=True)
                os._exit(0)  # a wedged libvirt thread must not keep the child alive
            else:
                out = {"error": f"unknown command {cmd}"}
        except Exception as exc:  # noqa: BLE001 — reported to the test
            out = {"exception": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out, default=str), flush=True)


# ============================================================== test side (owns the daemon)


class Child:
    def __init__(self):
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, __file__], cwd=REPO, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._buf = ""

    def ask(self, command: str, timeout: float = 30.0) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while "\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child did not answer {command!r} within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536).decode()
                if not chunk:
                    raise AssertionError(f"child died on {command!r}: {self.stderr()}")
                self._buf += chunk
        line, self._buf = self._buf.split("\n", 1)
        answer = json.loads(line)
        assert "exception" not in answer, f"{command}: {answer['exception']}"
        return answer

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("close", timeout=15.0)
            except AssertionError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def child(libvirtd):
    c = Child()
    try:
        yield c
    finally:
        # The daemon is session-scoped: it must be up again whatever happened in the test.
        if not libvirtd.running:
            libvirtd.start()
        c.close()


def test_reconnect_after_libvirtd_killed_and_restarted(libvirtd, tiny_vm, child):
    name = tiny_vm(start=True)
    first = child.ask(f"connect {libvirtd.uri} {','.join(map(str, SHORT_BACKOFF))}")
    assert first["state"] == "active" and not first["readonly"]
    assert first["tick"]["outcome"] == "ok"
    uuid, state, cpu_before = first["tick"]["domains"][name]
    assert state == "RUNNING"
    gen_before = first["generation"]

    libvirtd.kill()
    assert not libvirtd.running
    lost = child.ask("await_lost")
    assert lost["left"], (
        "ConnectionManager stayed ACTIVE after libvirtd was SIGKILLed (neither the close callback "
        f"nor a failing tick's check_error moved it); tick: {lost.get('tick')}; "
        f"state events: {lost['states']}\n{lost.get('stacks', '')}")
    assert any(s == "disconnected" for s, _ in lost["states"]), lost["states"]
    print(f"\nloss detected by {lost['detected_by']} after {lost['seconds']:.2f}s")

    down = child.ask("tick")  # while the daemon is down: fails with one line, never hangs
    assert down["outcome"] == "error", down
    assert "\n" not in down["error"]

    libvirtd.start()
    back = child.ask("await_active 20", timeout=40)
    assert back["active"], (
        f"manager did not return to ACTIVE within 20 s of libvirtd answering again: "
        f"state {back['state']}, last error {back['last_error']!r}, events {back['states']}\n"
        f"{back.get('stacks', '')}")
    print(f"reconnected {back['seconds']:.2f}s after libvirtd answered")
    assert back["generation"] > gen_before
    assert ["active", "reconnected"] in back["states"]

    after = child.ask("tick")  # the sampler works on the new connection, same running QEMU
    assert after["outcome"] == "ok", after
    assert after["domains"][name][:2] == [uuid, "RUNNING"]
    assert after["domains"][name][2] >= cpu_before > 0

    # lifecycle events were re-registered on the new connection: pause/resume from elsewhere
    other = libvirtd.connect()
    try:
        other.lookupByName(name).suspend()
        got = child.ask(f"await_event {name} {libvirt.VIR_DOMAIN_EVENT_SUSPENDED}")
        assert got["events"], ("no SUSPENDED lifecycle event at the listener after reconnect: events "
                               f"were not re-registered\n{got['stacks']}")
        assert got["events"][0][0] == uuid
        other.lookupByName(name).resume()
        assert child.ask(f"await_event {name} {libvirt.VIR_DOMAIN_EVENT_RESUMED}")["events"]
    finally:
        other.close()
    assert child.ask("tick")["domains"][name][1] == "RUNNING"


def test_retry_now_skips_a_long_backoff(libvirtd, child):
    """The operator's "retry now" reconnects without waiting out the backoff."""
    first = child.ask(f"connect {libvirtd.uri} 60")
    assert first["state"] == "active"
    libvirtd.kill()
    lost = child.ask("await_lost")
    assert lost["left"], (f"manager stayed ACTIVE after libvirtd was killed; tick: {lost.get('tick')}\n"
                          f"{lost.get('stacks', '')}")
    libvirtd.start()
    time.sleep(0.3)
    assert child.ask("status")["state"] != "active"  # still inside the 60 s backoff
    child.ask("retry_now")
    back = child.ask("await_active 10")
    assert back["active"], f"retry_now() did not reconnect: {back}"
    assert back["generation"] == first["generation"] + 1
    assert child.ask("tick")["outcome"] == "ok"


if __name__ == "__main__":
    _child_main()
