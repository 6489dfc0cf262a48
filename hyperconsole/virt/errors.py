"""libvirt error classifiers and one-line descriptions, kept in one place (virt-manager's habit)."""

from __future__ import annotations

import libvirt

from hyperconsole.errors import HyperconsoleError

_CONNECTION_CODES = {
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_AUTH_CANCELLED,
}
_DENIED_CODES = {
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_OPERATION_DENIED,
    libvirt.VIR_ERR_ACCESS_DENIED,
}


def code(exc: BaseException) -> int | None:
    return exc.get_error_code() if isinstance(exc, libvirt.libvirtError) else None


def is_no_support(exc: BaseException) -> bool:
    return code(exc) in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED)


def is_no_domain(exc: BaseException) -> bool:
    return code(exc) == libvirt.VIR_ERR_NO_DOMAIN


def is_access_denied(exc: BaseException) -> bool:
    if code(exc) in _DENIED_CODES:
        return True
    text = str(exc).lower()
    return code(exc) == libvirt.VIR_ERR_SYSTEM_ERROR and ("permission denied" in text or "access denied" in text)


def is_connection_lost(exc: BaseException) -> bool:
    if code(exc) in _CONNECTION_CODES:
        return True
    text = str(exc).lower()
    return code(exc) in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INTERNAL_ERROR) and (
        "socket is closed" in text or "connection reset" in text or "broken pipe" in text
        or "end of file" in text or "no connection" in text
    )


def one_line(exc: BaseException) -> str:
    """libvirt messages often span lines; the operator gets the first meaningful one."""
    text = exc.get_error_message() if isinstance(exc, libvirt.libvirtError) else str(exc)
    text = (text or exc.__class__.__name__).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    return first


class VirtError(HyperconsoleError):
    """A libvirt call failed; message is one line, suitable for the status bar."""

    @classmethod
    def wrap(cls, action: str, exc: BaseException) -> "VirtError":
        return cls(f"{action}: {one_line(exc)}")
