"""Every fragment hyperconsole can produce parses and evaluates with the real Nix, and agrees
with our reader; option paths and value types match the NixOS option declarations."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperconsole import profiles
from hyperconsole.nixos.render import INT_MAX, INT_MIN, parse, render_fragment

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SHIPPED = REPO / "profiles"
TOGGLE_SETS = [c for n in range(4) for c in itertools.combinations(["fail2ban", "strict-firewall", "strict-ssh"], n)]

# Declared types of every option the shipped profiles and toggles set, from the NixOS options
# reference (nixpkgs nixos/modules: users-groups.nix, sudo.nix, polkit.nix, auditd.nix, audit.nix,
# sshd.nix, firewall.nix, fail2ban.nix). "*" is an attrsOf name; services.openssh.settings is a
# freeform submodule of atoms (null, bool, int, float or string), so undeclared keys there are
# checked as atoms.
OPTION_TYPES = {
    "users.groups.*": "attrs",
    "users.users.*.isNormalUser": "bool",
    "users.users.*.description": "string",
    "users.users.*.extraGroups": "list of string",
    "security.sudo.enable": "bool",
    "security.sudo.execWheelOnly": "bool",
    "security.sudo.wheelNeedsPassword": "bool",
    "security.polkit.enable": "bool",
    "security.polkit.extraConfig": "string",
    "security.auditd.enable": "bool",
    "security.audit.enable": "bool",  # boolean or "lock"
    "services.openssh.enable": "bool",
    "services.openssh.settings.PermitRootLogin": "string",
    "services.openssh.settings.PasswordAuthentication": "bool",
    "services.openssh.settings.KbdInteractiveAuthentication": "bool",
    "services.openssh.settings.X11Forwarding": "bool",
    "services.openssh.settings.KexAlgorithms": "list of string",
    "services.openssh.settings.Ciphers": "list of string",
    "services.openssh.settings.Macs": "list of string",
    "services.openssh.settings.*": "atom",
    "networking.firewall.enable": "bool",
    "networking.firewall.allowPing": "bool",
    "networking.firewall.allowedTCPPorts": "list of port",
    "networking.firewall.allowedUDPPorts": "list of port",
    "networking.firewall.allowedTCPPortRanges": "list of port range",
    "networking.firewall.logRefusedConnections": "bool",
    "networking.firewall.logReversePathDrops": "bool",
    "services.fail2ban.enable": "bool",
    "services.fail2ban.maxretry": "unsigned int",
    "services.fail2ban.bantime": "string",
    "services.fail2ban.bantime-increment.enable": "bool",
}


def _declared(path: list[str]) -> str | None:
    """The declared type for an option path: an exact declaration wins over a "*" pattern."""
    exact = OPTION_TYPES.get(".".join(path))
    if exact is not None:
        return exact
    for pattern, kind in OPTION_TYPES.items():
        parts = pattern.split(".")
        if "*" in parts and len(parts) == len(path) and all(p in ("*", q) for p, q in zip(parts, path)):
            return kind
    return None


def _is_port(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535


CHECKS = {
    "bool": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "attrs": lambda v: isinstance(v, dict),
    "unsigned int": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "atom": lambda v: v is None or isinstance(v, (bool, int, float, str)),
    "list of string": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "list of port": lambda v: isinstance(v, list) and all(_is_port(i) for i in v),
    "list of port range": lambda v: isinstance(v, list)
    and all(isinstance(i, dict) and set(i) == {"from", "to"} and all(_is_port(x) for x in i.values()) for i in v),
}


def check_option_types(value, path=()) -> list[str]:
    problems = []
    kind = _declared(list(path)) if path else None
    if kind is not None:
        if not CHECKS[kind](value):
            problems.append(f"{'.'.join(path)}: expected {kind}, got {value!r}")
        return problems
    if isinstance(value, dict) and value:
        for key, child in value.items():
            problems.extend(check_option_types(child, (*path, key)))
        return problems
    return [f"{'.'.join(path)}: not a declared NixOS option in OPTION_TYPES"]


@pytest.mark.parametrize("name", ["headless", "management"])
@pytest.mark.parametrize("toggles", TOGGLE_SETS, ids=lambda t: "+".join(t) or "none")
def test_every_profile_and_toggle_fragment_evaluates(nix, tmp_path, name, toggles):
    catalog = profiles.load_catalog([SHIPPED])
    text = profiles.render_profile_fragment(catalog, name, toggles)
    evaluated = nix.eval_text(text, tmp_path)
    assert evaluated == parse(text) == profiles.profile_options(catalog, name, toggles)
    assert check_option_types(evaluated) == []


def test_option_type_check_catches_wrong_types_and_unknown_options():
    assert check_option_types({"services": {"openssh": {"settings": {"PasswordAuthentication": "no"}}}})
    assert check_option_types({"networking": {"firewall": {"allowedTCPPorts": [70000]}}})
    assert check_option_types({"networking": {"firewal": {"enable": True}}})
    assert check_option_types({"services": {"openssh": {"settings": {"MaxAuthTries": 3}}}}) == []


hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("\"\\${}'\t\n\r $")),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=25,
)
nix_values = st.recursive(
    st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX) | hostile_text
    | st.sampled_from(["''${x}", "${x}", "$${x}", "a\n  b\n", "x\n\n  y\nz\n", "'\n", "a'\nb\n", "$\n"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(hostile_text, nix_values, max_size=4))
def test_property_real_nix_agrees_with_our_reader(nix, tmp_path, value):
    text = render_fragment(value)
    assert nix.eval_text(text, tmp_path) == parse(text) == value


@pytest.mark.parametrize(
    "text",
    ["quote \" backslash \\ dollar $ brace ${x} indented ''${y} tab\t cr\r nl\n unicode é 🚀 ", "${", "$", "\\", "''", "'''"],
)
def test_hostile_strings_evaluate_exactly(nix, tmp_path, text):
    value = {"k": text, text: [text, {text: text}]}
    assert nix.eval_text(render_fragment(value), tmp_path) == value


def test_demo_rebuild_really_evaluates_fragments(nix, tmp_path):
    from hyperconsole.demo import nixos as demo

    nixos_dir = demo.prepare_demo_nixos(tmp_path / "nixos", tmp_path / "system")
    base = [sys.executable, "-m", "hyperconsole.demo.rebuild", "--state", str(tmp_path / "system"), str(nixos_dir)]
    catalog = profiles.load_catalog([SHIPPED])
    (nixos_dir / "hyperconsole" / "security-profile.nix").write_text(profiles.render_profile_fragment(catalog, "headless"))
    good = subprocess.run(base + ["switch"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "evaluating fragments with nix-instantiate" in good.stdout and "security-profile.nix: ok" in good.stdout
    assert "generation 2" in good.stdout

    (nixos_dir / "hyperconsole" / "typo.nix").write_text("{ a = 1 }\n")  # parse error
    bad = subprocess.run(base + ["test"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert bad.returncode == 1 and "error: typo.nix:" in bad.stdout

    (nixos_dir / "hyperconsole" / "typo.nix").write_text('{ a = 1 + "x"; }\n')  # parses, fails to evaluate
    bad = subprocess.run(base + ["dry-build"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert bad.returncode == 1 and "error: typo.nix:" in bad.stdout
