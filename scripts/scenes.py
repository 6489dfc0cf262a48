"""The screens worth a picture, as key presses on the demo host. Used by scripts/screenshots.py
(README images) and tests/snapshots (layout regression tests), so both show the same thing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hyperconsole import cli
from hyperconsole.app import HyperconsoleApp
from hyperconsole.config import Config
from hyperconsole.host.metrics import HostSampler
from hyperconsole.demo import backup as demo_backup
from hyperconsole.demo import libvirt as demo
from hyperconsole.demo.stats import SimulatedStats
from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt.sampler import DomainSampler

SIZE = (150, 42)


async def settle(pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def cursor_to(pilot, name: str) -> None:
    app = pilot.app
    uuid = next(d.uuid for d in app.view.domains.values() if d.name == name)
    app.screen.view.move_to(uuid)
    await pilot.pause()


async def vms(pilot) -> None:
    await cursor_to(pilot, "db-primary")


async def dashboard(pilot) -> None:
    await pilot.press("1")
    await settle(pilot)


async def details(pilot) -> None:
    await cursor_to(pilot, "web-01")
    await pilot.press("enter")
    await settle(pilot)


async def create(pilot) -> None:
    await pilot.press("n")
    await settle(pilot)
    await pilot.press(*"staging-01")


async def snapshots(pilot) -> None:
    await cursor_to(pilot, "web-01")
    await pilot.press("t")
    await settle(pilot)


async def networks(pilot) -> None:
    await pilot.press("3")
    for _ in range(3):
        await settle(pilot)
        await pilot.pause(0.3)


async def storage(pilot) -> None:
    await pilot.press("4")
    for _ in range(3):
        await settle(pilot)
        await pilot.pause(0.2)


async def security(pilot) -> None:
    await pilot.press("6")
    await settle(pilot)
    await pilot.pause(0.3)
    await settle(pilot)


async def backups(pilot) -> None:
    """The Backups pane with the new-job form open (no job yet: a layout that does not follow the clock)."""
    await pilot.press("5")
    for _ in range(3):
        await settle(pilot)
        await pilot.pause(0.2)
    await pilot.press("n")
    await settle(pilot)


async def backups_demo(pilot) -> None:
    """The Backups pane with the demo's job and snapshots (times follow the clock: screenshot only)."""
    app = pilot.app
    demo_backup.ensure(app.config.nixos_dir, app.manager.conn)
    await pilot.press("5")
    for _ in range(6):
        await settle(pilot)
        await pilot.pause(0.3)


async def filtered(pilot) -> None:
    """The one resource view at work: a live filter, the selection counted, sorted by memory."""
    await pilot.press("slash", *"web", "enter")
    await pilot.press("greater_than_sign", "greater_than_sign", "greater_than_sign")
    await pilot.press("home", "space", "space")
    await settle(pilot)


async def narrow(pilot) -> None:
    """The VM list at 80×24 keeps name, state, CPU and memory."""
    await pilot.resize_terminal(80, 24)
    await settle(pilot)


async def help_(pilot) -> None:
    await pilot.press("question_mark")
    await settle(pilot)


def doctor_sample() -> tuple:
    """What pane 7 shows in pictures: a headless host with a few typical problems, as fixed
    outcomes (the real checks read this machine, whose answers differ from one run to the next).
    They still go through the doctor's runner; the network fix is the real one."""
    from hyperconsole.doctor import CHECKS, virtchecks
    from hyperconsole.doctor.model import Check, Outcome, Status

    def fixed(status: Status, why: str, hint: str = "", fix=None, detail: str = ""):
        return lambda ctx: Outcome(status, why, hint, fix, detail)

    p, w, f, s = Status.PASS, Status.WARN, Status.FAIL, Status.SKIP
    rows = [
        ("virt.cpu", fixed(p, "the CPU has hardware virtualisation (Intel VT-x, vmx)")),
        ("virt.kvm", fixed(p, "/dev/kvm is there (crw-rw----, group kvm)")),
        ("virt.vhost-net", fixed(w, "/dev/vhost-net does not exist: VM network traffic goes through QEMU's "
                                    "userspace (slower)", 'boot.kernelModules = [ "vhost_net" ];')),
        ("virt.iommu", fixed(p, "IOMMU enabled (24 groups): PCI passthrough possible")),
        ("host.root-space", fixed(p, "root file system (/): 61.2 GiB free of 98.0 GiB (62 %)")),
        ("host.failed-units", fixed(f, "1 failed systemd unit: restic-backups-web-01.service",
                                    "journalctl -b -u <unit> says why; systemctl reset-failed <unit> once dealt with",
                                    detail="restic-backups-web-01.service  restic backup web-01")),
        ("host.time", fixed(p, "the clock is synchronised (timedatectl)")),
        ("libvirt.connection", fixed(p, "libvirt 10.0.0, QEMU 8.2.2 on hv-demo, read-write")),
        ("libvirt.default-network", fixed(f, "network default is not active: VMs on it cannot start (web-01)",
                                          "also set it to start with the host (a in pane 3)",
                                          virtchecks._start_network("default"))),
        ("libvirt.pool-space", fixed(w, "low space: fast: 9.5 GiB free of 100.0 GiB (9 %)",
                                     "grow the file system, or delete volumes (pane 4)",
                                     detail="default: 402.1 GiB free of 500.0 GiB (80 %)\nfast: 9.5 GiB free of "
                                            "100.0 GiB (9 %)")),
        ("nixos.drift", fixed(w, "fragments differ from the running system (changed: network)",
                              "`hyperconsole rebuild switch` applies them")),
        ("nixos.trial", fixed(p, "no host change on trial")),
        ("nixos.ssh", fixed(s, "needs root: sshd -T reads the host keys", "run `sudo hyperconsole doctor` to include it")),
        ("access.user", fixed(p, "operator (groups: hyperconsole-operators, operator): may manage libvirt")),
    ]
    what = {c.id: c.what for c in CHECKS}
    return tuple(Check(check_id, what[check_id], run) for check_id, run in rows)


