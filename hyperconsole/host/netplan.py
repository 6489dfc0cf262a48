"""One host-network change, planned before anything is written: the edit, its fragment diff,
which bridges and VMs it touches, and whether it reaches the host's uplink. The `net` commands
and the Networks pane both go through here, so they refuse and warn alike."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterable

from hyperconsole.config import Config
from hyperconsole.errors import ValidationError
from hyperconsole.host import interfaces as interfaces_mod
from hyperconsole.host import netconfig
from hyperconsole.nixos.revert import default_confirm_timeout
from hyperconsole.nixos.store import ChangeSet, FragmentStore

# The revert window for a change on the uplink when the configured default is 0.
UPLINK_FALLBACK_TIMEOUT = Config().confirm_timeout

# An edit gets the current model and the host's interface names (None: not known).
Edit = Callable[[netconfig.NetworkConfig, "set[str] | None"], netconfig.NetworkChange]


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
    uplink: interfaces_mod.Uplink
    warnings: tuple[str, ...]

    @property
    def touches_uplink(self) -> bool:
        return self.impact.touches_uplink

    def uplink_sentence(self) -> str:
        """What the change does to the uplink, for the refusal of 0 and the warnings."""
        names = ", ".join(self.impact.uplinks_touched)
        if self.uplink.known:
            return f"this change touches {names}, the host's uplink (default route or SSH session)"
        return f"the host's interfaces could not be read ({self.uplink.reason}), so {names} may be the host's uplink"

    def timeout(self, requested: int | None, configured: int) -> int:
        """The confirm window: as requested, else by what the change touches; never 0 when it
        touches (or may touch) the uplink."""
        if self.touches_uplink and requested == 0:
            raise ValidationError(f"{self.uplink_sentence()}; a confirm timeout of 0 is refused for it",
                                  hint="leave it out or give a number of seconds to confirm in")
        timeout = requested if requested is not None else default_confirm_timeout(self.changeset, configured)
        if self.touches_uplink and timeout <= 0:
            # The configured default may be 0; the operator must still get a way back.
            timeout = configured if configured > 0 else UPLINK_FALLBACK_TIMEOUT
        return timeout


def plan(store: FragmentStore, edit: Edit, *,
         vm_nics: Iterable[tuple[str, str]] = (),
         host: interfaces_mod.HostNetwork | None = None,
         move_address: bool = False) -> NetworkPlan:
    """Read network.nix, apply `edit`, and say what it would change. Writes nothing.
    `host` is read now when not given; `move_address` moves the addressing of interfaces the
    edit makes bridge members onto their bridge (otherwise a warning says they lose it)."""
    current, fragment = netconfig.load(store)
    if host is None:
        host = interfaces_mod.read_host()
    notes = [f"cannot read this host's interfaces ({host.error}); existence checks skipped"] if host.error else []
    existing = host.names
    change = edit(current, existing)
    live = netconfig.live_addressing(host.interfaces, host.routes)
    change = netconfig.move_addressing(change, live, move=move_address, existing=existing)
    changeset = netconfig.prepare(store, fragment, change)
    impact = netconfig.impact(change, host.interfaces, list(vm_nics), host.uplink)
    planned = NetworkPlan(change, changeset, impact, host.uplink, ())
    if planned.touches_uplink:
        notes.append(f"{planned.uplink_sentence()}; it will be applied with confirm-or-revert")
    return dataclasses.replace(planned, warnings=tuple(notes) + tuple(impact.warnings))
