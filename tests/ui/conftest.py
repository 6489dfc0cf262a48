"""Pilot harness: the real app on a per-test test-driver host, messages recorded."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import pytest

from hyperconsole.app import HyperconsoleApp
from hyperconsole.config import Config
from hyperconsole.virt.connection import ConnectionManager
from tests.fixtures import build_host_xml, domain_xml, pool_xml, network_xml, test_uri, volume_xml

NAMES = ["web [red]x", "${evil}", 'quote"d', "café-ü"]


def default_host() -> str:
    return build_host_xml(
        domains=[
            domain_xml("alpha", "running", vcpus=2, memory_mib=1024,
                       disks=[{"pool": "default", "volume": "alpha.qcow2"}],
                       snapshots=[{"name": "base", "description": "fresh install"},
                                  {"name": "patched", "parent": "base", "description": "after updates"}]),
            domain_xml("bravo", "paused"),
            domain_xml("charlie", "shutoff", disks=[{"pool": "default", "volume": "charlie.qcow2"}]),
            domain_xml("delta", "crashed"),
            *[domain_xml(name, "shutoff") for name in NAMES],
        ],
        networks=[network_xml("default", ip="192.168.122.1", dhcp=("192.168.122.2", "192.168.122.254"))],
        pools=[pool_xml("default", "/var/lib/libvirt/images",
                        volumes=[volume_xml("alpha.qcow2"), volume_xml("charlie.qcow2")])],
    )


async def workers_done(app) -> None:
    """Wait for the app's workers. An exclusive worker cancelled by a newer one of its group has
    nothing left to wait for (WorkerCancelled); a worker that failed still fails the test."""
    from textual.worker import WorkerCancelled

    for worker in list(app.workers):
        try:
            await worker.wait()
        except WorkerCancelled:
            pass


class Harness:
    def __init__(self, app: HyperconsoleApp, pilot, messages: list) -> None:
        self.app = app
        self.pilot = pilot
        self.messages = messages

    async def settle(self, rounds: int = 3) -> None:
        """Let workers finish and their messages be handled."""
        for _ in range(rounds):
            await self.pilot.pause()
            await workers_done(self.app)
        await self.pilot.pause()

    def domain(self, name: str):
        return next(d for d in self.app.view.domains.values() if d.name == name)

    async def cursor_to(self, name: str) -> None:
        self.app.screen.view.move_to(self.domain(name).uuid)
        await self.pilot.pause()

    def of_type(self, kind):
        return [m for m in self.messages if isinstance(m, kind)]


@pytest.fixture
def make_app(tmp_path):
    @asynccontextmanager
    async def factory(xml: str | None = None, *, readonly: bool = False, size=(150, 45), config: Config | None = None,
                      sampler=None):
        uri = test_uri(tmp_path, xml or default_host())
        manager = ConnectionManager(uri, readonly=readonly)
        manager.connect()
        app = HyperconsoleApp(manager, config or Config(refresh=30.0), sampler=sampler and sampler(manager))
        messages: list = []
        async with app.run_test(size=size, message_hook=messages.append) as pilot:
            harness = Harness(app, pilot, messages)
            await harness.settle()
            yield harness

    return factory


def text_of(widget) -> str:
    """What a Static shows, as plain text (Rich renderables rendered off-screen)."""
    from rich.console import Console

    content = widget.content
    if isinstance(content, str):
        return content
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(content)
    return console.export_text()


def screen_text(app) -> str:
    """Everything the compositor would send to the terminal for the current screen."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


async def wait_until(pilot, predicate, seconds: float) -> None:
    """Poll (letting workers finish) until `predicate()` holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await pilot.pause(0.1)
        await workers_done(pilot.app)
        if predicate():
            return
    raise AssertionError("condition not met in time")


async def fill_form(pilot, values: dict, *, submit: bool = True) -> None:
    """Set fields of the open Form by key (text for inputs, an option's value for selects), then
    submit with ctrl+s and let what it started finish."""
    from hyperconsole.widgets.form import Form

    form = pilot.app.screen
    assert isinstance(form, Form), form
    for key, value in values.items():
        form.widget(key).value = value
    await pilot.pause()
    if submit:
        await pilot.press("ctrl+s")
        for _ in range(3):
            await pilot.pause()
            await workers_done(pilot.app)
        await pilot.pause()


def form_errors(form) -> dict[str, str]:
    """The inline error under each field that has one, and the form's own (key "")."""
    errors = {f.key: text_of(form.query_one(f"#e-{f.key}")) for f in form.fields}
    errors[""] = text_of(form.query_one("#form-error"))
    return {key: text for key, text in errors.items() if text}
