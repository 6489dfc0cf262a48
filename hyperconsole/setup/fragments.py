"""What the answers become: one option tree per fragment, rendered by nixos/render.py through
the FragmentStore, plus what the review shows (diffs, impact, changed option paths).

Fragments and their options (each path checked against the NixOS options reference; types in
tests/nix/test_setup_fragments.py):
  identity.nix        networking.hostName, networking.domain, time.timeZone,
                      users.users.<admin>.{isNormalUser, extraGroups, openssh.authorizedKeys.keys,
                      hashedPasswordFile}
  network.nix         written by host/netconfig.py (bridge on the uplink, VLAN, addressing, MTU, DNS)
  storage.nix         environment.etc.<file>.text (the pool XML from virt/pools.py),
                      systemd.services.hyperconsole-default-pool (defines, autostarts, starts it)
  virtualisation.nix  virtualisation.libvirtd.{enable, onBoot, onShutdown, qemu.swtpm.enable},
                      boot.extraModprobeConfig (nested), environment.etc (the NAT network XML from
                      virt/networks.py), systemd.services.hyperconsole-default-network
  security-profile.nix  profiles.py, as `profile apply` writes it
  backups.nix         backup/jobs.py, as `backup job add` writes it (when a first job is given)
The unit scripts are fixed text: everything the operator typed reaches them only inside XML
files rendered from models. UEFI guests need no option: current NixOS ships QEMU's OVMF images
(the old virtualisation.libvirtd.qemu.ovmf submodule is gone).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperconsole import profiles
from hyperconsole.host import netconfig
from hyperconsole.nixos.render import parse
from hyperconsole.nixos.revert import changed_paths, default_confirm_timeout
from hyperconsole.nixos.store import ChangeSet, FragmentStore
from hyperconsole.setup import answers as A, guard
from hyperconsole.setup.secrets import password_file
from hyperconsole.setup.validate import HostFacts, hostname
from hyperconsole.virt.networks import NewNetworkSpec, build_network_xml
from hyperconsole.virt.pools import NewPoolSpec, build_pool_xml

FRAGMENTS = ("identity", "network", "storage", "virtualisation", profiles.FRAGMENT_NAME)
VIRSH = "/run/current-system/sw/bin/virsh"  # libvirtd puts libvirt on the system path
POOL_XML = "hyperconsole/libvirt/pool-default.xml"
NETWORK_XML = "hyperconsole/libvirt/network-default.xml"
DEFAULT_NAT = NewNetworkSpec("default", "nat", "192.168.122.1/24", "192.168.122.2", "192.168.122.254", bridge="virbr0")
ADMIN_GROUPS = ["libvirtd", "wheel"]


def _oneshot(description: str, script: str) -> dict[str, Any]:
    return {
        "description": description, "after": ["libvirtd.service"], "requires": ["libvirtd.service"],
        "wantedBy": ["multi-user.target"], "serviceConfig": {"Type": "oneshot", "RemainAfterExit": True},
        "script": script,
    }


def _pool_script(build: bool) -> str:
    return "\n".join([
        f"virsh={VIRSH}",
        'if ! "$virsh" pool-info default >/dev/null 2>&1; then',
        f'  "$virsh" pool-define /etc/{POOL_XML}',
        *(['  "$virsh" pool-build default'] if build else []),
        "fi",
        '"$virsh" pool-autostart default',
        '"$virsh" pool-info default | grep -q "^State: *running" || "$virsh" pool-start default',
    ]) + "\n"


def _network_script(enable: bool) -> str:
    if not enable:
        return "\n".join([
            f"virsh={VIRSH}",
            'if "$virsh" net-info default >/dev/null 2>&1; then',
            '  "$virsh" net-autostart --disable default',
            '  "$virsh" net-destroy default 2>/dev/null || true',
            "fi",
        ]) + "\n"
    return "\n".join([
        f"virsh={VIRSH}",
        f'"$virsh" net-info default >/dev/null 2>&1 || "$virsh" net-define /etc/{NETWORK_XML}',
        '"$virsh" net-autostart default',
        '"$virsh" net-info default | grep -q "^Active: *yes" || "$virsh" net-start default',
    ]) + "\n"


def identity_options(ans: A.Identity, secrets_dir: Path) -> dict[str, Any]:
    host, domain = hostname(ans.hostname)
    user: dict[str, Any] = {"isNormalUser": True, "extraGroups": list(ADMIN_GROUPS)}
    if ans.admin.ssh_keys:
        user["openssh"] = {"authorizedKeys": {"keys": list(ans.admin.ssh_keys)}}
    if ans.admin.password_hash:
        user["hashedPasswordFile"] = str(password_file(secrets_dir, ans.admin.name))
    networking: dict[str, Any] = {"hostName": host}
    if domain:
        networking["domain"] = domain
    return {"networking": networking, "time": {"timeZone": ans.timezone}, "users": {"users": {ans.admin.name: user}}}


def management_interface(ans: A.Network) -> str:
    return f"{ans.bridge}.{ans.vlan}" if ans.vlan is not None else ans.bridge


def network_config(ans: A.Network) -> netconfig.NetworkConfig:
    """The bridge on the uplink (the uplink keeps no address of its own), the management VLAN on
    the bridge when asked, the host's addressing on the management interface."""
    config = netconfig.add_bridge(netconfig.NetworkConfig(), ans.bridge, [ans.uplink]).after
    config = config.with_interface(netconfig.InterfaceConfig(ans.uplink, dhcp=False, mtu=ans.mtu))
    mgmt = management_interface(ans)
    if ans.vlan is not None:
        config = netconfig.add_vlan(config, mgmt, ans.vlan, ans.bridge).after
        config = config.with_interface(netconfig.InterfaceConfig(ans.bridge, dhcp=False, mtu=ans.mtu))
    if ans.mode == "dhcp":
        config = netconfig.set_address(config, mgmt, dhcp=True).after
    else:
        config = netconfig.set_address(config, mgmt, address=ans.address, gateway=ans.gateway).after
    if ans.mtu is not None and mgmt != ans.uplink:
        config = netconfig.set_mtu(config, mgmt, ans.mtu).after
    config = dataclasses.replace(config, nameservers=tuple(ans.dns))
    netconfig.validate(config)
    return config


