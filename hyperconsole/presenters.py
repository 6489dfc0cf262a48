"""Pure functions from models to table cells and labels (no widgets, no I/O)."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import humanize
from rich.text import Text

from hyperconsole.names import human_size
from hyperconsole.sanitize import visible, visible_lines
from hyperconsole.tasklog import Result, Task
from hyperconsole.virt.models import DomainInfo, DomainState

if TYPE_CHECKING:  # the VM list starts without importing the other kinds' modules
    from hyperconsole.doctor.model import Result as CheckResult
    from hyperconsole.virt.snapshots import SnapshotInfo
    from hyperconsole.virt.volumes import VolumeInfo

STATE_STYLES = {
    DomainState.RUNNING: "green",
    DomainState.PAUSED: "yellow",
    DomainState.SHUTOFF: "bright_black",
    DomainState.CRASHED: "bold red",
    DomainState.BLOCKED: "yellow",
    DomainState.SHUTDOWN: "yellow",
    DomainState.PMSUSPENDED: "cyan",
    DomainState.NOSTATE: "red",
}

DASH = "–"


def plain(value: object, style: str = "", *, wrap: bool = False) -> Text:
    """Text from libvirt or the system, shown literally: `[red]` stays `[red]`, and control
    characters are made visible (`\\x1b`) so the terminal never acts on them. Every string
    from libvirt or the system reaches a widget through here (or `sanitize.visible`)."""
    if wrap:
        return Text(visible(value), style=style)
    return Text(visible(value), style=style, no_wrap=True, overflow="ellipsis")


def size_kib(kib: int) -> str:
    return DASH if kib <= 0 else human_size(kib * 1024)


def size_bytes(value: int | float | None) -> str:
    return human_size(value)


def rate(value: float | None) -> str:
    """Compact (`12K/s`, `0B/s`) so a pair fits a narrow column without being cut."""
    if value is None:
        return DASH
    return humanize.naturalsize(value, gnu=True, format="%.0f") + "/s"


def pair(a: float | None, b: float | None) -> str:
    if a is None and b is None:
        return DASH
    return f"{rate(a)} {rate(b)}"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:5.1f}%"


def domain_cells(info: DomainInfo) -> dict[str, Text]:
    """One VM row as {column key: cell}; the view updates only cells whose text changed."""
    state = info.state.label + (" (saved)" if info.managed_save and not info.state.is_active else "")
    style = STATE_STYLES.get(info.state, "")
    if info.stale_seconds is not None:  # its stats call hangs: the row is its last sample
        state, style = f"{state}, {info.stale_seconds:.0f}s old", f"{style} dim"
    return {
        "name": plain(info.name),
        "state": plain(state, style),
        "vcpus": plain(str(info.vcpus) if info.vcpus else DASH, ""),
        "memory": plain(size_kib(info.memory_kib)),
        "cpu": plain(percent(info.cpu_percent)),
        "disk": plain(pair(info.disk_read_bps, info.disk_write_bps)),
        "net": plain(pair(info.net_rx_bps, info.net_tx_bps)),
        "autostart": yes_no(info.autostart),
        "host": plain(info.host),
    }


def domain_search(info: DomainInfo) -> str:
    return f"{info.name} {info.state.label}"


def yes_no(value: bool) -> Text:
    return plain("yes" if value else "no", "green" if value else "bright_black")


def active(value: bool) -> Text:
    return plain("active" if value else "inactive", "green" if value else "bright_black")


# -- storage -----------------------------------------------------------------------------------------
LEVEL_STYLE = {"ok": "green", "warn": "yellow", "critical": "bold red", "unknown": "bright_black"}


def usage_bar(percent: float | None, level: str, width: int = 8) -> Text:
    if percent is None:
        return Text(DASH)
    filled = round(width * percent / 100)
    bar = Text("█" * filled, LEVEL_STYLE.get(level, ""))
    bar.append("░" * (width - filled), "bright_black")
    bar.append(f" {percent:3.0f}%")
    return bar


def pool_cells(pool) -> dict[str, Text]:
    return {
        "name": plain(pool.name, "bold"), "kind": plain(pool.kind),
        "state": plain(pool.state, "green" if pool.active else "bright_black"),
        "autostart": yes_no(pool.autostart),
        "capacity": plain(size_bytes(pool.capacity) if pool.active else DASH),
        "available": plain(size_bytes(pool.available) if pool.active else DASH),
        "used": usage_bar(pool.used_percent, pool.level.value),
        "volumes": plain(DASH if pool.volume_count is None else str(pool.volume_count)),
        "path": plain(pool.path),
    }


@dataclass(frozen=True)
class VolumeRow:
    """A volume with the VMs that use it (the usage is read once per listing)."""

    volume: VolumeInfo
    users: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.volume.name


def volume_cells(row: VolumeRow) -> dict[str, Text]:
    vol = row.volume
    return {
        "name": plain(vol.name), "format": plain(vol.format or DASH),
        "capacity": plain(size_bytes(vol.capacity)), "allocation": plain(size_bytes(vol.allocation)),
        "users": plain(", ".join(row.users)), "path": plain(vol.path),
    }


# -- networks ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InterfaceRow:
    """A host interface with what the pane knows around it: its rate, whether it carries the
    SSH session, the VMs on it."""

    info: object  # host.interfaces.InterfaceInfo
    rate: object | None  # host.interfaces.InterfaceRate
    uplink: bool
    vms: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.info.name  # type: ignore[attr-defined]


def interface_cells(row: InterfaceRow) -> dict[str, Text]:
    i, rate = row.info, row.rate
    relation = ""
    if i.bridge is not None:
        relation = "members: " + (", ".join(i.bridge.members) or "none") + (" (STP)" if i.bridge.stp else "")
    elif i.vlan is not None:
        relation = f"VLAN {i.vlan.id} on {i.vlan.parent}"
    elif i.bond is not None:
        relation = f"{i.bond.mode}: " + ", ".join(i.bond.slaves)
    elif i.master:
        relation = f"in {i.master}"
    addresses = " ".join(a.cidr for a in i.addresses if a.scope != "link")
    carrier = DASH if i.carrier is None else ("up" if i.carrier else "down")
    name = plain(i.name, "bold" if row.uplink else "")
    if row.uplink:
        name.append(" ⇄", "yellow")  # the uplink: default route or the SSH session
    return {
        "name": name, "kind": plain(i.kind), "state": plain(i.state.lower()), "link": plain(carrier),
        "speed": plain(f"{i.speed_mbps} Mb/s" if i.speed_mbps else DASH),
        "mtu": plain(str(i.mtu)), "addresses": plain(addresses or DASH),
        "relation": plain(relation), "rate": plain(pair(rate.rx_bps, rate.tx_bps) if rate else DASH),
        "vms": plain(", ".join(row.vms)),
    }


def ipv4_of(net):
    return next((r for r in net.ips if r.family == "ipv4"), None)


def network_cells(net) -> dict[str, Text]:
    ipv4 = ipv4_of(net)
    return {
        "name": plain(net.name, "bold"), "state": active(net.active), "autostart": yes_no(net.autostart),
        "forward": plain(net.forward_mode or "isolated"), "bridge": plain(net.bridge or DASH),
        "ipv4": plain(ipv4.cidr if ipv4 else DASH),
        "dhcp": plain("-".join(ipv4.dhcp[0]) if ipv4 and ipv4.dhcp else DASH),
        "vms": plain(", ".join(net.vms)),
    }


def snapshot_cells(snap: SnapshotInfo) -> dict[str, Text]:
    name = Text("  " * snap.depth + ("└ " if snap.depth else ""), no_wrap=True, overflow="ellipsis")
    name.append(visible(snap.name), "bold" if snap.current else "")
    if snap.current:
        name.append(" *", "green")
    created = (datetime.datetime.fromtimestamp(snap.creation_time).strftime("%Y-%m-%d %H:%M")
               if snap.creation_time else "")
    return {"name": name, "state": plain(snap.state), "created": plain(created),
            "description": plain(snap.description)}


def age(seconds_ago: float | None) -> str:
    if seconds_ago is None:
        return DASH
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds_ago >= size:
            return f"{int(seconds_ago // size)}{unit}"
    return f"{int(max(seconds_ago, 0))}s"


def backup_job_cells(status) -> dict[str, Text]:
    last = status.last or {}
    if status.error:
        result = plain(status.error, "bold red")
    elif not last:
        result = plain("never", "dim")
    else:
        result = plain("ok" if last.get("ok") else "FAILED", "green" if last.get("ok") else "bold red")
    finished = last.get("finished")
    return {
        "name": plain(status.name, "bold"), "schedule": plain(status.job.schedule),
        "next": plain(status.next_run or DASH), "last": result,
        "age": plain(age(time.time() - finished) if finished else DASH),
        "size": plain(size_bytes(status.size)), "vms": plain(",".join(status.job.vms)),
        "repo": plain(status.job.repository),
    }


def backup_snapshot_cells(row) -> dict[str, Text]:
    return {
        "time": plain(row.snapshot.time[:19].replace("T", " ")), "vm": plain(row.vm, "bold"),
        "id": plain(row.snapshot.short_id), "size": plain(size_bytes(row.size)),
        "added": plain(size_bytes(row.added)),
        "quiesced": plain(row.quiesced, "green" if row.quiesced == "yes" else ""),
        "state": plain(row.snapshot.tag("hc-state")),
    }


RESULT_STYLES = {Result.RUNNING: "bold yellow", Result.OK: "green", Result.FAILED: "bold red",
                 Result.UNKNOWN: "dim"}


def clock(at: float | None, now: float | None = None) -> str:
    """HH:MM:SS today, the date too before today."""
    if at is None:
        return ""
    day = time.strftime("%Y-%m-%d", time.localtime(now if now is not None else time.time()))
    shown = time.localtime(at)
    return time.strftime("%H:%M:%S" if time.strftime("%Y-%m-%d", shown) == day else "%Y-%m-%d %H:%M:%S", shown)


def result_text(task: Task) -> Text:
    return Text(task.result.value, RESULT_STYLES[task.result])


def task_cells(task: Task) -> dict[str, Text]:
    return {"started": plain(clock(task.started)), "ended": plain(clock(task.ended)), "result": result_text(task),
            "task": plain(task.label), "target": plain(task.target)}


CHECK_STYLES = {"pass": "green", "warn": "bold yellow", "fail": "bold red", "skip": "dim"}


def check_cells(result: "CheckResult") -> dict[str, Text]:
    status = result.status.value
    return {"status": Text(status.upper(), CHECK_STYLES[status]), "check": plain(result.id),
            "why": plain(result.why), "hint": plain(result.hint)}


def check_text(result: "CheckResult", *, full: bool) -> Text:
    """Everything a check said, for the pane's detail box; `full` adds its detail lines."""
    text = Text()
    text.append_text(check_cells(result)["status"])
    text.append(f"  {visible(result.id)}", "bold")
    text.append(f"  {visible(result.what)}\n", "dim")
    text.append(visible_lines(result.why))
    if result.hint:
        text.append("\nhint: " + visible_lines(result.hint), "italic")
    if result.fix is not None:
        text.append(f"\nf fixes it: {visible(result.fix.label)} (touches {visible(result.fix.touches)})", "cyan")
    if result.detail:
        text.append("\n" + visible_lines(result.detail) if full else "\nenter shows the details", "" if full else "dim")
    return text


