"""CLI subcommands for fragments, rebuilds, confirm-or-revert and security profiles.

`register(subparsers, common)` is called by hyperconsole.cli; every handler is
`handler(args, config) -> int` and turns HyperconsoleError into one `error:` line on stderr.
`python -m hyperconsole.cli.nixos …` runs the same commands standalone (used by tests).
"""

from __future__ import annotations

import argparse
import functools
import select
import sys
import time
from pathlib import Path
from typing import Callable

from hyperconsole import profiles as profiles_mod
from hyperconsole.config import Config
from hyperconsole.errors import HyperconsoleError
from hyperconsole.demo import nixos as demo
from hyperconsole.nixos.imports import add_fragments_import, add_import, imports_fragments  # noqa: F401
from hyperconsole.nixos.rebuild import (
    ACTIONS, RebuildLine, RebuildResult, diff_generations, find_generation, list_generations,
    rollback_argvs,
)
from hyperconsole.changes import requests
from hyperconsole.changes.submit import Direct, Privileged, submitter_for
from hyperconsole.nixos.revert import ApplyOutcome, ConfirmOrRevert, NoPendingChange, controller_for
from hyperconsole.nixos.store import ChangeSet, FragmentStore
from hyperconsole.setup import guard

MAX_CONFIRM_TIMEOUT = 86400


# -- helpers ------------------------------------------------------------------------------------


def _err(text: str) -> None:
    print(f"error: {text}", file=sys.stderr, flush=True)


def guarded(handler: Callable[[argparse.Namespace, Config], int]) -> Callable[[argparse.Namespace, Config], int]:
    """Operator-facing errors become one line and exit status 1; never a traceback."""

    @functools.wraps(handler)
    def wrapper(args: argparse.Namespace, config: Config) -> int:
        try:
            return handler(args, config)
        except HyperconsoleError as exc:
            _err(str(exc))
            return 1
        except KeyboardInterrupt:
            _err("interrupted")
            return 130
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            _err(f"{exc.strerror or exc}{where}")
            return 1

    return wrapper


def _print_line(line: RebuildLine) -> None:
    print(f"[{line.elapsed:6.1f}s] {line.text}", flush=True)


def _report_failure(result: RebuildResult) -> None:
    _err(f"{result.action} {result.status} after {result.duration:.1f}s (log: {result.log_path})")
    for line in result.summary(tail=10):
        print(f"  {line}", file=sys.stderr)


def _is_demo(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "demo", False))


def make_controller(args: argparse.Namespace, config: Config) -> ConfirmOrRevert:
    return controller_for(config, demo=_is_demo(args))


def make_submitter(args: argparse.Namespace, config: Config) -> Direct | Privileged:
    """Who carries out host changes for this command: this process (root), or the root request
    unit for an operator; refused in one line when neither can."""
    submitter = submitter_for(config, demo=_is_demo(args))
    if submitter.unavailable:
        raise HyperconsoleError(submitter.unavailable)
    return submitter


def _print_handover(submitter: Direct | Privileged) -> None:
    if submitter.privileged:
        print(f"handing the change to the root request unit ({submitter.marker.unit}<id>.service); following it")


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _ask_within(prompt: str, seconds: float) -> str | None:
    """Read a line from the terminal, giving up after `seconds` (None on timeout/EOF)."""
    print(prompt, end="", flush=True)
    ready, _, _ = select.select([sys.stdin], [], [], max(0.0, seconds))
    if not ready:
        print()
        return None
    answer = sys.stdin.readline()
    return answer.strip() if answer else None


def confirm_timeout_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be whole seconds, not {text!r}") from None
    if not 0 <= value <= MAX_CONFIRM_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_CONFIRM_TIMEOUT} seconds")
    return value


# -- profile ------------------------------------------------------------------------------------


