"""Entry point of the detached trial process: `python -m hyperconsole.cli.revert_timer …`.

Started by nixos.revert when a change goes on trial; it outlives the console that started it,
holds the rebuild lock for the whole trial and reverts by itself unless the change is confirmed.
With --watchdog, the trial's watchdog: it finishes the trial at the deadline if the trial died.
"""

from __future__ import annotations

import argparse
import sys

from hyperconsole.nixos.revert import run_timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyperconsole.cli.revert_timer")
    parser.add_argument("--nixos-dir", required=True)
    parser.add_argument("--id", required=True, dest="change_id")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--watchdog", action="store_true", help="revert at the deadline if the trial process died")
    args = parser.parse_args(argv)
    return run_timer(args.nixos_dir, args.change_id, args.state_dir, say=lambda text: print(text, flush=True),
                     watchdog=args.watchdog)


if __name__ == "__main__":
    sys.exit(main())
