"""Several test-driver hosts in one console (one fixture XML per host per test): one VM list with
a Host column and `host:` filter, actions landing on the row's own host, a bulk action across
hosts, a hung host that delays no other, migration by keyboard."""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager

import libvirt
import pytest

from hyperconsole.app import HyperconsoleApp
from hyperconsole.config import Config
from hyperconsole.hosts import HostSpec
from hyperconsole.screens.dashboard import DashboardScreen
from hyperconsole.virt.fleet import Fleet
from hyperconsole.virt.models import DomainState
from hyperconsole.virt.sampler import DomainSampler
from hyperconsole.widgets.statusbar import StatusBar
from tests.fixtures import build_host_xml, domain_xml, network_xml, pool_xml, test_uri
from tests.ui.conftest import Harness, fill_form, text_of, wait_until


def host_xml(*domains, networks=("default",)):
    return build_host_xml(domains=list(domains), networks=[network_xml(n, mode=None) for n in networks],
                          pools=[pool_xml("default", "/var/lib/libvirt/images")])


@pytest.fixture
def make_fleet(tmp_path):
    @asynccontextmanager
    async def factory(hosts: dict[str, str], *, readonly=False, sampler=None, patch=None):
        specs = [HostSpec(name, test_uri(tmp_path, xml, f"{name}.xml"), str(tmp_path / name))
                 for name, xml in hosts.items()]
        fleet = Fleet(specs, readonly=readonly)
        fleet.open_all(deadline=10, retry=False)
        if patch is not None:
            patch(fleet)
        app = HyperconsoleApp(fleet.manager(specs[0].name), Config(refresh=30.0), fleet=fleet,
                              sampler_factory=sampler)
        messages: list = []
        try:
            async with app.run_test(size=(160, 45), message_hook=messages.append) as pilot:
                harness = FleetHarness(app, pilot, messages)
                await harness.settle()
                yield harness
        finally:
            fleet.close()

    return factory


class FleetHarness(Harness):
    def row(self, host: str, name: str):
        return next(d for d in self.app.view.domains.values() if d.name == name and d.host == host)

    async def cursor_on(self, host: str, name: str) -> None:
        self.app.screen.view.move_to(self.row(host, name).key)
        await self.pilot.pause()

    def conn(self, host: str) -> libvirt.virConnect:
        return self.app.manager_of(host).conn

    def notes(self) -> list[str]:
        return [f"{n.title}: {n.message}" for n in self.app._notifications]


TWO = {
    "alpha": host_xml(domain_xml("web", "shutoff"), domain_xml("db", "running")),
    "beta": host_xml(domain_xml("web", "shutoff", uuid="11111111-2222-3333-4444-555555555555"),
                     domain_xml("cache", "running")),
}


async def test_one_list_with_a_host_column_and_a_host_filter(make_fleet):
    async with make_fleet(TWO) as h:
        view = h.app.screen.view
        assert [c.key for c in view.columns][:2] == ["name", "host"]
        assert {(d.host, d.name) for d in h.app.view.domains.values()} == {
            ("alpha", "web"), ("alpha", "db"), ("beta", "web"), ("beta", "cache")}
        assert h.row("beta", "web").key == "beta/11111111-2222-3333-4444-555555555555"
        await h.pilot.press("slash", *"host:beta")
        await h.pilot.pause()
        assert sorted(h.app.view.domains[k].name for k in view.shown_keys()) == ["cache", "web"]
        await h.pilot.press("space")  # a word after host: narrows further
        await h.pilot.press(*"cac", "enter")
        assert [h.app.view.domains[k].name for k in view.shown_keys()] == ["cache"]
        assert "2 hosts" in h.app.screen.query_one(StatusBar).render().plain


async def test_an_action_lands_on_the_rows_own_host(make_fleet):
    async with make_fleet(TWO) as h:
        await h.cursor_on("beta", "web")
        await h.pilot.press("s")
        await wait_until(h.pilot, lambda: h.row("beta", "web").state is DomainState.RUNNING, 20)
        assert h.conn("beta").lookupByName("web").isActive()
        assert not h.conn("alpha").lookupByName("web").isActive()  # the namesake on alpha is untouched
        assert h.row("alpha", "web").state is DomainState.SHUTOFF
        assert [(t.label, t.target) for t in h.app.tasks.tasks] == [("start web on beta", "web on beta")]


