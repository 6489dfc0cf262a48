"""Entry point of a detached rebuild job: `python -m hyperconsole.cli.rebuild_job … -- ARGV`.

Started by nixos.rebuild in its own session (or a transient unit); it outlives the console.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hyperconsole.nixos.rebuild import run_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyperconsole.cli.rebuild_job")
    parser.add_argument("--label", required=True)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--record", required=True, type=Path)
    parser.add_argument("--lock", type=Path, help="take this lock first (omitted: the caller holds it)")
    parser.add_argument("--lock-wait", type=float, default=0.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    return run_job(command, args.label, args.log, args.record, args.lock, args.lock_wait)


if __name__ == "__main__":
    sys.exit(main())
