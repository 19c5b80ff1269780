"""The ledger when things go wrong: a slow writer, a failing database, crashes.

Real SQLite files in tmp_path throughout; failures are a real lock held by a
second connection, a real file-size limit (RLIMIT_FSIZE, in a subprocess), a
real deleted file, or, where the exact moment matters, a backend that reports
itself unavailable on demand. Waits poll the ledger's counters with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

import apsw
import pytest

from proxy.ledger import (
    DictRecord,
    Ledger,
    LedgerUnavailable,
    SQLiteBackend,
    query_rows,
)
from proxy.ledger.backend import JournalMark, WriteResult
from proxy.ledger.schema import SPILL_TABLE
from proxy.ledger.spill import FRAME, HEADER, SpillJournal, adopt_journals
from proxy.ledger.values import encode_batch
from tests.proxy.ledger_rows import (
    WAIT_S,
    BlockingBackend,
    SwitchBackend,
    make_rec,
    wait_until,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "ledger.db")


def ids(path: str) -> list[str]:
    return [r["request_id"] for r in query_rows(path)]


def spill_rows(path: str) -> int:
    db = apsw.Connection(path)
    try:
        return db.execute(f"SELECT count(*) FROM {SPILL_TABLE}").get
    finally:
        db.close()


# -- backpressure --------------------------------------------------------------------


def test_backpressure_signal_on_at_high_water_off_below_low_water(db_path: str) -> None:
    backend = BlockingBackend(db_path)
    ledger = Ledger(db_path, batch_rows=4, flush_ms=0, high_water_rows=8,
                    low_water_rows=2, backend=backend)
    ledger.start()
    loop = asyncio.new_event_loop()
    events: list[bool] = []
    released = asyncio.Event()

    def on_pressure(on: bool) -> None:
        events.append(on)
        if not on:
            released.set()

    async def main() -> None:
        ledger.watch_pressure(loop, on_pressure)
        ledger.record(make_rec(0))
        assert await loop.run_in_executor(None, backend.entered.wait, WAIT_S)
        for i in range(1, 8):  # the writer is stuck: these stay queued
            ledger.record(make_rec(i))
        assert events == []
        ledger.record(make_rec(8))  # the 8th row waiting: the high-water mark
        assert events == [True]  # called inside record(), on this loop
        assert ledger.stats()["state"] == "backpressure"
        for i in range(9, 30):  # requests in flight still get their rows
            ledger.record(make_rec(i))
        assert events == [True]
        assert ledger.stats()["queued"] == 30 and ledger.dropped == 0
        backend.release.set()
        await released.wait()
        assert events == [True, False]
        assert ledger.queued < 8  # released once below the low-water mark

    try:
        loop.run_until_complete(asyncio.wait_for(main(), WAIT_S))
    finally:
        loop.close()
    assert ledger.close()
    assert ids(db_path) == [f"req-{i}" for i in range(30)]
    stats = ledger.stats()
    assert (stats["state"], stats["backpressure_events"], stats["dropped"]) == ("ok", 1, 0)


def test_backpressure_without_a_watcher_shows_in_stats(db_path: str) -> None:
    backend = BlockingBackend(db_path)
    ledger = Ledger(db_path, batch_rows=2, flush_ms=0, high_water_rows=4,
                    low_water_rows=1, backend=backend)
    ledger.start()
    ledger.record(make_rec(0))
    assert backend.entered.wait(WAIT_S)
    for i in range(1, 6):
        ledger.record(make_rec(i))
    assert ledger.stats()["state"] == "backpressure"
    backend.release.set()
    wait_until(lambda: ledger.stats()["state"] == "ok", "the signal to go off")
    assert ledger.close()
    assert ledger.written == 6 and ledger.stats()["backpressure_events"] == 1


# -- a database that fails: spill and replay ------------------------------------------


def test_locked_database_spills_then_replays_exactly_once(db_path: str) -> None:
    backend = SQLiteBackend(db_path, busy_timeout_ms=20)
    ledger = Ledger(db_path, batch_rows=50, flush_ms=0, retry_s=0.05, backend=backend)
    ledger.start()
    for i in range(100):
        ledger.record(make_rec(i))
    wait_until(lambda: ledger.written == 100, "the first rows")

    locker = apsw.Connection(db_path)
    locker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    for i in range(100, 400):
        ledger.record(make_rec(i))
    wait_until(lambda: ledger.queued == 0, "the rows to be journaled")
    stats = ledger.stats()
    assert (stats["written"], stats["spilled"], stats["journal_rows"]) == (100, 300, 300)
    assert stats["state"] == "spilling" and stats["dropped"] == 0
    assert "Busy" in stats["last_error"]
    assert os.path.getsize(db_path + ".spill") == stats["journal_bytes"] > 0

    locker.execute("COMMIT")
    locker.close()
    wait_until(lambda: ledger.stats()["journal_rows"] == 0, "the replay")
    assert ledger.close()
    stats = ledger.stats()
    assert (stats["written"], stats["replayed"], stats["spilled"]) == (400, 300, 300)
    assert stats["state"] == "ok" and stats["dropped"] == 0
    assert sorted(ids(db_path)) == sorted(f"req-{i}" for i in range(400))
    assert not os.path.exists(db_path + ".spill")
    assert spill_rows(db_path) == 0  # the progress row goes with the file


def test_close_journals_the_rows_and_the_next_start_replays_them(db_path: str) -> None:
    first = Ledger(db_path, backend=SQLiteBackend(db_path, busy_timeout_ms=20))
    first.start()
    locker = apsw.Connection(db_path)
    locker.execute("BEGIN EXCLUSIVE")
    for i in range(50):
        first.record(make_rec(i))
    assert first.close() is True  # every row is in the journal
    assert (first.written, first.spilled, first.stats()["journal_rows"]) == (0, 50, 50)
    assert os.path.exists(db_path + ".spill")
    locker.execute("COMMIT")
    locker.close()

    second = Ledger(db_path)
    second.start()
    second.record(make_rec(50))
    assert second.close()
    assert (second.written, second.replayed) == (51, 50)
    assert sorted(ids(db_path)) == sorted(f"req-{i}" for i in range(51))
    assert not os.path.exists(db_path + ".spill")


def _journal_with_frames(db_path: str, frames: list[range]) -> SpillJournal:
    journal = SpillJournal.claim(db_path + ".spill", create=True)
    assert journal is not None
    for numbers in frames:
        encoded = encode_batch([make_rec(i) for i in numbers])
        journal.append(encoded.payload, encoded.rows, 1.0, 1 << 20)
    return journal


def test_replay_after_a_crash_between_commit_and_cleanup_stores_each_row_once(
    db_path: str,
) -> None:
    Ledger(db_path).start()  # create and migrate the database
    journal = _journal_with_frames(db_path, [range(0, 5), range(5, 12), range(12, 13)])
    frames = list(journal.frames(HEADER.size))
    # A previous run replayed the first frame, committed, and died before it
    # moved on: the rows and the progress are in the database, the file stays.
    backend = SQLiteBackend(db_path)
    backend.open()
    done = backend.write_rows(frames[0].payload, taken_at=1.0,
                              mark=JournalMark(journal.journal_id, frames[0].end))
    assert done.rows == 5
    again = backend.write_rows(frames[0].payload, taken_at=1.0,
                               mark=JournalMark(journal.journal_id, frames[0].end))
    assert again.rows == 0  # covered by the stored progress: skipped
    backend.close()
    journal.close()  # the process is gone: its lock is released

    ledger = Ledger(db_path)
    ledger.start()
    assert ledger.close()
    assert ledger.replayed == 8  # frames 2 and 3 only
    assert sorted(ids(db_path)) == sorted(f"req-{i}" for i in range(13))
    assert not os.path.exists(db_path + ".spill")


def test_torn_last_frame_is_cut_off_and_good_frames_replayed(db_path: str) -> None:
    Ledger(db_path).start()
    journal = _journal_with_frames(db_path, [range(0, 3), range(3, 6)])
    good_end = journal.end
    journal.close()
    with open(db_path + ".spill", "ab") as f:  # a crash half way through a frame
        f.write(FRAME.pack(5000, 9, 0, 1.0) + b'[[1.0,"torn"')

    (adopted,), errors = adopt_journals(db_path)
    assert errors == []
    assert (adopted.rows, adopted.end) == (6, good_end)
    assert os.path.getsize(db_path + ".spill") == good_end
    adopted.close()

    ledger = Ledger(db_path)
    ledger.start()
    assert ledger.close()
    assert ledger.replayed == 6 and ledger.dropped == 0
    assert sorted(ids(db_path)) == sorted(f"req-{i}" for i in range(6))


def test_a_foreign_file_in_the_journal_slot_is_left_alone(db_path: str) -> None:
    pathlib.Path(db_path + ".spill").write_bytes(b"someone else's notes\n")
    backend = SwitchBackend(db_path)
    ledger = Ledger(db_path, backend=backend, retry_s=0.01)
    ledger.start()
    assert "not a tokenway spill journal" in ledger.last_error
    backend.down.set()
    ledger.record(make_rec(0))
    wait_until(lambda: ledger.spilled == 1, "the spill")
    assert os.path.exists(db_path + ".spill.1")  # the next slot
    backend.down.clear()
    assert ledger.close()
    assert pathlib.Path(db_path + ".spill").read_bytes() == b"someone else's notes\n"
    assert ids(db_path) == ["req-0"]


def test_database_and_journal_both_failing_keep_rows_queued(db_path: str) -> None:
    backend = SwitchBackend(db_path)
    # Room for the header and one small frame only.
    ledger = Ledger(db_path, batch_rows=5, flush_ms=0, retry_s=0.01,
                    high_water_rows=20, low_water_rows=5,
                    spill_max_bytes=HEADER.size + FRAME.size + 1200, backend=backend)
    ledger.start()
    backend.down.set()
    for i in range(5):
        ledger.record(make_rec(i))
    wait_until(lambda: ledger.spilled == 5, "the first frame")
    for i in range(5, 40):
        ledger.record(make_rec(i))
    wait_until(lambda: ledger.stats()["state"] == "backpressure", "backpressure")
    wait_until(lambda: "full" in (ledger.last_error or ""), "the journal to refuse")
    stats = ledger.stats()
    assert stats["dropped"] == 0 and stats["queued"] == 35
    assert "injected" in stats["last_error"] or "full" in stats["last_error"]

    backend.down.clear()
    wait_until(lambda: ledger.stats()["state"] == "ok", "recovery")
    assert ledger.close()
    assert sorted(ids(db_path)) == sorted(f"req-{i}" for i in range(40))
    assert (ledger.written, ledger.replayed, ledger.dropped) == (40, 5, 0)


def test_close_gives_up_only_when_nothing_moves(db_path: str) -> None:
    backend = SwitchBackend(db_path)
    ledger = Ledger(db_path, retry_s=0.01, spill_max_bytes=HEADER.size,
                    backend=backend)
    ledger.start()
    backend.down.set()
    for i in range(10):
        ledger.record(make_rec(i))
    assert ledger.close(stall_timeout_s=0.2) is False
    assert ledger.queued == 10 and ledger.dropped == 0
    # The writer keeps trying after close() gave up; here the database returns.
    backend.down.clear()
    wait_until(lambda: ledger.written == 10, "the late write")
    assert sorted(ids(db_path)) == sorted(f"req-{i}" for i in range(10))


class EveryThirdFails(SwitchBackend):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.calls = 0

    def write_rows(self, payload: bytes, *, taken_at: float,
                   mark: JournalMark | None = None, rows: Any = None) -> WriteResult:
        self.calls += 1
        if self.calls % 3 == 0:
            raise LedgerUnavailable("database is locked (injected)")
        return super().write_rows(payload, taken_at=taken_at, mark=mark, rows=rows)


def test_flapping_database_loses_and_duplicates_nothing(db_path: str) -> None:
    backend = EveryThirdFails(db_path)
    ledger = Ledger(db_path, batch_rows=37, flush_ms=0, retry_s=0.001, backend=backend)
    ledger.start()
    for i in range(3000):
        ledger.record(make_rec(i))
    assert ledger.close()
    stats = ledger.stats()
    assert stats["spilled"] > 0 and stats["dropped"] == 0
    assert stats["written"] + stats["journal_rows"] == 3000
    assert stats["written"] - stats["replayed"] + stats["spilled"] == 3000
    got = ids(db_path)
    assert len(got) == len(set(got)) == stats["written"]
    if stats["journal_rows"]:  # the last probe failed: the rest waits for next start
        again = Ledger(db_path)
        again.start()
        assert again.close()
    assert sorted(ids(db_path)) == sorted(f"req-{i}" for i in range(3000))


# -- rows the database itself refuses ------------------------------------------------


def test_a_row_refused_by_the_database_is_journaled_then_dropped_alone(
    db_path: str,
) -> None:
    Ledger(db_path).start()
    db = apsw.Connection(db_path)
    db.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON requests "
               "WHEN NEW.model = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END")
    db.close()
    ledger = Ledger(db_path)
    for i in range(5):
        ledger.record(make_rec(i, model="poison" if i == 2 else "gpt"))
    ledger.start()
    assert ledger.close()
    assert ids(db_path) == ["req-0", "req-1", "req-3", "req-4"]
    stats = ledger.stats()
    assert (stats["written"], stats["spilled"], stats["dropped"]) == (4, 1, 1)
    assert "refused twice" in stats["last_error"]
    assert not os.path.exists(db_path + ".spill")


# -- real files that fail ------------------------------------------------------------


def test_deleted_database_file_is_recreated_and_no_later_row_is_lost(
    db_path: str,
) -> None:
    ledger = Ledger(db_path, flush_ms=0, retry_s=0.01)
    ledger.start()
    for i in range(10):
        ledger.record(make_rec(i))
    wait_until(lambda: ledger.written == 10, "the first rows")
    for suffix in ("", "-wal", "-shm"):  # rm tokenway.db* while it runs
        if os.path.exists(db_path + suffix):
            os.unlink(db_path + suffix)
    for i in range(10, 30):
        ledger.record(make_rec(i))
    assert ledger.close()
    # The rows committed before the rm went with the file; none after it did.
    assert sorted(ids(db_path)) == sorted(f"req-{i}" for i in range(10, 30))
    assert ledger.dropped == 0


FSIZE_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys
    from proxy.ledger import Ledger, query_rows
    from tests.proxy.ledger_rows import make_rec, wait_until

    path = sys.argv[1]
    ledger = Ledger(path, batch_rows=64, flush_ms=0, retry_s=0.01,
                    high_water_rows=1000, low_water_rows=100)
    ledger.start()
    for i in range(10):
        ledger.record(make_rec(i))
    wait_until(lambda: ledger.written == 10, "the first rows")
    # No file of this process may grow past 48 KiB more than the largest now:
    # the WAL soon cannot take a commit, the journal fills up after it.
    biggest = max(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 48 * 1024, hard))
    for i in range(10, 3010):
        ledger.record(make_rec(i))
    # Wait for the writer to be stuck: the journal refused a batch too.
    wait_until(lambda: "cannot spill" in (ledger.last_error or ""), "a full journal", 60)
    held = ledger.stats()
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space again
    wait_until(lambda: ledger.stats()["state"] == "ok", "recovery", 60)
    assert ledger.close()
    rows = [r["request_id"] for r in query_rows(path)]
    print(json.dumps({"held": held, "final": ledger.stats(), "rows": len(rows),
                      "unique": len(set(rows))}))
""")


