"""Host bridges as the kernel sees them (/sys/class/net/<if>/bridge)."""

from __future__ import annotations

from pathlib import Path

SYS_NET = Path("/sys/class/net")


def host_bridges(sys_net: Path = SYS_NET) -> list[str]:
    try:
        entries = list(sys_net.iterdir())
    except OSError:
        return []
    return sorted(entry.name for entry in entries if (entry / "bridge").is_dir())
