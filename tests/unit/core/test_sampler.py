"""DomainSampler on per-test test-driver hosts: inventory diff, calls per tick, rates."""

from __future__ import annotations

import libvirt
import pytest

from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt.models import DomainState
from hyperconsole.virt.sampler import DomainSampler, _Counters
from tests.fixtures import build_host_xml, domain_xml, test_uri


def _manager(tmp_path, *domains) -> ConnectionManager:
    manager = ConnectionManager(test_uri(tmp_path, build_host_xml(domains=list(domains))))
    manager.connect()
    return manager


def test_first_tick_lists_every_domain_with_state_and_size(tmp_path):
    manager = _manager(tmp_path, domain_xml("web", "running", vcpus=2, memory_mib=1024),
                       domain_xml("db", "paused"), domain_xml("old", "shutoff"), domain_xml("bad", "crashed"))
    tick = DomainSampler(manager).tick()
    by_name = {d.name: d for d in tick.domains.values()}
    assert {n: d.state for n, d in by_name.items()} == {
        "web": DomainState.RUNNING, "db": DomainState.PAUSED,
        "old": DomainState.SHUTOFF, "bad": DomainState.CRASHED}
    assert by_name["web"].vcpus == 2 and by_name["web"].memory_kib == 1024 * 1024
    assert tick.diff.added == frozenset(tick.domains) and not tick.diff.removed


