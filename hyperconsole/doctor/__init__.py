"""The doctor: checks that say what is wrong on a host, why, and what to do (`hyperconsole doctor`,
pane 7). CHECKS is the registry, in the order they are shown; see model.py for the runner."""

from __future__ import annotations

from hyperconsole.doctor import access, backupchecks, hostchecks, nixoschecks, virtchecks
from hyperconsole.doctor.model import (
    Check, Context, Fix, Outcome, Result, Status, exit_code, run_checks, select, summary,
)

CHECKS: tuple[Check, ...] = (*hostchecks.CHECKS, *virtchecks.CHECKS, *nixoschecks.CHECKS, *backupchecks.CHECKS,
                              *access.CHECKS)
assert len({c.id for c in CHECKS}) == len(CHECKS), "check ids are unique"

__all__ = ["CHECKS", "Check", "Context", "Fix", "Outcome", "Result", "Status", "exit_code", "run_checks",
           "select", "summary"]
