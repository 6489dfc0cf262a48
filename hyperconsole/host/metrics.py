"""Host figures from psutil: CPU, memory, load, disks, network rates (rates from two samples)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class DiskUsage:
    mountpoint: str
    total: int
    used: int
    percent: float


@dataclass(frozen=True)
class HostSample:
    cpu_percent: float
    per_cpu: tuple[float, ...]
    memory_total: int
    memory_used: int
    memory_percent: float
    swap_percent: float
    load: tuple[float, float, float]
    disks: tuple[DiskUsage, ...]
    net_rx_bps: float | None
    net_tx_bps: float | None
    disk_read_bps: float | None
    disk_write_bps: float | None
    uptime_seconds: float


_SKIP_FS = {"tmpfs", "devtmpfs", "squashfs", "overlay", "proc", "sysfs", "nsfs", "tracefs", "ramfs"}


class HostSampler:
    """Call sample() on a steady interval; the first call has no rates yet."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, tuple[int, int], tuple[int, int]] | None = None
        psutil.cpu_percent(percpu=True)  # primes psutil's interval-less measurement

    def sample(self) -> HostSample:
        per_cpu = tuple(psutil.cpu_percent(percpu=True))
        cpu = sum(per_cpu) / len(per_cpu) if per_cpu else 0.0
        mem = psutil.virtual_memory()
        swap = psutil.swap_memory()
        now = self._clock()
        net = psutil.net_io_counters()
        disk = psutil.disk_io_counters()
        net_pair = (net.bytes_recv, net.bytes_sent) if net else (0, 0)
        disk_pair = (disk.read_bytes, disk.write_bytes) if disk else (0, 0)
        rates: list[float | None] = [None, None, None, None]
        if self._last is not None:
            then, old_net, old_disk = self._last
            span = now - then
            if span > 0:
                rates = [max(0.0, (a - b) / span) for a, b in zip(net_pair + disk_pair, old_net + old_disk)]
        self._last = (now, net_pair, disk_pair)
        return HostSample(
            cpu_percent=cpu,
            per_cpu=per_cpu,
            memory_total=mem.total,
            memory_used=mem.total - mem.available,
            memory_percent=mem.percent,
            swap_percent=swap.percent,
            load=os.getloadavg(),
            disks=_disks(),
            net_rx_bps=rates[0],
            net_tx_bps=rates[1],
            disk_read_bps=rates[2],
            disk_write_bps=rates[3],
            uptime_seconds=time.time() - psutil.boot_time(),
        )


def _disks() -> tuple[DiskUsage, ...]:
    seen: set[str] = set()
    out = []
    for part in psutil.disk_partitions(all=False):
        if part.fstype in _SKIP_FS or part.device in seen:
            continue
        seen.add(part.device)
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        out.append(DiskUsage(part.mountpoint, usage.total, usage.used, usage.percent))
    return tuple(sorted(out, key=lambda d: d.mountpoint))[:8]
