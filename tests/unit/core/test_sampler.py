"""DomainSampler on per-test test-driver hosts: inventory diff, calls per tick, rates."""

from __future__ import annotations

import threading
import time

import libvirt
import pytest

from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt.models import DomainState
from hyperconsole.virt.sampler import (
    BLOCK_TICKS, FAST_GROUPS, LIST_TICKS, SLOW_TICKS, STATS_GROUPS, DomainSampler, _Counters,
)
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


def test_steady_state_tick_is_one_call_whatever_the_vm_count(tmp_path, libvirt_calls):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    few = _manager(tmp_path / "a", *[domain_xml(f"vm{i}") for i in range(3)])
    many = _manager(tmp_path / "b", *[domain_xml(f"vm{i}") for i in range(60)])
    sampler_few, sampler_many = DomainSampler(few), DomainSampler(many)
    sampler_many.tick()
    assert libvirt_calls.remote["virDomain.info"] == 60  # static facts fetched once per new domain
    sampler_few.tick()
    for sampler, count in ((sampler_few, 3), (sampler_many, 60)):
        libvirt_calls.clear()
        sampler.tick()
        assert libvirt_calls.remote == {"virConnect.getAllDomainStats": 1}
        assert libvirt_calls.local == {"virDomain.UUIDString": count}  # read from the reply, no round trip


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
    sampler._counters = {"u": _Counters(10.0, 1_000_000_000, 0, 0, 100, 0, block_at=10.0)}
    from hyperconsole.virt.sampler import _Static

    static = _Static("vm", 2, 1024, 2048, False, True, False)
    stats = {"state.state": 1, "cpu.time": 2_000_000_000, "vcpu.current": 2,
             "block.count": 2, "block.0.rd.bytes": 4096, "block.1.rd.bytes": 4096, "block.0.wr.bytes": 0,
             "net.count": 1, "net.0.rx.bytes": 2148, "net.0.tx.bytes": 512}
    info = sampler._build("u", static, stats, 12.0)
    assert info.cpu_percent == pytest.approx(25.0)  # 1 s CPU over 2 s on 2 vCPUs
    assert info.disk_read_bps == pytest.approx(4096.0)
    assert info.net_rx_bps == pytest.approx(1024.0)
    assert info.net_tx_bps == pytest.approx(256.0)


def test_counter_reset_gives_no_rate_instead_of_negative():
    sampler = DomainSampler(manager=None)  # _build needs no connection
    from hyperconsole.virt.sampler import _Static

    sampler._counters = {"u": _Counters(10.0, 5_000_000_000, None, None, None, None)}
    info = sampler._build("u", _Static("vm", 1, 1, 1, False, True, False),
                          {"state.state": 1, "cpu.time": 1_000}, 11.0)
    assert info.cpu_percent is None


def test_tick_on_lost_connection_raises_one_line(tmp_path):
    manager = _manager(tmp_path, domain_xml("a"))
    sampler = DomainSampler(manager)
    manager.close()
    with pytest.raises(Exception) as err:
        sampler.tick()
    assert "\n" not in str(err.value) and "not connected" in str(err.value)


def _no_support(*_args):
    err = libvirt.libvirtError("this function is not supported by the connection driver")
    err.err = (libvirt.VIR_ERR_NO_SUPPORT, 0, str(err), 0, "", "", "", 0, 0)
    raise err


def test_driver_without_bulk_stats_falls_back_to_list_and_info(tmp_path, monkeypatch, libvirt_calls):
    manager = _manager(tmp_path, domain_xml("a", "running"), domain_xml("b", "shutoff"))
    sampler = DomainSampler(manager)
    monkeypatch.setattr(libvirt.virConnect, "getAllDomainStats", _no_support)
    sampler.tick()
    libvirt_calls.clear()
    tick = sampler.tick()
    assert sampler.bulk_stats is False
    assert {d.name: d.state for d in tick.domains.values()} == {"a": DomainState.RUNNING, "b": DomainState.SHUTOFF}
    assert libvirt_calls.remote == {"virConnect.listAllDomains": 1, "virDomain.info": 2}


