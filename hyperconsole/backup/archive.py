"""The archive of one VM: a POSIX (pax) tar stream that any GNU tar can extract.

Members, in order: `manifest.json` (the disks' targets, virtual sizes, formats and pools, and the
hyperconsole version: a restore checks the pools before creating anything; archives written before
it existed start at domain.xml and are checked disk by disk), `domain.xml` (inactive, secure XML), `nvram.fd` when the VM has NVRAM, then one
member per disk, `<target>.raw`, written as a PAX sparse file (GNU.sparse major 1 minor 0): the
member's data starts with the map of allocated extents (decimal, NUL-padded to a block), followed
by those extents only. Holes are neither read nor sent, and `restic dump SNAP /vm.tar | tar -xS`
gives sparse raw images with no hyperconsole at hand.

The write side turns a VmSource (backup.source) into that stream; the read side parses only what
the write side makes (bounded sizes, expected names) and drives a VmRestorer (backup.restore).
"""

from __future__ import annotations

import json
import queue
import re
import threading
import xml.etree.ElementTree as ET
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Callable, Iterator, Protocol, Sequence, TypeVar

from hyperconsole.errors import HyperconsoleError

BLOCK = 512
READ_CHUNK = 4 * 1024**2  # DiskReader.read takes at most 32 MiB; smaller keeps memory flat
USTAR_SIZE_MAX = 8**11 - 1
MAX_XML = 16 * 1024**2
MAX_NVRAM = 64 * 1024**2
MAX_MAP_ENTRIES = 4 * 1024**2
MAX_MANIFEST = 1024**2
MANIFEST_NAME = "manifest.json"
XML_NAME = "domain.xml"
NVRAM_NAME = "nvram.fd"
AHEAD = 4  # chunks a reader thread may hold ahead of its consumer (4 × READ_CHUNK = 16 MiB)
_TARGET = re.compile(r"[a-z]{2,3}[a-z0-9]{1,6}\Z")
T = TypeVar("T")


class ArchiveError(HyperconsoleError):
    """The stream is not an archive hyperconsole wrote, or it ends early."""


# -- the shapes of the VM side (backup.source / backup.restore) ------------------------------------


class ExtentLike(Protocol):
    offset: int
    length: int
    data: bool


class DiskReaderLike(Protocol):
    target: str
    virtual_size: int

    def extents(self) -> Sequence[ExtentLike]: ...
    def read(self, offset: int, length: int) -> bytes: ...


class VmSourceLike(Protocol):
    name: str
    xml: str
    nvram: bytes | None
    disks: Sequence[DiskReaderLike]


class DiskWriterLike(Protocol):
    def write(self, offset: int, data: bytes) -> None: ...
    def close(self) -> None: ...


class VmRestorerLike(Protocol):
    def disk(self, target: str, virtual_size: int) -> DiskWriterLike: ...
    def finish(self) -> str: ...


