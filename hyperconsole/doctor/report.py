"""The `hyperconsole doctor --json` document: a versioned msgspec schema, so scripts can rely on it
(tests decode the CLI's output with it, strictly)."""

from __future__ import annotations

import socket
import time
from typing import Literal, Sequence

import msgspec

from hyperconsole.doctor.model import Context, Result, exit_code, summary

SCHEMA_VERSION = 1
StatusName = Literal["pass", "warn", "fail", "skip"]


class CheckReport(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str  # "<group>.<name>", what --only takes
    what: str  # what the check looks at
    status: StatusName
    why: str  # one line
    hint: str  # what to do; "" when nothing
    detail: str  # more lines (every pool, unit, journal line); "" when none
    fix: str | None  # the safe fix pane 7 offers (its label), or null
    seconds: float


class Summary(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    passed: int = msgspec.field(name="pass")
    warn: int
    fail: int
    skip: int


class Report(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    schema: int  # SCHEMA_VERSION
    host: str
    user: str
    root: bool
    time: float  # when the run ended, seconds since the epoch
    checks: list[CheckReport]
    summary: Summary
    exit_code: int  # 0 all pass, 1 warnings, 2 failures


def build(results: Sequence[Result], ctx: Context) -> Report:
    counts = summary(results)
    return Report(
        SCHEMA_VERSION, socket.gethostname(), ctx.user, ctx.root, round(time.time(), 3),
        [CheckReport(r.id, r.what, r.status.value, r.why, r.hint, r.detail, r.fix.label if r.fix else None, r.seconds)
         for r in results],
        Summary(counts["pass"], counts["warn"], counts["fail"], counts["skip"]), exit_code(results))


def encode(report: Report) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2)


def decode(data: bytes | str) -> Report:
    return msgspec.json.decode(data, type=Report, strict=True)
