"""How every virt operation calls libvirt: one target type, one error path.

Every operation takes a `ConnectionManager` (or a bare virConnect, for scripts and tests).
Contract, shared by every module of virt/: bad input raises `ValidationError` before any
mutating libvirt call; a libvirt failure raises `VirtError` with one line, after
`manager.check_error(exc)` so a dead connection starts the reconnect loop; results are frozen
dataclasses, never libvirt objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable, TypeVar

import libvirt

from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt.errors import VirtError

Target = ConnectionManager | libvirt.virConnect
T = TypeVar("T")


def split(target: Target) -> tuple[libvirt.virConnect, ConnectionManager | None]:
    """(virConnect, manager or None) for either kind of argument."""
    if isinstance(target, ConnectionManager):
        return target.conn, target
    return target, None


def fail(manager: ConnectionManager | None, action: str, exc: libvirt.libvirtError) -> VirtError:
    """Report a libvirt error to the manager (reconnect on a dead link) and make it one line."""
    if manager is not None:
        manager.check_error(exc)
    return VirtError.wrap(action, exc)


@contextmanager
def calling(manager: ConnectionManager | None, action: str) -> Iterator[None]:
    """Turn a libvirtError into VirtError(one line), telling the manager first."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise fail(manager, action, exc) from exc


def find(manager: ConnectionManager | None, action: str, lookup: Callable[[], T], missing: int) -> T | None:
    """`lookup()`, or None when libvirt answers that the object does not exist (error code
    `missing`); any other libvirt error is reported to the manager and raised as one line."""
    try:
        return lookup()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == missing:
            return None
        raise fail(manager, action, exc) from exc