# -- reading ahead ----------------------------------------------------------------------------------


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def read_ahead(items: Iterator[T], depth: int = AHEAD) -> Iterator[T]:
    """The items of `items`, produced by a thread at most `depth` ahead of the consumer: reading
    (the NBD export, `restic dump`) goes on while the consumer writes (into restic, onto a volume).
    An error of the producer is raised here; leaving early stops the producer."""
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failed(exc))

    thread = threading.Thread(target=produce, name="hc-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=60)


def _disk_chunks(disk: DiskReaderLike, extents: Sequence[tuple[int, int]]) -> Iterator[bytes]:
    for offset, length in extents:
        for done in range(0, length, READ_CHUNK):
            want = min(READ_CHUNK, length - done)
            chunk = disk.read(offset + done, want)
            if len(chunk) != want:
                raise ArchiveError(f"disk {disk.target}: read {len(chunk)} bytes at {offset + done}, expected {want}")
            yield chunk


class ReadAheadStream:
    """A readable stream over `stream` that a thread reads ahead (see read_ahead)."""

    def __init__(self, stream: IO[bytes], chunk: int = READ_CHUNK, depth: int = AHEAD) -> None:
        self._chunks = read_ahead(iter(lambda: stream.read(chunk), b""), depth)
        self._buf = memoryview(b"")

    def read(self, n: int) -> bytes | memoryview:
        if not self._buf:
            self._buf = memoryview(next(self._chunks, b""))
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> None:
        self._chunks.close()  # type: ignore[attr-defined]


# -- writing ----------------------------------------------------------------------------------------


def _pad(n: int) -> int:
    return -n % BLOCK


def _octal(value: int, width: int) -> bytes:
    return (b"%0*o" % (width - 1, value)) + b"\0"


def _header(name: str, size: int, typeflag: bytes, mtime: int, mode: int = 0o600) -> bytes:
    raw_name = name.encode("utf-8")
    if len(raw_name) > 100:
        raise ArchiveError(f"member name {name!r} is too long")
    fields = [
        raw_name.ljust(100, b"\0"), _octal(mode, 8), _octal(0, 8), _octal(0, 8),
        _octal(min(size, USTAR_SIZE_MAX) if size <= USTAR_SIZE_MAX else 0, 12), _octal(mtime, 12),
        b" " * 8, typeflag, b"\0" * 100, b"ustar\x0000", b"root".ljust(32, b"\0"), b"root".ljust(32, b"\0"),
        _octal(0, 8), _octal(0, 8), b"\0" * 155,
    ]
    block = b"".join(fields).ljust(BLOCK, b"\0")
    checksum = b"%06o\0 " % sum(block)
    return block[:148] + checksum + block[156:]


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode("utf-8")
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _pax_block(name: str, records: dict[str, str], mtime: int) -> bytes:
    data = b"".join(_pax_record(k, v) for k, v in records.items())
    return _header(f"PaxHeaders.0/{name}"[:100], len(data), b"x", mtime, 0o644) + data + b"\0" * _pad(len(data))


def _member(name: str, size: int, mtime: int, extra: dict[str, str] | None = None, header_name: str | None = None) -> bytes:
    records = dict(extra or {})
    if size > USTAR_SIZE_MAX:
        records["size"] = str(size)
    prefix = _pax_block(name, records, mtime) if records else b""
    return prefix + _header(header_name or name, size, b"0", mtime)


def data_extents(disk: DiskReaderLike) -> list[tuple[int, int]]:
    """The allocated extents of a disk, adjacent ones merged, within [0, virtual_size)."""
    merged: list[tuple[int, int]] = []
    for ext in sorted(disk.extents(), key=lambda e: e.offset):
        if not ext.data or ext.length <= 0:
            continue
        start, end = max(0, ext.offset), min(disk.virtual_size, ext.offset + ext.length)
        if end <= start:
            continue
        if merged and merged[-1][0] + merged[-1][1] >= start:
            last_start = merged[-1][0]
            merged[-1] = (last_start, max(merged[-1][0] + merged[-1][1], end) - last_start)
        else:
            merged.append((start, end - start))
    return merged


def _sparse_map(extents: list[tuple[int, int]], size: int) -> bytes:
    entries = list(extents)
    if not entries or entries[-1][0] + entries[-1][1] < size:
        entries.append((size, 0))  # a trailing hole: GNU tar's own way of giving the full size
    text = f"{len(entries)}\n" + "".join(f"{off}\n{length}\n" for off, length in entries)
    raw = text.encode("ascii")
    return raw + b"\0" * _pad(len(raw))


def manifest(source: VmSourceLike) -> bytes:
    """The manifest member: per disk its target, virtual size, format and pool (from the XML)."""
    from hyperconsole import __version__

    described = {}
    for el in ET.fromstring(source.xml).findall("devices/disk"):
        target = (el.find("target").get("dev") if el.find("target") is not None else "") or ""
        src, driver = el.find("source"), el.find("driver")
        described[target] = {"format": driver.get("type") if driver is not None else None,
                             "pool": src.get("pool") if src is not None else None}
    disks = [{"target": d.target, "virtual_size": d.virtual_size, **described.get(d.target, {"format": None, "pool": None})}
             for d in source.disks]
    return json.dumps({"hyperconsole": __version__, "vm": source.name, "disks": disks}, sort_keys=True).encode()


def sizes_of(manifest_data: bytes) -> dict[str, int]:
    """target → virtual size from a manifest member (what VmRestorer's `sizes=` takes)."""
    try:
        disks = json.loads(manifest_data)["disks"]
        sizes = {str(d["target"]): int(d["virtual_size"]) for d in disks}
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"damaged archive manifest ({exc})") from exc
    if any(not _TARGET.match(t) or size < 0 for t, size in sizes.items()):
        raise ArchiveError("damaged archive manifest (bad disk entry)")
    return sizes


