"""Regenerate screenshots/*.svg from the demo host: `./run screenshots`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.scenes import (  # noqa: E402
    FLEET_SCENES, SCENES, SCREENSHOT_ONLY, SETUP_SCENES, SIZE, demo_app, demo_fleet_app, settle, setup_app,
)


async def shoot(name: str, scene, out: Path, make=demo_app) -> Path:
    # A short refresh so the dashboard's sparklines hold a few seconds of real host history and
    # the VM list its simulated figures (rates need two samples).
    app = make(refresh=0.25, simulated=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(6 if "dashboard" in name else 1)
        await scene(pilot)
        await settle(pilot)
        path = out / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(out))
    return path


async def shoot_setup(name: str, out: Path) -> Path:
    import tempfile

    size, scene = SETUP_SCENES[name]
    with tempfile.TemporaryDirectory() as state:
        app = setup_app(state)
        async with app.run_test(size=size) as pilot:
            await scene(pilot)
            await settle(pilot)
            app.save_screenshot(filename=f"{name}.svg", path=str(out))
    return out / f"{name}.svg"


def main() -> None:
    out = ROOT / "screenshots"
    out.mkdir(exist_ok=True)
    for name, scene in (SCENES | SCREENSHOT_ONLY).items():
        print(asyncio.run(shoot(name, scene, out)).relative_to(ROOT))
    for name, scene in FLEET_SCENES.items():
        print(asyncio.run(shoot(name, scene, out, demo_fleet_app)).relative_to(ROOT))
    for name in SETUP_SCENES:
        print(asyncio.run(shoot_setup(name, out)).relative_to(ROOT))


if __name__ == "__main__":
    main()
