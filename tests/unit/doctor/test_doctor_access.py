"""access.user: polkit's answer (recorded pkcheck exit codes: this machine runs no polkitd) and the
words a refused user reads."""

from __future__ import annotations

from hyperconsole.doctor.model import Status
from tests.unit.doctor.conftest import run_one, write_command


def test_recorded_pkcheck_refusal_is_explained_in_words(make_ctx, bindir):
    write_command(bindir, "pkcheck", "echo 'Not authorized.' >&2; exit 1")
    ctx = make_ctx(euid=54321)
    result = run_one(ctx, "access.user")
    if ctx.groups() & {"libvirtd", "libvirt"}:
        return  # a member of libvirt's own group is allowed whatever polkit says
    assert result.status is Status.FAIL
    assert "polkit refuses org.libvirt.unix.manage, so libvirt opens read-only" in result.why


def test_recorded_pkcheck_without_polkitd_is_no_answer(make_ctx, bindir):
    write_command(bindir, "pkcheck", "echo 'Error getting authority' >&2; exit 126")
    result = run_one(make_ctx(euid=54321), "access.user")
    assert result.status is not Status.FAIL or "polkit refuses" not in result.why


def test_root(make_ctx):
    assert run_one(make_ctx(euid=0), "access.user").why.startswith("running as root")


def test_host_changes_as_root(make_ctx):
    assert run_one(make_ctx(), "access.host-changes").why.startswith("root: host changes are applied directly")
