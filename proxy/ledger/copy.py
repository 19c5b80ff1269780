"""Copy a whole ledger to another database: SQLite to PostgreSQL (a machine
becoming a fleet), or back.

What moves: users, API keys (their hashes: the keys keep working) and stored
prices; every row, in row order; and, when the source has daily totals (it was
rolled up, perhaps pruned), those totals, so pruned days are not lost.  Each
key's spend per day is not copied: the target's writes rebuild it from the rows,
as they do for every row stored.

Exactly once, resumable: each batch of rows is written with a ``JournalMark``
naming this copy and the last source row number of the batch, the mechanism
the spill journal's replay uses, so a copy that stopped halfway (a network
blip, Ctrl-C) continues where it stopped when run again, and a batch is never
stored twice.  The target must hold no rows of its own (a fresh database), or
be the target of an earlier run of the same copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from proxy.ledger.backend import JournalMark, LedgerError
from proxy.ledger.schema import (
    ACCOUNTS_VERSION_TABLE,
    DAILY_TABLE,
    KEYS_TABLE,
    LEDGER_COLUMNS,
    PRICES_TABLE,
    ROLLUP_TABLE,
    SPILL_TABLE,
    TABLE,
    USERS_TABLE,
)

BATCH_ROWS = 5000
# The accounts tables, parents first (keys name their user).
_ACCOUNT_TABLES = (USERS_TABLE, KEYS_TABLE, PRICES_TABLE)
_DAILY_COLUMNS = ("day", "api_key_id", "model", "provider", "requests", "errors",
                  "input_tokens", "output_tokens", "cost_usd", "unknown_cost")


def copy_ledger(source: Any, target: Any, copy_id: str,
                progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Copy ``source`` into ``target`` (opened ``LedgerBackend``s with sessions;
    ``target`` migrated); the counts of what was copied."""
    src, dst = source.session(), target.session()
    mark_id = f"copy:{copy_id}"
    done = dst.rows(f"SELECT replayed_bytes FROM {SPILL_TABLE} WHERE journal_id = ?",
                    (mark_id,))
    after = int(done[0][0]) if done else 0
    if not done and dst.rows(f"SELECT count(*) FROM {TABLE}")[0][0]:
        raise LedgerError("the target already holds rows: copy into a new, empty database "
                          "(or run the same copy again to resume it)")
    counts = {"users": 0, "keys": 0, "prices": 0, "daily": 0, "rows": 0}
    with dst.change():
        for table, name in zip(_ACCOUNT_TABLES, ("users", "keys", "prices"), strict=True):
            counts[name] = _copy_table(src, dst, table)
        # Gateways already on the target pick the accounts up (proxy/accounts/sync.py).
        dst.run(f"UPDATE {ACCOUNTS_VERSION_TABLE} SET version = version + 1")
    rolled = _has_totals(src)
    if rolled:
        # Totals for every source row, pruned days included; the rows copied below
        # are then already counted in them.
        source.rollup()
        with dst.change():
            counts["daily"] = _copy_daily(src, dst)
    while True:
        last, rows = source.rows_after(after, limit=BATCH_ROWS)
        if not rows:
            break
        payload = orjson.dumps([[row[c] for c in LEDGER_COLUMNS] for row in rows])
        result = target.write_rows(payload, taken_at=0.0, mark=JournalMark(mark_id, last))
        if result.rejected:
            raise LedgerError(f"the target refused {len(result.rejected)} row(s) of the batch "
                              f"ending at source row {last}")
        counts["rows"] += result.rows
        after = last
        if progress is not None:
            progress(counts["rows"])
    if rolled:
        with dst.change():
            dst.run(f"UPDATE {ROLLUP_TABLE} SET through_id = "
                    f"(SELECT coalesce(max({target.dialect.rowid}), 0) FROM {TABLE})")
    return counts


_TABLE_COLUMNS = {
    USERS_TABLE: ["id", "name", "email", "role", "disabled", "created", "models", "rpm",
                  "tpm", "budget_usd", "budget_period"],
    KEYS_TABLE: ["id", "hash", "hint", "name", "user_id", "created", "expires", "revoked",
                 "models", "rpm", "tpm", "budget_usd", "budget_period"],
    PRICES_TABLE: ["pattern", "input", "output", "cache_read", "cache_write", "updated"],
}


def _copy_table(src: Any, dst: Any, table: str) -> int:
    cols = _TABLE_COLUMNS[table]
    rows = src.rows(f"SELECT {', '.join(cols)} FROM {table}")
    insert = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
              f"({', '.join('?' for _ in cols)}) ON CONFLICT DO NOTHING")
    n = 0
    for row in rows:
        n += dst.run(insert, tuple(bytes(v) if isinstance(v, memoryview) else v
                                   for v in row))
    return n


def _has_totals(src: Any) -> bool:
    try:
        return bool(src.rows(f"SELECT count(*) FROM {DAILY_TABLE}")[0][0])
    except LedgerError:
        return False


def _copy_daily(src: Any, dst: Any) -> int:
    cols = ", ".join(_DAILY_COLUMNS)
    insert = (f"INSERT INTO {DAILY_TABLE} ({cols}) VALUES "
              f"({', '.join('?' for _ in _DAILY_COLUMNS)}) ON CONFLICT DO NOTHING")
    n = 0
    for row in src.rows(f"SELECT {cols} FROM {DAILY_TABLE}"):
        n += dst.run(insert, tuple(row))
    return n