@guarded
def cmd_profile_list(args: argparse.Namespace, config: Config) -> int:
    catalog = profiles_mod.load_catalog()
    for problem in catalog.problems:
        print(f"warning: {problem}", file=sys.stderr)
    try:
        current = profiles_mod.current_selection(FragmentStore(config.nixos_dir))
    except HyperconsoleError:
        current = None
    print("Profiles:")
    for name in sorted(catalog.profiles):
        mark = "*" if current and current.profile == name else " "
        print(f" {mark} {name:<12} {catalog.profiles[name].summary}")
    print("Toggles:")
    for name in sorted(catalog.toggles):
        mark = "*" if current and name in current.toggles else " "
        print(f" {mark} {name:<16} {catalog.toggles[name].summary}")
    if current:
        print(f"Applied: {current.profile}" + (f" + {', '.join(current.toggles)}" if current.toggles else ""))
    return 0


@guarded
def cmd_profile_show(args: argparse.Namespace, config: Config) -> int:
    catalog = profiles_mod.load_catalog()
    profile = catalog.profile(args.name)
    print(f"{profile.name}: {profile.summary}")
    print(f"console: libvirt {profile.libvirt_access}")
    print(f"source: {profile.source}")
    print()
    print(profiles_mod.render_profile_fragment(catalog, args.name, args.toggle or ()), end="")
    return 0


def ask_to_apply(args: argparse.Namespace) -> bool:
    """On a terminal (and without --yes) the operator confirms the diff just printed; False, with
    "nothing changed" said, when they do not."""
    if not _interactive() or args.yes:
        return True
    answer = _ask_within("Apply this change? [y/N] ", 3600)
    if (answer or "").lower() in ("y", "yes"):
        return True
    print("nothing changed")
    return False


def apply_changeset(args: argparse.Namespace, config: Config, submitter: Direct | Privileged,
                    change: requests.Change, changeset: ChangeSet, timeout: int) -> int:
    """Write and activate a change with confirm-or-revert (here as root, or through the request
    unit, which renders it again itself) and report the outcome: what `profile apply` and the
    `net` commands share once the operator has agreed."""
    _print_handover(submitter)
    outcome = submitter.apply(
        change, changeset, timeout=timeout, description=changeset.message.removeprefix("hyperconsole: "),
        rebuild=not args.no_rebuild, on_line=_print_line,
    )
    return _report_apply_outcome(args, config, outcome)


def _report_apply_outcome(args: argparse.Namespace, config: Config, outcome: ApplyOutcome) -> int:
    for warning in outcome.commit.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {', '.join(n + '.nix' for n in outcome.commit.written) or 'nothing'} (history: {outcome.commit.history})")
    if outcome.rebuild is None:
        print("not rebuilt (--no-rebuild); run `hyperconsole rebuild switch` to activate")
        return 0
    if outcome.reverted:
        _report_failure(outcome.rebuild)
        print(outcome.rolled_back, file=sys.stderr)
        return 1
    if not outcome.rebuild.ok:
        _report_failure(outcome.rebuild)
        return 1
    if outcome.pending is None:
        print(f"applied with {outcome.rebuild.action} in {outcome.rebuild.duration:.1f}s")
        return 0
    pending = outcome.pending
    print(f"trial configuration active; run `hyperconsole confirm` within {pending.timeout}s to keep it, "
          "otherwise it reverts by itself")
    if not _interactive():
        return 0
    answer = _ask_within(f"Keep this configuration? Type 'yes' within {pending.timeout}s: ", pending.remaining())
    if answer and answer.lower() in ("y", "yes"):
        return _confirm(args, config)
    print("not confirmed: the change will revert by itself when the timer runs out")
    return 0


@guarded
def cmd_profile_apply(args: argparse.Namespace, config: Config) -> int:
    submitter = make_submitter(args, config)
    change = requests.ProfileApply(args.name, tuple(args.toggle or ()))
    prepared = requests.prepare(change, FragmentStore(config.nixos_dir), requested_timeout=args.confirm_timeout,
                                configured_timeout=config.confirm_timeout)
    if prepared.changeset.is_empty:
        print(f"profile {args.name} with these toggles is already written; nothing to change")
        return 0
    if not _is_demo(args):  # the demo activates nothing, so it cannot lock anyone out
        guard.check_changeset(FragmentStore(config.nixos_dir), prepared.changeset)  # refuses a lock-out
    print(prepared.changeset.diff(), end="")
    if not ask_to_apply(args):
        return 1
    return apply_changeset(args, config, submitter, change, prepared.changeset, prepared.timeout)


