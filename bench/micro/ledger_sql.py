"""Where the SQLite ledger writer's CPU goes: each piece of a batch write, alone.

    python -m bench.micro.ledger_sql [--batches 100] [--repeat 3] [--keyed]

Every variant writes (or reads) the same ``--batches`` batches of 512 gateway-shaped
rows (``bench.micro.ledger.BenchRecord``) into a new ledger file (the real schema,
migrated), one transaction per batch, and is timed with the calling thread's CPU clock
(``time.thread_time``: SQLite runs on this thread, GIL or not). The variants run in
turn, ``--repeat`` rounds, so that load on the machine hits them alike; the figures
are the minimum and the maximum over the rounds, in us per row.

- ``write_rows``, both ways: the backend's whole write (``SQLiteBackend`` given the
  rows, as the writer gives them, or only the JSON, as a replay does; and the same
  with the bound INSERT turned off: the JSON INSERT, the check scan, the repairs).
- the checked way's pieces: expanding the JSON (``jsonb_each``), reading its 27
  values out of JSONB (``json_extract``), the JSON INSERT alone, then with the scan.
- the bound way's pieces: flattening the rows; binding them to a
  ``SELECT count(*) FROM (VALUES ...)`` (no table); the bound INSERT alone.
- the floor: the plain bound INSERT (no tests), with the table's indexes, with the
  model index of schema step 7 put back, and into a table in memory without indexes.

``--keyed`` gives every row one of 20 API keys, so the spend upsert has work to do.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import apsw
import orjson

from bench.micro.ledger import BenchRecord
from proxy.ledger import sqlite as ledger_sqlite
from proxy.ledger.schema import LEDGER_COLUMNS, SQLITE_MIGRATIONS, TABLE
from proxy.ledger.sqlite import SQLiteBackend
from proxy.ledger.values import Encoded, encode_batch

ROWS = 512
WIDTH = len(LEDGER_COLUMNS)
BOUND_ROWS = 256  # the bound INSERT's largest statement (sqlite._BOUND_ROWS)


class CheckedOnly(SQLiteBackend):
    """Every batch the checked way, as before the bound INSERT."""

    @staticmethod
    def _insert_bound(db: apsw.Connection, payload: bytes, rows: Any) -> int | None:
        return None


def _plain_sql(rows: int) -> str:
    row = "(" + ",".join("?" * WIDTH) + ")"
    return f"INSERT INTO {TABLE} ({','.join(LEDGER_COLUMNS)}) VALUES {','.join([row] * rows)}"


def _bound(db: apsw.Connection, sql: str, encoded: Encoded) -> None:
    assert encoded.row_values is not None
    values = list(itertools.chain.from_iterable(encoded.row_values))
    step = BOUND_ROWS * WIDTH
    for start in range(0, len(values), step):
        db.execute(sql, values[start:start + step]).fetchall()


def _variants() -> dict[str, tuple[Callable[[Any, apsw.Connection, Encoded], None], str]]:
    """name -> (write one batch, setup: '' | 'model index' | 'memory')."""
    extract = ", ".join(f"count(json_extract(value, '$[{i}]'))" for i in range(WIDTH))
    bound_sql = ledger_sqlite._BOUND_SQL[BOUND_ROWS]
    plain_sql = _plain_sql(BOUND_ROWS)
    values_sql = "SELECT count(*) FROM (VALUES " + ",".join(
        ["(" + ",".join("?" * WIDTH) + ")"] * BOUND_ROWS) + ")"

    def sql_each(sql: str) -> Callable[[Any, apsw.Connection, Encoded], None]:
        return lambda b, db, e: db.execute(sql, (e.payload,)).fetchall() and None

    def checked_and_scan(b: Any, db: apsw.Connection, e: Encoded) -> None:
        db.execute(ledger_sqlite._INSERT_SQL, (e.payload,))
        before = db.last_insert_rowid() - db.changes()
        db.execute(ledger_sqlite._CHECK_SQL, (before,)).fetchall()

    def flatten(b: Any, db: apsw.Connection, e: Encoded) -> None:
        assert e.row_values is not None
        list(itertools.chain.from_iterable(e.row_values))

    def loads_flatten(b: Any, db: apsw.Connection, e: Encoded) -> None:
        list(itertools.chain.from_iterable(orjson.loads(e.payload)))

    return {
        "write_rows, bound, rows given (now)": (lambda b, db, e: None, ""),
        "write_rows, bound, from the JSON": (lambda b, db, e: None, ""),
        "write_rows, checked way (before)": (lambda b, db, e: None, "checked"),
        "checked: jsonb_each only": (sql_each("SELECT count(*) FROM jsonb_each(?)"), ""),
        "checked: + 27 json_extract": (sql_each(f"SELECT {extract} FROM jsonb_each(?)"), ""),
        "checked: JSON INSERT": (sql_each(ledger_sqlite._INSERT_SQL), ""),
        "checked: JSON INSERT + check scan": (checked_and_scan, ""),
        "bound: flatten the rows": (flatten, ""),
        "bound: orjson.loads + flatten": (loads_flatten, ""),
        "bound: + bind, SELECT of VALUES": (lambda b, db, e: _bound(db, values_sql, e), ""),
        "bound: INSERT with tests": (lambda b, db, e: _bound(db, bound_sql, e), ""),
        "floor: INSERT, no tests": (lambda b, db, e: _bound(db, plain_sql, e), ""),
        "floor: INSERT, + model index": (lambda b, db, e: _bound(db, plain_sql, e),
                                         "model index"),
        "floor: INSERT, memory, no index": (lambda b, db, e: _bound(db, plain_sql, e),
                                            "memory"),
    }


def _run(name: str, write: Callable[[Any, apsw.Connection, Encoded], None], setup: str,
         batches: list[Encoded]) -> float:
    tmp = tempfile.mkdtemp(prefix="ledger-sql-")
    try:
        if setup == "memory":
            db = apsw.Connection(":memory:")
            for step in SQLITE_MIGRATIONS:
                for statement in step.statements:
                    db.execute(statement)
            db.execute(f"DROP INDEX IF EXISTS {TABLE}_ts")
            backend: Any = None
        else:
            backend = (CheckedOnly if setup == "checked" else SQLiteBackend)(
                os.path.join(tmp, "ledger.db"))
            backend.open()
            backend.migrate()
            db = backend.connection()
            if setup == "model index":
                db.execute(f"CREATE INDEX {TABLE}_model ON {TABLE}(model)")
        whole = name.startswith("write_rows")
        cpu0 = time.thread_time()
        for encoded in batches:
            if whole:
                rows = encoded.row_values if "rows given" in name else None
                backend.write_rows(encoded.payload, taken_at=1.0, rows=rows)
                continue
            db.execute("BEGIN IMMEDIATE")
            write(backend, db, encoded)
            db.execute("COMMIT")
        cpu = time.thread_time() - cpu0
        if name.startswith(("write_rows", "floor", "bound: INSERT", "checked: JSON")):
            # Fail rather than print a figure for rows that were not stored.
            stored = db.execute(f"SELECT count(*) FROM {TABLE}").get
            if stored != len(batches) * ROWS:
                raise SystemExit(f"{name}: {stored} of {len(batches) * ROWS} rows stored")
        if backend is not None:
            backend.close()
        else:
            db.close()
        return cpu / (len(batches) * ROWS) * 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro.ledger_sql")
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--keyed", action="store_true", help="rows carry one of 20 API keys")
    args = p.parse_args(argv)
    t0 = time.time()
    batches = []
    for k in range(args.batches):
        records = [BenchRecord(k * ROWS + i, t0) for i in range(ROWS)]
        if args.keyed:
            for i, rec in enumerate(records):
                rec.api_key_id = f"key_{i % 20}"
        encoded = encode_batch(records)
        assert encoded.rows == ROWS and not encoded.notes
        batches.append(encoded)
    variants = _variants()
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name, (write, setup) in variants.items():
            runs[name].append(_run(name, write, setup, batches))
    print(f"SQLite {apsw.sqlite_lib_version()}, {args.batches} batches of {ROWS} rows, "
          f"{args.repeat} rounds{', keyed' if args.keyed else ''}; us of CPU per row")
    print(f"{'':38} {'min':>6} {'max':>6}")
    for name, values in runs.items():
        print(f"{name:38} {min(values):6.2f} {max(values):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