@dataclass(frozen=True)
class Plan:
    """What the stream of one VM will hold: known before reading, so progress has a total."""

    disks: tuple[tuple[DiskReaderLike, tuple[tuple[int, int], ...]], ...]
    data_bytes: int  # allocated bytes read from the disks
    stream_bytes: int  # the whole tar stream
    manifest: bytes = b""


def plan(source: VmSourceLike) -> Plan:
    disks = []
    data = 0
    stream = 2 * BLOCK
    head = manifest(source)
    stream += BLOCK + len(head) + _pad(len(head))
    xml = source.xml.encode("utf-8")
    stream += 3 * BLOCK + len(xml) + _pad(len(xml))  # pax-free header + data, rounded generously
    if source.nvram is not None:
        stream += BLOCK + len(source.nvram) + _pad(len(source.nvram))
    for disk in source.disks:
        if not _TARGET.match(disk.target):
            raise ArchiveError(f"disk target {disk.target!r} is not a plain device name")
        extents = tuple(data_extents(disk))
        size = sum(length for _, length in extents)
        data += size
        stream += 3 * BLOCK + len(_sparse_map(list(extents), disk.virtual_size)) + size + _pad(size)
        disks.append((disk, extents))
    return Plan(tuple(disks), data, stream, head)


def write_archive(source: VmSourceLike, out: IO[bytes], *, mtime: int = 0,
                  on_bytes: Callable[[int], None] | None = None, planned: Plan | None = None) -> Plan:
    """Write the whole archive of `source` to `out` (a pipe into `restic backup --stdin`)."""
    planned = planned or plan(source)

    def emit(data: bytes) -> None:
        out.write(data)
        if on_bytes is not None:
            on_bytes(len(data))

    emit(_member(MANIFEST_NAME, len(planned.manifest), mtime) + planned.manifest + b"\0" * _pad(len(planned.manifest)))
    xml = source.xml.encode("utf-8")
    emit(_member(XML_NAME, len(xml), mtime) + xml + b"\0" * _pad(len(xml)))
    if source.nvram is not None:
        emit(_member(NVRAM_NAME, len(source.nvram), mtime) + source.nvram + b"\0" * _pad(len(source.nvram)))
    for disk, extents in planned.disks:
        name = f"{disk.target}.raw"
        sparse_map = _sparse_map(list(extents), disk.virtual_size)
        size = len(sparse_map) + sum(length for _, length in extents)
        records = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                   "GNU.sparse.realsize": str(disk.virtual_size)}
        emit(_member(name, size, mtime, records, header_name=f"GNUSparseFile.0/{name}") + sparse_map)
        for chunk in read_ahead(_disk_chunks(disk, extents)):
            emit(chunk)
        emit(b"\0" * _pad(size))
    emit(b"\0" * (2 * BLOCK))
    return planned


# -- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    name: str
    size: int  # bytes stored in the stream
    realsize: int  # the file's size (sparse members: the disk's virtual size)
    sparse: bool


