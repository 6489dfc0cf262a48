"""`hyperconsole privileged run ID`: the root side of an operator's host-change request, run by
`hyperconsole-request@ID.service` (see hyperconsole.changes.serve). Its output goes to the unit's
journal: one line per request saying who asked for what and how it ended."""

from __future__ import annotations

import argparse
import os

from hyperconsole import paths
from hyperconsole.changes import serve, spool
from hyperconsole.changes.submit import Direct
from hyperconsole.cli.nixos import guarded, make_controller
from hyperconsole.config import Config
from hyperconsole.errors import HyperconsoleError
from hyperconsole.tasklog import FILE_NAME, TaskFile


@guarded
def cmd_run(args: argparse.Namespace, config: Config) -> int:
    if os.geteuid() != 0:
        raise HyperconsoleError("`privileged run` is the request unit's command and runs as root",
                                hint="operators run the change itself (e.g. `hyperconsole net bridge add …`)")
    marker = spool.read_marker()
    if marker is None:
        raise HyperconsoleError(f"no {spool.marker_path()}: the request unit is not installed")
    from hyperconsole.cli.net import read_vm_nics

    return serve.run(marker, args.request_id, Direct(make_controller(args, config)),
                     configured_timeout=config.confirm_timeout, vm_nics=lambda: read_vm_nics(config),
                     say=lambda text: print(text, flush=True),
                     tasks=TaskFile(paths.state_dir() / FILE_NAME))


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    privileged = subparsers.add_parser("privileged", help="root side of operators' host-change requests",
                                       parents=[common])
    sub = privileged.add_subparsers(dest="privileged_command", required=True, metavar="{run}")
    p = sub.add_parser("run", help="carry out one request from the spool (the request unit's command)",
                       parents=[common])
    p.add_argument("request_id", metavar="ID")
    p.set_defaults(func=cmd_run)