def test_only_events_that_can_change_static_facts_mark_dirty(tmp_path, libvirt_calls):
    manager = _manager(tmp_path, domain_xml("a", "running"))
    sampler = DomainSampler(manager)
    uuid = next(iter(sampler.tick().domains))
    sampler.note_event(uuid, libvirt.VIR_DOMAIN_EVENT_SUSPENDED)
    libvirt_calls.clear()
    sampler.tick()
    assert libvirt_calls.remote == {"virConnect.getAllDomainStats": 1}
    sampler.note_event(uuid, libvirt.VIR_DOMAIN_EVENT_DEFINED)
    libvirt_calls.clear()
    sampler.tick()
    assert libvirt_calls.remote == {"virConnect.getAllDomainStats": 1, "virDomain.info": 1,
                                    "virDomain.isPersistent": 1, "virDomain.autostart": 1,
                                    "virDomain.hasManagedSaveImage": 1}


def test_a_few_changed_domains_are_asked_one_by_one(tmp_path, libvirt_calls):
    manager = _manager(tmp_path, *[domain_xml(f"vm{i}") for i in range(40)])
    sampler = DomainSampler(manager)
    libvirt_calls.clear()
    first = sampler.tick()
    # 40 new domains: three filtered lists instead of 120 per-domain calls.
    assert libvirt_calls.remote == {"virConnect.getAllDomainStats": 1, "virConnect.listAllDomains": 3,
                                    "virDomain.info": 40}
    sampler.mark_dirty(next(iter(first.domains)))
    libvirt_calls.clear()
    sampler.tick()
    # One changed domain: no list of all 40 domains, four calls on that domain.
    assert libvirt_calls.remote == {"virConnect.getAllDomainStats": 1, "virDomain.info": 1,
                                    "virDomain.isPersistent": 1, "virDomain.autostart": 1,
                                    "virDomain.hasManagedSaveImage": 1}


