"""Preflight: is this machine fit to be a virtualisation host? The doctor's checks and result type
(PASS / WARN / FAIL / SKIP, why, hint), run by the doctor's runner under its deadlines.

What the doctor checks too (CPU virtualisation, /dev/kvm, IOMMU, running inside a VM, the NixOS
release, the fragments imported) is its own check here; what only a new host needs is a `setup.*`
check: RAM and CPUs against minimums, free space where the default pool will live, NICs with
carrier and speed, flake or channels. Minimums follow Harvester's split: below the testing minimum
is FAIL, below the production minimum WARN.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Iterable, Sequence

from hyperconsole.config import Config
from hyperconsole.doctor import hostchecks, nixoschecks
from hyperconsole.doctor.model import (
    Check, Context, Outcome, Result, Status, fail, ok, run_checks, skip, warn,
)
from hyperconsole.host.interfaces import InterfaceInfo
from hyperconsole.names import human_size

MIN_CPUS, GOOD_CPUS = 2, 8
MIN_RAM, GOOD_RAM = 4 * 1024**3, 32 * 1024**3
MIN_FREE, GOOD_FREE = 20 * 1024**3, 200 * 1024**3
DEFAULT_POOL = "/var/lib/libvirt/images"


def _minimum(what: str, have: int, low: int, good: int, show: Callable[[int], str]) -> Outcome:
    if have < low:
        return fail(f"{what}: {show(have)}; at least {show(low)} needed (testing minimum)",
                    "VMs will not fit: use a bigger machine")
    if have < good:
        return warn(f"{what}: {show(have)}; {show(good)} recommended for production", "enough for testing; add more before production")
    return ok(f"{what}: {show(have)}")


def memory(ctx: Context) -> Outcome:
    try:
        info = (ctx.proc / "meminfo").read_text(errors="replace")
    except OSError as exc:
        return skip(f"cannot read {ctx.proc / 'meminfo'}: {exc.strerror}")
    total = next((int(line.split()[1]) * 1024 for line in info.splitlines() if line.startswith("MemTotal:")), None)
    if total is None:
        return skip(f"no MemTotal in {ctx.proc / 'meminfo'}")
    return _minimum("memory", total, MIN_RAM, GOOD_RAM, human_size)


def cpus(ctx: Context) -> Outcome:
    try:
        _flags, count = hostchecks.cpuinfo(ctx)
    except OSError as exc:
        return skip(f"cannot read {ctx.proc / 'cpuinfo'}: {exc.strerror}")
    return _minimum("CPUs", count, MIN_CPUS, GOOD_CPUS, str)


def disk_space(pool_path: str, root: Path = Path("/")) -> Outcome:
    """Free space where the default pool will live (its nearest existing parent, under `root`)."""
    where = root / pool_path.lstrip("/")
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return skip(f"cannot read the free space of {where}: {exc.strerror}")
    outcome = _minimum(f"free space for {pool_path}", free, MIN_FREE, GOOD_FREE, human_size)
    shown = "/" + "/".join(where.relative_to(root).parts)
    return Outcome(outcome.status, f"{outcome.why} (file system of {shown})",
                   outcome.hint and "choose a directory on a bigger file system in the storage step")


def physical_nics(interfaces: Iterable[InterfaceInfo] | None) -> list[InterfaceInfo]:
    """The NICs an uplink can be, those with carrier first."""
    return sorted((i for i in interfaces or () if i.kind in ("physical", "bond")),
                  key=lambda i: (i.carrier is not True, i.name))


def nic_label(nic: InterfaceInfo) -> str:
    speed = f", {nic.speed_mbps} Mb/s" if nic.carrier and nic.speed_mbps and nic.speed_mbps > 0 else ""
    return f"{nic.name} ({'link' if nic.carrier else 'no link'}{speed})"


def nics(interfaces: Sequence[InterfaceInfo] | None) -> Outcome:
    if interfaces is None:
        return skip("the network interfaces cannot be read (ip failed)")
    physical = physical_nics(interfaces)
    if not physical:
        return fail("no physical NIC found", "the management uplink and the VM bridge need one")
    shown = "NICs: " + ", ".join(nic_label(n) for n in physical)
    if not any(n.carrier for n in physical):
        return fail(shown + ": none has link", "plug in a cable, or check the switch port")
    return ok(shown)


def config_kind(ctx: Context) -> Outcome:
    nixos_dir = Path(ctx.config.nixos_dir)
    if (nixos_dir / "flake.nix").exists():
        return ok(f"a flake ({nixos_dir}/flake.nix): add ./hyperconsole to its modules once")
    if (nixos_dir / "configuration.nix").exists():
        return ok(f"channels ({nixos_dir}/configuration.nix)")
    return fail(f"{nixos_dir} has neither configuration.nix nor flake.nix", "run nixos-generate-config first")


def fragments_imported(ctx: Context) -> Outcome:
    """The doctor's nixos.imports, where not importing yet is what the wizard fixes on apply."""
    outcome = nixoschecks.imports(ctx)
    if outcome.status is not Status.FAIL:
        return outcome
    if (Path(ctx.config.nixos_dir) / "flake.nix").exists():
        return warn(outcome.why, "add ./hyperconsole to the flake's modules")
    return warn("configuration.nix does not import ./hyperconsole yet",
                "the wizard adds it on apply (Add the import: yes)")


def checks(interfaces: Sequence[InterfaceInfo] | None, *, pool_path: str = DEFAULT_POOL,
           root: Path = Path("/")) -> tuple[Check, ...]:
    """The preflight, in the order shown: the doctor's own checks where they are the same."""
    doctor = {c.id: c for c in (*hostchecks.CHECKS, *nixoschecks.CHECKS)}
    return (
        doctor["virt.cpu"], doctor["virt.kvm"], doctor["virt.iommu"],
        Check("setup.memory", "memory against the testing and production minimums", memory),
        Check("setup.cpus", "CPUs against the testing and production minimums", cpus),
        Check("setup.disk", f"free space for {pool_path}", lambda ctx: disk_space(pool_path, root)),
        Check("setup.nics", "NICs with carrier and speed", lambda ctx: nics(interfaces)),
        doctor["virt.nested"], doctor["nixos.version"],
        Check("setup.config", "a flake or channels", config_kind),
        Check("setup.imports", "the configuration imports hyperconsole's fragments", fragments_imported),
    )


def context(config: Config, *, root: Path = Path("/"), env: dict[str, str] | None = None) -> Context:
    """A doctor Context reading the host below `root` (a recorded tree in tests)."""
    ctx = Context(config, env=env)
    ctx.proc, ctx.sys, ctx.dev, ctx.etc = root / "proc", root / "sys", root / "dev", root / "etc"
    return ctx


def run_all(config: Config, interfaces: Sequence[InterfaceInfo] | None, *, root: Path = Path("/"),
            pool_path: str = DEFAULT_POOL, env: dict[str, str] | None = None) -> list[Result]:
    """Every check, concurrently under its deadline (blocking: run it off the UI thread)."""
    ctx = context(config, root=root, env=env)
    try:
        return run_checks(checks(interfaces, pool_path=pool_path, root=root), ctx)
    finally:
        ctx.close()
