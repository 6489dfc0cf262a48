"""The first-boot setup wizard (`hyperconsole setup`): one screen per step with back and next,
forms from widgets/form.py, a review of every fragment as a diff with the impact and the option
paths that change, and the apply step following the trial.

Every answer is saved (0600, under the state dir) when its step is left forwards, so quitting
(`ctrl+q`) and running `hyperconsole setup` again continues at the step where it stopped, with
what was typed. A step's answers are checked off the UI thread (ssh-keygen, mkpasswd, the host's
interfaces) by the same validation as `--answers`; a bad one shows its line under its field and
the step stays. Nothing is written before the apply step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import msgspec
from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from hyperconsole import names
from hyperconsole.config import Config
from hyperconsole.doctor.model import Result as CheckResult, Status
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos.rebuild import RebuildLine
from hyperconsole.nixos.revert import ConfirmOrRevert, controller_for
from hyperconsole.nixos.store import FRAGMENTS_SUBDIR, FragmentStore
from hyperconsole.presenters import CHECK_STYLES, check_cells
from hyperconsole.sanitize import visible, visible_lines
from hyperconsole.setup import answers as A, fragments, preflight, run, secrets, validate
from hyperconsole.setup.validate import HostFacts
from hyperconsole.widgets.form import Field, Form, choice, yes_no
from hyperconsole.widgets.sidediff import unified

BACK = "back"


def _optional_number(what: str, low: int, high: int) -> Callable[[Any], int | None]:
    def parse(text: Any) -> int | None:
        return None if not str(text).strip() else names.whole_number(text, what, low, high)
    return parse


def _words(text: Any) -> list[str]:
    return [w for w in str(text).replace(",", " ").split() if w]


def _replace(answers: A.Answers, step: str, **values: Any) -> A.Answers:
    part = msgspec.structs.replace(getattr(answers, step), **values)
    return msgspec.structs.replace(answers, **{step: part})


# -- the steps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    fields: Callable[[A.Answers, HostFacts], list[Field]]
    apply: Callable[[A.Answers, dict[str, Any]], A.Answers]  # may block (mkpasswd): run off the UI thread
    paths: dict[str, str]  # answers path -> field key, to show a problem under its field
    intro: Callable[[A.Answers, HostFacts, Any], Any] = lambda answers, facts, extra: None


def _preflight_intro(answers: A.Answers, facts: HostFacts, checks: Any) -> Any:
    if checks is None:
        return Text("checking the host…", "dim")
    text = Text()
    for check in checks:
        text.append_text(check_cells(check)["status"])
        text.append(f"  {visible(check.why)}\n")
        if check.hint and check.status is not Status.PASS:
            text.append(f"      {visible(check.hint)}\n", "dim")
    return text


def _identity_fields(answers: A.Answers, facts: HostFacts) -> list[Field]:
    ans, keys = answers.identity, answers.identity.admin.ssh_keys
    kept = " (blank keeps the one set)" if ans.admin.password_hash else ""
    return [
        Field("hostname", "Hostname", ans.hostname),
        Field("timezone", "Timezone", ans.timezone, suggest=tuple(sorted(facts.timezones))),
        Field("admin", "Admin user", ans.admin.name),
        Field("key1", "SSH public key", keys[0] if keys else ""),
        Field("key2", "Second key (optional)", keys[1] if len(keys) > 1 else ""),
        Field("password", "Password (optional)" + kept, "", password=True),
    ]


def _identity_apply(answers: A.Answers, v: dict[str, Any]) -> A.Answers:
    admin = answers.identity.admin
    crypt_text = admin.password_hash
    if v["password"]:
        try:
            crypt_text = secrets.hash_password(v["password"])
        except ValidationError as exc:
            raise FieldError("password", str(exc)) from None
    keys = [k.strip() for k in (v["key1"], v["key2"]) if k.strip()]
    return _replace(answers, "identity", hostname=v["hostname"].strip(), timezone=v["timezone"].strip(),
                    admin=A.Admin(v["admin"].strip(), keys, crypt_text))


def _network_fields(answers: A.Answers, facts: HostFacts) -> list[Field]:
    ans = answers.network
    options = [(preflight.nic_label(i), i.name) for i in preflight.physical_nics(facts.interfaces)]
    if ans.uplink and ans.uplink not in [v for _, v in options]:
        options.insert(0, (ans.uplink, ans.uplink))
    uplink = choice("uplink", "Management uplink", options or [("(no NIC found)", "")])
    uplink = Field(uplink.key, uplink.label, ans.uplink or uplink.value, choices=uplink.choices)
    return [
        uplink,
        Field("bridge", "VM bridge", ans.bridge),
        Field("mode", "Addressing", ans.mode, choices=(("DHCP", "dhcp"), ("static", "static"))),
        Field("address", "Address/prefix", ans.address or ""),
        Field("gateway", "Gateway", ans.gateway or ""),
        Field("dns", "DNS servers", " ".join(ans.dns), parse=_words),
        Field("vlan", "Management VLAN", "" if ans.vlan is None else str(ans.vlan), parse=_optional_number("VLAN id", 1, 4094)),
        Field("mtu", "MTU (blank: default)", "" if ans.mtu is None else str(ans.mtu), parse=_optional_number("MTU", 68, 65535)),
    ]


def _network_intro(answers: A.Answers, facts: HostFacts, _extra: Any) -> Any:
    if facts.session.over_ssh:
        where = facts.ssh_interface or "an interface that could not be found"
        return Text(f"Your SSH session (as {visible(facts.session.ssh_user or '')}) runs over {visible(where)}. "
                    "The change is activated on trial and reverts by itself unless confirmed from a new SSH login.",
                    "yellow")
    return Text("Local console: the network change is still activated on trial (confirm-or-revert).", "dim")


def _network_apply(answers: A.Answers, v: dict[str, Any]) -> A.Answers:
    static = v["mode"] == "static"
    return _replace(answers, "network", uplink=v["uplink"], bridge=v["bridge"].strip(), mode=v["mode"],
                    address=(v["address"].strip() or None) if static else None,
                    gateway=(v["gateway"].strip() or None) if static else None, dns=v["dns"], vlan=v["vlan"], mtu=v["mtu"])


def _storage_fields(answers: A.Answers, facts: HostFacts) -> list[Field]:
    ans = answers.storage
    kinds = [("directory", "dir")] + ([("LVM volume group", "logical")] if facts.volume_groups else []) \
        + ([("ZFS dataset", "zfs")] if facts.zfs_datasets else [])
    fields = [Field("kind", "Default pool on", ans.kind if ans.kind in [k for _, k in kinds] else "dir", choices=tuple(kinds)),
              Field("path", "Directory", ans.path)]
    if facts.volume_groups:
        fields.append(Field("volume_group", "Volume group", ans.volume_group or facts.volume_groups[0],
                            choices=tuple((vg, vg) for vg in facts.volume_groups)))
    if facts.zfs_datasets:
        fields.append(Field("dataset", "ZFS dataset", ans.dataset or facts.zfs_datasets[0],
                            choices=tuple((d, d) for d in facts.zfs_datasets)))
    return fields


def _storage_intro(answers: A.Answers, facts: HostFacts, _extra: Any) -> Any:
    check = preflight.disk_space(answers.storage.path)
    why = visible(check.why)
    return Text(why[:1].upper() + why[1:], CHECK_STYLES[check.status.value])


def _storage_apply(answers: A.Answers, v: dict[str, Any]) -> A.Answers:
    return _replace(answers, "storage", kind=v["kind"], path=v["path"].strip(),
                    volume_group=v.get("volume_group", ""), dataset=v.get("dataset", ""))


def _virt_fields(answers: A.Answers, facts: HostFacts) -> list[Field]:
    ans = answers.virtualisation
    return [
        Field("on_boot", "Guests at host boot", ans.on_boot, choices=(("ignore (autostart only)", "ignore"), ("start those running", "start"))),
        Field("on_shutdown", "At host shutdown", ans.on_shutdown, choices=(("shut guests down", "shutdown"), ("suspend guests", "suspend"))),
        yes_no("default_network", "NAT network default", ans.default_network),
        yes_no("tpm", "TPM for guests", ans.tpm),
        yes_no("nested", "Nested virtualisation", ans.nested),
    ]


def _virt_intro(answers: A.Answers, facts: HostFacts, _extra: Any) -> Any:
    nested = "this CPU can nest guests" if facts.nested_capable else "this CPU cannot nest guests (no kvm_intel/kvm_amd)"
    return Text(f"libvirtd with QEMU; UEFI firmware (OVMF) comes with QEMU. {nested}.", "dim")


def _virt_apply(answers: A.Answers, v: dict[str, Any]) -> A.Answers:
    return _replace(answers, "virtualisation", **v)


def _security_fields(answers: A.Answers, facts: HostFacts) -> list[Field]:
    catalog = facts.catalog
    names_ = sorted(catalog.profiles) if catalog else [answers.security.profile]
    fields = [Field("profile", "Security profile", answers.security.profile if answers.security.profile in names_ else names_[0],
                    choices=tuple((n, n) for n in names_))]
    for toggle in sorted(catalog.toggles) if catalog else ():
        fields.append(yes_no(f"t-{toggle}", toggle, toggle in answers.security.toggles))
    return fields


def _security_intro(answers: A.Answers, facts: HostFacts, _extra: Any) -> Any:
    if not facts.catalog:
        return None
    text = Text()
    for name, profile in sorted(facts.catalog.profiles.items()):
        text.append(name, "bold")
        text.append(f": {visible(profile.summary)}\n", "dim")
    return text


def _security_apply(answers: A.Answers, v: dict[str, Any]) -> A.Answers:
    toggles = [key[2:] for key, on in v.items() if key.startswith("t-") and on]
    return _replace(answers, "security", profile=v["profile"], toggles=toggles)


def _backup_fields(answers: A.Answers, facts: HostFacts) -> list[Field]:
    from hyperconsole.backup.jobs import Job

    ans = answers.backups
    job = ans.job or Job(name="nightly", repository="/srv/backup/restic",
                         password_file="/etc/hyperconsole/restic-nightly.pw", schedule="*-*-* 02:30")
    keep = lambda t: names.whole_number(t or "0", "keep count", 0, 100_000)  # noqa: E731
    return [
        Field("skip", "First backup job", ans.skip, choices=(("skip for now", True), ("create a job", False))),
        Field("name", "Job name", job.name),
        Field("repository", "Repository (path or restic URL)", job.repository),
        Field("password_file", "Password file", job.password_file),
        yes_no("create_password", "Create password file (0600) and repository", ans.create_password or ans.job is None),
        Field("schedule", "Schedule (OnCalendar)", job.schedule),
        *(Field(f"keep_{rule}", f"Keep {rule}", str(getattr(job.retention, rule)), keep)
          for rule in ("daily", "weekly", "monthly")),
    ]


def _backup_apply(answers: A.Answers, v: dict[str, Any]) -> A.Answers:
    from hyperconsole.backup.jobs import Job, Retention

    if v["skip"]:
        return _replace(answers, "backups", skip=True, job=None, create_password=False)
    job = Job(name=v["name"].strip(), repository=v["repository"].strip(), password_file=v["password_file"].strip(),
              schedule=v["schedule"].strip(),
              retention=Retention(daily=v["keep_daily"], weekly=v["keep_weekly"], monthly=v["keep_monthly"]))
    return _replace(answers, "backups", skip=False, job=job, create_password=v["create_password"])


STEPS: dict[str, Step] = {
    "preflight": Step("preflight", lambda a, f: [yes_no("add_import", "Add the import", a.preflight.add_import)],
                      lambda a, v: _replace(a, "preflight", add_import=v["add_import"]), {}, _preflight_intro),
    "identity": Step("identity", _identity_fields, _identity_apply, {
        "$.identity.hostname": "hostname", "$.identity.timezone": "timezone", "$.identity.admin.name": "admin",
        "$.identity.admin.ssh_keys[0]": "key1", "$.identity.admin.ssh_keys[1]": "key2",
        "$.identity.admin.password_hash": "password"},
        lambda a, f, e: Text("Timezone: type the start of a zone (Europe/Be…), → completes. The password is "
                             "hashed at once; only the hash is kept.", "dim")),
    "network": Step("network", _network_fields, _network_apply, {
        f"$.network.{k}": k for k in ("uplink", "bridge", "address", "gateway", "vlan", "mtu")}
        | {f"$.network.dns[{n}]": "dns" for n in range(8)}, _network_intro),
    "storage": Step("storage", _storage_fields, _storage_apply, {
        "$.storage.path": "path", "$.storage.kind": "kind", "$.storage.volume_group": "volume_group",
        "$.storage.dataset": "dataset"}, _storage_intro),
    "virtualisation": Step("virtualisation", _virt_fields, _virt_apply, {
        "$.virtualisation.nested": "nested", "$.virtualisation.default_network": "default_network"}, _virt_intro),
    "security": Step("security", _security_fields, _security_apply, {"$.security.profile": "profile"}, _security_intro),
    "backups": Step("backups", _backup_fields, _backup_apply, {
        "$.backups.job": "name", "$.backups.skip": "skip",
        **{f"$.backups.job.{k}": k for k in ("name", "repository", "password_file", "schedule")},
        "$.backups.job.retention": "keep_daily"},
        lambda a, f, e: Text("A first backup job (restic: encrypted, deduplicated), written to backups.nix like "
                             "`backup job add`; every VM, on the schedule. Skip to add one later (pane 5).", "dim")),
}


class FieldError(ValidationError):
    """A problem of one field found while a step's answers were applied."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _title(step: str) -> str:
    return f"Setup {A.STEPS.index(step) + 1}/{len(A.STEPS)}: {A.STEP_TITLES[step]}"