def storage_options(ans: A.Storage) -> dict[str, Any]:
    if ans.kind == "dir":
        spec = NewPoolSpec("default", "dir", path=ans.path)
    elif ans.kind == "logical":
        spec = NewPoolSpec("default", "logical", vg=ans.volume_group)
    else:
        spec = NewPoolSpec("default", "zfs", vg=ans.dataset)
    return {
        "environment": {"etc": {POOL_XML: {"text": build_pool_xml(spec)}}},
        "systemd": {"services": {"hyperconsole-default-pool": _oneshot(
            "hyperconsole: libvirt's default storage pool", _pool_script(build=ans.kind == "dir"))}},
    }


def virtualisation_options(ans: A.Virtualisation, facts: HostFacts) -> dict[str, Any]:
    libvirtd: dict[str, Any] = {"enable": True, "onBoot": ans.on_boot, "onShutdown": ans.on_shutdown}
    if ans.tpm:
        libvirtd["qemu"] = {"swtpm": {"enable": True}}
    options: dict[str, Any] = {"virtualisation": {"libvirtd": libvirtd}}
    if ans.nested:
        module = "kvm_amd" if facts.cpu_vendor == "amd" else "kvm_intel"
        options["boot"] = {"extraModprobeConfig": f"options {module} nested=1\n"}
    service = _oneshot("hyperconsole: libvirt's default NAT network", _network_script(ans.default_network))
    options["systemd"] = {"services": {"hyperconsole-default-network": service}}
    if ans.default_network:
        options["environment"] = {"etc": {NETWORK_XML: {"text": build_network_xml(DEFAULT_NAT)}}}
    return options


def option_trees(answers: A.Answers, facts: HostFacts, secrets_dir: Path) -> dict[str, Any]:
    catalog = facts.catalog or profiles.load_catalog()
    return {
        "identity": identity_options(answers.identity, secrets_dir),
        "network": netconfig.to_options(network_config(answers.network)),
        "storage": storage_options(answers.storage),
        "virtualisation": virtualisation_options(answers.virtualisation, facts),
        profiles.FRAGMENT_NAME: profiles.profile_options(catalog, answers.security.profile, answers.security.toggles),
    }


@dataclass(frozen=True)
class Plan:
    """Everything the review shows and the apply step writes. Nothing is written to make it."""

    changeset: ChangeSet
    changed_paths: tuple[str, ...]
    impact: tuple[str, ...]
    trial_required: bool
    password: tuple[Path, str] | None  # the hashedPasswordFile and the hash it will hold
    backup_job: Any = None  # a backups.Job whose password file and repository apply creates


