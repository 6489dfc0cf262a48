"""The screens worth a picture, as key presses on the demo host. Used by scripts/screenshots.py
(README images) and tests/snapshots (layout regression tests), so both show the same thing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hyperconsole.app import HyperconsoleApp
from hyperconsole.config import Config
from hyperconsole.host.metrics import HostSampler
from hyperconsole.virt import demo
from hyperconsole.virt.connection import ConnectionManager

SIZE = (150, 42)


async def settle(pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def cursor_to(pilot, name: str) -> None:
    app = pilot.app
    uuid = next(d.uuid for d in app.view.domains.values() if d.name == name)
    table = app.screen.table
    table.move_cursor(row=table.get_row_index(uuid))
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


async def help_(pilot) -> None:
    await pilot.press("question_mark")
    await settle(pilot)


SCENES: dict[str, Callable[..., Awaitable[None]]] = {
    "vms": vms,
    "dashboard": dashboard,
    "details": details,
    "create": create,
    "snapshots": snapshots,
    "help": help_,
}


def demo_app(host_sampler: HostSampler | None = None, refresh: float = 3600.0) -> HyperconsoleApp:
    """The demo app; the default long refresh means a picture is taken after the first tick."""
    manager = ConnectionManager(demo.demo_uri())
    manager.connect()
    demo.prepare(manager)
    return HyperconsoleApp(manager, Config(refresh=refresh), demo=True, host_sampler=host_sampler)
