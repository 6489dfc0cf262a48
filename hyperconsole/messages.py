"""Messages that cross screens: data refreshed, connection state, results of operator actions."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from hyperconsole.host.metrics import HostSample
from hyperconsole.virt.connection import LifecycleEvent, StateChanged
from hyperconsole.virt.sampler import Tick


@dataclass
class DomainsSampled(Message):
    """A sampler tick finished (posted from the worker thread); `host`: the fleet host sampled."""

    tick: Tick
    host: str = ""


@dataclass
class HostSampled(Message):
    sample: HostSample


@dataclass
class ConnectionChanged(Message):
    change: StateChanged
    host: str = ""


@dataclass
class DomainLifecycle(Message):
    event: LifecycleEvent
    host: str = ""

    def can_replace(self, message: Message) -> bool:
        # A burst of events for the same domain needs one refresh, not one each.
        return (isinstance(message, DomainLifecycle) and message.event.uuid == self.event.uuid
                and message.host == self.host)


@dataclass
class DataChanged(Message):
    """The app's view state changed; the active screen re-renders what it shows."""

    kinds: frozenset[str]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DataChanged) and message.kinds <= self.kinds


@dataclass
class ActionDone(Message):
    """An operator-triggered job finished; `error` is its full text or None. `task` is the id the
    app's task log gave the job when it began (`HyperconsoleApp.begin_task`)."""

    label: str
    error: str | None = None
    detail: str = ""
    uuid: str | None = None
    task: str | None = None
    host: str = ""  # the fleet host the job acted on
