"""Small evidence images in pack files: one append and one fsync per batch, not a file each.

Ingest's batches put every image of at most ``pack_max_bytes`` (64 KiB by default; the 1.5 KB
update frames, thumbnails and close-ups) into the writer thread's current pack,
``ROOT/packs/<name>.pack``; larger images (the 150 KB panoramas) stay files as before. Each
image is one record: a 40-byte header (``CWE1``, its length as a big-endian u32, its raw
SHA-256) and then its bytes. The evidence row records where (``evidence.pack``,
``evidence.pack_offset``: the record's header; ``evidence.size``: the image's length), and a
read checks the header and re-hashes the bytes, so a record is never served unless it is the
image the row names.

Crash safety: a pack is only ever appended to, by one writer thread of one process, and a
batch's rows are committed only after its records are fsynced (the broker's ack follows the
commit). A crash can leave a torn record at the end of a pack: no committed row names it, and
no process appends to a pack it did not create, so the tail stays dead bytes and every earlier
record reads as before (``scan_pack`` stops at the first record that does not check out). A
batch whose transaction rolls back after its records were written leaves them dead too; so do
the records of images another event had already stored (a batch reserves its places before
the database says which images are new).

Deletion: a pack is removed whole once no evidence row names it
(``storage.evidence_pack_rows.collect_packs``, which leaves packs younger than a grace period
alone: a writer's rows commit after its pack write). A pack whose rows are mostly gone is
compacted (``compact_packs``): its live records are copied, checked, into a new pack, synced,
then the rows move there in one transaction, and the old pack is collected after the grace.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PACK_MAX_BYTES = 64 * 1024  # images up to this size are packed
PACK_ROLL_BYTES = 64 * 1024 * 1024  # a writer starts a new pack once its pack is this long
PACK_FOLDER = "packs"
MAGIC = b"CWE1"
HEADER = struct.Struct(">4sI32s")  # magic, the image's length, its raw SHA-256
PACK_NAME = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{1,8}-[0-9a-f]{8}$")


class PackError(Exception):
    """A pack record that is not the image its row names (damaged, torn or misplaced)."""


@dataclass(frozen=True)
class PackedAt:
    """Where a packed image's record is: its pack, the header's offset, the image's length."""

    pack: str
    offset: int
    length: int

    @classmethod
    def of(cls, pack: str | None, offset: int | None, length: int) -> PackedAt | None:
        """From an evidence row's columns; None for an image kept as a file."""
        if pack is None or offset is None:
            return None
        return cls(pack, offset, length)


Locate = Callable[[str], PackedAt | None]  # a hash to its pack place; None if not packed


def new_pack_name() -> str:
    """Unique across processes and restarts: time, process id and 32 random bits."""
    return f"{time.time_ns():016x}-{os.getpid() & 0xFFFFFFFF:x}-{secrets.token_hex(4)}"


def pack_path(root: Path, name: str) -> Path:
    if not PACK_NAME.match(name):
        raise PackError(f"not a pack name: {name!r}")
    return root / PACK_FOLDER / f"{name}.pack"


def encode_record(sha256: str, data: bytes) -> bytes:
    return HEADER.pack(MAGIC, len(data), bytes.fromhex(sha256)) + data


def read_record(root: Path, sha256: str, at: PackedAt) -> bytes:
    """The image at ``at``, checked against its header and re-hashed; PackError if it is not
    ``sha256``'s, FileNotFoundError if the pack is gone."""
    fd = os.open(pack_path(root, at.pack), os.O_RDONLY)
    try:
        record = os.pread(fd, HEADER.size + at.length, at.offset)
    finally:
        os.close(fd)
    if len(record) != HEADER.size + at.length:
        raise PackError(f"evidence {sha256}: pack {at.pack} ends inside its record (torn)")
    magic, length, digest = HEADER.unpack_from(record)
    if magic != MAGIC or length != at.length or digest.hex() != sha256:
        raise PackError(f"evidence {sha256}: pack {at.pack} has another record at {at.offset}")
    data = record[HEADER.size :]
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise PackError(
            f"stored evidence {sha256} is damaged: its packed content hashes to {actual}"
        )
    return data


def scan_pack(path: Path) -> Iterator[tuple[str, int, int]]:
    """``(sha256, offset, length)`` of each whole, intact record in order, up to the first
    that is not (a torn tail after a crash, or damage): what a rebuild of rows could trust."""
    with path.open("rb") as handle:
        offset = 0
        while True:
            header = handle.read(HEADER.size)
            if len(header) < HEADER.size:
                return
            magic, length, digest = HEADER.unpack(header)
            if magic != MAGIC:
                return
            data = handle.read(length)
            if len(data) < length or hashlib.sha256(data).digest() != digest:
                return
            yield digest.hex(), offset, length
            offset += HEADER.size + length


@dataclass(eq=False)  # one per pack: kept in sets by identity
class PackAppender:
    """One writer thread's current pack: records go at ``end``; ``broken`` after a failed
    write (its true length unknown), when the next batch starts a new pack."""

    root: Path
    name: str
    fd: int
    end: int = 0
    broken: bool = False
    entry_durable: bool = False  # the pack's name in the packs folder fsynced

    @classmethod
    def create(cls, root: Path) -> PackAppender:
        folder = root / PACK_FOLDER
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            fsync_directory(root)  # the packs folder's own entry, once
        name = new_pack_name()
        fd = os.open(pack_path(root, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        return cls(root, name, fd)

    def write(self, offset: int, records: list[bytes]) -> None:
        """Write ``records`` at ``offset`` and make them durable (the pack's entry too)."""
        try:
            view = memoryview(b"".join(records))
            position = offset
            while view:
                written = os.pwrite(self.fd, view, position)
                view = view[written:]
                position += written
            os.fdatasync(self.fd)
            if not self.entry_durable:
                fsync_directory(self.root / PACK_FOLDER)
                self.entry_durable = True
        except BaseException:
            self.broken = True
            raise

    def close(self) -> None:
        """Close the pack once (a second close could hit a descriptor reused meanwhile)."""
        fd, self.fd = self.fd, -1
        self.broken = True
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class PackPlan:
    """A batch's places in its writer's pack, reserved before the rows go in."""

    appender: PackAppender
    start: int
    records: list[bytes] = field(default_factory=list)
    places: dict[str, PackedAt] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + sum(len(record) for record in self.records)


def fsync_directory(directory: Path | str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