async def test_a_bulk_action_spans_hosts_and_reports_each_vm(make_fleet):
    async with make_fleet(TWO) as h:
        view = h.app.screen.view
        view.selected |= {h.row("alpha", "db").key, h.row("beta", "cache").key}
        await h.pilot.press("X")  # force off asks, naming every target and its host
        question = text_of(h.app.screen.query_one(".question"))
        assert "Force off 2 VMs:" in question and "db on alpha" in question and "cache on beta" in question
        await h.pilot.press("y")
        await wait_until(h.pilot, lambda: not h.conn("alpha").lookupByName("db").isActive()
                         and not h.conn("beta").lookupByName("cache").isActive(), 20)
        await wait_until(h.pilot, lambda: len([t for t in h.app.tasks.tasks if t.ended]) == 2, 20)
        assert sorted(t.label for t in h.app.tasks.tasks) == ["force off cache on beta", "force off db on alpha"]
        assert all(t.error is None or t.error == "" for t in h.app.tasks.tasks)


async def test_a_hung_host_delays_no_other(make_fleet, monkeypatch):
    """Every libvirt stats call of beta blocks; alpha's rows still follow alpha at once, and beta's
    rows are kept, marked stale, with the stuck call named per host."""
    release = threading.Event()
    real_all, real_list = libvirt.virConnect.getAllDomainStats, libvirt.virConnect.domainListGetStats
    hung_uri: list[str] = []

    def hangs(conn) -> bool:
        return conn.getURI() in hung_uri

    def all_stats(self, *args):
        if hangs(self):
            release.wait(60)
        return real_all(self, *args)

    def list_stats(self, *args):
        if hangs(self):
            release.wait(60)
        return real_list(self, *args)

    sampler = lambda m, host: DomainSampler(m, host=host, deadline=1.0, call_deadline=0.5)  # noqa: E731
    async with make_fleet(TWO, sampler=sampler) as h:
        monkeypatch.setattr(libvirt.virConnect, "getAllDomainStats", all_stats)
        monkeypatch.setattr(libvirt.virConnect, "domainListGetStats", list_stats)
        hung_uri.append(h.conn("beta").getURI())
        try:
            h.app.poll_domains("beta")  # beta's tick now hangs on its call thread
            await h.pilot.pause(0.2)
            h.conn("alpha").lookupByName("web").create()
            h.app.poll_domains("alpha")
            await wait_until(h.pilot, lambda: h.row("alpha", "web").state is DomainState.RUNNING, 3)
            await wait_until(h.pilot, lambda: "beta: " in h.app.screen.query_one(StatusBar).message
                             and "stuck for" in h.app.screen.query_one(StatusBar).message, 20)
            assert h.row("beta", "cache").stale_seconds is not None
            assert h.row("alpha", "db").stale_seconds is None
        finally:
            release.set()
        await h.settle()


async def test_live_migration_on_the_test_driver_is_refused_in_one_line(make_fleet):
    async with make_fleet(TWO) as h:
        await h.cursor_on("alpha", "db")
        await h.pilot.press("m")
        await fill_form(h.pilot, {"to": "beta"})
        await wait_until(h.pilot, lambda: any("Migration refused" in n for n in h.notes()), 10)
        note = next(n for n in h.notes() if "Migration refused" in n)
        assert "db on alpha → beta" in note and "test driver, which cannot migrate a running VM" in note
        assert h.conn("alpha").lookupByName("db").isActive()  # nothing started
        assert h.app.migration is None and not h.app.tasks.tasks


async def test_a_missing_network_is_refused_before_anything_starts(make_fleet):
    hosts = {"alpha": host_xml(domain_xml("web", "shutoff", nics=["lan"]), networks=("default", "lan")),
             "beta": host_xml()}
    async with make_fleet(hosts) as h:
        await h.cursor_on("alpha", "web")
        await h.pilot.press("m")
        await fill_form(h.pilot, {"to": "beta"})
        await wait_until(h.pilot, lambda: any("Migration refused" in n for n in h.notes()), 10)
        assert any("the target host has no network 'lan'" in n for n in h.notes())
        assert h.conn("alpha").lookupByName("web").isPersistent()


