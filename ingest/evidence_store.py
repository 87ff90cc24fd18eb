"""Evidence images on disk, addressed by their SHA-256: ROOT/ab/cd/<sha256>.jpg."""

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
from threading import get_ident

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class EvidenceError(Exception):
    """An image that does not match the hash it is filed under."""


class EvidenceStore:
    """Write-once files; a file is only ever visible complete and with the right hash."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folders: set[Path] = set()  # known to exist: saves a mkdir per file

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise EvidenceError(f"not a lowercase hex SHA-256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.jpg"

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, data: bytes, sha256: str) -> Path:
        """Store ``data`` under ``sha256`` (temp file, fsync, rename); a no-op if already there."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise EvidenceError(f"evidence sha256 mismatch: declared {sha256}, actual {actual}")
        target = self.path(sha256)
        if target.is_file():
            return target
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

    def put_many(self, items: Iterable[tuple[bytes, str]]) -> int:
        """Store many ``(data, sha256)`` with two filesystem syncs in all; returns files written.

        One fsync per file would cap ingest at a few hundred images a second. Instead: write
        every temp file, sync the filesystem, rename them into place, sync again. A file is
        only ever visible under its hash once its bytes are on disk, and all are durable when
        this returns, so the caller may commit the rows that name them.
        """
        pending: dict[Path, Path] = {}
        try:
            for data, sha256 in items:
                actual = hashlib.sha256(data).hexdigest()
                if actual != sha256:
                    raise EvidenceError(
                        f"evidence sha256 mismatch: declared {sha256}, actual {actual}"
                    )
                target = self.path(sha256)
                if target in pending or target.is_file():
                    continue
                temp = target.parent / f".incoming-{sha256}-{os.getpid()}-{get_ident()}.tmp"
                pending[target] = temp
                self._write_new(temp, data)
            written = len(pending)
            if not written:
                return 0
            _sync_filesystem(self.root)
            for target, temp in list(pending.items()):
                os.replace(temp, target)
                del pending[target]
            _sync_filesystem(self.root)
            return written
        finally:
            for temp in pending.values():
                temp.unlink(missing_ok=True)

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
        data = self.path(sha256).read_bytes()
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
