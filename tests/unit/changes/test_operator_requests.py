"""Host changes by an operator without sudo, end to end with a real unprivileged user.

The test creates a group and two users (one in the group, one not; removed afterwards). The
operator runs the real CLI (`runuser -u USER -- … hyperconsole net bridge add …`), which writes a
request into a real spool (1730 root:group) and starts `hyperconsole-request@<id>.service`. There is
no systemd here, so `systemctl` on the operator's PATH is a stand-in that only notes which unit was
started; the test then does what systemd would do, as root: it runs the unit's command
(`hyperconsole privileged run <id>`) directly. The rebuild is the demo's, which evaluates every
fragment with the real nix-instantiate, and confirm-or-revert is the real trial machinery.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import msgspec
import pytest

from hyperconsole import profiles
from hyperconsole.changes import requests, spool
from hyperconsole.demo import nixos as demo
from hyperconsole.nixos.store import FragmentStore
from tests.conftest import in_ci, write_script

REPO = Path(__file__).resolve().parents[3]
PROGRAM = ["-m", "hyperconsole"]


def _operator_python() -> tuple[str, str]:
    """An interpreter the unprivileged user may run, and the path to this venv's packages (the
    venv's own interpreter may sit under a home the user cannot enter)."""
    site = sysconfig.get_paths()["purelib"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(version) or "", f"/usr/bin/{version}"):
        if candidate and os.path.exists(candidate):
            yield candidate, site


@pytest.fixture(scope="module")
def host():
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"):
        if in_ci():
            pytest.fail("needs root with useradd and runuser")
        pytest.skip("needs root with useradd and runuser")
    suffix = secrets.token_hex(3)
    group, operator, outsider = f"hcops{suffix}", f"hcop{suffix}", f"hcout{suffix}"
    subprocess.run(["groupadd", group], check=True)
    subprocess.run(["useradd", "-M", "-G", group, operator], check=True)
    subprocess.run(["useradd", "-M", outsider], check=True)
    base = Path(tempfile.mkdtemp(prefix="hc-privops-", dir="/tmp"))
    try:
        base.chmod(0o755)
        yield _Host(base, group, operator, outsider)
    finally:
        for user in (operator, outsider):
            subprocess.run(["userdel", user], check=False)
        subprocess.run(["groupdel", group], check=False)
        shutil.rmtree(base, ignore_errors=True)


class _Host:
    def __init__(self, base: Path, group: str, operator: str, outsider: str) -> None:
        self.base, self.group, self.operator, self.outsider = base, group, operator, outsider
        self.gid = grp.getgrnam(group).gr_gid
        self.python, self.site = self._python()

    def _python(self) -> tuple[str, str]:
        for python, site in _operator_python():
            done = subprocess.run(["runuser", "-u", self.operator, "--", "env", f"PYTHONPATH={REPO}:{site}", python,
                                   "-c", "import hyperconsole, msgspec, yaml"], capture_output=True, cwd="/")
            if done.returncode == 0:
                return python, site
        pytest.fail("no Python interpreter the unprivileged user can run with this venv's packages")


@pytest.fixture
def setup(host, tmp_path, monkeypatch):
    """A root-owned NixOS dir (0755) with the headless profile applied, the spool, the marker the
    NixOS module writes, and the operator's stand-in systemctl."""
    case = Path(tempfile.mkdtemp(prefix="case-", dir=host.base))
    case.chmod(0o755)
    nixos_dir = case / "nixos"
    system_dir = case / "system"
    demo.prepare_demo_nixos(nixos_dir, system_dir)
    store = FragmentStore(nixos_dir)
    catalog = profiles.load_catalog([REPO / "profiles"])
    store.commit(profiles.prepare_profile_change(store, catalog, "headless"))
    spool_dir = case / "requests"
    spool_dir.mkdir()
    os.chown(spool_dir, 0, host.gid)
    spool_dir.chmod(0o1730)
    marker = case / "privileged.json"
    marker.write_text(json.dumps({"spool": str(spool_dir), "group": host.group, "unit": "hyperconsole-request@"}))
    bindir = case / "bin"
    bindir.mkdir()
    started = case / "started"
    started.touch()
    started.chmod(0o666)
    # Stand-in for systemd (none here): note the unit the operator started; the test runs it.
    write_script(bindir / "systemctl", f'for last; do :; done\necho "$last" >> {started}\n')
    rebuild, revert = demo.demo_commands(nixos_dir, system_dir)
    monkeypatch.setenv(spool.MARKER_ENV, str(marker))
    return _Case(host, case, nixos_dir, spool_dir, marker, bindir, started, rebuild, revert)