def test_steady_state_calls_do_not_grow_with_vm_count(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    few = _manager(tmp_path / "a", *[domain_xml(f"vm{i}") for i in range(3)])
    many = _manager(tmp_path / "b", *[domain_xml(f"vm{i}") for i in range(60)])
    sampler_few, sampler_many = DomainSampler(few), DomainSampler(many)
    first_many = sampler_many.tick()
    sampler_few.tick()
    assert first_many.calls > 60  # static facts fetched once per new domain
    assert sampler_few.tick().calls == sampler_many.tick().calls == 1  # one getAllDomainStats


def test_diff_reports_added_removed_and_changed(tmp_path):
    manager = _manager(tmp_path, domain_xml("a", "running"), domain_xml("b", "shutoff"))
    sampler = DomainSampler(manager)
    sampler.tick()
    conn = manager.conn
    conn.lookupByName("a").suspend()
    conn.lookupByName("b").undefine()
    conn.defineXML(domain_xml("c", "shutoff"))
    tick = sampler.tick()
    names = {u: d.name for u, d in tick.domains.items()}
    assert {names[u] for u in tick.diff.added} == {"c"}
    assert {names.get(u, "b") for u in tick.diff.removed} == {"b"}
    assert {names[u] for u in tick.diff.changed} == {"a"}
    assert tick.domains[next(u for u, n in names.items() if n == "a")].state is DomainState.PAUSED


def test_dirty_domain_refetches_static_facts(tmp_path):
    manager = _manager(tmp_path, domain_xml("a", "shutoff"))
    sampler = DomainSampler(manager)
    first = sampler.tick()
    uuid = next(iter(first.domains))
    manager.conn.lookupByUUIDString(uuid).setAutostart(1)
    assert sampler.tick().domains[uuid].autostart is False  # not refetched: no event, not dirty
    sampler.mark_dirty(uuid)
    tick = sampler.tick()
    assert tick.domains[uuid].autostart is True and tick.diff.changed == {uuid}


def test_hostile_names_come_back_verbatim(tmp_path):
    names = ["web [red]x", "${evil}", 'quote"d', "café-ü"]
    manager = _manager(tmp_path, *[domain_xml(n) for n in names])
    assert sorted(d.name for d in DomainSampler(manager).tick().domains.values()) == sorted(names)


def test_rates_from_two_samples():
    """The test driver's bulk stats carry only state, so rate arithmetic is checked directly."""
    sampler = DomainSampler(manager=None)  # _build needs no connection
    sampler._counters = {"u": _Counters(10.0, 1_000_000_000, 0, 0, 100, 0)}
    from hyperconsole.virt.sampler import _Static

    static = _Static("vm", 2, 1024, 2048, False, True, False)
    stats = {"state.state": 1, "cpu.time": 2_000_000_000, "vcpu.current": 2,
             "block.count": 2, "block.0.rd.bytes": 4096, "block.1.rd.bytes": 4096, "block.0.wr.bytes": 0,
             "net.count": 1, "net.0.rx.bytes": 2148, "net.0.tx.bytes": 512}
    info = sampler._build("u", "vm", static, stats, 12.0)
    assert info.cpu_percent == pytest.approx(25.0)  # 1 s CPU over 2 s on 2 vCPUs
    assert info.disk_read_bps == pytest.approx(4096.0)
    assert info.net_rx_bps == pytest.approx(1024.0)
    assert info.net_tx_bps == pytest.approx(256.0)


def test_counter_reset_gives_no_rate_instead_of_negative():
    sampler = DomainSampler(manager=None)  # _build needs no connection
    from hyperconsole.virt.sampler import _Static

    sampler._counters = {"u": _Counters(10.0, 5_000_000_000, None, None, None, None)}
    info = sampler._build("u", "vm", _Static("vm", 1, 1, 1, False, True, False),
                          {"state.state": 1, "cpu.time": 1_000}, 11.0)
    assert info.cpu_percent is None


def test_tick_on_lost_connection_raises_one_line(tmp_path):
    manager = _manager(tmp_path, domain_xml("a"))
    sampler = DomainSampler(manager)
    manager.close()
    with pytest.raises(Exception) as err:
        sampler.tick()
    assert "\n" not in str(err.value) and "not connected" in str(err.value)


def test_driver_without_bulk_stats_falls_back_to_list_and_info(tmp_path, monkeypatch):
    manager = _manager(tmp_path, domain_xml("a", "running"), domain_xml("b", "shutoff"))
    sampler = DomainSampler(manager)
    err = libvirt.libvirtError("this function is not supported by the connection driver")
    err.err = (libvirt.VIR_ERR_NO_SUPPORT, 0, str(err), 0, "", "", "", 0, 0)

    class NoBulk:
        def __init__(self, conn):
            self._conn = conn

        def getAllDomainStats(self, *args):
            raise err

        def __getattr__(self, name):
            return getattr(self._conn, name)

    real = manager.conn
    monkeypatch.setattr(type(manager), "conn", property(lambda self: NoBulk(real)))
    sampler.tick()
    tick = sampler.tick()
    assert sampler.bulk_stats is False
    assert {d.name: d.state for d in tick.domains.values()} == {"a": DomainState.RUNNING, "b": DomainState.SHUTOFF}
    assert tick.calls == 1 + 2  # listAllDomains + one info() per domain


def test_only_events_that_can_change_static_facts_mark_dirty(tmp_path):
    manager = _manager(tmp_path, domain_xml("a", "running"))
    sampler = DomainSampler(manager)
    uuid = next(iter(sampler.tick().domains))
    sampler.note_event(uuid, libvirt.VIR_DOMAIN_EVENT_SUSPENDED)
    assert sampler.tick().calls == 1
    sampler.note_event(uuid, libvirt.VIR_DOMAIN_EVENT_DEFINED)
    assert sampler.tick().calls == 1 + 4  # info, isPersistent, autostart, hasManagedSaveImage


class CountingConn:
    """Wraps a virConnect and records which connection-level calls a tick makes."""

    def __init__(self, conn):
        self._conn = conn
        self.seen: list[tuple[str, tuple]] = []

    def __getattr__(self, name):
        attr = getattr(self._conn, name)
        if not callable(attr):
            return attr

        def call(*args):
            self.seen.append((name, args))
            return attr(*args)

        return call


def _counting(manager, monkeypatch) -> CountingConn:
    counting = CountingConn(manager.conn)
    monkeypatch.setattr(type(manager), "conn", property(lambda self: counting))
    return counting


def test_a_few_changed_domains_are_asked_one_by_one(tmp_path, monkeypatch):
    manager = _manager(tmp_path, *[domain_xml(f"vm{i}") for i in range(40)])
    sampler = DomainSampler(manager)
    counting = _counting(manager, monkeypatch)
    first = sampler.tick()
    # 40 new domains: three filtered lists instead of 120 per-domain calls.
    lists = [args for name, args in counting.seen if name == "listAllDomains"]
    assert len(lists) == 3 and first.calls == 1 + 3 + 40
    counting.seen.clear()
    sampler.mark_dirty(next(iter(first.domains)))
    tick = sampler.tick()
    # One changed domain: no list of all 40 domains, four calls on that domain.
    assert [name for name, _ in counting.seen] == ["getAllDomainStats"] and tick.calls == 1 + 4
