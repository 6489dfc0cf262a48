"""`hyperconsole doctor`: the --json document decoded strictly with its schema, exit codes 0/1/2,
--list-checks, --only; and the CLI run by a real unprivileged user the test creates (and removes),
where the checks that need root are SKIPped with the reason and access problems are said in words."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import msgspec
import pytest

from hyperconsole import cli
from hyperconsole.doctor import report
from tests.fixtures import build_host_xml, domain_xml, test_uri

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def nixos(tmp_path):
    directory = tmp_path / "nixos"
    directory.mkdir()
    return directory


def test_json_schema_and_exit_codes(nixos, capsys, tmp_path):
    base = ["doctor", "--json", "--nixos-dir", str(nixos), "--only", "nixos.imports"]
    code, out, _ = run(base, capsys)  # no configuration.nix: cannot tell → warning
    document = report.decode(out)
    assert (code, document.exit_code, document.schema) == (1, 1, report.SCHEMA_VERSION)
    (check,) = document.checks
    assert (check.id, check.status, check.fix) == ("nixos.imports", "warn", None)
    assert document.summary.warn == 1 and json.loads(out)["summary"] == {"pass": 0, "warn": 1, "fail": 0, "skip": 0}

    (nixos / "configuration.nix").write_text("{ ... }:\n{\n  networking.hostName = \"hv\";\n}\n")
    code, out, _ = run(base, capsys)
    document = report.decode(out)
    assert code == 2 and document.checks[0].status == "fail"
    assert document.checks[0].fix == "add ./hyperconsole to configuration.nix"

    (nixos / "configuration.nix").write_text("{ ... }:\n{\n  imports = [ ./hyperconsole ];\n}\n")
    code, out, _ = run(base, capsys)
    assert code == 0 and report.decode(out).checks[0].status == "pass"


def test_json_schema_is_strict():
    good = {"schema": 1, "host": "h", "user": "u", "root": False, "time": 1.0, "exit_code": 0,
            "summary": {"pass": 1, "warn": 0, "fail": 0, "skip": 0},
            "checks": [{"id": "a.b", "what": "x", "status": "pass", "why": "y", "hint": "", "detail": "",
                        "fix": None, "seconds": 0.1}]}
    assert report.decode(json.dumps(good)).checks[0].id == "a.b"
    for bad in ({**good, "extra": 1}, {**good, "checks": [{**good["checks"][0], "status": "ok"}]}):
        with pytest.raises(msgspec.ValidationError):
            report.decode(json.dumps(bad))


def test_text_output_has_a_summary_with_counts(nixos, capsys):
    code, out, _ = run(["doctor", "--nixos-dir", str(nixos), "--only", "nixos", "access"], capsys)
    assert code in (0, 1, 2)
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("8 checks: ") and " pass, " in last and " skip" in last


def test_list_checks_and_unknown_names(capsys):
    code, out, _ = run(["doctor", "--list-checks"], capsys)
    assert code == 0 and "libvirt.pool-space" in out and "nixos.ssh" in out and "needs root" in out
    code, _, err = run(["doctor", "--only", "nope"], capsys)
    assert code == 2 and "no such check: nope" in err


# -- as an unprivileged user ------------------------------------------------------------------------
# The interpreter lives where only root may look (/root), so the child starts as root, imports what
# the doctor needs, then drops to the user for good (setgroups/setgid/setuid) before any check runs:
# from there on the kernel enforces that user's rights exactly as for a login.
AS_USER = """
import os, sys, importlib, pkgutil
import hyperconsole, hyperconsole.cli, hyperconsole.cli.doctor, hyperconsole.doctor
for package in ("hyperconsole.doctor", "hyperconsole.virt", "hyperconsole.nixos", "hyperconsole.host",
                "hyperconsole.cli"):
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        importlib.import_module(f"{package}.{info.name}")
import hyperconsole.profiles, hyperconsole.doctor.report, json, msgspec, psutil, libvirt, encodings.idna, yaml
hyperconsole.cli.build_parser()
uid, gid = int(sys.argv[1]), int(sys.argv[2])
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
assert os.geteuid() == uid and os.getuid() == uid
sys.exit(hyperconsole.cli.main(sys.argv[3:]))
"""


@pytest.fixture
def unprivileged_user():
    """A user made for the test (removed after it) and a directory it can reach: (entry, dir).
    pytest's own tmp dirs are private to root."""
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    name = f"hcdoc{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="hc-doctor-user-"))
    os.chmod(work, 0o755)
    home = work / "home"
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/false", name],
                   check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        home.mkdir()
        os.chown(home, entry.pw_uid, entry.pw_gid)
        yield entry, work
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    with pytest.raises(KeyError):
        pwd.getpwnam(name)


