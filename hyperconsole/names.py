"""The one set of validators for names, sizes and addresses the operator types.

Every place that takes a VM, volume, pool, network or interface name, a size or an address calls
these, so the same mistake gets the same sentence wherever it is made. Each returns the value it
accepted (normalised where that is documented) or raises ValidationError with one line.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from pathlib import PurePosixPath

import humanize

from hyperconsole.errors import ValidationError
from hyperconsole.sanitize import visible

MAX_NAME = 64  # VM, network and pool names
IFNAMSIZ = 16  # kernel buffer incl. the NUL, so interface names have at most 15 bytes
MAX_VOLUME_BYTES = 64 * 1024**4  # 64 TiB: beyond this a typo is likelier than a real disk
MIN_VOLUME_BYTES = 1024**2  # 1 MiB: qcow2 metadata alone is ~200 KiB

# Interface names end up unquoted in the shell scripts NixOS's scripted networking runs as root
# at activation (and in systemd unit names), so only a set that needs no quoting anywhere passes.
_IFACE_CHARS = re.compile(r"[A-Za-z0-9_.-]+\Z")


def _has_control(text: str) -> bool:
    """Whether `text` holds a character the sanitiser would have to escape to show it (control,
    format, separator): one definition for what is refused and what is made visible."""
    return visible(text) != text


def interface_name(name: object, what: str = "interface name", *, allow_lo: bool = False) -> str:
    """A Linux interface name that is safe everywhere NixOS puts it: 1-15 characters of ASCII
    letters, digits, '_', '.' and '-', not starting with '-', not '.' or '..', and not 'lo'
    (loopback is never a bridge, VLAN, member or address target) unless `allow_lo`."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{what} must not be empty")
    shown = repr(name)[:40]
    if not _IFACE_CHARS.match(name):
        raise ValidationError(f"{what} {shown} may contain only letters, digits, '_', '.' and '-'",
                              hint="interface names end up in shell scripts run as root at activation")
    if len(name) >= IFNAMSIZ:
        raise ValidationError(f"{what} {shown} is longer than 15 characters (the Linux limit)")
    if name in (".", ".."):
        raise ValidationError(f"{what} {shown} is not allowed (it names a directory in /sys/class/net)")
    if name.startswith("-"):
        raise ValidationError(f"{what} {shown} starts with '-'", hint="tools such as ip would read it as an option")
    if name == "lo" and not allow_lo:
        raise ValidationError(f"{what} may not be 'lo': loopback carries no bridge, VLAN or address")
    return name


