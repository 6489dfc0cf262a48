"""Applying a setup plan: the fragments import, a dry-build, then activation on trial.

1. The password hash goes to its root-only file (hashedPasswordFile); a first backup job's
   password file (0600, random) and restic repository are created when asked and missing.
2. When the configuration does not import the fragments yet (and the answers allow it), the
   import is added to configuration.nix (nixos/imports.py: checked by nix-instantiate first);
   a failed dry-build takes it out again.
3. dry-build: the fragments are written, the rebuild command evaluates and builds the system
   without activating it, and the files are put back as they were, pass or fail. A failure ends
   here: nothing was activated and the fragment files are unchanged.
4. The same change goes through ConfirmOrRevert.apply: `test` on trial, reverted by itself unless
   `hyperconsole confirm` keeps it (over SSH, from a new login: the proof the host is reachable).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hyperconsole import safefs
from hyperconsole.errors import HyperconsoleError
from hyperconsole.nixos.imports import add_fragments_import, importing_files
from hyperconsole.nixos.rebuild import RebuildLine, RebuildResult
from hyperconsole.nixos.revert import ApplyOutcome, ConfirmOrRevert
from hyperconsole.setup.fragments import Plan
from hyperconsole.setup.secrets import write_password_file

DESCRIPTION = "setup wizard"


class DryBuildFailed(HyperconsoleError):
    """The dry-build refused the fragments; nothing was activated, the files are as before."""

    def __init__(self, result: RebuildResult) -> None:
        super().__init__(f"dry-build {result.status}: nothing was activated and the fragment files are as before",
                         hint=f"log {result.log_path}" if result.log_path else None)
        self.result = result


@dataclass(frozen=True)
class SetupOutcome:
    import_added: str | None  # how the import was checked, when it was added
    dry_build: RebuildResult
    apply: ApplyOutcome


def configuration_imports(nixos_dir: Path) -> bool | None:
    """Whether configuration.nix or flake.nix import ./hyperconsole (None: neither exists)."""
    found = importing_files(nixos_dir)
    return any(found.values()) if found else None


def confirm_command(nixos_dir: Path, *, demo: bool = False) -> str:
    """The exact command that keeps the trial, as the operator types it in a new session."""
    if demo:
        return "hyperconsole confirm --demo"
    return "hyperconsole confirm" + ("" if str(nixos_dir) == "/etc/nixos" else f" --nixos-dir {nixos_dir}")


def create_repository(job) -> None:
    """The first backup job's password file (0600, random) when missing, and its restic repository
    when there is none: as `backup job add --create-password --init` makes them."""
    from hyperconsole.backup import restic, runner

    if not os.path.exists(job.password_file):
        restic.create_password_file(job.password_file)
    repo = runner.repository(job)
    if not repo.exists():
        repo.init()


def apply(plan: Plan, controller: ConfirmOrRevert, *, timeout: int, add_import: bool = True,
          on_line: Callable[[RebuildLine], None] | None = None) -> SetupOutcome:
    store = controller.store
    controller.refuse_if_pending()
    if plan.trial_required and timeout <= 0:
        raise HyperconsoleError("this change reaches the network and SSH: it must be activated on trial",
                                hint="use a confirm timeout above 0")
    if plan.changeset.is_empty:
        raise HyperconsoleError("the fragments already say this; nothing to apply")
    if plan.password is not None:
        path, crypt_text = plan.password
        try:
            write_password_file(path.parent, path.stem, crypt_text)
        except OSError as exc:
            raise HyperconsoleError(f"cannot write the password hash to {path}: {exc.strerror or exc}; nothing "
                                    "else was changed", hint="run setup as root, or --secrets-dir DIR") from None
    if plan.backup_job is not None:
        create_repository(plan.backup_job)
    added, configuration = None, store.nixos_dir / "configuration.nix"
    before = safefs.read_bytes(configuration)
    flake = (store.nixos_dir / "flake.nix").exists()  # never edited: the operator adds the module
    if add_import and not flake and configuration_imports(store.nixos_dir) is False:
        _, added = add_fragments_import(store.nixos_dir, store)
    undo = plan.changeset.previous_texts()
    try:
        store.commit(plan.changeset)
        try:
            dry = controller.runner.run("dry-build", on_line=on_line)
        finally:
            store.commit(store.prepare_texts(undo, message="hyperconsole: setup wizard (after dry-build)"),
                         check_hashes=False)
        if not dry.ok:
            raise DryBuildFailed(dry)
    except BaseException:
        if added is not None and before is not None:  # the import goes too: nothing stays changed
            safefs.atomic_write(configuration, before, mode=stat.S_IMODE(os.lstat(configuration).st_mode))
        raise
    outcome = controller.apply(plan.changeset, timeout=timeout, description=DESCRIPTION, on_line=on_line)
    return SetupOutcome(added, dry, outcome)
