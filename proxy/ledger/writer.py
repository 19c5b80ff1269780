"""The ledger writer: the event loop hands records over, one thread stores them.

Shape (apsw ``aio.py``): ``record(rec)`` runs on the event loop for every
request and only appends ``rec`` to a deque; one writer thread owns the database
connection, calls ``rec.as_row()``, and writes batches.

Nothing is dropped because the writer is behind or the database is down:

- **Backpressure.** ``record()`` always queues. When the queue reaches
  ``high_water_rows`` it calls the watcher's ``callback(True)`` (synchronously,
  on the loop); when the writer has drained it below ``low_water_rows`` it
  schedules ``callback(False)`` on the loop (``call_soon_threadsafe``). The
  server stops accepting connections and reading new requests while the signal
  is on, so the queue stays under ``high_water_rows`` plus one row per request
  already in flight when the signal went on (see ``LEDGER_HIGH_WATER_ROWS``).
- **Spilling.** A batch the database cannot take (locked, full, read-only, I/O
  error, file removed) goes to the spill journal (``spill.py``) and is replayed
  exactly once when writes succeed again; the database is retried every
  ``retry_s`` meanwhile. When the journal cannot take it either (full, disk
  full), the batch stays in memory, the writer stops taking rows off the
  queue, and the queue's growth turns the backpressure signal on.
- **Bad values** cost their own column, not the batch (``values.py``).

What can still be lost, counted in ``dropped`` and logged: a record whose
``as_row()`` raises or returns the wrong number of values; a row the database
refuses one by one twice (live, then at replay) for a reason other than being
unavailable (a constraint someone added by hand); rows recorded after
``close()``; and, when ``close()`` gives up because neither the database nor
the journal has taken a row for ``stall_timeout_s``, the rows still in memory.

Shutdown: ``close()`` (on SIGTERM, from ``gatewayd``) lets the writer store
every queued row (or journal it, if the database is failing) and waits as long
as that makes progress. On SIGKILL the rows still in memory are lost: normally
the rows of the last flush interval (``LEDGER_FLUSH_MS``) plus the batch being
committed; more only while the writer is behind (``queued`` in ``stats()``).

Cost. ``values.encode_batch`` calls ``as_row()`` and ``orjson.dumps`` on the
whole batch (~0.6 us per row with the GIL), and the SQLite backend binds the rows
256 to a statement (``sqlite.py``: flattening and binding, ~0.6 us per row more
with the GIL; then SQLite stores them without it), so a batch of 512 takes the
GIL back after each of its 5 statements, not after each row. ``executemany``
did that for every row, after binding its 23 values (~3.6 us per row with the
GIL held). Before 2026-12-07 the batch went to SQLite as one JSON value that it
read back column by column (27 ``json_extract`` calls a row, 3.6 us) and then
scanned for values to repair: 8.4-9.7 us of writer CPU per row in
``bench.micro.ledger`` against 6.1-6.8 now, 5.4 against 3.3 for the write alone
(bench/RESULTS.md). A separate writer process would avoid the GIL entirely but
must serialise rows anyway and adds a process to supervise.

Measured on 2 shared vCPUs (a VM with other work; CPython 3.11, uvloop, apsw
3.54.1) when the JSON value replaced ``executemany`` (dict rows):

- ``python -m bench.micro.ledger --rows 100000 --work-us 25 --repeat 5
  --strace`` (one loop recording rows between 25 us of request work):
  futex calls per row 0.070 -> 0.021 (runs 0.051-0.106 -> 0.015-0.024); loop
  CPU per ``record()`` (against a null ledger) 6.6 -> 0.4 us; loop context
  switches per row 0.032 -> 0.010; writer CPU per row 7.1 -> 8.7 us, the rise
  being C time without the GIL (JSON extraction, the check scan).
- gatewayd under ``strace -f -c --seccomp-bpf -e trace=futex``, loopback model,
  ``bench/loadgen.py`` at c=64 for 10 s: futex calls per request 0.76 and 0.81
  -> 0.086 and 0.091; without strace, gateway CPU per request (all threads)
  109-123 -> 104-114 us.

Queue choice: a ``collections.deque`` plus one ``threading.Event``. A deque
append is atomic under the GIL and ``len()`` is O(1). The writer publishes in
``_signal_at`` the queue length at which it wants to be woken (1 while idle,
``batch_rows`` while collecting, never while writing), so ``record()`` pays for
``Event.set()`` at most once per batch. A ``queue.SimpleQueue`` is as cheap to
put on (~0.1 us) but wakes a blocked ``get(timeout=...)`` on every row, a futex
wake and a GIL hand-off per request.

Threads: ``record()`` and ``watch_pressure()`` are for one producer thread (the
event loop); ``stats()`` may be read and ``wait_idle()`` called from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from proxy.ledger.backend import JournalMark, LedgerBackend, LedgerError
from proxy.ledger.record import LedgerRecord
from proxy.ledger.spill import (
    SPILL_MAX_BYTES,
    JournalError,
    SpillJournal,
    adopt_journals,
    claim_journal,
)
from proxy.ledger.values import Encoded, encode_batch
from proxy.threads import name_os_thread

log = logging.getLogger("tokenway.ledger")

# Same default for the daemon and `gateway usage`: the current directory.
DEFAULT_DB_PATH = "tokenway.db"

# Rows per transaction. A 512-row transaction (2 bound INSERTs of 256 rows,
# sqlite.py) costs the writer ~3.5 us of CPU per row alone, ~6 next to a busy
# loop; BEGIN, the spend upsert and COMMIT are ~0.1 us of that. Larger batches
# gain little and hold the GIL longer in as_row(), orjson.dumps and binding.
LEDGER_BATCH_ROWS = 512

# Longest wait for more rows before committing a partial batch. Caps commits at
# 20/s when traffic is light, while `gateway usage` still sees a request
# within a fraction of a second. It is also what a SIGKILL loses.
LEDGER_FLUSH_MS = 50

# Backpressure thresholds, in rows queued (not yet taken by the writer).
# High: 32k rows absorb a writer stall of LEDGER_BUSY_TIMEOUT_MS (2 s, another
# process holding the database's write lock) at ~16k requests/s, or a database
# failure's first retry, without slowing the gateway; bench runs at c=64 peaked
# at ~4.9k rows queued. At ~0.65 KB per record (tracemalloc: a slotted record
# with its own strings and numbers; a dict in a DictRecord is ~1.3 KB) the queue
# then holds ~21 MB (~43 MB as dicts).
# Bound: the server stops reading new requests while the signal is on, and each
# request in flight records exactly one row, so the queue never exceeds
# LEDGER_HIGH_WATER_ROWS + the requests in flight when the signal went on (at
# most one per open connection for HTTP/1.1), plus one rejected-request row per
# connection that was mid-read.
LEDGER_HIGH_WATER_ROWS = 32_768
# Low: resume at a quarter. The gap (24k rows = 48 batches) keeps the signal
# from flapping once per batch, and the 8k rows still queued (~40-60 ms of
# writes) keep the writer busy while the server resumes reading.
LEDGER_LOW_WATER_ROWS = 8_192

# While the database fails, how often a write is tried again (a probe). Each
# probe of a locked database waits LEDGER_BUSY_TIMEOUT_MS; between probes
# batches go straight to the journal.
LEDGER_RETRY_S = 1.0

# close() gives up when no row was stored, journaled or replayed for this long
# (database and journal both failing). While rows move it waits, however long.
LEDGER_CLOSE_STALL_S = 10.0

# Journal frames replayed between two live batches: 8 x 512 rows, tens of ms of
# writes, so a replay after an outage does not starve new rows.
REPLAY_FRAMES_PER_ROUND = 8

# Larger than any queue length: "do not signal".
_NEVER = 1 << 62

# How often close() looks at the writer's progress.
_CLOSE_POLL_S = 0.1


class _Stop:
    """Appended by close(); the writer exits after storing what precedes it."""


_STOP = _Stop()


class _Pending(NamedTuple):
    """Rows taken off the queue and encoded, not yet stored or journaled."""

    encoded: Encoded
    taken_at: float


class Ledger:
    """Request accounting: ``record()`` on the loop, batched writes off it."""

    def __init__(
        self,
        path: str = DEFAULT_DB_PATH,
        *,
        batch_rows: int = LEDGER_BATCH_ROWS,
        flush_ms: float = LEDGER_FLUSH_MS,
        high_water_rows: int = LEDGER_HIGH_WATER_ROWS,
        low_water_rows: int = LEDGER_LOW_WATER_ROWS,
        spill_max_bytes: int = SPILL_MAX_BYTES,
        retry_s: float = LEDGER_RETRY_S,
        backend: LedgerBackend | None = None,
    ) -> None:
        if batch_rows < 1 or flush_ms < 0 or retry_s <= 0:
            raise ValueError("batch_rows must be >= 1, flush_ms >= 0, retry_s > 0")
        if not 0 <= low_water_rows < high_water_rows:
            raise ValueError("need 0 <= low_water_rows < high_water_rows")
        if backend is None:
            from proxy.ledger.sqlite import SQLiteBackend

            backend = SQLiteBackend(path)
        self.path = path
        # Where the accounts tables are: the same database as the rows (the SQLite
        # file's path, or the PostgreSQL backend's StorageURL).
        self.database: Any = getattr(backend, "location", path)
        self._backend = backend
        self._batch_rows = batch_rows
        self._flush_s = flush_ms / 1000.0
        self._high_water = high_water_rows
        self._low_water = low_water_rows
        self._spill_max_bytes = spill_max_bytes
        self._retry_s = retry_s
        self._rows: deque[Any] = deque()
        self._wake = threading.Event()
        self._signal_at = _NEVER
        # Backpressure: record() calls _press() once the queue reaches
        # _pressure_at (high water; _NEVER while the signal is on; 0 once
        # closed). Transitions take _pressure_lock; record() never does.
        self._pressure_at = high_water_rows
        self._pressure = False
        self._pressure_lock = threading.Lock()
        self._release_pending = False
        self._watch_loop: asyncio.AbstractEventLoop | None = None
        self._on_pressure: Callable[[bool], Any] | None = None
        self._stopping = False
        self._stop_pending = False
        self._closed = False
        self._finished = False  # the writer thread has exited (or never ran)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        # Notified whenever `queued` may have reached 0 (wait_idle); never on record().
        self._idle = threading.Condition()
        self._start_error: BaseException | None = None
        # Writer-thread state.
        self._in_flight = 0  # rows taken off the queue, not yet stored or journaled
        self._held: _Pending | None = None
        self._db_ok = True
        self._next_try = 0.0
        self._journals: list[SpillJournal] = []
        self._active: SpillJournal | None = None
        self._journal_error: str | None = None  # why the last spill failed
        # Counters: each has one writing thread (_dropped_late the producer,
        # the others the writer). Reads from other threads are fine.
        self._written = 0
        self._replayed = 0
        self._spilled = 0
        self._coerced = 0
        self._dropped = 0
        self._dropped_late = 0
        self._batches = 0
        self._pressure_events = 0
        self._journal_rows = 0
        self._journal_bytes = 0
        self._last_error: str | None = None
        # Records taken by record(), ever: with ``queued``, how many are stored
        # (the accounts' spend figures use it).
        self.recorded = 0

    # -- event loop side -------------------------------------------------------

    def record(self, rec: LedgerRecord) -> None:
        """Queue one request's record. Never blocks, never drops, never raises.

        ``rec.as_row()`` is called later on the writer thread. Records queued
        before ``start()`` wait; records after ``close()`` are counted as dropped.
        """
        rows = self._rows
        rows.append(rec)
        self.recorded += 1
        n = len(rows)
        if n >= self._signal_at:
            self._signal_at = _NEVER
            self._wake.set()
        if n >= self._pressure_at:
            self._press()

    def watch_pressure(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[[bool], Any] | None
    ) -> None:
        """Tell ``callback`` when to hold off new requests. Call from ``loop``.

        ``callback(True)`` runs inside the ``record()`` call that brings the
        queue to the high-water mark; ``callback(False)`` runs on ``loop`` (via
        ``call_soon_threadsafe``) once the writer has drained the queue below
        the low-water mark. Calls alternate, starting with True. If the signal is
        already on, ``callback(True)`` runs now. ``None`` stops the calls.
        """
        with self._pressure_lock:
            self._watch_loop = loop if callback is not None else None
            self._on_pressure = callback
            on = self._pressure
        if on and callback is not None:
            self._notify(callback, True)

    def _press(self) -> None:
        if self._closed:
            self._refuse_late()
            return
        with self._pressure_lock:
            if self._pressure or self._closed:
                return
            self._pressure = True
            self._pressure_at = _NEVER
            self._pressure_events += 1
            callback = self._on_pressure
        log.warning(
            "ledger: %d rows queued (high-water mark %d): holding new requests "
            "until the writer is below %d",
            len(self._rows), self._high_water, self._low_water,
        )
        if callback is not None:
            self._notify(callback, True)

    def _release(self, notify: bool = True) -> None:
        """Turn the signal off (on the watcher's loop, or the writer if none)."""
        with self._pressure_lock:
            self._release_pending = False
            if not self._pressure or len(self._rows) >= self._high_water:
                return
            self._pressure = False
            if not self._closed:
                self._pressure_at = self._high_water
            callback = self._on_pressure
        log.info("ledger: queue below %d rows: accepting requests again", self._low_water)
        if callback is not None and notify:
            self._notify(callback, False)

    @staticmethod
    def _notify(callback: Callable[[bool], Any], on: bool) -> None:
        try:
            callback(on)
        except Exception:
            log.exception("ledger backpressure callback failed")

    def _refuse_late(self) -> None:
        """A record after close(): nothing will store it."""
        if not self._finished:
            return  # close() is draining; it counts what the writer leaves
        n = sum(1 for r in self._rows if r is not _STOP)
        self._rows.clear()
        self._notify_idle()
        self._dropped_late += n
        self._last_error = f"{n} record(s) after close() dropped"
        log.error("ledger: record() after close(): %d row(s) dropped", n)

    def stats(self) -> dict[str, Any]:
        """State and counters for /health.

        ``state``: "backpressure" while the signal is on; else "spilling" while
        the database fails or the journal holds rows not yet replayed; else
        "ok". ``queued``: rows recorded and not yet stored or journaled (0 means
        every row so far is in the database or the journal). ``written``: rows
        stored in the database, ``replayed`` of them from the journal.
        ``spilled``: rows appended to the journal; ``journal_rows`` and
        ``journal_bytes``: what the journal files hold, not yet replayed.
        ``coerced``: values the value checks replaced or cut. ``dropped``: rows
        lost (see the module docstring); 0 in a healthy gateway.
        """
        return {
            "state": self.state,
            "queued": self.queued,
            "written": self._written,
            "replayed": self._replayed,
            "spilled": self._spilled,
            "journal_rows": self._journal_rows,
            "journal_bytes": self._journal_bytes,
            "coerced": self._coerced,
            "dropped": self.dropped,
            "batches": self._batches,
            "backpressure_events": self._pressure_events,
            "last_error": self._last_error,
        }

    @property
    def state(self) -> str:
        if self._pressure:
            return "backpressure"
        if not self._db_ok or self._journal_rows or self._held is not None:
            return "spilling"
        return "ok"

    @property
    def written(self) -> int:
        return self._written

    @property
    def spilled(self) -> int:
        return self._spilled

    @property
    def replayed(self) -> int:
        return self._replayed

    @property
    def dropped(self) -> int:
        return self._dropped + self._dropped_late

    @property
    def queued(self) -> int:
        return max(0, len(self._rows) - self._stop_pending) + self._in_flight

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every row recorded so far is stored or journaled (``queued`` is 0):
        the transaction holding the last of them has committed.

        For tests and tools that read the database after recording; not from the writer
        thread. False when rows are still queued after ``timeout_s`` (the writer is stuck
        or was never started).
        """
        with self._idle:
            return self._idle.wait_for(lambda: self.queued == 0, timeout_s)

    def _notify_idle(self) -> None:
        with self._idle:
            self._idle.notify_all()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Open and migrate the database on the writer thread, then return.

        Called once at daemon start-up, before serving: it waits for the open
        so that a bad path or a too-new schema fails start-up (``LedgerError``).
        Journals left by an earlier run are adopted and replayed in the
        background.
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
            self._pressure_at = 0
            if isinstance(err, LedgerError):
                raise err
            raise LedgerError(f"cannot open ledger {self.path}: {err!r}") from err

    def close(self, stall_timeout_s: float = LEDGER_CLOSE_STALL_S) -> bool:
        """Store every queued row, then stop the writer.

        Rows go to the database, or to the journal while the database fails.
        Waits as long as rows keep moving; returns False only when nothing moved
        for ``stall_timeout_s`` (database and journal both failing): the writer
        (a daemon thread) then keeps trying until the process exits, and the
        rows it still holds are lost with the process. True means every row
        recorded before ``close()`` is in the database or the journal.
        """
        thread = self._thread
        if not self._closed:
            with self._pressure_lock:  # so that a racing _release() keeps it 0
                self._closed = True
                self._pressure_at = 0  # record() from now on: _press() -> refused
            self._stopping = True
            if thread is not None:
                self._stop_pending = True
                self._rows.append(_STOP)
                self._wake.set()
        if thread is not None and thread.is_alive():
            if not self._wait_writer(thread, stall_timeout_s):
                return False
        self._finished = True
        # Rows never taken: recorded without start(), or racing close().
        leftover = sum(1 for r in self._rows if r is not _STOP)
        self._rows.clear()
        self._stop_pending = False
        self._notify_idle()
        if leftover:
            self._dropped_late += leftover
            self._last_error = f"{leftover} record(s) not stored: ledger closed"
            log.error("ledger: %d row(s) recorded without a running writer dropped",
                      leftover)
        return True

    def _wait_writer(self, thread: threading.Thread, stall_timeout_s: float) -> bool:
        last = self._progress()
        last_change = time.monotonic()
        while True:
            thread.join(_CLOSE_POLL_S)
            if not thread.is_alive():
                return True
            now = time.monotonic()
            progress = self._progress()
            if progress != last:
                last, last_change = progress, now
            elif now - last_change >= stall_timeout_s:
                log.error(
                    "ledger: nothing stored or journaled for %gs, %d row(s) still "
                    "in memory (%s); giving up",
                    stall_timeout_s, self.queued, self._last_error,
                )
                return False

    def _progress(self) -> tuple[int, ...]:
        return (self._written, self._spilled, self._dropped, len(self._rows),
                self._journal_rows)

    # -- writer thread ---------------------------------------------------------

    def _run(self) -> None:
        name_os_thread("tokenway-ledger")
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
            self._finished = True
            self._ready.set()
            return
        journals, errors = adopt_journals(self.path)
        for message in errors:
            self._note(message)
        for journal in journals:
            self._add_journal(journal)
            log.info("ledger: replaying %d row(s) from %s, left by an earlier run",
                     journal.pending_rows, journal.path)
        self._ready.set()
        try:
            self._serve()
        except BaseException as exc:
            # A bug here must be visible, not a silent thread death.
            self._note(f"writer thread stopped: {exc!r}")
            raise
        finally:
            self._finished = True
            self._notify_idle()
            for journal in self._journals:
                self._release_journal(journal)
            try:
                backend.close()
            except Exception as exc:
                self._note(f"close failed: {exc}")

    def _serve(self) -> None:
        stopped = False
        while True:
            if self._held is None and not stopped:
                self._wait_for_rows()
                batch, stopped = self._take(self._batch_rows)
                if batch:
                    self._held = self._encode(batch)
            if self._held is not None:
                self._place()
            self._replay_some(all_of_it=stopped)
            self._check_pressure()
            if stopped and self._held is None:
                if self._journal_rows and not self._db_ok:
                    # One more try, at the next retry time, before leaving
                    # rows in the journal for the next start.
                    time.sleep(max(0.0, min(self._retry_s, self._next_try - time.monotonic())))
                    self._replay_some(all_of_it=True)
                return  # records after the sentinel raced close(): it counts them
            if self._held is not None:
                # Neither the database nor the journal took the batch: wait,
                # taking no more rows (the queue grows, backpressure holds the
                # gateway), then try again. close() wakes us early.
                self._wake.clear()
                self._wake.wait(self._retry_s)

    def _wait_for_rows(self) -> None:
        rows = self._rows
        wake = self._wake
        # Idle until the first row, or until a journal wants replaying. Clear
        # before publishing the threshold and re-check after, so a row appended
        # in between is seen either by the check or by the producer's set().
        wake.clear()
        self._signal_at = 1
        if not rows:
            timeout = None
            if any(j.pending for j in self._journals):
                timeout = 0.0 if self._db_ok else max(0.0, self._next_try - time.monotonic())
            if timeout is None or timeout > 0:
                wake.wait(timeout)
        # Collect: let more rows join this transaction, unless a batch is
        # already full or close() is waiting.
        if rows and len(rows) < self._batch_rows and not self._stopping and self._flush_s > 0:
            wake.clear()
            self._signal_at = self._batch_rows
            if len(rows) < self._batch_rows and not self._stopping:
                wake.wait(self._flush_s)
        self._signal_at = _NEVER

    def _take(self, n: int) -> tuple[list[Any], bool]:
        rows = self._rows
        n = min(n, len(rows))
        # Counted before the rows leave the deque, so `queued` may briefly
        # count a row twice but never reports 0 while rows are unwritten.
        self._in_flight = n
        popleft = rows.popleft
        batch = [popleft() for _ in range(n)]
        if self._stop_pending:
            for i, item in enumerate(batch):
                if item is _STOP:
                    # Records after the sentinel raced close(): close() counts them.
                    rows.extendleft(reversed(batch[i + 1:]))
                    self._stop_pending = False
                    self._in_flight = i
                    return batch[:i], True
        return batch, False

    def _encode(self, batch: list[Any]) -> _Pending:
        encoded = encode_batch(batch)
        if encoded.dropped or encoded.coerced:
            self._dropped += encoded.dropped
            self._coerced += encoded.coerced
            self._note_values(encoded.notes)
        self._in_flight = encoded.rows
        return _Pending(encoded, time.time())

    def _place(self) -> None:
        """Store the held batch in the database, else the journal, else keep it."""
        held = self._held
        assert held is not None
        encoded = held.encoded
        if encoded.rows and (self._db_ok or time.monotonic() >= self._next_try):
            try:
                result = self._backend.write_rows(encoded.payload, taken_at=held.taken_at,
                                                  rows=encoded.row_values)
            except LedgerError as exc:
                self._db_failed(exc)
            else:
                self._db_recovered()
                self._written += result.rows
                self._batches += 1
                self._count_coerced(result.coerced, result.notes)
                if not result.rejected:
                    self._done_with_held()
                    return
                # Rows the database refused one by one: the journal keeps them
                # and the replay tries once more.
                self._note(f"{len(result.rejected)} row(s) refused by the database; "
                           "kept in the spill journal")
                encoded = Encoded(b"[" + b",".join(result.rejected) + b"]",
                                  len(result.rejected), 0, 0, [])
                self._held = held = _Pending(encoded, held.taken_at)
                self._in_flight = encoded.rows
        if not encoded.rows:
            self._done_with_held()
            return
        if self._spill(encoded, held.taken_at):
            self._done_with_held()

    def _done_with_held(self) -> None:
        self._held = None
        self._in_flight = 0
        self._notify_idle()

    def _spill(self, encoded: Encoded, taken_at: float) -> bool:
        try:
            if self._active is None:
                journal = claim_journal(self.path)
                self._add_journal(journal)
                self._active = journal
                log.warning("ledger: spilling rows to %s until the database takes "
                            "writes again", journal.path)
            self._active.append(encoded.payload, encoded.rows, taken_at,
                                self._spill_max_bytes)
        except (JournalError, OSError) as exc:
            message = f"cannot spill {encoded.rows} row(s): {exc}; they stay queued"
            self._note(message, quiet=message == self._journal_error)
            self._journal_error = message
            return False
        self._journal_error = None
        self._spilled += encoded.rows
        self._journal_rows += encoded.rows
        self._journal_bytes = sum(j.end for j in self._journals)
        return True

    def _replay_some(self, *, all_of_it: bool) -> None:
        """Move journal frames into the database, oldest journal first."""
        budget = None if all_of_it else REPLAY_FRAMES_PER_ROUND
        for journal in list(self._journals):
            if not journal.pending:
                continue
            if not self._db_ok and time.monotonic() < self._next_try:
                return
            for frame in journal.frames(journal.cursor):
                if budget is not None:
                    if budget <= 0:
                        return
                    budget -= 1
                mark = JournalMark(journal.journal_id, frame.end)
                try:
                    result = self._backend.write_rows(
                        frame.payload, taken_at=frame.taken_at, mark=mark
                    )
                except LedgerError as exc:
                    self._db_failed(exc)
                    return
                self._db_recovered()
                self._written += result.rows
                self._replayed += result.rows
                self._batches += 1
                self._count_coerced(result.coerced, result.notes)
                if result.rejected:
                    self._dropped += len(result.rejected)
                    self._note(f"{len(result.rejected)} row(s) refused twice by the "
                               "database; dropped (see the log for their values)")
                    for row in result.rejected:
                        log.error("ledger: row refused twice, dropped: %s",
                                  row.decode("utf-8", "replace"))
                journal.advance(frame)
                self._journal_rows -= frame.rows
            if not journal.pending:
                self._retire(journal)
            elif journal.cursor < journal.end:
                # A frame that does not read back (the file was damaged on
                # disk): its rows cannot be recovered.
                bad = journal.pending_rows
                self._note(f"{journal.path} is damaged after byte {journal.cursor}; "
                           f"{bad} row(s) cannot be replayed")
                self._dropped += bad
                self._journal_rows -= bad
                journal.cursor, journal.cursor_rows = journal.end, journal.rows
                self._retire(journal)

    def _retire(self, journal: SpillJournal) -> None:
        """Every frame is in the database: remove the file, then its progress."""
        try:
            journal.remove()
        except OSError as exc:
            self._note(f"cannot remove {journal.path}: {exc}")
        self._journals.remove(journal)
        if self._active is journal:
            self._active = None
        self._journal_bytes = sum(j.end for j in self._journals)
        try:
            self._backend.forget_journal(journal.journal_id)
        except LedgerError as exc:
            self._note(f"cannot forget journal {journal.journal_id}: {exc}")
        log.info("ledger: %s replayed and removed", journal.path)

    def _add_journal(self, journal: SpillJournal) -> None:
        self._journals.append(journal)
        self._journal_rows += journal.pending_rows
        self._journal_bytes = sum(j.end for j in self._journals)

    def _release_journal(self, journal: SpillJournal) -> None:
        """At exit: keep a journal with rows for the next run, remove an empty one."""
        try:
            if journal.pending:
                journal.sync()
                journal.close()
                log.warning("ledger: %d row(s) left in %s; replayed at the next start",
                            journal.pending_rows, journal.path)
            else:
                journal.remove()
        except OSError as exc:
            self._note(f"cannot close {journal.path}: {exc}")

    def _db_failed(self, exc: LedgerError) -> None:
        if self._db_ok:
            log.warning("ledger database unavailable: %s", exc)
        self._db_ok = False
        self._next_try = time.monotonic() + self._retry_s
        message = str(exc)
        if self._held is not None and self._journal_error:
            message += "; " + self._journal_error  # both are why rows wait
        self._note(message, quiet=True)

    def _db_recovered(self) -> None:
        if not self._db_ok:
            self._db_ok = True
            log.warning("ledger database writable again; %d journaled row(s) to replay",
                        self._journal_rows)

    def _check_pressure(self) -> None:
        if not self._pressure or self._release_pending:
            return
        if len(self._rows) >= self._low_water:
            return
        loop = self._watch_loop
        if loop is None:
            self._release()
            return
        self._release_pending = True
        try:
            loop.call_soon_threadsafe(self._release)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._release(notify=False)

    def _count_coerced(self, coerced: int, notes: list[str]) -> None:
        if coerced:
            self._coerced += coerced
            self._note_values(notes)

    def _note_values(self, notes: list[str]) -> None:
        if notes:
            more = f" (+{len(notes) - 1} more in this batch)" if len(notes) > 1 else ""
            self._note(notes[-1] + more)

    def _note(self, message: str, *, quiet: bool = False) -> None:
        self._last_error = message
        if not quiet:
            log.warning("ledger: %s", message)
