# NixOS module: installs hyperconsole, imports its fragments, lets operators request host changes.
#
# Fragments are written to <nixos-dir>/hyperconsole (default /etc/nixos/hyperconsole), by root only.
# With a classic configuration.nix this module imports that directory when it exists. Flake
# configurations evaluate purely and cannot read /etc/nixos, so a flake adds
# `./hyperconsole` to the host's modules itself (`hyperconsole nixos status` checks it).
#
# Operators (the operatorsGroup) change the host without sudo by handing a *request* (a small JSON
# document describing the change as data, never Nix) to the spool directory and starting the fixed
# root unit hyperconsole-request@<id>.service; the unit re-validates the request against what the
# applied security profile lets operators change, renders the fragments itself and rebuilds with
# confirm-or-revert. They may also start a backup job's own root units (run now, restore test now),
# whose run records land in /var/lib/hyperconsole/backups, readable by the group.
{ config, lib, pkgs, ... }:

let
  cfg = config.programs.hyperconsole;
  fragmentsDir = /etc/nixos/hyperconsole;
  # builtins.currentSystem is absent in pure (flake) evaluation, where /etc/nixos is unreadable.
  canImportFragments = builtins ? currentSystem && builtins.pathExists (fragmentsDir + "/default.nix");
  hc = "${cfg.package}/bin/hyperconsole";
  spoolDir = "/var/lib/hyperconsole/requests";
  backupsDir = "/var/lib/hyperconsole/backups";
in
{
  imports = lib.optional canImportFragments fragmentsDir;

  options.programs.hyperconsole = {
    enable = lib.mkEnableOption "hyperconsole, the terminal console for this virtualisation host";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.python3Packages.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.python3Packages.callPackage ./package.nix { }";
      description = "The hyperconsole package.";
    };

    operatorsGroup = lib.mkOption {
      type = lib.types.str;
      default = "hyperconsole-operators";
      description = ''
        Members may hand host-change requests to hyperconsole's request unit (and start nothing
        else through systemd). What they may change is listed in the applied security profile
        (`operators_may_change`); the unit refuses everything else.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];

    users.groups.${cfg.operatorsGroup} = { };

    # Tells the console that the request unit exists, where the spool is and which group may use it.
    environment.etc."hyperconsole/privileged.json".text = builtins.toJSON {
      spool = spoolDir;
      group = cfg.operatorsGroup;
      unit = "hyperconsole-request@";
    };

    systemd.tmpfiles.rules = [
      # Only root writes fragments: a fragment can hold any NixOS option.
      "d /etc/nixos/hyperconsole 0755 root root -"
      "d /var/lib/hyperconsole 0755 root root -"
      # Operators create request files here (each owned by its writer) but cannot list the
      # directory, nor remove or replace another's file (sticky).
      "d ${spoolDir} 1730 root ${cfg.operatorsGroup} -"
      # Backup run and restore-test records: written by the root backup units, read by operators'
      # consoles and the doctor (setgid: every record file gets the group).
      "d ${backupsDir} 2750 root ${cfg.operatorsGroup} -"
    ];

    # One fixed root unit per request; the instance name is the request id.
    systemd.services."hyperconsole-request@" = {
      description = "hyperconsole: apply the operator's host-change request %i";
      path = [ config.system.build.nixos-rebuild pkgs.nix pkgs.git ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${hc} privileged run %i";
      };
    };

    security.polkit.enable = true;
    security.polkit.extraConfig = ''
      polkit.addRule(function (action, subject) {
        if (action.id != "org.freedesktop.systemd1.manage-units" ||
            !subject.isInGroup("${cfg.operatorsGroup}")) {
          return polkit.Result.NOT_HANDLED;
        }
        var unit = action.lookup("unit") || "";
        var verb = action.lookup("verb") || "";
        // Only the request unit with a well-formed id: a transient unit (systemd-run) or any other
        // unit could run a command as root.
        if (verb == "start" && /^hyperconsole-request@[0-9a-f]{32}\.service$/.test(unit)) {
          return polkit.Result.YES;
        }
        // "Run now" and "restore test now" of a backup job: its own root unit from backups.nix,
        // the name in exactly the format the job validator enforces.
        if (verb == "start" && /^hyperconsole-(backup|restore-test)-[a-z0-9][a-z0-9-]{0,39}\.service$/.test(unit)) {
          return polkit.Result.YES;
        }
        return polkit.Result.NOT_HANDLED;
      });
    '';
  };
}
