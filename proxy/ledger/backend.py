"""The interface between the ledger writer and a database.

The writer thread and the ``gateway usage`` command only talk to a
``LedgerBackend``. SQLite (``proxy/ledger/sqlite.py``, through apsw) is the one
backend today; a PostgreSQL backend would implement the same five methods.

Contract: a backend object is used by one thread at a time (the writer thread,
or the CLI's main thread) and never from the event loop. Driver exceptions are
translated to ``LedgerError`` at this boundary so callers need not import the
driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class LedgerError(Exception):
    """The ledger database could not be opened, migrated, written or read."""


class LedgerBackend(Protocol):
    def open(self) -> None:
        """Connect and apply connection settings. Raises ``LedgerError``."""

    def migrate(self) -> int:
        """Bring the schema to the newest version; return that version."""

    def write_batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (tuples in ``LEDGER_COLUMNS`` order) in one transaction.

        Either every row is stored or none is; on failure raises ``LedgerError``
        and the caller may retry the same batch.
        """

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

    def close(self) -> None:
        """Release the connection. Safe to call twice."""
