"""`nixos status --add-import` with the real nix-instantiate: the fragments dir and a valid
default.nix exist before configuration.nix imports them, the result is parsed and evaluated before
it replaces the file, and a refusal leaves nothing changed or created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperconsole import cli

HARDWARE = "{ config, lib, pkgs, ... }:\n{\n  boot.loader.grub.device = \"/dev/vda\";\n}\n"
FRESH = "{ config, pkgs, ... }:\n{\n  imports = [ ./hardware-configuration.nix ];\n  networking.hostName = \"hv1\";\n}\n"
STUBS = '{ config = { }; lib = { }; pkgs = { }; options = { }; modulesPath = "/"; }'


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def tree(path: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


@pytest.fixture
def fresh_host(tmp_path) -> Path:
    """A configuration as nixos-generate-config writes it: no hyperconsole dir yet."""
    nixos = tmp_path / "etc-nixos"
    nixos.mkdir()
    (nixos / "configuration.nix").write_text(FRESH)
    (nixos / "hardware-configuration.nix").write_text(HARDWARE)
    return nixos


def imported_modules(nix, nixos: Path) -> list:
    """What NixOS would import from configuration.nix: each listed path imported for real."""
    expr = (f"let m = import (/. + {json.dumps(str(nixos / 'configuration.nix'))}); in "
            f"map (i: builtins.typeOf (import i)) (m {STUBS}).imports")
    done = nix._run(["--eval", "--strict", "--json", "-E", expr])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_fresh_configuration_gets_an_import_that_evaluates(nix, fresh_host, capsys):
    code, out, err = run(["nixos", "status", "--add-import", "--nixos-dir", str(fresh_host)], capsys)
    assert (code, err) == (0, "")
    assert "+    ./hyperconsole" in out
    index = fresh_host / "hyperconsole" / "default.nix"
    assert index.is_file()
    assert nix.eval_file(index) == {
        "imports": [], "environment": {"etc": {"hyperconsole/applied-fragments.json": {"text": "{}"}}}}
    assert imported_modules(nix, fresh_host) == ["set", "lambda"]
    assert out.rstrip().endswith("(checked with nix-instantiate --parse and --eval)")
    assert nix.parse_file(fresh_host / "configuration.nix").returncode == 0
    assert not [p for p in fresh_host.iterdir() if p.name.endswith(".tmp")]


def test_missing_nixos_dir_fails_in_one_line_and_creates_nothing(nix, tmp_path, capsys):
    parent = tmp_path / "etc"
    parent.mkdir()
    missing = parent / "nixos"
    code, out, err = run(["nixos", "status", "--add-import", "--nixos-dir", str(missing)], capsys)
    assert code == 1 and out == ""
    assert err == f"error: NixOS directory {missing} does not exist (use --nixos-dir)\n"
    assert list(parent.iterdir()) == []


def test_an_edit_that_would_not_parse_is_refused_and_nothing_is_created(nix, fresh_host, capsys):
    # The imports list in a comment fools the textual edit; the parser catches it.
    text = "# imports = [ ];\n{ config, pkgs, ... }:\n{\n  networking.hostName = \"hv1\";\n}\n"
    (fresh_host / "configuration.nix").write_text(text)
    before = tree(fresh_host)
    code, out, err = run(["nixos", "status", "--add-import", "--nixos-dir", str(fresh_host)], capsys)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: adding the import would break configuration.nix (") and "nothing changed" in err
    assert tree(fresh_host) == before


def test_an_import_that_would_not_evaluate_is_refused(nix, fresh_host, capsys):
    # A damaged fragments index: configuration.nix parses with the import, but no longer evaluates.
    (fresh_host / "hyperconsole").mkdir()
    (fresh_host / "hyperconsole" / "default.nix").write_text("{ imports = [ ; }\n")
    before = tree(fresh_host)
    code, out, err = run(["nixos", "status", "--add-import", "--nixos-dir", str(fresh_host)], capsys)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: configuration.nix would not evaluate with the import (")
    assert {k: v for k, v in tree(fresh_host).items() if not k.endswith(".lock")} == before


def test_a_configuration_that_does_not_evaluate_alone_is_only_parsed(nix, fresh_host, capsys):
    (fresh_host / "hardware-configuration.nix").unlink()
    code, out, err = run(["nixos", "status", "--add-import", "--nixos-dir", str(fresh_host)], capsys)
    assert (code, err) == (0, "")
    assert out.rstrip().endswith("(checked with nix-instantiate --parse (the current file does not evaluate on its own))")
    assert (fresh_host / "hyperconsole" / "default.nix").is_file()
