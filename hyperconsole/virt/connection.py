"""One libvirt connection: event loop thread, keepalive, close callback, reconnect with backoff.

Listeners receive plain event objects from libvirt's event thread or the reconnect thread;
the UI hands them to `App.post_message`, which is thread-safe.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import libvirt

from hyperconsole.errors import HyperconsoleError
from hyperconsole.virt import errors
from hyperconsole.virt.models import ConnectionState

log = logging.getLogger(__name__)

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation once, before the first open, and run it."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # the loop must outlive any single bad callback
                    log.exception("libvirt event loop iteration failed")
                    time.sleep(0.1)

        _loop_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _loop_thread.start()


# libvirt's own messages are noise on a terminal UI; errors reach us as exceptions.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


@dataclass(frozen=True)
class StateChanged:
    state: ConnectionState
    uri: str
    readonly: bool
    message: str = ""


@dataclass(frozen=True)
class LifecycleEvent:
    uuid: str
    name: str
    event: int
    detail: int


Listener = Callable[[object], None]


def _missing_test_file(uri: str) -> str:
    """For test:///path.xml URIs, a readable reason when the file is not there."""
    if not uri.startswith("test:///") or uri == "test:///default":
        return ""
    path = uri[len("test://"):].split("?", 1)[0]
    return "" if os.path.isfile(path) else f"no such file {path}"


class NotConnected(HyperconsoleError):
    pass


class ConnectionManager:
    """Owns the virConnect for one URI and keeps it alive."""

    BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)

    def __init__(self, uri: str, readonly: bool = False, listener: Listener | None = None,
                 keepalive: tuple[int, int] = (5, 3)) -> None:
        ensure_event_loop()
        self.uri = uri
        self.forced_readonly = readonly
        self.readonly = readonly
        self.readonly_reason = "--readonly" if readonly else ""
        self.state = ConnectionState.DISCONNECTED
        self.generation = 0  # bumps on every (re)connect so samplers can drop old rates
        self._listeners: list[Listener] = [listener] if listener else []
        self._keepalive = keepalive
        self._conn: libvirt.virConnect | None = None
        self._callback_ids: list[int] = []
        self._lock = threading.RLock()
        self._closing = False
        self._reconnecting = threading.Event()
        self._wake = threading.Event()
        self.last_error = ""

    # -- listeners -------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: object) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("connection listener failed")

    def _set_state(self, state: ConnectionState, message: str = "") -> None:
        self.state = state
        self._emit(StateChanged(state, self.uri, self.readonly, message))

    # -- connecting ------------------------------------------------------------------------
    @property
    def conn(self) -> libvirt.virConnect:
        conn = self._conn
        if conn is None:
            raise NotConnected(f"not connected to {self.uri}", hint="reconnecting in the background")
        return conn

    def connect(self) -> None:
        """Open the connection (blocking). Raises HyperconsoleError with one line on failure."""
        with self._lock:
            self._closing = False
            self._set_state(ConnectionState.CONNECTING)
            missing = _missing_test_file(self.uri)
            if missing:
                # Checked here: libxml2 would print its own warning to the terminal first.
                self._set_state(ConnectionState.DISCONNECTED, missing)
                raise HyperconsoleError(f"cannot connect to {self.uri}: {missing}")
            try:
                conn = self._open()
            except libvirt.libvirtError as exc:
                self.last_error = errors.one_line(exc)
                self._set_state(ConnectionState.DISCONNECTED, self.last_error)
                raise HyperconsoleError(f"cannot connect to {self.uri}: {self.last_error}") from exc
            self._attach(conn)
            self._set_state(ConnectionState.ACTIVE)

    def _open(self) -> libvirt.virConnect:
        if self.forced_readonly:
            return libvirt.openReadOnly(self.uri)
        try:
            conn = libvirt.open(self.uri)
            self.readonly = False
            self.readonly_reason = ""
            return conn
        except libvirt.libvirtError as exc:
            if not errors.is_access_denied(exc):
                raise
            conn = libvirt.openReadOnly(self.uri)
            self.readonly = True
            self.readonly_reason = "write access denied: " + errors.one_line(exc)
            return conn

    def _attach(self, conn: libvirt.virConnect) -> None:
        self._conn = conn
        self.generation += 1
        try:
            conn.setKeepAlive(*self._keepalive)
        except libvirt.libvirtError as exc:  # local drivers (test:///) have no keepalive
            if not errors.is_no_support(exc):
                log.debug("keepalive not enabled: %s", errors.one_line(exc))
        try:
            conn.registerCloseCallback(self._on_close, None)
        except libvirt.libvirtError as exc:
            log.debug("close callback not available: %s", errors.one_line(exc))
        self._callback_ids = []
        try:
            self._callback_ids.append(conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None))
        except libvirt.libvirtError as exc:
            log.debug("lifecycle events not available: %s", errors.one_line(exc))

    @property
    def has_events(self) -> bool:
        """Lifecycle events are registered on the current connection (a sampler may then rely on
        them for state changes between its samples)."""
        return bool(self._callback_ids)

    def _on_lifecycle(self, _conn, dom, event, detail, _opaque) -> None:
        try:
            self._emit(LifecycleEvent(dom.UUIDString(), dom.name(), event, detail))
        except libvirt.libvirtError:
            pass

    def _on_close(self, conn, reason, _opaque) -> None:
        if conn is not self._conn or self._closing:
            return
        # libvirt holds its close-callback lock while calling us, and connection_lost()
        # unregisters this very callback: doing it here would deadlock the event loop.
        threading.Thread(target=self.connection_lost, args=(f"connection closed (reason {reason})",),
                         name="libvirt-lost", daemon=True).start()

    def connection_lost(self, message: str) -> None:
        """Called by the close callback or by a caller whose call failed on a dead connection."""
        with self._lock:
            if self._closing or self._reconnecting.is_set():
                return
            self._reconnecting.set()
            self._drop_conn()
        self.last_error = message
        self._set_state(ConnectionState.DISCONNECTED, message)
        threading.Thread(target=self._reconnect_loop, name="libvirt-reconnect", daemon=True).start()

    def check_error(self, exc: BaseException) -> None:
        """Hand every libvirt error here: a dead connection starts the reconnect loop."""
        if errors.is_connection_lost(exc):
            self.connection_lost(errors.one_line(exc))

    def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        for cb in self._callback_ids:
            try:
                conn.domainEventDeregisterAny(cb)
            except libvirt.libvirtError:
                pass
        self._callback_ids = []
        try:
            conn.unregisterCloseCallback()
        except libvirt.libvirtError:
            pass
        try:
            conn.close()
        except libvirt.libvirtError:
            pass

    def _reconnect_loop(self) -> None:
        attempt = 0
        try:
            while not self._closing:
                delay = self.BACKOFF[min(attempt, len(self.BACKOFF) - 1)]
                self._wake.wait(delay)
                self._wake.clear()
                if self._closing:
                    return
                attempt += 1
                self._set_state(ConnectionState.CONNECTING, f"reconnect attempt {attempt}")
                try:
                    with self._lock:
                        conn = self._open()
                        self._attach(conn)
                except libvirt.libvirtError as exc:
                    self.last_error = errors.one_line(exc)
                    self._set_state(ConnectionState.DISCONNECTED, self.last_error)
                    continue
                self._set_state(ConnectionState.ACTIVE, "reconnected")
                return
        finally:
            self._reconnecting.clear()

    def retry_now(self) -> None:
        """Skip the current backoff wait (the operator asked to reconnect)."""
        self._wake.set()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._wake.set()
            self._drop_conn()
        self.state = ConnectionState.DISCONNECTED
