"""The lock-out guard: refuse a host change after which the operator could no longer log in.

It looks at what sshd will allow once every fragment of the change is in place (the fragments on
disk with the change's new texts over them; NixOS's defaults where they say nothing:
PermitRootLogin "prohibit-password", PasswordAuthentication true) and at who is asking:

- over SSH, the session's own login user (the one `sudo` came from, else this process's user)
  must still be able to log in: root needs PermitRootLogin other than "no" and, unless it is
  "yes" with passwords on, a key; another user a key or password logins;
- with root login off or passwords off, the admin user the setup wizard declares must have a key;
- sshd switched off while the operator is connected over SSH.

Keys count from the change (`users.users.<u>.openssh.authorizedKeys.keys`/`keyFiles`) and from
the host as it is (`~u/.ssh/authorized_keys`, `/etc/ssh/authorized_keys.d/u`), which sshd reads
too. Each refusal is one line. The network cases (a gateway off the subnet, a VLAN on a NIC
without carrier) are refused by the setup validation and netconfig before a change exists.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos.render import parse
from hyperconsole.nixos.store import ChangeSet, FragmentStore

ADMIN_FRAGMENT = "identity"  # the setup wizard records its admin user in this fragment's header
KEY_ROOT_LOGIN = ("prohibit-password", "without-password", "forced-commands-only")


def _count_keys(path: Path) -> int:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def live_key_count(user: str) -> int:
    """Keys sshd would accept for `user` from files on the host now."""
    count = _count_keys(Path("/etc/ssh/authorized_keys.d") / user)
    try:
        home = Path(pwd.getpwnam(user).pw_dir)
    except KeyError:
        return count
    return count + _count_keys(home / ".ssh" / "authorized_keys")


@dataclass(frozen=True)
class Session:
    """Who is asking: the login user of the SSH session (None when not over SSH)."""

    ssh_user: str | None
    live_keys: Mapping[str, int] = field(default_factory=dict)  # user -> keys found on the host

    @property
    def over_ssh(self) -> bool:
        return self.ssh_user is not None

    def keys_on_host(self, user: str) -> int:
        return self.live_keys.get(user, 0)


def current_session(environ: Mapping[str, str] | None = None, users: tuple[str, ...] = ()) -> Session:
    """This process's session: over SSH when SSH_CONNECTION is set; its login user is SUDO_USER
    when sudo was used, else the process's own user. Host keys are read for it, root and `users`."""
    env = os.environ if environ is None else environ
    if len(env.get("SSH_CONNECTION", "").split()) != 4:
        user = None
    else:
        user = env.get("SUDO_USER") or _process_user()
    wanted = {"root", *users, *([user] if user else [])}
    return Session(user, {name: live_key_count(name) for name in sorted(wanted)})


def _process_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _get(tree: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _merge(base: dict, overlay: Mapping) -> dict:
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif isinstance(value, Mapping):
            base[key] = _merge({}, value)
        elif isinstance(value, list) and isinstance(base.get(key), list):
            base[key] = base[key] + value
        else:
            base[key] = value
    return base


def merged_options(trees: Mapping[str, Any]) -> dict:
    """Every fragment's options in one tree, as NixOS merges them for the options read here."""
    merged: dict = {}
    for name in sorted(trees):
        if isinstance(trees[name], Mapping):
            _merge(merged, trees[name])
    return merged


def trees_after(store: FragmentStore, changeset: ChangeSet) -> dict[str, Any]:
    """Every fragment's option tree once `changeset` is written."""
    trees: dict[str, Any] = {}
    for name in store.names():
        try:
            trees[name] = store.read(name).value()
        except HyperconsoleError:
            continue  # a fragment we cannot read cannot be reasoned about; the rebuild will say
    for change in changeset.changes:
        trees[change.name] = parse(change.new_text) if change.new_text is not None else None
    return {k: v for k, v in trees.items() if v is not None}


@dataclass(frozen=True)
class SshAccess:
    enabled: bool | None  # None: the fragments do not say
    root_login: str
    passwords: bool
    config_keys: Mapping[str, int]

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> "SshAccess":
        settings = _get(options, "services", "openssh", "settings") or {}
        keys: dict[str, int] = {}
        for user, body in (_get(options, "users", "users") or {}).items():
            ssh = _get(body, "openssh", "authorizedKeys") or {}
            keys[user] = len(ssh.get("keys") or []) + len(ssh.get("keyFiles") or [])
        root_login = settings.get("PermitRootLogin", "prohibit-password")
        passwords = settings.get("PasswordAuthentication", True)
        return cls(_get(options, "services", "openssh", "enable"), str(root_login), passwords is not False, keys)

    def keys(self, user: str, session: Session) -> int:
        return self.config_keys.get(user, 0) + session.keys_on_host(user)

    def why_not(self, user: str, session: Session) -> str | None:
        """Why `user` could not log in over SSH after the change; None when they can."""
        has_keys = self.keys(user, session) > 0
        if user == "root":
            if self.root_login == "no":
                return 'PermitRootLogin becomes "no"'
            if self.root_login in KEY_ROOT_LOGIN and not has_keys:
                return f'PermitRootLogin is "{self.root_login}" and root has no SSH key'
            if self.root_login == "yes" and not has_keys and not self.passwords:
                return "password logins go off and root has no SSH key"
            return None
        if not has_keys and not self.passwords:
            return f"password logins go off and {user} has no SSH key"
        return None


def check(options: Mapping[str, Any], session: Session, *, admin: str | None = None,
          handover: bool = False) -> None:
    """Raise ValidationError (one line) when `options` (every fragment merged) would lock the
    operator out.

    `handover`: the change is kept only by `hyperconsole confirm` from a new SSH login (the setup
    wizard), so the session's user may lose SSH access when the admin user gets a key: the new
    login is the admin's, and if it fails nothing confirms and the trial reverts by itself."""
    access = SshAccess.of(options)
    if session.over_ssh and access.enabled is False:
        raise ValidationError(f"refused: you are connected over SSH as {session.ssh_user} and this change "
                              "turns the SSH server off; nothing was changed")
    if session.over_ssh:
        reason = access.why_not(session.ssh_user, session)
        if handover and admin and access.why_not(admin, session) is None and access.config_keys.get(admin, 0):
            reason = None
        if reason is not None:
            raise ValidationError(f"refused: you are logged in over SSH as {session.ssh_user} and after this "
                                  f"change {session.ssh_user} could not log in ({reason}); nothing was changed",
                                  hint="add an SSH key for an admin user first (hyperconsole setup), then apply")
    if admin and (access.root_login == "no" or not access.passwords) and access.config_keys.get(admin, 0) == 0:
        what = 'root login is off' if access.root_login == "no" else "password logins are off"
        raise ValidationError(f"refused: {what} and the admin user {admin} has no SSH key; nobody could log in "
                              "over SSH", hint="give the admin user at least one SSH public key")


def check_changeset(store: FragmentStore, changeset: ChangeSet, session: Session | None = None,
                    *, admin: str | None = None) -> None:
    """The guard for a prepared change against the fragments on disk (`profile apply`, the
    Security pane). The admin is the one the setup wizard recorded, unless given. Reads files:
    call it off the UI thread."""
    options = merged_options(trees_after(store, changeset))
    if admin is None:
        try:
            admin = store.read(ADMIN_FRAGMENT).meta().get("admin")
        except HyperconsoleError:
            admin = None
    if session is None:
        users = tuple(_get(options, "users", "users") or ())
        session = current_session(users=users)
    check(options, session, admin=admin)
