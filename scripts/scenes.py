"""The screens worth a picture, as key presses on the demo host. Used by scripts/screenshots.py
(README images) and tests/snapshots (layout regression tests), so both show the same thing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hyperconsole import cli
from hyperconsole.app import HyperconsoleApp
from hyperconsole.config import Config
from hyperconsole.host.metrics import HostSampler
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


SCENES: dict[str, Callable[..., Awaitable[None]]] = {
    "vms": vms,
    "dashboard": dashboard,
    "details": details,
    "create": create,
    "snapshots": snapshots,
    "networks": networks,
    "storage": storage,
    "security": security,
    "help": help_,
    "filtered": filtered,
    "narrow": narrow,
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


SCREENSHOT_ONLY: dict[str, Callable[..., Awaitable[None]]] = {"tasklog": tasklog}


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
    return HyperconsoleApp(manager, config, demo=True, host_sampler=host_sampler, sampler=sampler)
