"""The interface between the ledger writer and a database.

The writer thread and the ``gateway`` commands only talk to a ``LedgerBackend``:
SQLite (``proxy/ledger/sqlite.py``, through apsw) or PostgreSQL
(``proxy/ledger/postgres.py``, through psycopg 3).

Contract: a backend object is used by one thread at a time (the writer thread,
or the CLI's main thread) and never from the event loop. Driver exceptions are
translated to ``LedgerError`` at this boundary so callers need not import the
driver; ``LedgerUnavailable`` marks the failures that say nothing about the rows
(the database cannot take any write now), which the writer answers by spilling
to the journal and retrying later.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol


class LedgerError(Exception):
    """The ledger database could not be opened, migrated, written or read."""


class LedgerUnavailable(LedgerError):
    """The database cannot take writes now: locked, busy, full, read-only, an I/O
    error, or its file is missing or was replaced. A later retry may succeed."""


class JournalMark(NamedTuple):
    """Where a replayed spill-journal frame ends: stored with its rows."""

    journal_id: str
    end: int  # byte offset just past the frame in that journal


class WriteResult(NamedTuple):
    rows: int  # rows stored by this call (0: the journal frame was stored before)
    coerced: int  # values the value checks replaced or cut (values.py)
    notes: list[str]  # one line per replaced value, oldest first
    rejected: list[bytes]  # rows the database refused one by one, each a JSON array


class LedgerBackend(Protocol):
    def open(self) -> None:
        """Connect and apply connection settings. Raises ``LedgerError``."""

    def migrate(self) -> int:
        """Bring the schema to the newest version; return that version."""

    def write_rows(
        self, payload: bytes, *, taken_at: float, mark: JournalMark | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
    ) -> WriteResult:
        """Store the rows of ``payload`` in one transaction.

        ``payload`` is a JSON array of rows, each an array of values in
        ``LEDGER_COLUMNS`` order (``values.encode_batch`` makes it). Values are
        checked per column (``values.py``); ``taken_at`` (unix seconds) stands in
        for a missing ``ts``. ``rows``, when given, are the same rows as Python
        values (``Encoded.row_values``); a backend may bind them instead of
        parsing ``payload``, and must store the same.

        With ``mark``, the rows are a spill-journal frame: if that journal's
        stored progress already reaches ``mark.end`` nothing is written (rows 0);
        otherwise the progress is set to ``mark.end`` in the same transaction.

        When the batch fails for a reason tied to its rows, the rows are retried
        one at a time in the same transaction; those refused again come back in
        ``rejected`` and the others are stored. Raises ``LedgerUnavailable`` when
        the database cannot take writes (nothing is stored then), another
        ``LedgerError`` for anything else.
        """

    def forget_journal(self, journal_id: str) -> None:
        """Delete a journal's progress once its file is gone (housekeeping)."""

    def query(
        self,
        *,
        since: float | None = None,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows with ``ts >= since`` whose model matches, oldest first.

        ``model`` is an exact name, or a glob when it contains ``*``, ``?`` or
        ``[``; it matches the requested or the served model. ``limit`` keeps the
        newest ``limit`` rows. Every dict has all ``LEDGER_COLUMNS`` keys.
        """

    def rows_after(self, rowid: int, *, since: float | None = None,
                   limit: int = 1000) -> tuple[int, list[dict[str, Any]]]:
        """Rows stored after row number ``rowid`` (and at or after ``since``), oldest
        first, at most ``limit``; with the number to ask after next time.
        ``rowid=-1`` starts after the newest row (``gateway tail``)."""

    def query_groups(self, by: str, *, since: float | None = None) -> list[dict[str, Any]]:
        """Totals per ``by`` (``key``, ``user``, ``model``, ``provider`` or ``day``) of
        the rows with ``ts >= since``, computed by the database, not over every row
        in Python. Each dict has ``group`` (None: no key, user, model or provider),
        ``name`` (the key's name for ``key``), ``requests``, ``errors``,
        ``input_tokens``, ``output_tokens``, ``cost_usd`` (the known costs summed;
        None when none is known) and ``unknown_cost`` (rows whose cost is NULL).
        ``model`` is the served model, else the requested one; ``day`` is UTC."""

    def rollup(self) -> int:
        """Add the rows stored since the last rollup to the daily totals per key,
        model and provider (``retention.py``); the number of rows taken."""

    def prune(self, before: float) -> int:
        """Roll up, then delete the rows of the whole UTC days before the day that
        holds ``before`` (their totals stay); the number of rows deleted."""

    def scan(self, columns: Sequence[str], *, start: float,
             end: float) -> Iterator[tuple[Any, ...]]:
        """The values of ``columns`` (names from ``LEDGER_COLUMNS``) of each row with
        ``start <= ts < end``, in no set order, as the database hands them over
        (not collected into a list: a report over a million rows keeps only what
        it needs). Raises ``LedgerError`` for a column the table lacks."""

    def close(self) -> None:
        """Release the connection. Safe to call twice."""


class AccountsSession(Protocol):
    """SQL for the accounts store (``proxy/accounts/store.py``) on a backend's own
    connection, so that the store needs no driver: statements use ``?`` for each
    bound value and driver errors come out as ``LedgerError`` (``LedgerUnavailable``
    when a retry may succeed)."""

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a query."""

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a change; the number of rows it changed."""

    def change(self) -> AbstractContextManager[None]:
        """One write transaction, committed when the block ends, rolled back when it
        raises; changes of other connections wait (SQLite ``BEGIN IMMEDIATE``,
        PostgreSQL a lock on the ``accounts_version`` row taken first)."""

    def snapshot(self) -> AbstractContextManager[None]:
        """One read transaction: every query in the block sees the same data."""
