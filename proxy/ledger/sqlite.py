"""SQLite ledger backend over apsw (the only module that imports apsw; the accounts
store reaches the same file through ``SQLiteBackend.session``).

Connection settings follow ``apsw.bestpractice`` (WAL, busy timeout, foreign
keys, no double-quoted string literals, ``optimize``), written out and applied to
our own connections rather than through the process-wide
``apsw.connection_hooks``, so other SQLite users in the process keep theirs.

Transactions are explicit (apsw ``doc/tips.rst``): apsw does not open them behind
our back. A batch is one ``BEGIN IMMEDIATE`` ... ``COMMIT``.

A batch arrives as ONE value: the JSON text ``values.encode_batch`` made (also what
the spill journal keeps), with the rows themselves when the writer still has them.
apsw releases the GIL around each SQLite call and takes it back to bind, so
``executemany`` took the GIL once per row (0.76 futex calls per request in gatewayd
at c=64; figures in writer.py). Here a batch is a handful of statements whatever
its size (5 for 512 rows), and two ways of storing it give the same rows:

- **Bound** (every batch of ordinary values). The rows (or, for a journal frame,
  ``orjson.loads`` of the text: 0.6 us a row more) are bound, 27 values a row, to
  one ``INSERT ... SELECT ... FROM (VALUES ...)`` of 256 rows (then 64, 16, 4, 1
  for the rest: at most 13 statements for 511 rows). The SELECT keeps only values
  that need no repair: an integer (or NULL) where an INTEGER belongs, a finite
  number where a REAL does, text of at most the column's bound in bytes where
  TEXT does; anything else makes ``ts`` NULL, the NOT NULL constraint aborts the
  statement, and the batch goes the checked way. No check scan follows: what
  passed the SELECT needs none. Binding the rows, not their JSON, is the same:
  orjson accepted every value (``encode_batch``), apsw binds what JSON would carry
  (a bool as 0/1, a str or int subclass as its value, NaN as NULL), refuses the
  rest (a datetime, a UUID: checked way), and the tests refuse an infinity (JSON:
  null). ``tests/proxy/test_ledger.py`` stores 63 edge values in each column both
  ways and compares.
- **Checked** (a batch with one unusual value, or a journal frame written by older
  code): SQLite expands the JSON in C (``jsonb_each``,
  https://sqlite.org/json1.html#jeach) inside one ``INSERT ... SELECT``; the text is
  parsed once into SQLite's binary JSON (JSONB), from which ``json_extract`` reads
  each column. Then one scan of the rows just inserted (by rowid) picks the rows
  whose stored values break the column rules (``values.py``); only those come back
  to Python to be repaired.

Why two: reading 27 values out of JSONB costs ~140 ns each (``jsonLookupStep``
walks the row's array from its start for every column): 3.6 of the 5.5 us a row
the checked way costs the writer, against ~1.3 us a row for binding (~46 ns a
value) and ~1.0 us for the SELECT's tests. ``python -m bench.micro.ledger_sql``
times each piece.

References: https://rogerbinns.github.io/apsw/tips.html,
https://www.sqlite.org/wal.html, https://www.sqlite.org/pragma.html#pragma_synchronous,
https://www.sqlite.org/datatype3.html
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any

import apsw
import orjson

import proxy.ledger.retention as retention
from proxy.ledger.backend import (
    JournalMark,
    LedgerError,
    LedgerUnavailable,
    WriteResult,
)
from proxy.ledger.reads import SQLITE_DIALECT, as_rows
from proxy.ledger.schema import (
    COLUMN_DEFAULTS,
    COLUMN_KINDS,
    INTEGER,
    LEDGER_COLUMNS,
    REAL,
    SPEND_TABLE,
    SPILL_TABLE,
    SQLITE_MIGRATIONS,
    TABLE,
    TEXT,
    TEXT_MAX_CHARS,
    Migration,
)
from proxy.ledger.values import MISSING_TS, repair_stored

# How long a statement waits for another connection's lock before BusyError.
# WAL readers (`gateway usage`) never block the writer; only a second writer
# (another daemon on the same file, a manual `sqlite3` session) can. apsw's
# bestpractice uses 100 ms for interactive code; the writer runs off the event
# loop, so it can wait longer: 2 s of requests stays under the writer's
# high-water mark up to ~16k requests/s. While the database keeps failing the
# writer waits this long once per probe, not once per batch (writer.py).
LEDGER_BUSY_TIMEOUT_MS = 2_000

# `gateway usage` is interactive: fail fast rather than hang on a locked file.
READER_BUSY_TIMEOUT_MS = 500

# jsonb_each and the JSONB format arrived in SQLite 3.45.0 (2024-01-15).
MIN_SQLITE_VERSION = (3, 45, 0)

_GLOB_CHARS = frozenset("*?[")

# Errors about the rows of a statement rather than the database: the batch is
# retried row by row. Every other apsw error (busy, locked, full, I/O, read-only,
# cannot open, corrupt, ...) means the database cannot take writes now.
_ROW_ERRORS: tuple[type[BaseException], ...] = (
    apsw.ConstraintError,
    apsw.MismatchError,
    apsw.TooBigError,
    apsw.RangeError,
    apsw.SQLError,
    apsw.FormatError,
)
# What sends a batch from the bound INSERT to the checked one (``_insert_bound``).
_BOUND_ERRORS: tuple[type[BaseException], ...] = (OverflowError, TypeError, *_ROW_ERRORS)


def _insert_sql() -> str:
    exprs = []
    for i, column in enumerate(LEDGER_COLUMNS):
        value = f"json_extract(value, '$[{i}]')"
        if COLUMN_KINDS[column] == TEXT:
            # One character past the bound, so the check below sees the cut.
            value = f"substr({value}, 1, {TEXT_MAX_CHARS[column] + 1})"
        if column == "ts":
            value = f"coalesce({value}, '{MISSING_TS}')"  # NOT NULL; repaired below
        elif column in COLUMN_DEFAULTS:
            value = f"coalesce({value}, {COLUMN_DEFAULTS[column]})"
        exprs.append(value)
    return (
        f"INSERT INTO {TABLE} ({', '.join(LEDGER_COLUMNS)}) "
        f"SELECT {', '.join(exprs)} FROM jsonb_each(?)"
    )


def _check_sql() -> str:
    """Rows inserted after rowid ?1 whose stored values break the column rules.

    The C side of ``values.repair_stored``: each condition here is a value that
    function changes, and nothing else.
    """
    conditions = []
    for column in LEDGER_COLUMNS:
        kind = COLUMN_KINDS[column]
        if column == "ts":
            conditions.append("typeof(ts) <> 'real'")
        elif kind in (INTEGER, REAL):
            conditions.append(f"typeof({column}) NOT IN ('{kind}', 'null')")
        else:
            # substr() in the INSERT stores text (or NULL) whatever it was given.
            conditions.append(f"length({column}) > {TEXT_MAX_CHARS[column]}")
    return (
        f"SELECT rowid, {', '.join(LEDGER_COLUMNS)} FROM {TABLE} "
        f"WHERE rowid > ? AND ({' OR '.join(conditions)})"
    )


def _bound_insert_sql(rows: int) -> str:
    """INSERT of ``rows`` rows of bound values, each kept only if it needs no repair.

    A value that may need one (text or a fraction where an integer belongs, text
    where a real does, anything but text where text does, text longer than its
    bound in bytes, an infinity, a missing ts) makes ts NULL, and the NOT NULL
    constraint on ts aborts the statement: the batch then goes the checked way
    (``_write``), which stores and repairs it as before. The tests use operators
    rather than functions where they can (``|``, ``+``, ``-``: a few VDBE opcodes).
    The VALUES columns have no affinity, so ``'12' | 0 IS '12'`` is false: such a
    batch is checked too (rare; it stores what it stored before). The columns get
    one- or two-letter names to keep the text short (see ``_BOUND_ROWS``).
    """
    names = [chr(97 + i % 26) * (1 + i // 26) for i in range(len(LEDGER_COLUMNS))]
    tests = []
    values = []
    for v, column in zip(names, LEDGER_COLUMNS, strict=True):
        kind = COLUMN_KINDS[column]
        if kind == INTEGER:
            tests.append(f"{v}|0 IS {v}")  # NULL, or an integer (200.0 stores 200)
        elif kind == REAL:
            # NULL or a finite number: inf - inf is NULL, 'x' - 'x' + 'x' is 0.
            # '=' for ts: NULL there is a missing ts, repaired the checked way.
            tests.append(f"({v}-{v})+{v} {'=' if column == 'ts' else 'IS'} {v}")
        else:
            # NULL or text (a number sorts before ''); bytes bound characters from
            # above. An infinity would be stored as the text 'Inf' (JSON: null).
            # (An OR of comparisons compiles to jumps: 0.12 us a row under a
            # coalesce() of ANDs, which computes each AND's value.)
            tests.append(f"({v} IS NULL OR {v}>='' AND "
                         f"octet_length({v})<={TEXT_MAX_CHARS[column]})")
        values.append(f"coalesce({v},{COLUMN_DEFAULTS[column]})"
                      if column in COLUMN_DEFAULTS else v)
    values[0] = f"CASE WHEN {' AND '.join(tests)} THEN {names[0]} END"
    row = "(" + ",".join("?" * len(LEDGER_COLUMNS)) + ")"
    return (
        f"WITH bound({','.join(names)}) AS (VALUES {','.join([row] * rows)}) "
        f"INSERT INTO {TABLE} ({','.join(LEDGER_COLUMNS)}) SELECT {','.join(values)} FROM bound"
    )


_INSERT_SQL = _insert_sql()
_CHECK_SQL = _check_sql()
# Rows per bound statement, largest first. 256 rows is ~15.6 KB of SQL: apsw's
# statement cache keeps statements up to 16 KB (``max_cacheable_bytes``), and a
# longer one is parsed again on every call (a 512-row INSERT: ~5 us a row). A full
# batch of 512 rows is 2 statements; n rows take at most n // 256 + 3 + 3 + 3 + 3.
_BOUND_ROWS = (256, 64, 16, 4, 1)
_BOUND_SQL = {rows: _bound_insert_sql(rows) for rows in _BOUND_ROWS}
_WIDTH = len(LEDGER_COLUMNS)
# Each key's spend per UTC day, from the rows just stored (rowid > ?), in the
# batch's transaction: a budget reads a few rows of this table instead of
# summing the requests table. "WHERE" before "ON CONFLICT" is required in an
# upsert from a SELECT (https://sqlite.org/lang_upsert.html, section 2.2).
_SPEND_SQL = (
    f"INSERT INTO {SPEND_TABLE} (api_key_id, day, cost_usd, requests, tokens) "
    f"SELECT api_key_id, date(ts, 'unixepoch'), total(cost_usd), count(*), "
    f"total(input_tokens) + total(output_tokens) FROM {TABLE} "
    f"WHERE rowid > ? AND api_key_id IS NOT NULL GROUP BY 1, 2 "
    f"ON CONFLICT (api_key_id, day) DO UPDATE SET "
    f"cost_usd = cost_usd + excluded.cost_usd, requests = requests + excluded.requests, "
    f"tokens = tokens + excluded.tokens"
)
_PROGRESS_SQL = f"SELECT replayed_bytes FROM {SPILL_TABLE} WHERE journal_id = ?"
_MARK_SQL = (
    f"INSERT INTO {SPILL_TABLE} (journal_id, replayed_bytes) VALUES (?, ?) "
    "ON CONFLICT (journal_id) DO UPDATE SET replayed_bytes = excluded.replayed_bytes"
)


class SQLiteBackend(retention.Retention):
    """A ``LedgerBackend`` storing rows in one SQLite file.

    ``readonly=True`` opens an existing file without creating, migrating or
    changing its journal mode; it is what the CLI uses.
    """

    dialect = SQLITE_DIALECT  # its SQL flavour (reads.py)

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
        # (st_dev, st_ino) of the file when opened: a file removed or replaced
        # under an open connection keeps taking writes that nobody will read.
        self._identity: tuple[int, int] | None = None
        # Set after a failure that may have left the connection unusable: the
        # next write reopens (and migrates) first.
        self._stale = False

    @property
    def location(self) -> str:
        """This file, for the accounts store (``Ledger.database``)."""
        return self.path

    # -- LedgerBackend ---------------------------------------------------------

    def open(self) -> None:
        if _version(apsw.sqlite_lib_version()) < MIN_SQLITE_VERSION:
            raise LedgerError(
                f"the ledger needs SQLite >= {'.'.join(map(str, MIN_SQLITE_VERSION))}"
                f" (JSONB); apsw uses {apsw.sqlite_lib_version()}"
            )
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
            raise _translate(exc, f"cannot open {self.path}") from exc
        try:
            self._configure(db)
            if not self.readonly:
                st = os.stat(self.path)
                self._identity = (st.st_dev, st.st_ino)
        except (apsw.Error, OSError) as exc:
            db.close()
            if isinstance(exc, OSError):
                raise LedgerUnavailable(f"cannot use {self.path}: {exc}") from exc
            raise _translate(exc, f"cannot use {self.path}") from exc
        self._db = db
        self._stale = False

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
                current = int(db.pragma("user_version"))
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

    def write_rows(
        self, payload: bytes, *, taken_at: float, mark: JournalMark | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
    ) -> WriteResult:
        db = self._writable()
        try:
            result = self._write(db, payload, taken_at, mark, rows)
        except apsw.Error as exc:
            self._rollback(db)
            if not isinstance(exc, _ROW_ERRORS):
                self._stale = True
            raise _translate(exc, f"cannot write to {self.path}") from exc
        except BaseException:
            self._rollback(db)
            raise
        self._check_file()
        return result

    def forget_journal(self, journal_id: str) -> None:
        db = self._writable()
        try:
            db.execute(f"DELETE FROM {SPILL_TABLE} WHERE journal_id = ?", (journal_id,))
        except apsw.Error as exc:
            self._stale = not isinstance(exc, _ROW_ERRORS)
            raise _translate(exc, f"cannot write to {self.path}") from exc

    def query(
        self,
        *,
        since: float | None = None,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        db = self._conn()
        try:
            present = self._columns(db)
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
        return as_rows(columns, records)

    def rows_after(self, rowid: int, *, since: float | None = None,
                   limit: int = 1000) -> tuple[int, list[dict[str, Any]]]:
        """Rows stored after ``rowid`` (and at or after ``since``), oldest first, at
        most ``limit``; with the rowid to ask after next time. ``rowid=-1`` starts
        after the newest row (only rows stored from now on)."""
        db = self._conn()
        try:
            present = self._columns(db)
            if rowid < 0:
                top: Any = db.execute(f"SELECT coalesce(max(rowid), 0) FROM {TABLE}").fetchall()
                return int(top[0][0]), []
            columns = [c for c in LEDGER_COLUMNS if c in present]
            where = "rowid > ?" + (" AND ts >= ?" if since is not None else "")
            params: list[Any] = [rowid] + ([since] if since is not None else []) + [limit]
            records = db.execute(f"SELECT rowid, {', '.join(columns)} FROM {TABLE} "
                                 f"WHERE {where} ORDER BY rowid LIMIT ?", params).fetchall()
        except apsw.Error as exc:
            raise LedgerError(f"cannot read {self.path}: {exc}") from exc
        if not records:
            return rowid, []
        last: Any = records[-1][0]
        return int(last), as_rows(columns, [r[1:] for r in records])

    def query_groups(self, by: str, *, since: float | None = None) -> list[dict[str, Any]]:
        db = self._conn()
        try:
            present = self._columns(db)
            tables = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except apsw.Error as exc:
            raise LedgerError(f"cannot read {self.path}: {exc}") from exc
        # One read transaction: the rollups and the rows they do not include agree.
        session = self.session()
        with session.snapshot():
            return retention.groups(session, self.dialect, by, since, present, tables)

    def scan(self, columns: Sequence[str], *, start: float,
             end: float) -> Iterator[tuple[Any, ...]]:
        db = self._conn()
        try:
            present = self._columns(db)
            missing = [c for c in columns if c not in LEDGER_COLUMNS or c not in present]
            if missing:
                raise LedgerError(f"{self.path} has no column(s) {', '.join(missing)}")
            # Over the ts index; the names were checked above, the bounds are bound.
            sql = f"SELECT {', '.join(columns)} FROM {TABLE} WHERE ts >= ? AND ts < ?"
            yield from db.execute(sql, (start, end))
        except apsw.Error as exc:
            raise LedgerError(f"cannot read {self.path}: {exc}") from exc

    def _columns(self, db: apsw.Connection) -> set[str]:
        """The columns of the requests table; ``LedgerError`` when there is none."""
        present = {row[1] for row in db.execute(f"PRAGMA table_info({TABLE})")}
        if not present:
            raise LedgerError(f"{self.path} is not a tokenway ledger (no {TABLE} table)")
        return present

    def close(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        try:
            if not self.readonly and not self._stale:
                # SQLite recommends `PRAGMA optimize` before closing a connection
                # that ran queries (https://sqlite.org/lang_analyze.html).
                db.pragma("optimize")
        except apsw.Error as exc:
            db.close()
            raise _translate(exc, f"cannot close {self.path}") from exc
        try:
            db.close()
        except apsw.Error as exc:
            raise _translate(exc, f"cannot close {self.path}") from exc

    # -- helpers ---------------------------------------------------------------

    def connection(self) -> apsw.Connection:
        """The open connection (tests look at its settings)."""
        return self._conn()

    def session(self) -> SQLiteSession:
        """The accounts store's SQL on this connection (its tables are in the same
        file)."""
        return SQLiteSession(self._conn(), self.path)

    def _conn(self) -> apsw.Connection:
        if self._db is None:
            raise LedgerError(f"{self.path} is not open")
        return self._db

    def _writable(self) -> apsw.Connection:
        """The connection, reopened (and migrated) first after a failure."""
        if self._db is not None and not self._stale:
            return self._db
        if self._db is not None:
            db, self._db = self._db, None
            try:
                db.close()
            except apsw.Error:
                pass  # the connection was already unusable
        try:
            self.open()
            self.migrate()
        except LedgerError as exc:
            self._stale = True
            if isinstance(exc, LedgerUnavailable):
                raise
            raise LedgerUnavailable(str(exc)) from exc
        return self._conn()

    def _write(
        self,
        db: apsw.Connection,
        payload: bytes,
        taken_at: float,
        mark: JournalMark | None,
        rows: Sequence[Sequence[Any]] | None,
    ) -> WriteResult:
        # IMMEDIATE: take the write lock now (waiting up to the busy timeout),
        # so that nothing below can fail for want of it half way.
        db.execute("BEGIN IMMEDIATE")
        if mark is not None:
            done = db.execute(_PROGRESS_SQL, (mark.journal_id,)).get
            if done is not None and done >= mark.end:
                db.execute("COMMIT")
                return WriteResult(0, 0, [], [])
        rejected: list[bytes] = []
        notes: list[str] = []
        coerced = 0
        stored = self._insert_bound(db, payload, rows)
        if stored is not None:
            # Every value passed the bound INSERT's tests: nothing to repair.
            before = db.last_insert_rowid() - stored
        else:
            try:
                db.execute(_INSERT_SQL, (payload,))
                stored = db.changes()
                # One INSERT ... SELECT numbers its rows max(rowid)+1 onwards
                # (https://sqlite.org/autoinc.html): they follow `before`.
                before = db.last_insert_rowid() - stored
            except _ROW_ERRORS:
                before = db.execute(f"SELECT coalesce(max(rowid), 0) FROM {TABLE}").get
                stored, rejected = self._insert_one_by_one(db, payload)
            coerced, notes = self._repair(db, before, taken_at)
        if stored:
            db.execute(_SPEND_SQL, (before,))
        if mark is not None:
            db.execute(_MARK_SQL, (mark.journal_id, mark.end))
        db.execute("COMMIT")
        return WriteResult(stored, coerced, notes, rejected)

    @staticmethod
    def _insert_bound(db: apsw.Connection, payload: bytes,
                      rows: Sequence[Sequence[Any]] | None) -> int | None:
        """Store the batch as bound values (``rows``, else ``payload`` read back by
        ``orjson.loads``); the rows stored, or None (nothing stored) when it must
        go the checked way."""
        # SQLite's substr() in the checked INSERT ends text at a NUL character;
        # orjson writes one as \u0000. A backslash is found by memchr; the
        # two-way search for the escape costs ~0.1 us a row, so it runs only
        # when the batch has an escape at all.
        if b"\\" in payload and b"\\u0000" in payload:
            return None
        try:
            if rows is None:
                # 0.6 us a row more than binding the rows the writer still has.
                rows = orjson.loads(payload)
                if type(rows) is not list or set(map(type, rows)) != {list}:
                    return None
            # A journal frame from older code may have shorter rows.
            if set(map(len, rows)) != {_WIDTH}:
                return None
        except (orjson.JSONDecodeError, TypeError):
            return None
        values = list(chain.from_iterable(rows))
        before = stored = start = 0
        try:
            for size in _BOUND_ROWS:
                sql, step = _BOUND_SQL[size], size * _WIDTH
                while len(values) - start >= step:
                    db.execute(sql, values[start:start + step])
                    if not stored:
                        before = db.last_insert_rowid() - size
                    stored += size
                    start += step
        except _BOUND_ERRORS:
            # A value the tests refused, an integer past 64 bits (orjson writes
            # up to 2**64 - 1; apsw cannot bind it), or a value apsw cannot bind
            # that orjson wrote as JSON (a datetime, a UUID, an Enum member).
            # The rows stored so far are the last ones (we hold the write lock):
            # a DELETE rather than a savepoint around every batch (two statements
            # fewer, each a GIL round trip).
            if stored:
                db.execute(f"DELETE FROM {TABLE} WHERE rowid > ?", (before,))
            return None
        return stored

    @staticmethod
    def _insert_one_by_one(db: apsw.Connection, payload: bytes) -> tuple[int, list[bytes]]:
        """Each row in its own savepoint: only the rows the database refuses fail."""
        stored = 0
        rejected: list[bytes] = []
        for row in orjson.loads(payload):
            db.execute("SAVEPOINT ledger_row")
            try:
                db.execute(_INSERT_SQL, (orjson.dumps([row]),))
                stored += 1
            except _ROW_ERRORS:
                db.execute("ROLLBACK TO ledger_row")
                rejected.append(orjson.dumps(row))
            db.execute("RELEASE ledger_row")
        return stored, rejected

    @staticmethod
    def _repair(db: apsw.Connection, before: int, taken_at: float) -> tuple[int, list[str]]:
        """Apply the value rules to the rows the check scan flags (rare)."""
        coerced = 0
        notes: list[str] = []
        for rowid, *stored in db.execute(_CHECK_SQL, (before,)).fetchall():
            changes, row_notes = repair_stored(stored, taken_at)
            if changes:
                sets = ", ".join(f"{column} = ?" for column in changes)
                db.execute(
                    f"UPDATE {TABLE} SET {sets} WHERE rowid = ?",
                    (*changes.values(), rowid),
                )
            coerced += len(row_notes)
            notes += row_notes
        return coerced, notes

    @staticmethod
    def _rollback(db: apsw.Connection) -> None:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except apsw.Error:
            pass  # SQLite rolled back already (full, I/O error) or cannot now

    def _check_file(self) -> None:
        """Raise when the file at ``path`` is no longer the one we write to."""
        try:
            st = os.stat(self.path)
            same = (st.st_dev, st.st_ino) == self._identity
        except OSError:
            same = False
        if not same:
            self._stale = True
            raise LedgerUnavailable(
                f"{self.path} was removed or replaced while open: reopening it"
            )

    def _configure(self, db: apsw.Connection) -> None:
        # apsw.bestpractice's connection settings, written out: importing that
        # module (and apsw.ext with it) costs the daemon 5.4 MiB of resident
        # memory for five calls.
        db.set_busy_timeout(self.busy_timeout_ms)
        # Double quotes are for identifiers only (https://sqlite.org/quirks.html#dblquote).
        db.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
        db.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)
        if self.readonly:
            return
        db.pragma("foreign_keys", "ON")
        try:
            if not db.readonly("main"):
                db.pragma("journal_mode", "wal")
                # Let the planner note where statistics would help
                # (https://sqlite.org/lang_analyze.html).
                db.pragma("optimize", 0x10002)
        except apsw.ReadOnlyError:
            pass  # a read-only file: writes will fail and go to the spill journal
        # Our throughput choice (not apsw's advice): under WAL, NORMAL fsyncs
        # only at checkpoints, so a commit costs no fsync. A process crash
        # loses nothing; a power loss may lose the last commits.
        db.pragma("synchronous", "NORMAL")


class SQLiteSession:
    """``backend.AccountsSession`` over one apsw connection."""

    def __init__(self, db: apsw.Connection, path: str) -> None:
        self.db = db
        self.path = path

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, args).fetchall()
        except apsw.Error as exc:
            raise LedgerError(f"cannot read accounts from {self.path}: {exc}") from exc

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            self.db.execute(sql, args)
        except apsw.Error as exc:
            raise LedgerError(f"cannot change accounts in {self.path}: {exc}") from exc
        return int(self.db.changes())

    @contextmanager
    def change(self) -> Iterator[None]:
        with self._transaction("BEGIN IMMEDIATE", "cannot change accounts in"):
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._transaction("BEGIN", "cannot read accounts from"):
            yield

    @contextmanager
    def _transaction(self, begin: str, what: str) -> Iterator[None]:
        db = self.db
        try:
            db.execute(begin)
        except apsw.Error as exc:
            raise LedgerError(f"{what} {self.path}: {exc}") from exc
        try:
            yield
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, apsw.Error):
                raise LedgerError(f"{what} {self.path}: {exc}") from exc
            raise


def _translate(exc: apsw.Error, what: str) -> LedgerError:
    """Our exception for an apsw one: row errors stay LedgerError, the rest are
    LedgerUnavailable (a retry later may succeed)."""
    cls = LedgerError if isinstance(exc, _ROW_ERRORS) else LedgerUnavailable
    return cls(f"{what}: {type(exc).__name__}: {exc}")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())
