"""Answers: every fixture that must fail gives its one expected line; good answers pass; the
shipped example passes; saved answers resume, 0600, never holding a clear password."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import msgspec
import pytest

from hyperconsole.cli.setup import check_answers
from hyperconsole.errors import ConfigError, ValidationError
from hyperconsole.setup import answers as A, secrets, validate
from tests.unit.setup.conftest import facts, good_answers

HERE = Path(__file__).parent
BAD = sorted((HERE / "answers").glob("bad-*.yaml"))
EXAMPLE = HERE.parents[2] / "docs" / "setup-answers.example.yaml"


def _expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: ")
    return f"{path.name}: {first.removeprefix('# expect: ')}"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_answers_give_exactly_their_one_line(path):
    try:
        _, problems = check_answers(path, facts())
    except ConfigError as exc:  # structure: unknown keys, wrong types
        problems = [str(exc)]
    assert problems == [_expected(path)]


def test_every_bad_answer_of_a_file_is_one_line_each(tmp_path):
    path = tmp_path / "answers.yaml"
    path.write_text("identity: {hostname: .hv1, timezone: Mars/Base, admin: {name: Alice}}\n"
                    "network: {uplink: eno1, mode: static, address: 10.0.0.5/8, gateway: 11.0.0.1, mtu: 10}\n")
    _, problems = check_answers(path, facts())
    assert [p.split(": ")[1] for p in problems] == [
        "at $.identity.hostname", "at $.identity.timezone", "at $.identity.admin.name",
        "at $.network.gateway", "at $.network.mtu"]


def test_good_answers_pass(public_key):
    answers = good_answers(public_key)
    assert validate.check_all(answers, facts()) == []
    dhcp = good_answers(public_key, network=A.Network(uplink="eno1", vlan=20, mtu=9000))
    assert validate.check_all(dhcp, facts()) == []
    v6 = good_answers(public_key, network=A.Network(uplink="eno1", mode="static", address="2001:db8::10/64",
                                                    gateway="2001:db8::1", dns=["2001:db8::53"]))
    assert validate.check_all(v6, facts()) == []


def test_shipped_example_passes_with_this_hosts_nic(tmp_path):
    text = EXAMPLE.read_text()
    assert "uplink: eno1" in text
    path = tmp_path / "example.yaml"
    path.write_text(text)
    answers, problems = check_answers(path, facts())
    assert problems == []
    assert answers.identity.hostname == "hv1.example.com" and answers.security.toggles == ["strict-ssh"]


def test_hostname_with_domain_splits():
    assert validate.hostname("hv1.example.com") == ("hv1", "example.com")
    assert validate.hostname("hv1") == ("hv1", None)
    with pytest.raises(ValidationError, match="not a valid label"):
        validate.hostname("hv_1")


def test_saved_answers_resume_private_and_without_clear_password(tmp_path, public_key):
    crypt_text = secrets.hash_password("correct horse battery", mkpasswd="")
    answers = good_answers(public_key, step="network")
    answers.identity.admin.password_hash = crypt_text
    path = A.save(answers)
    assert path == A.saved_path() and path.is_relative_to(Path(os.environ["XDG_STATE_HOME"]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert b"correct horse" not in path.read_bytes()
    assert A.load_saved() == answers
    path.write_bytes(b"{broken")
    with pytest.raises(ConfigError, match="delete the file to start again"):
        A.load_saved()
    A.forget()
    assert A.load_saved() is None


@pytest.mark.parametrize("password", ["correct horse battery", "x" * 80, "pässwörd-ünïcode"])
def test_sha512_crypt_matches_openssl(password):
    ours = secrets.sha512_crypt(password, "saltsaltsalt1234")
    theirs = subprocess.run(["openssl", "passwd", "-6", "-salt", "saltsaltsalt1234", "-stdin"], input=password,
                            capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    assert ours == theirs


def test_mkpasswd_gets_the_password_on_stdin_never_argv(script, tmp_path):
    seen = tmp_path / "argv"
    tool = script("mkpasswd", f'echo "$@" > {seen}\nread pw\necho "$$y$$j9T$$abc$$${{#pw}}"\n')
    tool.write_text(f'#!/bin/sh\necho "$@" > {seen}\nread pw\nprintf \'$y$j9T$abcdef$%s\\n\' "${{#pw}}"\n')
    crypt_text = secrets.hash_password("correct horse battery", mkpasswd=str(tool))
    assert crypt_text == "$y$j9T$abcdef$21"
    assert "correct" not in seen.read_text() and "--stdin" in seen.read_text()


def test_short_password_refused():
    with pytest.raises(ValidationError, match="at least 8"):
        secrets.hash_password("short", mkpasswd="")


def test_password_file_is_private(tmp_path):
    path = secrets.write_password_file(tmp_path / "secrets", "alice", secrets.sha512_crypt("pw123456", "s"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().startswith("$6$s$")


def test_answers_round_trip_through_builtins(public_key):
    answers = good_answers(public_key)
    assert msgspec.convert(A.to_builtins(answers), A.Answers) == answers
