"""Request accounting: one row per request, written off the event loop.

``Ledger`` (``writer.py``) queues records from the loop and writes them in
batches from one thread, with backpressure instead of drops and a spill journal
(``spill.py``) for when the database fails; ``values.py`` checks each value;
``LedgerBackend`` (``backend.py``) is the database interface, with SQLite through
apsw (``sqlite.py``) and PostgreSQL through psycopg (``postgres.py``) behind it;
``url.py`` reads where the database is (a path, ``sqlite:///PATH`` or
``postgresql://...``) and ``open_backend`` picks the backend; ``schema.py`` holds
the column order, the column rules and each backend's migration steps.

Usage::

    ledger = Ledger(path)            # or Ledger(path, backend=open_backend(url))
    ledger.start()                   # opens and migrates; raises LedgerError
    ledger.watch_pressure(loop, on_pressure)  # on_pressure(True/False) on loop
    ledger.record(rec)               # rec.as_row() -> tuple in LEDGER_COLUMNS order
    ledger.record(DictRecord({"ts": t0, "model": "gpt-4o", ...}))
    ledger.stats()                   # {"state", "queued", "written", ...}
    ledger.close()                   # stores every queued row, then joins
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy.ledger.backend import LedgerBackend, LedgerError, LedgerUnavailable
from proxy.ledger.record import DictRecord, LedgerRecord
from proxy.ledger.schema import LEDGER_COLUMNS, SCHEMA_VERSION
from proxy.ledger.spill import SPILL_MAX_BYTES
from proxy.ledger.sqlite import SQLiteBackend
from proxy.ledger.url import POSTGRESQL, StorageURL, mask_url, parse_storage_url
from proxy.ledger.writer import (
    DEFAULT_DB_PATH,
    LEDGER_BATCH_ROWS,
    LEDGER_CLOSE_STALL_S,
    LEDGER_FLUSH_MS,
    LEDGER_HIGH_WATER_ROWS,
    LEDGER_LOW_WATER_ROWS,
    Ledger,
)

if TYPE_CHECKING:  # imported when used: psycopg is an optional dependency
    from proxy.ledger.postgres import PostgresBackend

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
    "StorageURL",
    "mask_url",
    "open_backend",
    "parse_storage_url",
    "query_groups",
    "query_rows",
]


def open_backend(where: str | StorageURL, *, readonly: bool = False,
                 timeout_ms: int | None = None) -> SQLiteBackend | PostgresBackend:
    """The backend for ``where``: a SQLite path, ``sqlite:///PATH`` or a PostgreSQL
    URI (``url.py``), not opened yet; a ``LedgerBackend`` with a ``session()`` for
    the accounts store. ``timeout_ms`` bounds a wait for a lock (SQLite's busy
    timeout, PostgreSQL's statement timeout); None: each backend's default.
    ``LedgerError`` for a URL that names no database (its message shows no
    password)."""
    if isinstance(where, str):
        try:
            where = parse_storage_url(where)
        except ValueError as exc:
            raise LedgerError(str(exc)) from None
    if where.kind == POSTGRESQL:
        assert where.dsn is not None
        try:
            from proxy.ledger.postgres import PostgresBackend
        except ImportError as exc:
            raise LedgerError(f"{where.shown}: PostgreSQL needs psycopg 3 "
                              f"(pip install 'tokenway[postgresql]'): {exc}") from None
        return PostgresBackend(where.dsn, where.shown, readonly=readonly,
                               statement_timeout_ms=timeout_ms)
    assert where.path is not None
    return SQLiteBackend(where.path, readonly=readonly, busy_timeout_ms=timeout_ms)


def query_rows(
    where: str | StorageURL,
    *,
    since: float | None = None,
    model: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Read rows from the ledger at ``where`` (a path or a URL, as ``open_backend``
    takes) over a read-only connection.

    Returns rows with ``ts >= since`` (unix seconds) whose requested or served
    model equals ``model`` (or matches it as a case-sensitive glob when it
    contains ``*``, ``?`` or ``[``). ``limit`` keeps the newest ``limit`` rows.
    Rows come oldest first (newest last), as dicts with every
    ``LEDGER_COLUMNS`` key; ``stream`` is a bool.

    Raises ``LedgerError`` when the database is missing or is not a ledger. Safe
    to run while the daemon writes: neither SQLite's WAL readers nor PostgreSQL's
    block the writer. Rows
    waiting in a spill journal (the database was failing) are not seen until
    the daemon has replayed them.
    """
    backend = open_backend(where, readonly=True)
    backend.open()
    try:
        rows = backend.query(since=since, model=model, limit=limit)
    finally:
        backend.close()
    return rows


def query_groups(where: str | StorageURL, by: str, *,
                 since: float | None = None) -> list[dict[str, Any]]:
    """Totals per key, user, model, provider or day from the ledger at ``where``
    over a read-only connection (``LedgerBackend.query_groups``). Raises
    ``LedgerError`` as ``query_rows`` does."""
    backend = open_backend(where, readonly=True)
    backend.open()
    try:
        return backend.query_groups(by, since=since)
    finally:
        backend.close()
