"""`hyperconsole setup`: the first-boot wizard (TUI), or `--answers FILE.yaml` without one.

With an answers file every answer is checked against this host first: each bad one is a line
`FILE: at $.step.key: problem` and the exit status is 1, nothing changed. `--dry-run` then
prints the fragments, the option paths that change and the impact, and changes nothing.
Otherwise the diff is shown (and asked about on a terminal unless --yes), the change is
dry-built, then activated on trial. Over SSH the trial is kept only by `hyperconsole confirm`
run from a new SSH login (the proof the host is still reachable), so this command prints that
command and returns; on the local console it asks for `yes` like `profile apply`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hyperconsole import paths
from hyperconsole.cli.nixos import (
    _ask_within, _confirm, _interactive, _print_line, _report_failure, ask_to_apply, confirm_timeout_arg, guarded,
    make_controller,
)
from hyperconsole.config import Config
from hyperconsole.nixos.store import FRAGMENTS_SUBDIR, FragmentStore
from hyperconsole.setup import answers as answers_mod, fragments, run, secrets, validate


def secrets_dir(args: argparse.Namespace) -> Path:
    if args.secrets_dir:
        return Path(args.secrets_dir)
    return paths.demo_dir() / "secrets" if getattr(args, "demo", False) else secrets.SECRETS_DIR


def check_answers(path: Path, facts: validate.HostFacts) -> tuple[answers_mod.Answers, list[str]]:
    """The answers and one line per bad answer (empty when all are good)."""
    answers = answers_mod.load_file(path)
    return answers, [f"{path.name}: at {where}: {message}" for where, message in validate.check_all(answers, facts)]


def print_plan(plan: fragments.Plan, *, texts: bool) -> None:
    for change in plan.changeset.changes:
        if change.changed and texts:
            print(f"# --- {FRAGMENTS_SUBDIR}/{change.name}.nix")
            print(change.new_text or "# (removed)\n", end="")
    if not texts:
        print(plan.changeset.diff(), end="")
    print("option paths that change:")
    for path in plan.changed_paths:
        print(f"  {path}")
    print("impact:")
    for line in plan.impact:
        print(f"  {line}")


@guarded
def cmd_setup(args: argparse.Namespace, config: Config) -> int:
    if not args.answers:
        from hyperconsole.screens.setup import SetupApp

        SetupApp(config, demo=bool(getattr(args, "demo", False)), secrets_dir=secrets_dir(args)).run()
        return 0
    facts = validate.gather_facts()
    answers, problems = check_answers(Path(args.answers), facts)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if problems:
        return 1
    store = FragmentStore(config.nixos_dir)
    plan = fragments.plan(answers, facts, store, secrets_dir(args))
    if args.dry_run:
        print_plan(plan, texts=True)
        print("dry run: nothing was written")
        return 0
    if plan.changeset.is_empty:
        print("the fragments already say this; nothing to change")
        return 0
    print_plan(plan, texts=False)
    if not ask_to_apply(args):
        return 1
    timeout = config.confirm_timeout if args.confirm_timeout is None else args.confirm_timeout
    controller = make_controller(args, config)
    try:
        outcome = run.apply(plan, controller, timeout=timeout, add_import=answers.preflight.add_import,
                            on_line=_print_line)
    except run.DryBuildFailed as exc:
        _report_failure(exc.result)
        print(str(exc), file=sys.stderr)
        return 1
    if outcome.import_added:
        print(f"added ./hyperconsole to configuration.nix imports ({outcome.import_added})")
    applied = outcome.apply
    print(f"dry-build succeeded; wrote {', '.join(n + '.nix' for n in applied.commit.written)}")
    if applied.reverted or not applied.rebuild.ok:
        _report_failure(applied.rebuild)
        if applied.rolled_back:
            print(applied.rolled_back, file=sys.stderr)
        return 1
    pending = applied.pending
    if pending is None:
        print(f"applied with {applied.rebuild.action}")
        return 0
    command = run.confirm_command(Path(config.nixos_dir), demo=bool(getattr(args, "demo", False)))
    if facts.session.over_ssh:
        print(f"trial configuration active. From a NEW SSH login to this host run `{command}` within "
              f"{pending.timeout}s: that login proves the host is still reachable. Otherwise it reverts by itself.")
        return 0
    print(f"trial configuration active; run `{command}` within {pending.timeout}s to keep it, "
          "otherwise it reverts by itself")
    if not _interactive():
        return 0
    answer = _ask_within(f"Keep this configuration? Type 'yes' within {pending.timeout}s: ", pending.remaining())
    if answer and answer.lower() in ("y", "yes"):
        answers_mod.forget()
        return _confirm(args, config)
    print("not confirmed: the change will revert by itself when the timer runs out")
    return 0


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("setup", help="first-boot setup wizard (or --answers FILE without the TUI)",
                              parents=[common])
    p.add_argument("--answers", metavar="FILE", help="answers file (YAML; see docs/setup-answers.example.yaml)")
    p.add_argument("--dry-run", action="store_true", help="check the answers and print the fragments; change nothing")
    p.add_argument("--confirm-timeout", type=confirm_timeout_arg, metavar="N",
                   help="seconds to confirm from a new login before it reverts (default from config, 120)")
    p.add_argument("--secrets-dir", metavar="DIR", help=f"where the password hash file goes (default {secrets.SECRETS_DIR})")
    p.add_argument("--yes", action="store_true", help="do not ask before applying (the diff is still shown)")
    p.set_defaults(func=cmd_setup)

