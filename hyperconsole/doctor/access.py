"""Who is running the console and what that lets them do, in words: the groups that matter
(the operators group the polkit rule names, libvirt's own group), polkit's answer where pkcheck is
installed, and why a "permission denied" happens."""

from __future__ import annotations

import grp
import os

from hyperconsole.doctor.model import Check, Context, Outcome, fail, ok, warn

OPERATORS_GROUP = "hyperconsole-operators"  # nix/module.nix's default operatorsGroup
LIBVIRT_GROUPS = ("libvirtd", "libvirt")  # NixOS's and Debian's: their members may manage libvirt
LIBVIRT_ACTION = "org.libvirt.unix.manage"


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def add_to_group(user: str, group: str) -> str:
    return f'ask an admin to add you: users.users.{user}.extraGroups = [ "{group}" ];'


def polkit_allows(ctx: Context, action: str = LIBVIRT_ACTION) -> bool | None:
    """polkit's answer for this process (pkcheck, no interaction): True (0, or 2: after
    authenticating), False (1: not authorised); None without pkcheck or when polkit cannot be
    asked (its other exit codes: no polkitd, an error)."""
    if not ctx.which("pkcheck"):
        return None
    done = ctx.command(["pkcheck", "--action-id", action, "--process", str(os.getpid())], timeout=5.0)
    return {0: True, 2: True, 1: False}.get(done.returncode)


def explain_no_write(ctx: Context) -> str:
    """Why libvirt answers "permission denied" to this user, as one sentence with what to do."""
    if ctx.root:
        return "root is refused write access: libvirtd's own access control (access_drivers) restricts it"
    if not group_exists(OPERATORS_GROUP):
        return (f"{ctx.user} is neither root nor in a group libvirt lets manage VMs, and the group "
                f"{OPERATORS_GROUP} does not exist here (the headless profile creates it with its polkit rule)")
    return (f"you are not in {OPERATORS_GROUP} (the group the polkit rule lets manage libvirt); "
            + add_to_group(ctx.user, OPERATORS_GROUP))


def user_access(ctx: Context) -> Outcome:
    if ctx.root:
        return ok("running as root: every check and action is available")
    groups = ctx.groups()
    member = sorted(groups & {OPERATORS_GROUP, *LIBVIRT_GROUPS})
    allowed = polkit_allows(ctx)
    shown = f"{ctx.user} (groups: {', '.join(sorted(groups))})"
    if allowed is False and not set(member) & set(LIBVIRT_GROUPS):
        return fail(f"{shown}: polkit refuses {LIBVIRT_ACTION}, so libvirt opens read-only; " + explain_no_write(ctx))
    if member:
        how = "polkit says yes" if allowed else "by group membership"
        return ok(f"{shown}: may manage libvirt ({how}: {', '.join(member)}); host changes need root or the "
                  "hyperconsole root units")
    return warn(f"{shown}: not in {OPERATORS_GROUP}: VMs are read-only and host changes are refused",
                add_to_group(ctx.user, OPERATORS_GROUP))


def host_changes(ctx: Context) -> Outcome:
    """How this user's host changes (network, profile, trials) are carried out: by this process
    (root, or a NixOS dir it may write), through the root request unit the NixOS module installs
    (members of its group), or not at all: the choice `changes.submit.submitter_for` makes."""
    from hyperconsole.changes import submit

    submitter = submit.submitter_for(ctx.config)
    if submitter.unavailable:
        return fail(submitter.unavailable, "enable programs.hyperconsole in the NixOS configuration, or run as root")
    marker = getattr(submitter, "marker", None)
    if marker is None:
        who = "root" if ctx.root else f"{ctx.user} may write {ctx.config.nixos_dir}"
        return ok(f"{who}: host changes are applied directly (rebuild with confirm-or-revert)")
    if marker.group in ctx.groups():
        return ok(f"host changes go to the root unit {marker.unit}<id>.service (you are in {marker.group}; "
                  "it re-checks each request against the profile)")
    return fail(f"host changes are refused: you are not in {marker.group}, the group the request unit serves",
                add_to_group(ctx.user, marker.group))


CHECKS = (
    Check("access.user", "your groups and polkit rights", user_access),
    Check("access.host-changes", "how your host changes are carried out (directly, the request unit, or not)",
          host_changes),
)