async def test_a_shut_off_vm_migrates_offline_by_keyboard(make_fleet):
    async with make_fleet(TWO) as h:
        await h.cursor_on("beta", "cache")
        h.conn("beta").lookupByName("cache").destroy()
        await wait_until(h.pilot, lambda: h.row("beta", "cache").state is DomainState.SHUTOFF, 10)
        await h.pilot.press("m")
        await fill_form(h.pilot, {"to": "alpha"})
        await wait_until(h.pilot, lambda: "Migrate VM cache offline from beta to alpha?"
                         in text_of(h.app.screen.query_one(".question")), 10)
        await h.pilot.press("y")
        await wait_until(h.pilot, lambda: any(t.ended for t in h.app.tasks.tasks), 20)
        (task,) = h.app.tasks.tasks
        assert task.label == "migrate cache beta → alpha" and not task.error
        assert h.conn("alpha").lookupByName("cache").isPersistent()
        assert "cache" not in [d.name() for d in h.conn("beta").listAllDomains()]
        await wait_until(h.pilot, lambda: any(d.name == "cache" and d.host == "alpha"
                                              for d in h.app.view.domains.values()), 10)
        assert not any(d.name == "cache" and d.host == "beta" for d in h.app.view.domains.values())
        assert h.app.migration is None and "migrate" not in h.app.screen.query_one(StatusBar).message


async def test_readonly_fleet_hides_migration(make_fleet):
    async with make_fleet(TWO, readonly=True) as h:
        await h.cursor_on("alpha", "web")
        await h.pilot.press("m")
        await h.pilot.pause()
        assert h.app.screen.is_current and not h.app.tasks.tasks  # no form: the key does nothing


async def test_dashboard_has_a_row_per_host(make_fleet):
    async with make_fleet(TWO) as h:
        await h.pilot.press("1")
        await wait_until(h.pilot, lambda: "beta" in text_of(h.app.screen.query_one("#fleet-hosts")), 20)
        assert isinstance(h.app.screen, DashboardScreen)
        text = text_of(h.app.screen.query_one("#fleet-hosts"))
        assert "alpha" in text and "connected" in text and "1 running" in text


async def test_host_change_panes_say_which_host_they_act_on(make_fleet, tmp_path):
    """With a fleet, Networks and Security name the host their changes go to; h switches it. A
    remote host's interfaces are not read here: the pane says so in one line and hides the host
    network actions rather than acting on this machine."""
    async with make_fleet(TWO) as h:
        remote = HostSpec("gamma", "qemu+ssh://root@gamma.example/system", str(tmp_path / "hosts" / "gamma"),
                          target_host="root@gamma.example")
        local = [HostSpec(name, h.app.manager_of(name).uri, str(tmp_path / "nixos")) for name in ("alpha", "beta")]
        h.app.config = h.app.config.replace(fleet=(*local, remote))
        await h.pilot.press("3")
        await h.settle()
        banner = lambda: " ".join(text_of(h.app.screen.query_one("#acting-host")).split())  # noqa: E731
        assert "Host changes act on alpha (this machine" in banner() and "h switches host" in banner()
        assert h.app.screen.check_action("act", ("networks.bridge",))
        await h.pilot.press("h", "h")
        await h.settle()
        assert "Host changes act on gamma (remote: nixos-rebuild --target-host root@gamma.example" in banner()
        assert "Host interfaces of gamma are not read from here" in banner()
        assert not h.app.screen.check_action("act", ("networks.bridge",))
        assert not h.app.screen.check_action("act", ("networks.firewall",))
        assert h.app.change_config.target_host == "root@gamma.example"
        assert h.app.change_config.nixos_dir == str(tmp_path / "hosts" / "gamma")
        await h.pilot.press("6")
        await h.settle()
        assert "Host changes act on gamma" in text_of(h.app.screen.query_one("#acting-host"))
        await h.pilot.press("5")
        await h.settle()
        assert "Backups of gamma run there" in banner()
        assert not h.app.screen.check_action("act", ("bjobs.run",))
        assert h.app.screen.check_action("act", ("bjobs.new",))  # its job definitions go to its checkout
        await h.pilot.press("h")
        await h.settle()
        assert "Host changes act on alpha" in text_of(h.app.screen.query_one("#acting-host"))