class StepForm(Form):
    """One step: its fields, an intro, and back (`esc`, `ctrl+b`) / next (`ctrl+s`, or `enter` on
    the last field). Next checks the answers off the UI thread before it moves on."""

    ESCAPE_LABEL = "back"
    BINDINGS = [
        Binding("escape", "back", "Back", id="setup.back"),
        Binding("ctrl+b", "back", "Back", show=False, id="setup.back-alt"),
    ]

    def __init__(self, wizard: "SetupApp", step: Step) -> None:
        answers, facts = wizard.answers, wizard.facts
        first = step.name == A.STEPS[0]
        super().__init__(_title(step.name), step.fields(answers, facts), submit="next",
                         intro=step.intro(answers, facts, wizard.checks))
        self.step = step
        self.wizard = wizard
        self.first = first

    def action_back(self) -> None:
        if not self.first:
            self.dismiss(BACK)

    def action_cancel(self) -> None:  # esc is back here; leaving the wizard is ctrl+q
        self.action_back()

    def submitted(self, result: Any) -> None:
        self.show_error("checking…")
        self._check(result)

    @work(thread=True, exclusive=True, group="setup-check", exit_on_error=False, description="check answers")
    def _check(self, values: dict[str, Any]) -> None:
        try:
            answers = self.step.apply(self.wizard.answers, values)
            problems = validate.check_step(self.step.name, answers, self.wizard.facts)
            if not problems and self.step.name == "virtualisation":
                problems = validate.check_across(answers)
        except FieldError as exc:
            self.app.call_from_thread(self._problems, None, [(exc.key, str(exc))], [])
            return
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._problems, None, [], [str(exc)])
            return
        by_field = [(self.step.paths[p], m) for p, m in problems if p in self.step.paths]
        rest = [f"{p}: {m}" for p, m in problems if p not in self.step.paths]
        self.app.call_from_thread(self._problems, answers, by_field, rest)

    def _problems(self, answers: A.Answers | None, by_field: list[tuple[str, str]], rest: list[str]) -> None:
        keys = {f.key for f in self.fields}
        for key in keys:
            self.field_error(key, "\n".join(m for k, m in by_field if k == key))
        self.show_error("\n".join(rest))
        if answers is not None and not by_field and not rest:
            self.dismiss(answers)
        elif by_field:
            self.widget(by_field[0][0]).focus()


