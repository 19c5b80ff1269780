"""Ledger writer and SQLite backend, on real database files in tmp_path.

Synchronisation is by events and by the writer's own rules (rows queued before
start() are taken batch_rows at a time; close() flushes everything), never by
sleeping or by measuring elapsed time.
"""

from __future__ import annotations

import ast
import pathlib
import threading
from collections.abc import Sequence
from typing import Any

import apsw
import pytest

from proxy.ledger import (
    DEFAULT_DB_PATH,
    LEDGER_COLUMNS,
    SCHEMA_VERSION,
    Ledger,
    LedgerError,
    SQLiteBackend,
    query_rows,
)
from proxy.ledger.schema import SQLITE_MIGRATIONS, TABLE

WAIT_S = 10.0  # upper bound for a thread hand-off; never reached when passing


def make_row(i: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "ts": 1_700_000_000.0 + i,
        "request_id": f"req-{i}",
        "endpoint": "/v1/chat/completions",
        "client_protocol": "openai_chat",
        "model": "gpt-4o-mini",
        "served_model": "gpt-4o-mini-2024-07-18",
        "provider": "openai",
        "status": 200,
        "error_kind": None,
        "stream": i % 2 == 0,
        "input_tokens": 100 + i,
        "output_tokens": 10 + i,
        "cached_tokens": 64,
        "cache_write_tokens": None,
        "reasoning_tokens": 0,
        "latency_ms": 812.5,
        "ttfb_ms": 301.25,
        "bytes_in": 2048,
        "bytes_out": 4096,
        "attempts": 1,
        "api_key_id": None,
        "client_addr": "127.0.0.1:50000",
        "tool_repeats": None,
    }
    row.update(overrides)
    return row


class CountingBackend(SQLiteBackend):
    """Real SQLite, plus a record of each transaction's size."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.batch_sizes: list[int] = []
        self.wrote = threading.Event()

    def write_batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        super().write_batch(rows)
        self.batch_sizes.append(len(rows))
        self.wrote.set()


class BlockingBackend(CountingBackend):
    """write_batch waits until the test releases it."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()

    def write_batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.entered.set()
        assert self.release.wait(WAIT_S)
        super().write_batch(rows)


class FlakyBackend(CountingBackend):
    """The first `failures` write_batch calls raise."""

    def __init__(self, path: str, failures: int) -> None:
        super().__init__(path)
        self.failures = failures
        self.calls = 0
        self.failed_enough = threading.Event()

    def write_batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            if self.calls == self.failures:
                self.failed_enough.set()
            raise LedgerError("disk I/O error (injected)")
        super().write_batch(rows)


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
        ledger.record(row)
    assert ledger.close() is True

    got = query_rows(db_path)
    assert got == sent  # oldest first; stream comes back as bool
    assert set(got[0]) == set(LEDGER_COLUMNS)
    assert ledger.stats() == {
        "written": 3,
        "dropped": 0,
        "queued": 0,
        "batches": 1,
        "last_error": None,
    }


