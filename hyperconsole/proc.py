"""Short commands with a deadline that holds: each runs in its own process group, and at the
deadline the whole group is killed, so a child that kept the pipes open (a git hook, a helper
that `ip` or `systemd-run` started) cannot hold the caller past it."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Mapping, Sequence


def run(argv: Sequence[str], timeout: float, *, env: Mapping[str, str] | None = None,
        input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run argv with stdin from `input` (else none) and both outputs captured as bytes. Raises
    subprocess.TimeoutExpired after killing the group, and OSError when argv cannot start."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=None if env is None else dict(env))
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.communicate()
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