# -- rebuild / confirm / generations / rollback --------------------------------------------------


@guarded
def cmd_rebuild(args: argparse.Namespace, config: Config) -> int:
    result = make_controller(args, config).rebuild(args.action, on_line=_print_line)
    if not result.ok:
        _report_failure(result)
        return 1
    print(f"{args.action} succeeded in {result.duration:.1f}s")
    return 0


def _confirm(args: argparse.Namespace, config: Config) -> int:
    submitter = make_submitter(args, config)
    _print_handover(submitter)
    result = submitter.confirm(on_line=_print_line)
    if not result.ok:
        _report_failure(result)
        print("the trial configuration stays active but is not permanent; fix and run `hyperconsole rebuild switch`", file=sys.stderr)
        return 1
    print(f"confirmed: switched in {result.duration:.1f}s")
    return 0


@guarded
def cmd_confirm(args: argparse.Namespace, config: Config) -> int:
    return _confirm(args, config)


@guarded
def cmd_revert(args: argparse.Namespace, config: Config) -> int:
    submitter = make_submitter(args, config)
    _print_handover(submitter)
    outcome = submitter.revert_now(reason="reverted by the operator", on_line=_print_line)
    if outcome is None:
        raise NoPendingChange("nothing is waiting for confirmation")
    if outcome.warning:
        print(f"warning: {outcome.warning}", file=sys.stderr)
    print(f"reverted: restored {', '.join(n + '.nix' for n in outcome.restored) or 'no files'}")
    if outcome.result is not None and not outcome.result.ok:
        _report_failure(outcome.result)
        return 1
    return 0


def _profiles_dirs(args: argparse.Namespace, config: Config) -> tuple[Path, Path]:
    if config.target_host:
        raise HyperconsoleError(f"the generations of {config.host_name or config.target_host} are on that machine",
                                hint=f"run it there: ssh {config.target_host} hyperconsole generations")
    if _is_demo(args):
        return demo.demo_profiles_dir(), demo.demo_booted_link()
    from hyperconsole.nixos.rebuild import BOOTED_SYSTEM, SYSTEM_PROFILES

    return SYSTEM_PROFILES, BOOTED_SYSTEM


@guarded
def cmd_generations(args: argparse.Namespace, config: Config) -> int:
    profiles_dir, booted = _profiles_dirs(args, config)
    generations = list_generations(profiles_dir, booted)
    if args.diff:
        a, b = (find_generation(generations, n) for n in args.diff)
        print(diff_generations(a, b), end="")
        return 0
    for gen in generations:
        flags = ", ".join(f for f, on in (("current", gen.current), ("booted", gen.booted)) if on)
        print(f"{gen.number:>5}  {gen.date.astimezone().strftime('%Y-%m-%d %H:%M:%S')}  {flags}".rstrip())
    if not generations:
        print("no generations")
    return 0


@guarded
def cmd_rollback(args: argparse.Namespace, config: Config) -> int:
    submitter = make_submitter(args, config)
    make_controller(args, config).refuse_if_pending()
    if args.generation is not None:
        profiles_dir, booted = _profiles_dirs(args, config)
        find_generation(list_generations(profiles_dir, booted), args.generation)
    _print_handover(submitter)
    for result in submitter.rollback(args.generation, on_line=_print_line):
        if not result.ok:
            _report_failure(result)
            return 1
    print("rolled back" + (f" to generation {args.generation}" if args.generation is not None else ""))
    # A rollback changes the running system, not the configuration files.
    print("note: the fragment files are unchanged; the next rebuild applies them again")
    return 0


# -- nixos status -------------------------------------------------------------------------------


