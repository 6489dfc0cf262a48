"""The wizard's answers: one struct per step, read from an answers file or saved for resume.

The same structs back `hyperconsole setup --answers FILE.yaml` and the TUI. A password never
appears here in clear: the admin has `password_hash` (SHA-512 or yescrypt crypt text), made by
hyperconsole.setup.secrets from what was typed. Saved answers live in
`<state>/setup/answers.json`, 0600 in a 0700 directory, written atomically without following links.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from hyperconsole import paths, safefs, schema
from hyperconsole.backup.jobs import Job
from hyperconsole.errors import ConfigError

STEPS = ("preflight", "identity", "network", "storage", "virtualisation", "security", "backups", "review", "apply")
STEP_TITLES = {
    "preflight": "Preflight", "identity": "Identity", "network": "Network", "storage": "Storage",
    "virtualisation": "Virtualisation", "security": "Security", "backups": "Backups", "review": "Review",
    "apply": "Apply",
}


class _Struct(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Preflight(_Struct):
    add_import: bool = True  # add ./hyperconsole to configuration.nix when it lacks it


class Admin(_Struct):
    name: str = "admin"
    ssh_keys: list[str] = []
    password_hash: str | None = None


class Identity(_Struct):
    hostname: str = ""
    timezone: str = "UTC"
    admin: Admin = msgspec.field(default_factory=Admin)


class Network(_Struct):
    uplink: str = ""
    bridge: str = "br0"
    mode: Literal["dhcp", "static"] = "dhcp"
    address: str | None = None  # "192.0.2.10/24" when static
    gateway: str | None = None
    dns: list[str] = []
    vlan: int | None = None  # management VLAN id, carried on the bridge
    mtu: int | None = None


class Storage(_Struct):
    kind: Literal["dir", "logical", "zfs"] = "dir"
    path: str = "/var/lib/libvirt/images"  # dir
    volume_group: str = ""  # logical
    dataset: str = ""  # zfs


class Virtualisation(_Struct):
    on_boot: Literal["start", "ignore"] = "ignore"
    on_shutdown: Literal["shutdown", "suspend"] = "shutdown"
    default_network: bool = True  # libvirt's NAT network "default" (virbr0)
    tpm: bool = False  # swtpm, for guests that need a TPM (Windows 11)
    nested: bool = False


class Security(_Struct):
    profile: str = "management"
    toggles: list[str] = []


class Backups(_Struct):
    skip: bool = True
    job: Job | None = None  # a first backup job: the model `backup job add` writes to backups.nix
    create_password: bool = False  # create the job's password file (0600, random) and its repository


class Answers(_Struct):
    preflight: Preflight = msgspec.field(default_factory=Preflight)
    identity: Identity = msgspec.field(default_factory=Identity)
    network: Network = msgspec.field(default_factory=Network)
    storage: Storage = msgspec.field(default_factory=Storage)
    virtualisation: Virtualisation = msgspec.field(default_factory=Virtualisation)
    security: Security = msgspec.field(default_factory=Security)
    backups: Backups = msgspec.field(default_factory=Backups)
    step: str = "preflight"  # where a resumed wizard continues


def load_file(path: Path) -> Answers:
    """An answers file (YAML). Structure errors are one line with the key's path."""
    data = schema.load_mapping(path, empty_ok=True) or {}
    return schema.convert(data, Answers, path.name)


def to_builtins(answers: Answers) -> dict:
    return msgspec.to_builtins(answers)


def saved_path() -> Path:
    return paths.state_dir() / "setup" / "answers.json"


def save(answers: Answers, path: Path | None = None) -> Path:
    path = path or saved_path()
    safefs.ensure_private_dir(path.parent)
    safefs.atomic_write(path, msgspec.json.encode(answers), mode=safefs.PRIVATE_FILE_MODE)
    return path


def load_saved(path: Path | None = None) -> Answers | None:
    """The answers of an unfinished run, or None. A damaged file is one line, never a crash."""
    path = path or saved_path()
    data = safefs.read_bytes(path)
    if data is None:
        return None
    try:
        return msgspec.json.decode(data, type=Answers)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: saved answers cannot be read ({exc}); delete the file to start again") from None


def forget(path: Path | None = None) -> None:
    (path or saved_path()).unlink(missing_ok=True)