def object_name(name: object, what: str = "VM name") -> str:
    """VM, network and pool names are shown and passed exactly as typed. libvirt accepts almost
    anything, so do we: unicode, spaces inside, quotes, brackets, `$`, `<`, `&` (XML escaping is
    ElementTree's job, display the sanitiser's). Refused: empty, over 64 characters, '/' (libvirt
    turns names into file names), control characters incl. newlines and tabs, and leading or
    trailing whitespace (invisible in lists and in `virsh` arguments)."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{what} is empty")
    if len(name) > MAX_NAME:
        raise ValidationError(f"{what} is {len(name)} characters long; at most {MAX_NAME}")
    if "/" in name:
        raise ValidationError(f"{what} may not contain '/'")
    if _has_control(name):
        raise ValidationError(f"{what} may not contain control characters or line breaks")
    if name != name.strip():
        raise ValidationError(f"{what} may not start or end with whitespace")
    return name


_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_SSH_DEST = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?[A-Za-z0-9:][A-Za-z0-9.:-]*\Z")


def host_name(name: object) -> str:
    """A fleet host's name: it names its NixOS checkout `hosts/<name>/` and appears in unit and
    log names, so 1-63 ASCII letters, digits, '_', '.', '-', starting with a letter or digit."""
    if not isinstance(name, str) or not _HOST_NAME.match(name):
        raise ValidationError(f"host name {repr(name)[:40]} may contain only letters, digits, '_', '.' and '-' "
                              "(at most 63, starting with a letter or digit)")
    return name


def ssh_destination(dest: object) -> str:
    """`[user@]host` as ssh and `nixos-rebuild --target-host` take it: nothing an option parser or
    a remote shell could read as more than a destination (no leading '-', no spaces, no quotes)."""
    if not isinstance(dest, str) or not _SSH_DEST.match(dest):
        raise ValidationError(f"ssh destination {repr(dest)[:60]} is not [user@]host",
                              hint="letters, digits, '.', ':', '-', '_'")
    return dest


def vm_name(name: object) -> str:
    return object_name(name, "VM name")


def pool_name(name: object) -> str:
    return object_name(name, "pool name")


def network_name(name: object) -> str:
    return object_name(name, "network name")


def volume_name(name: object) -> str:
    """Volume names become file names in dir pools: refuse empty, '.', '..', '/', control
    characters, leading/trailing whitespace, and more than 255 bytes of UTF-8 (NAME_MAX)."""
    if not isinstance(name, str) or not name:
        raise ValidationError("volume name is empty")
    if name in (".", ".."):
        raise ValidationError(f"volume name may not be {name!r}")
    if "/" in name:
        raise ValidationError("volume name may not contain '/'")
    if _has_control(name):
        raise ValidationError("volume name may not contain control characters or line breaks")
    if name != name.strip():
        raise ValidationError("volume name may not start or end with whitespace")
    size = len(name.encode("utf-8"))
    if size > 255:
        raise ValidationError(f"volume name is {size} bytes long; at most 255")
    return name


def absolute_path(path: object, what: str = "pool directory") -> str:
    """Absolute, no '..' component, no control characters; normalised (no trailing '/')."""
    if not isinstance(path, str) or not path:
        raise ValidationError(f"{what} is empty")
    if not path.startswith("/"):
        raise ValidationError(f"{what} {path!r} must be an absolute path")
    if _has_control(path):
        raise ValidationError(f"{what} may not contain control characters")
    if ".." in PurePosixPath(path).parts:
        raise ValidationError(f"{what} {path!r} may not contain '..'")
    return str(PurePosixPath(path))


# -- sizes ------------------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def size(text: str | int) -> int:
    """'10G', '512M', '1.5 GiB', '2T', '1048576' → bytes. K/M/G/T (with or without 'iB') are
    binary, as in qemu-img; 'KB', 'MB', 'GB', 'TB' are decimal. A bare number is bytes.
    Raises ValidationError for anything else, zero or negative."""
    if isinstance(text, bool):
        raise ValidationError(f"size {text!r} is not a size")
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise ValidationError(f"size {text!r} is not understood; use e.g. 10G, 512M or 1.5T")
        number, unit, suffix = m.group(1), m.group(2).lower(), m.group(3).lower()
        if suffix and not unit and suffix != "b":
            raise ValidationError(f"size {text!r} is not understood; use e.g. 10G, 512M or 1.5T")
        base = 1000 if suffix == "b" and unit else 1024
        scaled = float(number) * base ** _UNITS[unit]
        value = int(scaled)
        if value != scaled and unit == "":
            raise ValidationError(f"size {text!r}: a byte count must be whole")
    if value <= 0:
        raise ValidationError(f"size must be more than zero, not {text!r}")
    return value


def volume_size(text: str | int) -> int:
    """size() within the range a new volume may have (1 MiB … 64 TiB)."""
    value = size(text)
    if value < MIN_VOLUME_BYTES:
        raise ValidationError(f"size {text!r} is below the minimum of 1 MiB")
    if value > MAX_VOLUME_BYTES:
        raise ValidationError(f"size {text!r} is above the maximum of 64 TiB")
    return value


def human_size(n: int | float | None, *, dash: str = "–") -> str:
    """The one size formatter: binary units, one decimal ('1.5 GiB', '512 B'); None or a
    negative count (unknown) is a dash."""
    if n is None or n < 0:
        return dash
    return _human_size(n)


@functools.lru_cache(maxsize=4096)
def _human_size(n: int | float) -> str:
    # Sizes repeat (a thousand VMs have a handful of memory sizes); formatting is the cost.
    return humanize.naturalsize(n, binary=True, format="%.1f")


# -- numbers typed by the operator --------------------------------------------------------------------


def whole_number(text: object, what: str, low: int, high: int) -> int:
    """A whole number typed as digits only: '1.5', '1e3', '2k', '' and '+3' are refused, never
    rewritten into something else."""
    raw = str(text).strip() if text is not None else ""
    if isinstance(text, bool) or not raw.isascii() or not raw.isdigit():
        raise ValidationError(f"{what} must be a whole number from {low} to {high}, not {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise ValidationError(f"{what} must be from {low} to {high}, not {value}")
    return value


def yes_no(text: object, what: str) -> bool:
    raw = str(text).strip().lower()
    if raw in ("yes", "y", "true", "on"):
        return True
    if raw in ("no", "n", "false", "off"):
        return False
    raise ValidationError(f"{what} must be yes or no, not {str(text)!r}")


# -- addresses --------------------------------------------------------------------------------------


class Role(enum.Enum):
    """What an address-with-prefix stands for, which decides what is refused."""

    HOST = "host address"        # an interface's own address: not the network or broadcast address
    GATEWAY = "gateway address"  # a libvirt network's gateway: a network address means its first host
    NETWORK = "network"          # a subnet: host bits must be zero


def cidr(text: object, role: Role, *, family: int | None = None, max_prefix: int | None = None,
         ) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """'192.168.1.10/24' as the given role. `family` 4 or 6 restricts it; `max_prefix` refuses a
    subnet too small to be useful (e.g. 30 for a network that needs a gateway and guests)."""
    example = "192.168.100.1/24"
    if not isinstance(text, str) or "/" not in text:
        raise ValidationError(f"{text!r} is not an address with prefix, e.g. {example}")
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError as exc:
        raise ValidationError(f"{text!r} is not an address with prefix, e.g. {example}") from exc
    if family is not None and iface.version != family:
        raise ValidationError(f"{text!r} is IPv{iface.version}; IPv{family} is needed here")
    net = iface.network
    if max_prefix is not None and net.prefixlen > max_prefix:
        raise ValidationError(f"/{net.prefixlen} is too small here; use /{max_prefix} or larger")
    if role is Role.NETWORK:
        if iface.ip != net.network_address:
            raise ValidationError(f"{text!r} has host bits set; the network is {net}")
        return iface
    if role is Role.HOST and (iface.ip.is_unspecified or iface.ip.is_multicast or iface.ip.is_loopback):
        raise ValidationError(f"{text!r} cannot be an interface address (unspecified, multicast or loopback)")
    single = net.num_addresses <= 2  # /31, /32 (and v6 /127, /128): every address is a host
    if role is Role.GATEWAY and iface.ip == net.network_address and not single:
        iface = ipaddress.ip_interface(f"{net.network_address + 1}/{net.prefixlen}")
    if not single and iface.version == 4:
        if iface.ip == net.network_address:
            raise ValidationError(f"{iface.ip} is the network address of {net}, not a usable {role.value}")
        if iface.ip == net.broadcast_address:
            raise ValidationError(f"{iface.ip} is the broadcast address of {net}, not a usable {role.value}")
    return iface


def migrate_uri(text: str) -> str | None:
    """Where a migration's data goes (libvirt's migrate URI: `tcp://10.0.0.2[:port]`), or None
    when empty (the target's own host name)."""
    from urllib.parse import urlsplit

    text = text.strip()
    if not text:
        return None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("tcp", "rdma", "unix") or not (parts.hostname or parts.path):
        raise ValidationError(f"not a migration address: {text!r}", hint="like tcp://10.0.0.2 or tcp://10.0.0.2:49152")
    return text
