"""The operator's SSH session, as far as this process can see it."""

from __future__ import annotations

import os
import socket


def ssh_server_address(environ: dict[str, str] | None = None) -> str | None:
    """The address the operator's SSH client connected to (3rd field of SSH_CONNECTION)."""
    fields = (environ if environ is not None else os.environ).get("SSH_CONNECTION", "").split()
    return fields[2] if len(fields) == 4 else None


def tunnel_host(libvirt_host: str, environ: dict[str, str] | None = None) -> str:
    """Where an `ssh -L` should point: the URI's host for remote URIs, else this host as reached."""
    if libvirt_host and libvirt_host != "<host>":
        return libvirt_host
    return ssh_server_address(environ) or socket.gethostname()