async def doctor(pilot) -> None:
    app = pilot.app
    app.doctor_checks = doctor_sample()
    await pilot.press("7")
    await settle(pilot)
    app.screen.view.move_to("libvirt.default-network")
    await settle(pilot)


SCENES: dict[str, Callable[..., Awaitable[None]]] = {
    "vms": vms,
    "dashboard": dashboard,
    "details": details,
    "create": create,
    "snapshots": snapshots,
    "networks": networks,
    "storage": storage,
    "security": security,
    "backups": backups,
    "help": help_,
    "filtered": filtered,
    "narrow": narrow,
    "doctor": doctor,
}


async def tasklog(pilot) -> None:
    """A few operations, then the task log. Its times follow the clock, so it is a screenshot
    only, not a layout snapshot."""
    for name, key in (("win11-desktop", "s"), ("old-monitoring", "s"), ("web-02", "p")):
        await cursor_to(pilot, name)
        await pilot.press(key)
        await settle(pilot)
    await pilot.press("l")
    await settle(pilot)


SCREENSHOT_ONLY: dict[str, Callable[..., Awaitable[None]]] = {"tasklog": tasklog, "backups-demo": backups_demo}


def demo_config(**changes) -> Config:
    """Exactly what `hyperconsole --demo` runs with (scratch NixOS dir, demo rebuild), plus changes."""
    return cli.resolve(cli.build_parser().parse_args(["--demo"])).replace(**changes)


def demo_app(host_sampler: HostSampler | None = None, refresh: float = 3600.0, *, simulated: bool = False,
             **changes) -> HyperconsoleApp:
    """The demo app; the default long refresh means a picture is taken after the first tick.
    `simulated`: VM figures from the demo's stats source, as `--demo` shows them (they follow the
    clock, so layout snapshots leave them out)."""
    config = demo_config(refresh=refresh, **changes)
    manager = ConnectionManager(config.uri)
    manager.connect()
    demo.prepare(manager)
    sampler = DomainSampler(manager, stats_source=SimulatedStats()) if simulated else None
    return HyperconsoleApp(manager, config, demo=True, host_sampler=host_sampler, sampler=sampler,
                           backup_parts=demo_backup.parts())


# -- a fleet: the demo's VMs dealt out over three test-driver hosts (`--demo --demo-hosts 3`) -------


async def fleet(pilot) -> None:
    """One VM list over three hosts: the Host column, the cursor on a VM of the second host."""
    app = pilot.app
    app.screen.view.move_to(next(d.key for d in app.view.domains.values() if d.name == "web-02"))
    await pilot.pause()


async def fleet_dashboard(pilot) -> None:
    await pilot.press("1")
    for _ in range(3):
        await settle(pilot)
        await pilot.pause(0.3)


FLEET_SCENES: dict[str, Callable[..., Awaitable[None]]] = {"fleet": fleet, "fleet-dashboard": fleet_dashboard}


def demo_fleet_app(host_sampler: HostSampler | None = None, refresh: float = 3600.0, *, hosts: int = 3,
                   simulated: bool = False) -> HyperconsoleApp:
    """`hyperconsole --demo --demo-hosts 3`: every host opened before the app starts, so a picture
    holds all of them."""
    from hyperconsole.virt.fleet import Fleet

    config = cli.resolve(cli.build_parser().parse_args(["--demo", "--demo-hosts", str(hosts)])).replace(
        refresh=refresh)
    group = Fleet(config.hosts)
    group.open_all(retry=False)
    for host in group:
        demo.prepare(host.manager)
    stats = SimulatedStats() if simulated else None
    return HyperconsoleApp(group.manager(config.hosts[0].name), config, demo=True, host_sampler=host_sampler,
                           fleet=group, sampler_factory=lambda m, h: DomainSampler(m, host=h, stats_source=stats))


# -- the setup wizard: its own app, on pinned host facts so the pictures depend only on our code ----

