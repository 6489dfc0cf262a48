"""The Textual app: panes by number key, polling that never overlaps, libvirt events as messages."""

from __future__ import annotations

import ctypes
import gc
import importlib
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from hyperconsole import paths, tasklog
from hyperconsole.commands import ActionsProvider
from hyperconsole.config import Config, check_keymap
from hyperconsole.errors import HyperconsoleError
from hyperconsole.host.metrics import HostSampler
from hyperconsole.messages import (
    ActionDone, ConnectionChanged, DataChanged, DomainLifecycle, DomainsSampled, HostSampled,
)
from hyperconsole.sanitize import visible, visible_lines
from hyperconsole.screens.base import PaneScreen
from hyperconsole.screens.help import HelpScreen
from hyperconsole.screens.vms import VmsScreen
from hyperconsole.viewstate import ViewState
from hyperconsole.virt.connection import ConnectionManager, LifecycleEvent, StateChanged
from hyperconsole.virt.models import ConnectionState, InventoryDiff, row_key, split_key
from hyperconsole.virt.sampler import DomainSampler, StuckCall, Tick
from hyperconsole.widgets.confirm import ConfirmDialog

if TYPE_CHECKING:
    from hyperconsole.virt.fleet import Fleet

log = logging.getLogger(__name__)

# Background workers by group, with the words the status bar and the log use for them.
POLL_WORKERS = {"poll-domains": "domain poll", "poll-host": "host poll", "node": "node info",
                "pending": "pending host change"}
PENDING_RECHECK = 5.0  # seconds between reads of a trial change (kept or reverted elsewhere?)


def one_line(error: BaseException) -> str:
    """An error as the status bar shows it: our own errors as they read, others with their type."""
    text = str(error) if isinstance(error, HyperconsoleError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())


class PollLoop:
    """One self-rescheduling poll: a tick starts only after the previous one ended, and it ends
    whatever happened in it (the app calls `ended` when the tick's worker reaches a final state)."""

    def __init__(self, app: App, interval, start) -> None:
        self._app = app
        self._interval = interval  # a callable: the refresh may change while the app runs
        self._start = start
        self._timer: Timer | None = None
        self.busy = False
        self._again = False

    def now(self) -> None:
        """Poll now, or right after the tick in flight (never two at once)."""
        if self.busy:
            self._again = True
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.busy = True
        self._start()

    def ended(self) -> None:
        self.busy = False
        if self._again:
            self._again = False
            self.now()
        else:
            self._timer = self._app.set_timer(self._interval(), self.now)


class HostPoll:
    """One host's VM sampler and its own poll loop: each host ticks on its own schedule, so one
    that is slow, hangs or is gone never delays the others."""

    def __init__(self, name: str, manager: ConnectionManager, sampler: DomainSampler) -> None:
        self.name = name  # "" when the console has one host
        self.manager = manager
        self.sampler = sampler
        self.loop: PollLoop | None = None
        self.keys: set[str] = set()  # its rows in the VM list (fleet mode)
        self.stuck: tuple[StuckCall, ...] = ()
        self.last_good: float | None = None  # wall-clock time of its last good sample
        self.error = ""  # why its last tick failed


def _lazy(module: str, name: str):
    def make():
        return getattr(importlib.import_module(f"hyperconsole.screens.{module}"), name)()

    return make


def _return_free_memory() -> None:
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc
        pass


def binding_ids() -> set[str]:
    """The id of every binding of the app, its panes and dialogs, Textual's own included (this
    imports the panes that are otherwise loaded when first shown)."""
    import pkgutil

    from textual.dom import DOMNode

    from hyperconsole import screens, widgets

    for package in (screens, widgets):
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    ids: set[str] = set()
    todo: list[type] = [DOMNode]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        ids.update(b.id for b in cls.__dict__.get("BINDINGS", ()) if isinstance(b, Binding) and b.id)
    from hyperconsole import resources

    return ids | resources.ACTIONS.keys()  # a table's actions bind on a view made when first shown


