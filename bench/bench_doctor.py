"""Benchmark: how long `hyperconsole doctor` takes, whole and per check, on the demo host (libvirt's
test driver with the demo fixture) and this machine's /proc, /sys, /dev and file systems.

Prints a table; asserts nothing. Usage: python bench/bench_doctor.py [--runs 10]

- total: the registry run concurrently (each check on its thread, its own deadline), median and max
- per check: median seconds as the runner measures it; the five slowest are shown
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hyperconsole import doctor  # noqa: E402
from scripts.scenes import demo_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    config = demo_config()
    totals: list[float] = []
    per_check: dict[str, list[float]] = {}
    for _ in range(args.runs):
        ctx = doctor.Context(config)
        started = time.perf_counter()
        results = doctor.run_checks(doctor.CHECKS, ctx)
        totals.append(time.perf_counter() - started)
        ctx.close()
        for result in results:
            per_check.setdefault(result.id, []).append(result.seconds)
    print(f"{len(doctor.CHECKS)} checks, {args.runs} runs (the first opens the libvirt connection)")
    print(f"total    median {statistics.median(totals):.3f} s   max {max(totals):.3f} s")
    slowest = sorted(per_check.items(), key=lambda kv: statistics.median(kv[1]), reverse=True)[:5]
    for check_id, seconds in slowest:
        print(f"  {check_id:<26} median {statistics.median(seconds):.3f} s   max {max(seconds):.3f} s")


if __name__ == "__main__":
    main()