@guarded
def cmd_nixos_status(args: argparse.Namespace, config: Config) -> int:
    nixos_dir = Path(config.nixos_dir)
    if not nixos_dir.is_dir():
        raise HyperconsoleError(f"NixOS directory {nixos_dir} does not exist", hint="use --nixos-dir")
    store = FragmentStore(nixos_dir)
    print(f"NixOS dir: {nixos_dir}{' (demo)' if _is_demo(args) else ''}")
    print(f"rebuild command: {config.rebuild_command}")
    print(f"revert command: {config.revert_command}")
    names = store.names()
    print(f"fragments ({store.dir}): {', '.join(names) if names else 'none'}")
    try:
        selection = profiles_mod.current_selection(store)
    except HyperconsoleError:
        selection = None
    if selection:
        print(f"security profile: {selection.profile}" + (f" + {', '.join(selection.toggles)}" if selection.toggles else ""))
    controller = make_controller(args, config)
    pending = controller.pending()
    if pending:
        print(f"PENDING: {pending.description} ({pending.state}); reverts in {pending.remaining():.0f}s unless `hyperconsole confirm`")
    last = controller.last_revert()
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.get("reverted_at", 0)))
        print(f"last revert: {last.get('description')} at {when} ({last.get('reason')})")
        if last.get("warning"):
            print(f"  warning: {last['warning']}")
    found = False
    for path in (nixos_dir / "configuration.nix", nixos_dir / "flake.nix"):
        if path.is_file():
            imported = imports_fragments(path.read_text(encoding="utf-8", errors="replace"))
            found = found or imported
            print(f"{path.name}: {'imports ./hyperconsole' if imported else 'does NOT import ./hyperconsole'}")
    if found:
        return 0
    if not args.add_import:
        print("the fragments are not used until the configuration imports them; run "
              "`hyperconsole nixos status --add-import` to add `./hyperconsole` to configuration.nix")
        return 0
    diff, checked = add_fragments_import(nixos_dir, store)
    print(diff, end="")
    print(f"added ./hyperconsole to configuration.nix imports ({checked})")
    return 0


# -- registration -------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    profile = subparsers.add_parser("profile", help="security profiles", parents=[common])
    profile_sub = profile.add_subparsers(dest="profile_command", required=True, metavar="{list,show,apply}")
    p = profile_sub.add_parser("list", help="list profiles and toggles", parents=[common])
    p.set_defaults(func=cmd_profile_list)
    p = profile_sub.add_parser("show", help="show a profile and the fragment it writes", parents=[common])
    p.add_argument("name")
    p.add_argument("--toggle", action="append", metavar="T", help="hardening toggle (repeatable)")
    p.set_defaults(func=cmd_profile_show)
    p = profile_sub.add_parser("apply", help="write a profile's fragment and rebuild with confirm-or-revert", parents=[common])
    p.add_argument("name")
    p.add_argument("--toggle", action="append", metavar="T", help="hardening toggle (repeatable)")
    p.add_argument("--no-rebuild", action="store_true", help="only write the fragment")
    p.add_argument("--confirm-timeout", type=confirm_timeout_arg, metavar="N",
                   help="seconds to confirm before it reverts (0: switch directly; default from config, 120)")
    p.add_argument("--yes", action="store_true", help="do not ask before applying (the diff is still shown)")
    p.set_defaults(func=cmd_profile_apply)

    p = subparsers.add_parser("rebuild", help="run the rebuild command", parents=[common])
    p.add_argument("action", choices=ACTIONS)
    p.set_defaults(func=cmd_rebuild)
    p = subparsers.add_parser("confirm", help="keep the trial configuration (switch) and cancel the revert", parents=[common])
    p.set_defaults(func=cmd_confirm)
    p = subparsers.add_parser("revert", help="revert the trial configuration now", parents=[common])
    p.set_defaults(func=cmd_revert)
    p = subparsers.add_parser("generations", help="list system generations", parents=[common])
    p.add_argument("--diff", nargs=2, type=int, metavar=("A", "B"), help="diff two generations")
    p.set_defaults(func=cmd_generations)
    p = subparsers.add_parser("rollback", help="roll back to the previous (or a given) generation", parents=[common])
    p.add_argument("generation", nargs="?", type=int, metavar="GEN")
    p.set_defaults(func=cmd_rollback)
    nixos = subparsers.add_parser("nixos", help="NixOS integration", parents=[common])
    nixos_sub = nixos.add_subparsers(dest="nixos_command", required=True, metavar="{status}")
    p = nixos_sub.add_parser("status", help="fragments, pending change, whether the config imports them", parents=[common])
    p.add_argument("--add-import", action="store_true", help="add ./hyperconsole to configuration.nix imports")
    p.set_defaults(func=cmd_nixos_status)
