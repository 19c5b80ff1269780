"""The spill journal: where rows wait while the database cannot take them.

When a write fails because the database is unavailable (locked, full,
read-only, an I/O error, the file gone), the writer appends the batch to a
journal file next to the database and replays it, oldest frame first, once
writes succeed again. A journal left by an earlier run is replayed at start.

File: ``<db path>.spill`` (``<db path>.spill.1`` ... for further gateway
processes on the same database, e.g. ``--workers``). Each process holds an
exclusive ``flock`` on the journals it owns, so two processes never write or
replay the same file; a journal whose process died is unlocked and is adopted
by the next one that looks.

Format (all integers little-endian)::

    header  8 bytes  b"TWSPILL1"
            16 bytes journal id (random; names the journal in the database)
    frame   4 bytes  payload length in bytes
            4 bytes  rows in the payload
            4 bytes  CRC-32 of the 8 bytes above, the 8 below and the payload
            8 bytes  taken_at: float64 unix seconds the batch left the queue
            payload  the batch as ``values.encode_batch`` made it: a JSON array
                     of rows, each an array in ``LEDGER_COLUMNS`` order

A frame is written with one ``pwrite`` at the end of the last good frame; a
write that fails half way is cut off again (``ftruncate``). A crash can still
leave a torn last frame: it is detected by its length or CRC when the journal is
opened and cut off, and its rows were never counted as spilled (they were still
in the writer's memory, lost with the process).

Exactly once: each frame is replayed in ONE database transaction that stores
its rows and sets the journal's progress (``spill_replays``: journal id ->
bytes replayed) to the frame's end; a frame whose end is already covered is
skipped. So a crash before the commit replays the frame again from the journal,
and a crash after it skips the frame. Once every frame is replayed the file is
removed, then its progress row (a crash in between leaves only a stale progress
row for an id that is never used again). A new journal always gets a new id, so
progress never applies to the wrong file.

Durability matches the database's (``synchronous=NORMAL``): frames survive a
crash of the process (they are in the page cache) but not necessarily a power
loss; journals still holding rows are fsynced when the ledger closes.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from collections.abc import Iterator
from typing import NamedTuple

# Largest journal per process, in bytes: at ~220 bytes per row (JSON) that is
# ~1.2 M rows, about 2 minutes of a saturated gateway (~10k requests/s) or
# hours of ordinary traffic, and small next to the disk a ledger of that many
# rows needs. When it is full the rows stay queued in memory and the writer's
# backpressure signal holds the gateway; nothing is dropped.
SPILL_MAX_BYTES = 256 * 1024 * 1024

# Journal files per database path: one per gateway process writing it.
SPILL_SLOTS = 64

MAGIC = b"TWSPILL1"
HEADER = struct.Struct("<8s16s")
FRAME = struct.Struct("<IIId")  # payload length, rows, crc32, taken_at
_CRC_FIELDS = struct.Struct("<IId")  # what the CRC covers besides the payload


class JournalError(Exception):
    """The journal cannot take this frame (full, a write failed, no free slot)."""


class Frame(NamedTuple):
    offset: int  # where the frame starts
    end: int  # where the next one starts
    rows: int
    taken_at: float
    payload: bytes


def journal_paths(db_path: str) -> list[str]:
    return [f"{db_path}.spill"] + [f"{db_path}.spill.{n}" for n in range(1, SPILL_SLOTS)]


def adopt_journals(db_path: str) -> tuple[list[SpillJournal], list[str]]:
    """Lock every journal of ``db_path`` that no live process holds.

    Called at start: these are journals left by earlier runs, to be replayed.
    Returns them and one message per file that could not be used.
    """
    found: list[SpillJournal] = []
    errors: list[str] = []
    for path in journal_paths(db_path):
        try:
            journal = SpillJournal.claim(path, create=False)
        except JournalError as exc:
            errors.append(str(exc))
            continue
        if journal is not None:
            found.append(journal)
    return found, errors


def claim_journal(db_path: str) -> SpillJournal:
    """A journal for this process to append to: the first free slot."""
    first_error: JournalError | None = None
    for path in journal_paths(db_path):
        try:
            journal = SpillJournal.claim(path, create=True)
        except JournalError as exc:
            first_error = first_error or exc
            continue
        if journal is not None:
            return journal
    if first_error is not None:
        raise first_error
    raise JournalError(f"all {SPILL_SLOTS} spill journal slots of {db_path} are in use")


def journal_backlog(db_path: str) -> list[tuple[str, int]]:
    """(path, rows) of each journal of ``db_path``, read without taking it.

    For ``gateway usage``: rows of a journal are not in the database until its
    owner (or the next start) replays them. Some may already be replayed when
    the owner is mid-replay, so the count is an upper bound.
    """
    found = []
    for path in journal_paths(db_path):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            size = os.fstat(fd).st_size
            if size < HEADER.size or os.pread(fd, len(MAGIC), 0) != MAGIC:
                continue
            rows = sum(frame.rows for frame in _read_frames(fd, HEADER.size, size))
        finally:
            os.close(fd)
        if rows:
            found.append((path, rows))
    return found


def _crc(payload: bytes, rows: int, taken_at: float) -> int:
    return zlib.crc32(payload, zlib.crc32(_CRC_FIELDS.pack(len(payload), rows, taken_at)))


class SpillJournal:
    """One journal file, locked by this process. Used by the writer thread only."""

    def __init__(self, path: str, fd: int, journal_id: str, end: int, rows: int) -> None:
        self.path = path
        self.journal_id = journal_id
        self._fd = fd
        self.end = end  # end of the last good frame: where the next one goes
        self.rows = rows  # rows in all frames
        self.cursor = HEADER.size  # replay position: frames before it are stored
        self.cursor_rows = 0  # rows in the frames before the cursor

    @property
    def pending_rows(self) -> int:
        return self.rows - self.cursor_rows

    @property
    def pending(self) -> bool:
        return self.cursor < self.end

    @classmethod
    def claim(cls, path: str, *, create: bool) -> SpillJournal | None:
        """Open and lock ``path``; None when another process holds it (or, with
        ``create=False``, when there is no such file).

        Raises ``JournalError`` when the file cannot be created or read, or is
        not a spill journal (it is left alone then).
        """
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        # A journal's owner may remove it between our open and our flock; then
        # the path names a new file (or none) and we try again.
        for _ in range(3):
            try:
                fd = os.open(path, flags, 0o600)
            except FileNotFoundError:
                if create:
                    raise JournalError(f"cannot create spill journal {path}: "
                                       "no such directory") from None
                return None
            except OSError as exc:
                raise JournalError(f"cannot open spill journal {path}: {exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except OSError as exc:
                os.close(fd)
                raise JournalError(f"cannot lock spill journal {path}: {exc}") from exc
            try:
                if _still_linked(fd, path):
                    return cls._load(path, fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            if not create:
                return None
        return None

    @classmethod
    def _load(cls, path: str, fd: int) -> SpillJournal:
        size = os.fstat(fd).st_size
        try:
            if size < HEADER.size:
                # New, or created by a process that died before writing the
                # whole header: there are no frames either way. Anything else
                # this short is not ours.
                start = os.pread(fd, min(size, len(MAGIC)), 0)
                if not MAGIC.startswith(start):
                    raise JournalError(f"{path} is not a tokenway spill journal; left alone")
                journal_id = os.urandom(16)
                os.ftruncate(fd, 0)
                _pwrite_all(fd, HEADER.pack(MAGIC, journal_id), 0)
                return cls(path, fd, journal_id.hex(), HEADER.size, 0)
            magic, journal_id = HEADER.unpack(os.pread(fd, HEADER.size, 0))
        except OSError as exc:
            raise JournalError(f"cannot read spill journal {path}: {exc}") from exc
        if magic != MAGIC:
            raise JournalError(f"{path} is not a tokenway spill journal; left alone")
        journal = cls(path, fd, journal_id.hex(), HEADER.size, 0)
        good = HEADER.size
        rows = 0
        for frame in journal.frames(HEADER.size, size):
            good, rows = frame.end, rows + frame.rows
        if good < size:
            try:
                os.ftruncate(fd, good)  # a torn last frame from a crash
            except OSError as exc:
                raise JournalError(f"cannot repair spill journal {path}: {exc}") from exc
        journal.end, journal.rows = good, rows
        return journal

    def append(self, payload: bytes, rows: int, taken_at: float, max_bytes: int) -> None:
        """Add one frame; raises ``JournalError`` (the journal is unchanged then)."""
        head = FRAME.pack(len(payload), rows, _crc(payload, rows, taken_at), taken_at)
        if self.end + len(head) + len(payload) > max_bytes:
            raise JournalError(
                f"spill journal {self.path} is full ({self.end} of {max_bytes} bytes)"
            )
        try:
            _pwrite_all(self._fd, head + payload, self.end)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self.end)
            except OSError:
                pass  # the torn frame is cut off when the journal is next opened
            raise JournalError(f"cannot write spill journal {self.path}: {exc}") from exc
        self.end += len(head) + len(payload)
        self.rows += rows

    def frames(self, start: int, stop: int | None = None) -> Iterator[Frame]:
        """Good frames from ``start`` up to ``stop`` (default: the end)."""
        return _read_frames(self._fd, start, self.end if stop is None else stop)

    def advance(self, frame: Frame) -> None:
        """Move the replay cursor past ``frame`` (it is in the database now)."""
        self.cursor = frame.end
        self.cursor_rows += frame.rows

    def sync(self) -> None:
        os.fsync(self._fd)

    def remove(self) -> None:
        """Delete the file (every frame is replayed) and release it."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # releases the flock


def _read_frames(fd: int, start: int, stop: int) -> Iterator[Frame]:
    """Frames from ``start`` up to the first one that is torn, damaged or past
    ``stop``."""
    offset = start
    while offset + FRAME.size <= stop:
        head = os.pread(fd, FRAME.size, offset)
        if len(head) < FRAME.size:
            return
        length, rows, crc, taken_at = FRAME.unpack(head)
        end = offset + FRAME.size + length
        if end > stop:
            return
        payload = os.pread(fd, length, offset + FRAME.size)
        if len(payload) < length or _crc(payload, rows, taken_at) != crc:
            return
        yield Frame(offset, end, rows, taken_at, payload)
        offset = end


def _still_linked(fd: int, path: str) -> bool:
    st = os.fstat(fd)
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return st.st_nlink > 0 and (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError("short write")
        view = view[n:]
        offset += n
