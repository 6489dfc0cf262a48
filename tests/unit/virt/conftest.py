"""Shared fixtures for hyperconsole.virt unit tests: one test-driver host file per test."""

from __future__ import annotations

import os
from pathlib import Path

import libvirt
import pytest

from hyperconsole.virt.connection import ConnectionManager
from tests.fixtures import (
    GIB,
    build_host_xml,
    host_interface_xml,
    network_xml,
    pool_xml,
    test_uri,
    volume_xml,
)

GOLDEN = Path(__file__).parent / "golden"
IMAGES = "/var/lib/libvirt/images"
ISOS = "/srv/iso"


def vol(name: str, fmt: str = "qcow2", capacity: int = 10 * GIB, pool_path: str = IMAGES) -> str:
    return volume_xml(name, capacity=capacity, fmt=fmt, path=f"{pool_path}/{name}")


def standard_host(domains=(), *, extra_volumes=(), **kwargs) -> str:
    """A host with pools 'default' (VM disks) and 'iso', network 'default', bridge 'br0'.

    Each test passes its own domains, so each test gets its own node XML.
    """
    pools = [
        pool_xml("default", IMAGES, volumes=[vol("web.qcow2"), vol("db.qcow2"), vol("spare.qcow2"),
                                             vol("data.raw", fmt="raw"), *extra_volumes]),
        pool_xml("iso", ISOS, volumes=[vol("debian.iso", fmt="raw", pool_path=ISOS)]),
    ]
    return build_host_xml(
        domains=list(domains),
        networks=[network_xml("default", ip="192.168.122.1", dhcp=("192.168.122.2", "192.168.122.254")),
                  network_xml("isolated", mode=None)],
        pools=pools,
        interfaces=[host_interface_xml("eth0"), host_interface_xml("br0", kind="bridge", bridge_ports=["eth0"])],
        **kwargs,
    )


@pytest.fixture
def open_host(tmp_path):
    """open_host(xml) -> connected ConnectionManager on test:///<tmp>/host.xml."""
    managers: list[ConnectionManager] = []

    def make(xml: str) -> ConnectionManager:
        manager = ConnectionManager(test_uri(tmp_path, xml, f"host{len(managers)}.xml"))
        manager.connect()
        managers.append(manager)
        return manager

    yield make
    for m in managers:
        m.close()


def assert_golden(name: str, text: str) -> None:
    """Compare with tests/unit/virt/golden/<name>; HYPERCONSOLE_REGEN_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("HYPERCONSOLE_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"golden file {path} missing; run with HYPERCONSOLE_REGEN_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


class FakeError(libvirt.libvirtError):
    """A libvirtError with a chosen code, for paths the test driver never takes."""

    def __init__(self, code: int, message: str):
        Exception.__init__(self, message)
        self._code = code
        self._message = message

    def get_error_code(self):
        return self._code

    def get_error_message(self):
        return self._message


@pytest.fixture
def host_xml():
    """standard_host(domains, extra_volumes=..., **build_host_xml kwargs) -> node XML."""
    return standard_host


@pytest.fixture
def golden():
    return assert_golden


@pytest.fixture
def fake_error():
    return FakeError


@pytest.fixture
def make_vol():
    return vol