async def test_the_console_starts_before_its_hosts_answer(tmp_path):
    """As `--hosts FILE` starts it: the app is up while the hosts open on their own threads; each
    host's rows appear when it answers, and one that cannot be opened is named in the status bar
    while the others' rows are shown."""
    specs = [HostSpec(name, test_uri(tmp_path, xml, f"{name}.xml"), str(tmp_path / name)) for name, xml in TWO.items()]
    specs.append(HostSpec("gone", "test://" + str(tmp_path / "missing.xml"), str(tmp_path / "gone")))
    fleet = Fleet(specs)
    app = HyperconsoleApp(fleet.manager("alpha"), Config(refresh=30.0), fleet=fleet)
    release = threading.Event()

    def open_all() -> None:
        release.wait(10)
        fleet.open_all(on_open=app.host_opened)

    threading.Thread(target=open_all, daemon=True).start()
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.pause(0.2)
            assert app.is_running and not app.view.domains
            release.set()
            await wait_until(pilot, lambda: {d.host for d in app.view.domains.values()} == {"alpha", "beta"}, 20)
            await wait_until(pilot, lambda: "gone disconnected (no sample yet)"
                             in app.screen.query_one(StatusBar).message, 20)
            assert "3 hosts" in app.screen.query_one(StatusBar).render().plain
    finally:
        fleet.close()


def test_several_connects_and_demo_hosts_open_a_fleet(tmp_path, monkeypatch):
    from hyperconsole import cli

    seen = []
    monkeypatch.setattr(cli, "run_fleet_tui", lambda args, config: seen.append(config) or 0)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    a, b = (test_uri(tmp_path, xml, f"{name}.xml") for name, xml in TWO.items())
    assert cli.main(["--connect", a, "--connect", b]) == 0
    assert [(h.name, h.uri) for h in seen[-1].fleet] == [("local", a), ("local-2", b)]
    assert cli.main(["--demo", "--demo-hosts", "3"]) == 0
    demo = seen[-1].fleet
    assert [h.name for h in demo] == ["demo", "demo-b", "demo-c"] and len({h.uri for h in demo}) == 3
    names = []
    for host in demo:
        conn = libvirt.open(host.uri)
        names.append({d.name() for d in conn.listAllDomains()})
        conn.close()
    assert not names[0] & names[1] and sum(map(len, names)) == 17  # the demo's VMs, dealt out


async def test_a_host_that_goes_away_is_stale_then_reconnects_alone(make_fleet, tmp_path):
    """beta's connection drops and its host file is gone: its rows stay, marked stale, the status
    bar names it with its last sample; alpha goes on. When beta can be opened again it reconnects
    by itself and its rows are fresh."""
    async with make_fleet(TWO) as h:
        beta = h.app.manager_of("beta")
        path = tmp_path / "beta.xml"
        path.rename(tmp_path / "beta.away")
        beta.connection_lost("the host went away")
        h.app.poll_domains("beta")
        bar = lambda: h.app.screen.query_one(StatusBar).message  # noqa: E731
        await wait_until(h.pilot, lambda: "beta disconnected (last sample " in bar()
                         or "beta connecting (last sample " in bar(), 20)
        await wait_until(h.pilot, lambda: h.row("beta", "cache").stale_seconds is not None, 20)
        assert "s old" in h.app.screen.view.table.get_cell(h.row("beta", "cache").key, "state").plain
        h.conn("alpha").lookupByName("web").create()
        h.app.poll_domains("alpha")
        await wait_until(h.pilot, lambda: h.row("alpha", "web").state is DomainState.RUNNING, 10)
        (tmp_path / "beta.away").rename(path)
        await wait_until(h.pilot, lambda: h.row("beta", "cache").stale_seconds is None and "beta" not in bar(), 30)


async def test_a_bad_migration_address_keeps_the_form_open(make_fleet):
    from tests.ui.conftest import form_errors

    async with make_fleet(TWO) as h:
        await h.cursor_on("alpha", "db")
        await h.pilot.press("m")
        await fill_form(h.pilot, {"to": "beta", "via": "http://beta"})
        assert form_errors(h.app.screen) == {"via": "not a migration address: 'http://beta' (like tcp://10.0.0.2 or "
                                                    "tcp://10.0.0.2:49152)"}
        assert not any("Migration refused" in n for n in h.notes())
