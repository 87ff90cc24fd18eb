"""Evidence images on disk, addressed by their SHA-256: ROOT/ab/<sha256>.jpg.

Stores written before 2026-11 used ROOT/ab/cd/<sha256>.jpg; those files are still read. One
level of 256 folders, not 65,536: creating a folder costs as much as creating the file, and
with two levels nearly every image of a young store needed a new folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class EvidenceError(Exception):
    """An image that does not match the hash it is filed under."""


class EvidenceStore:
    """Write-once files; a file is only ever visible complete and with the right hash."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folders: set[Path] = set()  # known to exist: saves a mkdir per file

    def path(self, sha256: str) -> Path:
        """Where ``sha256`` is written."""
        if not _SHA256.match(sha256):
            raise EvidenceError(f"not a lowercase hex SHA-256: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def _legacy_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.jpg"

    def _stored_path(self, sha256: str) -> Path:
        """Where ``sha256`` is found: the current layout, else the older two-level one."""
        path = self.path(sha256)
        if path.is_file():
            return path
        legacy = self._legacy_path(sha256)
        return legacy if legacy.is_file() else path

    def exists(self, sha256: str) -> bool:
        return self._stored_path(sha256).is_file()

    def put(self, data: bytes, sha256: str) -> Path:
        """Store ``data`` under ``sha256`` (temp file, fsync, rename); a no-op if already there."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise EvidenceError(f"evidence sha256 mismatch: declared {sha256}, actual {actual}")
        stored = self._stored_path(sha256)
        if stored.is_file():
            return stored
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".incoming-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)
        return target

    def write_unsynced(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Write ``(sha256, data)`` files in place, trusting the hashes; call sync() after.

        For ingest's batches only: the hashes were checked by the wire contract, and no
        committed row names these files yet. A file torn by a crash or a failed write is named
        by no row, and is rewritten whole when the message is redelivered. Writing in place
        (no temp file, no rename, no fsync per file) keeps a file to three system calls.
        """
        written = 0
        for sha256, data in items:
            path = self.path(sha256)
            try:
                self._write_new(path, data)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            written += 1
        return written

    def sync(self) -> None:
        """Make every file written so far durable (one filesystem sync)."""
        _sync_filesystem(self.root)

    def _write_new(self, path: Path, data: bytes) -> None:
        if path.parent not in self._folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:  # the folder was removed behind our back
            self._folders.discard(path.parent)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def read(self, sha256: str) -> bytes:
        """The image bytes, re-hashed so a tampered or damaged file is never served as evidence."""
        data = self._stored_path(sha256).read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise EvidenceError(
                f"stored evidence {sha256} is damaged: its content hashes to {actual}"
            )
        return data


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@cache
def _syncfs() -> ctypes._NamedFuncPointer | None:
    """libc's syncfs(2), looked up on first use; None where the C library lacks it."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    return getattr(libc, "syncfs", None)


def _sync_filesystem(folder: Path) -> None:
    """Flush every dirty page and inode of the filesystem holding ``folder``."""
    syncfs = _syncfs()
    if syncfs is None:
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs({folder}) failed: {os.strerror(errno)}")
    finally:
        os.close(fd)