SETUP_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKGEs0Fr+y+2lp2eebTuWdqO4YRkdZh//2XznIBh2y5w alice@laptop"  # the example answers' key


def setup_app(state_dir) -> "SetupApp":
    """The wizard as `hyperconsole setup --demo` shows it, with a fixed host: two NICs (one with
    link), the shipped profiles, a preflight of a typical small server; answers kept in `state_dir`."""
    from pathlib import Path

    from hyperconsole import profiles
    from hyperconsole.doctor.model import Result, Status
    from hyperconsole.host.interfaces import InterfaceInfo, Uplink
    from hyperconsole.screens.setup import SetupApp
    from hyperconsole.setup import preflight
    from hyperconsole.setup.guard import Session
    from hyperconsole.setup.validate import HostFacts, timezones

    def nic(name, carrier, speed):
        return InterfaceInfo(name, 2, "physical", None, "up" if carrier else "down", carrier, speed, 1500, None, (), None)

    facts = HostFacts(interfaces=(nic("eno1", True, 1000), nic("eno2", False, None)), uplink=Uplink(frozenset({"eno1"})),
                      timezones=timezones(), catalog=profiles.load_catalog(), volume_groups=("vg0",),
                      nested_capable=True, cpu_vendor="intel", session=Session("root", {"root": 1}),
                      ssh_interface="eno1")
    p, w = Status.PASS, Status.WARN
    rows = [  # what the preflight says of a typical small server, in its order
        (p, "the CPU has hardware virtualisation (Intel VT-x, vmx)", ""),
        (p, "/dev/kvm is there and this user can open it", ""),
        (p, "IOMMU enabled (24 groups): PCI passthrough possible", ""),
        (w, "memory: 16.0 GiB; 32.0 GiB recommended for production",
         "enough for testing; add more before production"),
        (p, "CPUs: 16", ""),
        (p, "free space for /var/lib/libvirt/images: 1.7 TiB (file system of /var)", ""),
        (p, "NICs: eno1 (link, 1000 Mb/s), eno2 (no link)", ""),
        (p, "bare metal: not running inside a VM", ""),
        (p, "NixOS 25.05 (warbler)", ""),
        (p, "channels (/etc/nixos/configuration.nix)", ""),
        (w, "configuration.nix does not import ./hyperconsole yet", "the wizard adds it on apply (Add the import: yes)"),
    ]
    checks = [Result(c.id, c.what, status, why, hint)
              for c, (status, why, hint) in zip(preflight.checks(facts.interfaces), rows, strict=True)]
    return SetupApp(demo_config(), demo=True, secrets_dir=Path(state_dir) / "secrets", facts=facts, checks=checks,
                    answers_path=Path(state_dir) / "answers.json")


async def _setup_step(pilot, name: str) -> None:
    from hyperconsole.screens.setup import StepForm

    for _ in range(50):
        await settle(pilot)
        screen = pilot.app.screen
        if isinstance(screen, StepForm) and screen.step.name == name:
            return
    raise AssertionError(f"the wizard never reached {name}")


async def _setup_fill(pilot, values: dict) -> None:
    for key, value in values.items():
        pilot.app.screen.widget(key).value = value
    await pilot.press("ctrl+s")
    await settle(pilot)


async def setup_preflight(pilot) -> None:
    await _setup_step(pilot, "preflight")


async def setup_identity(pilot) -> None:
    await setup_preflight(pilot)
    await pilot.press("ctrl+s")
    await _setup_step(pilot, "identity")
    await _setup_fill(pilot, {"hostname": "hv1..lab", "timezone": "Europe/Berlin", "admin": "alice", "key1": SETUP_KEY})


async def setup_network(pilot) -> None:
    await setup_identity(pilot)
    await _setup_fill(pilot, {"hostname": "hv1.lab.example.com"})
    await _setup_step(pilot, "network")
    await _setup_fill(pilot, {"mode": "static", "address": "192.0.2.10/24", "gateway": "198.51.100.1", "dns": "192.0.2.53"})


async def setup_review(pilot) -> None:
    from hyperconsole.screens.setup import ReviewScreen

    await setup_network(pilot)
    await _setup_fill(pilot, {"gateway": "192.0.2.1"})
    for step in ("storage", "virtualisation", "security", "backups"):
        await _setup_step(pilot, step)
        await pilot.press("ctrl+s")
    for _ in range(50):
        await settle(pilot)
        if isinstance(pilot.app.screen, ReviewScreen) and pilot.app.screen.plan is not None:
            return
    raise AssertionError("the review never showed a plan")


# name -> (terminal size, scene) for the wizard's pictures
SETUP_SCENES: dict[str, tuple[tuple[int, int], Callable[..., Awaitable[None]]]] = {
    "setup-preflight": ((80, 24), setup_preflight),
    "setup-identity": ((80, 24), setup_identity),
    "setup-network": ((200, 50), setup_network),
    "setup-review": ((200, 50), setup_review),
}
