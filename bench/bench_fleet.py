"""Fleet figures: opening ten 1,000-VM test-driver hosts, and one summary of every host.

    python bench/bench_fleet.py [--hosts 10] [--vms 1000]

Prints, beside each figure, the floor measured in the same process with bare libvirt calls:
opening the hosts one after another, and one bulk stats call per host. Each run uses fresh
host files (the test driver parses its XML at every open). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt  # noqa: E402

from bench.gen_host import generate  # noqa: E402
from hyperconsole.hosts import HostSpec  # noqa: E402
from hyperconsole.virt import connection  # noqa: E402,F401  (quiet libvirt error handler)
from hyperconsole.virt.fleet import Fleet, summarize_all  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--vms", type=int, default=1000)
    args = parser.parse_args()
    xml = generate(args.vms)
    with tempfile.TemporaryDirectory(prefix="hc-bench-fleet-") as tmp:
        paths = []
        for i in range(args.hosts):
            path = Path(tmp) / f"host{i}.xml"
            path.write_text(xml)
            paths.append(path)
        uris = [f"test://{p}" for p in paths]

        started = time.perf_counter()
        conns = [libvirt.open(uri) for uri in uris]
        floor_open = time.perf_counter() - started
        started = time.perf_counter()
        for conn in conns:
            conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
        floor_stats = time.perf_counter() - started
        for conn in conns:
            conn.close()
        rss_floor = rss_mib()

        fleet = Fleet([HostSpec(f"h{i}", uri, "/etc/nixos") for i, uri in enumerate(uris)])
        first: list[float] = []
        started = time.perf_counter()
        statuses = fleet.open_all(60, retry=False, on_open=lambda _n: first.append(time.perf_counter() - started))
        opened = time.perf_counter() - started
        started = time.perf_counter()
        summaries = summarize_all(fleet, 60, cpu_interval=0)
        summary_time = time.perf_counter() - started
        fleet.close()
    connected = sum(s.state.value == "connected" for s in statuses)
    vms = sum(sum(s.vms.values()) for s in summaries)
    print(f"{args.hosts} hosts x {args.vms} VMs (test driver), {connected} connected, {vms} VMs summarised")
    print(f"first host open:           {min(first):6.3f} s")
    print(f"all hosts open (Fleet):    {opened:6.3f} s   floor, one after another: {floor_open:6.3f} s")
    print(f"summary of every host:     {summary_time:6.3f} s   floor, bulk state stats: {floor_stats:6.3f} s")
    print(f"max RSS:                   {rss_mib():6.0f} MiB (after the bare floor run: {rss_floor:.0f} MiB)")


if __name__ == "__main__":
    main()
