"""Evidence images on disk, addressed by their SHA-256: ROOT/ab/<sha256>.jpg.

Stores written before 2026-11 used ROOT/ab/cd/<sha256>.jpg; those files are still read. One
level of 256 folders, not 65,536: creating a folder costs as much as creating the file, and
with two levels nearly every image of a young store needed a new folder.

Ingest's batches write through a small pool of threads (write_unsynced hands the files over and
returns; sync() waits for them): the GIL is released for each write and fsync, and meanwhile
the writer thread does the batch's database work. Before sync() returns the files are durable,
so the commit (and the broker's ack after it) still follows durable files. By default each
thread fsyncs its file and each folder that got new entries is fsynced once: that flushes our
files only. ``sync="filesystem"`` makes the batch durable with one syncfs instead, which also
flushes every other process's dirty pages on that filesystem (PostgreSQL's, Mosquitto's): one
call, but its cost depends on the neighbours. With ``writer_threads=0`` the writer thread
writes each file itself, then syncfs: the former behaviour, kept for comparison
(bench/ingest_evidence.py).

With ``pack_max_bytes`` set (the server's default: 64 KiB), a batch's small images go into the
writer thread's pack file instead (storage/evidence_packs.py): plan() reserves their places
before the rows go in (the rows record them), write_unsynced() appends the batch's records in
one write on a pool thread, and sync() waits for its fdatasync, so the rule above holds for
packs too. read() serves both forms: a file, or a packed record found from its row (the place
given by the caller, or looked up through ``locate``), always re-hashed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import re
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from storage.evidence_packs import (
    PACK_ROLL_BYTES,
    Locate,
    PackAppender,
    PackedAt,
    PackError,
    PackPlan,
    encode_record,
    fsync_directory,
    read_record,
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class EvidenceError(Exception):
    """An image that does not match the hash it is filed under."""


# 4. Eight were tried in ingest round 9 (docs/benchmarks.md, issue 15): in process they
# shortened the wait for a batch of real-size images' fsyncs on the runs they were chosen on,
# and on the held-out runs beside 4 they gained nothing (store_batch 0.71 vs 0.68 ms an event,
# end to end x0.88 and x0.91 with one and two ingest processes).
DEFAULT_WRITER_THREADS = 4
SyncMode = Literal["filesystem", "files"]


@dataclass
class _Pending:
    """One thread's files handed to the pool since its last sync()."""

    writes: list[Future[None]] = field(default_factory=list)  # one per thread's share
    folders: set[str] = field(default_factory=set)
    pack: PackAppender | None = None  # whose records one of the writes appends


