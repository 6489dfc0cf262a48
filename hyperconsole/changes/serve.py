"""The root side of an operator's request (`hyperconsole privileged run ID`, run by
`hyperconsole-request@ID.service`): claim the id, take the request file, check who asked and that
the applied security profile lets operators change this, re-validate and render it with the same
code as the root CLI, apply it with confirm-or-revert, and leave the log and the outcome in the
spool for the operator. Every request, refused or run, is logged with who asked for what."""

from __future__ import annotations

import grp
import logging
import os
import time
from pathlib import Path
from typing import Callable

from hyperconsole import profiles
from hyperconsole.changes import requests, spool
from hyperconsole.changes.submit import Direct, encode_apply, encode_result, encode_revert
from hyperconsole.errors import HyperconsoleError
from hyperconsole.nixos.rebuild import RebuildLine
from hyperconsole.tasklog import Result, Task, TaskFile, fragment_names

log = logging.getLogger("hyperconsole.requests")


def check_allowed(change: requests._Change, store, user: str, uid: int, catalog: profiles.Catalog | None = None) -> None:
    """Refuse a change the applied security profile does not let operators make (root may do anything;
    keeping or reverting a pending trial is open to every operator)."""
    if uid == 0 or not change.category:
        return
    profile = profiles.applied_profile(store, catalog)
    if profile is None:
        raise spool.Refused(f"{user} may not change {change.category}: no security profile is applied, so "
                            "operators may change nothing")
    if change.category not in profile.operators_may_change:
        allowed = ", ".join(profile.operators_may_change) or "nothing"
        raise spool.Refused(f"{user} may not change {change.category}: the security profile {profile.name} lets "
                            f"operators change {allowed}")


def run(marker: spool.Marker, request_id: str, submitter: Direct, *, configured_timeout: int,
        vm_nics: Callable[[], list] = list, say: Callable[[str], None] = print,
        tasks: TaskFile | None = None) -> int:
    """Handle one request; returns the unit's exit status (0 done, 1 failed, 2 refused)."""
    spool.check_id(request_id)
    try:
        gid = grp.getgrnam(marker.group).gr_gid
    except KeyError:
        say(f"refused request {request_id}: the operators group {marker.group} does not exist")
        return 2
    try:
        out = spool.Outputs(marker.spool, request_id, gid)
    except spool.Refused as exc:
        say(f"refused request {request_id}: {exc}")
        log.warning("refused request %s: %s", request_id, exc)
        return 2
    started = time.time()
    who, what = "?", "?"
    try:
        out.status(state="running", pid=os.getpid())
        try:
            handed = spool.take(marker.spool, request_id, marker.group)
            who, what = handed.user, handed.request.change.kind
            out.line(f"request {request_id} from {who}: {what}")
            check_allowed(handed.request.change, submitter.controller.store, who, handed.uid)
        except spool.Refused as exc:
            return _end(out, say, tasks, started, who, what, request_id, error=f"refused: {exc}", status=2)
        say(f"request {request_id} from {who}: {what} {_fields(handed.request.change)}")
        log.info("request %s from %s (uid %d): %s", request_id, who, handed.uid, what)

        def line(text: RebuildLine) -> None:
            out.line(text.text)

        try:
            outcome = _carry_out(handed.request, submitter, out, line, configured_timeout, vm_nics)
        except HyperconsoleError as exc:
            return _end(out, say, tasks, started, who, what, request_id, error=str(exc), status=1)
        return _end(out, say, tasks, started, who, what, request_id, outcome=outcome)
    finally:
        out.close()


def _fields(change: requests._Change) -> str:
    import msgspec

    data = msgspec.to_builtins(change)
    data.pop("kind", None)
    return " ".join(f"{k}={v}" for k, v in data.items())


def _carry_out(request: requests.Request, submitter: Direct, out: spool.Outputs, line, configured_timeout: int,
               vm_nics) -> dict | None:
    change = request.change
    if isinstance(change, requests.TrialConfirm):
        return encode_result(submitter.confirm(on_line=line))
    if isinstance(change, requests.TrialRevert):
        return encode_revert(submitter.revert_now(change.change_id, reason=f"reverted by the operator",
                                                  on_line=line))
    if isinstance(change, requests.Rollback):
        return [encode_result(r) for r in submitter.rollback(change.generation, on_line=line)]  # type: ignore[return-value]
    prepared = requests.prepare(change, submitter.controller.store, requested_timeout=request.confirm_timeout,
                                configured_timeout=configured_timeout,
                                vm_nics=vm_nics() if isinstance(change, requests.NETWORK_CHANGES) else ())
    if prepared.changeset.is_empty:
        out.line(f"the fragments already say this ({prepared.description}); nothing to change")
        return None
    for text in [*prepared.changeset.diff().splitlines(), *prepared.notes]:
        out.line(text)
    outcome = submitter.apply(change, prepared.changeset, timeout=prepared.timeout, description=prepared.description,
                              rebuild=request.rebuild, on_line=line)
    return encode_apply(outcome)


def _end(out: spool.Outputs, say, tasks: TaskFile | None, started: float, who: str, what: str, request_id: str, *,
         outcome=None, error: str = "", status: int = 0) -> int:
    ok = not error
    if error:
        out.line(f"error: {error}")
    out.status(state="done", ok=ok, user=who, what=what, error=error, outcome=outcome)
    say(f"request {request_id} from {who}: {what}: {'done' if ok else error}")
    (log.info if ok else log.warning)("request %s from %s: %s: %s", request_id, who, what, "done" if ok else error)
    if tasks is not None:
        target = fragment_names(outcome.get("written", ())) if isinstance(outcome, dict) and "written" in outcome else ""
        task = Task(f"request-{request_id}", f"{what} requested by {who}", target, started, time.time(),
                    Result.OK if ok else Result.FAILED, detail="" if error else "done", error=error)
        try:
            known = tasks.load()
            tasks.save(len(known) + 1, [*known, task][-200:])
        except (OSError, HyperconsoleError) as exc:
            log.warning("task log not written: %s", exc)
    return status


__all__ = ["check_allowed", "run"]
