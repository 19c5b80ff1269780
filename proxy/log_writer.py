"""A log writer thread: items in from any thread, whole lines out to a sink.

The event loop never touches the disk for a log line: ``put`` appends the item
(a finished request record, or a ``logging.LogRecord``) to a bounded deque, and
this thread formats the items and writes them in batches to a sink
(``proxy.log_files``: a rotating file or standard error).  Formatting here
rather than on the loop keeps the loop's share at one append (~0.1 us); the
record is finished, nothing changes it any more (the ledger's writer thread
reads it the same way, proxy/request.py).

Waking: the thread sleeps ``interval_s`` between batches and is woken early
once ``batch`` items wait, so ``put`` pays for ``Event.set()`` at most once per
batch (the ledger writer's scheme, proxy/ledger/writer.py).

Bounded: at most ``max_queue`` items wait.  When the sink falls that far behind
(a slow disk, a blocked stderr pipe) further items are dropped and counted
(``stats()['dropped']``, shown in ``/health``): access lines are best-effort,
the ledger is the lossless record of every request.  A failed write drops its
batch, counted the same way, and is reported through ``on_error`` at most once
per ``ERROR_REPORT_INTERVAL_S``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from .threads import name_os_thread

# Items waiting for the writer before new ones are dropped: at ~1 KB an item
# (a request record the ledger also holds, or a log record) about 10 MB, and
# at 10 000 requests/s a full second of a stalled disk.
DEFAULT_MAX_QUEUE = 10_000
# Items that wake the writer before its interval is up.
DEFAULT_BATCH = 256
# Longest time a line waits for its batch: short enough for `tail -f`.
DEFAULT_INTERVAL_S = 0.2
# Most items formatted and written per write round, so the thread hands the
# GIL back between rounds.
MAX_ROUND_ITEMS = 2_048
# A failing sink (disk full) is reported at most this often.
ERROR_REPORT_INTERVAL_S = 60.0


class Sink(Protocol):
    name: str
    rotations: int

    def write_lines(self, lines: list[bytes]) -> None: ...

    def tick(self) -> None: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


class LineWriter:
    """Formats items with ``fmt`` (item -> one line of bytes ending in ``\\n``,
    or None to skip it) and writes them to ``sink`` from its own thread."""

    def __init__(self, sink: Sink, fmt: Callable[[Any], bytes | None], *, name: str,
                 max_queue: int = DEFAULT_MAX_QUEUE, batch: int = DEFAULT_BATCH,
                 interval_s: float = DEFAULT_INTERVAL_S,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.sink = sink
        self.fmt = fmt
        self.max_queue = max_queue
        self.batch = batch
        self.interval_s = interval_s
        self.on_error = on_error
        self.accepted = 0
        self.dropped = 0  # queue full (counted by the putting thread)
        self.lost = 0  # unformattable or not written (counted by the writer thread)
        self.written = 0
        self.write_errors = 0
        self._items: deque[Any] = deque()
        self._wake = threading.Event()
        self._handled = 0  # items written or dropped by the thread
        self._progress = threading.Condition()
        self._reopen = False
        self._stopping = False
        self._reported = -ERROR_REPORT_INTERVAL_S
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- any thread (the event loop for access lines) --------------------------------

    def put(self, item: Any) -> None:
        """Queue ``item``; never blocks, drops (counted) when the queue is full."""
        items = self._items
        n = len(items)
        if n >= self.max_queue:
            self.dropped += 1
            return
        items.append(item)
        self.accepted += 1
        if n + 1 == self.batch:
            self._wake.set()

    def reopen(self) -> None:
        """Reopen the sink before the next batch (SIGUSR1)."""
        self._reopen = True
        self._wake.set()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every item put so far is written (or dropped)."""
        target = self.accepted
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(lambda: self._handled >= target, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, stop the thread, close the sink."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self.sink.close()

    def stats(self) -> dict[str, Any]:
        return {"target": self.sink.name, "written": self.written,
                "dropped": self.dropped + self.lost,
                "queued": len(self._items), "rotations": self.sink.rotations,
                "write_errors": self.write_errors}

    # -- the writer thread -----------------------------------------------------------

    def _run(self) -> None:
        name_os_thread(self._thread.name)
        wake = self._wake
        items = self._items
        while True:
            wake.wait(self.interval_s)
            wake.clear()
            stopping = self._stopping
            if self._reopen:
                self._reopen = False
                self._guard(self.sink.reopen, 0)
            if not items:
                self._guard(self.sink.tick, 0)
            while items:
                self._round(items)
            if stopping:
                return

    def _round(self, items: deque[Any]) -> None:
        lines: list[bytes] = []
        n = min(len(items), MAX_ROUND_ITEMS)
        fmt = self.fmt
        for _ in range(n):
            try:
                line = fmt(items.popleft())
            except Exception as exc:  # a formatting bug loses one line, not the log
                self._report(f"cannot format a log line: {exc!r}")
                self.lost += 1
                continue
            if line is not None:
                lines.append(line)
        if lines and self._guard(self.sink.write_lines, len(lines), lines):
            self.written += len(lines)
        with self._progress:
            self._handled += n
            self._progress.notify_all()

    def _guard(self, fn: Callable[..., None], lines: int, *args: Any) -> bool:
        """Run a sink call; an OSError drops ``lines`` lines and is reported."""
        try:
            fn(*args)
            return True
        except OSError as exc:
            self.write_errors += 1
            self.lost += lines
            self._report(f"cannot write {self.sink.name}: {exc.strerror or exc}"
                         f" ({lines} line(s) dropped)")
            return False

    def _report(self, message: str) -> None:
        now = time.monotonic()
        if self.on_error is not None and now - self._reported >= ERROR_REPORT_INTERVAL_S:
            self._reported = now
            self.on_error(message)
