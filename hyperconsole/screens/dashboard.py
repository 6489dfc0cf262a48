"""Dashboard: host gauges and sparklines, VM counts by state, connection and node facts, and the
newest entries of the task log."""

from __future__ import annotations

from collections import Counter

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from hyperconsole import presenters
from hyperconsole.sanitize import visible
from hyperconsole.screens.base import PaneScreen
from hyperconsole.screens.tasklog import newest_first
from hyperconsole.virt.models import DomainState
from hyperconsole.widgets.gauge import Gauge


class DashboardScreen(PaneScreen):
    PANE_TITLE = "Dashboard"

    def compose_body(self) -> ComposeResult:
        if len(self.hc.polls) > 1:  # a fleet: a row per host above the rest
            with Vertical(id="fleet-box", classes="box"):
                yield Static("Hosts", classes="box-title")
                yield Static(Text("asking every host …", "dim"), id="fleet-hosts")
        with Horizontal(id="dash"):
            with Vertical(id="host-box", classes="box"):
                yield Static("Host", classes="box-title")
                yield Gauge("CPU", id="g-cpu")
                yield Gauge("Memory", id="g-mem")
                yield Gauge("Swap", id="g-swap")
                yield Static(id="net-label", classes="spark-label")
                yield Static("CPU % history", classes="spark-label")
                yield Sparkline([], id="s-cpu", summary_function=max)
                yield Static("Memory % history", classes="spark-label")
                yield Sparkline([], id="s-mem", summary_function=max)
                yield Static("Network receive / transmit history", classes="spark-label")
                yield Sparkline([], id="s-rx", summary_function=max)
                yield Sparkline([], id="s-tx", summary_function=max, classes="tx")
                yield Static("Filesystems", classes="spark-label")
                yield Static(id="disks")
            with Vertical(id="side"):
                with Vertical(id="vm-box", classes="box"):
                    yield Static("VMs", classes="box-title")
                    yield Static(id="vm-counts")
                with Vertical(id="node-box", classes="box"):
                    yield Static("Hypervisor", classes="box-title")
                    yield Static(id="node")
                with Vertical(id="tasks-box", classes="box"):
                    yield Static("Recent tasks (l: task log)", classes="box-title")
                    yield Static(id="recent-tasks")

    RECENT = 6
    FLEET_EVERY = 10.0  # seconds between host summaries (one bulk call per host, on its own thread)

    def on_mount(self) -> None:
        if len(self.hc.polls) > 1:  # the first summary comes with on_screen_resume
            self.set_interval(self.FLEET_EVERY, self.summarize_hosts)

    def on_screen_resume(self) -> None:  # PaneScreen's own handler runs too (Textual calls each class's)
        if len(self.hc.polls) > 1 and self.is_mounted:
            self.summarize_hosts()

    def summarize_hosts(self) -> None:
        busy = any(w.group == "fleet-summary" and not w.is_finished for w in self.workers)
        if self.is_current and self.hc.fleet is not None and not busy:  # one at a time
            self.run_worker(self._summaries, thread=True, group="fleet-summary",
                            exit_on_error=False, description="host summaries")

    def _summaries(self) -> None:
        from hyperconsole.virt.fleet import summarize_all

        summaries = summarize_all(self.hc.fleet, deadline=5.0)
        self.app.call_from_thread(self._show_hosts, summaries)

    def _show_hosts(self, summaries) -> None:
        self.query_one("#fleet-hosts", Static).update(presenters.host_summaries(summaries))

    def render_data(self, kinds: frozenset[str]) -> None:
        view = self.hc.view
        if kinds & {"all", "tasks"}:
            recent = Table.grid(padding=(0, 1))
            for task in newest_first(self.hc.tasks.tasks)[:self.RECENT]:
                what = presenters.plain(task.label)
                if task.error:  # the first line; l shows it whole
                    what.append("\n" + visible(task.error.splitlines()[0]), "red")
                recent.add_row(presenters.clock(task.started), presenters.result_text(task), what)
            self.query_one("#recent-tasks", Static).update(recent if recent.row_count else Text("none yet", "dim"))
        if kinds & {"all", "host"} and view.host is not None:
            host = view.host
            self.query_one("#g-cpu", Gauge).value = host.cpu_percent
            self.query_one("#g-cpu", Gauge).extra = "load " + " ".join(f"{x:.2f}" for x in host.load)
            self.query_one("#g-mem", Gauge).value = host.memory_percent
            self.query_one("#g-mem", Gauge).extra = (
                f"{presenters.size_bytes(host.memory_used)} of {presenters.size_bytes(host.memory_total)}")
            self.query_one("#g-swap", Gauge).value = host.swap_percent
            self.query_one("#s-cpu", Sparkline).data = list(view.cpu_history)
            self.query_one("#s-mem", Sparkline).data = list(view.mem_history)
            self.query_one("#s-rx", Sparkline).data = list(view.rx_history)
            self.query_one("#s-tx", Sparkline).data = list(view.tx_history)
            self.query_one("#net-label", Static).update(Text(
                f"Network  rx {presenters.rate(host.net_rx_bps)}  tx {presenters.rate(host.net_tx_bps)}"
                f"   Disk  r {presenters.rate(host.disk_read_bps)}  w {presenters.rate(host.disk_write_bps)}"))
            disks = Table.grid(padding=(0, 2))
            for disk in host.disks:
                disks.add_row(presenters.plain(disk.mountpoint), f"{disk.percent:5.1f}%",
                              f"{presenters.size_bytes(disk.used)} of {presenters.size_bytes(disk.total)}")
            self.query_one("#disks", Static).update(disks)
        if kinds & {"all", "domains", "connection"}:
            counts = Counter(d.state for d in view.domains.values())
            grid = Table.grid(padding=(0, 2))
            for state in (DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTOFF, DomainState.CRASHED,
                          DomainState.PMSUSPENDED, DomainState.BLOCKED, DomainState.SHUTDOWN):
                if counts.get(state) or state in (DomainState.RUNNING, DomainState.PAUSED,
                                                 DomainState.SHUTOFF, DomainState.CRASHED):
                    grid.add_row(Text(state.label, presenters.STATE_STYLES[state]), str(counts.get(state, 0)))
            grid.add_row(Text("total", "bold"), str(len(view.domains)))
            autostart = sum(1 for d in view.domains.values() if d.autostart)
            grid.add_row(Text("autostart"), str(autostart))
            self.query_one("#vm-counts", Static).update(grid)
        if kinds & {"all", "node", "connection"}:
            grid = Table.grid(padding=(0, 2))
            grid.add_row("connection", Text(view.connection.value))
            grid.add_row("URI", presenters.plain(presenters.short_uri(view.uri)))
            if view.readonly:
                grid.add_row("access", presenters.plain("read-only " + view.readonly_reason, "bold red", wrap=True))
            node = view.node
            if node is not None:
                grid.add_row("host", presenters.plain(node.hostname))
                grid.add_row("CPU", presenters.plain(f"{node.cpus} × {node.model} {node.mhz} MHz", wrap=True))
                grid.add_row("memory", presenters.size_kib(node.memory_kib))
                grid.add_row("hypervisor", presenters.plain(node.hypervisor))
                grid.add_row("libvirt", presenters.plain(node.libvirt_version))
            grid.add_row("last tick", f"{view.last_tick_seconds * 1000:.1f} ms")
            self.query_one("#node", Static).update(grid)