class ReviewScreen(Screen):
    """Every fragment as a diff against what is there, the impact, the option paths that change."""

    BINDINGS = [
        Binding("ctrl+s", "apply", "Apply", id="setup.apply"),
        Binding("escape", "back", "Back", id="setup.review-back"),
        Binding("ctrl+b", "back", "Back", show=False, id="setup.review-back-alt"),
    ]

    def __init__(self, wizard: "SetupApp") -> None:
        super().__init__()
        self.wizard = wizard
        self.plan: fragments.Plan | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(_title("review") + "  ·  nothing has been written yet", classes="box-title")
            with VerticalScroll(id="review"):
                yield Static("preparing the change…", id="review-body")
        yield Footer()

    def on_mount(self) -> None:
        self._prepare()

    @work(thread=True, exclusive=True, group="setup-plan", exit_on_error=False, description="prepare setup change")
    def _prepare(self) -> None:
        try:
            plan = fragments.plan(self.wizard.answers, self.wizard.facts, self.wizard.store, self.wizard.secrets_dir)
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._show, None, str(exc))
            return
        self.app.call_from_thread(self._show, plan, "")

    def _show(self, plan: fragments.Plan | None, error: str) -> None:
        self.plan = plan
        body = self.query_one("#review-body", Static)
        if plan is None:
            body.update(Text(visible_lines(error) + "\n\nesc goes back to change the answers.", "bold red"))
            return
        parts: list[Any] = [Text("Impact", "bold")]
        parts += [Text(f"  • {visible(line)}") for line in plan.impact]
        if plan.password is not None:
            parts.append(Text(f"  • the password hash goes to {visible(str(plan.password[0]))} (0600), "
                              "read by hashedPasswordFile"))
        parts.append(Text(f"\nOption paths that change ({len(plan.changed_paths)})", "bold"))
        parts.append(Text("\n".join(f"  {visible(p)}" for p in plan.changed_paths), "dim"))
        for change in plan.changeset.changes:
            if change.changed:
                parts.append(Text(f"\n{FRAGMENTS_SUBDIR}/{change.name}.nix", "bold"))
                parts.append(unified(change.old_text, change.new_text, old_title="now", new_title="after apply"))
        parts.append(Text("\nctrl+s applies: dry-build, then activation on trial · esc goes back", "bold"))
        body.update(Group(*parts))

    def action_back(self) -> None:
        self.dismiss(BACK)

    def action_apply(self) -> None:
        if self.plan is not None:
            self.dismiss(self.plan)


