# hyperconsole as a Python application. Build from the repository root:
#   nix-build -E 'with import <nixpkgs> {}; python3Packages.callPackage ./nix/package.nix {}'
# or through flake.nix (packages.default).
{ lib
, buildPythonApplication
, setuptools
, wheel
, textual
, libvirt
, psutil
, pyyaml
, humanize
, nix
, git
}:

buildPythonApplication {
  pname = "hyperconsole";
  version = "0.1.0";
  pyproject = true;

  src = lib.cleanSource ./..;

  build-system = [ setuptools wheel ];

  dependencies = [ textual libvirt psutil pyyaml humanize ];

  # The shipped security profiles live in the top-level profiles/ directory; copy them into the
  # package so hyperconsole.profiles finds them as package data (pyproject lists profiles/*.yaml).
  preBuild = ''
    mkdir -p hyperconsole/profiles
    cp profiles/*.yaml hyperconsole/profiles/
  '';

  # nix-instantiate backs the demo rebuild; git records fragment history in a git NixOS dir.
  makeWrapperArgs = [ "--prefix" "PATH" ":" (lib.makeBinPath [ nix git ]) ];

  # Tests need libvirt's test driver and nix-instantiate; they run in CI, not in the build.
  doCheck = false;

  pythonImportsCheck = [ "hyperconsole.nixos.store" "hyperconsole.profiles" ];

  meta = {
    description = "Keyboard-driven terminal console for a NixOS virtualisation host";
    license = lib.licenses.mit;
    mainProgram = "hyperconsole";
    platforms = lib.platforms.linux;
  };
}
