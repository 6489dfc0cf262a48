"""hyperconsole: a keyboard-driven terminal console for a NixOS virtualisation host."""

__version__ = "0.1.0"
