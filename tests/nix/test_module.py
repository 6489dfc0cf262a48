"""nix/module.nix evaluated by the real Nix evaluator (with a small stand-in for nixpkgs' `lib`,
which this machine does not have): the fragments dir is root's and not group-writable, the spool
reaches only root and the operators group, and polkit lets the group start the request unit with a
well-formed id and nothing else (the rule's own regular expression, checked here)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "nix" / "module.nix"

EXPR = """
let
  lib = {
    mkIf = cond: value: value;
    mkOption = attrs: attrs;
    mkEnableOption = text: { inherit text; };
    literalExpression = text: text;
    optional = cond: value: if cond then [ value ] else [ ];
    types = { package = "package"; str = "str"; };
  };
  pkgs = { python3Packages.callPackage = f: args: "hyperconsole-pkg"; nix = "nix"; git = "git"; };
  config = {
    programs.hyperconsole = { enable = true; package = "/nix/store/x-hyperconsole"; operatorsGroup = "ops"; };
    system.build.nixos-rebuild = "nixos-rebuild";
  };
  module = import MODULE { inherit config lib pkgs; };
in {
  inherit (module.config) systemd security environment users;
}
"""


def _evaluate(nix) -> dict:
    done = subprocess.run([nix.binary, "--eval", "--strict", "--json", "-E", EXPR.replace("MODULE", str(MODULE))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_fragments_are_roots_and_the_spool_reaches_only_root_and_the_group(nix):
    config = _evaluate(nix)
    rules = config["systemd"]["tmpfiles"]["rules"]
    assert "d /etc/nixos/hyperconsole 0755 root root -" in rules
    assert "d /var/lib/hyperconsole/requests 1730 root ops -" in rules
    assert "d /var/lib/hyperconsole/backups 2750 root ops -" in rules  # runner.SHARED_DIR
    assert not any("2775" in rule for rule in rules)
    marker = json.loads(config["environment"]["etc"]["hyperconsole/privileged.json"]["text"])
    assert marker == {"spool": "/var/lib/hyperconsole/requests", "group": "ops", "unit": "hyperconsole-request@"}
    unit = config["systemd"]["services"]["hyperconsole-request@"]
    assert unit["serviceConfig"]["ExecStart"] == "/nix/store/x-hyperconsole/bin/hyperconsole privileged run %i"
    assert set(config["systemd"]["services"]) == {"hyperconsole-request@"}  # no rebuild units for the group


def test_polkit_starts_only_the_request_unit_with_a_well_formed_id(nix):
    rule = _evaluate(nix)["security"]["polkit"]["extraConfig"]
    assert 'subject.isInGroup("ops")' in rule and 'verb == "start"' in rule
    pattern = re.search(r"/(\^hyperconsole-request@.*?\$)/\.test\(unit\)", rule).group(1)
    accepts = re.compile(pattern.replace("\\\\", "\\")).fullmatch
    assert accepts("hyperconsole-request@" + "0123456789abcdef" * 2 + ".service")
    for unit in ("hyperconsole-request@x.service", "hyperconsole-request@" + "a" * 31 + ".service",
                 "hyperconsole-request@../../x.service", "hyperconsole-rebuild@switch.service",
                 "run-u42.service", "hyperconsole-request@" + "A" * 32 + ".service"):
        assert not accepts(unit), unit


def test_polkit_starts_exactly_the_backup_jobs_units(nix):
    """Operators' "run now" / "restore test now": the units backups.nix declares for a job, with a
    name in the job validator's format, and nothing that merely starts the same way."""
    from hyperconsole.backup import jobs as J
    from hyperconsole.backup import units
    from hyperconsole.errors import ValidationError

    rule = _evaluate(nix)["security"]["polkit"]["extraConfig"]
    pattern = re.search(r"/(\^hyperconsole-\(backup.*?\$)/\.test\(unit\)", rule).group(1)
    accepts = re.compile(pattern.replace("\\\\", "\\")).fullmatch
    for name in ("a", "nightly", "web-01", "0" + "x" * 39):
        job = J.Job(name=J.job_name(name), repository="/srv/r", password_file="/etc/pw")
        assert accepts(units.unit_of(job, "run")) and accepts(units.unit_of(job, "test")), name
    for name in ("-x", "Nightly", "a" * 41, "a.b", "a/../b", "a b", ""):
        with pytest.raises(ValidationError):
            J.job_name(name)
        assert not accepts(f"hyperconsole-backup-{name}.service"), name
    for unit in ("hyperconsole-backup-x.timer", "hyperconsole-backup-x.service.d", "hyperconsole-backupx.service",
                 "hyperconsole-restore-x.service", "run-u42.service", "hyperconsole-backup-x@y.service"):
        assert not accepts(unit), unit
