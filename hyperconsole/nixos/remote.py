"""Host changes on another machine: `nixos-rebuild --target-host`, and a revert timer that runs
*on the target*.

The configuration is built here, from the host's own checkout (`hosts/<name>/`), and activated on
the target over ssh. A change that cuts the link (a firewall rule, a bridge over the uplink) must
still revert, so confirm-or-revert arms the revert where it has to happen:

1. before the trial's `test` runs, `ssh DEST systemd-run --on-active=T1 … -- <revert command>`
   arms a transient timer on the target, T1 covering the trial rebuild and the window;
2. once `test` has succeeded, a second timer is armed with T2 = the window + a grace (the first
   is left standing: if the second cannot be armed, the first still reverts, only later);
3. on confirm, both timers are stopped over ssh (`systemctl stop hyperconsole-revert-ID-*.timer`)
   *before* `switch` runs, so a revert can never fire in the middle of the switch; if the target
   cannot be reached to stop them, the switch cannot reach it either, and the timers revert the
   trial as if it had not been confirmed;
4. on revert (the window ran out here, or the operator asked), the revert command is run over
   ssh and the timers are stopped; if the target cannot be reached, its own timer reverts it.

The revert command is the local one's (`switch-to-configuration test` of the system profile):
`nixos-rebuild test` does not move the profile, so re-activating the profile undoes the trial,
and running it twice (here over ssh, then by a timer that could not be stopped) is harmless.
The local timer's grace means that with a working link the console reverts first and says so.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from hyperconsole import names

REVERT_UNIT_PREFIX = "hyperconsole-revert-"
REMOTE_GRACE = 15  # seconds the target's timer waits beyond the console's own deadline
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=5",
               "-o", "ServerAliveCountMax=3")


@dataclass(frozen=True)
class TargetHost:
    """Where a host's changes are activated: an ssh destination, how to reach it, and whether
    activation goes through sudo there."""

    dest: str
    use_remote_sudo: bool = False
    ssh_command: str = "ssh"  # the program (and options) to reach it, e.g. "ssh -p 2222 -i KEY"
    ssh_options: tuple[str, ...] = field(default=SSH_OPTIONS)

    def __post_init__(self) -> None:
        names.ssh_destination(self.dest)

    def _ssh(self) -> list[str]:
        from hyperconsole.nixos.rebuild import split_command

        return split_command(self.ssh_command, "ssh command")

    def rebuild_argv(self, argv: list[str], command_length: int) -> list[str]:
        """A rebuild command line with `--target-host` (and `--use-remote-sudo`) after the
        command itself; the ssh options go to nixos-rebuild's own ssh through NIX_SSHOPTS."""
        flags = ["--target-host", self.dest] + (["--use-remote-sudo"] if self.use_remote_sudo else [])
        argv = argv[:command_length] + flags + argv[command_length:]
        options = self._ssh()[1:] + list(self.ssh_options)
        return ["env", f"NIX_SSHOPTS={shlex.join(options)}", *argv] if options else argv

    def over_ssh(self, remote_argv: list[str], *, root: bool = True) -> list[str]:
        """Run argv on the target: the remote shell gets it quoted word by word."""
        prefix = ["sudo", "-n"] if root and self.use_remote_sudo else []
        return [*self._ssh(), *self.ssh_options, "--", self.dest, shlex.join(prefix + list(remote_argv))]

    def arm_argv(self, change_id: str, step: int, seconds: int, revert_argv: list[str], description: str) -> list[str]:
        """A transient timer on the target that runs the revert command after `seconds`."""
        return self.over_ssh([
            "systemd-run", f"--unit={REVERT_UNIT_PREFIX}{change_id}-{step}", f"--on-active={int(seconds)}s",
            "--timer-property=AccuracySec=1s", "--collect", f"--description=hyperconsole: revert {description[:80]}",
            "--", *revert_argv,
        ])

    def disarm_argv(self, change_id: str) -> list[str]:
        """Stop every revert timer of this change on the target (a pattern: none left is fine)."""
        return self.over_ssh(["systemctl", "stop", f"{REVERT_UNIT_PREFIX}{change_id}-*.timer"])
