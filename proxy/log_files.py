"""Where log lines land: a rotating log file, or standard error.

Both are written only by a log writer thread (``proxy.log_writer``), never by
the event loop, with whole lines per ``os.write``:

* A file is opened with ``O_APPEND``: every write lands at the end of the file
  as the kernel finds it, so several processes (``gatewayd --workers N``) can
  append to one file, and a write of whole lines is never interleaved with
  another process's (Linux takes the inode lock for the whole of a regular
  file write; POSIX.1-2017 write(), "If the O_APPEND flag ... is set").
* Standard error may be a pipe (journald, docker): there only writes of at most
  ``PIPE_BUF`` bytes are atomic (pipe(7), "PIPE_BUF"), so lines are written in
  chunks of whole lines no longer than that.

Rotation (docs/logging.md): ``FILE`` becomes ``FILE.1``, ``FILE.1`` becomes
``FILE.2`` ... up to ``keep`` files, when ``FILE`` reaches ``rotate_bytes`` or the
UTC day changes.  Only one process rotates (``rotates``: the single process, or
the first worker); the others *follow*: before each write they look at the path
and reopen it when it names another file than the one they hold (renamed by the
rotating worker or by logrotate).  ``reopen`` (SIGUSR1) reopens at once.
"""

from __future__ import annotations

import os
import select
import stat
import time
from collections.abc import Callable

# Largest write that reaches a pipe in one piece (pipe(7): 4096 on Linux).
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)
# Largest single write to a regular file: bounds the bytes one write() holds.
FILE_CHUNK_BYTES = 1 << 20
# Mode of a new log file: rw for the owner, r for the group (access lines name
# clients and key ids, nothing for every user of the machine).
LOG_FILE_MODE = 0o640
SECONDS_PER_DAY = 86_400


def chunks(lines: list[bytes], limit: int) -> list[bytes]:
    """``lines`` joined into pieces of whole lines of at most ``limit`` bytes (a
    single longer line stays whole: it cannot be split without breaking it)."""
    out: list[bytes] = []
    part: list[bytes] = []
    size = 0
    for line in lines:
        if part and size + len(line) > limit:
            out.append(b"".join(part))
            part, size = [], 0
        part.append(line)
        size += len(line)
    if part:
        out.append(b"".join(part))
    return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class StderrSink:
    """Standard error (fd 2), in atomic pieces when it is a pipe."""

    name = "stderr"
    rotations = 0

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd
        try:
            mode = os.fstat(fd).st_mode
            self.limit = FILE_CHUNK_BYTES if stat.S_ISREG(mode) else PIPE_BUF
        except OSError:
            self.limit = PIPE_BUF

    def write_lines(self, lines: list[bytes]) -> None:
        for piece in chunks(lines, self.limit):
            _write_all(self.fd, piece)

    def tick(self) -> None:
        """Nothing rotates on standard error."""

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self) -> None:
        """Standard error stays open."""


def utc_day(t: float) -> int:
    return int(t // SECONDS_PER_DAY)


class LogFile:
    """One log file, appended to, rotated by size and by UTC day (if ``rotates``),
    reopened when the path moved on (``follow``) or when asked (``reopen``)."""

    def __init__(self, path: str, *, rotate_bytes: int = 0, rotate_daily: bool = False,
                 keep: int = 5, rotates: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        """Opens ``path`` (OSError if it cannot be: the caller reports it)."""
        self.name = self.path = path
        self.rotate_bytes = rotate_bytes
        self.rotate_daily = rotate_daily
        self.keep = keep
        self.rotates = rotates
        self.clock = clock
        self.rotations = 0
        self.fd = -1
        self._ino: tuple[int, int] = (0, 0)
        self._size = 0
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     LOG_FILE_MODE)
        st = os.fstat(fd)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd
        self._ino = (st.st_dev, st.st_ino)
        self._size = st.st_size
        self._day = utc_day(self.clock())

    def reopen(self) -> None:
        """Open the path again (SIGUSR1 after an outside rotation): new lines go
        to whatever file the path names now, a new one if it is gone."""
        self._open()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def write_lines(self, lines: list[bytes]) -> None:
        self.tick()
        for piece in chunks(lines, FILE_CHUNK_BYTES):
            _write_all(self.fd, piece)
        if self.rotates and self.rotate_bytes:
            self._rotate_if_full()

    def tick(self) -> None:
        """Called before each write and on every idle wake of the writer: the
        rotating process rotates when the UTC day changed or the file is full
        (the other workers' lines count too, and they may be the only ones
        writing); the others reopen when the path names another file."""
        if not self.rotates:
            self._follow()
        elif self.rotate_daily and utc_day(self.clock()) != self._day:
            self.rotate()
        elif self.rotate_bytes:
            self._rotate_if_full()

    def _rotate_if_full(self) -> None:
        # The size as the kernel has it, every process's appends included.
        self._size = os.fstat(self.fd).st_size
        if self._size >= self.rotate_bytes:
            self.rotate()

    def _follow(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._open()  # renamed away and not created again yet: create it
            return
        if (st.st_dev, st.st_ino) != self._ino:
            self._open()

    def rotated_name(self, n: int) -> str:
        return f"{self.path}.{n}"

    def rotate(self) -> None:
        """``FILE.keep`` is removed, ``FILE.n`` becomes ``FILE.n+1``, ``FILE``
        becomes ``FILE.1``, and a new ``FILE`` is opened."""
        keep = self.keep
        if keep:
            try:
                os.unlink(self.rotated_name(keep))
            except FileNotFoundError:
                pass
            for n in range(keep - 1, 0, -1):
                try:
                    os.rename(self.rotated_name(n), self.rotated_name(n + 1))
                except FileNotFoundError:
                    pass
        try:
            if keep:
                os.rename(self.path, self.rotated_name(1))
            else:
                os.unlink(self.path)
        except FileNotFoundError:
            pass  # moved away by someone else: a new file is opened all the same
        self.rotations += 1
        self._open()


def open_sink(target: str, *, rotate_bytes: int, rotate_daily: bool, keep: int,
              rotates: bool, clock: Callable[[], float] = time.time) -> StderrSink | LogFile:
    """The sink a ``[logging]`` destination names: ``"stderr"`` or a file path."""
    if target == "stderr":
        return StderrSink()
    return LogFile(target, rotate_bytes=rotate_bytes, rotate_daily=rotate_daily, keep=keep,
                   rotates=rotates, clock=clock)