class _Case:
    def __init__(self, host, case, nixos_dir, spool_dir, marker, bindir, started, rebuild, revert):
        self.host, self.dir, self.nixos_dir, self.spool = host, case, nixos_dir, spool_dir
        self.marker, self.bindir, self.started, self.rebuild, self.revert = marker, bindir, started, rebuild, revert
        self.served: list[subprocess.CompletedProcess] = []

    def fragments(self) -> dict[str, bytes]:
        directory = self.nixos_dir / "hyperconsole"
        return {p.name: p.read_bytes() for p in sorted(directory.glob("*.nix"))}

    def operator(self, *argv: str, user: str | None = None, marker: bool = True, timeout: float = 180):
        """Run the CLI as the operator, serving each request it starts as root meanwhile."""
        user = user or self.host.operator
        home = self.dir / f"home-{user}"
        if not home.exists():
            home.mkdir(mode=0o700)
            os.chown(home, pwd.getpwnam(user).pw_uid, -1)
        env = [f"PATH={self.bindir}:/usr/bin:/bin", f"PYTHONPATH={REPO}:{self.host.site}", f"HOME={home}",
               f"XDG_STATE_HOME={home}/state", f"XDG_CONFIG_HOME={home}/config"]
        if marker:
            env.append(f"{spool.MARKER_ENV}={self.marker}")
        stop = threading.Event()
        server = threading.Thread(target=self._serve_started, args=(stop,), daemon=True)
        server.start()
        try:
            return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *env, self.host.python, *PROGRAM,
                                   "--nixos-dir", str(self.nixos_dir), *argv],
                                  capture_output=True, text=True, timeout=timeout, cwd="/", stdin=subprocess.DEVNULL)
        finally:
            stop.set()
            server.join()

    def _serve_started(self, stop: threading.Event) -> None:
        seen = 0
        while not stop.is_set():
            units = self.started.read_text().split()
            for unit in units[seen:]:
                self.served.append(self.run_unit(unit.removeprefix("hyperconsole-request@").removesuffix(".service")))
            seen = len(units)
            time.sleep(0.05)

    def run_unit(self, request_id: str) -> subprocess.CompletedProcess:
        """What hyperconsole-request@<id>.service runs, as root (run directly: no systemd here)."""
        env = {**os.environ, spool.MARKER_ENV: str(self.marker), "PYTHONPATH": str(REPO)}
        return subprocess.run([sys.executable, *PROGRAM, "--nixos-dir", str(self.nixos_dir), "--rebuild-cmd",
                               self.rebuild, "--revert-cmd", self.revert, "privileged", "run", request_id],
                              capture_output=True, text=True, timeout=180, env=env)

    def write_request(self, change, *, user: str | None = None, request_id: str | None = None,
                      raw: bytes | None = None) -> str:
        """A request file written by `user` itself (through the operator's own code path)."""
        request_id = request_id or spool.new_id()
        data = raw if raw is not None else msgspec.json.encode(
            requests.Request(1, request_id, time.time(), change))
        code = ("import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY|os.O_CREAT|os.O_EXCL|os.O_NOFOLLOW, 0o600); "
                "os.write(fd, sys.stdin.buffer.read())")
        subprocess.run(["runuser", "-u", user or self.host.operator, "--", self.host.python, "-c", code,
                        str(self.spool / f"{request_id}.json")], input=data, check=True, cwd="/")
        return request_id

    def status(self, request_id: str) -> dict:
        return json.loads((self.spool / f"{request_id}.status").read_text())


def test_spool_and_files_belong_to_root_and_the_group(setup):
    info = setup.spool.stat()
    assert stat.S_IMODE(info.st_mode) == 0o1730 and info.st_uid == 0 and info.st_gid == setup.host.gid
    assert stat.S_IMODE((setup.nixos_dir / "hyperconsole").stat().st_mode) & 0o022 == 0


