"""Simulated figures for the demo: libvirt's test driver reports only states, so each running VM
gets CPU, disk and network counters that grow like a lightly loaded guest's. They go through the
sampler's own path (counters in, rates from two samples out); the status bar says they are
simulated."""

from __future__ import annotations

import math
import zlib

import libvirt


class _Guest:
    """One VM's load profile, fixed by its UUID so a demo looks the same every time."""

    def __init__(self, uuid: str, now: float) -> None:
        seed = zlib.crc32(uuid.encode())
        self.cpu = 0.03 + (seed % 50) / 100  # share of one CPU, 3–52 %
        self.disk = 20_000 + seed % 4_000_000  # bytes/s
        self.net = 5_000 + (seed >> 8) % 2_000_000
        self.phase = (seed % 628) / 100
        self.at = now
        self.counters = [0.0, 0.0, 0.0, 0.0, 0.0]  # cpu ns, read, written, received, sent

    def advance(self, now: float) -> list[int]:
        seconds, self.at = max(0.0, now - self.at), now
        wave = 1 + 0.6 * math.sin(now / 7 + self.phase)  # slow swings, never below 40 %
        for i, per_second in enumerate((self.cpu * 1e9, self.disk, self.disk / 3, self.net, self.net / 2)):
            self.counters[i] += per_second * wave * seconds
        return [int(c) for c in self.counters]


class SimulatedStats:
    """The sampler's stats source for `--demo` (see virt.sampler.StatsSource)."""

    simulated = True

    def __init__(self) -> None:
        self._guests: dict[str, _Guest] = {}

    def figures(self, uuid: str, stats: dict, now: float) -> dict:
        if stats.get("state.state") != libvirt.VIR_DOMAIN_RUNNING:
            self._guests.pop(uuid, None)  # a restart starts from zero, as a real guest's would
            return stats
        guest = self._guests.get(uuid)
        if guest is None:
            guest = self._guests[uuid] = _Guest(uuid, now)
        cpu, read, written, received, sent = guest.advance(now)
        return {**stats, "cpu.time": cpu,
                "block.count": 1, "block.0.rd.bytes": read, "block.0.wr.bytes": written,
                "net.count": 1, "net.0.rx.bytes": received, "net.0.tx.bytes": sent}