class EvidenceStore:
    """Write-once files; a file is only ever visible complete and with the right hash."""

    def __init__(
        self,
        root: Path,
        writer_threads: int = DEFAULT_WRITER_THREADS,
        sync: SyncMode = "files",
        pack_max_bytes: int = 0,
        locate: Locate | None = None,
        pack_roll_bytes: int = PACK_ROLL_BYTES,
    ) -> None:
        """``writer_threads``: files of a batch written at once; 0 writes in the caller.

        ``sync`` (with writer threads): ``filesystem`` makes a batch durable with one syncfs
        after its files are written; ``files`` fsyncs each file on its thread, then each
        folder once (flushes nothing but our files, at one fsync per file).

        ``pack_max_bytes``: a batch's images up to this size go into a pack (0: none do);
        ``locate`` finds a packed image's place from its row for a read given only the hash;
        ``pack_roll_bytes``: a writer starts a new pack once its pack is this long.
        """
        if writer_threads < 0:
            raise ValueError(f"writer_threads must be >= 0, not {writer_threads}")
        if pack_max_bytes < 0:
            raise ValueError(f"pack_max_bytes must be >= 0, not {pack_max_bytes}")
        self.pack_max_bytes = pack_max_bytes
        self._locate = locate
        self._pack_roll_bytes = pack_roll_bytes
        self._packs_lock = threading.Lock()
        self._packs: set[PackAppender] = set()  # every writer thread's current pack
        self._sync_mode: SyncMode = sync
        self.root = root
        self._threads = writer_threads
        self._pool: ThreadPoolExecutor | None = None  # started on the first batch
        self._pool_lock = threading.Lock()
        self._local = threading.local()  # each ingest writer thread syncs its own files
        self._durable_folders: set[str] = set()  # their entry in the root fsynced once
        self._folders: set[str] = set()  # known to exist: saves a mkdir per file

    def path(self, sha256: str) -> Path:
        """A file holding ``sha256``'s image: its own file, or for a packed image a copy made
        (checked) on first use under ROOT/unpacked; where its file would go if neither."""
        stored = self._stored_path(sha256)
        if stored.is_file() or self._locate is None:
            return stored
        at = self._locate(sha256)
        if at is None:
            return stored
        copy = self.root / "unpacked" / sha256[:2] / f"{sha256}.jpg"
        if not copy.is_file():
            write_copy(copy, self.read(sha256, at))
        return copy

    def _file_path(self, sha256: str) -> Path:
        """Where ``sha256`` is written as a file."""
        if not _SHA256.match(sha256):
            raise EvidenceError(f"not a lowercase hex SHA-256: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def _legacy_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.jpg"

    def _stored_path(self, sha256: str) -> Path:
        """Where ``sha256`` is found: the current layout, else the older two-level one."""
        path = self._file_path(sha256)
        if path.is_file():
            return path
        legacy = self._legacy_path(sha256)
        return legacy if legacy.is_file() else path

    def exists(self, sha256: str) -> bool:
        if self._stored_path(sha256).is_file():
            return True
        return self._locate is not None and self._locate(sha256) is not None

    def remove(self, sha256: str) -> int:
        """Delete ``sha256``'s file (either layout) and its readable copy under ROOT/unpacked;
        returns the bytes freed (0 when there was none). A packed record is not touched: its
        pack is compacted once mostly dead (storage.evidence_pack_rows.compact_packs). For the
        retention job, after the rows that named the image are gone."""
        freed = 0
        copy = self.root / "unpacked" / sha256[:2] / f"{sha256}.jpg"
        for path in (self._file_path(sha256), self._legacy_path(sha256), copy):
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            freed += size
        return freed

    def prune_copies(self, older_than_s: float) -> int:
        """Remove the readable copies of packed images (ROOT/unpacked) not modified in the last
        ``older_than_s`` seconds; returns how many. They are made again, checked, on use."""
        return prune_folder(self.root / "unpacked", older_than_s)

    def put(self, data: bytes, sha256: str) -> Path:
        """Store ``data`` under ``sha256`` (temp file, fsync, rename); a no-op if already there."""
        target = self._file_path(sha256)  # refuses a name that is not a hash before anything else
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise EvidenceError(f"evidence sha256 mismatch: declared {sha256}, actual {actual}")
        stored = self._stored_path(sha256)
        if stored.is_file():
            return stored
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
        fsync_directory(target.parent)
        return target

    def plan(self, items: Iterable[tuple[str, bytes]]) -> dict[str, PackedAt]:
        """Reserve pack places for the images of ``items`` small enough to pack; ingest's
        batches call this before inserting their rows (which record the places), then
        write_unsynced() with the images whose rows are new. Empty with packing off.

        The places follow this thread's last written records; a plan that was never written
        (its batch failed first) is dropped by the next one.
        """
        self._local.plan = None
        if not self.pack_max_bytes:
            return {}
        small = [(sha, data) for sha, data in items if len(data) <= self.pack_max_bytes]
        if not small:
            return {}
        self._settle_abandoned()
        appender: PackAppender | None = getattr(self._local, "appender", None)
        if appender is None or appender.broken or appender.end >= self._pack_roll_bytes:
            if appender is not None:
                self._retire(appender)
                self._local.appender = None
            appender = PackAppender.create(self.root)
            with self._packs_lock:
                self._packs.add(appender)
            self._local.appender = appender
        plan = PackPlan(appender, appender.end)
        offset = appender.end
        for sha256, data in small:
            if not _SHA256.match(sha256):
                raise EvidenceError(f"not a lowercase hex SHA-256: {sha256!r}")
            if sha256 in plan.places:
                continue
            record = encode_record(sha256, data)
            plan.records.append(record)
            plan.places[sha256] = PackedAt(appender.name, offset, len(data))
            offset += len(record)
        self._local.plan = plan
        return dict(plan.places)

    def packs_in_use(self) -> set[str]:
        """The packs this process's writer threads append to (never collected)."""
        with self._packs_lock:
            return {appender.name for appender in self._packs}

    def write_unsynced(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Start writing ``(sha256, data)`` files in place, trusting the hashes; sync() after.

        For ingest's batches only: the hashes were checked by the wire contract, and no
        committed row names these files yet. A file torn by a crash or a failed write is named
        by no row, and is rewritten whole when the message is redelivered. Writing in place
        (no temp file, no rename) keeps a file to a few system calls. With writer threads the
        files are being written when this returns; sync() waits for them and raises the first
        failure. Files handed over before and never synced (their batch failed) are waited for
        first (a retry hands the same files over again), then forgotten.

        Images plan() placed in a pack are not files: if any of them is among ``items``, the
        plan's records are appended (all of them, at the places the rows record) in one write
        and one fdatasync, on a writer thread when there are any.
        """
        plan: PackPlan | None = getattr(self._local, "plan", None)
        self._local.plan = None
        places = plan.places if plan is not None else {}
        packed = 0
        if self._threads == 0:
            written = 0
            for sha256, data in items:
                if sha256 in places:
                    packed += 1
                    continue
                path = self._file_path(sha256)
                try:
                    _write_new(str(path.parent), str(path), data, False, self._folders)
                except BaseException:
                    _remove_torn(path)
                    raise
                written += 1
            if packed and plan is not None:
                plan.appender.end = plan.end
                plan.appender.write(plan.start, plan.records)
            return written + packed
        self._settle_abandoned()
        pending = _Pending()
        self._local.pending = pending
        root = str(self.root)
        files: deque[tuple[str, str, bytes]] = deque()
        for sha256, data in items:
            if sha256 in places:
                packed += 1
                continue
            if not _SHA256.match(sha256):
                raise EvidenceError(f"not a lowercase hex SHA-256: {sha256!r}")
            folder = f"{root}/{sha256[:2]}"  # self._file_path(sha256), without pathlib's cost
            files.append((folder, f"{folder}/{sha256}.jpg", data))
            pending.folders.add(folder)
        if packed and plan is not None:
            plan.appender.end = plan.end  # the next batch's records go after these
            pending.pack = plan.appender
            pending.writes.append(
                self._writer_pool().submit(plan.appender.write, plan.start, plan.records)
            )
        # One task per thread, each taking the next file until none is left: a future per
        # file cost the writer thread more than the file (small evidence is ~1.5 KB), and fixed
        # shares would wait for the slowest thread on a busy machine.
        count = len(files)
        if files:
            pool = self._writer_pool()
            durable = self._sync_mode == "files"
            pending.writes.extend(
                pool.submit(self._write_until_done, files, durable)
                for _ in range(min(self._threads, count))
            )
        return count + packed

    def _settle_abandoned(self) -> None:
        """Wait for writes this thread handed over and never synced (their batch failed)."""
        abandoned: _Pending | None = getattr(self._local, "pending", None)
        if abandoned is not None:  # it may be writing these same files, or into the pack
            wait(abandoned.writes)
            self._local.pending = None

    def _retire(self, appender: PackAppender) -> None:
        with self._packs_lock:
            self._packs.discard(appender)
        appender.close()

    def sync(self) -> None:
        """Make every file this thread wrote since its last sync() durable; raises on failure."""
        if self._threads == 0:
            _sync_filesystem(self.root)
            return
        pending: _Pending | None = getattr(self._local, "pending", None)
        self._local.pending = None
        if pending is None or not pending.writes:
            return
        failure: BaseException | None = None
        for future in pending.writes:  # a thread that failed removed its torn file
            error = future.exception()
            if error is not None:
                failure = failure or error
        if failure is not None:
            raise failure
        if not pending.folders:  # the pack alone: its write ended with its fdatasync
            return
        if self._sync_mode == "filesystem":
            _sync_filesystem(self.root)
            return
        # A new file's name lives in its folder: fsync each folder once, a new folder's parent
        # too (the root), all at once.
        folders = sorted(pending.folders)
        if pending.folders - self._durable_folders:
            folders.append(str(self.root))
        pool = self._writer_pool()
        for future in [pool.submit(fsync_directory, folder) for folder in folders]:
            future.result()
        self._durable_folders.update(pending.folders)

    def close(self) -> None:
        """Stop the writer threads (after their current files); a later batch starts them."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._packs_lock:
            packs, self._packs = self._packs, set()
        for appender in packs:  # a later batch starts a new pack
            appender.broken = True
            appender.close()
        close_locator = getattr(self._locate, "close", None)
        if callable(close_locator):  # storage.evidence_pack_rows.RowLocator's engine
            close_locator()

    def _writer_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._threads, thread_name_prefix="evidence-writer"
                )
            return self._pool

    def _write_until_done(self, files: deque[tuple[str, str, bytes]], durable: bool) -> None:
        """Take ``(folder, path, data)`` files off ``files`` (shared by the batch's writer
        threads) and write each in place until none is left; a failed file is removed, and
        the failure raised (the other threads still write theirs)."""
        while True:
            try:
                folder, path, data = files.popleft()  # atomic: no two threads take one file
            except IndexError:
                return
            try:
                _write_new(folder, path, data, durable, self._folders)
            except BaseException:
                _remove_torn(Path(path))
                raise

    def read(self, sha256: str, at: PackedAt | None = None) -> bytes:
        """The image bytes, re-hashed so a tampered or damaged copy is never served as
        evidence: from ``at`` (its row's pack place) when given, else its file, else the pack
        place ``locate`` finds. FileNotFoundError when it is in neither."""
        if at is None:
            stored = self._stored_path(sha256)  # refuses a name that is not a hash
            try:
                data = stored.read_bytes()
            except FileNotFoundError:
                at = self._locate(sha256) if self._locate is not None else None
                if at is None:
                    raise
            else:
                actual = hashlib.sha256(data).hexdigest()
                if actual != sha256:
                    raise EvidenceError(
                        f"stored evidence {sha256} is damaged: its content hashes to {actual}"
                    )
                return data
        if not _SHA256.match(sha256):
            raise EvidenceError(f"not a lowercase hex SHA-256: {sha256!r}")
        try:
            return read_record(self.root, sha256, at)
        except PackError as exc:
            raise EvidenceError(str(exc)) from exc


def _write_new(folder: str, path: str, data: bytes, durable: bool, known: set[str]) -> None:
    """Write ``data`` to ``path`` in place (fsynced if ``durable``); ``known`` are folders
    known to exist, which saves a mkdir per file."""
    if folder not in known:
        os.makedirs(folder, exist_ok=True)
        known.add(folder)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:  # the folder was removed behind our back
        known.discard(folder)
        os.makedirs(folder, exist_ok=True)
        fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def _remove_torn(path: Path) -> None:
    """Remove what a failed write left; the write's own error is the one to report."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def prune_folder(
    folder: Path,
    older_than_s: float,
    pattern: str = "*/*.jpg",
    copies: Callable[[list[Path]], Iterable[Path]] | None = None,
) -> int:
    """Remove the files ``pattern`` finds under ``folder`` that are older than
    ``older_than_s`` seconds (of those, only the ones ``copies`` says are copies, when given);
    returns how many."""
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    old: list[Path] = []
    for path in folder.glob(pattern):
        try:
            if path.stat().st_mtime <= cutoff:
                old.append(path)
        except FileNotFoundError:
            continue
    removed = 0
    for path in old if copies is None else copies(old):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    return removed


def write_copy(path: Path, data: bytes) -> None:
    """Write a readable copy of stored bytes at ``path`` all at once (a reader never sees part
    of it); not synced: a copy lost in a crash is made again from the store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".copy-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


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
