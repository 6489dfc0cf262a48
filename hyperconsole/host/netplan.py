"""One host-network change, planned before anything is written: the edit, its fragment diff,
which bridges and VMs it touches, and whether it reaches the operator's SSH uplink. The `net`
commands and the Networks pane both go through here, so they refuse and warn alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from hyperconsole.config import Config
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.host import interfaces as interfaces_mod
from hyperconsole.host import netconfig
from hyperconsole.nixos.revert import default_confirm_timeout
from hyperconsole.nixos.store import ChangeSet, FragmentStore

# The revert window for a change on the SSH uplink when the configured default is 0.
UPLINK_FALLBACK_TIMEOUT = Config().confirm_timeout

Edit = Callable[[netconfig.NetworkConfig, "set[str] | None"], netconfig.NetworkChange]


def read_host_interfaces() -> tuple[list[interfaces_mod.InterfaceInfo], list[str]]:
    """The host's interfaces, or none plus a warning: not being able to read them (no iproute2)
    must not stop preparing a config, it only loses the existence warnings and uplink check."""
    try:
        return interfaces_mod.read_interfaces(), []
    except HyperconsoleError as exc:
        return [], [f"cannot read this host's interfaces ({exc}); existence and uplink checks skipped"]


def vm_nic_pairs(by_bridge: dict[str, tuple[str, ...]],
                 network_bridges: Iterable[tuple[str, tuple[str, ...]]] = ()) -> list[tuple[str, str]]:
    """(VM, host bridge) pairs for the impact preview: NICs plugged into a bridge directly, and
    VMs on a libvirt network whose bridge it is. Inputs are plain data from the libvirt side."""
    pairs = {(vm, bridge) for bridge, vms in by_bridge.items() for vm in vms}
    pairs |= {(vm, bridge) for bridge, vms in network_bridges for vm in vms if bridge}
    return sorted(pairs)


@dataclass(frozen=True)
class NetworkPlan:
    change: netconfig.NetworkChange
    changeset: ChangeSet
    impact: netconfig.Impact
    uplinks: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def touches_uplink(self) -> bool:
        return self.impact.touches_uplink

    def timeout(self, requested: int | None, configured: int) -> int:
        """The confirm window: as requested, else by what the change touches; never 0 on the uplink."""
        if self.touches_uplink and requested == 0:
            raise ValidationError(
                f"this change touches {', '.join(self.uplinks)}, which carries your SSH session; "
                "a confirm timeout of 0 is refused for it",
                hint="leave it out or give a number of seconds to confirm in")
        timeout = requested if requested is not None else default_confirm_timeout(self.changeset, configured)
        if self.touches_uplink and timeout <= 0:
            # The configured default may be 0; the session must still get a way back.
            timeout = configured if configured > 0 else UPLINK_FALLBACK_TIMEOUT
        return timeout


def plan(store: FragmentStore, edit: Edit, *,
         vm_nics: Iterable[tuple[str, str]] = (),
         host: list[interfaces_mod.InterfaceInfo] | None = None) -> NetworkPlan:
    """Read network.nix, apply `edit`, and say what it would change. Writes nothing."""
    current, fragment = netconfig.load(store)
    notes: list[str] = []
    if host is None:
        host, notes = read_host_interfaces()
    existing = interfaces_mod.interface_names(host) if host else None
    change = edit(current, existing)
    changeset = netconfig.prepare(store, fragment, change)
    uplinks = interfaces_mod.uplink_interfaces(host) if host else []
    impact = netconfig.impact(change, host, list(vm_nics), uplinks=uplinks)
    return NetworkPlan(change, changeset, impact, tuple(sorted(set(uplinks))), tuple(notes) + tuple(impact.warnings))
