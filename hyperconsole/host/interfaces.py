"""Host network interfaces as the kernel sees them: `ip -j -d -s link`, `ip -j addr`, /sys/class/net,
and the default routes, from which the host's uplink follows.

Everything is read per network namespace (`netns=None` is this process's own). `ip -n NS` reads a
namespace's links and addresses; /sys/class/net, however, shows the namespace of whoever mounted
sysfs, so for another namespace the sysfs part runs this module under `ip netns exec NS`, which
mounts a fresh sysfs for it. Counters come from the same `ip -s` call (psutil would read this
process's namespace only); the host-namespace sampler uses psutil because it needs no process.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from hyperconsole import proc
from hyperconsole.errors import HyperconsoleError
from hyperconsole.host.session import ssh_server_address

SYS_NET = Path("/sys/class/net")
IP_TIMEOUT = 10.0
KINDS = ("physical", "bridge", "vlan", "bond", "veth", "loopback", "tun", "tap", "other")


@dataclass(frozen=True)
class AddressInfo:
    family: str  # "inet" or "inet6"
    address: str
    prefixlen: int
    scope: str = "global"
    dynamic: bool = False  # handed out by DHCP or SLAAC (it has a lifetime), not configured

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class BridgeInfo:
    members: tuple[str, ...]
    stp_state: int  # 0 off, 1 kernel STP, 2 user-space (mstpd: RSTP)

    @property
    def stp(self) -> bool:
        return self.stp_state != 0


@dataclass(frozen=True)
class VlanInfo:
    id: int
    parent: str | None
    protocol: str = "802.1Q"


@dataclass(frozen=True)
class BondInfo:
    mode: str
    slaves: tuple[str, ...]


@dataclass(frozen=True)
class InterfaceInfo:
    name: str
    index: int
    kind: str  # one of KINDS
    link_kind: str | None  # the kernel's info_kind ("bridge", "ifb", "dummy" …) for display
    state: str  # operstate, lower case: up, down, unknown, lowerlayerdown …
    carrier: bool | None
    speed_mbps: int | None
    mtu: int
    mac: str | None
    addresses: tuple[AddressInfo, ...]
    master: str | None  # bridge or bond this interface is enslaved to
    bridge: BridgeInfo | None = None
    vlan: VlanInfo | None = None
    bond: BondInfo | None = None
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class InterfaceRate:
    rx_bps: float  # bytes per second
    tx_bps: float


# -- running ip ---------------------------------------------------------------------------------


def _ip_argv(netns: str | None, *args: str) -> list[str]:
    return ["ip", *(["-n", netns] if netns else []), *args]


def _run(argv: list[str], timeout: float, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run argv (proc.run: its group killed at the deadline) and return (exit status, stdout,
    stderr). Output is decoded as file names are (surrogateescape), so a name that is not UTF-8
    round-trips to the same bytes /sys/class/net shows."""
    done = proc.run(argv, timeout, env=env)
    return done.returncode, os.fsdecode(done.stdout), proc.text(done.stderr)


def loads_tolerant(text: str) -> Any:
    """JSON as iproute2 writes it. Its writer escapes only quote, backslash and BS/FF/LF/CR/TAB, so
    an interface whose name holds another control character (the kernel allows any byte but
    '/', ':' and whitespace) yields strings with raw control bytes, which strict JSON refuses.
    Those are taken literally; the name stays as the kernel has it and display escapes it."""
    return json.JSONDecoder(strict=False).decode(text)


