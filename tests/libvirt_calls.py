"""libvirt calls counted at the binding: every public method of the libvirt-python classes is
wrapped while counting, so a call added anywhere (a per-domain lookup in a tick, say) shows.

Only the outermost call is counted (a binding method that calls another is one call), and calls
made by libvirt's event loop thread (event callbacks) are not part of a tick, so they are left out.
Accessors that read the client-side object and never reach the daemon are counted apart:
they cost no round trip, but an added one still changes the exact figures the tests assert.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

import libvirt

CLASSES = (libvirt.virConnect, libvirt.virDomain, libvirt.virNetwork, libvirt.virStoragePool,
           libvirt.virStorageVol, libvirt.virDomainSnapshot, libvirt.virInterface)
# Read from the client-side object (virDomainGetName, virDomainGetUUIDString, …): no round trip.
LOCAL = frozenset({"name", "UUID", "UUIDString", "ID", "connect", "c_pointer", "getName"})
EVENT_THREAD = "libvirt-events"


class LibvirtCalls:
    """What the binding saw while counting: `seen` is a Counter of "virClass.method", `made` the
    calls that reach the daemon in order, with their arguments (after self)."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.made: list[tuple[str, tuple]] = []
        self._lock = threading.Lock()
        self._depth = threading.local()

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()
            self.made.clear()

    @property
    def remote(self) -> Counter[str]:
        """Calls that reach the daemon (or the driver)."""
        return Counter({k: v for k, v in self.seen.items() if k.split(".", 1)[1] not in LOCAL})

    @property
    def local(self) -> Counter[str]:
        return Counter({k: v for k, v in self.seen.items() if k.split(".", 1)[1] in LOCAL})

    def _wrap(self, cls: type, name: str, method):
        key = f"{cls.__name__}.{name}"

        @functools.wraps(method)
        def counted(*args, **kwargs):
            depth = getattr(self._depth, "n", 0)
            if depth == 0 and threading.current_thread().name != EVENT_THREAD:
                with self._lock:
                    self.seen[key] += 1
                    if name not in LOCAL:
                        self.made.append((key, args[1:]))
            self._depth.n = depth + 1
            try:
                return method(*args, **kwargs)
            finally:
                self._depth.n = depth

        return counted

    @contextmanager
    def patched(self) -> Iterator["LibvirtCalls"]:
        """Wrap every public method of the binding's classes; restore them on exit."""
        saved: list[tuple[type, str, object]] = []
        for cls in CLASSES:
            for name, attr in list(vars(cls).items()):
                if name.startswith("_") or not callable(attr):
                    continue
                saved.append((cls, name, attr))
                setattr(cls, name, self._wrap(cls, name, attr))
        try:
            yield self
        finally:
            for cls, name, attr in saved:
                setattr(cls, name, attr)
