"""Checks of the NixOS side: the configuration imports the fragments, the running system was built
from them (drift), a change on trial, SSH and firewall settings in force against the fragments."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from hyperconsole.config import Config
from hyperconsole.doctor.model import Check, Context, Fix, Outcome, fail, ok, skip, warn
from hyperconsole.errors import HyperconsoleError


def _store(ctx: Context):
    from hyperconsole.nixos.store import FragmentStore

    return FragmentStore(ctx.config.nixos_dir)


def _add_import(_target: Any, config: Config) -> str:
    from hyperconsole.nixos.imports import add_fragments_import
    from hyperconsole.nixos.store import FragmentStore

    _diff, checked = add_fragments_import(Path(config.nixos_dir), FragmentStore(config.nixos_dir))
    return f"added ./hyperconsole to configuration.nix imports ({checked}); a rebuild applies it"


ADD_IMPORT = Fix("add ./hyperconsole to configuration.nix", "configuration.nix (its imports list; checked with "
                 "nix-instantiate first, as `nixos status --add-import` does)", _add_import)


def os_release(ctx: Context) -> dict[str, str]:
    """The fields of the context's /etc/os-release, unquoted; raises OSError."""
    text = (ctx.etc / "os-release").read_text(encoding="utf-8", errors="replace")
    return {key: value.strip().strip('"\'') for key, _, value in
            (line.partition("=") for line in text.splitlines() if "=" in line)}


def version(ctx: Context) -> Outcome:
    try:
        fields = os_release(ctx)
    except OSError as exc:
        return fail(f"cannot read {ctx.etc / 'os-release'}: {exc.strerror}: cannot tell whether this is NixOS")
    if fields.get("ID") != "nixos":
        return fail(f"this is {fields.get('PRETTY_NAME') or fields.get('ID') or 'not NixOS'}, not NixOS: "
                    "the fragments hyperconsole writes take effect only on NixOS", "install NixOS on this host")
    codename = f" ({fields['VERSION_CODENAME']})" if fields.get("VERSION_CODENAME") else ""
    return ok(f"NixOS {fields.get('VERSION_ID', '?')}{codename}")


def imports(ctx: Context) -> Outcome:
    from hyperconsole.nixos.imports import importing_files

    nixos_dir = Path(ctx.config.nixos_dir)
    if not nixos_dir.is_dir():
        return skip(f"no NixOS configuration directory at {nixos_dir}")
    found = importing_files(nixos_dir)
    if any(found.values()):
        return ok(f"{', '.join(n for n, yes in found.items() if yes)} imports ./hyperconsole")
    if not found:
        return warn(f"neither configuration.nix nor flake.nix in {nixos_dir}: cannot tell whether the fragments are used",
                    "with a flake elsewhere, add ./hyperconsole to the host's modules")
    writable = "configuration.nix" in found and _writable(nixos_dir / "configuration.nix")
    return fail(f"{', '.join(found)} does not import ./hyperconsole: nothing hyperconsole writes takes effect",
                "f fixes it here; or `hyperconsole nixos status --add-import`",
                ADD_IMPORT if writable else None)


def _writable(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def drift(ctx: Context) -> Outcome:
    """Drift between the fragments on disk and the running system. default.nix records the hash of
    every fragment it imports in the system it builds (store.APPLIED_ETC, under the system's etc),
    so: the running system's record is read from <current-system>/etc/…, each fragment on disk is
    hashed now, and they are compared by name. A fragment whose hash differs or that the record
    lacks was changed but not applied; one the record has but the disk lacks was removed but is
    still in force; no record at all with fragments on disk means the running system was built
    without them (imports missing, or a rebuild from elsewhere)."""
    from hyperconsole.nixos.store import APPLIED_ETC, content_hash

    system = Path(ctx.config.current_system)
    if not system.exists():
        return skip(f"no running NixOS system at {system}")
    store = _store(ctx)
    on_disk = {}
    for name in store.names():
        text = store.read(name).text
        if text is not None:
            on_disk[name] = content_hash(text.encode("utf-8"))
    record_path = system / "etc" / APPLIED_ETC
    try:
        applied = json.loads(record_path.read_text())
    except FileNotFoundError:
        if not on_disk:
            return ok("no fragments written, none in force")
        return warn(f"the running system was built without hyperconsole's fragments ({', '.join(on_disk)} not in force)",
                    "see nixos.imports; then `hyperconsole rebuild switch` (or apply from pane 3/6)")
    except (OSError, ValueError) as exc:
        return fail(f"cannot read {record_path}: {exc}")
    changed = sorted(n for n in on_disk if n in applied and applied[n] != on_disk[n])
    new = sorted(n for n in on_disk if n not in applied)
    removed = sorted(n for n in applied if n not in on_disk)
    parts = [f"changed: {', '.join(changed)}" if changed else "", f"not yet applied: {', '.join(new)}" if new else "",
             f"removed but still in force: {', '.join(removed)}" if removed else ""]
    if any(parts):
        return warn("fragments differ from the running system (" + "; ".join(p for p in parts if p) + ")",
                    "`hyperconsole rebuild switch` applies them (a change on trial is compared as it runs)")
    return ok(f"the running system was built from the fragments on disk ({len(on_disk)})")


def trial(ctx: Context) -> Outcome:
    from hyperconsole.nixos.rebuild import pid_alive
    from hyperconsole.nixos.revert import controller_for

    if not Path(ctx.config.nixos_dir).is_dir():
        return skip(f"no NixOS configuration directory at {ctx.config.nixos_dir}")
    pending = controller_for(ctx.config).pending()
    if pending is None:
        return ok("no host change on trial")
    if pending.trial_pid and not pid_alive(pending.trial_pid):
        return fail(f"{pending.description}: its trial process has ended without finishing it",
                    "`hyperconsole revert` reverts it; `hyperconsole confirm` keeps it")
    if pending.state == "armed":
        return warn(f"{pending.description}: on trial, reverts by itself in {pending.remaining():.0f} s unless kept",
                    "keep it: 6 then k (or `hyperconsole confirm`); revert: 6 then u")
    return warn(f"{pending.description}: {pending.state}", "wait for it, or `hyperconsole nixos status`")


def _fragment_value(ctx: Context, name: str) -> dict:
    value = _store(ctx).read(name).value()
    return value if isinstance(value, dict) else {}


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _sshd_word(value: Any) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value).lower()