def test_without_root_the_root_only_checks_are_skipped_with_the_reason(unprivileged_user):
    user, tmp_path = unprivileged_user
    uri = test_uri(tmp_path, build_host_xml(domains=[domain_xml("web", "running")]))
    os.chmod(uri.removeprefix("test://"), 0o644)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "home"),
           "PYTHONPATH": HERE, "LANG": "C.UTF-8"}
    argv = ["doctor", "--json", "--connect", uri, "--nixos-dir", str(tmp_path / "nixos"),
            "--only", "nixos.ssh", "host.journal", "access.user", "virt.kvm", "libvirt.connection"]
    done = subprocess.run([sys.executable, "-c", AS_USER, str(user.pw_uid), str(user.pw_gid), *argv],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    document = report.decode(done.stdout)
    assert (document.user, document.root) == (user.pw_name, False)
    checks = {c.id: c for c in document.checks}
    assert checks["nixos.ssh"].status == "skip"  # no profile here: skipped before it needs root
    assert checks["host.journal"].status == "skip"
    assert checks["host.journal"].why == f"{user.pw_name} cannot read the system journal (not root, not in systemd-journal)"
    access = checks["access.user"]
    assert access.status == "warn" and "not in hyperconsole-operators" in access.why
    assert access.hint == f'ask an admin to add you: users.users.{user.pw_name}.extraGroups = [ "hyperconsole-operators" ];'
    if os.path.exists("/dev/kvm") and not os.stat("/dev/kvm").st_mode & 0o006:
        assert checks["virt.kvm"].status == "warn" and f"but {user.pw_name} cannot open it" in checks["virt.kvm"].why
    assert checks["libvirt.connection"].status == "pass"
    assert document.exit_code == 1 and done.returncode == 1


def test_without_root_a_root_only_check_says_so(unprivileged_user):
    """nixos.ssh with a profile applied needs root (sshd -T reads the host keys): SKIP, with the reason."""
    from hyperconsole import profiles
    from hyperconsole.nixos.store import FragmentStore

    user, tmp_path = unprivileged_user
    store = FragmentStore(tmp_path / "nixos")
    (tmp_path / "nixos").mkdir()
    store.commit(profiles.prepare_profile_change(store, profiles.load_catalog(), "headless"))
    for path in (tmp_path / "nixos", store.dir):
        os.chmod(path, 0o755)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "home"), "PYTHONPATH": HERE}
    done = subprocess.run([sys.executable, "-c", AS_USER, str(user.pw_uid), str(user.pw_gid),
                           "doctor", "--nixos-dir", str(tmp_path / "nixos"), "--only", "nixos.ssh"],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "SKIP  nixos.ssh  needs root: sshd -T reads the host keys" in done.stdout
    assert "run as root for the checks marked SKIP that need it" in done.stdout


def test_host_changes_of_an_unprivileged_user(unprivileged_user):
    """No request unit: refused, and said why; with the unit's marker naming a group the user is
    not in: refused, with what to ask an admin; with the user's own group: through the unit."""
    import grp

    user, work = unprivileged_user
    marker = work / "privileged.json"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work / "home"), "PYTHONPATH": HERE,
           "HYPERCONSOLE_PRIVILEGED": str(marker)}
    (work / "nixos").mkdir()

    def doctor_says():
        done = subprocess.run([sys.executable, "-c", AS_USER, str(user.pw_uid), str(user.pw_gid), "doctor", "--json",
                               "--nixos-dir", str(work / "nixos"), "--only", "access.host-changes"],
                              capture_output=True, text=True, env=env, cwd=str(work), timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        (check,) = report.decode(done.stdout).checks
        return check

    check = doctor_says()
    assert check.status == "fail" and "request unit is not installed" in check.why
    marker.write_text(json.dumps({"spool": str(work / "spool"), "group": "root"}))
    marker.chmod(0o644)
    check = doctor_says()
    assert check.status == "fail" and check.why.startswith("host changes are refused: you are not in root")
    marker.write_text(json.dumps({"spool": str(work / "spool"), "group": grp.getgrgid(user.pw_gid).gr_name}))
    check = doctor_says()
    assert check.status == "pass" and "hyperconsole-request@<id>.service" in check.why
