"""Daily rollups and pruning: a ledger that stays fast at a hundred million rows.

``rollup`` adds the rows stored since the last rollup to ``ledger_daily``: one
row per UTC day, API key, model (the served one, else the requested one) and
provider, with the request, error, token and cost totals.  The rows taken are
those numbered (SQLite's rowid, PostgreSQL's id) up to the highest number when
the rollup began, and ``ledger_rollup.through_id`` remembers it, so each row is
counted once however late it arrived (a spill journal replayed days after its
requests adds to those days).  Numbers up to that point are final: SQLite has
one writer at a time, and on PostgreSQL the rollup first waits for the inserts
in flight (``Dialect.settle``).

``prune`` rolls up, then deletes the rows of whole UTC days before a cutoff;
their totals stay in ``ledger_daily`` (budgets never read rows: they keep their
own spend table).  The newest row is always kept, so SQLite never hands out a
row number twice.

``groups`` is ``gateway usage --by``: the totals of ``ledger_daily`` for the
whole days of the window, plus the rows not rolled up yet, plus the rows of a
first, partial day; the same answer as summing every row, read in a fraction of
the time once old days are rolled up.

Every statement runs through the backend's ``AccountsSession`` (``?`` for each
bound value), in short transactions of at most ``CHUNK_ROWS`` rows.
"""

from __future__ import annotations

import math
import time
from typing import Any

from proxy.ledger.backend import AccountsSession
from proxy.ledger.reads import GROUP_BY, GROUP_FIELDS, Dialect, groups_sql
from proxy.ledger.schema import (
    DAILY_TABLE,
    KEYS_TABLE,
    ROLLUP_TABLE,
    TABLE,
    USERS_TABLE,
)

DAY_S = 86400.0
# Rows per rollup or delete transaction: a few seconds of work, so writers and
# readers are never held for long.
CHUNK_ROWS = 500_000


def _upsert_sql(dialect: Dialect) -> str:
    day = dialect.day.format(ts="ts")
    rowid = dialect.rowid
    return (
        f"INSERT INTO {DAILY_TABLE} (day, api_key_id, model, provider, requests, errors, "
        "input_tokens, output_tokens, cost_usd, unknown_cost) "
        f"SELECT {day}, coalesce(api_key_id, ''), coalesce(served_model, model, ''), "
        "coalesce(provider, ''), count(*), "
        "sum(CASE WHEN status >= 400 OR error_kind IS NOT NULL THEN 1 ELSE 0 END), "
        "coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), sum(cost_usd), "
        "sum(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) "
        f"FROM {TABLE} WHERE {rowid} > ? AND {rowid} <= ? "
        "GROUP BY 1, 2, 3, 4 "
        "ON CONFLICT (day, api_key_id, model, provider) DO UPDATE SET "
        f"requests = {DAILY_TABLE}.requests + excluded.requests, "
        f"errors = {DAILY_TABLE}.errors + excluded.errors, "
        f"input_tokens = {DAILY_TABLE}.input_tokens + excluded.input_tokens, "
        f"output_tokens = {DAILY_TABLE}.output_tokens + excluded.output_tokens, "
        f"cost_usd = CASE WHEN excluded.cost_usd IS NULL THEN {DAILY_TABLE}.cost_usd "
        f"WHEN {DAILY_TABLE}.cost_usd IS NULL THEN excluded.cost_usd "
        f"ELSE {DAILY_TABLE}.cost_usd + excluded.cost_usd END, "
        f"unknown_cost = {DAILY_TABLE}.unknown_cost + excluded.unknown_cost")


def rolled_through(session: AccountsSession) -> int:
    return int(session.rows(f"SELECT through_id FROM {ROLLUP_TABLE}")[0][0])


def rollup(session: AccountsSession, dialect: Dialect, *, chunk: int = CHUNK_ROWS) -> int:
    """Roll up every row stored since the last rollup; the number of rows taken."""
    rowid = dialect.rowid
    with session.change():
        if dialect.settle:
            session.run(dialect.settle)
        top = session.rows(f"SELECT max({rowid}) FROM {TABLE}")[0][0] or 0
    upsert = _upsert_sql(dialect)
    taken = 0
    while True:
        with session.change():
            done = rolled_through(session)  # another rollup may have moved it
            if done >= top:
                return taken
            hi = min(done + chunk, top)
            taken += int(session.rows(
                f"SELECT count(*) FROM {TABLE} WHERE {rowid} > ? AND {rowid} <= ?",
                (done, hi))[0][0])
            session.run(upsert, (done, hi))
            session.run(f"UPDATE {ROLLUP_TABLE} SET through_id = ?", (hi,))


def cutoff_day(before: float) -> float:
    """The start (unix seconds) of the UTC day holding ``before``: rows of the days
    before it are pruned, that day's are kept."""
    return math.floor(before / DAY_S) * DAY_S


