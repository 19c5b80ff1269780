"""Ledger writer and SQLite backend, on real database files in tmp_path.

Synchronisation is by events and by the writer's own rules (rows queued before
start() are taken batch_rows at a time; close() flushes everything), never by
sleeping or by measuring elapsed time.
"""

from __future__ import annotations

import ast
import datetime
import enum
import pathlib
import threading
import uuid
from typing import Any

import apsw
import pytest

from proxy.ledger import (
    DEFAULT_DB_PATH,
    LEDGER_COLUMNS,
    SCHEMA_VERSION,
    DictRecord,
    Ledger,
    LedgerError,
    SQLiteBackend,
    query_rows,
)
from proxy.ledger.schema import SPEND_TABLE, SPILL_TABLE, SQLITE_MIGRATIONS, TABLE
from proxy.ledger.values import encode_batch
from tests.proxy.ledger_rows import (
    WAIT_S,
    BlockingBackend,
    CountingBackend,
    make_rec,
    make_row,
)


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "ledger.db")


def count_rows(path: str) -> int:
    return len(query_rows(path))


# -- round trip ------------------------------------------------------------------


def test_rows_round_trip_with_every_column(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.start()
    sent = [make_row(i) for i in range(3)]
    for row in sent:
        ledger.record(DictRecord(row))
    assert ledger.close() is True

    got = query_rows(db_path)
    assert got == sent  # oldest first; stream comes back as bool
    assert set(got[0]) == set(LEDGER_COLUMNS)
    assert ledger.stats() == {
        "state": "ok",
        "queued": 0,
        "written": 3,
        "replayed": 0,
        "spilled": 0,
        "journal_rows": 0,
        "journal_bytes": 0,
        "coerced": 0,
        "dropped": 0,
        "batches": 1,
        "backpressure_events": 0,
        "last_error": None,
    }


class SlottedRecord:
    """The shape the gateway's request record has: slots and as_row()."""

    __slots__ = ("ts", "request_id", "model", "called_on")

    def __init__(self, ts: float, request_id: str, model: str) -> None:
        self.ts, self.request_id, self.model = ts, request_id, model
        self.called_on: str | None = None

    def as_row(self) -> tuple[Any, ...]:
        self.called_on = threading.current_thread().name
        values = dict.fromkeys(LEDGER_COLUMNS)
        values.update(ts=self.ts, request_id=self.request_id, model=self.model)
        return tuple(values.values())


def test_record_takes_any_object_with_as_row_and_calls_it_off_the_loop(
    db_path: str,
) -> None:
    ledger = Ledger(db_path)
    ledger.start()
    recs = [SlottedRecord(10.0 + i, f"s-{i}", "m") for i in range(5)]
    for rec in recs:
        ledger.record(rec)
        assert rec.called_on is None  # record() only queues it
    assert ledger.close()
    assert {rec.called_on for rec in recs} == {"tokenway-ledger"}
    assert [r["request_id"] for r in query_rows(db_path)] == [f"s-{i}" for i in range(5)]


def test_missing_keys_are_null_or_column_default(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.start()
    ledger.record(DictRecord({"ts": 1.0, "model": "m", "unknown_key": "ignored"}))
    ledger.record(DictRecord({"ts": 2.0, "stream": None, "attempts": None}))
    ledger.close()

    first, second = query_rows(db_path)
    assert first["model"] == "m"
    assert first["input_tokens"] is None  # unknown, not zero
    assert first["error_kind"] is None
    assert first["stream"] is False and first["attempts"] == 1
    assert second["stream"] is False and second["attempts"] == 1
    assert ledger.stats()["coerced"] == 0


def test_default_path_constant() -> None:
    assert DEFAULT_DB_PATH == "tokenway.db"
    assert LEDGER_COLUMNS[0] == "ts"
    assert len(set(LEDGER_COLUMNS)) == len(LEDGER_COLUMNS)


# -- batching --------------------------------------------------------------------


def test_many_rows_go_in_few_transactions(db_path: str) -> None:
    # Rows queued before start() are all waiting when the writer begins, so it
    # takes them batch_rows at a time: 2000 rows -> 512 + 512 + 512 + 464.
    backend = CountingBackend(db_path)
    ledger = Ledger(db_path, batch_rows=512, backend=backend)
    for i in range(2000):
        ledger.record(make_rec(i))
    ledger.start()
    assert ledger.close()

    assert backend.batch_sizes == [512, 512, 512, 464]
    assert ledger.stats()["batches"] == 4
    assert ledger.written == 2000
    assert count_rows(db_path) == 2000


def test_rows_arriving_while_running_are_batched(db_path: str) -> None:
    # The flush timer is far longer than the test: a batch is cut only when it
    # is full or by close(), so transactions hold batch_rows rows each.
    backend = CountingBackend(db_path)
    ledger = Ledger(db_path, batch_rows=100, flush_ms=600_000, backend=backend)
    ledger.start()
    for i in range(1000):
        ledger.record(make_rec(i))
    assert ledger.close()

    assert sum(backend.batch_sizes) == 1000
    assert max(backend.batch_sizes) <= 100
    assert len(backend.batch_sizes) < 100  # far fewer transactions than rows


def test_flush_timer_writes_a_partial_batch(db_path: str) -> None:
    backend = CountingBackend(db_path)
    ledger = Ledger(db_path, batch_rows=512, flush_ms=1, backend=backend)
    ledger.start()
    ledger.record(make_rec(0))
    assert backend.wrote.wait(WAIT_S)  # written without close() or a full batch
    assert backend.batch_sizes == [1]
    assert count_rows(db_path) == 1
    ledger.close()


class StatementCounter(SQLiteBackend):
    """Counts the SQL statements each write runs (apsw's exec tracer)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.statements: list[int] = []

    def write_rows(self, payload: bytes, **kwargs: Any) -> Any:
        db = self._writable()
        count = [0]

        def tracer(cursor: Any, sql: str, bindings: Any) -> bool:
            count[0] += 1
            return True

        db.exec_trace = tracer
        try:
            return super().write_rows(payload, **kwargs)
        finally:
            db.exec_trace = None
            self.statements.append(count[0])


def test_a_batch_runs_a_bounded_number_of_statements(db_path: str) -> None:
    # Each statement is one GIL release and re-take around SQLite; the rows of
    # a batch are bound 256 to a statement (then 64, 16, 4, 1), so a batch runs
    # at most 12 statements more than its 256-row blocks, never one per row.
    backend = StatementCounter(db_path)
    ledger = Ledger(db_path, batch_rows=600, backend=backend)
    for i in range(600 + 3):
        ledger.record(make_rec(i))
    ledger.start()
    assert ledger.close()
    assert ledger.written == 603
    big, small = backend.statements
    # BEGIN, the INSERTs, spend per key, COMMIT; 600 rows are
    # 2 x 256 + 64 + 16 + 2 x 4, 3 rows are 3 x 1.
    assert (big, small) == (3 + 6, 3 + 3)


def test_an_unusual_value_sends_its_batch_the_checked_way(db_path: str) -> None:
    # The bound INSERT refuses the batch; the JSON INSERT and the check scan
    # store it: a fixed number of statements again, plus one UPDATE per repair.
    backend = StatementCounter(db_path)
    ledger = Ledger(db_path, batch_rows=600, backend=backend)
    for i in range(600):
        ledger.record(make_rec(i, input_tokens="many" if i == 300 else i))
    ledger.start()
    assert ledger.close()
    assert (ledger.written, ledger.stats()["coerced"]) == (600, 1)
    # BEGIN, 2 bound INSERTs (the second fails), the DELETE of the first one's
    # rows, the JSON INSERT, the check scan, one UPDATE, spend per key, COMMIT.
    assert backend.statements == [9]
    rows = query_rows(db_path)
    assert [r["input_tokens"] for r in rows] == [None if i == 300 else i for i in range(600)]


# -- waiting for the writer --------------------------------------------------------


class GatedBackend(CountingBackend):
    """Each write_rows waits for its own pass from the test."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.entered = threading.Semaphore(0)
        self.passes = threading.Semaphore(0)

    def write_rows(self, payload: bytes, **kwargs: Any) -> Any:
        self.entered.release()
        assert self.passes.acquire(timeout=WAIT_S)
        return super().write_rows(payload, **kwargs)


def test_wait_idle_returns_once_the_last_transaction_commits(db_path: str) -> None:
    backend = GatedBackend(db_path)
    ledger = Ledger(db_path, batch_rows=2, flush_ms=0, backend=backend)
    for i in range(3):  # queued before start(): taken as [0, 1] then [2]
        ledger.record(make_rec(i))
    ledger.start()
    assert backend.entered.acquire(timeout=WAIT_S)  # [0, 1] inside its transaction
    assert not ledger.wait_idle(0.05)
    backend.passes.release()
    assert backend.entered.acquire(timeout=WAIT_S)  # [2]: off the queue, not committed
    assert ledger.queued == 1
    assert not ledger.wait_idle(0.05)
    backend.passes.release()
    assert ledger.wait_idle(WAIT_S)
    assert ledger.queued == 0 and count_rows(db_path) == 3
    assert ledger.close()


def test_wait_idle_without_a_writer(db_path: str) -> None:
    ledger = Ledger(db_path)
    assert ledger.wait_idle(0)  # nothing recorded
    ledger.record(make_rec(0))
    assert not ledger.wait_idle(0.01)  # nothing will store it
    assert ledger.close()  # ...so close() counts it as dropped
    assert ledger.wait_idle(0) and ledger.dropped == 1


# -- shutdown --------------------------------------------------------------------


@pytest.mark.parametrize("flush_ms", [0, 50, 600_000])
def test_close_flushes_rows_recorded_just_before(db_path: str, flush_ms: int) -> None:
    ledger = Ledger(db_path, batch_rows=64, flush_ms=flush_ms)
    ledger.start()
    for i in range(1000):
        ledger.record(make_rec(i))
    assert ledger.close() is True
    assert count_rows(db_path) == 1000
    assert ledger.stats()["queued"] == 0


def test_record_after_close_is_dropped_and_close_is_idempotent(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.start()
    ledger.record(make_rec(0))
    assert ledger.close()
    ledger.record(make_rec(1))
    assert ledger.dropped == 1
    assert ledger.queued == 0  # not kept in memory either
    assert ledger.close()
    assert count_rows(db_path) == 1


def test_rows_before_start_are_written_after_start(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.record(make_rec(0))
    ledger.start()
    ledger.close()
    assert count_rows(db_path) == 1


def test_close_without_start_counts_queued_rows_as_dropped(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.record(make_rec(0))
    ledger.record(make_rec(1))
    assert ledger.queued == 2
    assert ledger.close()
    assert ledger.stats()["dropped"] == 2
    assert ledger.queued == 0


def test_start_fails_loudly_on_unusable_path(tmp_path: pathlib.Path) -> None:
    ledger = Ledger(str(tmp_path / "no-such-dir" / "ledger.db"))
    with pytest.raises(LedgerError):
        ledger.start()
    ledger.record(make_rec(0))
    assert ledger.dropped == 1
    assert ledger.close()


def test_a_slow_writer_never_blocks_record(db_path: str) -> None:
    backend = BlockingBackend(db_path)
    ledger = Ledger(db_path, batch_rows=2, flush_ms=0, backend=backend)
    ledger.start()
    ledger.record(make_rec(0))
    assert backend.entered.wait(WAIT_S)  # the writer is stuck inside a write

    # Had record() blocked, this loop would never finish: the writer cannot
    # drain until `release` is set below.
    for i in range(1, 11):
        ledger.record(make_rec(i))
    stats = ledger.stats()
    assert stats["queued"] == 11  # 10 waiting + 1 in the stuck transaction
    assert stats["dropped"] == 0 and stats["written"] == 0

    backend.release.set()
    assert ledger.close()
    assert ledger.written == 11
    assert [r["request_id"] for r in query_rows(db_path)] == [
        f"req-{i}" for i in range(11)
    ]


# -- value checks ------------------------------------------------------------------


def test_one_bad_value_costs_only_its_column(db_path: str) -> None:
    # A provider's usage with a list where a count belongs used to fail the
    # whole batch twice and drop every other client's rows with it.
    ledger = Ledger(db_path, batch_rows=512)
    for i in range(20):
        ledger.record(make_rec(i, input_tokens=[1, 2] if i == 7 else 100 + i))
    ledger.start()
    assert ledger.close()

    rows = query_rows(db_path)
    assert [r["request_id"] for r in rows] == [f"req-{i}" for i in range(20)]
    assert rows[7]["input_tokens"] is None
    assert rows[7]["output_tokens"] == 17  # the rest of that row is kept
    assert [r["input_tokens"] for r in rows if r["request_id"] != "req-7"] == [
        100 + i for i in range(20) if i != 7
    ]
    stats = ledger.stats()
    assert (stats["written"], stats["coerced"], stats["dropped"]) == (20, 1, 0)
    assert "req-7" in stats["last_error"] and "input_tokens" in stats["last_error"]


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


# (column, value given, value stored, counted as coerced)
VALUE_CASES = [
    ("input_tokens", 12, 12, False),
    ("input_tokens", True, 1, False),
    ("input_tokens", "12", 12, False),  # SQLite's INTEGER affinity converts it
    ("input_tokens", 12.5, None, True),
    ("input_tokens", "many", None, True),
    ("input_tokens", 2**63, None, True),  # orjson writes it; SQLite reads a real
    ("input_tokens", 2**64 + 1, None, True),  # orjson refuses it: slow path
    ("input_tokens", -(2**63), -(2**63), False),
    ("input_tokens", {"a": 1}, None, True),
    ("input_tokens", Opaque(), None, True),
    ("latency_ms", 5, 5.0, False),
    ("latency_ms", float("nan"), None, False),  # JSON has no NaN: stored NULL
    ("latency_ms", float("inf"), None, False),
    ("latency_ms", "slow", None, True),
    ("model", "x" * 256, "x" * 256, False),
    ("model", "y" * 5000, "y" * 256, True),
    ("model", "é" * 300, "é" * 256, True),  # characters, not bytes
    ("model", 5, "5", False),
    ("model", ["gpt"], None, True),
    ("model", "a[b]{c}", "a[b]{c}", False),  # brackets in text: slow path
    ("model", "\ud800x", "\ufffdx", True),  # a lone surrogate
    ("status", b"200", None, True),
    # NOT NULL columns get their default, as for a None (they used to be repaired
    # to NULL, which failed the batch, and the writer kept retrying it).
    ("stream", "yes", False, True),  # read back as a bool
    ("attempts", 2.5, 1, True),
    ("attempts", None, 1, False),
]


@pytest.mark.parametrize(("column", "given", "stored", "counted"), VALUE_CASES,
                         ids=[f"{c[0]}={c[1]!r:.20}" for c in VALUE_CASES])
def test_value_rules(db_path: str, column: str, given: Any, stored: Any,
                     counted: bool) -> None:
    ledger = Ledger(db_path)
    ledger.record(make_rec(0))
    ledger.record(make_rec(1, **{column: given}))
    ledger.record(make_rec(2))
    ledger.start()
    assert ledger.close()
    rows = query_rows(db_path)
    assert [r["request_id"] for r in rows] == ["req-0", "req-1", "req-2"]
    got = rows[1][column]
    assert got == stored and type(got) is type(stored)
    assert ledger.stats()["coerced"] == int(counted)
    assert rows[0] == make_row(0) and rows[2] == make_row(2)


def test_missing_or_bad_ts_becomes_the_time_taken_off_the_queue(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.record(make_rec(0, ts=None))
    ledger.record(make_rec(1, ts="yesterday"))
    ledger.record(make_rec(2))
    ledger.start()
    assert ledger.close()
    rows = query_rows(db_path)
    assert len(rows) == 3
    by_id = {r["request_id"]: r for r in rows}
    assert by_id["req-2"]["ts"] == make_row(2)["ts"]
    for rid in ("req-0", "req-1"):
        assert type(by_id[rid]["ts"]) is float and by_id[rid]["ts"] > 1_700_000_100
    assert ledger.stats()["coerced"] == 2


def test_the_fast_and_the_slow_path_store_the_same(tmp_path: pathlib.Path) -> None:
    # The same awkward rows, once in batches of good rows (SQLite checks them
    # in C) and once next to a row that sends the batch through flatten_row.
    awkward = [
        make_row(1, input_tokens="12", latency_ms=3, model="m" * 300),
        make_row(2, status=2.5, provider=7, error_kind=None, ttfb_ms="x"),
        make_row(3, ts=None, stream=True, bytes_in=2**63),
    ]
    stored = []
    coerced = []
    for name, extra in (("fast", []), ("slow", [make_row(9, model=["forces slow"])])):
        path = str(tmp_path / f"{name}.db")
        ledger = Ledger(path)
        for row in awkward + extra:
            ledger.record(DictRecord(row))
        ledger.start()
        assert ledger.close()
        rows = [r for r in query_rows(path) if r["request_id"] != "req-9"]
        for r in rows:
            if r["request_id"] == "req-3":
                r["ts"] = "replaced"
        stored.append(sorted(rows, key=lambda r: r["request_id"]))
        coerced.append(ledger.stats()["coerced"] - len(extra))
    assert stored[0] == stored[1]
    # model cut, status 2.5, ttfb 'x', ts missing, bytes_in 2**63 (provider=7 -> '7')
    assert coerced[0] == coerced[1] == 5


class CheckedOnly(SQLiteBackend):
    """Stores every batch the checked way (the JSON INSERT, the check scan and
    the repairs), as every batch was stored before the bound INSERT."""

    @staticmethod
    def _insert_bound(db: apsw.Connection, payload: bytes, rows: Any) -> int | None:
        return None


class BoundCounter(SQLiteBackend):
    """Counts the batches the bound INSERT stored."""

    bound = 0

    def _insert_bound(self, db: apsw.Connection, payload: bytes, rows: Any) -> int | None:
        stored = super()._insert_bound(db, payload, rows)
        self.bound += stored is not None
        return stored


class Text(str):
    pass


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


# Values at and across every edge of the bound INSERT's tests and of the checks.
EDGE_VALUES: list[Any] = [
    None, 0, 1, -1, True, False, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64 + 1,
    0.0, -0.0, 12.5, 200.0, 1e16, 2.5e18, 9.3e18, 2.0**63, 1e300, -1e-300, 1_700_000_000.123456,
    float("nan"), float("inf"), float("-inf"),
    "", "12", " 12 ", "12.0", "1e3", "-7", "3.5", "0x10", "abc", "Inf", "null",
    "x" * 16, "x" * 17, "x" * 64, "x" * 65, "x" * 128, "x" * 129, "x" * 256, "x" * 257,
    "é" * 100, "é" * 200, "é" * 300, "a\x00b", 'q"uote\\', "line\n", "\\u0000",
    [1], {"a": 1}, b"bytes", bytearray(b"12"), "\ud800x", Opaque(), Text("sub"), Color.RED,
    Level.HIGH, datetime.datetime(2026, 12, 7, 18, 0), uuid.UUID(int=7),
]


@pytest.mark.parametrize("given", ["rows", "payload"])
def test_the_bound_and_the_checked_way_store_the_same(tmp_path: pathlib.Path,
                                                      given: str) -> None:
    # Each value in each column, as a batch of its own: stored by the bound INSERT
    # when its tests pass it, else the checked way; and always the checked way.
    # The rows, the repairs counted and their notes must be the same, whether the
    # writer hands over the rows (a live batch) or only the JSON (a replay).
    bound = BoundCounter(str(tmp_path / "bound.db"))
    checked = CheckedOnly(str(tmp_path / "checked.db"))
    for backend in (bound, checked):
        backend.open()
        backend.migrate()
    taken_at = 1_800_000_000.5
    batches = 0
    for column in LEDGER_COLUMNS:
        for value in EDGE_VALUES:
            encoded = encode_batch([make_rec(1, **{column: value}), make_rec(2)])
            rows = encoded.row_values if given == "rows" else None
            results = [b.write_rows(encoded.payload, taken_at=taken_at, rows=rows)
                       for b in (bound, checked)]
            assert results[0] == results[1], (column, value)
            assert results[0].rows == 2 and not results[0].rejected
            batches += 1
    select = f"SELECT {', '.join(LEDGER_COLUMNS)} FROM {TABLE} ORDER BY rowid"
    stored = [[repr(row) for row in b.connection().execute(select)] for b in (bound, checked)]
    assert len(stored[0]) == 2 * batches
    assert stored[0] == stored[1]
    # Both ways were taken (about 800 of 1701 batches bound).
    assert batches // 3 < bound.bound < batches
    for backend in (bound, checked):
        backend.close()


def test_the_check_scan_looks_at_new_rows_only(db_path: str) -> None:
    # A row stored by hand with a text count: the writer's repairs are for its
    # own rows, not for what is already in the table.
    Ledger(db_path).start()
    db = apsw.Connection(db_path)
    db.execute(f"INSERT INTO {TABLE} (ts, request_id, input_tokens) VALUES (1.0, 'old', 'n/a')")
    db.close()
    ledger = Ledger(db_path)
    ledger.start()
    for i in range(3):
        ledger.record(make_rec(i, input_tokens="bad" if i == 1 else 5))
    assert ledger.close()
    rows = {r["request_id"]: r["input_tokens"] for r in query_rows(db_path)}
    assert rows == {"old": "n/a", "req-0": 5, "req-1": None, "req-2": 5}
    assert ledger.stats()["coerced"] == 1


def test_records_that_cannot_become_rows_are_dropped_alone(db_path: str) -> None:
    class Raises:
        def as_row(self) -> tuple[Any, ...]:
            raise KeyError("status")

    class Short:
        def as_row(self) -> tuple[Any, ...]:
            return (1.0, "short")

    ledger = Ledger(db_path)
    ledger.record(make_rec(0))
    ledger.record(Raises())  # type: ignore[arg-type]
    ledger.record(Short())  # type: ignore[arg-type]
    ledger.record(None)  # type: ignore[arg-type]
    ledger.record(make_rec(1))
    ledger.start()
    assert ledger.close()
    assert ledger.written == 2
    assert ledger.dropped == 3
    assert "dropped" in ledger.last_error
    assert [r["request_id"] for r in query_rows(db_path)] == ["req-0", "req-1"]


# -- schema and migrations -------------------------------------------------------


def test_new_database_settings(db_path: str) -> None:
    Ledger(db_path).start()  # the daemon's first start creates the file
    backend = SQLiteBackend(db_path)
    backend.open()
    try:
        db = backend._db
        assert db is not None
        assert db.pragma("journal_mode") == "wal"
        assert db.pragma("synchronous") == 1  # NORMAL
        assert db.pragma("busy_timeout") > 0
        assert db.pragma("user_version") == SCHEMA_VERSION
        indexes = {r[1] for r in db.execute(f"PRAGMA index_list({TABLE})")}
        assert f"{TABLE}_ts" in indexes
        assert f"{TABLE}_model" not in indexes  # dropped by step 8
    finally:
        backend.close()


def _make_v1_database(path: str) -> None:
    db = apsw.Connection(path)
    with db:
        for statement in SQLITE_MIGRATIONS[0].statements:
            db.execute(statement)
        db.pragma("user_version", 1)
        db.execute(
            f"INSERT INTO {TABLE} (ts, request_id, model, status, stream, input_tokens)"
            " VALUES (1.5, 'old', 'gpt-4', 200, 1, 7)"
        )
    db.close()


def test_v1_database_is_upgraded(db_path: str) -> None:
    _make_v1_database(db_path)
    # Old databases are readable before migration; new columns read as NULL.
    (old,) = query_rows(db_path)
    assert old["request_id"] == "old" and old["attempts"] is None

    ledger = Ledger(db_path)
    ledger.start()
    ledger.record(make_rec(5, attempts=2, client_addr="10.0.0.1:1234"))
    ledger.close()

    db = apsw.Connection(db_path)
    assert db.pragma("user_version") == SCHEMA_VERSION
    db.close()
    old, new = query_rows(db_path)
    assert old["request_id"] == "old"
    assert old["input_tokens"] == 7 and old["stream"] is True
    assert old["attempts"] == 1  # the column default fills existing rows
    assert old["client_addr"] is None
    assert new["attempts"] == 2 and new["client_addr"] == "10.0.0.1:1234"


def test_v3_database_gains_the_spill_table(db_path: str) -> None:
    # A database made by the steps shipped before the spill journal existed.
    old = SQLiteBackend(db_path)
    old.open()
    assert old.migrate(target_version=3) == 3
    old.close()
    db = apsw.Connection(db_path)
    db.execute(f"INSERT INTO {TABLE} (ts, request_id, tool_repeats) VALUES (2.5, 'v3', 4)")
    db.close()

    ledger = Ledger(db_path)
    ledger.start()
    ledger.record(make_rec(1))
    assert ledger.close()

    db = apsw.Connection(db_path)
    assert db.pragma("user_version") == SCHEMA_VERSION
    assert db.table_exists(None, SPILL_TABLE)
    db.close()
    old_row, new_row = query_rows(db_path)
    assert (old_row["request_id"], old_row["tool_repeats"], old_row["attempts"]) == (
        "v3", 4, 1)
    assert new_row["request_id"] == "req-1"


def test_migration_is_one_transaction(db_path: str) -> None:
    broken = (
        *SQLITE_MIGRATIONS,
        SQLITE_MIGRATIONS[0]._replace(
            version=SCHEMA_VERSION + 1, statements=("CREATE TABLE x (a)", "BROKEN SQL")
        ),
    )
    backend = SQLiteBackend(db_path, migrations=broken)
    backend.open()
    with pytest.raises(LedgerError):
        backend.migrate()
    backend.close()
    db = apsw.Connection(db_path)
    assert db.pragma("user_version") == 0
    assert not db.table_exists(None, TABLE) and not db.table_exists(None, "x")
    db.close()


def test_newer_schema_is_refused(db_path: str) -> None:
    db = apsw.Connection(db_path)
    db.pragma("user_version", SCHEMA_VERSION + 1)
    db.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger(db_path).start()


def test_migration_versions_are_consecutive() -> None:
    assert [m.version for m in SQLITE_MIGRATIONS] == list(
        range(1, len(SQLITE_MIGRATIONS) + 1)
    )


# -- queries ---------------------------------------------------------------------


@pytest.fixture
def filled_db(db_path: str) -> str:
    ledger = Ledger(db_path)
    ledger.start()
    models = [
        ("gpt-4o", "gpt-4o-2024-08-06"),
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
        ("claude-sonnet-4", "claude-sonnet-4-20250514"),
        ("fast", "gpt-4o-mini-2024-07-18"),  # an alias
    ]
    for i in range(8):
        model, served = models[i % 4]
        ledger.record(make_rec(i, ts=1000.0 + i, model=model, served_model=served))
    ledger.close()
    return db_path


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["request_id"] for r in rows]


def test_query_filters(filled_db: str) -> None:
    assert ids(query_rows(filled_db)) == [f"req-{i}" for i in range(8)]
    assert ids(query_rows(filled_db, since=1005.0)) == ["req-5", "req-6", "req-7"]
    assert ids(query_rows(filled_db, model="gpt-4o")) == ["req-0", "req-4"]
    assert ids(query_rows(filled_db, model="claude-*")) == ["req-2", "req-6"]
    # the served model matches too: the alias "fast" was served as gpt-4o-mini
    assert ids(query_rows(filled_db, model="gpt-4o-mini-2024-07-18")) == [
        "req-1",
        "req-3",
        "req-5",
        "req-7",
    ]
    assert ids(query_rows(filled_db, model="GPT-4O")) == []  # case-sensitive
    assert ids(query_rows(filled_db, limit=3)) == ["req-5", "req-6", "req-7"]
    assert ids(query_rows(filled_db, since=1001.0, model="gpt-4o*", limit=2)) == [
        "req-5",
        "req-7",
    ]


def test_query_missing_file_and_foreign_database(tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "missing.db")
    with pytest.raises(LedgerError, match="not found"):
        query_rows(missing)
    assert not pathlib.Path(missing).exists()  # a read never creates the file

    other = str(tmp_path / "other.db")
    db = apsw.Connection(other)
    db.execute("CREATE TABLE t (a)")
    db.close()
    with pytest.raises(LedgerError, match="not a tokenway ledger"):
        query_rows(other)

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError):
        query_rows(str(garbage))


def test_query_while_writer_is_open(db_path: str) -> None:
    backend = CountingBackend(db_path)
    ledger = Ledger(db_path, flush_ms=0, backend=backend)
    ledger.start()
    ledger.record(make_rec(0))
    assert backend.wrote.wait(WAIT_S)
    assert ids(query_rows(db_path)) == ["req-0"]  # WAL: readers see commits
    ledger.close()


# -- layering ----------------------------------------------------------------------


def test_only_the_sqlite_modules_import_apsw() -> None:
    # The ledger's SQLite backend; the accounts store reaches the same file through
    # its session (SQLiteBackend.session), as it reaches PostgreSQL.
    root = pathlib.Path(__file__).resolve().parents[2] / "proxy"
    offenders = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "apsw" or n.startswith("apsw.") for n in names):
                offenders.append(path.relative_to(root).as_posix())
    assert sorted(set(offenders)) == ["ledger/sqlite.py"]


def test_v4_database_gains_accounts_and_keeps_every_row(db_path: str) -> None:
    # A ledger of the release before accounts, with rows that name keys.
    old = SQLiteBackend(db_path)
    old.open()
    assert old.migrate(target_version=4) == 4
    old.close()
    db = apsw.Connection(db_path)
    with db:
        for i in range(1000):
            db.execute(
                f"INSERT INTO {TABLE} (ts, request_id, api_key_id, input_tokens, output_tokens)"
                " VALUES (?, ?, ?, 10, 5)",
                (86_400.0 * (i % 3) + i, f"v4-{i}", "key_a" if i % 2 else None))
    db.close()

    ledger = Ledger(db_path)
    ledger.start()
    ledger.record(make_rec(1, api_key_id="key_a", ts=86_400.0 * 2 + 5, cost_usd=0.25))
    assert ledger.close()

    rows = query_rows(db_path)
    assert len(rows) == 1001
    assert {r["request_id"] for r in rows} >= {f"v4-{i}" for i in range(1000)}
    assert all(r["cost_usd"] is None for r in rows if r["request_id"].startswith("v4-"))
    db = apsw.Connection(db_path)
    assert db.pragma("user_version") == SCHEMA_VERSION
    spend = db.execute(
        f"SELECT day, cost_usd, requests, tokens FROM {SPEND_TABLE} "
        "WHERE api_key_id = 'key_a' ORDER BY day").fetchall()
    db.close()
    # 500 old keyed rows over three days (seeded by the migration, cost unknown)
    # and the new row (added by the writer, in its batch's transaction).
    assert [d for d, *_ in spend] == ["1970-01-01", "1970-01-02", "1970-01-03"]
    assert sum(r for _, _, r, _ in spend) == 501
    assert sum(t for *_, t in spend) == 500 * 15 + 101 + 11
    assert spend[2][1] == 0.25
