"""The ledger writer: the event loop hands rows over, one thread writes them.

Shape (apsw ``aio.py``, and style-anchors section 4.3):

- ``record(row)`` runs on the event loop for every request. It appends the row
  to a bounded in-memory queue and returns; it never touches the database,
  never blocks, and never waits for a lock. Measured at ~0.1 us per call
  (timeit, CPython 3.11, x86-64), whether the row is queued or dropped.
- One writer thread owns the backend's connection. It sleeps until a row
  arrives, then gives later rows up to ``flush_ms`` to join, and writes up to
  ``batch_rows`` rows in one transaction. A row is therefore on disk about
  ``flush_ms`` plus one batch write after ``record()``.
- The queue is bounded by ``queue_rows``. When it is full, ``record()`` drops
  the row and counts it (``dropped`` in ``stats()``): request handling must not
  slow down, or use unbounded memory, because the disk is slow. That policy is
  deliberate (architecture rule 6); ``/health`` shows the counter.
- A batch that fails is retried once; if the retry fails too, its rows are
  counted as dropped and ``last_error`` says why. The thread keeps running.
- ``close()`` appends a ``None`` sentinel; the writer flushes every row queued
  before it, closes the connection and exits; ``close()`` joins it.

Queue choice: a ``collections.deque`` plus one ``threading.Event``. A deque
append is atomic under the GIL and ``len()`` is O(1), which gives the bound for
free. The writer publishes in ``_signal_at`` the queue length at which it wants
to be woken (1 while idle, ``batch_rows`` while collecting, never while
writing), so ``record()`` pays for ``Event.set()`` at most once per batch. A
``queue.SimpleQueue`` is as cheap to put on (~0.1 us) but wakes a blocked
``get(timeout=...)`` on every row, a futex wake and a GIL hand-off per request.

Threads: ``record()`` is meant for one producer thread (the event loop). Calls
from other threads are safe for the rows, but the full-queue drop counter may
then miss increments.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from proxy.ledger.backend import LedgerBackend, LedgerError
from proxy.ledger.schema import LEDGER_COLUMNS

log = logging.getLogger("tokenway.ledger")

# Same default for the daemon and `gateway usage`: the current directory.
DEFAULT_DB_PATH = "tokenway.db"

# Rows per transaction. Measured on the SQLite backend (apsw 3.54, idle 2-vCPU
# VM, virtio disk, WAL + synchronous=NORMAL): a one-row transaction costs
# ~32 us, a 512-row one ~1.9 ms (3.6 us/row), so the commit is under 2% of a
# batch. Sustained rate: 25k rows/s at 1 row per batch, 190k at 128, 240k at
# 512, 250k at 2048 (about 150k at 512 with the CPUs busy elsewhere). Larger
# batches gain little and hold the GIL-bound binding loop longer.
LEDGER_BATCH_ROWS = 512

# Longest wait for more rows before committing a partial batch. Caps commits at
# 20/s when traffic is light, while `gateway usage` still sees a request
# within a fraction of a second.
LEDGER_FLUSH_MS = 50

# Queue bound, in rows. A row dict costs ~1.2 KB, so a full backlog is ~78 MB,
# reached only while the writer stalls. It absorbs a writer stall of
# LEDGER_BUSY_TIMEOUT_MS (2 s) at over 30k requests/s. A bench run with a
# 16k bound dropped 1.1 % of rows at 10k requests/s on a loaded 2-core box
# (the writer thread waits for the GIL while the event loop is saturated),
# so the bound stays high; drops are counted in /health either way.
LEDGER_QUEUE_ROWS = 65_536

# Larger than any queue length: "do not wake me".
_NEVER = 1 << 62

# Sentinel appended by close(); the writer exits after writing what precedes it.
_STOP = None


class Ledger:
    """Request accounting: ``record()`` on the loop, batched writes off it.

    ``record()`` takes a dict keyed by ``LEDGER_COLUMNS`` names. Keys may be
    missing (stored as NULL, or the column default) and unknown keys are
    ignored. Only ``ts`` is required; a row without it is counted as dropped.
    Values must be plain ``None``/``bool``/``int``/``float``/``str``. The dict is
    read later by the writer thread, so do not mutate it after ``record()``.
    """

    __slots__ = (
        "path",
        "_backend",
        "_batch_rows",
        "_flush_s",
        "_queue_rows",
        "_rows",
        "_wake",
        "_signal_at",
        "_stopping",
        "_stop_pending",
        "_in_flight",
        "_closed",
        "_thread",
        "_ready",
        "_start_error",
        "_written",
        "_batches",
        "_dropped_full",
        "_dropped_failed",
        "_last_error",
    )

    def __init__(
        self,
        path: str = DEFAULT_DB_PATH,
        *,
        batch_rows: int = LEDGER_BATCH_ROWS,
        flush_ms: float = LEDGER_FLUSH_MS,
        queue_rows: int = LEDGER_QUEUE_ROWS,
        backend: LedgerBackend | None = None,
    ) -> None:
        if batch_rows < 1 or queue_rows < 1 or flush_ms < 0:
            raise ValueError("batch_rows and queue_rows must be >= 1, flush_ms >= 0")
        if backend is None:
            from proxy.ledger.sqlite import SQLiteBackend

            backend = SQLiteBackend(path)
        self.path = path
        self._backend = backend
        self._batch_rows = batch_rows
        self._flush_s = flush_ms / 1000.0
        self._queue_rows = queue_rows
        self._rows: deque[dict[str, Any] | None] = deque()
        self._wake = threading.Event()
        self._signal_at = _NEVER
        self._stopping = False
        self._stop_pending = False
        self._in_flight = 0  # rows taken off the queue, not yet written or dropped
        self._closed = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        # Each counter has a single writing thread: _dropped_full the producer,
        # the others the writer thread. Reads from other threads are fine.
        self._written = 0
        self._batches = 0
        self._dropped_full = 0
        self._dropped_failed = 0
        self._last_error: str | None = None

    # -- event loop side -------------------------------------------------------

    def record(self, row: dict[str, Any]) -> None:
        """Queue one request's row for writing. Never blocks, never raises.

        Rows recorded before ``start()`` wait in the queue; rows recorded after
        ``close()`` are counted as dropped.
        """
        rows = self._rows
        if len(rows) >= self._queue_rows:
            self._dropped_full += 1
            return
        rows.append(row)
        if len(rows) >= self._signal_at:
            self._signal_at = _NEVER
            self._wake.set()

    def stats(self) -> dict[str, Any]:
        """Counters for /health: rows written, dropped and waiting, last failure.

        ``dropped`` sums rows refused because the queue was full (or the ledger
        closed), rows without ``ts`` and rows of batches that failed twice.
        ``queued`` counts every recorded row not yet written or dropped,
        including the batch being written, so ``queued == 0`` means all rows
        recorded so far are committed (or counted as dropped).
        """
        return {
            "written": self._written,
            "dropped": self._dropped_full + self._dropped_failed,
            "queued": self.queued,
            "batches": self._batches,
            "last_error": self._last_error,
        }

    @property
    def written(self) -> int:
        return self._written

    @property
    def dropped(self) -> int:
        return self._dropped_full + self._dropped_failed

    @property
    def queued(self) -> int:
        return max(0, len(self._rows) - self._stop_pending + self._in_flight)

    @property
    def last_error(self) -> str | None:
        return self._last_error

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Open and migrate the database on the writer thread, then return.

        Called once at daemon start-up, before serving: it waits for the open
        so that a bad path or a too-new schema fails start-up (``LedgerError``)
        instead of silently dropping every row.
        """
        if self._thread is not None or self._closed:
            raise RuntimeError("Ledger.start() called twice or after close()")
        self._thread = threading.Thread(
            target=self._run, name="tokenway-ledger", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            err = self._start_error
            self._start_error = None
            self._closed = True
            self._queue_rows = 0
            if isinstance(err, LedgerError):
                raise err
            raise LedgerError(f"cannot open ledger {self.path}: {err!r}") from err

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop accepting rows, flush the queue and join the writer.

        Returns True when the writer finished within ``timeout_s``. On False the
        (daemon) thread keeps flushing in the background and the process may
        exit without it; rows it had not committed are lost.
        """
        thread = self._thread
        if not self._closed:
            self._closed = True
            # From here on record() sees a full queue and counts drops.
            self._queue_rows = 0
            self._stopping = True
            if thread is not None:
                self._stop_pending = True
                self._rows.append(_STOP)
                self._wake.set()
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                return False
        # Rows never written: recorded without start(), or racing close().
        leftover = sum(1 for r in self._rows if r is not _STOP)
        self._rows.clear()
        self._stop_pending = False
        self._dropped_failed += leftover
        return True

    # -- writer thread ---------------------------------------------------------

    def _run(self) -> None:
        backend = self._backend
        try:
            backend.open()
            backend.migrate()
        except BaseException as exc:
            self._start_error = exc
            try:
                backend.close()
            except Exception:
                pass
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop()
        except BaseException as exc:
            # A bug here must be visible, not a silent thread death.
            self._note_error("writer thread stopped", exc)
            raise
        finally:
            try:
                backend.close()
            except Exception as exc:
                self._note_error("close failed", exc)

    def _loop(self) -> None:
        rows = self._rows
        wake = self._wake
        batch_rows = self._batch_rows
        flush_s = self._flush_s
        while True:
            # Idle until the first row. Clear before publishing the threshold and
            # re-check the queue after, so a row appended in between is seen
            # either by the check or by the producer's set().
            wake.clear()
            self._signal_at = 1
            if not rows:
                wake.wait()
            # Collect: let more rows join this transaction, unless a batch is
            # already full or close() is waiting.
            if len(rows) < batch_rows and not self._stopping and flush_s > 0:
                wake.clear()
                self._signal_at = batch_rows
                if len(rows) < batch_rows and not self._stopping:
                    wake.wait(flush_s)
            self._signal_at = _NEVER
            batch, stop = self._take(batch_rows)
            if batch:
                self._write(batch)
            # After the written/dropped counters moved, so `queued` never dips.
            self._in_flight = 0
            if stop:
                return

    def _take(self, n: int) -> tuple[list[dict[str, Any]], bool]:
        rows = self._rows
        batch: list[dict[str, Any]] = []
        n = min(n, len(rows))
        # Counted before the rows leave the deque, so `queued` may briefly
        # count a row twice but never reports 0 while rows are unwritten.
        self._in_flight = n
        for _ in range(n):
            row = rows.popleft()
            if row is _STOP:
                self._stop_pending = False
                self._in_flight = len(batch)
                return batch, True
            batch.append(row)
        return batch, False

    def _write(self, batch: list[dict[str, Any]]) -> None:
        values = self._to_tuples(batch)
        if not values:
            return
        write_batch = self._backend.write_batch
        for attempt in (1, 2):
            try:
                write_batch(values)
            except Exception as exc:
                self._note_error(
                    f"batch of {len(values)} rows failed (try {attempt}/2)", exc
                )
                continue
            self._written += len(values)
            self._batches += 1
            return
        self._dropped_failed += len(values)

    def _to_tuples(self, batch: list[Any]) -> list[tuple[Any, ...]]:
        """Records (``as_row()``) or dicts to tuples in LEDGER_COLUMNS order; here,
        not on the loop."""
        cols = LEDGER_COLUMNS
        good: list[tuple[Any, ...]] = []
        for row in batch:
            value: tuple[Any, ...] | None = None
            as_row: Callable[[], tuple[Any, ...]] | None = getattr(row, "as_row", None)
            try:
                if as_row is not None:
                    value = as_row()
                elif isinstance(row, dict):
                    value = tuple(map(row.get, cols))
            except Exception:
                value = None
            if value is not None and value[0] is not None:
                good.append(value)
                continue
            self._dropped_failed += 1
            self._last_error = f"malformed row (needs 'ts'): {row!r:.200}"
        return good

    def _note_error(self, what: str, exc: BaseException) -> None:
        self._last_error = f"{what}: {exc}"
        log.warning("ledger %s: %s", what, exc)
