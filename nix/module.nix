# NixOS module: installs hyperconsole, imports its fragments, lets operators apply changes.
#
# Fragments are written to <nixos-dir>/hyperconsole (default /etc/nixos/hyperconsole). With a
# classic configuration.nix this module imports that directory when it exists. Flake
# configurations evaluate purely and cannot read /etc/nixos, so a flake adds
# `./hyperconsole` to the host's modules itself (`hyperconsole nixos status` checks it).
{ config, lib, pkgs, ... }:

let
  cfg = config.programs.hyperconsole;
  fragmentsDir = /etc/nixos/hyperconsole;
  # builtins.currentSystem is absent in pure (flake) evaluation, where /etc/nixos is unreadable.
  canImportFragments = builtins ? currentSystem && builtins.pathExists (fragmentsDir + "/default.nix");
  hc = "${cfg.package}/bin/hyperconsole";
  # A fixed root unit running one hyperconsole subcommand.
  hcUnit = description: subcommand: {
    inherit description;
    path = [ config.system.build.nixos-rebuild pkgs.nix pkgs.git ];
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${hc} ${subcommand}";
    };
  };
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
        Members may start hyperconsole's rebuild, confirm and revert units (and nothing else
        through systemd), so an operator without sudo can still apply changes.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];

    users.groups.${cfg.operatorsGroup} = { };

    # Operators write fragments without root: group-writable, setgid so new files stay in the group.
    systemd.tmpfiles.rules = [ "d /etc/nixos/hyperconsole 2775 root ${cfg.operatorsGroup} -" ];

    # Fixed units the operators group may start: the action is the instance name and only these
    # actions exist, so starting a unit cannot run anything but hyperconsole itself.
    systemd.services."hyperconsole-rebuild@" = hcUnit "hyperconsole rebuild (%i)" "rebuild %i";
    systemd.services.hyperconsole-confirm = hcUnit "hyperconsole: confirm the trial configuration" "confirm";
    systemd.services.hyperconsole-revert = hcUnit "hyperconsole: revert the trial configuration now" "revert";

    security.polkit.enable = true;
    security.polkit.extraConfig = ''
      polkit.addRule(function (action, subject) {
        if (action.id != "org.freedesktop.systemd1.manage-units" ||
            !subject.isInGroup("${cfg.operatorsGroup}")) {
          return polkit.Result.NOT_HANDLED;
        }
        var unit = action.lookup("unit") || "";
        var verb = action.lookup("verb") || "";
        // Only these fixed units: a transient unit (systemd-run) could run any command as root.
        var allowed = /^hyperconsole-rebuild@(dry-build|test|switch|boot|rollback)\.service$/.test(unit) ||
                      unit == "hyperconsole-confirm.service" || unit == "hyperconsole-revert.service";
        if (allowed && verb == "start") {
          return polkit.Result.YES;
        }
        return polkit.Result.NOT_HANDLED;
      });
    '';
  };
}
