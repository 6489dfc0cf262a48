"""Backups pane (`5`): backup jobs (schedule, next run, last result and age, stored size) and the
snapshots of the job under the cursor (time, size, added data, quiesced), with the repository's
figures (restored vs stored: the dedup ratio) and the last restore test per VM.

Jobs are host configuration: adding, editing or removing one writes backups.nix and applies it
with `switch` (a schedule cannot lock anyone out, so there is no trial). Runs, prunes, checks,
restores and restore tests run off the UI thread; a run's progress bar is fed by restic's JSON
status lines and `ctrl+x` cancels it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Log, ProgressBar, Static

from hyperconsole import names, presenters, resources
from hyperconsole.backup import jobs as jobs_mod
from hyperconsole.backup import restic, runner, units
from hyperconsole.changes import requests
from hyperconsole.errors import HyperconsoleError
from hyperconsole.messages import ActionDone
from hyperconsole.resources import Targets
from hyperconsole.screens.hostchange import HostChangePane
from hyperconsole.widgets.confirm import ConfirmDialog
from hyperconsole.widgets.form import Field, choice, yes_no
from hyperconsole.widgets.resource_view import ResourceView

RULES = ("last", "daily", "weekly", "monthly", "yearly")


def _keep(text: str) -> int:
    return names.whole_number(text or "0", "keep count", 0, jobs_mod.MAX_KEEP)


def _patterns(text: str) -> tuple[str, ...]:
    return tuple(jobs_mod.vm_pattern(p.strip()) for p in text.split(",") if p.strip()) or ("*",)


def job_fields(job: jobs_mod.Job | None) -> list[Field]:
    j = job or jobs_mod.Job(name="", repository="", password_file="")
    fields = [
        Field("name", "Job name", j.name, jobs_mod.job_name),
        Field("repository", "Repository (path or restic URL)", j.repository, jobs_mod.repository),
        Field("password_file", "Password file", j.password_file,
              lambda t: names.absolute_path(t, "password file")),
        Field("vms", "VMs (names or globs, comma-separated)", ",".join(j.vms), _patterns),
        Field("schedule", "Schedule (OnCalendar)", j.schedule, jobs_mod.calendar),
        *(Field(f"keep_{rule}", f"Keep {rule}", str(getattr(j.retention, rule)), _keep) for rule in RULES),
        choice("compression", "Compression", [(c, c) for c in
                                              (j.compression, *(x for x in jobs_mod.COMPRESSION if x != j.compression))]),
        yes_no("quiesce", "Quiesce through the guest agent", j.quiesce),
        Field("restore_test", "Restore test schedule (empty: none)", j.restore_test or "",
              lambda t: jobs_mod.calendar(t, "restore-test schedule") if t.strip() else None),
    ]
    if job is None:
        fields.append(yes_no("create_password", "Create the password file and repository", True))
    return fields


def job_from_form(values: dict[str, Any]) -> jobs_mod.Job:
    retention = jobs_mod.Retention(**{rule: values[f"keep_{rule}"] for rule in RULES})
    return jobs_mod.validate(jobs_mod.Job(
        name=values["name"], repository=values["repository"], password_file=values["password_file"],
        vms=values["vms"], schedule=values["schedule"], retention=retention, compression=values["compression"],
        quiesce=values["quiesce"], restore_test=values["restore_test"]))


class BackupsScreen(HostChangePane):
    PANE_TITLE = "Backups"
    BINDINGS = resources.bindings(resources.BACKUPS_PANE)

    # Runs, prunes, checks and restores work on this machine's VMs and restic: on a remote host's
    # pane only its job definitions change (pushed with its rebuild).
    LOCAL_ONLY = frozenset({"bjobs.run", "bjobs.prune", "bjobs.check", "bjobs.test", "bsnaps.restore_new",
                            "bsnaps.restore_in_place"})
    LOCAL_ONLY_WHY = ("Backups of {host} run there: its jobs can be changed from here (pushed with its rebuild); "
                      "run, prune, verify and restore them from a console on {host}.")

    def __init__(self) -> None:
        super().__init__()
        self.job_name: str | None = None
        self._cancel: threading.Event | None = None

    def compose_body(self) -> ComposeResult:
        yield Static("", id="pending-banner")
        yield Static("", id="backup-note", classes="dim")
        jobs = resources.BACKUP_JOBS.view()
        jobs.border_subtitle = "jobs go to backups.nix"
        yield jobs
        yield ProgressBar(id="backup-progress", total=100, show_eta=True, classes="hidden")
        yield resources.BACKUP_SNAPSHOTS.view()
        yield Static("", id="backup-snapshot", classes="dim")
        yield Static("", id="backup-figures")
        yield Log(id="rebuild-log", highlight=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#backup-note", Static).update(presenters.plain(self.hc.backup_parts.get("note", ""), "dim"))
        self.jobs_view.focus()

    @property
    def jobs_view(self) -> ResourceView:
        return self.query_one("#bjobs", ResourceView)

    def available(self, action_id: str) -> bool:
        if action_id == "backups.cancel":
            return self._cancel is not None
        return super().available(action_id)

    # -- data -----------------------------------------------------------------------------------------
    def render_data(self, kinds: frozenset[str]) -> None:
        super().render_data(kinds)  # another host: its jobs are read in changed_on_disk
        if kinds & {"all", "connection"}:
            self.changed_on_disk()

    def changed_on_disk(self) -> None:
        self.load(resources.BACKUP_JOBS, self.hc.change_config.nixos_dir, self.hc.backup_parts.get("records"))

    def show_bjobs(self, statuses: list[runner.JobStatus], *_: Any) -> None:
        self.jobs_view.set_items(resources.BACKUP_JOBS.rows(statuses))
        if self.job_name not in self.jobs_view.items and statuses:
            self.job_name = None
        key = self.jobs_view.cursor_key or (statuses[0].name if statuses else None)
        if key is not None:
            self._select(key, force=True)

    @on(ResourceView.Highlighted, "#bjobs")
    def _job_highlighted(self, event: ResourceView.Highlighted) -> None:
        if event.key is not None:
            self._select(event.key)

    @on(ResourceView.Highlighted, "#bsnaps")
    def _snapshot_highlighted(self, event: ResourceView.Highlighted) -> None:
        row = self.query_one("#bsnaps", ResourceView).items.get(event.key or "")
        text = ""
        if row is not None:
            text = f"{row.snapshot.short_id} of {row.vm}: quiesced {row.quiesced}"
            text += "".join(f"; {note}" for note in row.notes)
        self.query_one("#backup-snapshot", Static).update(presenters.plain(text, "dim", wrap=True))

    def _select(self, name: str, force: bool = False) -> None:
        if name == self.job_name and not force:
            return
        self.job_name = name
        status = self.jobs_view.items.get(name)
        if status is not None:
            self.load(resources.BACKUP_SNAPSHOTS, status.job, self.hc.backup_parts.get("records"))

    def show_bsnaps(self, view: runner.SnapshotsView, job: jobs_mod.Job, *_: Any) -> None:
        if job.name != self.job_name:
            return
        self.query_one("#bsnaps", ResourceView).set_items(resources.BACKUP_SNAPSHOTS.rows(view.rows))
        parts = []
        if view.stats is not None:
            s = view.stats
            parts.append(f"{job.name}: {s.snapshots} snapshots, {names.human_size(s.restore_size)} as restored, "
                         f"{names.human_size(s.raw_size)} stored" + (f", dedup ratio {s.ratio:.1f}×" if s.raw_size else ""))
        for vm, test in sorted(view.tests.items()):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(test.get("when") or 0))
            parts.append(f"restore test {vm}: " + (f"passed in {test['seconds']:.1f}s ({when})" if test.get("ok")
                                                    else f"FAILED ({when}): {test.get('error', '')}"))
        self.query_one("#backup-figures", Static).update(presenters.plain("\n".join(parts), wrap=True))

    def _job(self, targets: Targets) -> jobs_mod.Job:
        return targets.items[0].job

    # -- jobs (backups.nix) ---------------------------------------------------------------------------
    def act_bjobs_new(self, _targets: Targets) -> None:
        self.ask_form("New backup job", job_fields(None), self._add, check=self._checked)

    def act_bjobs_edit(self, targets: Targets) -> None:
        job = self._job(targets)
        fields = [f for f in job_fields(job) if f.key != "name"]
        self.ask_form(f"Edit backup job {job.name}", fields,
                      lambda values: self._prepare("edit", {**values, "name": job.name}),
                      check=lambda values: self._checked({**values, "name": job.name}))

    def act_bjobs_delete(self, targets: Targets) -> None:
        self._plan(requests.BackupJobRemove(self._job(targets).name))

    @staticmethod
    def _checked(values: dict[str, Any]) -> dict[str, Any]:
        job_from_form(values)  # a ValidationError keeps the form open with one line under it
        return values

    def _add(self, values: dict[str, Any]) -> None:
        self._prepare("add", values)

    def _prepare(self, verb: str, values: dict[str, Any]) -> None:
        job = job_from_form(values)
        create = bool(values.get("create_password"))
        if verb == "add":
            self._plan(requests.BackupJobAdd(job), prepare=(lambda: _create_repository(job)) if create else None)
        else:
            self._plan(requests.BackupJobEdit(job))

    @work(thread=True, exclusive=True, group="backup-plan", exit_on_error=False, description="plan backup job change")
    def _plan(self, change: requests.Change, prepare=None) -> None:
        try:
            prepared = requests.prepare(change, self.controller.store, requested_timeout=0, configured_timeout=0)
            if prepare is not None and not prepared.changeset.is_empty:
                prepare()
        except HyperconsoleError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="not changed", severity="error", markup=False)
            return
        self.app.call_from_thread(self.ask_apply, f"Apply: {prepared.description}?", change, prepared.changeset, 0,
                                  prepared.description, prepared.changeset.diff())

    # -- run now, with progress -----------------------------------------------------------------------
    def act_bjobs_run(self, targets: Targets) -> None:
        if self._cancel is not None:
            self.notify("a backup run is already going on; ctrl+x cancels it", severity="warning")
            return
        job = self._job(targets)
        self._cancel = threading.Event()
        bar = self.query_one("#backup-progress", ProgressBar)
        bar.remove_class("hidden")
        bar.update(total=100, progress=0)
        self.refresh_bindings()
        self._run(job, self._cancel, self.hc.begin_task(f"back up {job.name}", job.name))

    @work(thread=True, group="backup-run", exit_on_error=False, description="backup run")
    def _run(self, job: jobs_mod.Job, cancel: threading.Event, task: str) -> None:
        label = f"back up {job.name}"
        parts = self.hc.backup_parts

        def progress(vm: str, done: int, total: int) -> None:
            self.app.call_from_thread(self._progress, vm, done, total)

        try:
            if units.mode(demo=bool(parts)) == "unit":  # an operator: the job's root unit runs it
                self.app.call_from_thread(self._progress, units.unit_of(job, "run"), 0, 0)
                last = units.run_by_unit(job, "run", records=parts.get("records"), cancel=cancel)
                ok, summary = bool(last.get("ok")), str(last.get("summary", ""))
            else:
                result = runner.run_job(self.hc.manager.conn, job, open_vm=parts.get("open_vm"), cancel=cancel,
                                        on_progress=progress, records=parts.get("records"))
                ok, summary = result.ok, result.summary()
        except Exception as exc:  # noqa: BLE001 - one line in the task log
            self.app.post_message(ActionDone(label, error=str(exc), task=task))
        else:
            self.app.post_message(ActionDone(label, **({"detail": summary} if ok else {"error": summary}), task=task))
        self.app.call_from_thread(self._run_ended)

    def _progress(self, vm: str, done: int, total: int) -> None:
        bar = self.query_one("#backup-progress", ProgressBar)
        bar.update(total=total or None, progress=done)  # no total: a root unit runs it, no figures
        bar.tooltip = vm

    def _run_ended(self) -> None:
        self._cancel = None
        self.query_one("#backup-progress", ProgressBar).add_class("hidden")
        self.refresh_bindings()
        self.changed_on_disk()

    def act_backups_cancel(self, _targets: Targets) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.notify("cancelling the backup run")

    def act_backups_switch(self, _targets: Targets) -> None:
        self.switch_table()

    # -- prune, verify, restore test ------------------------------------------------------------------
    def act_bjobs_prune(self, targets: Targets) -> None:
        self._preview(self._job(targets))

    @work(thread=True, exclusive=True, group="backup-prune", exit_on_error=False, description="prune preview")
    def _preview(self, job: jobs_mod.Job) -> None:
        try:
            groups = runner.prune_preview(job)
        except HyperconsoleError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="prune", severity="error", markup=False)
            return
        self.app.call_from_thread(self._ask_prune, job, groups)

    def _ask_prune(self, job: jobs_mod.Job, groups) -> None:
        lines = []
        for group in groups:
            lines.append(f"{', '.join(group.paths)}: keep {len(group.keep)}, remove {len(group.remove)}")
            lines += [f"  keep   {s.short_id} {s.time[:16].replace('T', ' ')}  {', '.join(rules)}" for s, rules in group.keep]
            lines += [f"  remove {s.short_id} {s.time[:16].replace('T', ' ')}" for s in group.remove]
        removed = sum(len(g.remove) for g in groups)

        def answered(ok: bool | None) -> None:
            if ok:
                def prune(_manager) -> str:
                    runner.prune(job)
                    return f"removed {removed} snapshots and pruned the repository"

                self.run_job(f"prune {job.name}", prune, target=job.name, then=self.changed_on_disk)

        self.app.push_screen(ConfirmDialog(f"Prune backup job {job.name}: remove {removed} snapshots?",
                                           "\n".join(lines) or "nothing to remove"), answered)

    def act_bjobs_check(self, targets: Targets) -> None:
        job = self._job(targets)
        self.run_job(f"verify {job.name}", lambda _m: runner.check(job), target=job.name)

    def act_bjobs_test(self, targets: Targets) -> None:
        job = self._job(targets)
        parts = self.hc.backup_parts

        def test(manager) -> str:
            if units.mode(demo=bool(parts)) == "unit":
                tests = units.run_by_unit(job, "test", records=parts.get("records"))["tests"]
                results = [runner.TestResult(**t) for _, t in sorted(tests.items())]
            else:
                results = runner.restore_test(manager.conn, job, restorer=parts.get("restorer"),
                                              boot_check=parts.get("boot_check"),
                                              cleanup=parts.get("cleanup") or runner.delete_vm,
                                              records=parts.get("records"))
            failed = [f"{r.vm}: {r.error}" for r in results if not r.ok]
            if failed:
                raise HyperconsoleError("restore test failed: " + "; ".join(failed))
            return ", ".join(f"{r.vm} recovered in {r.seconds:.1f}s" for r in results)

        self.run_job(f"restore test {job.name}", test, target=job.name, then=self.changed_on_disk)

    # -- restore --------------------------------------------------------------------------------------
    def _snapshot_job(self) -> jobs_mod.Job | None:
        status = self.jobs_view.items.get(self.job_name or "")
        return status.job if status is not None else None

    def act_bsnaps_restore_new(self, targets: Targets) -> None:
        row, job = targets.items[0], self._snapshot_job()
        if job is None:
            return
        fields = [Field("as_name", "New VM name", f"{row.vm}-restored"[:names.MAX_NAME], names.vm_name),
                  Field("pool", "Pool for its disks (empty: the original's)", "",
                        lambda t: names.pool_name(t) if t.strip() else None)]
        self.ask_form(f"Restore {row.snapshot.short_id} of {row.vm} as a new VM", fields,
                      lambda values: self._restore(job, row, values["as_name"], values["pool"], False),
                      submit="restore")

    def act_bsnaps_restore_in_place(self, targets: Targets) -> None:
        row, job = targets.items[0], self._snapshot_job()
        if job is None:
            return
        self.confirm("bsnaps.restore_in_place", targets,
                     f"The disks of {row.vm} are overwritten with the snapshot of {row.snapshot.time[:16]}. "
                     "The VM must be shut off.",
                     lambda ok: ok and self._restore(job, row, None, None, True))

    def _restore(self, job: jobs_mod.Job, row: runner.SnapshotRow, as_name: str | None, pool: str | None,
                 in_place: bool) -> None:
        restorer = self.hc.backup_parts.get("restorer")

        def restore(manager) -> str:
            return "restored as " + runner.restore_snapshot(manager.conn, job, row.snapshot, as_name=as_name, pool=pool,
                                                            in_place=in_place, restorer=restorer)

        self.run_job(f"restore {row.snapshot.short_id}", restore, target=as_name or row.vm)


def _create_repository(job: jobs_mod.Job) -> None:
    """The password file (0600, random) when missing, and the repository when there is none."""
    if not os.path.exists(job.password_file):
        restic.create_password_file(job.password_file)
    repo = runner.repository(job)
    if not repo.exists():
        repo.init()