def test_operator_adds_a_bridge_on_trial_and_keeps_it(setup):
    done = setup.operator("net", "bridge", "add", "br7", "--yes", "--confirm-timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "handing the change to the root request unit" in done.stdout
    assert "trial configuration active" in done.stdout
    assert "demo:" in done.stdout  # the rebuild's own output, streamed from the unit's log
    fragment = setup.nixos_dir / "hyperconsole" / "network.nix"
    assert "br7" in fragment.read_text() and fragment.stat().st_uid == 0
    [unit] = setup.served
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert f"from {setup.host.operator}: net.bridge.add" in unit.stdout  # who asked for what, in the journal
    request_id = setup.started.read_text().split()[0].split("@")[1].removesuffix(".service")
    assert not (setup.spool / f"{request_id}.json").exists()  # taken
    status = setup.status(request_id)
    assert status["ok"] and status["user"] == setup.host.operator and status["outcome"]["pending"]
    log = setup.spool / f"{request_id}.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o640 and log.stat().st_gid == setup.host.gid

    kept = setup.operator("confirm")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "confirmed: switched" in kept.stdout
    assert not (setup.nixos_dir / "hyperconsole" / ".pending-change.json").exists()
    assert "br7" in fragment.read_text()


def test_operator_reverts_a_trial(setup):
    before = setup.fragments()
    done = setup.operator("net", "bridge", "add", "br8", "--yes", "--confirm-timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "br8" in (setup.nixos_dir / "hyperconsole" / "network.nix").read_text()
    reverted = setup.operator("revert")
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    assert "reverted: restored network.nix" in reverted.stdout
    assert setup.fragments() == before


def test_a_change_the_profile_does_not_allow_is_refused_and_nothing_is_written(setup):
    before = setup.fragments()
    done = setup.operator("profile", "apply", "management", "--yes")
    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert errors == [f"error: refused: {setup.host.operator} may not change profile: the security profile headless "
                      "lets operators change network, backups"], done.stderr
    assert setup.fragments() == before
    [unit] = setup.served
    assert unit.returncode == 2


def test_without_the_units_the_operator_is_told_in_one_line(setup):
    before = setup.fragments()
    done = setup.operator("net", "bridge", "add", "br9", "--yes", marker=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: changing the host needs root here: hyperconsole's request unit is not installed")
    assert setup.fragments() == before and not setup.served


def _refused(setup, request_id: str, reason: str) -> None:
    before = setup.fragments()
    unit = setup.run_unit(request_id)
    assert unit.returncode == 2, unit.stdout + unit.stderr
    assert reason in unit.stdout
    assert setup.fragments() == before


def test_a_symlinked_request_is_refused(setup):
    target = setup.dir / "elsewhere.json"
    target.write_bytes(b"{}")
    request_id = spool.new_id()
    subprocess.run(["runuser", "-u", setup.host.operator, "--", "ln", "-s", str(target),
                    str(setup.spool / f"{request_id}.json")], check=True, cwd="/")
    _refused(setup, request_id, "symbolic link")
    assert setup.status(request_id)["ok"] is False


def test_a_request_owned_by_someone_outside_the_group_is_refused(setup):
    request_id = setup.write_request(requests.BridgeAdd("br5"))
    os.chown(setup.spool / f"{request_id}.json", pwd.getpwnam(setup.host.outsider).pw_uid, -1)
    _refused(setup, request_id, f"belongs to {setup.host.outsider}, who is not in {setup.host.group}")


def test_a_malformed_request_is_refused(setup):
    request_id = setup.write_request(None, raw=b'{"version": 1, "change": {"kind": "net.rm-rf"}}')
    _refused(setup, request_id, "the request is malformed")
    request_id = spool.new_id()
    setup.write_request(None, request_id=request_id, raw=json.dumps(
        {"version": 1, "id": request_id, "created": time.time(), "change": {"kind": "net.bridge.add", "name": "br0",
                                                                            "nixos": {"users": {}}}}).encode())
    _refused(setup, request_id, "the request is malformed")


def test_a_replayed_request_is_refused(setup):
    request_id = setup.write_request(requests.BridgeAdd("br6"), )
    first = setup.run_unit(request_id)
    assert first.returncode == 0, first.stdout + first.stderr
    status = (setup.spool / f"{request_id}.status").read_bytes()
    setup.write_request(requests.BridgeAdd("br6"), request_id=request_id)
    _refused(setup, request_id, "was handled already")
    assert (setup.spool / f"{request_id}.status").read_bytes() == status
    stale = spool.new_id()
    setup.write_request(None, request_id=stale, raw=msgspec.json.encode(
        requests.Request(1, stale, time.time() - 3600, requests.BridgeAdd("br4"))))
    _refused(setup, stale, "requests are taken within")