def ssh_settings(ctx: Context) -> Outcome:
    from hyperconsole import profiles

    selection = profiles.current_selection(_store(ctx))
    if selection is None:
        return skip("no security profile applied (pane 6 applies one)")
    wanted = _get(_fragment_value(ctx, profiles.FRAGMENT_NAME), "services", "openssh", "settings") or {}
    if not wanted:
        return skip(f"profile {selection.profile} sets no SSH settings")
    sshd = ctx.which("sshd")
    if sshd is None:
        return skip("no sshd on PATH: SSH settings in force cannot be read")
    done = ctx.command([sshd, "-T"])
    if done.returncode != 0:
        return fail(f"sshd -T: {(done.stderr.strip().splitlines() or [f'exit {done.returncode}'])[-1]}",
                    "sshd's configuration does not load; the running daemon may differ from it")
    in_force = dict((line.split(" ", 1) + [""])[:2] for line in done.stdout.lower().splitlines() if line.strip())
    differ = [f"{key} is {in_force.get(key.lower(), 'unset')}, profile wants {_sshd_word(value)}"
              for key, value in sorted(wanted.items())
              if isinstance(value, (bool, str, int)) and in_force.get(key.lower()) != _sshd_word(value)]
    if differ:
        return fail(f"SSH settings differ from profile {selection.profile}: " + "; ".join(differ),
                    "the profile is written but not in force: see nixos.drift, then rebuild")
    return ok(f"SSH settings in force match profile {selection.profile} ({len(wanted)} checked)")


def open_ports(ctx: Context) -> set[tuple[int, str]]:
    """(port, tcp|udp) every fragment opens: networking.firewall.allowed{TCP,UDP}Ports, globally and
    per interface."""
    from hyperconsole.nixos.store import FragmentStore

    store = FragmentStore(ctx.config.nixos_dir)
    found: set[tuple[int, str]] = set()
    for name in store.names():
        firewall = _get(store.read(name).value(), "networking", "firewall")
        if not isinstance(firewall, dict):
            continue
        scopes = [firewall, *[v for v in (firewall.get("interfaces") or {}).values() if isinstance(v, dict)]]
        for scope in scopes:
            for proto in ("tcp", "udp"):
                for port in scope.get(f"allowed{proto.upper()}Ports") or ():
                    if isinstance(port, int):
                        found.add((port, proto))
    return found


def listening() -> set[tuple[int, str]]:
    """(port, tcp|udp) of sockets listening on an address other clients can reach (not loopback)."""
    import ipaddress

    import psutil

    found = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.type == socket.SOCK_STREAM and conn.status != psutil.CONN_LISTEN:
            continue
        if conn.type == socket.SOCK_DGRAM and conn.raddr:
            continue
        if not conn.laddr:
            continue
        try:
            if ipaddress.ip_address(conn.laddr.ip.split("%")[0]).is_loopback:
                continue
        except ValueError:
            pass
        found.add((conn.laddr.port, "tcp" if conn.type == socket.SOCK_STREAM else "udp"))
    return found


def firewall(ctx: Context) -> Outcome:
    if not Path(ctx.config.nixos_dir).is_dir():
        return skip(f"no NixOS configuration directory at {ctx.config.nixos_dir}")
    opened = open_ports(ctx)
    if not opened:
        return ok("hyperconsole's fragments open no firewall ports")
    try:
        listen = listening()
    except (OSError, HyperconsoleError) as exc:
        return skip(f"cannot list listening sockets: {exc}")
    idle = sorted(opened - listen)
    shown = ", ".join(f"{p}/{proto}" for p, proto in sorted(opened))
    if idle:
        return warn(f"open in the firewall but nothing listens: {', '.join(f'{p}/{proto}' for p, proto in idle)}",
                    "close the port (f in pane 3) or start the service that should answer on it",
                    detail=f"opened by the fragments: {shown}")
    return ok(f"every port the fragments open has a listener ({shown})")


CHECKS = (
    Check("nixos.version", "this host runs NixOS, and which release", version),
    Check("nixos.imports", "the host configuration imports hyperconsole's fragments", imports),
    Check("nixos.drift", "the running system was built from the fragments on disk", drift),
    Check("nixos.trial", "a host change on trial (confirm-or-revert) and its time left", trial),
    Check("nixos.ssh", "SSH settings in force (sshd -T) against the security profile", ssh_settings,
          needs_root="sshd -T reads the host keys"),
    Check("nixos.firewall", "firewall ports the fragments open against sockets listening", firewall),
)
