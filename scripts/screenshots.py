"""Regenerate screenshots/*.svg from the demo host: `./run screenshots`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.scenes import SCENES, SCREENSHOT_ONLY, SIZE, demo_app, settle  # noqa: E402


async def shoot(name: str, scene, out: Path) -> Path:
    # A short refresh so the dashboard's sparklines hold a few seconds of real host history and
    # the VM list its simulated figures (rates need two samples).
    app = demo_app(refresh=0.25, simulated=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(6 if name == "dashboard" else 1)
        await scene(pilot)
        await settle(pilot)
        path = out / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(out))
    return path


def main() -> None:
    out = ROOT / "screenshots"
    out.mkdir(exist_ok=True)
    for name, scene in (SCENES | SCREENSHOT_ONLY).items():
        print(asyncio.run(shoot(name, scene, out)).relative_to(ROOT))


if __name__ == "__main__":
    main()
