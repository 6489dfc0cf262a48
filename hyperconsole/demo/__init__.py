"""Everything the demo needs: the test-driver host, a scratch NixOS dir, a stand-in rebuild,
simulated figures. Core packages never import this; cli/ wires it in for `--demo`."""