def run_ip_json(netns: str | None, *args: str) -> list[dict[str, Any]]:
    """`ip [-n NS] -j ARGS` parsed; one-line HyperconsoleError when ip is missing, fails or hangs."""
    if shutil.which("ip") is None:
        raise HyperconsoleError("the ip command (iproute2) is not installed", hint="install iproute2")
    argv = _ip_argv(netns, "-j", *args)
    try:
        code, out, err = _run(argv, IP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise HyperconsoleError(f"{' '.join(argv)} did not answer within {IP_TIMEOUT:g}s") from None
    if code != 0:
        detail = (err.strip().splitlines() or [f"exit {code}"])[-1]
        raise HyperconsoleError(f"{' '.join(argv)} failed: {detail}")
    try:
        data = loads_tolerant(out or "[]")
    except ValueError:
        raise HyperconsoleError(f"{' '.join(argv)} printed something that is not JSON") from None
    return data if isinstance(data, list) else []


# -- sysfs ----------------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # e.g. EINVAL reading speed of a down or virtual link
        return None


def read_sysfs(sys_net: Path = SYS_NET) -> dict[str, dict[str, Any]]:
    """speed, carrier, bridge members and STP state per interface from /sys/class/net."""
    out: dict[str, dict[str, Any]] = {}
    try:
        entries = sorted(sys_net.iterdir())
    except OSError:
        return out
    for entry in entries:
        info: dict[str, Any] = {}
        speed = _read(entry / "speed")
        if speed and speed.lstrip("-").isdigit() and int(speed) > 0:  # -1 / 0: unknown
            info["speed"] = int(speed)
        carrier = _read(entry / "carrier")
        if carrier in ("0", "1"):
            info["carrier"] = carrier == "1"
        if (entry / "bridge").is_dir():
            try:
                info["brif"] = sorted(p.name for p in (entry / "brif").iterdir())
            except OSError:
                info["brif"] = []
            stp = _read(entry / "bridge" / "stp_state")
            info["stp_state"] = int(stp) if stp and stp.isdigit() else 0
        out[entry.name] = info
    return out


def _sysfs_in(netns: str) -> dict[str, dict[str, Any]]:
    """read_sysfs inside another namespace: `ip netns exec` remounts /sys for it."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": package_root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "hyperconsole.host.interfaces", "--sysfs-json"]
    try:
        code, out, err = _run(argv, IP_TIMEOUT, env)
    except subprocess.TimeoutExpired:
        raise HyperconsoleError(f"reading /sys in namespace {netns} did not finish") from None
    if code != 0:
        detail = (err.strip().splitlines() or [f"exit {code}"])[-1]
        raise HyperconsoleError(f"cannot read /sys in namespace {netns}: {detail}")
    return json.loads(out)


# -- parsing ip's JSON ------------------------------------------------------------------------------


def classify(link: Mapping[str, Any]) -> str:
    info = link.get("linkinfo") or {}
    kind = info.get("info_kind")
    if link.get("link_type") == "loopback":
        return "loopback"
    if kind in ("bridge", "vlan", "bond", "veth"):
        return kind
    if kind == "tun":
        # ip reports tun and tap devices both as info_kind "tun"; info_data.type tells them apart.
        return "tap" if (info.get("info_data") or {}).get("type") == "tap" else "tun"
    if kind is None and link.get("link_type") == "ether":
        # Real NICs have no rtnetlink "kind"; every software device (dummy, ifb, wireguard …) has one.
        return "physical"
    return "other"


def _addresses(entry: Mapping[str, Any]) -> tuple[AddressInfo, ...]:
    out = []
    for addr in entry.get("addr_info") or []:
        if addr.get("family") in ("inet", "inet6") and "local" in addr:
            out.append(AddressInfo(addr["family"], addr["local"], int(addr.get("prefixlen", 0)),
                                   addr.get("scope", "global"), bool(addr.get("dynamic"))))
    return tuple(out)


def _carrier(link: Mapping[str, Any]) -> bool | None:
    flags = link.get("flags") or []
    if "UP" not in flags:
        return None  # the kernel reports no carrier state for an administratively down link
    return "NO-CARRIER" not in flags and "LOWER_UP" in flags


def parse_interfaces(links: Sequence[Mapping[str, Any]], addrs: Sequence[Mapping[str, Any]],
                     sysfs: Mapping[str, Mapping[str, Any]] | None = None) -> list[InterfaceInfo]:
    """InterfaceInfo from `ip -j -d [-s] link` and `ip -j addr` output (plus sysfs where read)."""
    sysfs = sysfs or {}
    by_name_addrs = {a.get("ifname"): _addresses(a) for a in addrs}
    masters: dict[str, list[str]] = {}
    for link in links:
        if link.get("master"):
            masters.setdefault(link["master"], []).append(link["ifname"])
    result = []
    for link in links:
        name = link["ifname"]
        info = link.get("linkinfo") or {}
        data = info.get("info_data") or {}
        kind = classify(link)
        extra = sysfs.get(name, {})
        bridge = vlan = bond = None
        if kind == "bridge":
            members = extra.get("brif", masters.get(name, []))
            bridge = BridgeInfo(tuple(sorted(members)), int(extra.get("stp_state", data.get("stp_state", 0))))
        elif kind == "vlan":
            vlan = VlanInfo(int(data.get("id", 0)), link.get("link"), data.get("protocol", "802.1Q"))
        elif kind == "bond":
            bond = BondInfo(str(data.get("mode", "unknown")), tuple(sorted(masters.get(name, []))))
        stats = link.get("stats64") or link.get("stats") or {}
        carrier = extra.get("carrier")
        result.append(InterfaceInfo(
            name=name, index=int(link.get("ifindex", 0)), kind=kind, link_kind=info.get("info_kind"),
            state=str(link.get("operstate", "unknown")).lower(),
            carrier=carrier if carrier is not None and "UP" in (link.get("flags") or []) else _carrier(link),
            speed_mbps=extra.get("speed"), mtu=int(link.get("mtu", 0)),
            mac=link.get("address") if link.get("link_type") != "loopback" else None,
            addresses=by_name_addrs.get(name, ()), master=link.get("master"),
            bridge=bridge, vlan=vlan, bond=bond,
            rx_bytes=(stats.get("rx") or {}).get("bytes"), tx_bytes=(stats.get("tx") or {}).get("bytes"),
            flags=tuple(link.get("flags") or ()),
        ))
    return sorted(result, key=lambda i: i.index)


def read_interfaces(netns: str | None = None) -> list[InterfaceInfo]:
    """Every interface of the namespace; raises HyperconsoleError (one line) when ip fails."""
    links = run_ip_json(netns, "-d", "-s", "link", "show")
    addrs = run_ip_json(netns, "addr", "show")
    sysfs = _sysfs_in(netns) if netns else read_sysfs()
    return parse_interfaces(links, addrs, sysfs)


# -- rates ---------------------------------------------------------------------------------------


def read_counters(netns: str | None = None) -> dict[str, tuple[int, int]]:
    """(rx bytes, tx bytes) per interface."""
    if netns is None:
        import psutil

        return {name: (c.bytes_recv, c.bytes_sent) for name, c in psutil.net_io_counters(pernic=True).items()}
    return {i.name: (i.rx_bytes or 0, i.tx_bytes or 0) for i in parse_interfaces(run_ip_json(netns, "-s", "link", "show"), [])}


def compute_rates(before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]],
                  seconds: float) -> dict[str, InterfaceRate]:
    """Rates from two samples; an interface missing from either sample or whose counters went
    backwards (re-created, counter reset) gets no rate rather than a huge or negative one."""
    rates = {}
    if seconds <= 0:
        return rates
    for name, (rx1, tx1) in after.items():
        if name not in before:
            continue
        rx0, tx0 = before[name]
        if rx1 < rx0 or tx1 < tx0:
            continue
        rates[name] = InterfaceRate((rx1 - rx0) / seconds, (tx1 - tx0) / seconds)
    return rates


class InterfaceSampler:
    """Call `sample()` once per refresh; from the second call on it returns rates since the last."""

    def __init__(self, netns: str | None = None, *, read: Callable[[], Mapping[str, tuple[int, int]]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read or (lambda: read_counters(netns))
        self._clock = clock
        self._last: tuple[float, Mapping[str, tuple[int, int]]] | None = None

    def sample(self) -> dict[str, InterfaceRate]:
        now, counters = self._clock(), dict(self._read())
        previous, self._last = self._last, (now, counters)
        if previous is None:
            return {}
        return compute_rates(previous[1], counters, now - previous[0])


# -- the operator's uplink --------------------------------------------------------------------------


@dataclass(frozen=True)
class DefaultRoute:
    family: str  # "inet" or "inet6"
    dev: str
    gateway: str | None = None


def read_default_routes(netns: str | None = None) -> list[DefaultRoute]:
    """The default routes (IPv4 and IPv6, every nexthop of a multipath one); raises
    HyperconsoleError when ip fails."""
    routes = []
    for family, flag in (("inet", "-4"), ("inet6", "-6")):
        for entry in run_ip_json(netns, flag, "route", "show", "default"):
            for hop in entry.get("nexthops") or [entry]:
                if hop.get("dev"):
                    routes.append(DefaultRoute(family, hop["dev"], hop.get("gateway") or entry.get("gateway")))
    return routes


def route_device(destination: str, netns: str | None = None) -> str | None:
    """The interface the kernel would use to reach `destination` (`ip -j route get`); raises
    HyperconsoleError when ip fails."""
    routes = run_ip_json(netns, "route", "get", destination)
    return routes[0].get("dev") if routes else None


@dataclass(frozen=True)
class Uplink:
    """The interfaces the operator's way into this host depends on: the one carrying the default
    route and the one carrying the SSH session (if any), with the bridge or bond above them and a
    bridge's members, a bond's slaves and a VLAN's parent below. Over IPMI, a serial line or the
    local console the default route still is the host's way out, so it counts without SSH.

    `known` False: the interfaces could not be read, so any interface may be the uplink."""

    names: frozenset[str] = frozenset()
    known: bool = True
    reason: str = ""  # why it is not known

    def touched(self, names: Iterable[str]) -> list[str]:
        """Which of `names` are (or, when unknown, may be) the uplink."""
        names = set(names)
        return sorted(names if not self.known else names & self.names)


def find_uplink(interfaces: Sequence[InterfaceInfo], routes: Sequence[DefaultRoute], *,
                environ: Mapping[str, str] | None = None,
                route_lookup: Callable[[str], str | None] = route_device) -> Uplink:
    """The Uplink of a host read as `interfaces` and `routes`; `route_lookup` names the interface
    the route back to the SSH client leaves by."""
    start = {r.dev for r in routes}
    env = os.environ if environ is None else environ
    fields = env.get("SSH_CONNECTION", "").split()
    if len(fields) == 4:
        server = ssh_server_address(dict(env))
        try:
            server_ip = ipaddress.ip_address(server.split("%")[0]) if server else None
        except ValueError:
            server_ip = None
        for iface in interfaces:
            if server_ip is not None and any(_same_ip(a.address, server_ip) for a in iface.addresses):
                start.add(iface.name)
        dev = route_lookup(fields[0])
        if dev:
            start.add(dev)
    start.discard("lo")  # traffic over loopback depends on no NIC
    by_name = {i.name: i for i in interfaces}
    result: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in result or name not in by_name and name not in start:
            continue
        result.add(name)
        iface = by_name.get(name)
        if iface is None:
            continue
        related = [iface.master] if iface.master else []
        if iface.bridge:
            related += iface.bridge.members
        if iface.bond:
            related += iface.bond.slaves
        if iface.vlan and iface.vlan.parent:
            related.append(iface.vlan.parent)
        todo += [r for r in related if r and r not in result]
    return Uplink(frozenset(result))


@dataclass(frozen=True)
class HostNetwork:
    """The host's interfaces, default routes and uplink as read at one moment. When they cannot
    be read, `error` says why, the lists are empty and the uplink is unknown."""

    interfaces: tuple[InterfaceInfo, ...] = ()
    routes: tuple[DefaultRoute, ...] = ()
    uplink: Uplink = Uplink()
    error: str | None = None

    @property
    def names(self) -> set[str] | None:
        """The interface names on this host, None when not known."""
        return None if self.error else {i.name for i in self.interfaces}


def read_host(netns: str | None = None, *, environ: Mapping[str, str] | None = None) -> HostNetwork:
    """Interfaces, routes and uplink of the namespace; never raises: a failure is a HostNetwork
    whose uplink is unknown, which callers must treat as "may touch the uplink"."""
    try:
        interfaces = read_interfaces(netns)
        routes = read_default_routes(netns)
        uplink = find_uplink(interfaces, routes, environ=environ, route_lookup=lambda dest: route_device(dest, netns))
    except HyperconsoleError as exc:
        return HostNetwork(uplink=Uplink(known=False, reason=str(exc)), error=str(exc))
    return HostNetwork(tuple(interfaces), tuple(routes), uplink)


def _same_ip(text: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text) == ip
    except ValueError:
        return False


if __name__ == "__main__":
    # Used by _sysfs_in under `ip netns exec`: print the namespace's sysfs view as JSON.
    if sys.argv[1:] == ["--sysfs-json"]:
        print(json.dumps(read_sysfs()))
        sys.exit(0)
    sys.exit(2)
