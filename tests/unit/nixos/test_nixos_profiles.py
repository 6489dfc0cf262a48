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
        ("bad.yaml", "name: bad\nsummary: ok\nnixos:\n  a: 1.5\n", "nixos.a is a floating-point"),
        ("bad.yaml", "name: bad\nsummary: ok\nnixos: {}\n", "'nixos' must be a non-empty mapping"),
        ("bad.yaml", GOOD.format(name="bad") + "console:\n  libvirt: root\n", "console.libvirt"),
        ("bad.yaml", "name: bad\nsummary: ''\nnixos:\n  a: 1\n", "'summary'"),
        ("bad.yaml", "name: bad\nsummary: ok\nnixos:\n  a:\n    2020-01-01: x\n", "must be a non-empty string"),
        ("toggles.yaml", "toggles:\n  t:\n    summary: s\n", "'nixos' must be a non-empty mapping"),
        ("toggles.yaml", "other: 1\n", "one key 'toggles'"),
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
