"""The PostgreSQL ledger backend against a real server: the same rows and repairs as
SQLite, its own recorded migrations, exactly-once replays, outages that spill to the
journal and replay, and the reads of the ``gateway`` commands.

Each test runs in a database of its own (tests/pgdb.py), dropped after it.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import orjson
import psycopg
import pytest

from proxy.accounts.store import AccountStore
from proxy.ledger import (
    DictRecord,
    Ledger,
    LedgerError,
    LedgerUnavailable,
    open_backend,
    parse_storage_url,
    query_rows,
)
from proxy.ledger.backend import JournalMark
from proxy.ledger.postgres import PostgresBackend
from proxy.ledger.reads import GROUP_BY, glob_regex
from proxy.ledger.schema import LEDGER_COLUMNS, POSTGRES_MIGRATIONS, Migration
from proxy.ledger.sqlite import SQLiteBackend
from proxy.usage_cli import usage_main
from tests.pgdb import admin, pg_url_fixture  # noqa: F401 (the pg_url fixture)
from tests.proxy.ledger_rows import make_rec, make_row, wait_until
from tests.proxy.test_ledger import VALUE_CASES

SECRET = "pw-never-shown"


def pg_ledger(url: str, **kwargs: Any) -> Ledger:
    return Ledger(kwargs.pop("path", "unused"), backend=open_backend(url), **kwargs)


def fill(ledger: Ledger, records: list[Any]) -> Ledger:
    for rec in records:
        ledger.record(rec)
    ledger.start()
    assert ledger.close()
    return ledger


def pg_rows(url: str, sql: str, *args: object) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args or None).fetchall()


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


# -- rows and values ------------------------------------------------------------


def test_rows_round_trip_as_in_sqlite(pg_url: str, tmp_path: pathlib.Path) -> None:
    records = [make_rec(i, api_key_id="key_a" if i % 3 else None) for i in range(40)]
    lite = str(tmp_path / "l.db")
    fill(Ledger(lite), records)
    ledger = fill(pg_ledger(pg_url, path=str(tmp_path / "pg")), records)
    assert ledger.stats()["written"] == 40 and ledger.stats()["batches"] == 1
    assert query_rows(pg_url) == query_rows(lite) == [make_row(i, api_key_id="key_a" if i % 3
                                                               else None) for i in range(40)]
    # The spend per key and day is kept in the batch's statement, as in SQLite.
    [(key, day, cost, requests, tokens)] = pg_rows(
        pg_url, "SELECT api_key_id, day, cost_usd, requests, tokens FROM key_spend")
    mine = [make_row(i) for i in range(40) if i % 3]
    assert (key, day, requests) == ("key_a", "2023-11-14", len(mine))
    assert cost == pytest.approx(sum(r["cost_usd"] for r in mine))
    assert tokens == sum(r["input_tokens"] + r["output_tokens"] for r in mine)
    # What budgets read: each key's spend today, this month and ever.
    spent = []
    for where in (lite, parse_storage_url(pg_url)):
        with AccountStore(where) as store:
            spent.append(store.spend("2023-11-14", "2023-11-01"))
    assert spent[0].keys() == spent[1].keys() == {"key_a"}
    assert spent[1]["key_a"] == pytest.approx(spent[0]["key_a"])
    assert spent[0]["key_a"][0] == pytest.approx(cost)


def test_values_are_checked_and_repaired_as_sqlite_does(pg_url: str,
                                                        tmp_path: pathlib.Path) -> None:
    # Every case of the SQLite value rules, one row each, in one batch; and the
    # awkward rows that send a batch through Python (values.py).
    records = [make_rec(i, **{column: given})
               for i, (column, given, _, _) in enumerate(VALUE_CASES)]
    records += [make_rec(90, input_tokens="12", latency_ms=3, model="m" * 300),
                make_rec(91, status=2.5, provider=7, ttfb_ms="x", stream=True),
                make_rec(92, bytes_in=2**63, cached_tokens=3.0, reasoning_tokens="4.0")]
    lite = fill(Ledger(str(tmp_path / "l.db")), records)
    pg = fill(pg_ledger(pg_url, path=str(tmp_path / "pg")), records)
    assert query_rows(pg_url) == query_rows(str(tmp_path / "l.db"))
    for i, (column, _, stored, _) in enumerate(VALUE_CASES):
        got = query_rows(pg_url)[i][column]
        assert got == stored and type(got) is type(stored), (column, got)
    assert pg.stats()["coerced"] == lite.stats()["coerced"] > 0
    assert pg.stats()["dropped"] == lite.stats()["dropped"] == 0


ONE_ISSUE = [  # batches with one kind of awkward value each: the first statement either
    # takes them (numbers cast, text checked) or aborts and the checked one repairs them
    {"model": "y" * 5000}, {"model": 5}, {"end_user": 2.5}, {"provider": True},
    {"input_tokens": "12"}, {"input_tokens": 12.0}, {"input_tokens": " 7 "},
    {"bytes_in": 2**63}, {"latency_ms": "NaN"}, {"latency_ms": "1.5"}, {"latency_ms": True},
    {"ts": None}, {"ts": "1700000000.5"}, {"status": "1_000"}, {"status": "0x10"},
]


def test_each_kind_of_awkward_value_alone_as_in_sqlite(pg_url: str,
                                                       tmp_path: pathlib.Path) -> None:
    pg = PostgresBackend(pg_url, "db")
    lite = SQLiteBackend(str(tmp_path / "l.db"))
    for backend in (pg, lite):
        backend.open()
        backend.migrate()
    try:
        for n, issue in enumerate(ONE_ISSUE):
            batch = orjson.dumps([[make_row(10 * n + i, **(issue if i == 1 else {}))[c]
                                   for c in LEDGER_COLUMNS] for i in range(3)])
            got = pg.write_rows(batch, taken_at=1_800_000_000.0)
            want = lite.write_rows(batch, taken_at=1_800_000_000.0)
            assert (got.rows, got.coerced, got.notes) == (want.rows, want.coerced,
                                                          want.notes), issue
        assert pg.query() == lite.query()
    finally:
        pg.close()
        lite.close()


def test_missing_ts_and_nul_characters(pg_url: str, tmp_path: pathlib.Path) -> None:
    ledger = fill(pg_ledger(pg_url, path=str(tmp_path / "pg")), [
        make_rec(0, ts=None), make_rec(1, ts="yesterday"),
        make_rec(2, model="gpt\x00-4o", end_user="a\x00b\x00c"), make_rec(3)])
    rows = {r["request_id"]: r for r in query_rows(pg_url)}
    assert len(rows) == 4
    for rid in ("req-0", "req-1"):
        assert type(rows[rid]["ts"]) is float and rows[rid]["ts"] > 1_700_000_100
    # PostgreSQL text holds no U+0000: each value that had one is counted once.
    assert rows["req-2"]["model"] == "gpt\ufffd-4o"
    assert rows["req-2"]["end_user"] == "a\ufffdb\ufffdc"
    assert rows["req-3"] == make_row(3)
    assert ledger.stats()["coerced"] == 4


# -- migrations -------------------------------------------------------------------


def test_migrations_are_recorded_and_a_newer_schema_refused(pg_url: str) -> None:
    backend = PostgresBackend(pg_url, "db")
    backend.open()
    try:
        assert backend.migrate() == POSTGRES_MIGRATIONS[-1].version
        assert backend.migrate() == POSTGRES_MIGRATIONS[-1].version  # nothing to do
    finally:
        backend.close()
    recorded = pg_rows(pg_url, "SELECT version, description FROM schema_migrations "
                               "ORDER BY version")
    assert recorded == [(m.version, m.description) for m in POSTGRES_MIGRATIONS]
    assert [m.version for m in POSTGRES_MIGRATIONS] == list(
        range(1, len(POSTGRES_MIGRATIONS) + 1))
    # Step 4 dropped the index on model (no query read it); the one on ts stays.
    assert pg_rows(pg_url, "SELECT to_regclass('requests_model') IS NULL, "
                           "to_regclass('requests_ts') IS NOT NULL") == [(True, True)]

    newer = PostgresBackend(pg_url, "db", migrations=(
        *POSTGRES_MIGRATIONS, Migration(len(POSTGRES_MIGRATIONS) + 1, "later", (
            "CREATE TABLE later_step (x int)",))))
    newer.open()
    newer.migrate()
    newer.close()
    old = PostgresBackend(pg_url, "db")
    old.open()
    with pytest.raises(LedgerError, match="newer than this gateway"):
        old.migrate()
    old.close()


def test_a_failing_migration_leaves_nothing(pg_url: str) -> None:
    broken = (*POSTGRES_MIGRATIONS[:1], Migration(2, "broken", (
        "CREATE TABLE half (x int)", "ALTER TABLE no_such_table ADD COLUMN y int")))
    backend = PostgresBackend(pg_url, "db", migrations=broken)
    backend.open()
    with pytest.raises(LedgerError, match="cannot migrate"):
        backend.migrate()
    backend.close()
    assert pg_rows(pg_url, "SELECT to_regclass('requests'), to_regclass('half')") == [
        (None, None)]


# -- exactly once -------------------------------------------------------------------


def payload_of(*ids: int, **overrides: Any) -> bytes:
    return orjson.dumps([[make_row(i, **overrides.get(str(i), {}))[c] for c in LEDGER_COLUMNS]
                         for i in ids])


def test_a_row_the_database_refuses_costs_only_itself(pg_url: str) -> None:
    backend = PostgresBackend(pg_url, "db")
    backend.open()
    backend.migrate()
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:  # a rule added by hand
            conn.execute("ALTER TABLE requests ADD CONSTRAINT no_teapots CHECK (status <> 418)")
        batch = payload_of(1, 2, 3, **{"2": {"status": 418}})
        live = backend.write_rows(batch, taken_at=0.0)
        assert live.rows == 2 and [orjson.loads(r)[1] for r in live.rejected] == ["req-2"]
        # Replayed (the writer journals refused rows), again row by row: the rows
        # stored already are skipped, the refused one is refused again.
        replay = backend.write_rows(batch, taken_at=0.0, mark=JournalMark("j", 64))
        assert (replay.rows, len(replay.rejected)) == (0, 1)
        assert backend.write_rows(batch, taken_at=0.0, mark=JournalMark("j", 64)).rows == 0
    finally:
        backend.close()
    assert [r["request_id"] for r in query_rows(pg_url)] == ["req-1", "req-3"]


def test_a_replayed_frame_is_stored_once(pg_url: str) -> None:
    backend = PostgresBackend(pg_url, "db")
    backend.open()
    backend.migrate()
    try:
        frame = payload_of(1, 2, 3)
        mark = JournalMark("j1", 100)
        assert backend.write_rows(frame, taken_at=0.0, mark=mark).rows == 3
        assert backend.write_rows(frame, taken_at=0.0, mark=mark).rows == 0
        # A batch whose COMMIT went through while its answer was lost is journaled
        # and replayed under a new mark: its rows are there already.
        assert backend.write_rows(payload_of(4, 5), taken_at=0.0).rows == 2
        again = backend.write_rows(payload_of(4, 5, 6), taken_at=0.0,
                                   mark=JournalMark("j2", 50))
        assert again.rows == 1
        backend.forget_journal("j1")
    finally:
        backend.close()
    assert [r["request_id"] for r in query_rows(pg_url)] == [f"req-{i}" for i in range(1, 7)]
    assert pg_rows(pg_url, "SELECT journal_id, replayed_bytes FROM spill_replays") == [
        ("j2", 50)]


def test_a_dropped_connection_is_unavailable_then_reopened(pg_url: str) -> None:
    backend = PostgresBackend(pg_url, "db", application_name="tw-test-drop")
    backend.open()
    backend.migrate()
    try:
        assert backend.write_rows(payload_of(1), taken_at=0.0).rows == 1
        admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              "WHERE application_name = 'tw-test-drop'")
        with pytest.raises(LedgerUnavailable):
            backend.write_rows(payload_of(2), taken_at=0.0)
        assert backend.write_rows(payload_of(2), taken_at=0.0).rows == 1
    finally:
        backend.close()
    assert len(query_rows(pg_url)) == 2


def test_an_outage_spills_to_the_journal_and_replays_each_row_once(
        pg_url: str, tmp_path: pathlib.Path) -> None:
    name = database_of(pg_url)
    ledger = pg_ledger(pg_url, path=str(tmp_path / "pg"), retry_s=0.05, flush_ms=1)
    ledger.start()
    try:
        for i in range(50):
            ledger.record(make_rec(i))
        assert ledger.wait_idle(10) and ledger.written == 50
        # The database goes away: no new connection, the open ones cut.
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
              name)
        for i in range(50, 120):
            ledger.record(make_rec(i))
        wait_until(lambda: ledger.spilled == 70 and ledger.queued == 0, "rows journaled")
        stats = ledger.stats()
        assert stats["state"] == "spilling" and stats["journal_rows"] == 70
        assert "cannot connect" in stats["last_error"] or "write" in stats["last_error"]
        assert list(tmp_path.glob("pg.spill*"))
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        wait_until(lambda: ledger.stats()["journal_rows"] == 0, "journal replayed")
        for i in range(120, 130):
            ledger.record(make_rec(i))
    finally:
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert ledger.close()
    stats = ledger.stats()
    assert (stats["written"], stats["replayed"], stats["dropped"]) == (130, 70, 0)
    assert pg_rows(pg_url, "SELECT count(*), count(DISTINCT request_id) FROM requests") == [
        (130, 130)]
    assert not list(tmp_path.glob("pg.spill*"))  # replayed and removed


# -- reads ----------------------------------------------------------------------------


def varied(i: int) -> DictRecord:
    return make_rec(i, model=["gpt-4o", "gpt-4o-mini", "claude-3[x]", "o1"][i % 4],
                    served_model=None if i % 5 == 0 else f"served-{i % 3}",
                    provider=["openai", "anthropic", None][i % 3],
                    status=[200, 429, 500, 200][i % 4], api_key_id=["key_a", None][i % 2],
                    cost_usd=None if i % 7 == 0 else 0.001 * i,
                    error_kind="stream_cut" if i == 8 else None,
                    ts=1_700_000_000.0 + i * 20_000)


def test_gateway_usage_prints_the_same_as_for_sqlite(pg_url: str, tmp_path: pathlib.Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    records = [varied(i) for i in range(60)]
    lite = str(tmp_path / "l.db")
    fill(Ledger(lite), records)
    fill(pg_ledger(pg_url, path=str(tmp_path / "pg")), records)
    views = [[], ["--json"], ["--csv"], ["--limit", "7"], ["--model", "gpt-4o*"],
             ["--model", "claude-3[[]x]"], ["--model", "o?"], ["--since", "1700500000"],
             *(["--by", by] for by in GROUP_BY), ["--by", "model", "--json"],
             ["--by", "day", "--since", "1700600000"]]
    for view in views:
        assert usage_main(["--db", lite, *view]) == 0
        want = capsys.readouterr().out
        assert usage_main(["--database-url", pg_url, *view]) == 0
        got = capsys.readouterr().out
        assert len(want.splitlines()) > 1, view
        if view[:1] == ["--by"] and "--json" in view:
            # Full-precision sums: SQLite adds with Kahan-Babuska-Neumaier
            # compensation (https://sqlite.org/lang_aggfunc.html#sumunc), PostgreSQL
            # without, so the last digits may differ.
            assert json.loads(got) == [{**g, "cost_usd": pytest.approx(g["cost_usd"])}
                                       for g in json.loads(want)]
        else:
            assert got == want, view


def test_reads_for_tail_and_audit(pg_url: str, tmp_path: pathlib.Path) -> None:
    fill(pg_ledger(pg_url, path=str(tmp_path / "pg")), [varied(i) for i in range(30)])
    backend = open_backend(pg_url, readonly=True)
    backend.open()
    try:
        last, rows = backend.rows_after(-1)
        assert (last, rows) == (30, [])
        last, rows = backend.rows_after(0, limit=10)
        assert last == 10 and [r["request_id"] for r in rows] == [f"req-{i}" for i in range(10)]
        assert isinstance(rows[0]["stream"], bool)
        _, rest = backend.rows_after(25, since=1_700_000_000.0 + 27 * 20_000)
        assert [r["request_id"] for r in rest] == ["req-27", "req-28", "req-29"]
        got = sorted(backend.scan(("request_id", "status"), start=1_700_000_000.0 + 20_000,
                                  end=1_700_000_000.0 + 4 * 20_000))
        assert got == [("req-1", 429), ("req-2", 500), ("req-3", 200)]
        with pytest.raises(LedgerError, match="no column"):
            list(backend.scan(("nope",), start=0, end=1))
    finally:
        backend.close()


def test_a_database_without_the_ledger_is_refused_for_reading(pg_url: str) -> None:
    with pytest.raises(LedgerError, match="not a tokenway ledger"):
        query_rows(pg_url)


def test_an_unreachable_server_is_reported_without_the_password(
        capsys: pytest.CaptureFixture) -> None:
    url = f"postgresql://tw:{SECRET}@127.0.0.1:1/ledger"
    with pytest.raises(LedgerUnavailable) as info:
        query_rows(url)
    assert "cannot connect to postgresql://tw:***@127.0.0.1:1/ledger" in str(info.value)
    assert SECRET not in str(info.value)
    assert usage_main(["--database-url", url]) == 2
    err = capsys.readouterr().err
    assert "cannot connect" in err and SECRET not in err
    assert parse_storage_url(url).shown in err


@pytest.mark.parametrize(("glob", "matches", "misses"), [
    ("gpt-4o*", ["gpt-4o", "gpt-4o-mini"], ["gpt-4", "xgpt-4o"]),
    ("o?", ["o1", "o3"], ["o", "o12"]),
    ("claude-3[[]x]", ["claude-3[x]"], ["claude-3x"]),
    ("m[a-c]", ["ma", "mc"], ["md", "m-"]),
    ("m[^a]", ["mb"], ["ma"]),
    ("a.b+c(d)", ["a.b+c(d)"], ["aXb+c(d)", "a.bbc(d)"]),
    ("x[", [], ["x[", "x"]),
])
def test_glob_regex_matches_as_sqlite_glob(pg_url: str, glob: str, matches: list[str],
                                           misses: list[str]) -> None:
    import apsw

    lite = apsw.Connection(":memory:")
    regex = glob_regex(glob)
    for text in matches + misses:
        want = bool(lite.execute("SELECT ? GLOB ?", (text, glob)).get)
        [(got,)] = pg_rows(pg_url, "SELECT %s::text ~ %s::text", text, regex)
        assert got == want == (text in matches), (glob, text)


def test_only_the_postgres_module_imports_psycopg() -> None:
    # As with apsw (test_ledger.py): the driver stays behind the backend interface,
    # and a SQLite-only install never imports it.
    root = pathlib.Path(__file__).resolve().parents[2] / "proxy"
    offenders = set()
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "import psycopg" in text or "from psycopg" in text:
            offenders.add(path.relative_to(root).as_posix())
    assert offenders == {"ledger/postgres.py"}
