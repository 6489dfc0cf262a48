"""Generate a libvirt test-driver host with N VMs for benchmarks.

    python bench/gen_host.py 1000 > /tmp/h.xml
    python bench/gen_host.py 5000 --time      # also opens it and prints timings (stderr)

Deterministic: the same N gives the same file. States are mixed (about 60 % running,
10 % paused, 25 % shut off, 5 % crashed); each VM has 1 qcow2 disk in one of two pools and
1 NIC on one of three networks. Reuses tests/fixtures.py builders (ElementTree).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures import GIB, build_host_xml, domain_xml, network_xml, pool_xml, volume_xml  # noqa: E402

STATES = ["running"] * 12 + ["paused"] * 2 + ["shutoff"] * 5 + ["crashed"]
NETWORKS = ["default", "backend", "dmz"]
POOLS = [("default", "/var/lib/libvirt/images"), ("fast", "/srv/nvme-pool")]
ROLES = ["web", "api", "db", "cache", "worker", "ci-runner", "mail", "k8s-node"]


def generate(n_vms: int) -> str:
    """Test-driver node XML with ``n_vms`` VMs, 2 pools, 3 networks."""
    vols: dict[str, list[str]] = {p: [] for p, _ in POOLS}
    doms = []
    for i in range(n_vms):
        name = f"{ROLES[i % len(ROLES)]}-{i:05d}"
        pool, path = POOLS[i % len(POOLS)]
        vol = f"{name}.qcow2"
        # allocations kept tiny: the test driver fixes pool capacity at 100 GiB
        vols[pool].append(volume_xml(vol, (10 + i % 7 * 10) * GIB, 1024 * 1024 * (1 + i % 5)))
        doms.append(domain_xml(
            name,
            state=STATES[i % len(STATES)],
            vcpus=1 << (i % 4),
            memory_mib=512 << (i % 5),
            disks=[{"pool": pool, "volume": vol}],
            nics=[NETWORKS[i % len(NETWORKS)]],
            serial=False,
        ))
    nets = [
        network_xml("default", "nat", bridge="virbr0", ip="192.168.122.1",
                    dhcp=("192.168.122.2", "192.168.122.254")),
        network_xml("backend", None, bridge="virbr1", ip="10.10.0.1", prefix=16),
        network_xml("dmz", "bridge", bridge="br0"),
    ]
    pools = [pool_xml(p, path, vols[p]) for p, path in POOLS]
    return build_host_xml(doms, nets, pools, memory_mib=512 * 1024, cpus=(2, 2, 16, 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n_vms", type=int)
    ap.add_argument("--time", action="store_true",
                    help="write to a temp file, time libvirt.open + listAllDomains (stderr)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    xml = generate(args.n_vms)
    t_gen = time.perf_counter() - t0
    if not args.time:
        sys.stdout.write(xml)
        return
    import tempfile

    import libvirt

    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        f.write(xml)
    t0 = time.perf_counter()
    conn = libvirt.open("test://" + f.name)
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = len(conn.listAllDomains())
    t_list = time.perf_counter() - t0
    t0 = time.perf_counter()
    conn.getAllDomainStats()
    t_stats = time.perf_counter() - t0
    conn.close()
    Path(f.name).unlink()
    print(f"{n} VMs, {len(xml) / 1e6:.1f} MB XML: generate {t_gen * 1000:.0f} ms, "
          f"libvirt.open {t_open * 1000:.0f} ms, listAllDomains {t_list * 1000:.1f} ms, "
          f"getAllDomainStats {t_stats * 1000:.1f} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
