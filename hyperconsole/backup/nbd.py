"""A small NBD client over a unix socket: the fixed-newstyle handshake, structured replies, the
`base:allocation` meta context, and READ / WRITE / FLUSH / BLOCK_STATUS / DISC — what reading a
libvirt pull-mode backup export or a `qemu-nbd` export needs, and writing a restored disk.

One request at a time (no pipelining); every socket operation has a timeout, so a QEMU that
stops answering (the VM killed, libvirtd restarted) ends in `NbdError`, never a hang.
Protocol: https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md
"""

from __future__ import annotations

import itertools
import socket
import struct
from dataclasses import dataclass

from hyperconsole.errors import HyperconsoleError

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_SET_META_CONTEXT = 10
REP_ACK = 1
REP_INFO = 3
REP_META_CONTEXT = 4
INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_BLOCK_STATUS = 0, 1, 2, 3, 7
TFLAG_READ_ONLY = 1 << 1

REPLY_FLAG_DONE = 1
REPLY_NONE, REPLY_OFFSET_DATA, REPLY_OFFSET_HOLE, REPLY_BLOCK_STATUS = 0, 1, 2, 5
REPLY_ERROR_BIT = 1 << 15

STATE_HOLE = 1
STATE_ZERO = 2
ALLOCATION = "base:allocation"
MAX_REQUEST = 32 * 1024**2  # QEMU's limit for one READ/WRITE

_ERRNO = {1: "EPERM", 5: "EIO", 12: "ENOMEM", 22: "EINVAL", 28: "ENOSPC", 75: "EOVERFLOW",
          95: "ENOTSUP", 108: "ESHUTDOWN"}


class NbdError(HyperconsoleError):
    """The NBD server refused, broke the protocol, or stopped answering."""


@dataclass(frozen=True)
class Status:
    """One block-status descriptor: `length` bytes from `offset`, `zero` when they read as zeros."""

    offset: int
    length: int
    zero: bool


