"""Security profiles: shipped files validate, toggles merge, broken files are reported not raised."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from hyperconsole import profiles
from hyperconsole.errors import ValidationError
from hyperconsole.nixos.render import parse, read_meta
from hyperconsole.nixos.store import FragmentStore

SHIPPED = Path(__file__).resolve().parents[3] / "profiles"
TOGGLE_SETS = [combo for n in range(4) for combo in itertools.combinations(["fail2ban", "strict-firewall", "strict-ssh"], n)]


def test_shipped_catalog_is_valid():
    catalog = profiles.load_catalog([SHIPPED])
    assert catalog.problems == []
    assert set(catalog.profiles) == {"headless", "management"}
    assert set(catalog.toggles) == {"strict-ssh", "strict-firewall", "fail2ban"}


def test_default_search_finds_shipped_profiles():
    assert profiles.shipped_dir() == SHIPPED
    assert {"headless", "management"} <= set(profiles.load_catalog().profiles)


def test_headless_profile_contents():
    opts = profiles.profile_options(profiles.load_catalog([SHIPPED]), "headless")
    ssh = opts["services"]["openssh"]["settings"]
    assert ssh["PermitRootLogin"] == "no" and ssh["PasswordAuthentication"] is False
    assert opts["networking"]["firewall"]["allowedTCPPorts"] == [22]
    assert opts["security"]["auditd"]["enable"] is True
    assert "wheel" not in opts["users"]["users"]["operator"]["extraGroups"]
    assert "org.libvirt.unix.manage" in opts["security"]["polkit"]["extraConfig"]


@pytest.mark.parametrize("name", ["headless", "management"])
@pytest.mark.parametrize("toggles", TOGGLE_SETS)
def test_every_profile_and_toggle_set_renders_and_reads_back(name, toggles):
    catalog = profiles.load_catalog([SHIPPED])
    text = profiles.render_profile_fragment(catalog, name, toggles)
    assert parse(text) == profiles.profile_options(catalog, name, toggles)
    assert read_meta(text)["profile"] == name


def test_toggles_merge_and_are_order_independent():
    catalog = profiles.load_catalog([SHIPPED])
    a = profiles.profile_options(catalog, "headless", ["strict-ssh", "strict-firewall"])
    b = profiles.profile_options(catalog, "headless", ["strict-firewall", "strict-ssh", "strict-ssh"])
    assert a == b
    assert a["networking"]["firewall"]["allowPing"] is False  # toggle replaces the profile's scalar
    assert a["networking"]["firewall"]["allowedTCPPorts"] == [22]  # untouched keys stay
    assert a["services"]["openssh"]["settings"]["PermitRootLogin"] == "no"
    assert a["services"]["openssh"]["settings"]["MaxAuthTries"] == 3


def test_merge_joins_lists_without_duplicates():
    assert profiles.merge_options({"l": [1, 2], "m": {"a": 1}}, {"l": [2, 3], "m": {"b": 2}}) == {
        "l": [1, 2, 3], "m": {"a": 1, "b": 2},
    }


@pytest.mark.parametrize("name", ['head"less', "${x}", "../headless", "héadless", "nope"])
def test_unknown_or_hostile_names_are_refused(name):
    catalog = profiles.load_catalog([SHIPPED])
    with pytest.raises(ValidationError, match="no security profile"):
        profiles.profile_options(catalog, name)
    with pytest.raises(ValidationError, match="no toggle"):
        profiles.profile_options(catalog, "headless", [name])


GOOD = "name: {name}\nsummary: ok\nnixos:\n  a:\n    b: true\n"


@pytest.mark.parametrize(
    "filename, content, expected",
    [
        ("bad.yaml", "name: bad\nsummary: [\n", "line"),
        ("bad.yaml", "- a list\n", "top level must be a mapping"),
        ("bad.yaml", GOOD.format(name="other"), "must match"),
        ("bad.yaml", GOOD.format(name="bad") + "extra: 1\n", "unknown key 'extra'"),
        ("bad.yaml", "name: bad\nsummary: ok\nnixos:\n  a: 1.5\n", "at $.nixos.a: a floating-point"),
        ("bad.yaml", "name: bad\nsummary: ok\nnixos: {}\n", "at $.nixos: must be a non-empty mapping"),
        ("bad.yaml", GOOD.format(name="bad") + "console:\n  libvirt: root\n", "at $.console.libvirt: invalid enum value 'root'"),
        ("bad.yaml", "name: bad\nsummary: ''\nnixos:\n  a: 1\n", "at $.summary: expected text that is not blank"),
        ("bad.yaml", "name: bad\nsummary: ok\nnixos:\n  a:\n    2020-01-01: x\n", "must be a non-empty string"),
        ("toggles.yaml", "toggles:\n  t:\n    summary: s\n", "at $.toggles.t: missing key 'nixos'"),
        ("toggles.yaml", "other: 1\n", "at $: unknown key 'other'"),
        ("bad.yaml", "name: bad\nsummary: ok\nnixos: &x\n  a: [*x]\n", "the alias *x refers to a node that contains it"),
    ],
)
def test_broken_files_are_reported_with_file_and_key(tmp_path, filename, content, expected):
    (tmp_path / filename).write_text(content)
    (tmp_path / "fine.yaml").write_text(GOOD.format(name="fine"))
    catalog = profiles.load_catalog([tmp_path])
    assert len(catalog.problems) == 1
    assert str(tmp_path / filename) in catalog.problems[0] and expected in catalog.problems[0]
    assert "fine" in catalog.profiles  # a broken file never hides the good ones


def test_later_dirs_override_shipped_profiles(tmp_path):
    (tmp_path / "headless.yaml").write_text(GOOD.format(name="headless"))
    catalog = profiles.load_catalog([SHIPPED, tmp_path])
    assert catalog.profiles["headless"].nixos == {"a": {"b": True}}
    assert "management" in catalog.profiles


def test_current_selection_reads_the_fragment_header(nixos_dir):
    store = FragmentStore(nixos_dir)
    assert profiles.current_selection(store) is None
    catalog = profiles.load_catalog([SHIPPED])
    change = profiles.prepare_profile_change(store, catalog, "management", ["strict-ssh", "fail2ban"])
    assert change.message == "hyperconsole: security profile management + fail2ban, strict-ssh"
    store.commit(change)
    assert profiles.current_selection(store) == profiles.Selection("management", ("fail2ban", "strict-ssh"))
    store.commit(profiles.prepare_profile_change(store, catalog, "headless"))
    assert profiles.current_selection(store) == profiles.Selection("headless", ())


# NixOS's defaults for the sshd algorithm lists, from the options reference
# (nixos/modules/services/networking/ssh/sshd.nix, services.openssh.settings.KexAlgorithms /
# Ciphers / Macs, "Default:"), as of NixOS 25.05.
NIXOS_SSH_DEFAULTS = {
    "KexAlgorithms": ["mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
                      "curve25519-sha256", "curve25519-sha256@libssh.org", "diffie-hellman-group-exchange-sha256"],
    "Ciphers": ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
                "aes256-ctr", "aes192-ctr", "aes128-ctr"],
    "Macs": ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com"],
}


@pytest.mark.parametrize("option", sorted(NIXOS_SSH_DEFAULTS))
def test_hardening_keeps_what_the_nixos_default_offers_first(option):
    """Hardening may drop the tail of a default list, never its head: a list that leaves out the
    default's first entries (as strict-ssh once left out mlkem768x25519-sha256) weakens the host."""
    catalog = profiles.load_catalog([SHIPPED])
    for toggle in catalog.toggles.values():
        settings = toggle.nixos.get("services", {}).get("openssh", {}).get("settings", {})
        if option in settings:
            hardened = settings[option]
            assert hardened, f"{toggle.name} empties {option}"
            assert hardened == NIXOS_SSH_DEFAULTS[option][:len(hardened)], (toggle.name, option)


