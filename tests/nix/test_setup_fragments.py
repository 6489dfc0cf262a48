"""Every fragment a full setup run writes parses and evaluates with the real Nix, reads back to
what was rendered, and each option matches its type as declared in the NixOS options reference
(looked up by path: `## virtualisation.libvirtd.onShutdown`, `## users.users.<name>.hashedPasswordFile`,
`## environment.etc.<name>.text`, `## boot.extraModprobeConfig`, `## time.timeZone`,
`## networking.domain`, `## users.users.<name>.extraGroups`, …; the systemd unit fields from
nixos/lib/systemd-unit-options.nix)."""

from __future__ import annotations

import re

import pytest

from hyperconsole import profiles
from hyperconsole.nixos.render import parse
from hyperconsole.nixos.store import FragmentStore
from hyperconsole.setup import answers as A, fragments, secrets
from tests.nix.test_network_fragment import CHECKS, NETWORK_OPTION_TYPES, check_types as network_types
from tests.unit.setup.conftest import facts, good_answers, public_key  # noqa: F401

SETUP_OPTION_TYPES = {
    "networking.hostName": "string",
    "networking.domain": "null or string",
    "time.timeZone": "null or string",
    "users.users.*.isNormalUser": "bool",
    "users.users.*.extraGroups": "list of string",
    "users.users.*.openssh.authorizedKeys.keys": "list of string",
    "users.users.*.hashedPasswordFile": "null or string",
    "environment.etc.*.text": "null or string",
    "systemd.services.*.description": "string",
    "systemd.services.*.after": "list of unit name",  # listOf unitNameType (nixos/lib/systemd-lib.nix)
    "systemd.services.*.requires": "list of unit name",
    "systemd.services.*.wantedBy": "list of unit name",
    "systemd.services.*.script": "string",
    "systemd.services.*.serviceConfig.Type": "string",
    "systemd.services.*.serviceConfig.RemainAfterExit": "bool",
    "virtualisation.libvirtd.enable": "bool",
    "virtualisation.libvirtd.onBoot": "one of start, ignore",
    "virtualisation.libvirtd.onShutdown": "one of shutdown, suspend",
    "virtualisation.libvirtd.qemu.swtpm.enable": "bool",
    "boot.extraModprobeConfig": "string",
}
_UNIT = re.compile(r"[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)\Z")
SETUP_CHECKS = {
    **CHECKS,
    "list of unit name": lambda v: isinstance(v, list) and all(isinstance(i, str) and _UNIT.match(i) for i in v),
    "one of start, ignore": lambda v: v in ("start", "ignore"),
    "one of shutdown, suspend": lambda v: v in ("shutdown", "suspend"),
}


def _declared(path):
    for table in (SETUP_OPTION_TYPES, NETWORK_OPTION_TYPES):
        for pattern, kind in table.items():
            parts = pattern.split(".")
            if len(parts) == len(path) and all(p in ("*", q) for p, q in zip(parts, path)):
                return kind
    return None


def check_types(value, path=()) -> list[str]:
    kind = _declared(path) if path else None
    if kind is not None:
        return [] if SETUP_CHECKS[kind](value) else [f"{'.'.join(path)}: expected {kind}, got {value!r}"]
    if isinstance(value, dict) and value:
        return [p for key, child in value.items() for p in check_types(child, (*path, key))]
    return [f"{'.'.join(path)}: not a declared option"]


def _cases(key: str) -> dict[str, A.Answers]:
    crypt_text = secrets.sha512_crypt("correct horse battery", "salt")
    return {
        "static": good_answers(key),
        "dhcp-vlan-mtu-everything-on": good_answers(
            key, identity=A.Identity("hv1.lab.example.com", "America/Argentina/Buenos_Aires",
                                     A.Admin("ops-admin", [key, key.replace("alice", "bob")], crypt_text)),
            network=A.Network(uplink="eno1", bridge="vmbr0", vlan=42, mtu=9000, dns=["192.0.2.53"]),
            storage=A.Storage(kind="logical", volume_group="vg0"),
            virtualisation=A.Virtualisation("start", "suspend", default_network=False, tpm=True, nested=True),
            security=A.Security("headless", ["strict-ssh", "fail2ban", "strict-firewall"])),
        "ipv6-zfs": good_answers(
            key, network=A.Network(uplink="eno1", mode="static", address="2001:db8::10/64", gateway="2001:db8::1",
                                   dns=["2001:db8::53"]),
            storage=A.Storage(kind="zfs", dataset="tank/vms")),
        "hostile-path": good_answers(key, storage=A.Storage(path='/srv/vm "images" ${x} $HOME')),
    }


@pytest.mark.parametrize("case", ["static", "dhcp-vlan-mtu-everything-on", "ipv6-zfs", "hostile-path"])
def test_setup_fragments_evaluate_and_match_declared_types(nix, tmp_path, public_key, case):  # noqa: F811
    answers = _cases(public_key)[case]
    nixos_dir = tmp_path / "nixos"
    nixos_dir.mkdir()
    store = FragmentStore(nixos_dir)
    plan = fragments.plan(answers, facts(zfs_datasets=("tank/vms",)), store, tmp_path / "secrets")
    store.commit(plan.changeset)
    assert sorted(store.names()) == sorted(fragments.FRAGMENTS)
    for name in store.names():
        path = store.path(name)
        assert nix.parse_file(path).returncode == 0
        evaluated = nix.eval_file(path)
        assert evaluated == parse(path.read_text())
        if name == profiles.FRAGMENT_NAME:
            continue  # the profile fragments are typed by tests/nix/test_nix_fragments.py
        table = network_types if name == "network" else check_types
        assert table(evaluated) == [], name
    index = nix.eval_file(store.dir / "default.nix")
    assert len(index["imports"]) == len(fragments.FRAGMENTS)
    if case == "hostile-path":
        xml = nix.eval_file(store.path("storage"))["environment"]["etc"][fragments.POOL_XML]["text"]
        assert '<path>/srv/vm "images" ${x} $HOME</path>' in xml
