"""Every answer checked against this host before anything is written: one line per bad answer,
`<where>: at $.step.key: problem`, the same sentence the TUI shows under the field.

What the checks need from the host is read once into HostFacts (gather_facts); tests build a
HostFacts from real data they choose. Names, addresses, MTU and VLAN ids go through names.py and
host/netconfig.py, so a mistake reads the same here as in the Networks pane.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import tempfile
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from hyperconsole import names, profiles
from hyperconsole.errors import ValidationError
from hyperconsole.host import netconfig
from hyperconsole.host.interfaces import InterfaceInfo, Uplink
from hyperconsole.setup import answers as A
from hyperconsole.setup.guard import Session
from hyperconsole.setup.secrets import check_hash

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,30}\Z")
RESERVED_USERS = frozenset({"root", "nobody", "daemon", "bin", "sshd", "messagebus", "systemd-network", "nixbld"})
ZONEINFO = Path("/usr/share/zoneinfo")


@dataclass(frozen=True)
class HostFacts:
    """What validation reads from the host. `interfaces` None: they could not be read."""

    interfaces: tuple[InterfaceInfo, ...] | None = None
    uplink: Uplink = Uplink(known=False)
    timezones: frozenset[str] = frozenset()
    catalog: profiles.Catalog | None = None
    volume_groups: tuple[str, ...] | None = None  # None: LVM tools absent
    zfs_datasets: tuple[str, ...] | None = None
    nested_capable: bool | None = None  # the CPU's KVM module offers nested virtualisation
    cpu_vendor: str | None = None  # "intel" | "amd"
    session: Session = field(default_factory=lambda: Session(None))
    ssh_interface: str | None = None  # the interface the SSH session's traffic leaves by

    def interface(self, name: str) -> InterfaceInfo | None:
        return next((i for i in self.interfaces or () if i.name == name), None)


def timezones(root: Path = ZONEINFO) -> frozenset[str]:
    """Zone names of the zoneinfo database (posix/ and right/ copies left out)."""
    found = zoneinfo.available_timezones() if root == ZONEINFO else _walk_zones(root)
    return frozenset(z for z in found if not z.startswith(("posix/", "right/")) and z not in ("localtime", "Factory"))


def _walk_zones(root: Path) -> set[str]:
    zones = set()
    for path in root.rglob("*"):
        if path.is_file() and path.read_bytes()[:4] == b"TZif":
            zones.add(str(path.relative_to(root)))
    return zones


def _lines(argv: list[str]) -> tuple[str, ...] | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return tuple(line.strip() for line in done.stdout.splitlines() if line.strip()) if done.returncode == 0 else ()


def nested_support(sys_module: Path = Path("/sys/module")) -> tuple[str | None, bool | None]:
    """(vendor, whether its KVM module can nest): read from kvm_intel/kvm_amd's `nested` parameter."""
    for vendor, module in (("intel", "kvm_intel"), ("amd", "kvm_amd")):
        param = sys_module / module / "parameters" / "nested"
        if param.exists():
            return vendor, True
    return None, None


def gather_facts(*, environ=None) -> HostFacts:
    """Read the host once (blocking: run it off the UI thread)."""
    import os

    from hyperconsole.host.interfaces import read_host, route_device
    from hyperconsole.setup.guard import current_session

    host = read_host(environ=environ)
    client = (environ if environ is not None else os.environ).get("SSH_CONNECTION", "").split()
    ssh_dev = route_device(client[0]) if len(client) == 4 and not host.error else None
    vendor, nested = nested_support()
    return HostFacts(
        interfaces=None if host.error else host.interfaces, uplink=host.uplink, timezones=timezones(),
        catalog=profiles.load_catalog(),
        volume_groups=_lines(["vgs", "--noheadings", "-o", "vg_name"]),
        zfs_datasets=_lines(["zfs", "list", "-H", "-o", "name"]),
        nested_capable=nested, cpu_vendor=vendor, session=current_session(environ), ssh_interface=ssh_dev,
    )


# -- single answers -------------------------------------------------------------------------------


def hostname(text: object) -> tuple[str, str | None]:
    """RFC 1123 host name, optionally with its domain: (host, domain or None). Each label 1-63
    letters, digits and '-', not starting or ending with '-'; no empty label (a dot at the start,
    the end or twice)."""
    if not isinstance(text, str) or not text:
        raise ValidationError("hostname is empty")
    if len(text) > 253:
        raise ValidationError("hostname is longer than 253 characters")
    labels = text.split(".")
    if any(not label for label in labels):
        raise ValidationError(f"hostname {text!r} has a dot at the start, at the end or twice in a row",
                              hint="e.g. hv1 or hv1.example.com")
    for label in labels:
        if not _LABEL.match(label):
            raise ValidationError(f"hostname {text!r}: {label!r} is not a valid label (letters, digits and '-', "
                                  "not at the start or end, at most 63)")
    return labels[0], (".".join(labels[1:]) or None)


