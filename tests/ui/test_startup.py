"""Start-up: the app starts while the connection is still opening on another thread, paints the
rows once it opened, and exits with the one-line reason when it did not."""

from __future__ import annotations

import threading
from concurrent.futures import Future

from hyperconsole.app import HyperconsoleApp
from hyperconsole.config import Config
from hyperconsole.errors import HyperconsoleError
from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt.models import ConnectionState
from hyperconsole.virt.sampler import DomainSampler
from tests.fixtures import test_uri
from tests.ui.conftest import default_host, wait_until, workers_done


async def test_rows_are_painted_when_the_connection_opened_after_the_app_started(tmp_path):
    manager = ConnectionManager(test_uri(tmp_path, default_host()))
    sampler = DomainSampler(manager)
    opening: Future = Future()
    app = HyperconsoleApp(manager, Config(refresh=30.0), sampler=sampler, opening=opening)
    release = threading.Event()

    def connect() -> None:
        release.wait(10)
        manager.connect()
        opening.set_result(sampler.tick())

    threading.Thread(target=connect, daemon=True).start()
    async with app.run_test(size=(150, 45)) as pilot:
        await pilot.pause(0.2)
        view = app.screen.view
        assert view.table.row_count == 0 and app.is_running  # up and answering while it opens
        await pilot.press("slash", "escape")
        release.set()
        await wait_until(pilot, lambda: view.table.row_count == 8, 10)
        assert app.view.connection is ConnectionState.ACTIVE and not app.view.readonly
        await wait_until(pilot, lambda: app._background_started, 5)
        await workers_done(app)
        assert not app.view.poll_errors


async def test_a_connection_that_does_not_open_ends_the_app_with_its_reason(tmp_path):
    manager = ConnectionManager(test_uri(tmp_path, default_host()))
    opening: Future = Future()
    app = HyperconsoleApp(manager, Config(refresh=30.0), sampler=DomainSampler(manager), opening=opening)
    async with app.run_test(size=(150, 45)) as pilot:
        await pilot.pause(0.1)
        opening.set_exception(HyperconsoleError("cannot connect to test:///x: no answer"))
        await wait_until(pilot, lambda: not app.is_running, 10)
    assert app.return_code == 1 and str(app.start_error) == "cannot connect to test:///x: no answer"