class ApplyScreen(Screen):
    """dry-build, then the trial: over SSH it shows the command to run from a new login and
    follows the trial until it is kept or reverted; on the local console `k` keeps, `u` reverts."""

    BINDINGS = [
        Binding("k", "keep", "Keep", id="setup.keep"),
        Binding("u", "undo", "Revert now", id="setup.undo"),
    ]

    def __init__(self, wizard: "SetupApp", plan: fragments.Plan) -> None:
        super().__init__()
        self.wizard = wizard
        self.plan = plan
        self.state = "running"  # running | trial | kept | reverted | failed

    def compose(self) -> ComposeResult:
        yield Static(_title("apply"), classes="box-title")
        yield Static("dry-build…", id="apply-status")
        yield Log(id="apply-log", highlight=False)
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("keep", "undo"):
            return self.state == "trial" and not self.wizard.facts.session.over_ssh
        return True

    def on_mount(self) -> None:
        self._apply()

    def _line(self, line: RebuildLine) -> None:
        self.app.call_from_thread(self.query_one("#apply-log", Log).write_line, f"{line.elapsed:6.1f}s  {visible(line.text)}")

    def _status(self, text: str, style: str, state: str) -> None:
        self.state = state
        self.query_one("#apply-status", Static).update(Text(visible_lines(text), style))
        self.refresh_bindings()
        if state == "kept":
            self.wizard.finished()

    @work(thread=True, exclusive=True, group="setup-apply", exit_on_error=False, description="apply setup")
    def _apply(self) -> None:
        controller = self.wizard.controller
        try:
            outcome = run.apply(self.plan, controller, timeout=self.wizard.timeout,
                                add_import=self.wizard.answers.preflight.add_import, on_line=self._line)
        except HyperconsoleError as exc:
            self.app.call_from_thread(self._status, str(exc), "bold red", "failed")
            return
        applied = outcome.apply
        if applied.pending is None:
            text = applied.rolled_back or f"{applied.rebuild.action} {applied.rebuild.status}"
            self.app.call_from_thread(self._status, text, "bold red" if applied.reverted else "green",
                                      "failed" if applied.reverted or not applied.rebuild.ok else "kept")
            return
        command = run.confirm_command(self.wizard.store.nixos_dir, demo=self.wizard.demo)
        if self.wizard.facts.session.over_ssh:
            text = (f"On trial. From a NEW SSH login to this host run:\n\n    {command}\n\nwithin "
                    f"{applied.pending.timeout} s; that login proves the host is still reachable. "
                    "Otherwise the change reverts by itself.")
        else:
            text = (f"On trial: k keeps it (or `{command}`), u reverts now; with no answer it reverts by itself "
                    f"in {applied.pending.timeout} s.")
        self.app.call_from_thread(self._status, text, "bold yellow", "trial")
        self.app.call_from_thread(self._follow, applied.pending.change_id)

    def _follow(self, change_id: str) -> None:
        self.set_interval(1.0, lambda: self._poll(change_id), name="trial-poll")

    @work(thread=True, exclusive=True, group="setup-poll", exit_on_error=False, description="follow the trial")
    def _poll(self, change_id: str) -> None:
        if self.state != "trial":
            return
        controller = self.wizard.controller
        pending = controller.pending()
        if pending is not None and pending.change_id == change_id:
            return
        last = controller.last_revert() or {}
        if last.get("change_id") == change_id:
            self.app.call_from_thread(self._status, f"Reverted: {last.get('reason', '')}; the files were restored.",
                                      "bold red", "reverted")
        else:
            self.app.call_from_thread(self._status, "Kept: the setup is permanent (switched). Setup is complete.",
                                      "bold green", "kept")

    def action_keep(self) -> None:
        self._keep()

    @work(thread=True, exclusive=True, group="setup-keep", exit_on_error=False, description="keep the trial")
    def _keep(self) -> None:
        try:
            result = self.wizard.controller.confirm(on_line=self._line)
        except HyperconsoleError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        if result.ok:
            self.app.call_from_thread(self._status, "Kept: the setup is permanent (switched). Setup is complete.",
                                      "bold green", "kept")

    def action_undo(self) -> None:
        self._undo()

    @work(thread=True, exclusive=True, group="setup-keep", exit_on_error=False, description="revert the trial")
    def _undo(self) -> None:
        try:
            self.wizard.controller.revert_now(reason="reverted by the operator", on_line=self._line)
        except HyperconsoleError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")


