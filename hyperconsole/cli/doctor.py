"""`hyperconsole doctor [--json] [--only CHECK…] [--list-checks]`: every check, one line of why and
a hint each, a summary with counts; exit 0 when all pass, 1 with warnings, 2 with failures."""

from __future__ import annotations

import argparse
import sys

from hyperconsole.config import Config
from hyperconsole.errors import HyperconsoleError
from hyperconsole.sanitize import visible, visible_lines

LABELS = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}


def cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    from hyperconsole import doctor
    from hyperconsole.doctor import report

    try:
        checks = doctor.select(doctor.CHECKS, args.only or ())
    except HyperconsoleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list_checks:
        width = max(len(c.id) for c in checks)
        for check in checks:
            print(f"{check.id:<{width}}  {check.what}" + (f" (needs root: {check.needs_root})" if check.needs_root else ""))
        return 0
    ctx = doctor.Context(config, readonly=bool(getattr(args, "readonly", False)))
    if getattr(args, "demo", False):
        from hyperconsole.demo import backup as demo_backup

        ctx.backup_records = demo_backup.records().dir
    try:
        results = doctor.run_checks(checks, ctx)
    finally:
        ctx.close()
    if args.json:
        sys.stdout.buffer.write(report.encode(report.build(results, ctx)) + b"\n")
        return doctor.exit_code(results)
    width = max(len(r.id) for r in results)
    for result in results:
        print(f"{LABELS[result.status.value]}  {result.id:<{width}}  {visible(result.why)}")
        if result.hint:
            print(f"      {'':<{width}}  hint: {visible(result.hint)}")
        if result.detail and args.verbose:
            for line in visible_lines(result.detail).splitlines():
                print(f"      {'':<{width}}  | {line}")
    counts = doctor.summary(results)
    print(f"\n{len(results)} checks: " + ", ".join(f"{counts[k]} {k}" for k in ("pass", "warn", "fail", "skip"))
          + ("" if ctx.root else "; run as root for the checks marked SKIP that need it"))
    return doctor.exit_code(results)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from hyperconsole.cli import _add_tui

    p = subparsers.add_parser("doctor", parents=[common], help="check the host and say what is wrong and why",
                              description="Exit status: 0 all pass, 1 warnings, 2 failures.")
    _add_tui(p, suppress=True)
    p.add_argument("--json", action="store_true", help="one JSON document (schema: hyperconsole.doctor.report)")
    p.add_argument("--only", nargs="+", metavar="CHECK", help="these checks (ids or groups: virt, host, libvirt, nixos, access)")
    p.add_argument("--list-checks", action="store_true", help="list the checks and exit")
    p.add_argument("--verbose", "-v", action="store_true", help="show each check's detail lines")
    p.set_defaults(func=cmd_doctor)
