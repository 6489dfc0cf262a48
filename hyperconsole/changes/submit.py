"""Who carries out a host change, chosen once per session (`submitter_for`):

- `Direct`: this process does it through ConfirmOrRevert (root, the demo, or a NixOS dir the user
  may write);
- `Privileged`: an operator without root hands the change to the spool as data, starts the fixed
  root unit `hyperconsole-request@<id>.service` (polkit lets the operators group start it) and
  follows its log and outcome;
- `Unavailable`: not root and no request unit installed: every change is refused with one line.

All three answer the same calls (apply, confirm, revert_now, rollback) with the same results, so
the CLI and the panes report them with one code path.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from hyperconsole.changes import spool
from hyperconsole.changes.requests import (
    Change, ProfileApply, Request, Rollback, TrialConfirm, TrialRevert, NETWORK_CHANGES,
)
from hyperconsole.errors import HyperconsoleError
from hyperconsole.nixos.rebuild import RebuildLine, RebuildResult, pid_alive, rollback_argvs
from hyperconsole.nixos.revert import ApplyOutcome, ConfirmOrRevert, RevertOutcome, controller_for, load_pending
from hyperconsole.nixos.store import ChangeSet, CommitResult, FragmentStore

OnLine = Callable[[RebuildLine], None] | None
START_TIMEOUT = 30.0  # the unit has this long to claim the request
FOLLOW_INTERVAL = 0.1
NOT_INSTALLED = ("changing the host needs root here: hyperconsole's request unit is not installed "
                 "(no {marker}; enable programs.hyperconsole in the NixOS configuration)")


# -- outcomes as data (the unit writes them, the operator's console reads them) ---------------------


def encode_result(result: RebuildResult | None) -> dict | None:
    if result is None:
        return None
    return {"action": result.action, "argv": list(result.argv), "status": result.status,
            "returncode": result.returncode, "duration": result.duration, "lines": result.summary(tail=40),
            "log_path": str(result.log_path) if result.log_path else None}


def decode_result(data: dict | None) -> RebuildResult | None:
    if data is None:
        return None
    return RebuildResult(data["action"], tuple(data["argv"]), data["status"], data["returncode"],
                         float(data["duration"]), tuple(data["lines"]),
                         Path(data["log_path"]) if data.get("log_path") else None)


def encode_apply(outcome: ApplyOutcome) -> dict:
    return {"written": outcome.commit.written, "history": outcome.commit.history,
            "warnings": outcome.commit.warnings, "rebuild": encode_result(outcome.rebuild),
            "pending": outcome.pending.change_id if outcome.pending else None,
            "reverted": outcome.reverted, "revert": encode_result(outcome.revert_result)}


def decode_apply(data: dict, store: FragmentStore) -> ApplyOutcome:
    pending = load_pending(store.dir) if data["pending"] else None
    if pending is not None and pending.change_id != data["pending"]:
        pending = None
    return ApplyOutcome(CommitResult(list(data["written"]), data["history"], list(data["warnings"])),
                        decode_result(data["rebuild"]), pending, data["reverted"], decode_result(data["revert"]))


def encode_revert(outcome: RevertOutcome | None) -> dict | None:
    if outcome is None:
        return None
    return {"change_id": outcome.change_id, "restored": outcome.restored, "result": encode_result(outcome.result),
            "reason": outcome.reason, "warning": outcome.warning}


def decode_revert(data: dict | None) -> RevertOutcome | None:
    if data is None:
        return None
    return RevertOutcome(data["change_id"], list(data["restored"]), decode_result(data["result"]),
                         data["reason"], data["warning"])


# -- the submitters -------------------------------------------------------------------------------


class Direct:
    privileged = False
    unavailable = ""

    def __init__(self, controller: ConfirmOrRevert) -> None:
        self.controller = controller

    def apply(self, change: Change, changeset: ChangeSet, *, timeout: int, description: str, rebuild: bool = True,
              on_line: OnLine = None) -> ApplyOutcome:
        return self.controller.apply(changeset, timeout=timeout, description=description, rebuild=rebuild,
                                     on_line=on_line)

    def confirm(self, *, on_line: OnLine = None) -> RebuildResult:
        return self.controller.confirm(on_line=on_line)

    def revert_now(self, change_id: str | None = None, *, reason: str, on_line: OnLine = None) -> RevertOutcome | None:
        return self.controller.revert_now(change_id, reason=reason, on_line=on_line)

    def rollback(self, generation: int | None, *, on_line: OnLine = None) -> list[RebuildResult]:
        """The previous (or a given) generation; stops at the first failing step."""
        self.controller.refuse_if_pending()
        runner = self.controller.runner
        results = []
        for argv in rollback_argvs(runner.rebuild_command, runner.nixos_dir, generation):
            results.append(runner.run_argv(argv, "rollback", on_line=on_line))
            if not results[-1].ok:
                break
        return results


class Unavailable(Direct):
    """Not root, the NixOS dir not writable, and no request unit: say so, change nothing."""

    def __init__(self, controller: ConfirmOrRevert, reason: str) -> None:
        super().__init__(controller)
        self.unavailable = reason

    def _refuse(self, *_args, **_kwargs):
        raise HyperconsoleError(self.unavailable)

    apply = confirm = revert_now = rollback = _refuse  # type: ignore[assignment]


class Privileged:
    """An operator's change carried out by the root request unit."""

    privileged = True
    unavailable = ""

    def __init__(self, marker: spool.Marker, store: FragmentStore, *, start_timeout: float = START_TIMEOUT) -> None:
        self.marker = marker
        self.store = store
        self.start_timeout = start_timeout

    def submit(self, change: Change, *, timeout: int | None = None, rebuild: bool = True,
               on_line: OnLine = None) -> dict | None:
        """Hand the change over, start the unit, follow its log; the outcome it reports, or its
        refusal or failure as a HyperconsoleError."""
        request = Request(1, spool.new_id(), time.time(), change, timeout, rebuild)
        try:
            spool.hand_over(self.marker.spool, request)
        except PermissionError:
            raise HyperconsoleError(f"cannot write a request into {self.marker.spool}: permission denied",
                                    hint=f"ask an admin to add you to {self.marker.group}") from None
        unit = self.marker.unit_name(request.id)
        try:
            done = subprocess.run(["systemctl", "start", "--no-block", unit], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HyperconsoleError(f"cannot start {unit}: {exc}") from None
        if done.returncode != 0:
            detail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise HyperconsoleError(f"cannot start {unit}: {detail}",
                                    hint=f"members of {self.marker.group} may start it; check your groups")
        return self.follow(request.id, on_line=on_line)

    def follow(self, request_id: str, *, on_line: OnLine = None) -> dict | None:
        started = time.monotonic()
        fd = None
        while fd is None:
            fd = spool.open_shared(self.marker.spool, spool.log_name(request_id))
            if fd is None:
                if time.monotonic() - started > self.start_timeout:
                    raise HyperconsoleError(f"the request unit did not take request {request_id} within "
                                            f"{self.start_timeout:.0f}s",
                                            hint=f"journalctl -u {self.marker.unit_name(request_id)}")
                time.sleep(FOLLOW_INTERVAL)
        partial = b""
        with os.fdopen(fd, "rb") as log:
            while True:
                status = spool.read_status(self.marker.spool, request_id) or {}
                chunk = log.read()
                if chunk:
                    *complete, partial = (partial + chunk).split(b"\n")
                    for raw in complete:
                        if on_line is not None:
                            on_line(RebuildLine(time.monotonic() - started, raw.decode("utf-8", "replace")))
                if status.get("state") == "done":
                    break
                pid = status.get("pid")
                if pid and not pid_alive(int(pid)) and (spool.read_status(self.marker.spool, request_id) or {}).get("state") != "done":
                    raise HyperconsoleError("the request unit ended without reporting an outcome",
                                            hint=f"journalctl -u {self.marker.unit_name(request_id)}")
                time.sleep(FOLLOW_INTERVAL)
        if not status.get("ok"):
            raise HyperconsoleError(status.get("error") or "the request failed")
        return status.get("outcome")

    def apply(self, change: Change, changeset: ChangeSet, *, timeout: int, description: str, rebuild: bool = True,
              on_line: OnLine = None) -> ApplyOutcome:
        outcome = self.submit(change, timeout=timeout, rebuild=rebuild, on_line=on_line)
        if outcome is None:  # the unit found nothing to change (the fragment already says it)
            return ApplyOutcome(CommitResult([], "nothing to change"), None, None)
        return decode_apply(outcome, self.store)

    def confirm(self, *, on_line: OnLine = None) -> RebuildResult:
        return decode_result(self.submit(TrialConfirm(), on_line=on_line))  # type: ignore[return-value]

    def revert_now(self, change_id: str | None = None, *, reason: str, on_line: OnLine = None) -> RevertOutcome | None:
        return decode_revert(self.submit(TrialRevert(change_id), on_line=on_line))

    def rollback(self, generation: int | None, *, on_line: OnLine = None) -> list[RebuildResult]:
        return [decode_result(r) for r in self.submit(Rollback(generation), on_line=on_line) or []]  # type: ignore[misc]


def _may_write(store: FragmentStore) -> bool:
    target = store.dir if os.path.lexists(store.dir) else store.nixos_dir
    return os.access(target, os.W_OK)


def submitter_for(config, demo: bool = False) -> Direct | Privileged:
    """Direct for root, the demo, or a NixOS dir this user may write; otherwise the request unit
    when the NixOS module installed it; otherwise Unavailable (with the one line why)."""
    controller = controller_for(config, demo=demo)
    if demo or os.geteuid() == 0 or _may_write(controller.store):
        return Direct(controller)
    marker = spool.read_marker()
    if marker is None:
        return Unavailable(controller, NOT_INSTALLED.format(marker=spool.marker_path()))
    return Privileged(marker, controller.store)


__all__ = ["Direct", "NETWORK_CHANGES", "Privileged", "ProfileApply", "Unavailable", "submitter_for"]
