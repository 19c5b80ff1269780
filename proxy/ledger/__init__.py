"""Request accounting: one row per request, written off the event loop.

``Ledger`` (``writer.py``) queues records from the loop and writes them in
batches from one thread, with backpressure instead of drops and a spill journal
(``spill.py``) for when the database fails; ``values.py`` checks each value;
``LedgerBackend`` (``backend.py``) is the database interface, with SQLite through
apsw (``sqlite.py``) as its one implementation so far; ``schema.py`` holds the
column order, the column rules and the migration steps.

Usage::

    ledger = Ledger(path)
    ledger.start()                   # opens and migrates; raises LedgerError
    ledger.watch_pressure(loop, on_pressure)  # on_pressure(True/False) on loop
    ledger.record(rec)               # rec.as_row() -> tuple in LEDGER_COLUMNS order
    ledger.record(DictRecord({"ts": t0, "model": "gpt-4o", ...}))
    ledger.stats()                   # {"state", "queued", "written", ...}
    ledger.close()                   # stores every queued row, then joins
"""

from __future__ import annotations

from typing import Any

from proxy.ledger.backend import LedgerBackend, LedgerError, LedgerUnavailable
from proxy.ledger.record import DictRecord, LedgerRecord
from proxy.ledger.schema import LEDGER_COLUMNS, SCHEMA_VERSION
from proxy.ledger.spill import SPILL_MAX_BYTES
from proxy.ledger.sqlite import SQLiteBackend
from proxy.ledger.writer import (
    DEFAULT_DB_PATH,
    LEDGER_BATCH_ROWS,
    LEDGER_CLOSE_STALL_S,
    LEDGER_FLUSH_MS,
    LEDGER_HIGH_WATER_ROWS,
    LEDGER_LOW_WATER_ROWS,
    Ledger,
)

__all__ = [
    "DEFAULT_DB_PATH",
    "LEDGER_BATCH_ROWS",
    "LEDGER_CLOSE_STALL_S",
    "LEDGER_COLUMNS",
    "LEDGER_FLUSH_MS",
    "LEDGER_HIGH_WATER_ROWS",
    "LEDGER_LOW_WATER_ROWS",
    "SCHEMA_VERSION",
    "SPILL_MAX_BYTES",
    "DictRecord",
    "Ledger",
    "LedgerBackend",
    "LedgerError",
    "LedgerRecord",
    "LedgerUnavailable",
    "SQLiteBackend",
    "query_groups",
    "query_rows",
]


def query_rows(
    path: str,
    *,
    since: float | None = None,
    model: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Read rows from the ledger file at ``path`` over a read-only connection.

    Returns rows with ``ts >= since`` (unix seconds) whose requested or served
    model equals ``model`` (or matches it as a case-sensitive glob when it
    contains ``*``, ``?`` or ``[``). ``limit`` keeps the newest ``limit`` rows.
    Rows come oldest first (newest last), as dicts with every
    ``LEDGER_COLUMNS`` key; ``stream`` is a bool.

    Raises ``LedgerError`` when the file is missing or is not a ledger. Safe to
    run while the daemon writes: WAL readers do not block the writer. Rows
    waiting in a spill journal (the database was failing) are not seen until
    the daemon has replayed them.
    """
    backend = SQLiteBackend(path, readonly=True)
    backend.open()
    try:
        rows = backend.query(since=since, model=model, limit=limit)
    finally:
        backend.close()
    return rows


def query_groups(path: str, by: str, *, since: float | None = None) -> list[dict[str, Any]]:
    """Totals per key, user, model, provider or day from the ledger file at ``path``
    over a read-only connection (``LedgerBackend.query_groups``). Raises
    ``LedgerError`` as ``query_rows`` does."""
    backend = SQLiteBackend(path, readonly=True)
    backend.open()
    try:
        return backend.query_groups(by, since=since)
    finally:
        backend.close()
