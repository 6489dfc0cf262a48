"""Fleet figures: opening ten 1,000-VM test-driver hosts, one summary of every host, and the
console over all of them.

    python bench/bench_fleet.py [--hosts 10] [--vms 1000] [--cpu-seconds 30] [--no-ui]

Prints, beside each figure, the floor measured in the same process with bare libvirt calls:
opening the hosts one after another, and one bulk stats call per host. Each run uses fresh
host files (the test driver parses its XML at every open). Figures, not assertions.

The console (`hyperconsole --hosts FILE`), measured:
- start to first rows: process start to the first VM row painted on a real pty;
- one tick per host: a host's own tick (collect + merge + table update) as the app measures it,
  median / p95 over every host and several rounds (Textual's headless driver);
- UI update with every host ticking: all hosts asked at once, until every tick is on screen;
- idle CPU at a 2 s refresh (% of one core) and the resident RSS of the idle real process (judged
  against the target), its peak beside;
- a hung host: the same figures with one more host that never answers. In process, a host whose
  libvirt calls block (the sampler's call thread gives up at its deadline); for the real process,
  a host whose "daemon" accepts the connection and is then stopped with SIGSTOP (a listening
  socket of a stopped process: the kernel takes the connection, nothing ever answers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import libvirt  # noqa: E402

from bench.gen_host import generate  # noqa: E402
from hyperconsole.hosts import HostSpec  # noqa: E402
from hyperconsole.virt import connection  # noqa: E402,F401  (quiet libvirt error handler)
from hyperconsole.virt.fleet import Fleet, summarize_all  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


TARGETS = {"first rows (s)": 1.5, "host tick (ms)": 40.0, "idle CPU (%)": 3.0, "RSS (MiB)": 250.0}


def stopped_daemon() -> tuple[subprocess.Popen, str]:
    """A process listening on a loopback port, stopped with SIGSTOP: a libvirtd that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    code = (f"import socket,time;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            f"s.bind(('127.0.0.1',{port}));s.listen(16);print('ready',flush=True);time.sleep(3600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    proc.stdout.readline()
    os.kill(proc.pid, signal.SIGSTOP)
    return proc, f"qemu+tcp://127.0.0.1:{port}/system"


def hosts_file(uris: list[str], directory: Path, name: str) -> Path:
    path = directory / name
    path.write_text("hosts:\n" + "".join(f"  h{i}:\n    uri: {uri}\n    nixos_dir: {directory}\n"
                                          for i, uri in enumerate(uris)))
    return path


def measure_process(hosts: Path, cpu_seconds: float) -> dict:
    from bench_refresh import drain, stop
    import fcntl
    import pty
    import struct
    import termios

    import psutil

    master, slave = pty.openpty()
    os.set_blocking(master, False)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="160", LINES="50",
               XDG_STATE_HOME=tempfile.mkdtemp(prefix="hc-bench-state-"), PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "hyperconsole", "--hosts", str(hosts), "--refresh", "2"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, start_new_session=True)
    os.close(slave)
    painted, _ = drain(master, b"api-0", 60)  # the first row by name on a gen_host host
    first = time.perf_counter() - started if painted else float("nan")
    ps = psutil.Process(proc.pid)
    drain(master, None, 5)  # start-up settles (every host open, first ticks) before the idle window
    before, t0 = ps.cpu_times(), time.perf_counter()
    drain(master, None, cpu_seconds)
    after = ps.cpu_times()
    cpu = ((after.user + after.system) - (before.user + before.system)) / (time.perf_counter() - t0) * 100
    memory = {}
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            memory[line[:5]] = int(line.split()[1]) / 1024
    stop(proc, master)
    return {"first rows (s)": first, "idle CPU (%)": cpu, "RSS (MiB)": memory.get("VmRSS", float("nan")),
            "peak RSS (MiB)": memory.get("VmHWM", float("nan"))}


async def measure_ticks(uris: list[str], rounds: int, hang: str | None) -> dict:
    """Per-host ticks and the all-hosts update, in process; `hang`: a URI whose stats calls block."""
    from hyperconsole.app import HyperconsoleApp
    from hyperconsole.config import Config
    from hyperconsole.virt.sampler import DomainSampler

    release = threading.Event()
    real = {name: getattr(libvirt.virConnect, name) for name in ("getAllDomainStats", "domainListGetStats")}

    def blocking(name):
        def call(self, *args):
            if hang is not None and self.getURI() == hang:
                release.wait(600)
            return real[name](self, *args)
        return call

    fleet = Fleet([HostSpec(f"h{i}", uri, "/etc/nixos") for i, uri in enumerate(uris)])
    fleet.open_all(120, retry=False)
    app = HyperconsoleApp(fleet.manager("h0"), Config(refresh=3600), fleet=fleet,
                          sampler_factory=lambda m, h: DomainSampler(m, host=h))
    measured = [f"h{i}" for i, uri in enumerate(uris) if uri != hang]
    per_host: list[float] = []
    together: list[float] = []
    try:
        for name in real:
            setattr(libvirt.virConnect, name, blocking(name))
        async with app.run_test(size=(160, 50)) as pilot:
            async def settle() -> None:
                # The hung host's tick is abandoned at its deadline but its worker stays busy:
                # wait for the measured hosts' loops only.
                while any(app.polls[h].loop.busy for h in measured):
                    await pilot.pause(0.005)
                await pilot.pause()

            await pilot.pause(0.5)
            await settle()
            for _ in range(rounds):
                for host in measured:
                    app.poll_domains(host)
                    await settle()
                    per_host.append(app.view.last_tick_seconds * 1000)
                started = time.perf_counter()
                app.poll_domains()
                await settle()
                together.append((time.perf_counter() - started) * 1000)
            release.set()
    finally:
        release.set()
        for name, fn in real.items():
            setattr(libvirt.virConnect, name, fn)
        fleet.close()
    per_host.sort()
    return {"host tick (ms)": statistics.median(per_host), "host tick p95 (ms)": per_host[int(len(per_host) * .95) - 1],
            "all hosts ticking (ms)": statistics.median(together)}


def fmt(key: str, value: float) -> str:
    target = TARGETS.get(key.replace(" p95", ""))
    mark = "" if target is None else ("  ok" if value <= target else "  OVER")
    return f"{value:8.2f}{mark}"


def ui_figures(args, uris: list[str], tmp: Path, floors: dict) -> None:
    print(f"\nthe console over {len(uris)} hosts x {args.vms} VMs (target beside each; a hung host must change none)")
    ticks = asyncio.run(measure_ticks(uris, args.rounds, None))
    hung_path = tmp / "hung.xml"
    hung_path.write_text(Path(uris[0].removeprefix("test://")).read_text())
    hung_uri = f"test://{hung_path}"
    hung_ticks = asyncio.run(measure_ticks(uris + [hung_uri], args.rounds, hung_uri))
    proc = measure_process(hosts_file(uris, tmp, "hosts.yaml"), args.cpu_seconds)
    daemon, stopped_uri = stopped_daemon()
    try:
        hung_proc = measure_process(hosts_file(uris + [stopped_uri], tmp, "hosts-hung.yaml"), args.cpu_seconds)
    finally:
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait()
    print(f"{'figure':<26}{'all answer':>16}{'one hung':>16}{'floor':>10}   target")
    for key in ("first rows (s)", "host tick (ms)", "host tick p95 (ms)", "all hosts ticking (ms)", "idle CPU (%)",
                "RSS (MiB)", "peak RSS (MiB)"):
        ours = {**ticks, **proc}[key]
        hung = {**hung_ticks, **hung_proc}[key]
        target = TARGETS.get(key.replace(" p95", ""))
        floor = floors.get(key)
        print(f"{key:<26}{fmt(key, ours):>16}{fmt(key, hung):>16}{'' if floor is None else f'{floor:.2f}':>10}   "
              f"{'' if target is None else target}")
    print("floors, bare libvirt in this process: first rows = one host's open; host tick = one host's bulk\n"
          "stats call; all hosts = every host's call in turn; idle CPU = every host's call each 2 s; RSS = the\n"
          "process after opening every host and one call each")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="per-host tick rounds (each host once a round)")
    parser.add_argument("--cpu-seconds", type=float, default=30.0)
    parser.add_argument("--no-ui", action="store_true", help="only the core figures")
    args = parser.parse_args()
    xml = generate(args.vms)
    with tempfile.TemporaryDirectory(prefix="hc-bench-fleet-") as tmp:
        paths = []
        for i in range(args.hosts):
            path = Path(tmp) / f"host{i}.xml"
            path.write_text(xml)
            paths.append(path)
        uris = [f"test://{p}" for p in paths]

        started = time.perf_counter()
        conns = [libvirt.open(uri) for uri in uris]
        floor_open = time.perf_counter() - started
        started = time.perf_counter()
        for conn in conns:
            conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
        floor_stats = time.perf_counter() - started
        for conn in conns:
            conn.close()
        rss_floor = rss_mib()

        fleet = Fleet([HostSpec(f"h{i}", uri, "/etc/nixos") for i, uri in enumerate(uris)])
        first: list[float] = []
        started = time.perf_counter()
        statuses = fleet.open_all(60, retry=False, on_open=lambda _n: first.append(time.perf_counter() - started))
        opened = time.perf_counter() - started
        started = time.perf_counter()
        summaries = summarize_all(fleet, 60, cpu_interval=0)
        summary_time = time.perf_counter() - started
        fleet.close()
    connected = sum(s.state.value == "connected" for s in statuses)
    vms = sum(sum(s.vms.values()) for s in summaries)
    print(f"{args.hosts} hosts x {args.vms} VMs (test driver), {connected} connected, {vms} VMs summarised")
    print(f"first host open:           {min(first):6.3f} s")
    print(f"all hosts open (Fleet):    {opened:6.3f} s   floor, one after another: {floor_open:6.3f} s")
    print(f"summary of every host:     {summary_time:6.3f} s   floor, bulk state stats: {floor_stats:6.3f} s")
    print(f"max RSS:                   {rss_mib():6.0f} MiB (after the bare floor run: {rss_floor:.0f} MiB)")
    if not args.no_ui:
        with tempfile.TemporaryDirectory(prefix="hc-bench-fleet-ui-") as tmp:
            paths = [Path(tmp) / f"host{i}.xml" for i in range(args.hosts)]
            for path in paths:
                path.write_text(xml)
            floors = {"first rows (s)": floor_open / args.hosts, "host tick (ms)": floor_stats / args.hosts * 1000,
                      "all hosts ticking (ms)": floor_stats * 1000, "idle CPU (%)": floor_stats / 2.0 * 100,
                      "RSS (MiB)": rss_floor}
            ui_figures(args, [f"test://{p}" for p in paths], Path(tmp), floors)


if __name__ == "__main__":
    main()
