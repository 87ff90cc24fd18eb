"""Evidence images on disk, addressed by their SHA-256: ROOT/ab/cd/<sha256>.jpg."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class EvidenceError(Exception):
    """An image that does not match the hash it is filed under."""


class EvidenceStore:
    """Write-once files; a file is only ever visible complete and with the right hash."""

    def __init__(self, root: Path) -> None:
        self.root = root

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
