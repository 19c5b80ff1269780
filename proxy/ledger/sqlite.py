"""SQLite ledger backend over apsw; the only module that imports apsw.

Connection settings follow ``apsw.bestpractice`` (WAL, busy timeout, foreign
keys, no double-quoted string literals, ``optimize``), applied to our own
connections rather than through the process-wide ``apsw.connection_hooks``, so
other SQLite users in the process keep their own settings.

Transactions are explicit (apsw ``doc/tips.rst``): apsw does not open them behind
our back, and without one every INSERT would be its own commit. A batch is one
``with db:`` block around ``executemany``.

References: https://rogerbinns.github.io/apsw/tips.html,
https://www.sqlite.org/wal.html, https://www.sqlite.org/pragma.html#pragma_synchronous
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import apsw
import apsw.bestpractice

from proxy.ledger.backend import LedgerError
from proxy.ledger.schema import (
    COLUMN_DEFAULTS,
    LEDGER_COLUMNS,
    SQLITE_MIGRATIONS,
    TABLE,
    Migration,
)

# How long a statement waits for another connection's lock before BusyError.
# WAL readers (`gateway usage`) never block the writer; only a second writer
# (another daemon on the same file, a manual `sqlite3` session) can. apsw's
# bestpractice uses 100 ms for interactive code; the writer runs off the event
# loop, so it can wait longer: 2 s of requests fits in the queue
# (LEDGER_QUEUE_ROWS) up to ~30k requests/s.
LEDGER_BUSY_TIMEOUT_MS = 2_000

# `gateway usage` is interactive: fail fast rather than hang on a locked file.
READER_BUSY_TIMEOUT_MS = 500

_GLOB_CHARS = frozenset("*?[")


def _insert_sql() -> str:
    placeholders = [
        f"coalesce(?, {COLUMN_DEFAULTS[c]})" if c in COLUMN_DEFAULTS else "?"
        for c in LEDGER_COLUMNS
    ]
    return (
        f"INSERT INTO {TABLE} ({', '.join(LEDGER_COLUMNS)}) "
        f"VALUES ({', '.join(placeholders)})"
    )


_INSERT_SQL = _insert_sql()


class SQLiteBackend:
    """A ``LedgerBackend`` storing rows in one SQLite file.

    ``readonly=True`` opens an existing file without creating, migrating or
    changing its journal mode; it is what the CLI uses.
    """

    def __init__(
        self,
        path: str,
        *,
        readonly: bool = False,
        busy_timeout_ms: int | None = None,
        migrations: Sequence[Migration] = SQLITE_MIGRATIONS,
    ) -> None:
        self.path = path
        self.readonly = readonly
        if busy_timeout_ms is None:
            busy_timeout_ms = (
                READER_BUSY_TIMEOUT_MS if readonly else LEDGER_BUSY_TIMEOUT_MS
            )
        self.busy_timeout_ms = busy_timeout_ms
        self.migrations = tuple(migrations)
        self._db: apsw.Connection | None = None

    # -- LedgerBackend ---------------------------------------------------------

    def open(self) -> None:
        if self.readonly:
            # apsw would report a missing file as a bare CantOpenError.
            if not os.path.isfile(self.path):
                raise LedgerError(f"ledger database not found: {self.path}")
            flags = apsw.SQLITE_OPEN_READONLY
        else:
            flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        try:
            db = apsw.Connection(self.path, flags=flags)
        except apsw.Error as exc:
            raise LedgerError(f"cannot open {self.path}: {exc}") from exc
        try:
            self._configure(db)
        except apsw.Error as exc:
            db.close()
            raise LedgerError(f"cannot use {self.path}: {exc}") from exc
        self._db = db

    def migrate(self, target_version: int | None = None) -> int:
        """Apply the missing migration steps in one transaction.

        ``target_version`` stops early (tests use it to build old databases).
        A database newer than this code is refused rather than written to, since
        its rows may need columns we do not know how to fill.
        """
        db = self._conn()
        newest = self.migrations[-1].version if self.migrations else 0
        target = newest if target_version is None else target_version
        try:
            # IMMEDIATE takes the write lock before reading user_version, so two
            # processes opening a new file cannot both run step 1.
            db.execute("BEGIN IMMEDIATE")
            try:
                current = db.pragma("user_version")
                if current > newest:
                    raise LedgerError(
                        f"{self.path} has schema version {current}, newer than "
                        f"this gateway's {newest}; upgrade tokenway"
                    )
                for step in self.migrations:
                    if current < step.version <= target:
                        for statement in step.statements:
                            db.execute(statement)
                        db.pragma("user_version", step.version)
                        current = step.version
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except apsw.Error as exc:
            raise LedgerError(f"cannot migrate {self.path}: {exc}") from exc
        return current

    def write_batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        db = self._conn()
        try:
            with db:
                db.executemany(_INSERT_SQL, rows)
        except (apsw.Error, TypeError, OverflowError) as exc:
            raise LedgerError(f"{type(exc).__name__}: {exc}") from exc

    def query(
        self,
        *,
        since: float | None = None,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        db = self._conn()
        try:
            present = {row[1] for row in db.execute(f"PRAGMA table_info({TABLE})")}
            if not present:
                raise LedgerError(
                    f"{self.path} is not a tokenway ledger (no {TABLE} table)"
                )
            columns = [c for c in LEDGER_COLUMNS if c in present]
            where: list[str] = []
            params: list[Any] = []
            if since is not None:
                where.append("ts >= ?")
                params.append(since)
            if model is not None:
                op = "GLOB" if _GLOB_CHARS.intersection(model) else "="
                where.append(f"(model {op} ? OR served_model {op} ?)")
                params += [model, model]
            params.append(-1 if limit is None else limit)  # LIMIT -1: no limit
            select = ", ".join(columns)
            # Newest `limit` rows, handed back oldest first (a log reads downwards).
            sql = (
                f"SELECT {select} FROM ("
                f"SELECT rowid AS rid, {select} FROM {TABLE}"
                f"{' WHERE ' + ' AND '.join(where) if where else ''}"
                f" ORDER BY ts DESC, rowid DESC LIMIT ?"
                f") ORDER BY ts, rid"
            )
            records = db.execute(sql, params).fetchall()
        except apsw.Error as exc:
            raise LedgerError(f"cannot read {self.path}: {exc}") from exc
        if len(columns) == len(LEDGER_COLUMNS):
            return [dict(zip(LEDGER_COLUMNS, r, strict=True)) for r in records]
        # An older schema: the columns it lacks read as unknown.
        blank = dict.fromkeys(LEDGER_COLUMNS)
        return [{**blank, **dict(zip(columns, r, strict=True))} for r in records]

    def close(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        try:
            if not self.readonly:
                # SQLite recommends `PRAGMA optimize` before closing a connection
                # that ran queries (https://sqlite.org/lang_analyze.html).
                db.pragma("optimize")
            db.close()
        except apsw.Error as exc:
            raise LedgerError(f"cannot close {self.path}: {exc}") from exc

    # -- helpers ---------------------------------------------------------------

    def _conn(self) -> apsw.Connection:
        if self._db is None:
            raise LedgerError(f"{self.path} is not open")
        return self._db

    def _configure(self, db: apsw.Connection) -> None:
        bp = apsw.bestpractice
        bp.connection_busy_timeout(db, self.busy_timeout_ms)
        bp.connection_dqs(db)
        if self.readonly:
            return
        bp.connection_wal(db)
        bp.connection_enable_foreign_keys(db)
        bp.connection_optimize(db)
        # Our throughput choice (not apsw's advice): under WAL, NORMAL fsyncs
        # only at checkpoints, so a commit costs no fsync. A process crash
        # loses nothing; a power loss may lose the last commits.
        db.pragma("synchronous", "NORMAL")