class HyperconsoleApp(App):
    TITLE = "hyperconsole"
    CSS_PATH = Path(__file__).with_name("hyperconsole.tcss")
    # Panes other than the first are imported when first shown: start-up pays only for the VM list.
    MODES = {
        "dashboard": _lazy("dashboard", "DashboardScreen"),
        "vms": VmsScreen,
        "networks": _lazy("networks", "NetworksScreen"),
        "storage": _lazy("storage", "StorageScreen"),
        "backups": _lazy("backups", "BackupsScreen"),
        "security": _lazy("security", "SecurityScreen"),
        "doctor": _lazy("doctor", "DoctorScreen"),
    }
    DEFAULT_MODE = "vms"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS = [
        Binding("1", "switch_mode('dashboard')", "Dashboard", id="app.dashboard"),
        Binding("2", "switch_mode('vms')", "VMs", id="app.vms"),
        Binding("3", "switch_mode('networks')", "Networks", id="app.networks"),
        Binding("4", "switch_mode('storage')", "Storage", id="app.storage"),
        Binding("5", "switch_mode('backups')", "Backups", id="app.backups"),
        Binding("6", "switch_mode('security')", "Security", id="app.security"),
        Binding("7", "switch_mode('doctor')", "Doctor", id="app.doctor"),
        Binding("l", "tasks", "Task log", id="app.tasks"),
        Binding("colon", "jump", "Go to pane", id="app.jump"),
        # Priority, so `?` works inside dialogs too (they list their own keys); not while typing.
        Binding("question_mark", "help", "Help", id="app.help", priority=True),
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("ctrl+r", "reconnect", "Reconnect", show=False, id="app.reconnect"),
    ]

    def __init__(self, manager: ConnectionManager, config: Config, *, demo: bool = False,
                 host_sampler: HostSampler | None = None, sampler: DomainSampler | None = None,
                 first_tick: Tick | None = None, opening: Future | None = None,
                 doctor_checks: tuple | None = None, backup_parts: dict | None = None, fleet: "Fleet | None" = None,
                 sampler_factory: Callable[[ConnectionManager, str], DomainSampler] | None = None) -> None:
        """`opening`: the connection still being opened on another thread, resolving to the first
        tick (or None); the app starts meanwhile and paints the rows when it resolves. `fleet`:
        several hosts in one VM list, each sampled by its own DomainSampler
        (`sampler_factory(manager, host)`); `manager` is then the first host's."""
        if config.keymap:
            # Before anything starts, so a typo in the keymap is one line, not a silent no-op.
            check_keymap(config, binding_ids())
        super().__init__()
        self.manager = manager
        self.config = config
        # The VM side of backups (open_vm, restorer, boot_check, cleanup, note) where it is not the
        # real one: the demo's test driver has no backup API.
        self.backup_parts: dict = backup_parts or {}
        self.fleet = fleet
        make = sampler_factory or (lambda m, host: DomainSampler(m, host=host))
        if fleet is not None and len(fleet.hosts) > 1:
            self.polls = {h.name: HostPoll(h.name, h.manager, make(h.manager, h.name)) for h in fleet}
            self.manager = manager = next(iter(self.polls.values())).manager
        else:
            self.polls = {"": HostPoll("", manager, sampler or make(manager, ""))}
        self.sampler = next(iter(self.polls.values())).sampler
        self._first_tick = first_tick
        self._opening = opening
        self.start_error: HyperconsoleError | None = None  # the connection did not open: the app exits
        self.host_sampler = host_sampler or HostSampler()
        self.doctor_checks = doctor_checks  # pane 7 runs these instead of the doctor's whole registry
        self.view = ViewState(uri=manager.uri, demo=demo, readonly=manager.readonly,
                              readonly_reason=manager.readonly_reason, connection=manager.state,
                              simulated=self.sampler.simulated, fleet=tuple(self.host_names))
        for poll in self.polls.values():
            poll.loop = PollLoop(self, lambda: self.config.refresh, lambda poll=poll: self._collect_domains(poll))
        self._poll_workers: dict[Worker, HostPoll] = {}
        self._host_poll = PollLoop(self, lambda: self.config.refresh, self._collect_host)
        self._loops = {"poll-host": self._host_poll}
        self.tasks = tasklog.TaskLog()
        self._task_file = tasklog.TaskFile((paths.demo_dir() if demo else paths.state_dir()) / tasklog.FILE_NAME)
        self._tasks_loaded = False
        self._pending_timer: Timer | None = None
        self._pending_reads = 0  # reads started; an older read finishing late is ignored
        self._pending_shown = 0
        self._asking_quit = False
        self.migration: threading.Event | None = None  # set() aborts the migration in progress
        self._change_host = ""
        self._background_started = False  # host, node, task log and trial readers: after the first paint

    def notify(self, message: str, *, title: str = "", **kwargs) -> None:  # type: ignore[override]
        """Every toast passes the sanitiser: messages name VMs, files and libvirt errors."""
        super().notify(visible_lines(message), title=visible(title), **kwargs)

    # -- start-up ----------------------------------------------------------------------------
    @property
    def host_names(self) -> list[str]:
        """The fleet hosts of the VM list, in order; empty with one host."""
        return [name for name in self.polls if name]

    # -- the host that host changes (Networks, Security) act on -----------------------------------
    @property
    def change_spec(self):
        """The fleet host host changes act on (None with one host): this machine's by default."""
        fleet = self.config.fleet
        if len(fleet) < 2:
            return None
        chosen = next((h for h in fleet if h.name == self._change_host), None)
        return chosen or next((h for h in fleet if not h.remote), fleet[0])

    @property
    def change_config(self) -> Config:
        """The config host changes use: the chosen host's NixOS checkout and target."""
        spec = self.change_spec
        return self.config if spec is None else self.config.for_host(spec)

    def switch_change_host(self) -> None:
        """Host changes go to the next fleet host; its trial (if any) is read at once."""
        spec, fleet = self.change_spec, self.config.fleet
        if spec is None:
            return
        self._change_host = fleet[(fleet.index(spec) + 1) % len(fleet)].name
        self.view.pending = None
        self.refresh_pending(announce=False)
        self._notify_screen("change-host")

    def host_opened(self, host: str) -> None:
        """A fleet host answered its first open (called from its own thread): its rows now."""
        _return_free_memory()  # what its open freed (a test-driver host: the parse of its file)
        if self.is_running:
            self.call_from_thread(self.poll_domains, host)

    def manager_of(self, host: str = "") -> ConnectionManager:
        """The connection of a row's host ("" or unknown: the console's own)."""
        poll = self.polls.get(host)
        return poll.manager if poll is not None else self.manager

    def on_mount(self) -> None:
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        for poll in self.polls.values():
            poll.manager.add_listener(lambda event, host=poll.name: self._from_libvirt(event, host))
        self.poll_domains()  # paints the tick taken while the UI was importing, if there is one
        # The rest starts once the VM list is painted (or after a second, whatever happened to the
        # first tick), so its workers do not compete with the first paint.
        self.set_timer(1.0, self._start_background)

    def _start_background(self) -> None:
        if self._background_started:
            return
        if self._opening is not None:  # nothing to read from yet
            self.set_timer(1.0, self._start_background)
            return
        self._background_started = True
        # What start-up built (modules, styles, widgets, the first inventory) lives as long as the
        # app: kept out of the garbage collector's full passes, which otherwise walk all of it
        # every few ticks on a big host (a quarter-second pause at 10k VMs).
        gc.freeze()
        # The connection's open (on the test driver: parsing the whole host file) freed far more
        # than the app keeps; glibc holds on to it until asked. Returned once, off the UI thread.
        threading.Thread(target=_return_free_memory, name="malloc-trim", daemon=True).start()
        self.poll_host()
        self._load_node()
        self._load_tasks()
        self.refresh_pending()

    def _from_libvirt(self, event: object, host: str = "") -> None:
        """Runs on libvirt's event thread or the reconnect thread: only post messages here."""
        if isinstance(event, StateChanged):
            self.post_message(ConnectionChanged(event, host))
        elif isinstance(event, LifecycleEvent):
            self.post_message(DomainLifecycle(event, host))

    # -- polling: a tick is armed only after the previous one ended, whatever happened in it ------
    def poll_domains(self, host: str | None = None) -> None:
        """Sample one host's VMs now (None: every host's)."""
        for poll in self.polls.values():
            if host is None or poll.name == host:
                assert poll.loop is not None
                poll.loop.now()

    def poll_host(self) -> None:
        self._host_poll.now()

    def _collect_domains(self, poll: HostPoll) -> None:
        worker = self.run_worker(lambda: self._sample(poll), thread=True, group="poll-domains", exit_on_error=False,
                                 description=f"sample domains {poll.name}".strip())
        self._poll_workers[worker] = poll

    def _sample(self, poll: HostPoll) -> None:
        if poll is not self.polls.get(""):  # a fleet host: its own tick, whatever the others do
            self.post_message(DomainsSampled(poll.sampler.tick(), poll.name))
            return
        if self._opening is not None:
            try:
                self._first_tick = self._opening.result()
            except HyperconsoleError as exc:
                self.call_from_thread(self._cannot_open, exc)
                return
            finally:
                self._opening = None
            self.call_from_thread(self._opened)
        tick, self._first_tick = self._first_tick or poll.sampler.tick(), None
        self.post_message(DomainsSampled(tick))

    def _opened(self) -> None:
        """The connection opened while the app started: what it turned out to be (read-only or
        not) may have been decided before the app listened to it."""
        manager, view = self.manager, self.view
        if (view.readonly, view.connection) != (manager.readonly, manager.state):
            view.readonly, view.readonly_reason, view.connection = manager.readonly, manager.readonly_reason, manager.state
            self.refresh_bindings()
            self._notify_screen("connection")

    def _cannot_open(self, error: HyperconsoleError) -> None:
        self.start_error = error
        self.exit(return_code=1)

    @work(thread=True, group="poll-host", exit_on_error=False, description="sample host")
    def _collect_host(self) -> None:
        self.post_message(HostSampled(self.host_sampler.sample()))

    @on(Worker.StateChanged)
    def _worker_done(self, event: Worker.StateChanged) -> None:
        """Every background worker ends here: a failure becomes one status line and one log line
        (repeats are counted by the log), and a poll's next tick is armed."""
        source = POLL_WORKERS.get(event.worker.group)
        if source is None or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        poll = self._poll_workers.pop(event.worker, None)
        if poll is not None and poll.name:
            source = f"{source} {poll.name}"
        error = event.worker.error
        if event.state is WorkerState.ERROR and error is not None:
            unexpected = not isinstance(error, HyperconsoleError)
            log.warning("%s failed: %s", source, one_line(error), exc_info=error if unexpected else None)
            self.view.poll_errors[source] = one_line(error)
            if poll is not None and poll.name:
                poll.error = one_line(error)
                self._mark_stale(poll)
                self.view.host_notes = self.host_notes()
            self._notify_screen("connection")
        loop = poll.loop if poll is not None else self._loops.get(event.worker.group)
        if loop is not None:
            loop.ended()

    def _poll_succeeded(self, source: str) -> bool:
        """Clears the source's error; True when the status bar changed."""
        return self.view.poll_errors.pop(source, None) is not None

    @on(DomainsSampled)
    def _domains_sampled(self, message: DomainsSampled) -> None:
        started = time.perf_counter()
        tick = message.tick
        status = self.view.status_message
        poll = self.polls.get(message.host)
        if poll is None:
            return
        was_stale = bool(poll.error)
        poll.last_good, poll.error, poll.stuck = time.time(), "", tick.stuck
        if poll.name:
            if self.fleet is not None:
                self.fleet.note_sample(poll.name, poll.last_good)
            self._merge(poll, tick, every_row=was_stale)
            self._poll_succeeded(f"{POLL_WORKERS['poll-domains']} {poll.name}")
            self.view.host_notes = self.host_notes()
        else:
            self.view.domains = tick.domains
            self.view.last_diff = tick.diff
            self.view.stuck = tick.stuck
            self._poll_succeeded(POLL_WORKERS["poll-domains"])
        if not tick.diff.empty:
            # Rendered here, not via a message, so the table is current when the tick ends
            # and the figure below is the whole tick: collect + diff + table update.
            self._render_screen("domains")
        elif self.view.status_message != status:
            self._notify_screen("connection")
        self.view.last_tick_seconds = tick.seconds + (time.perf_counter() - started)
        if not self._background_started:
            self.call_after_refresh(self._start_background)

    def _merge(self, poll: HostPoll, tick: Tick, *, every_row: bool = False) -> None:
        """One host's tick into the fleet's VM list: its rows by host-qualified key, the others
        untouched. `every_row`: its rows were marked stale here, so all of them are taken anew."""
        domains, host = self.view.domains, poll.name
        diff = tick.diff
        if every_row:
            gone = {split_key(k)[1] for k in poll.keys} - tick.domains.keys()
            diff = InventoryDiff(diff.removed | gone, diff.added, frozenset(tick.domains) - diff.added)
        for uuid in diff.removed:
            domains.pop(row_key(host, uuid), None)
        for uuid in diff.added | diff.changed:
            domains[row_key(host, uuid)] = tick.domains[uuid]
        poll.keys = {row_key(host, uuid) for uuid in tick.domains}
        self.view.last_diff = InventoryDiff(*(frozenset(row_key(host, u) for u in keys)
                                              for keys in (diff.removed, diff.added, diff.changed)))
        self.view.stuck = tuple(StuckCall(f"{p.name}: {c.call}", c.seconds) for p in self.polls.values()
                                for c in p.stuck)

    def _mark_stale(self, poll: HostPoll) -> None:
        """A host whose tick failed (gone, refused): its rows stay, aged from its last good sample."""
        now = time.time()
        age = now - poll.last_good if poll.last_good is not None else 0.0
        domains = self.view.domains
        changed = frozenset(k for k in poll.keys if k in domains)
        for key in changed:
            domains[key] = replace(domains[key], stale_seconds=age)
        if changed:
            self.view.last_diff = InventoryDiff(changed=changed)
            self._render_screen("domains")

    def host_notes(self) -> list[str]:
        """Fleet hosts that are not answering, for the status bar: since when their rows are old."""
        notes = []
        for poll in self.polls.values():
            if poll.name and (poll.error or poll.manager.state is not ConnectionState.ACTIVE):
                since = ("no sample yet" if poll.last_good is None else
                         "last sample " + time.strftime("%H:%M:%S", time.localtime(poll.last_good)))
                notes.append(f"{poll.name} {poll.manager.state.value} ({since})")
        return notes

    @on(DomainLifecycle)
    def _lifecycle(self, message: DomainLifecycle) -> None:
        poll = self.polls.get(message.host)
        if poll is None:
            return
        poll.sampler.note_event(message.event.uuid, message.event.event)
        self.poll_domains(poll.name)  # the state column, at once; bursts coalesce into one tick

    @on(HostSampled)
    def _host_sampled(self, message: HostSampled) -> None:
        self.view.record_host(message.sample)
        if self._poll_succeeded(POLL_WORKERS["poll-host"]):
            self._notify_screen("connection")
        self._notify_screen("host")

    @work(thread=True, group="node", exit_on_error=False, description="node info")
    def _load_node(self) -> None:
        from hyperconsole.virt import inventory  # off the start-up path: it reads every kind

        node = inventory.node_info(self.manager)
        self.call_from_thread(self._set_node, node)

    def _set_node(self, node) -> None:
        self.view.node = node
        self._poll_succeeded(POLL_WORKERS["node"])
        self._notify_screen("node", "connection")

    # -- a host change on trial: read from the NixOS dir, re-read until it is kept or reverted ------
    def refresh_pending(self, *, announce: bool = True) -> None:
        """Re-read the trial change. It may be started, kept or reverted by another pane, the CLI,
        another session or the detached revert timer; `announce=False` when this session did it."""
        self._pending_reads += 1
        self._read_pending(self._pending_reads, announce)

    @work(thread=True, group="pending", exit_on_error=False, description="pending host change")
    def _read_pending(self, read: int, announce: bool) -> None:
        from hyperconsole.nixos.revert import controller_for

        try:
            controller = controller_for(self.change_config, demo=self.view.demo)
            pending = controller.pending()
            reverted = tasklog.revert_task(controller.last_revert())
        except BaseException:
            self.call_from_thread(self._watch_pending)  # the failure is reported; keep watching
            raise
        self.call_from_thread(self._pending_read, read, pending, reverted, announce)

    def _pending_read(self, read: int, pending, reverted: tasklog.Task | None, announce: bool) -> None:
        self._poll_succeeded(POLL_WORKERS["pending"])
        if read < self._pending_shown:
            return
        self._pending_shown = read
        previous = self.view.pending
        self.view.pending = pending
        if reverted is not None:
            # Logged once, however it is learnt: seen happen now, or found by a later session.
            if self.tasks.add(reverted):
                self._tasks_changed()
            if announce and previous is not None and reverted.id == tasklog.revert_task_id(previous.change_id) \
                    and (pending is None or pending.change_id != previous.change_id):
                self._announce_revert(reverted)
        if pending is not None and (previous is None or previous.change_id != pending.change_id):
            self.view.notice = ""
            if announce:
                self.notify(f"{pending.description}: on trial and reverts by itself unless kept. "
                            "Press 6, then k to keep it.", title="Host change waiting", severity="warning",
                            timeout=15, markup=False)
        self._notify_screen("pending")
        self._watch_pending()

    def _announce_revert(self, reverted: tasklog.Task) -> None:
        """Said in every pane (status bar and a notification), not only by `nixos status`."""
        at = time.strftime("%H:%M", time.localtime(reverted.started))
        reason, *more = reverted.detail.splitlines() or [""]
        self.view.notice = f"host change {reverted.label.removeprefix('revert ')} reverted at {at}: {reason}"
        self.notify("\n".join([self.view.notice, *more, *filter(None, [reverted.error])]),
                    title="Host change reverted", timeout=30, markup=False,
                    severity="warning" if reverted.result is tasklog.Result.OK else "error")

    def _watch_pending(self) -> None:
        if self._pending_timer is not None:
            self._pending_timer.stop()
            self._pending_timer = None
        pending = self.view.pending
        if pending is not None:
            # Soon after the deadline, when the timer's revert is due; every few seconds before it.
            delay = min(PENDING_RECHECK, max(1.0, pending.remaining()))
            self._pending_timer = self.set_timer(delay, self.refresh_pending)

    # -- connection ----------------------------------------------------------------------------
    @on(ConnectionChanged)
    def _connection_changed(self, message: ConnectionChanged) -> None:
        change = message.change
        poll = self.polls.get(message.host)
        if poll is not None and poll.manager is not self.manager:  # another fleet host: its rows only
            if change.state is ConnectionState.ACTIVE:
                poll.sampler.mark_dirty()
                self.poll_domains(poll.name)
            self.view.host_notes = self.host_notes()
            self._notify_screen("connection")
            return
        was_readonly = self.view.readonly
        self.view.connection = change.state
        self.view.connection_message = change.message
        self.view.readonly = change.readonly
        if change.readonly != was_readonly:
            self.refresh_bindings()
        if change.state is ConnectionState.ACTIVE:
            self.sampler.mark_dirty()
            self.poll_domains(message.host)
            if self.view.node is None:
                self._load_node()
        self._notify_screen("connection")

    def action_reconnect(self) -> None:
        for poll in self.polls.values():
            if poll.manager is self.manager or poll.manager.state is not ConnectionState.ACTIVE:
                poll.manager.retry_now()

    # -- operator jobs ----------------------------------------------------------------------------
    @on(ActionDone)
    def _action_done(self, message: ActionDone) -> None:
        self.tasks.finish(message.task, message.label, error=message.error, detail=message.detail)
        self._tasks_changed()
        if message.error:
            self.notify(message.error, title=message.label, severity="error", timeout=8, markup=False)
        else:
            self.notify(message.detail or "done", title=message.label, timeout=4, markup=False)
        poll = self.polls.get(message.host) or self.polls[next(iter(self.polls))]
        poll.sampler.mark_dirty(message.uuid)
        self.poll_domains(poll.name)

    # -- the task log ------------------------------------------------------------------------------
    def begin_task(self, label: str, target: str = "", *, task_id: str | None = None) -> str:
        """Enter a job in the task log as running (UI thread, as the job starts); the job's
        ActionDone(task=…) ends the entry."""
        task = self.tasks.begin(label, target, task_id=task_id)
        self._tasks_changed()
        return task.id

    def _tasks_changed(self) -> None:
        self._notify_screen("tasks")
        if self._tasks_loaded:  # never overwrite earlier sessions' entries before they are read
            self._save_tasks(self.tasks.version, self.tasks.tasks)

    @work(thread=True, group="tasklog", exit_on_error=False, description="read the task log")
    def _load_tasks(self) -> None:
        self.call_from_thread(self._tasks_read, self._task_file.load())

    def _tasks_read(self, earlier: list[tasklog.Task]) -> None:
        self.tasks.add_earlier(earlier)
        self._tasks_loaded = True
        self._tasks_changed()

    @work(thread=True, group="tasklog", exit_on_error=False, description="save the task log")
    def _save_tasks(self, version: int, tasks: tuple[tasklog.Task, ...]) -> None:
        try:
            self._task_file.save(version, tasks)
        except (OSError, HyperconsoleError) as exc:
            log.warning("task log not saved: %s", exc)

    def action_tasks(self) -> None:
        from hyperconsole.screens.tasklog import TaskLogScreen

        if not isinstance(self.screen, TaskLogScreen):
            self.push_screen(TaskLogScreen())

    def _notify_screen(self, *kinds: str) -> None:
        # Only the visible pane renders; hidden ones catch up in on_screen_resume.
        self.screen.post_message(DataChanged(frozenset(kinds)))

    def update_status_bar(self) -> None:
        screen = self.screen
        if isinstance(screen, PaneScreen):
            screen.update_status()

    def _render_screen(self, kind: str) -> None:
        screen = self.screen
        if isinstance(screen, PaneScreen):  # a dialog on top: the pane catches up when it resumes
            screen.update_status()
            screen.render_data(frozenset({kind}))

    async def action_quit(self) -> None:
        """A trial host change and running jobs outlive the console's view of them: ask first."""
        question = self._quit_question()
        if question is None:
            self.exit()
        elif not self._asking_quit:
            self._asking_quit = True

            def answered(ok: bool | None) -> None:
                self._asking_quit = False
                if ok:
                    self.exit()

            self.push_screen(ConfirmDialog(*question), answered)

    def _quit_question(self) -> tuple[str, str] | None:
        pending = self.view.pending
        if pending is not None and pending.state == "armed":
            return (f"A host change is on trial and reverts by itself in {int(pending.remaining())} s "
                    "unless kept; quit anyway?", f"{pending.description}. To keep it: n, then 6 and k.")
        if pending is not None and pending.state in ("starting", "testing"):
            return (f"A trial rebuild is running ({pending.description}); quitting now reverts it. Quit anyway?",
                    "The trial process reverts a change whose console has exited before its trial rebuild ended.")
        running = [task.label for task in self.tasks.tasks if task.result is tasklog.Result.RUNNING]
        if running:
            return (f"Still running: {', '.join(running)}; quit anyway?",
                    "Quitting stops the console's side of these jobs; what libvirt or a rebuild has begun may "
                    "still finish. l shows the task log.")
        return None

    def action_jump(self) -> None:
        from hyperconsole.screens.jump import JumpScreen

        def go(name: str | None) -> None:
            if name is not None:
                self.switch_mode(name)

        self.push_screen(JumpScreen(list(self.MODES)), go)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "help":
            return not isinstance(self.focused, Input)
        return True

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(HelpScreen(self.screen))

    def on_unmount(self) -> None:
        from concurrent.futures import wait

        from hyperconsole.virt.fleet import on_thread

        # Each on its own thread, waited for a short while: a host whose open hangs holds its
        # manager's lock, and quitting must not wait for it.
        wait([on_thread(f"close-{poll.name}", poll.manager.close) for poll in self.polls.values()], timeout=2.0)