def timezone(text: object, known: frozenset[str]) -> str:
    import difflib

    if not isinstance(text, str) or text not in known:
        close = difflib.get_close_matches(str(text), sorted(known), n=1, cutoff=0.6)
        city = [z for z in known if z.rsplit("/", 1)[-1].lower() == str(text).lower()]
        guess = (city or close or [None])[0]
        raise ValidationError(f"timezone {str(text)[:60]!r} is not in the zoneinfo database",
                              hint=f"did you mean {guess}?" if guess else "e.g. Europe/Berlin or UTC")
    return text


def username(text: object) -> str:
    if not isinstance(text, str) or not _USER.match(text):
        raise ValidationError(f"user name {str(text)[:40]!r} must be lower-case letters, digits, '_' and '-', "
                              "starting with a letter or '_', at most 31")
    if text in RESERVED_USERS:
        raise ValidationError(f"user name {text!r} is a system account; choose the admin's own name")
    return text


def ssh_key(text: object, keygen: str | None = None) -> str:
    """One public key line, accepted by `ssh-keygen -l -f` (run on a temp file)."""
    if not isinstance(text, str) or not text.strip() or "\n" in text.strip():
        raise ValidationError("an SSH key must be one line such as 'ssh-ed25519 AAAA… you@laptop'")
    tool = keygen or shutil.which("ssh-keygen")
    if tool is None:
        raise ValidationError("cannot check SSH keys: ssh-keygen is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".pub", encoding="utf-8") as tmp:
        tmp.write(text.strip() + "\n")
        tmp.flush()
        try:
            done = subprocess.run([tool, "-l", "-f", tmp.name], capture_output=True, text=True, timeout=15, check=False)
        except subprocess.TimeoutExpired:
            raise ValidationError("ssh-keygen did not answer in 15 s") from None
    if done.returncode != 0 or "PRIVATE" in text:
        shown = text.strip()[:24] + ("…" if len(text.strip()) > 24 else "")
        raise ValidationError(f"SSH key {shown!r} is not a public key ssh-keygen accepts")
    return text.strip()


# -- whole steps ------------------------------------------------------------------------------------

Problems = Iterator[tuple[str, str]]  # ($.path, message)


def _try(path: str, check: Callable[[], object]) -> Problems:
    try:
        check()
    except ValidationError as exc:
        yield path, str(exc)


def check_identity(ans: A.Identity, facts: HostFacts, keygen: str | None = None) -> Problems:
    yield from _try("$.identity.hostname", lambda: hostname(ans.hostname))
    if facts.timezones:
        yield from _try("$.identity.timezone", lambda: timezone(ans.timezone, facts.timezones))
    yield from _try("$.identity.admin.name", lambda: username(ans.admin.name))
    for n, key in enumerate(ans.admin.ssh_keys):
        yield from _try(f"$.identity.admin.ssh_keys[{n}]", lambda key=key: ssh_key(key, keygen))
    if ans.admin.password_hash is not None:
        yield from _try("$.identity.admin.password_hash", lambda: check_hash(ans.admin.password_hash))


def _family(text: str) -> int | None:
    try:
        return ipaddress.ip_interface(text.strip()).version
    except ValueError:
        return None


def check_network(ans: A.Network, facts: HostFacts) -> Problems:
    def uplink() -> None:
        names.interface_name(ans.uplink, "uplink")
        if facts.interfaces is not None:
            found = facts.interface(ans.uplink)
            if found is None:
                known = ", ".join(i.name for i in facts.interfaces if i.kind in ("physical", "bond")) or "none"
                raise ValidationError(f"uplink {ans.uplink} is not an interface of this host", hint=f"NICs: {known}")
            if found.kind not in ("physical", "bond"):
                raise ValidationError(f"uplink {ans.uplink} is a {found.kind}; choose a NIC or a bond")

    yield from _try("$.network.uplink", uplink)

    def bridge() -> None:
        names.interface_name(ans.bridge, "bridge name")
        if ans.bridge == ans.uplink:
            raise ValidationError("the bridge needs its own name, not the uplink's")

    yield from _try("$.network.bridge", bridge)
    address = None
    if ans.mode == "static":
        if not ans.address:
            yield "$.network.address", "a static address is needed (e.g. 192.0.2.10/24) with mode static"
        else:
            try:
                address = netconfig.host_cidr(ans.address)
            except ValidationError as exc:
                yield "$.network.address", str(exc)
        if address is not None and ans.gateway is not None:
            yield from _try("$.network.gateway", lambda: netconfig.check_gateway(ans.gateway, address))
    else:
        for key in ("address", "gateway"):
            if getattr(ans, key) is not None:
                yield f"$.network.{key}", f"{key} is set but mode is dhcp (DHCP provides it); use mode: static"
    for n, server in enumerate(ans.dns):
        def dns(server=server) -> None:
            ip = netconfig.parse_ip(server, "DNS server")
            if address is not None and ip.version != address.version:
                raise ValidationError(f"DNS server {ip} is IPv{ip.version} but the address {address} is "
                                      f"IPv{address.version}: use one IP family")
        yield from _try(f"$.network.dns[{n}]", dns)
    if ans.vlan is not None:
        def vlan() -> None:
            netconfig.check_vlan_id(ans.vlan)
            nic = facts.interface(ans.uplink)
            if nic is not None and nic.carrier is False:
                raise ValidationError(f"management VLAN {ans.vlan} on {ans.uplink}, which has no carrier: the "
                                      "host would have no management address", hint="plug in the cable or choose a NIC with link")
        yield from _try("$.network.vlan", vlan)
    if ans.mtu is not None:
        yield from _try("$.network.mtu", lambda: netconfig.check_mtu(ans.mtu, ipv6=address is not None and address.version == 6))


def check_storage(ans: A.Storage, facts: HostFacts) -> Problems:
    if ans.kind == "dir":
        def path() -> None:
            where = names.absolute_path(ans.path, "pool directory")
            if where.startswith(("/nix/store", "/etc/nixos", "/proc", "/sys", "/dev")) or where == "/":
                raise ValidationError(f"pool directory {where} is a system directory; use e.g. /var/lib/libvirt/images")
        yield from _try("$.storage.path", path)
    elif ans.kind == "logical":
        if facts.volume_groups is None:
            yield "$.storage.kind", "this host has no LVM tools (vgs); use kind: dir"
        elif ans.volume_group not in facts.volume_groups:
            yield "$.storage.volume_group", (f"volume group {ans.volume_group!r} does not exist "
                                            f"(found: {', '.join(facts.volume_groups) or 'none'})")
    else:
        if facts.zfs_datasets is None:
            yield "$.storage.kind", "this host has no ZFS tools (zfs); use kind: dir"
        elif ans.dataset not in facts.zfs_datasets:
            yield "$.storage.dataset", (f"ZFS dataset {ans.dataset!r} does not exist "
                                       f"(found: {', '.join(facts.zfs_datasets[:5]) or 'none'})")


def check_virtualisation(ans: A.Virtualisation, facts: HostFacts) -> Problems:
    if ans.nested and not facts.nested_capable:
        yield "$.virtualisation.nested", ("nested virtualisation needs VT-x or AMD-V with the kvm_intel or kvm_amd "
                                          "module loaded; this host has neither")


def check_security(ans: A.Security, facts: HostFacts) -> Problems:
    catalog = facts.catalog or profiles.load_catalog()
    yield from _try("$.security.profile", lambda: catalog.profile(ans.profile))
    for n, toggle in enumerate(ans.toggles):
        yield from _try(f"$.security.toggles[{n}]", lambda toggle=toggle: catalog.toggle(toggle))


def check_backups(ans: A.Backups, facts: HostFacts) -> Problems:
    """The first backup job: the same checks as `backup job add`, each under its key."""
    from hyperconsole.backup import jobs

    if ans.skip:
        if ans.job is not None:
            yield "$.backups.skip", "a job is given but skip is true: set skip: false to create it, or drop the job"
        return
    if ans.job is None:
        yield "$.backups.job", "no job given: give name, repository, password_file and schedule, or skip: true"
        return
    for key, check in jobs.checks(ans.job):
        yield from _try(f"$.backups.job.{key}", check)
    if not ans.create_password and not Path(ans.job.password_file).is_file():
        yield "$.backups.job.password_file", (f"password file {ans.job.password_file} does not exist; "
                                              "set create_password: true to create it (0600, random)")


STEP_CHECKS = {
    "identity": check_identity, "network": check_network, "storage": check_storage,
    "virtualisation": check_virtualisation, "security": check_security, "backups": check_backups,
}


def check_step(step: str, answers: A.Answers, facts: HostFacts) -> list[tuple[str, str]]:
    check = STEP_CHECKS.get(step)
    return list(check(getattr(answers, step), facts)) if check else []


def check_across(answers: A.Answers) -> list[tuple[str, str]]:
    """Rules that span steps."""
    out = []
    net = answers.network
    if answers.virtualisation.default_network and net.mode == "static" and net.address:
        try:
            overlap = ipaddress.ip_interface(net.address).network.overlaps(ipaddress.ip_network("192.168.122.0/24"))
        except (ValueError, TypeError):
            overlap = False
        if overlap:
            out.append(("$.virtualisation.default_network",
                        f"the management address {net.address} overlaps libvirt's NAT network 192.168.122.0/24; "
                        "turn default_network off or use another subnet"))
    return out


def check_all(answers: A.Answers, facts: HostFacts) -> list[tuple[str, str]]:
    """Every problem of every step, in step order, then those that span steps."""
    found = [p for step in A.STEPS for p in check_step(step, answers, facts)]
    return found + (check_across(answers) if not found else [])