def test_missing_keys_are_null_or_column_default(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.start()
    ledger.record({"ts": 1.0, "model": "m", "unknown_key": "ignored"})
    ledger.record({"ts": 2.0, "stream": None, "attempts": None})
    ledger.close()

    first, second = query_rows(db_path)
    assert first["model"] == "m"
    assert first["input_tokens"] is None  # unknown, not zero
    assert first["error_kind"] is None
    assert first["stream"] is False and first["attempts"] == 1
    assert second["stream"] is False and second["attempts"] == 1


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
        ledger.record(make_row(i))
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
        ledger.record(make_row(i))
    assert ledger.close(timeout_s=WAIT_S)

    assert sum(backend.batch_sizes) == 1000
    assert max(backend.batch_sizes) <= 100
    assert len(backend.batch_sizes) < 100  # far fewer transactions than rows


def test_flush_timer_writes_a_partial_batch(db_path: str) -> None:
    backend = CountingBackend(db_path)
    ledger = Ledger(db_path, batch_rows=512, flush_ms=1, backend=backend)
    ledger.start()
    ledger.record(make_row(0))
    assert backend.wrote.wait(WAIT_S)  # written without close() or a full batch
    assert backend.batch_sizes == [1]
    assert count_rows(db_path) == 1
    ledger.close()


# -- shutdown --------------------------------------------------------------------


@pytest.mark.parametrize("flush_ms", [0, 50, 600_000])
def test_close_flushes_rows_recorded_just_before(db_path: str, flush_ms: int) -> None:
    ledger = Ledger(db_path, batch_rows=64, flush_ms=flush_ms)
    ledger.start()
    for i in range(1000):
        ledger.record(make_row(i))
    assert ledger.close(timeout_s=WAIT_S) is True
    assert count_rows(db_path) == 1000
    assert ledger.stats()["queued"] == 0


def test_record_after_close_is_dropped_and_close_is_idempotent(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.start()
    ledger.record(make_row(0))
    assert ledger.close()
    ledger.record(make_row(1))
    assert ledger.dropped == 1
    assert ledger.close()
    assert count_rows(db_path) == 1


def test_rows_before_start_are_written_after_start(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.record(make_row(0))
    ledger.start()
    ledger.close()
    assert count_rows(db_path) == 1


def test_close_without_start_counts_queued_rows_as_dropped(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.record(make_row(0))
    ledger.record(make_row(1))
    assert ledger.queued == 2
    assert ledger.close()
    assert ledger.stats()["dropped"] == 2
    assert ledger.queued == 0


# -- overflow --------------------------------------------------------------------


def test_full_queue_counts_drops_and_never_blocks(db_path: str) -> None:
    backend = BlockingBackend(db_path)
    ledger = Ledger(db_path, queue_rows=4, batch_rows=2, flush_ms=0, backend=backend)
    ledger.start()
    ledger.record(make_row(0))
    assert backend.entered.wait(WAIT_S)  # the writer is stuck inside a write

    # Had record() blocked on a full queue, this loop would never finish: the
    # writer cannot drain until `release` is set below.
    for i in range(1, 11):
        ledger.record(make_row(i))
    stats = ledger.stats()
    assert stats["queued"] == 5  # 4 waiting + 1 in the stuck transaction
    assert stats["dropped"] == 6
    assert stats["written"] == 0

    backend.release.set()
    assert ledger.close(timeout_s=WAIT_S)
    assert ledger.written == 5
    assert ledger.dropped == 6
    assert [r["request_id"] for r in query_rows(db_path)] == [
        f"req-{i}" for i in range(5)
    ]


# -- failures --------------------------------------------------------------------


def test_failed_write_is_retried_once(db_path: str) -> None:
    backend = FlakyBackend(db_path, failures=1)
    ledger = Ledger(db_path, backend=backend)
    ledger.record(make_row(0))
    ledger.start()
    ledger.close()
    assert backend.calls == 2
    assert ledger.written == 1
    assert ledger.dropped == 0
    assert "injected" in ledger.stats()["last_error"]


def test_batch_failing_twice_is_dropped_and_thread_survives(db_path: str) -> None:
    backend = FlakyBackend(db_path, failures=2)
    ledger = Ledger(db_path, batch_rows=3, backend=backend)
    for i in range(3):
        ledger.record(make_row(i))
    ledger.start()
    assert backend.failed_enough.wait(WAIT_S)

    ledger.record(make_row(3))
    ledger.record(make_row(4))
    assert ledger.close(timeout_s=WAIT_S)

    stats = ledger.stats()
    assert stats["dropped"] == 3
    assert stats["written"] == 2
    assert "injected" in stats["last_error"]
    assert [r["request_id"] for r in query_rows(db_path)] == ["req-3", "req-4"]


def test_unbindable_value_fails_its_batch_on_real_sqlite(db_path: str) -> None:
    ledger = Ledger(db_path, batch_rows=2)
    ledger.record(make_row(0))
    ledger.record(make_row(1, model=object()))  # apsw cannot bind this
    ledger.record(make_row(2))
    ledger.start()
    assert ledger.close()
    assert ledger.dropped == 2
    assert ledger.written == 1
    assert ledger.last_error is not None
    assert [r["request_id"] for r in query_rows(db_path)] == ["req-2"]


def test_malformed_rows_are_dropped_alone(db_path: str) -> None:
    ledger = Ledger(db_path)
    ledger.record(make_row(0))
    ledger.record({"model": "no ts"})
    ledger.record(["not", "a", "dict"])  # type: ignore[arg-type]
    ledger.record(make_row(1))
    ledger.start()
    ledger.close()
    assert ledger.written == 2
    assert ledger.dropped == 2
    assert "malformed" in ledger.last_error


def test_start_fails_loudly_on_unusable_path(tmp_path: pathlib.Path) -> None:
    ledger = Ledger(str(tmp_path / "no-such-dir" / "ledger.db"))
    with pytest.raises(LedgerError):
        ledger.start()
    ledger.record(make_row(0))
    assert ledger.dropped == 1
    assert ledger.close()


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
        assert {f"{TABLE}_ts", f"{TABLE}_model"} <= indexes
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
    ledger.record(make_row(5, attempts=2, client_addr="10.0.0.1:1234"))
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
        ledger.record(make_row(i, ts=1000.0 + i, model=model, served_model=served))
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
    ledger.record(make_row(0))
    assert backend.wrote.wait(WAIT_S)
    assert ids(query_rows(db_path)) == ["req-0"]  # WAL: readers see commits
    ledger.close()


# -- layering ----------------------------------------------------------------------


def test_only_the_sqlite_backend_imports_apsw() -> None:
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