def _paths(changeset: ChangeSet) -> tuple[str, ...]:
    found: list[str] = []
    for change in changeset.changes:
        if change.changed:
            old = parse(change.old_text) if change.old_text else {}
            new = parse(change.new_text) if change.new_text else {}
            found += changed_paths(old, new)
    # Options, not the attribute sets above them: a path some other path extends is left out.
    return tuple(p for p in dict.fromkeys(found) if not any(q.startswith(p + ".") for q in found))


def impact_lines(answers: A.Answers, facts: HostFacts) -> list[str]:
    net = answers.network
    mgmt = management_interface(net)
    lines = [f"{net.uplink} becomes the only member of bridge {net.bridge}; VMs attach to {net.bridge}"]
    how = "by DHCP" if net.mode == "dhcp" else f"{net.address}" + (f" via {net.gateway}" if net.gateway else "")
    lines.append(f"the host's management address moves to {mgmt} ({how})"
                 + (f", tagged VLAN {net.vlan}" if net.vlan is not None else ""))
    session = facts.session
    ssh_dev = facts.ssh_interface
    if session.over_ssh:
        on = ssh_dev or "an interface that could not be found"
        touched = facts.uplink.touched({net.uplink, net.bridge, mgmt}) if facts.uplink.known else [on]
        if touched:
            lines.append(f"your SSH session (as {session.ssh_user}) runs over {on}, which this change reconfigures: "
                         "it is activated on trial and reverts by itself unless confirmed from a new SSH login")
        else:
            lines.append(f"your SSH session (as {session.ssh_user}) runs over {on}, which this change does not touch")
    else:
        lines.append("you are not connected over SSH (local console): the network change is still activated on trial")
    if answers.virtualisation.default_network:
        lines.append("libvirt's NAT network 'default' (virbr0, 192.168.122.0/24) is defined and autostarted")
    if answers.security.profile:
        lines.append(f"security profile {answers.security.profile}"
                     + (f" + {', '.join(answers.security.toggles)}" if answers.security.toggles else ""))
    return lines


def plan(answers: A.Answers, facts: HostFacts, store: FragmentStore, secrets_dir: Path) -> Plan:
    """The change the answers make (answers already validated), checked by the lock-out guard."""
    trees = option_trees(answers, facts, secrets_dir)
    if not answers.backups.skip and answers.backups.job is not None:
        from hyperconsole.backup import jobs

        job = answers.backups.job
        trees[jobs.FRAGMENT] = jobs.fragment_value([*(j for j in jobs.read_jobs(store) if j.name != job.name), job])
    meta = {"identity": {"admin": answers.identity.admin.name},
            profiles.FRAGMENT_NAME: profiles.profile_meta(answers.security.profile,
                                                          profiles.normalise_toggles(facts.catalog or profiles.load_catalog(),
                                                                                     answers.security.toggles))}
    changeset = store.prepare(trees, message="hyperconsole: setup wizard", meta=meta)
    options = guard.merged_options(guard.trees_after(store, changeset))
    guard.check(options, facts.session, admin=answers.identity.admin.name, handover=True)
    password = None
    if answers.identity.admin.password_hash:
        password = (password_file(secrets_dir, answers.identity.admin.name), answers.identity.admin.password_hash)
    impact = impact_lines(answers, facts)
    session, admin = facts.session, answers.identity.admin.name
    if session.over_ssh and session.ssh_user != admin:
        lost = guard.SshAccess.of(options).why_not(session.ssh_user, session)
        if lost:
            impact.append(f"{session.ssh_user} loses SSH login ({lost}): confirm from a new SSH login as {admin} "
                          "with its key; if that login fails, nothing confirms and the change reverts by itself")
    create = answers.backups.job if answers.backups.create_password and not answers.backups.skip else None
    if answers.backups.job is not None and not answers.backups.skip:
        impact.append(f"backup job {answers.backups.job.name}: {answers.backups.job.schedule} into "
                      f"{answers.backups.job.repository}" + (" (password file and repository created)" if create else ""))
    return Plan(changeset, _paths(changeset), tuple(impact),
                default_confirm_timeout(changeset, 1) > 0, password, create)