def prune(session: AccountsSession, dialect: Dialect, before: float, *,
          chunk: int = CHUNK_ROWS) -> int:
    """Roll up, then delete the rows of the whole UTC days before the day holding
    ``before``; the number of rows deleted."""
    rollup(session, dialect, chunk=chunk)
    cutoff = cutoff_day(before)
    rowid = dialect.rowid
    deleted = 0
    while True:
        with session.change():
            done = rolled_through(session)
            n = session.run(
                f"DELETE FROM {TABLE} WHERE {rowid} IN (SELECT {rowid} FROM {TABLE} "
                f"WHERE ts < ? AND {rowid} <= ? AND {rowid} < "
                f"(SELECT max({rowid}) FROM {TABLE}) LIMIT {int(chunk)})",
                (cutoff, done))
        deleted += n
        if n < chunk:
            return deleted


class Retention:
    """``LedgerBackend.rollup`` and ``prune`` for a backend with ``session()`` and a
    ``dialect`` (both backends inherit them)."""

    dialect: Dialect

    def session(self) -> AccountsSession:
        raise NotImplementedError

    def rollup(self) -> int:
        """Add the rows stored since the last rollup to the daily totals."""
        return rollup(self.session(), self.dialect)

    def prune(self, before: float) -> int:
        """Roll up, then delete the rows of the whole UTC days before ``before``'s."""
        return prune(self.session(), self.dialect, before)


def _daily_sql(by: str, from_day: str | None, tables: set[str]) -> tuple[str, list[Any]]:
    joins, name = "", "NULL"
    if by == "key":
        group = "NULLIF(d.api_key_id, '')"
        if KEYS_TABLE in tables:
            joins, name = f" LEFT JOIN {KEYS_TABLE} k ON k.id = d.api_key_id", "max(k.name)"
    elif by == "user":
        group = "NULL"
        if KEYS_TABLE in tables and USERS_TABLE in tables:
            joins = (f" LEFT JOIN {KEYS_TABLE} k ON k.id = d.api_key_id"
                     f" LEFT JOIN {USERS_TABLE} u ON u.id = k.user_id")
            group = "u.name"
    elif by == "model":
        group = "NULLIF(d.model, '')"
    elif by == "provider":
        group = "NULLIF(d.provider, '')"
    else:
        group = "d.day"
    where, params = "", []
    if from_day is not None:
        where, params = " WHERE d.day >= ?", [from_day]
    return (f"SELECT {group} AS grp, {name}, CAST(sum(d.requests) AS BIGINT), "
            "CAST(sum(d.errors) AS BIGINT), CAST(sum(d.input_tokens) AS BIGINT), "
            "CAST(sum(d.output_tokens) AS BIGINT), sum(d.cost_usd), "
            f"CAST(sum(d.unknown_cost) AS BIGINT) FROM {DAILY_TABLE} d{joins}{where} "
            "GROUP BY grp", params)


def groups(session: AccountsSession, dialect: Dialect, by: str, since: float | None,
           present: set[str], tables: set[str]) -> list[dict[str, Any]]:
    """``LedgerBackend.query_groups`` over rollups and rows (see the module)."""
    if by not in GROUP_BY:
        groups_sql(by, since, present, tables, dialect)  # raises the LedgerError
    marker = "?"  # the session's own placeholder, whatever the driver's
    plain = dialect._replace(param=marker)
    done = rolled_through(session) if DAILY_TABLE in tables else 0
    if not done:
        sql, params = groups_sql(by, since, present, tables, plain)
        return [dict(zip(GROUP_FIELDS, r, strict=True)) for r in session.rows(sql, params)]
    first_full = None if since is None else math.ceil(since / DAY_S) * DAY_S
    parts: list[tuple[Any, ...]] = []
    if since is not None and first_full is not None and since < first_full:
        sql, params = groups_sql(by, since, present, tables, plain, before=first_full)
        parts += session.rows(sql, params)
    sql, params = groups_sql(by, first_full, present, tables, plain, after_row=done)
    parts += session.rows(sql, params)
    from_day = None
    if first_full is not None:
        from_day = time.strftime("%Y-%m-%d", time.gmtime(first_full))
    sql, params = _daily_sql(by, from_day, tables)
    parts += session.rows(sql, params)
    return _merge(parts, by)


def _merge(parts: list[tuple[Any, ...]], by: str) -> list[dict[str, Any]]:
    merged: dict[Any, list[Any]] = {}
    for grp, name, requests, errors, inp, out, cost, unknown in parts:
        row = merged.get(grp)
        if row is None:
            merged[grp] = [grp, name, requests, errors, inp, out, cost, unknown]
            continue
        row[1] = row[1] if row[1] is not None else name
        row[2] += requests
        row[3] += errors
        row[4] += inp
        row[5] += out
        row[6] = cost if row[6] is None else (row[6] if cost is None else row[6] + cost)
        row[7] += unknown
    rows = list(merged.values())
    if by == "day":
        rows.sort(key=lambda r: (r[0] is None, r[0] or ""))
    else:
        rows.sort(key=lambda r: (-(r[6] or 0.0), -r[2], r[0] is None, str(r[0] or "")))
    return [dict(zip(GROUP_FIELDS, r, strict=True)) for r in rows]