class SetupApp(App):
    """The wizard on its own (it needs no libvirt connection): steps in order, answers saved."""

    TITLE = "hyperconsole setup"
    CSS_PATH = Path(__file__).resolve().parent.parent / "hyperconsole.tcss"

    def __init__(self, config: Config, *, demo: bool = False, secrets_dir: Path = secrets.SECRETS_DIR,
                 facts: HostFacts | None = None, checks: list[CheckResult] | None = None,
                 controller: ConfirmOrRevert | None = None, answers_path: Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.demo = demo
        self.secrets_dir = secrets_dir
        self.facts = facts or HostFacts()
        self.checks = checks
        self._given = facts is not None
        self.answers = A.Answers()
        self.store = FragmentStore(config.nixos_dir)
        self.done = False
        self._controller = controller
        self.answers_path = answers_path or A.saved_path()

    @property
    def controller(self) -> ConfirmOrRevert:
        return self._controller or controller_for(self.config, demo=self.demo)

    @property
    def timeout(self) -> int:
        return max(self.config.confirm_timeout, 1)  # setup always changes the network and SSH: on trial

    def compose(self) -> ComposeResult:
        yield Static("hyperconsole setup · ctrl+q leaves (the answers so far are kept)", id="setup-loading")

    def on_mount(self) -> None:
        self._read_host()

    @work(thread=True, exclusive=True, group="setup-load", exit_on_error=False, description="read the host")
    def _read_host(self) -> None:
        try:
            saved = A.load_saved(self.answers_path)
        except HyperconsoleError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            saved = None
        facts = self.facts if self._given else validate.gather_facts()
        checks = self.checks
        if checks is None:
            checks = preflight.run_all(self.config, facts.interfaces, pool_path=(saved or self.answers).storage.path)
        self.call_from_thread(self._host_read, saved, facts, checks)

    def _host_read(self, saved: A.Answers | None, facts: HostFacts, checks: list[CheckResult]) -> None:
        self.facts, self.checks = facts, checks
        if saved is not None:
            self.answers = saved
        elif facts.interfaces:
            up = preflight.physical_nics(facts.interfaces)
            if up and up[0].carrier:
                self.answers = _replace(self.answers, "network", uplink=up[0].name)
        step = {"apply": "review"}.get(self.answers.step, self.answers.step)
        step = step if step in STEPS or step == "review" else A.STEPS[0]
        self.show(step)

    def show(self, step: str) -> None:
        if step == "review":
            self.push_screen(ReviewScreen(self), self._reviewed)
        else:
            self.push_screen(StepForm(self, STEPS[step]), lambda result: self._answered(step, result))

    def _answered(self, step: str, result: Any) -> None:
        index = A.STEPS.index(step)
        if result == BACK or result is None:
            self.show(A.STEPS[max(index - 1, 0)])
            return
        self.answers = msgspec.structs.replace(result, step=A.STEPS[index + 1])
        self._save(self.answers)
        self.show(A.STEPS[index + 1])

    @work(thread=True, group="setup-save", exit_on_error=False, description="save answers")
    def _save(self, answers: A.Answers) -> None:
        try:
            A.save(answers, self.answers_path)
        except HyperconsoleError as exc:
            self.call_from_thread(self.notify, f"answers not saved: {exc}", severity="warning")

    def _reviewed(self, result: Any) -> None:
        if result == BACK or result is None:
            self.show("backups")
            return
        self.push_screen(ApplyScreen(self, result))

    def finished(self) -> None:
        self.done = True
        self._forget()

    @work(thread=True, group="setup-save", exit_on_error=False, description="forget answers")
    def _forget(self) -> None:
        A.forget(self.answers_path)