class TarReader:
    """Sequential reader of the archives `write_archive` makes (pax + GNU sparse 1.0)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self._left = 0  # unread bytes (data + padding) of the current member

    def _exact(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = self.stream.read(n - got)
            if not chunk:
                raise ArchiveError("the archive ends early (truncated snapshot or restic stopped)")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)  # one copy, also of a read-ahead view: the bytes the restorer keeps

    def _skip_rest(self) -> None:
        while self._left:
            n = min(self._left, READ_CHUNK)
            self._exact(n)
            self._left -= n

    def _block(self) -> bytes | None:
        block = self._exact(BLOCK)
        if block == b"\0" * BLOCK:
            return None
        if block[257:263] != b"ustar\0":
            raise ArchiveError("not a hyperconsole VM archive (no ustar header)")
        stored = int(block[148:156].split(b"\0")[0].strip() or b"0", 8)
        if stored != sum(block[:148]) + 8 * 32 + sum(block[156:]):
            raise ArchiveError("damaged archive header (checksum mismatch)")
        return block

    def next(self) -> Member | None:
        self._skip_rest()
        pax: dict[str, str] = {}
        while True:
            block = self._block()
            if block is None:
                return None
            typeflag = block[156:157]
            size = int(block[124:136].split(b"\0")[0].strip() or b"0", 8)
            if typeflag in (b"x", b"g"):
                if size > 1024**2:
                    raise ArchiveError("oversized pax header")
                data = self._exact(size + _pad(size))[:size]
                if typeflag == b"x":
                    pax.update(_parse_pax(data))
                continue
            if typeflag not in (b"0", b"\0"):
                raise ArchiveError(f"unexpected member type {typeflag!r} in the archive")
            name = block[:100].split(b"\0")[0].decode("utf-8", "replace")
            size = int(pax.get("size", size))
            sparse = pax.get("GNU.sparse.major") == "1" and pax.get("GNU.sparse.minor") == "0"
            if sparse:
                name = pax.get("GNU.sparse.name", name)
            realsize = int(pax.get("GNU.sparse.realsize", size)) if sparse else size
            self._left = size + _pad(size)
            return Member(name, size, realsize, sparse)

    def read_all(self, member: Member, limit: int) -> bytes:
        if member.size > limit:
            raise ArchiveError(f"{member.name} is larger than {limit} bytes")
        data = self._exact(member.size)
        self._left -= member.size
        return data

    def extents(self, member: Member) -> Iterator[tuple[int, bytes]]:
        """(offset, data) pieces of a sparse member, in order, each at most READ_CHUNK bytes."""
        if not member.sparse:
            raise ArchiveError(f"{member.name} is not a sparse disk image")
        head = self._exact(BLOCK)
        consumed = BLOCK
        numbers: list[int] = []
        text = head
        while True:
            fields = text.split(b"\n")
            complete = fields[:-1]
            if complete:
                count = int(complete[0])
                if count > MAX_MAP_ENTRIES:
                    raise ArchiveError("sparse map too large")
                if len(complete) >= 1 + 2 * count:
                    numbers = [int(f) for f in complete[1:1 + 2 * count]]
                    break
            text += self._exact(BLOCK)
            consumed += BLOCK
        self._left -= consumed
        pairs = list(zip(numbers[0::2], numbers[1::2]))
        if sum(length for _, length in pairs) + consumed != member.size:
            raise ArchiveError(f"{member.name}: the sparse map does not match the member size")
        for offset, length in pairs:
            if offset + length > member.realsize:
                raise ArchiveError(f"{member.name}: an extent lies beyond the disk's size")
            done = 0
            while done < length:
                n = min(READ_CHUNK, length - done)
                yield offset + done, self._exact(n)
                self._left -= n
                done += n


def _parse_pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1:pos + length - 1].decode("utf-8").partition("=")
        records[key] = value
        pos += length
    return records


def read_head(reader: TarReader) -> tuple[str, bytes | None, Member | None, dict[str, int]]:
    """domain.xml, the NVRAM (or None), the first disk member of an archive and the disks'
    virtual sizes from its manifest (empty for an archive written before manifests)."""
    member = reader.next()
    sizes: dict[str, int] = {}
    if member is not None and member.name == MANIFEST_NAME:
        sizes = sizes_of(reader.read_all(member, MAX_MANIFEST))
        member = reader.next()
    if member is None or member.name != XML_NAME:
        raise ArchiveError("not a hyperconsole VM archive (domain.xml does not come first)")
    xml = reader.read_all(member, MAX_XML).decode("utf-8")
    nvram = None
    member = reader.next()
    if member is not None and member.name == NVRAM_NAME:
        nvram = reader.read_all(member, MAX_NVRAM)
        member = reader.next()
    return xml, nvram, member, sizes


def restore_archive(stream: IO[bytes], make_restorer: Callable[[str, bytes | None, dict[str, int]],
                                                              AbstractContextManager[VmRestorerLike]]) -> str:
    """Read an archive from `stream` into the VmRestorer `make_restorer(xml, nvram, sizes)` opens
    (sizes: target → virtual size from the manifest, so pools are checked before anything is
    created; empty for old archives); the restorer's context removes anything unfinished if the
    stream breaks. Returns the VM's name."""
    ahead = ReadAheadStream(stream)
    try:
        return _restore(TarReader(ahead), make_restorer)  # type: ignore[arg-type]
    finally:
        ahead.close()


def _restore(reader: TarReader, make_restorer) -> str:
    xml, nvram, member, sizes = read_head(reader)
    with make_restorer(xml, nvram, sizes) as restorer:
        while member is not None:
            target = member.name.removesuffix(".raw")
            if not member.name.endswith(".raw") or not _TARGET.match(target):
                raise ArchiveError(f"unexpected member {member.name!r} in the archive")
            writer = restorer.disk(target, member.realsize)
            for offset, data in reader.extents(member):
                writer.write(offset, data)
            writer.close()
            member = reader.next()
        return restorer.finish()