def short_uri(uri: str) -> str:
    """test:///very/long/path/host.xml → test:///…/host.xml; other URIs unchanged."""
    prefix = "test:///"
    if uri.startswith(prefix) and uri.count("/") > 4:
        return prefix + "…/" + uri.rsplit("/", 1)[1]
    return uri


def describe_result(result: object) -> str:
    """Operations return small result objects; a notification shows their summary."""
    if isinstance(result, str):
        return result
    summary = getattr(result, "summary", None)
    return summary() if callable(summary) else ""


def migration_progress(progress) -> str:
    """`45% · 120 MiB left at 50 MiB/s · downtime 30 ms` from a migration's job figures."""
    parts = [progress.phase if progress.percent is None else f"{progress.phase} {progress.percent:.0f}%"]
    if progress.data_total:
        parts.append(f"{size_bytes(progress.data_remaining)} left at {size_bytes(progress.rate_bps)}/s")
    if progress.downtime_ms is not None:
        parts.append(f"downtime {progress.downtime_ms} ms")
    return " · ".join(parts)


def host_summaries(summaries) -> "Table":
    """The dashboard's row per fleet host: state, VMs by state, host CPU and memory, what the
    running VMs are given against the host's (an overcommit in red)."""
    from rich.table import Table

    table = Table(box=None, padding=(0, 1), header_style="bold", expand=True)
    for label in ("Host", "State", "CPU", "Memory free", "vCPUs run/host", "VM memory/host", "VMs"):
        table.add_column(label, no_wrap=label != "VMs", ratio=1 if label == "VMs" else None)
    for s in summaries:
        if s.state != "connected":
            table.add_row(plain(s.name, "bold"), plain(s.state, "bold red"), "", "", "", "", plain(s.reason, "red"))
            continue
        vms = plain(", ".join(f"{n} {label}" for label, n in sorted(s.vms.items())) or "no VMs")
        for warning in s.overcommit:
            vms.append(visible(f"  overcommitted: {warning}"), "bold red")
        free = DASH if s.free_memory_kib is None else size_kib(s.free_memory_kib)
        table.add_row(plain(s.name, "bold"), plain(s.state, "green"), percent(s.cpu_percent),
                      f"{free} of {size_kib(s.memory_kib)}", f"{s.vcpus_running}/{s.cpus}",
                      f"{size_kib(s.memory_running_kib)}/{size_kib(s.memory_kib)}", vms)
    return table
