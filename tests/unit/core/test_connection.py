"""ConnectionManager: states, read-only, events, reconnect after a lost connection."""

from __future__ import annotations

import threading

import libvirt
import pytest

from hyperconsole.errors import HyperconsoleError
from hyperconsole.virt.connection import ConnectionManager, LifecycleEvent, StateChanged
from hyperconsole.virt.models import ConnectionState
from tests.fixtures import build_host_xml, domain_xml, test_uri


def _uri(tmp_path) -> str:
    return test_uri(tmp_path, build_host_xml(domains=[domain_xml("a", "shutoff")]))


def test_connect_reports_connecting_then_active(tmp_path):
    seen = []
    manager = ConnectionManager(_uri(tmp_path), listener=seen.append)
    manager.connect()
    states = [e.state for e in seen if isinstance(e, StateChanged)]
    assert states == [ConnectionState.CONNECTING, ConnectionState.ACTIVE]
    assert manager.conn.getType() == "TEST" and not manager.readonly


def test_unreachable_uri_is_one_line(tmp_path):
    manager = ConnectionManager("test://" + str(tmp_path / "missing.xml"))
    with pytest.raises(HyperconsoleError) as err:
        manager.connect()
    assert "\n" not in str(err.value) and "cannot connect" in str(err.value)
    assert manager.state is ConnectionState.DISCONNECTED


def test_forced_readonly_refuses_writes(tmp_path):
    manager = ConnectionManager(_uri(tmp_path), readonly=True)
    manager.connect()
    assert manager.readonly
    with pytest.raises(libvirt.libvirtError):
        manager.conn.lookupByName("a").create()


def test_lifecycle_events_reach_the_listener(tmp_path):
    got = threading.Event()
    events = []

    def listener(event):
        if isinstance(event, LifecycleEvent):
            events.append(event)
            got.set()

    manager = ConnectionManager(_uri(tmp_path), listener=listener)
    manager.connect()
    manager.conn.lookupByName("a").create()
    assert got.wait(5), "no lifecycle event within 5 s"
    assert events[0].name == "a" and events[0].event == libvirt.VIR_DOMAIN_EVENT_STARTED


def test_lost_connection_reconnects_with_new_generation(tmp_path):
    states = []
    active = threading.Event()

    def listener(event):
        if isinstance(event, StateChanged):
            states.append(event.state)
            if event.message == "reconnected":
                active.set()

    manager = ConnectionManager(_uri(tmp_path), listener=listener)
    manager.BACKOFF = (0.05,)
    manager.connect()
    generation = manager.generation
    manager.connection_lost("test: socket closed")
    assert manager.state in (ConnectionState.DISCONNECTED, ConnectionState.CONNECTING, ConnectionState.ACTIVE)
    assert active.wait(5), f"did not reconnect: {states}"
    assert manager.generation == generation + 1
    assert ConnectionState.DISCONNECTED in states and states[-1] is ConnectionState.ACTIVE
    assert manager.conn.lookupByName("a")


def test_connection_error_classifier_triggers_reconnect(tmp_path):
    manager = ConnectionManager(_uri(tmp_path))
    manager.BACKOFF = (10.0,)
    manager.connect()
    err = libvirt.libvirtError("internal error: client socket is closed")
    err.err = (libvirt.VIR_ERR_INTERNAL_ERROR, 0, "internal error: client socket is closed", 0, "", "", "", 0, 0)
    manager.check_error(err)
    assert manager.state is not ConnectionState.ACTIVE
    manager.close()