def _wait_for(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_stats_call_that_hangs_is_abandoned_at_the_deadline(tmp_path, monkeypatch, libvirt_calls):
    """One domain's stats never come (its QEMU stopped): the tick ends at its deadline, that row
    is kept and marked stale, the others keep updating, later ticks leave it out of the bulk call."""
    manager = _manager(tmp_path, domain_xml("stuck", "running"), domain_xml("other", "running"))
    sampler = DomainSampler(manager, deadline=1.0, call_deadline=0.5)
    uuid = {d.name: d.uuid for d in sampler.tick().domains.values()}
    release = threading.Event()
    real_all, real_list = libvirt.virConnect.getAllDomainStats, libvirt.virConnect.domainListGetStats
    asked: list[list[str]] = []

    def hanging_all(self, *args):
        release.wait(30)
        return real_all(self, *args)

    def hanging_list(self, doms, *args):
        names = sorted(d.name() for d in doms)
        asked.append(names)
        if "stuck" in names:
            release.wait(30)
        return real_list(self, doms, *args)

    monkeypatch.setattr(libvirt.virConnect, "getAllDomainStats", hanging_all)
    monkeypatch.setattr(libvirt.virConnect, "domainListGetStats", hanging_list)
    try:
        manager.conn.lookupByName("other").suspend()
        second = sampler.tick()
        stuck, other = second.domains[uuid["stuck"]], second.domains[uuid["other"]]
        assert stuck.state is DomainState.RUNNING and stuck.stale_seconds is not None
        assert other.state is DomainState.PAUSED and other.stale_seconds is None
        assert [s.call for s in second.stuck] == ["getAllDomainStats", "domainListGetStats stuck"]
        assert str(second.stuck[0]).startswith("getAllDomainStats stuck for ")

        manager.conn.lookupByName("other").resume()
        asked.clear()
        libvirt_calls.clear()
        third = sampler.tick()
        assert asked == [["other"]]  # the stuck domain is left out of the bulk call
        # The list, the others' stats in one call, the stuck one's state (it needs no monitor).
        assert libvirt_calls.remote == {"virConnect.listAllDomains": 1, "virConnect.domainListGetStats": 1,
                                        "virDomain.state": 1}
        assert third.domains[uuid["other"]].state is DomainState.RUNNING
        assert third.domains[uuid["stuck"]].stale_seconds >= stuck.stale_seconds
    finally:
        release.set()
    _wait_for(lambda: not sampler.stuck_calls())
    assert sampler.domains == third.domains  # what the abandoned calls returned went nowhere
    libvirt_calls.clear()
    fourth = sampler.tick()
    assert libvirt_calls.remote == {"virConnect.getAllDomainStats": 1} and fourth.stuck == ()
    assert all(d.stale_seconds is None for d in fourth.domains.values())


def test_a_hung_list_leaves_every_row_stale_and_the_tick_ends(tmp_path, monkeypatch):
    manager = _manager(tmp_path, domain_xml("a", "running"))
    sampler = DomainSampler(manager, deadline=1.0, call_deadline=0.5)
    first = sampler.tick()
    release = threading.Event()
    monkeypatch.setattr(libvirt.virConnect, "getAllDomainStats", lambda self, *a: release.wait(30))
    monkeypatch.setattr(libvirt.virConnect, "listAllDomains", lambda self, *a: release.wait(30))
    try:
        tick = sampler.tick()
        again = sampler.tick()  # neither call is made a second time while the first is out
    finally:
        release.set()
    assert tick.domains.keys() == first.domains.keys()
    assert all(d.stale_seconds is not None for d in again.domains.values())
    assert [s.call for s in again.stuck] == ["getAllDomainStats", "listAllDomains"]


def test_when_every_domain_hangs_the_tick_still_ends_within_its_budget(tmp_path, monkeypatch):
    manager = _manager(tmp_path, *[domain_xml(f"vm{i}", "running") for i in range(6)])
    sampler = DomainSampler(manager, deadline=0.5, call_deadline=0.3)
    first = sampler.tick()
    release = threading.Event()
    asked = []

    def hanging(self, doms, *args):
        asked.append(len(doms))
        release.wait(30)

    monkeypatch.setattr(libvirt.virConnect, "getAllDomainStats", lambda self, *a: release.wait(30))
    monkeypatch.setattr(libvirt.virConnect, "domainListGetStats", hanging)
    try:
        tick = sampler.tick()
    finally:
        release.set()
    # The bulk call took half the budget, the first domains asked alone the rest: the others
    # were not asked at all, and every row is the last sample, marked stale.
    assert 1 <= len(asked) < 6
    assert tick.domains.keys() == first.domains.keys()
    assert all(d.stale_seconds is not None for d in tick.domains.values())


# -- what a tick samples follows what is on screen ----------------------------------------------------
def _names(sampler: DomainSampler) -> dict[str, str]:
    return {d.name: d.uuid for d in sampler.domains.values()}


def _sampled(libvirt_calls) -> list[str]:
    """Names of the domains a steady tick's one call asked about, after checking it is one call
    for the list's stat groups."""
    (call, args), = libvirt_calls.made
    assert call == "virConnect.domainListGetStats" and args[1] in (FAST_GROUPS, STATS_GROUPS), libvirt_calls.made
    return sorted(d.name() for d in args[0])


def _groups(libvirt_calls) -> int:
    (_call, args), = libvirt_calls.made
    return args[-2]


def test_stat_groups_are_those_the_list_shows():
    # vCPUs and memory come with the static facts: no VCPU or BALLOON group, each a monitor
    # round trip per domain in the QEMU driver; block stats less often than the others.
    assert FAST_GROUPS == (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
                           | libvirt.VIR_DOMAIN_STATS_INTERFACE)
    assert STATS_GROUPS == FAST_GROUPS | libvirt.VIR_DOMAIN_STATS_BLOCK


def test_block_stats_every_few_ticks_at_once_for_rows_that_came_into_view(tmp_path, libvirt_calls):
    manager = _manager(tmp_path, *[domain_xml(f"vm{i}", "running") for i in range(4)])
    sampler = DomainSampler(manager)
    libvirt_calls.clear()
    sampler.tick()
    assert libvirt_calls.made[0][1][0] == STATS_GROUPS  # the first tick: every figure
    uuid = _names(sampler)
    sampler.set_interest([uuid["vm0"], uuid["vm1"]], "name")
    seen = []
    for _ in range(2 * BLOCK_TICKS):
        libvirt_calls.clear()
        sampler.tick()
        seen.append(_groups(libvirt_calls) == STATS_GROUPS)
    assert seen[0] and seen.count(True) == 3  # rows came into view, then one tick in BLOCK_TICKS
    sampler.set_interest([uuid["vm1"]], "name")  # fewer rows: nothing new to sample
    libvirt_calls.clear()
    sampler.tick()
    assert _groups(libvirt_calls) == FAST_GROUPS
    sampler.set_interest([uuid["vm1"], uuid["vm2"]], "name")
    libvirt_calls.clear()
    sampler.tick()
    assert {"vm1", "vm2"} <= set(_sampled(libvirt_calls)) and _groups(libvirt_calls) == STATS_GROUPS
    sampler.set_interest([uuid["vm1"], uuid["vm2"]], "disk")  # sorted on disk: every tick, every domain
    for _ in range(2):
        libvirt_calls.clear()
        sampler.tick()
        assert libvirt_calls.made[0][0] == "virConnect.getAllDomainStats" and _groups(libvirt_calls) == STATS_GROUPS


def test_rows_on_screen_every_tick_every_domain_every_slow_tick(tmp_path, libvirt_calls):
    manager = _manager(tmp_path, *[domain_xml(f"vm{i:02d}", "running") for i in range(20)])
    sampler = DomainSampler(manager)
    sampler.tick()
    uuid = _names(sampler)
    on_screen = {"vm00", "vm01", "vm02"}
    sampler.set_interest([uuid[n] for n in on_screen], "name")
    seen: set[str] = set()
    for _ in range(SLOW_TICKS):
        before = sampler.domains
        libvirt_calls.clear()
        tick = sampler.tick()
        asked = set(_sampled(libvirt_calls))
        # The rows on screen, and a slice of the others: all of them in SLOW_TICKS ticks.
        assert on_screen <= asked and len(asked - on_screen) <= 20 // SLOW_TICKS
        seen |= asked
        assert len(tick.domains) == 20 and tick.diff.empty
        other = next(n for n in uuid if n not in asked)
        assert tick.domains[uuid[other]] is before[uuid[other]]  # not sampled: kept as it was
    assert seen == set(uuid)
    for _ in range(LIST_TICKS - SLOW_TICKS - 1):
        sampler.tick()
    libvirt_calls.clear()
    sampler.tick()  # now and then the inventory is listed whole
    assert [call for call, _args in libvirt_calls.made] == ["virConnect.getAllDomainStats"]


def test_sorted_on_a_rate_column_or_shown_whole_every_domain_every_tick(tmp_path, libvirt_calls):
    manager = _manager(tmp_path, *[domain_xml(f"vm{i}", "running") for i in range(5)])
    sampler = DomainSampler(manager)
    sampler.tick()
    for keys, column in ((list(_names(sampler).values())[:2], "cpu"), ([], "disk"), (None, None)):
        sampler.set_interest(keys, column)
        libvirt_calls.clear()
        sampler.tick()
        assert libvirt_calls.remote == {"virConnect.getAllDomainStats": 1}, (keys, column)


def test_a_domain_scrolled_into_view_is_sampled_on_the_next_tick(tmp_path, libvirt_calls):
    manager = _manager(tmp_path, *[domain_xml(f"vm{i}", "running") for i in range(6)])
    sampler = DomainSampler(manager)
    sampler.tick()
    uuid = _names(sampler)
    sampler.set_interest([uuid["vm0"]], "state")
    sampler.tick()
    manager.conn.lookupByName("vm4").suspend()  # off screen, and no event told us
    sampler.set_interest([uuid["vm3"], uuid["vm4"]], "state")
    libvirt_calls.clear()
    tick = sampler.tick()
    assert {"vm3", "vm4"} <= set(_sampled(libvirt_calls))
    assert tick.domains[uuid["vm4"]].state is DomainState.PAUSED


def test_counts_stay_exact_through_events(tmp_path, libvirt_calls):
    """Off-screen domains change state: their events get them sampled on the next tick; a define
    or undefine makes that tick a full one."""
    manager = _manager(tmp_path, *[domain_xml(f"vm{i}", "running") for i in range(6)])
    sampler = DomainSampler(manager)
    sampler.tick()
    uuid = _names(sampler)
    sampler.set_interest([uuid["vm0"]], None)
    sampler.tick()
    manager.conn.lookupByName("vm5").suspend()
    sampler.note_event(uuid["vm5"], libvirt.VIR_DOMAIN_EVENT_SUSPENDED)
    libvirt_calls.clear()
    tick = sampler.tick()
    assert {"vm0", "vm5"} <= set(_sampled(libvirt_calls))
    assert sorted(d.state.label for d in tick.domains.values()) == ["paused"] + ["running"] * 5

    manager.conn.lookupByName("vm4").destroy()
    manager.conn.lookupByName("vm4").undefine()
    manager.conn.defineXML(domain_xml("new", "shutoff"))
    sampler.note_event(uuid["vm4"], libvirt.VIR_DOMAIN_EVENT_UNDEFINED)
    libvirt_calls.clear()
    tick = sampler.tick()
    assert libvirt_calls.remote["virConnect.getAllDomainStats"] == 1, libvirt_calls.remote
    assert {d.name for d in tick.domains.values()} == {"vm0", "vm1", "vm2", "vm3", "vm5", "new"}
    assert tick.diff.removed == {uuid["vm4"]} and len(tick.diff.added) == 1


def test_nothing_on_screen_each_tick_samples_a_slice(tmp_path, libvirt_calls):
    manager = _manager(tmp_path, *[domain_xml(f"vm{i}", "running") for i in range(10)])
    sampler = DomainSampler(manager)
    sampler.tick()
    sampler.set_interest([], "name")
    seen = []
    for _ in range(SLOW_TICKS):
        libvirt_calls.clear()
        assert len(sampler.tick().domains) == 10
        seen.append(_sampled(libvirt_calls))
    assert [len(s) for s in seen] == [2] * SLOW_TICKS and len({n for s in seen for n in s}) == 10


def test_a_vm_without_a_nic_has_no_net_rate():
    sampler = DomainSampler(manager=None)  # _build needs no connection
    from hyperconsole.virt.sampler import _Static

    static = _Static("vm", 1, 1024, 1024, False, True, False)
    sampler._build("u", static, {"state.state": 1, "cpu.time": 0, "net.count": 0, "block.count": 0}, 10.0)
    info = sampler._build("u", static, {"state.state": 1, "cpu.time": 10**9, "net.count": 0,
                                        "block.count": 0}, 12.0)
    assert info.cpu_percent == pytest.approx(50.0)
    assert info.net_rx_bps is None and info.disk_read_bps is None


def test_a_disk_rate_covers_the_time_since_the_last_block_sample():
    sampler = DomainSampler(manager=None)  # _build needs no connection
    from hyperconsole.virt.sampler import _Static

    static = _Static("vm", 1, 1024, 1024, False, True, False)
    block = {"block.count": 1, "block.0.rd.bytes": 0, "block.0.wr.bytes": 0}
    sampler._build("u", static, {"state.state": 1, "cpu.time": 0, **block}, 10.0)
    sampler._previous["u"] = sampler._build("u", static, {"state.state": 1, "cpu.time": 10**9}, 12.0)
    info = sampler._build("u", static, {"state.state": 1, "cpu.time": 2 * 10**9, "block.count": 1,
                                        "block.0.rd.bytes": 6000, "block.0.wr.bytes": 600}, 16.0)
    assert info.cpu_percent == pytest.approx(25.0)  # over the 4 s since the last tick
    assert info.disk_read_bps == pytest.approx(1000.0) and info.disk_write_bps == pytest.approx(100.0)  # over 6 s
    sampler._previous["u"] = info
    kept = sampler._build("u", static, {"state.state": 1, "cpu.time": 3 * 10**9}, 18.0)
    assert kept.disk_read_bps == pytest.approx(1000.0)  # not asked this tick: the last rate stays
