"""Upload a local file (ISO or disk image) into a new storage volume, streamed in chunks with
progress and cancel; nothing half-written is left behind."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from hyperconsole import names
from hyperconsole.errors import ValidationError
from hyperconsole.virt import errors as verrors
from hyperconsole.virt.calls import Target, calling, split
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.pools import active_pool
from hyperconsole.virt.volumes import VolumeInfo, build_volume_xml, name_free, read_volume, room_for

log = logging.getLogger(__name__)

UPLOAD_CHUNK = 4 * 1024**2


class UploadCancelled(ValidationError):
    """The operator cancelled; the half-written volume was deleted."""


@dataclass(frozen=True)
class UploadResult:
    volume: VolumeInfo
    bytes_sent: int

    def summary(self) -> str:
        return f"uploaded {names.human_size(self.bytes_sent)} into {self.volume.pool}/{self.volume.name}"


def detect_format(path: str) -> str:
    """qcow2 by its magic (QFI\\xfb), raw for anything else (ISOs, raw disk images)."""
    with open(path, "rb") as f:
        return "qcow2" if f.read(4) == b"QFI\xfb" else "raw"


def upload_volume(target: Target, pool_name: str, local_path: str, name: str | None = None, *,
                  on_progress: Callable[[int, int], None] | None = None,
                  cancel: threading.Event | None = None, chunk: int = UPLOAD_CHUNK) -> UploadResult:
    """Copy a local file (ISO or disk image) into a new volume: create it with the file's size
    (format detected: qcow2 by magic, else raw), then stream it with virStreamSend in `chunk`
    bytes, calling on_progress(done, total) after each chunk. `cancel.set()` stops between chunks.
    On cancel or any failure the stream is aborted and the new volume deleted.
    Raises ValidationError (bad file/name/pool, taken), UploadCancelled, VirtError."""
    if chunk < 1:
        raise ValidationError("chunk size must be at least 1 byte")
    path = os.path.abspath(local_path)
    if not os.path.exists(path):
        raise ValidationError(f"{local_path} does not exist")
    if not os.path.isfile(path):
        raise ValidationError(f"{local_path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise ValidationError(f"{local_path} is not readable")
    total = os.path.getsize(path)
    if total == 0:
        raise ValidationError(f"{local_path} is empty")
    name = names.volume_name(name if name is not None else os.path.basename(path))
    try:
        fmt = detect_format(path)
    except OSError as exc:
        raise ValidationError(f"cannot read {local_path}: {exc.strerror or exc}") from exc
    conn, manager = split(target)
    pool = active_pool(conn, manager, pool_name)
    name_free(pool, manager, pool_name, name)
    room_for(pool, manager, pool_name, total, f"uploading {os.path.basename(path)}")
    with calling(manager, f"create volume {pool_name}/{name}"):
        vol = pool.createXML(build_volume_xml(name, total, fmt), 0)
    stream = None
    done = 0
    try:
        with calling(manager, f"upload {local_path} to {pool_name}/{name}"):
            stream = conn.newStream(0)
            vol.upload(stream, 0, total, 0)
            with open(path, "rb") as f:
                while done < total:
                    if cancel is not None and cancel.is_set():
                        raise UploadCancelled(f"upload of {os.path.basename(path)} cancelled")
                    data = f.read(min(chunk, total - done))
                    if not data:
                        raise VirtError(f"{local_path} shrank while uploading")
                    view = memoryview(data)
                    while view:
                        # virStreamSend may take less than it was given: send the rest again.
                        sent = stream.send(data if len(view) == len(data) else view.tobytes())
                        if sent <= 0:
                            raise VirtError(f"upload to {pool_name}/{name}: stream refused data")
                        view = view[sent:]
                    done += len(data)
                    if on_progress is not None:
                        on_progress(done, total)
            stream.finish()
            stream = None
    except BaseException as exc:
        if stream is not None:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
        try:
            vol.delete(0)
            removed = True
        except libvirt.libvirtError as cleanup:
            removed = False
            log.error("could not remove half-written volume %s/%s: %s", pool_name, name, verrors.one_line(cleanup))
        what = f"{pool_name}/{name} removed" if removed else f"could not remove {pool_name}/{name}"
        if isinstance(exc, UploadCancelled):
            raise UploadCancelled(f"{exc.message}; {what}") from None
        if isinstance(exc, OSError):
            raise VirtError(f"reading {local_path} failed: {exc.strerror or exc}; {what}") from exc
        raise
    # libvirt refreshes the pool after an upload in a thread of its own; refresh now so the
    # result shows the uploaded image (a qcow2's virtual size), not the empty container. The
    # data is in place whatever happens here, so a failure only costs an exact result.
    try:
        pool.refresh(0)
        vol = pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        log.info("refresh after upload to %s failed: %s", pool_name, verrors.one_line(exc))
    with calling(manager, f"read {pool_name}/{name}"):
        return UploadResult(read_volume(pool_name, vol), done)
