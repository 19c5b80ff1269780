"""PostgreSQL ledger backend over psycopg 3 (the only module that imports psycopg).

Driver: psycopg 3, used synchronously. The ledger writes from its own thread
(``writer.py``), never from the event loop, so a blocking driver fits it as apsw
does, and the same object serves the ``gateway`` commands, which have no event
loop; asyncpg would need a loop of its own in that thread. psycopg releases the
GIL while it waits on the socket (libpq).

A batch is bound as ONE value, as in ``sqlite.py``: the JSON text
``values.encode_batch`` made, expanded by the server (``jsonb_array_elements``,
https://www.postgresql.org/docs/current/functions-json.html) inside one statement
that inserts the rows, adds each key's spend of the day (``key_spend``) from the
inserted rows, and hands back the rows its checks flag, in one round trip. So the
writer's CPU per row is one ``orjson.dumps`` and the bytes on the socket; the
transaction is BEGIN, that statement, COMMIT, whatever the batch size.

Column checks: the columns are typed, so a value of the wrong kind cannot be
stored and fixed afterwards as SQLite does. A live batch first goes through a
statement that casts every number (a cast that refuses a value aborts it) and
checks only the text columns (length, kind); when it aborts, the batch goes
through the checked statement, which flags any row with a value that is not
plainly right for its column (a string where a count belongs, text over its
length bound, an integer outside 64 bits, a missing ts) and inserts only the
others (``_write_sql``: 17 against 27 us of server CPU per row). Flagged rows
(rare) come back to Python, get the values SQLite would have stored
(``values.as_sqlite_stores`` then ``repair_stored``) and go in by the checked
statement, in the same transaction: both backends store the same values and
count the same repairs.

Exactly once: a replayed spill-journal frame is stored in one transaction with
its journal's progress (``spill_replays``), as in SQLite. In addition a replayed
row is skipped when a row with the same ``ts`` and ``request_id`` is stored: over
a network a COMMIT can succeed while its answer is lost, and the writer then
journals a batch that is already in the database.

Failures: connection errors, a server shutting down, a read-only server (a
standby after a failover), a full disk, a timed-out statement become
``LedgerUnavailable``, and the next write connects again; the writer spills to
the journal meanwhile. Every wait is bounded, by as much as SQLite's busy timeout:
``connect_timeout``, a ``statement_timeout`` and ``tcp_user_timeout``/keepalives
for a peer that vanished without a word.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg

import proxy.ledger.retention as retention
from proxy.ledger.backend import JournalMark, LedgerError, LedgerUnavailable, WriteResult
from proxy.ledger.reads import POSTGRES_DIALECT, as_rows, glob_regex
from proxy.ledger.schema import (
    ACCOUNTS_VERSION_TABLE,
    COLUMN_DEFAULTS,
    COLUMN_KINDS,
    INTEGER,
    LEDGER_COLUMNS,
    MIGRATIONS_TABLE,
    POSTGRES_MIGRATIONS,
    REAL,
    SPEND_TABLE,
    SPILL_TABLE,
    TABLE,
    TEXT,
    TEXT_MAX_CHARS,
    Migration,
)
from proxy.ledger.url import POSTGRESQL, StorageURL
from proxy.ledger.values import as_sqlite_stores, repair_stored

# The writer's waits are those of SQLite's busy timeout (sqlite.py,
# LEDGER_BUSY_TIMEOUT_MS): while the database fails the writer waits this long once
# per probe (every LEDGER_RETRY_S) and journals in between, and rows queue meanwhile:
# 2 s of requests stays under the writer's high-water mark up to ~16k requests/s.
# A batch of 512 rows takes the server ~15 ms (bench/RESULTS.md). libpq advises
# no connect_timeout under 2 s.
CONNECT_TIMEOUT_S = 2
STATEMENT_TIMEOUT_MS = 2_000
# Unacknowledged data for 3 s (a peer gone without a FIN or RST: a black-holed
# network): the kernel drops the connection (TCP_USER_TIMEOUT, libpq
# tcp_user_timeout), where keepalives alone would wait minutes.
TCP_USER_TIMEOUT_MS = 3_000
# The gateway commands: a human waits, a report over months of rows may take a while.
READER_CONNECT_TIMEOUT_S = 10
READER_STATEMENT_TIMEOUT_MS = 120_000
# A migration may rewrite a large table.
MIGRATION_STATEMENT_TIMEOUT = "10min"
# Rows handed over per round trip by ``scan`` (a server-side cursor).
SCAN_FETCH_ROWS = 5_000

# One number for pg_advisory_xact_lock: two gateways starting on a new database
# take turns migrating it. ("tokenway" as eight bytes, as a signed bigint.)
MIGRATION_LOCK_ID = int.from_bytes(b"tokenway", "big", signed=True)

# SQLSTATE classes after which a later retry may succeed: connection exceptions
# (08), insufficient resources such as a full disk (53), operator intervention
# such as a shutdown or a cancelled statement (57), system errors (58); and a
# read-only transaction (25006: a standby), a serialization failure (40001), a
# deadlock (40P01), a lock not available (55P03)
# (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_RETRY_CLASSES = ("08", "53", "57", "58")
_RETRY_STATES = ("25006", "40001", "40P01", "55P03")

_I64 = "BETWEEN -9223372036854775808 AND 9223372036854775807"


def _flag_sql(i: int, column: str) -> str:
    """True when element ``i`` of row ``e`` is not plainly right for ``column``."""
    kind = COLUMN_KINDS[column]
    x = f"(e->{i})"
    t = f"jsonb_typeof{x}"
    if column == "ts":
        return f"{t} IS DISTINCT FROM 'number'"
    if kind == INTEGER:
        # A JSON number is a numeric inside jsonb: no text to parse. Scale 0 and in
        # 64 bits (12.0 is flagged too, and stored as 12 by the repair). Comparing
        # numerics costs the server ~3.5 us per row less than a regular expression
        # on the text (bench/RESULTS.md).
        return (f"CASE {t} WHEN 'number' THEN NOT (scale({x}::numeric) = 0 AND "
                f"{x}::numeric {_I64}) WHEN 'boolean' THEN false WHEN 'null' THEN false "
                f"ELSE {x} IS NOT NULL END")
    if kind == REAL:
        return f"coalesce({t} NOT IN ('number', 'null'), false)"
    return (f"coalesce({t} NOT IN ('string', 'null'), false) "
            f"OR coalesce(length(e->>{i}) > {TEXT_MAX_CHARS[column]}, false)")


def _strict_sql(i: int, column: str) -> str:
    """Element ``i`` of row ``e`` as ``column``'s type when it is a JSON number (or a
    boolean, for an integer) that fits, else an error that aborts the statement
    (in the checked statement only plainly right values get here):
    a string in a number column is made unparseable on purpose (`` (text)``
    appended), since a cast would take text SQLite keeps as text ('NaN' as a
    float; '1_000' as an integer from PostgreSQL 16 on). Text columns are checked
    by their ``_flag_sql``."""
    kind = COLUMN_KINDS[column]
    x, v = f"(e->{i})", f"(e->>{i})"
    if kind == INTEGER:
        value = (f"CASE jsonb_typeof{x} WHEN 'boolean' THEN {v}::boolean::int "
                 f"WHEN 'string' THEN ({v} || ' (text)')::bigint ELSE {v}::bigint END")
    elif kind == REAL:
        value = (f"CASE jsonb_typeof{x} WHEN 'string' THEN ({v} || ' (text)')::float8 "
                 f"ELSE {v}::float8 END")
    else:
        value = v
    if column in COLUMN_DEFAULTS:
        value = f"coalesce({value}, {COLUMN_DEFAULTS[column]})"
    return value


def _write_sql(*, checked: bool) -> str:
    """Insert the unflagged rows of ``%(rows)s``, add their spend, return the flagged.

    ``checked``: every value is checked (``_flag_sql``) and only plainly right
    values reach a cast; with ``%(replay)s`` true, rows whose (ts, request_id) is
    stored already are skipped (the module docstring says why). Otherwise (live
    batches, first try) only the text columns are checked and the numbers are cast
    by ``_strict_sql``, which aborts the statement on a value the checks would
    flag: the batch is then sent again through the checked statement. The casts
    cost the server ~5 us per row where the checks cost ~16 (bench/RESULTS.md)."""
    columns = list(enumerate(LEDGER_COLUMNS))
    if checked:
        flags = " OR ".join(f"({_flag_sql(i, c)})" for i, c in columns)
        # CASE, not OR: the ts of a flagged row may not be a number.
        fresh = ("fresh AS (SELECT e, ord, bad FROM flagged f WHERE CASE WHEN bad OR NOT "
                 f"%(replay)s THEN true ELSE NOT EXISTS (SELECT 1 FROM {TABLE} r WHERE "
                 "r.ts = (f.e->>0)::float8 AND r.request_id IS NOT DISTINCT FROM f.e->>1) "
                 "END), ")
    else:
        flags = " OR ".join(f"({_flag_sql(i, c)})" for i, c in columns
                            if COLUMN_KINDS[c] == TEXT)
        fresh = "fresh AS (SELECT e, ord, bad FROM flagged), "
    values = ", ".join(_strict_sql(i, c) for i, c in columns)
    day = POSTGRES_DIALECT.day.format(ts="ts")
    return (
        "WITH src AS (SELECT e, ord FROM jsonb_array_elements(%(rows)s::jsonb) "
        "WITH ORDINALITY AS t(e, ord)), "
        f"flagged AS (SELECT e, ord, ({flags}) AS bad FROM src), "
        f"{fresh}"
        f"ins AS (INSERT INTO {TABLE} ({', '.join(LEDGER_COLUMNS)}) "
        f"SELECT {values} FROM fresh WHERE NOT bad ORDER BY ord "
        "RETURNING api_key_id, ts, cost_usd, input_tokens, output_tokens), "
        f"spend AS (INSERT INTO {SPEND_TABLE} (api_key_id, day, cost_usd, requests, tokens) "
        f"SELECT api_key_id, {day}, coalesce(sum(cost_usd), 0), count(*), "
        "coalesce(sum(input_tokens), 0) + coalesce(sum(output_tokens), 0) FROM ins "
        "WHERE api_key_id IS NOT NULL GROUP BY 1, 2 "
        f"ON CONFLICT (api_key_id, day) DO UPDATE SET "
        f"cost_usd = {SPEND_TABLE}.cost_usd + excluded.cost_usd, "
        f"requests = {SPEND_TABLE}.requests + excluded.requests, "
        f"tokens = {SPEND_TABLE}.tokens + excluded.tokens) "
        # First the count (ord 0), then the flagged rows in order.
        "SELECT 0, (SELECT count(*) FROM ins), NULL "
        "UNION ALL SELECT ord, NULL, e::text FROM fresh WHERE bad ORDER BY 1"
    )


_WRITE_SQL = _write_sql(checked=True)
_FAST_SQL = _write_sql(checked=False)
_PROGRESS_SQL = f"SELECT replayed_bytes FROM {SPILL_TABLE} WHERE journal_id = %s"
_MARK_SQL = (
    f"INSERT INTO {SPILL_TABLE} (journal_id, replayed_bytes) VALUES (%s, %s) "
    "ON CONFLICT (journal_id) DO UPDATE SET replayed_bytes = excluded.replayed_bytes"
)


class PostgresBackend(retention.Retention):
    """A ``LedgerBackend`` storing rows in a PostgreSQL database.

    ``dsn`` is the connection URI (it may hold a password); ``shown`` is how
    messages name the database (``url.StorageURL.shown``: the password masked).
    ``readonly=True`` neither creates nor migrates, and refuses a database without
    the ledger's tables; it is what the ``gateway`` commands use.
    """

    dialect = POSTGRES_DIALECT  # its SQL flavour (reads.py)

    def __init__(
        self,
        dsn: str,
        shown: str,
        *,
        readonly: bool = False,
        statement_timeout_ms: int | None = None,
        migrations: Sequence[Migration] = POSTGRES_MIGRATIONS,
        application_name: str = "tokenway",
    ) -> None:
        self.dsn = dsn
        self.path = shown  # what messages print, as SQLiteBackend.path
        self.readonly = readonly
        if statement_timeout_ms is None:
            statement_timeout_ms = (READER_STATEMENT_TIMEOUT_MS if readonly
                                    else STATEMENT_TIMEOUT_MS)
        self.statement_timeout_ms = statement_timeout_ms
        self.migrations = tuple(migrations)
        self.application_name = application_name
        self._db: psycopg.Connection[Any] | None = None
        # Set after a failure that may have left the connection unusable: the next
        # write connects (and migrates) again.
        self._stale = False

    @property
    def location(self) -> StorageURL:
        """This database, for the accounts store (``Ledger.database``)."""
        return StorageURL(POSTGRESQL, None, self.dsn, self.path)

    # -- LedgerBackend ---------------------------------------------------------

    def open(self) -> None:
        try:
            db = psycopg.connect(
                self.dsn, autocommit=True,
                connect_timeout=READER_CONNECT_TIMEOUT_S if self.readonly else CONNECT_TIMEOUT_S,
                application_name=self.application_name, keepalives=1,
                keepalives_idle=30, keepalives_interval=5, keepalives_count=3,
                tcp_user_timeout=TCP_USER_TIMEOUT_MS)
        except psycopg.Error as exc:
            raise LedgerUnavailable(f"cannot connect to {self.path}: {_message(exc)}") from None
        try:
            db.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")
            if self.readonly:
                db.execute("SET default_transaction_read_only = on")
                self._columns(db)  # a database without the ledger is refused now
        except psycopg.Error as exc:
            db.close()
            raise _translate(exc, f"cannot use {self.path}") from None
        except LedgerError:
            db.close()
            raise
        self._db = db
        self._stale = False

    def migrate(self, target_version: int | None = None) -> int:
        """Apply the missing steps in one transaction, recording each in
        ``schema_migrations``; a database newer than this code is refused."""
        db = self._conn()
        newest = self.migrations[-1].version if self.migrations else 0
        target = newest if target_version is None else target_version
        try:
            with db.transaction():
                db.execute(f"SET LOCAL statement_timeout = '{MIGRATION_STATEMENT_TIMEOUT}'")
                db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
                db.execute(f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
                    version integer PRIMARY KEY,
                    description text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())""")
                row = db.execute(f"SELECT coalesce(max(version), 0) FROM {MIGRATIONS_TABLE}"
                                 ).fetchone()
                current = int(row[0]) if row else 0
                if current > newest:
                    raise LedgerError(f"{self.path} has schema version {current}, newer "
                                      f"than this gateway's {newest}; upgrade tokenway")
                for step in self.migrations:
                    if current < step.version <= target:
                        for statement in step.statements:
                            db.execute(statement)
                        db.execute(f"INSERT INTO {MIGRATIONS_TABLE} (version, description) "
                                   "VALUES (%s, %s)", (step.version, step.description))
                        current = step.version
        except psycopg.Error as exc:
            self._stale = True
            raise _translate(exc, f"cannot migrate {self.path}") from None
        return current

    def write_rows(
        self, payload: bytes, *, taken_at: float, mark: JournalMark | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
    ) -> WriteResult:
        # ``rows`` unused: the server parses the JSON text (one value to send).
        db = self._writable()
        try:
            if mark is None and b"\\u0000" not in payload:
                try:
                    with db.transaction():
                        return self._write(db, payload, taken_at, None, fast=True)
                except psycopg.Error as exc:
                    if _unavailable(exc):
                        raise
                    # A cast refused a value: the checked statement finds and repairs it.
            try:
                with db.transaction():
                    return self._write(db, payload, taken_at, mark)
            except psycopg.Error as exc:
                if _unavailable(exc):
                    raise
                # A refusal tied to the rows (a constraint added by hand, say):
                # again, each row on its own, so only the refused ones fail.
                with db.transaction():
                    return self._write_one_by_one(db, payload, taken_at, mark)
        except psycopg.Error as exc:
            if _unavailable(exc) or db.closed:
                self._stale = True
            raise _translate(exc, f"cannot write to {self.path}") from None

    def forget_journal(self, journal_id: str) -> None:
        db = self._writable()
        try:
            db.execute(f"DELETE FROM {SPILL_TABLE} WHERE journal_id = %s", (journal_id,))
        except psycopg.Error as exc:
            self._stale = _unavailable(exc) or db.closed
            raise _translate(exc, f"cannot write to {self.path}") from None

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
                where.append("ts >= %s")
                params.append(since)
            if model is not None:
                if any(c in model for c in "*?["):
                    op, model = "~", glob_regex(model)
                else:
                    op = "="
                where.append(f"(model {op} %s OR served_model {op} %s)")
                params += [model, model]
            params.append(limit)  # LIMIT NULL: no limit
            select = ", ".join(columns)
            # Newest `limit` rows, handed back oldest first (a log reads downwards).
            sql = (f"SELECT {select} FROM (SELECT id, {select} FROM {TABLE}"
                   f"{' WHERE ' + ' AND '.join(where) if where else ''}"
                   " ORDER BY ts DESC, id DESC LIMIT %s) AS newest ORDER BY ts, id")
            records = db.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise _translate(exc, f"cannot read {self.path}") from None
        return as_rows(columns, records)

    def rows_after(self, rowid: int, *, since: float | None = None,
                   limit: int = 1000) -> tuple[int, list[dict[str, Any]]]:
        """As ``SQLiteBackend.rows_after``, over ``requests.id``. Ids are handed out
        when rows are inserted, not when they commit, so with several gateways a
        row may commit after one with a higher id; ``gateway tail`` shows rows as
        they finish, and such a row is the one it can miss."""
        db = self._conn()
        try:
            present = self._columns(db)
            if rowid < 0:
                top = db.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}").fetchone()
                return (int(top[0]) if top else 0), []
            columns = [c for c in LEDGER_COLUMNS if c in present]
            where = "id > %s" + (" AND ts >= %s" if since is not None else "")
            params: list[Any] = [rowid] + ([since] if since is not None else []) + [limit]
            records = db.execute(f"SELECT id, {', '.join(columns)} FROM {TABLE} "
                                 f"WHERE {where} ORDER BY id LIMIT %s", params).fetchall()
        except psycopg.Error as exc:
            raise _translate(exc, f"cannot read {self.path}") from None
        if not records:
            return rowid, []
        return int(records[-1][0]), as_rows(columns, [r[1:] for r in records])

    def query_groups(self, by: str, *, since: float | None = None) -> list[dict[str, Any]]:
        db = self._conn()
        try:
            present = self._columns(db)
            tables = {r[0] for r in db.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()")}
        except psycopg.Error as exc:
            raise _translate(exc, f"cannot read {self.path}") from None
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
            # A server-side cursor: the rows come SCAN_FETCH_ROWS at a time, never
            # all at once (it lives inside a transaction).
            with db.transaction(), db.cursor(name="tokenway_scan") as cur:
                cur.itersize = SCAN_FETCH_ROWS
                cur.execute(f"SELECT {', '.join(columns)} FROM {TABLE} "
                            "WHERE ts >= %s AND ts < %s", (start, end))
                yield from cur
        except psycopg.Error as exc:
            raise _translate(exc, f"cannot read {self.path}") from None

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()  # psycopg's close does not raise for a broken connection

    # -- helpers ---------------------------------------------------------------

    def session(self) -> PostgresSession:
        """The accounts store's SQL on this connection (its tables are in the same
        database)."""
        return PostgresSession(self._conn(), self.path)

    def _conn(self) -> psycopg.Connection[Any]:
        if self._db is None:
            raise LedgerError(f"{self.path} is not open")
        return self._db

    def _writable(self) -> psycopg.Connection[Any]:
        """The connection, opened (and migrated) again after a failure."""
        if self._db is not None and not self._stale and not self._db.closed:
            return self._db
        self.close()
        try:
            self.open()
            self.migrate()
        except LedgerError as exc:
            self._stale = True
            if isinstance(exc, LedgerUnavailable):
                raise
            raise LedgerUnavailable(str(exc)) from exc
        return self._conn()

    def _columns(self, db: psycopg.Connection[Any]) -> set[str]:
        """The columns of the requests table; ``LedgerError`` when there is none."""
        present = {r[0] for r in db.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s", (TABLE,))}
        if not present:
            raise LedgerError(f"{self.path} is not a tokenway ledger (no {TABLE} table)")
        return present

    def _write(self, db: psycopg.Connection[Any], payload: bytes, taken_at: float,
               mark: JournalMark | None, replay: bool = False,
               fast: bool = False) -> WriteResult:
        """``replay``: skip rows stored already (a journal frame, also when it is
        retried row by row without its mark). ``fast``: the statement that casts
        without checking numbers first (``_write_sql``)."""
        replay = replay or mark is not None
        if mark is not None:
            done = db.execute(_PROGRESS_SQL, (mark.journal_id,)).fetchone()
            if done is not None and done[0] >= mark.end:
                return WriteResult(0, 0, [], [])
        coerced, notes = 0, list[str]()
        if b"\\u0000" in payload:
            payload, coerced, notes = _without_nul(payload)
        stored, flagged = self._insert(db, payload, replay, _FAST_SQL if fast else _WRITE_SQL)
        if flagged:
            repaired, fixes, more = _repair(flagged, taken_at)
            coerced, notes = coerced + fixes, notes + more
            again, still = self._insert(db, repaired, replay)
            if still:  # the repairs always pass the checks; a bug if not
                raise LedgerError(f"{len(still)} repaired row(s) failed the checks again")
            stored += again
        if mark is not None:
            db.execute(_MARK_SQL, (mark.journal_id, mark.end))
        return WriteResult(stored, coerced, notes, [])

    def _write_one_by_one(self, db: psycopg.Connection[Any], payload: bytes,
                          taken_at: float, mark: JournalMark | None) -> WriteResult:
        """Each row in its own savepoint: only the rows the database refuses fail."""
        stored = coerced = 0
        notes: list[str] = []
        rejected: list[bytes] = []
        for row in orjson.loads(payload):
            try:
                with db.transaction():
                    result = self._write(db, orjson.dumps([row]), taken_at, None,
                                         replay=mark is not None)
            except psycopg.Error as exc:
                if _unavailable(exc):
                    raise
                rejected.append(orjson.dumps(row))
                continue
            stored += result.rows
            coerced += result.coerced
            notes += result.notes
        if mark is not None:
            db.execute(_MARK_SQL, (mark.journal_id, mark.end))
        return WriteResult(stored, coerced, notes, rejected)

    @staticmethod
    def _insert(db: psycopg.Connection[Any], payload: bytes, replay: bool,
                statement: str = _WRITE_SQL) -> tuple[int, list[str]]:
        """Rows inserted, and the flagged rows (JSON texts) left out."""
        records = db.execute(statement, {"rows": payload.decode("utf-8"),
                                         "replay": replay}).fetchall()
        return int(records[0][1]), [r[2] for r in records[1:]]


class PostgresSession:
    """``backend.AccountsSession`` over one psycopg connection (autocommit between
    transactions, so a poll of the change counter is one round trip)."""

    def __init__(self, db: psycopg.Connection[Any], shown: str) -> None:
        self.db = db
        self.path = shown

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql.replace("?", "%s"), tuple(args)).fetchall()
        except psycopg.Error as exc:
            raise _translate(exc, f"cannot read accounts from {self.path}") from None

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            return self.db.execute(sql.replace("?", "%s"), tuple(args)).rowcount
        except psycopg.Error as exc:
            raise _translate(exc, f"cannot change accounts in {self.path}") from None

    @contextmanager
    def change(self) -> Iterator[None]:
        # The counter's row is locked first: changes from other gateways and
        # commands run one at a time, as SQLite's BEGIN IMMEDIATE makes them.
        with self._transaction(f"SELECT version FROM {ACCOUNTS_VERSION_TABLE} FOR UPDATE",
                               "cannot change accounts in"):
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._transaction("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                               "cannot read accounts from"):
            yield

    @contextmanager
    def _transaction(self, first: str, what: str) -> Iterator[None]:
        try:
            with self.db.transaction():
                self.db.execute(first)
                yield
        except psycopg.Error as exc:
            raise _translate(exc, f"{what} {self.path}") from None


def _repair(flagged: list[str], taken_at: float) -> tuple[bytes, int, list[str]]:
    """The flagged rows with the values SQLite would keep, and the repairs counted."""
    rows: list[list[Any]] = []
    coerced = 0
    notes: list[str] = []
    for text in flagged:
        stored = as_sqlite_stores(orjson.loads(text))
        changes, row_notes = repair_stored(stored, taken_at)
        for column, value in changes.items():
            stored[LEDGER_COLUMNS.index(column)] = value
        coerced += len(row_notes)
        notes += row_notes
        rows.append(stored)
    return orjson.dumps(rows), coerced, notes


def _without_nul(payload: bytes) -> tuple[bytes, int, list[str]]:
    """PostgreSQL text cannot hold U+0000 (https://www.postgresql.org/docs/current/
    datatype-character.html): each becomes U+FFFD, counted once per value."""
    rows = orjson.loads(payload)
    coerced = 0
    notes: list[str] = []
    for row in rows:
        for i, value in enumerate(row):
            if isinstance(value, str) and "\x00" in value:
                row[i] = value.replace("\x00", "\ufffd")
                coerced += 1
                rid = row[1] if isinstance(row[1], str) else "?"
                notes.append(f"row {rid}: {LEDGER_COLUMNS[i]} had NUL characters")
    return orjson.dumps(rows), coerced, notes


def _unavailable(exc: psycopg.Error) -> bool:
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    state = exc.sqlstate or ""
    return state[:2] in _RETRY_CLASSES or state in _RETRY_STATES


def _translate(exc: psycopg.Error, what: str) -> LedgerError:
    cls = LedgerUnavailable if _unavailable(exc) else LedgerError
    return cls(f"{what}: {type(exc).__name__}: {_message(exc)}")


def _message(exc: psycopg.Error) -> str:
    """The server's or libpq's message, first line: neither repeats a password."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