@pytest.mark.parametrize("filename, nixos, path, better", [
    ("pw.yaml", "users:\n    users:\n      operator:\n        initialPassword: hunter2\n",
     "$.nixos.users.users.operator.initialPassword", "hashedPasswordFile"),
    ("pw.yaml", "users:\n    users:\n      root:\n        password: hunter2\n",
     "$.nixos.users.users.root.password", "hashedPasswordFile"),
    ("pw.yaml", "services:\n    grafana:\n      settings:\n        security:\n          admin_password: x\n",
     "$.nixos.services.grafana.settings.security.admin_password", "admin_passwordFile"),
])
def test_a_clear_text_password_in_a_profile_is_refused(tmp_path, filename, nixos, path, better):
    (tmp_path / filename).write_text(f"name: pw\nsummary: s\nnixos:\n  {nixos}")
    catalog = profiles.load_catalog([tmp_path])
    assert "pw" not in catalog.profiles
    [problem] = catalog.problems
    assert f"at {path}: a clear-text password is refused: the Nix store is world-readable" in problem
    assert f"set {better} to a file outside the store" in problem


def test_a_clear_text_password_in_a_toggle_is_refused_but_hashes_and_booleans_pass(tmp_path):
    (tmp_path / "toggles.yaml").write_text(
        "toggles:\n  t:\n    summary: s\n    nixos:\n      users:\n        users:\n          op:\n"
        "            hashedPassword: '$y$j9T$abc'\n            password: hunter2\n")
    (tmp_path / "ok.yaml").write_text(
        "name: ok\nsummary: s\nnixos:\n  security:\n    sudo:\n      wheelNeedsPassword: true\n"
        "  users:\n    users:\n      op:\n        hashedPasswordFile: /run/secrets/op\n"
        "        initialHashedPassword: '$y$j9T$abc'\n")
    catalog = profiles.load_catalog([tmp_path])
    assert "ok" in catalog.profiles and catalog.toggles == {}
    [problem] = catalog.problems
    assert "at $.toggles.t.nixos.users.users.op.password: a clear-text password is refused" in problem