class NbdClient:
    """One connection to one export. Use as a context manager (sends DISC and closes)."""

    def __init__(self, path: str, export: str = "", *, timeout: float = 60.0) -> None:
        self.path = path
        self.export = export
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._cookies = itertools.count(1)
        self._context_id: int | None = None
        self.size = 0
        self.read_only = False
        try:
            self._sock.connect(path)
            self._handshake()
        except OSError as exc:
            self._sock.close()
            raise NbdError(f"NBD export {export!r} at {path}: {exc.strerror or exc}") from exc
        except BaseException:
            self._sock.close()
            raise

    # ------------------------------------------------------------------ socket
    def _recv(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self._sock.recv_into(view[got:], n - got)
            except OSError as exc:
                raise self._lost(exc) from exc
            if k == 0:
                raise NbdError(f"NBD export {self.export!r}: the server closed the connection")
            got += k
        return buf  # type: ignore[return-value]  # bytes-like; no copy

    def _send(self, *parts: bytes) -> None:
        try:
            for part in parts:
                self._sock.sendall(part)
        except OSError as exc:
            raise self._lost(exc) from exc

    def _lost(self, exc: OSError) -> NbdError:
        why = "no answer (timed out)" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return NbdError(f"NBD export {self.export!r}: {why}; the server went away or stopped answering")

    # ------------------------------------------------------------------ handshake
    def _handshake(self) -> None:
        magic, opt_magic, flags = struct.unpack(">8sQH", self._recv(18))
        if magic != NBDMAGIC or opt_magic != IHAVEOPT or not flags & FLAG_FIXED_NEWSTYLE:
            raise NbdError(f"{self.path} is not a fixed-newstyle NBD server")
        self._send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES)))
        if self._option(OPT_STRUCTURED_REPLY, b"")[-1][0] != REP_ACK:
            raise NbdError("NBD server refused structured replies")
        name = self.export.encode()
        query = ALLOCATION.encode()
        for rtype, data in self._option(OPT_SET_META_CONTEXT, struct.pack(">I", len(name)) + name
                                        + struct.pack(">II", 1, len(query)) + query):
            if rtype == REP_META_CONTEXT and data[4:] == query:
                self._context_id = struct.unpack(">I", data[:4])[0]
        for rtype, data in self._option(OPT_GO, struct.pack(">I", len(name)) + name
                                        + struct.pack(">HH", 1, INFO_BLOCK_SIZE)):
            if rtype == REP_INFO and struct.unpack(">H", data[:2])[0] == INFO_EXPORT:
                self.size, tflags = struct.unpack(">QH", data[2:12])
                self.read_only = bool(tflags & TFLAG_READ_ONLY)

    def _option(self, opt: int, data: bytes) -> list[tuple[int, bytes]]:
        """Send an option; collect its replies up to the final one (ACK or an error)."""
        self._send(struct.pack(">QII", IHAVEOPT, opt, len(data)), data)
        replies = []
        while True:
            magic, ropt, rtype, length = struct.unpack(">QIII", self._recv(20))
            if magic != OPT_REPLY_MAGIC or ropt != opt:
                raise NbdError(f"NBD server sent a bad reply to option {opt}")
            payload = self._recv(length) if length else b""
            if rtype & 0x80000000:
                text = payload.decode(errors="replace").strip() or f"error {rtype & 0x7FFFFFFF}"
                if opt == OPT_GO:
                    raise NbdError(f"NBD export {self.export!r} at {self.path}: {text}")
                return [(rtype, payload)]  # optional features: the caller sees no ACK
            replies.append((rtype, payload))
            if rtype == REP_ACK:
                return replies

    # ------------------------------------------------------------------ transmission
    def _request(self, cmd: int, offset: int, length: int, payload: bytes = b"") -> int:
        cookie = next(self._cookies)
        self._send(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, cmd, cookie, offset, length), payload)
        return cookie

    def _replies(self, cookie: int, what: str, data_len: int = 0, offset: int = 0):
        """Yield (type, payload) of each structured chunk until the DONE one. A simple reply
        (allowed for anything but a successful READ) becomes one chunk: NONE, or OFFSET_DATA
        with the `data_len` bytes that follow it."""
        while True:
            magic = struct.unpack(">I", self._recv(4))[0]
            if magic == SIMPLE_REPLY_MAGIC:
                error, got = struct.unpack(">IQ", self._recv(12))
                self._check_cookie(got, cookie)
                if error:
                    raise NbdError(f"NBD {what}: {_ERRNO.get(error, f'error {error}')}")
                if data_len:
                    yield REPLY_OFFSET_DATA, struct.pack(">Q", offset) + self._recv(data_len)
                else:
                    yield REPLY_NONE, b""
                return
            if magic != STRUCTURED_REPLY_MAGIC:
                raise NbdError(f"NBD {what}: bad reply magic {magic:#x}")
            flags, rtype, got, length = struct.unpack(">HHQI", self._recv(16))
            self._check_cookie(got, cookie)
            payload = self._recv(length) if length else b""
            if rtype & REPLY_ERROR_BIT:
                error, mlen = struct.unpack(">IH", payload[:6])
                text = payload[6:6 + mlen].decode(errors="replace") or _ERRNO.get(error, f"error {error}")
                raise NbdError(f"NBD {what}: {text}")
            yield rtype, payload
            if flags & REPLY_FLAG_DONE:
                return

    @staticmethod
    def _check_cookie(got: int, want: int) -> None:
        if got != want:
            raise NbdError(f"NBD reply for request {got}, expected {want}")

    def _range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size or length > MAX_REQUEST:
            raise NbdError(f"NBD request {offset}+{length} outside the export of {self.size} bytes "
                           f"(or over {MAX_REQUEST} bytes)")

    def read(self, offset: int, length: int) -> bytes:
        self._range(offset, length)
        if length == 0:
            return b""
        buf = bytearray(length)
        cookie = self._request(CMD_READ, offset, length)
        for rtype, payload in self._replies(cookie, f"read {offset}+{length}", length, offset):
            if rtype == REPLY_OFFSET_DATA:  # OFFSET_HOLE chunks are zeros, as buf already is
                at = struct.unpack(">Q", payload[:8])[0] - offset
                if at < 0 or at + len(payload) - 8 > length:
                    raise NbdError(f"NBD read {offset}+{length}: data chunk outside the request")
                buf[at:at + len(payload) - 8] = memoryview(payload)[8:]
        return buf  # type: ignore[return-value]  # bytes-like, not copied again

    def write(self, offset: int, data: bytes) -> None:
        self._range(offset, len(data))
        cookie = self._request(CMD_WRITE, offset, len(data), data)
        for _ in self._replies(cookie, f"write {offset}+{len(data)}"):
            pass

    def flush(self) -> None:
        cookie = self._request(CMD_FLUSH, 0, 0)
        for _ in self._replies(cookie, "flush"):
            pass

    def block_status(self, offset: int, length: int) -> list[Status]:
        """Allocation of [offset, offset+length): at least one descriptor, maybe covering less
        than asked (the caller continues from where it ends). Without `base:allocation` support
        the whole range is reported as data."""
        if self._context_id is None:
            return [Status(offset, min(length, self.size - offset), False)]
        length = min(length, self.size - offset, 0xFFFFFFFF & ~0xFFF)
        cookie = self._request(CMD_BLOCK_STATUS, offset, length)
        out: list[Status] = []
        for rtype, payload in self._replies(cookie, f"block status {offset}+{length}"):
            if rtype != REPLY_BLOCK_STATUS or struct.unpack(">I", payload[:4])[0] != self._context_id:
                continue
            at = offset
            for i in range(4, len(payload), 8):
                dlen, flags = struct.unpack(">II", payload[i:i + 8])
                dlen = min(dlen, offset + length - at)
                if dlen <= 0:
                    break
                out.append(Status(at, dlen, bool(flags & STATE_ZERO)))
                at += dlen
        if not out:
            raise NbdError(f"NBD block status {offset}+{length}: no answer for base:allocation")
        return out

    def close(self) -> None:
        try:
            self._request(CMD_DISC, 0, 0)
        except (OSError, NbdError):
            pass
        finally:
            self._sock.close()

    def __enter__(self) -> "NbdClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
