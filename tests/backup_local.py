"""Real local counterparts of the VM side for backup tests: a DiskReader over a local (sparse)
file whose extents come from the file system (SEEK_DATA/SEEK_HOLE), and a restorer that writes
raw files. They follow the shapes of backup.source / backup.restore."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from hyperconsole.demo.backup import ImageDisk


# The demo's reader over a local sparse file is the real counterpart the tests need.
FileDisk = ImageDisk


@dataclass
class FileVm:
    name: str
    disks: list
    xml: str = ""
    uuid: str = "6b0e5f8a-7d43-4c1b-9a8e-2d7f4b1c0e11"
    state: str = "shutoff"
    nvram: bytes | None = None
    quiesced: bool = False
    notes: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.xml:
            self.xml = f"<domain type='kvm'><name>{self.name}</name><uuid>{self.uuid}</uuid></domain>\n"


class FileWriter:
    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(self._fd, size)

    def write(self, offset: int, data: bytes) -> None:
        os.pwrite(self._fd, data, offset)

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class DirRestorer:
    """Writes disks as raw files into a directory; anything unfinished is removed on exit."""

    directory: Path
    xml: str
    nvram: bytes | None
    written: list[Path] = field(default_factory=list)
    finished: bool = False

    def __enter__(self) -> "DirRestorer":
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        if not self.finished:
            for path in self.written:
                path.unlink(missing_ok=True)

    def disk(self, target: str, virtual_size: int) -> FileWriter:
        path = self.directory / f"{target}.raw"
        self.written.append(path)
        return FileWriter(path, virtual_size)

    def finish(self) -> str:
        (self.directory / "domain.xml").write_text(self.xml)
        self.finished = True
        return "restored"


def sparse_image(path: Path, size: int, pieces: dict[int, bytes]) -> Path:
    """A sparse file of `size` bytes holding `pieces` at their offsets (holes elsewhere)."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)
    return path


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def restic_env_ok() -> bool:
    try:
        return subprocess.run(["restic", "version"], capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


def local_opener(images: dict[str, list[tuple[str, Path]]], *, delay: float = 0.0):
    """An `open_vm` for VMs whose disks are local files: {vm: [(target, path)]}. It leaves a file
    in the scratch dir, as the real one leaves NBD sockets, so its removal can be checked."""
    from contextlib import contextmanager

    @contextmanager
    def open_vm(conn, name, *, quiesce, scratch_dir):
        # Like backup.source.open_vm: a run directory per open, and those of dead runs removed.
        import shutil

        scratch_dir = Path(scratch_dir)
        scratch_dir.mkdir(parents=True, exist_ok=True)
        for old in scratch_dir.glob("run-*"):
            try:
                os.kill(int(old.name.split("-")[1]), 0)
            except ProcessLookupError:
                shutil.rmtree(old)
        run = scratch_dir / f"run-{os.getpid()}-{time.monotonic_ns()}"
        run.mkdir()
        (run / "nbd.sock").write_text("")
        disks = [SlowDisk(target, path, delay) for target, path in images[name]]
        try:
            dom = conn.lookupByName(name)
            yield FileVm(name, disks, uuid=dom.UUIDString(), state="shutoff")
        finally:
            for d in disks:
                d.close()
            shutil.rmtree(run, ignore_errors=True)

    return open_vm


class SlowDisk(FileDisk):
    def __init__(self, target: str, path: Path, delay: float) -> None:
        super().__init__(target, path)
        self.delay = delay

    def read(self, offset: int, length: int) -> bytes:
        if self.delay:
            time.sleep(self.delay)
        return super().read(offset, length)


class LocalRestorer(DirRestorer):
    """backup.restore.VmRestorer's signature over DirRestorer: restores into <base>/<name>/."""

    base: Path = Path("/nonexistent")

    def __init__(self, conn, xml, nvram, *, as_name=None, pool=None, in_place=False, strip_nics=False, sizes=None):
        name = as_name or "in-place"
        super().__init__(self.base / name, xml, nvram)
        self.name = name

    def finish(self) -> str:
        super().finish()
        return self.name