def test_file_size_limit_spills_then_holds_then_recovers(db_path: str) -> None:
    # RLIMIT_FSIZE makes writes past the limit fail with EFBIG (CPython ignores
    # SIGXFSZ), for the database and the journal alike: a real full disk.
    out = subprocess.run([sys.executable, "-c", FSIZE_SCRIPT, db_path], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    held, final = result["held"], result["final"]
    assert held["spilled"] > 0  # the database failed first, the journal took rows
    assert held["queued"] >= 1000 and held["dropped"] == 0  # then rows waited
    assert held["state"] == "backpressure"
    assert final["written"] == result["rows"] == result["unique"] == 3010
    assert final["replayed"] == final["spilled"] and final["dropped"] == 0


def test_any_record_object_survives_a_spill(db_path: str) -> None:
    # A record whose as_row() would fail if called twice: the journal holds the
    # row values, so the replay never calls it again.
    class Once:
        def __init__(self, i: int) -> None:
            self.i, self.used = i, False

        def as_row(self) -> tuple[Any, ...]:
            assert not self.used
            self.used = True
            return DictRecord({"ts": 1.0 + self.i, "request_id": f"once-{self.i}"}).as_row()

    backend = SwitchBackend(db_path)
    ledger = Ledger(db_path, retry_s=0.01, backend=backend)
    ledger.start()
    backend.down.set()
    for i in range(3):
        ledger.record(Once(i))  # type: ignore[arg-type]
    wait_until(lambda: ledger.spilled == 3, "the spill")
    backend.down.clear()
    assert ledger.close()
    assert ids(db_path) == ["once-0", "once-1", "once-2"]


def test_two_writers_on_one_database_spill_to_their_own_journals(db_path: str) -> None:
    # gatewayd --workers 2: two processes, two writers, one file.
    backends = [SwitchBackend(db_path), SwitchBackend(db_path)]
    ledgers = [Ledger(db_path, retry_s=0.01, flush_ms=0, backend=b) for b in backends]
    for ledger in ledgers:
        ledger.start()
    for backend in backends:
        backend.down.set()
    for n, ledger in enumerate(ledgers):
        for i in range(100):
            ledger.record(make_rec(n * 1000 + i))
    for ledger in ledgers:
        wait_until(lambda ledger=ledger: ledger.spilled == 100, "the spill")
    assert os.path.exists(db_path + ".spill") and os.path.exists(db_path + ".spill.1")
    for backend in backends:
        backend.down.clear()
    for ledger in ledgers:
        assert ledger.close()
    want = sorted(f"req-{n * 1000 + i}" for n in (0, 1) for i in range(100))
    assert sorted(ids(db_path)) == want
    assert not os.path.exists(db_path + ".spill") and not os.path.exists(db_path + ".spill.1")


def test_gateway_usage_notes_rows_waiting_in_a_journal(
    db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxy.usage_cli import usage_main

    first = Ledger(db_path, backend=SQLiteBackend(db_path, busy_timeout_ms=20))
    first.start()
    first.record(make_rec(0))
    wait_until(lambda: first.written == 1, "the first row")
    locker = apsw.Connection(db_path)
    locker.execute("BEGIN EXCLUSIVE")
    for i in range(1, 8):
        first.record(make_rec(i))
    assert first.close()
    locker.execute("COMMIT")
    locker.close()

    assert usage_main(["--db", db_path, "--json"]) == 0
    out, err = capsys.readouterr()
    assert [r["request_id"] for r in json.loads(out)] == ["req-0"]
    assert f"{db_path}.spill holds 7 row(s) not in the database yet" in err
