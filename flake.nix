{
  description = "hyperconsole: keyboard-driven terminal console for a NixOS virtualisation host";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        hyperconsole = pkgs.python3Packages.callPackage ./nix/package.nix { };
        default = hyperconsole;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.system}.default}/bin/hyperconsole";
        };
      });

      nixosModules.default = { pkgs, ... }: {
        imports = [ ./nix/module.nix ];
        programs.hyperconsole.package = nixpkgs.lib.mkDefault self.packages.${pkgs.system}.default;
      };
    };
}
