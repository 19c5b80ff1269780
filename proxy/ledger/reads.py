"""The ledger reads both backends share: the ``query_groups`` SQL and the row dicts.

The grouping query is written once, in the SQL that SQLite and PostgreSQL both
speak (``coalesce(sum(...), 0)`` rather than SQLite's ``total()``, ``CAST(... AS
BIGINT)`` so PostgreSQL hands back integers rather than numerics); what differs is
passed in as a ``Dialect``: the parameter marker and the UTC day of a unix time.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from proxy.ledger.backend import LedgerError
from proxy.ledger.schema import KEYS_TABLE, LEDGER_COLUMNS, TABLE, USERS_TABLE

#: The fields of each ``query_groups`` row.
GROUP_FIELDS = ("group", "name", "requests", "errors", "input_tokens", "output_tokens",
                "cost_usd", "unknown_cost")
GROUP_BY = ("key", "user", "model", "provider", "day")


class Dialect(NamedTuple):
    param: str  # the placeholder of one bound value: "?" (apsw) or "%s" (psycopg)
    day: str  # the UTC day ("YYYY-MM-DD") of the unix time in column {ts}
    rowid: str  # the row number in insertion order: SQLite's rowid, PostgreSQL's id
    # What makes every row numbered up to max(rowid) final before a rollup reads
    # it (retention.py): SQLite's BEGIN IMMEDIATE already does; PostgreSQL waits
    # for the inserts in flight (SHARE conflicts with their ROW EXCLUSIVE).
    settle: str


SQLITE_DIALECT = Dialect("?", "date({ts}, 'unixepoch')", "rowid", "")
# to_timestamp() gives a timestamptz; AT TIME ZONE 'UTC' makes it a UTC wall time
# (https://www.postgresql.org/docs/current/functions-datetime.html).
POSTGRES_DIALECT = Dialect("%s", "to_char(to_timestamp({ts}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
                           "id", f"LOCK TABLE {TABLE} IN SHARE MODE")


def groups_sql(by: str, since: float | None, present: set[str], tables: set[str],
               dialect: Dialect, *, before: float | None = None,
               after_row: int | None = None) -> tuple[str, list[Any]]:
    """One ``GROUP BY`` over the ledger (columns an older schema lacks read as NULL):
    the rows with ``since <= ts < before`` and a row number above ``after_row``
    (each bound only when given)."""

    def col(name: str) -> str:
        return f"r.{name}" if name in present else "NULL"

    joins, name = "", "NULL"
    keyed = "api_key_id" in present and KEYS_TABLE in tables
    if by == "key":
        group = col("api_key_id")
        if keyed:
            joins, name = f" LEFT JOIN {KEYS_TABLE} k ON k.id = r.api_key_id", "max(k.name)"
    elif by == "user":
        group = "NULL"
        if keyed and USERS_TABLE in tables:
            joins = (f" LEFT JOIN {KEYS_TABLE} k ON k.id = r.api_key_id"
                     f" LEFT JOIN {USERS_TABLE} u ON u.id = k.user_id")
            group = "u.name"
    elif by == "model":  # what was billed: the served model, else the requested one
        group = f"coalesce({col('served_model')}, {col('model')})"
    elif by == "provider":
        group = col("provider")
    elif by == "day":  # UTC, as the spend table counts days
        group = dialect.day.format(ts="r.ts")
    else:
        raise LedgerError(f"cannot group by {by!r} (one of: {', '.join(GROUP_BY)})")
    cost = col("cost_usd")
    conds: list[str] = []
    params: list[Any] = []
    for cond, value in ((f"r.ts >= {dialect.param}", since),
                        (f"r.ts < {dialect.param}", before),
                        (f"r.{dialect.rowid} > {dialect.param}", after_row)):
        if value is not None:
            conds.append(cond)
            params.append(value)
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    # Errors as the row view counts them: an error status, or an error kind (a
    # stream cut after its 200 head).
    total = f"coalesce(sum({cost}), 0)"
    order = "grp" if by == "day" else f"{total} DESC, count(*) DESC, grp"
    sql = (f"SELECT {group} AS grp, {name}, count(*), "
           f"CAST(sum(CASE WHEN r.status >= 400 OR {col('error_kind')} IS NOT NULL "
           "THEN 1 ELSE 0 END) AS BIGINT), "
           "CAST(coalesce(sum(r.input_tokens), 0) AS BIGINT), "
           "CAST(coalesce(sum(r.output_tokens), 0) AS BIGINT), "
           f"sum({cost}), CAST(sum(CASE WHEN {cost} IS NULL THEN 1 ELSE 0 END) AS BIGINT) "
           f"FROM {TABLE} r{joins}{where} GROUP BY grp ORDER BY {order}")
    return sql, params


def as_rows(columns: list[str], records: list[Any]) -> list[dict[str, Any]]:
    """Row dicts with every ``LEDGER_COLUMNS`` key (columns an older schema lacks
    read as unknown) and ``stream`` as a bool."""
    if len(columns) == len(LEDGER_COLUMNS):
        rows = [dict(zip(LEDGER_COLUMNS, r, strict=True)) for r in records]
    else:
        blank = dict.fromkeys(LEDGER_COLUMNS)
        rows = [{**blank, **dict(zip(columns, r, strict=True))} for r in records]
    for row in rows:
        if row["stream"] is not None:
            row["stream"] = bool(row["stream"])
    return rows


def glob_regex(pattern: str) -> str:
    """A POSIX regular expression (PostgreSQL's ``~``) matching what SQLite's GLOB
    matches: ``*`` any run, ``?`` one character, ``[...]`` a set (``[^...]``
    negated), everything else literally and case-sensitively
    (https://sqlite.org/lang_expr.html#the_like_glob_regexp_match_and_extract_operators)."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: SQLite matches nothing; "a^" neither
                return "a^"
            body = pattern[i + 1:j]
            negate = body.startswith("^")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\")
            if body.startswith("]"):
                body = "\\]" + body[1:]
            out.append(f"[{'^' if negate else ''}{body}]")
            i = j
        else:
            out.append("\\" + c if not c.isalnum() and c != "_" else c)
        i += 1
    out.append("$")
    return "".join(out)
