"""``gateway usage``: show what the ledger recorded.

    gateway usage [--db PATH | --database-url URL] [--json|--csv] [--since SINCE]
                  [--model NAME_OR_GLOB] [--limit N]
    gateway usage --by key|user|model|provider|day [--since SINCE] [--json|--csv]

Reads the ledger over a read-only connection (safe while the daemon runs) and
prints an aligned table with a totals line, or with ``--json`` a JSON array of
row objects (one per line), or CSV. Rows come oldest first; ``--limit`` keeps
the newest N. ``--by`` prints totals per group instead (``usage_report.py``).
Exit status: 0 on success, 2 for bad arguments or an unreadable database.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from proxy.cli_args import aligned, count
from proxy.ledger import DEFAULT_DB_PATH, LEDGER_COLUMNS, LedgerError, query_groups, query_rows
from proxy.ledger.reads import GROUP_BY
from proxy.ledger.spill import journal_backlog
from proxy.ledger.url import SQLITE, StorageURL, parse_storage_url
from proxy.usage_report import (
    fmt_usd,
    parse_since,
    write_groups_csv,
    write_groups_json,
    write_groups_table,
)

# Rows shown when --limit is not given: enough for a terminal page or two, and
# a guard against dumping millions of rows by accident. `--limit 0` shows all.
DEFAULT_LIMIT_ROWS = 100

EXIT_OK = 0
EXIT_USAGE = 2


def default_db_path() -> str:
    """``$TOKENWAY_DB`` when set (as for gatewayd), else ./tokenway.db."""
    return os.environ.get("TOKENWAY_DB", "").strip() or DEFAULT_DB_PATH


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", metavar="URL",
        help="the ledger database as a URL instead of --db: sqlite:///PATH or "
             "postgresql://USER@HOST/DBNAME (default: $TOKENWAY_DATABASE_URL)")


def ledger_location(db: str | None, database_url: str | None) -> StorageURL:
    """Where the ledger is: ``--database-url``, else ``--db``, else
    ``$TOKENWAY_DATABASE_URL``, else ``$TOKENWAY_DB``, else ./tokenway.db.
    ``ValueError`` (showing no password) for a URL that names no database."""
    if database_url:
        return parse_storage_url(database_url)
    if not db and os.environ.get("TOKENWAY_DATABASE_URL", "").strip():
        return parse_storage_url(os.environ["TOKENWAY_DATABASE_URL"])
    path = db or default_db_path()
    return StorageURL(SQLITE, path, None, path)


def journal_notes(where: StorageURL) -> None:
    """Tell about rows still waiting in a SQLite ledger's spill journals. (With
    PostgreSQL each gateway keeps its journal on its own machine.)"""
    if where.path is None:
        return
    for path, waiting in journal_backlog(where.path):
        print(f"note: {path} holds {waiting} row(s) not in the database yet; gatewayd "
              "replays them when the database takes writes (or at its next start)",
              file=sys.stderr)


def _since_arg(text: str) -> float:
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_limit_arg = count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway usage",
        description="Show requests recorded in the tokenway ledger, oldest first.",
    )
    parser.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help=f"ledger database (default: $TOKENWAY_DB, else {DEFAULT_DB_PATH}, as for "
        "gatewayd)",
    )
    add_database_url(parser)
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON array of objects")
    fmt.add_argument("--csv", action="store_true", help="print CSV with a header line")
    parser.add_argument(
        "--by",
        choices=GROUP_BY,
        help="totals per API key, user, model (served, else requested), provider or "
        "UTC day: requests, errors, tokens, cost, and requests of unknown cost",
    )
    parser.add_argument(
        "--since",
        type=_since_arg,
        metavar="SINCE",
        help="only requests started at or after SINCE: 15m, 2h, 7d, a unix "
        "timestamp, or an ISO date/time (local time unless it has an offset)",
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_GLOB",
        help="only requests whose requested or served model is NAME, or matches "
        "a glob such as 'gpt-4o*' (case-sensitive)",
    )
    parser.add_argument(
        "--limit",
        type=_limit_arg,
        default=DEFAULT_LIMIT_ROWS,
        metavar="N",
        help=f"show the newest N matching rows (default: {DEFAULT_LIMIT_ROWS}; "
        "0 for all)",
    )
    return parser


def usage_main(argv: list[str]) -> int:
    """Run ``gateway usage`` with ``argv`` (the words after ``usage``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    limit = args.limit or None
    if args.by and args.model:
        print("gateway usage: --model applies to the row view, not to --by", file=sys.stderr)
        return EXIT_USAGE
    try:
        where = ledger_location(args.db, args.database_url)
        if args.by:
            groups = query_groups(where, args.by, since=args.since)
        else:
            rows = query_rows(where, since=args.since, model=args.model, limit=limit)
    except (LedgerError, ValueError) as exc:
        print(f"gateway usage: error: {exc}", file=sys.stderr)
        if isinstance(exc, LedgerError) and where.path and not os.path.exists(where.path):
            print(
                "  (gatewayd creates it on start; pass --db to read another file)",
                file=sys.stderr,
            )
        return EXIT_USAGE
    journal_notes(where)
    try:
        if args.by:
            write = (write_groups_json if args.json else write_groups_csv if args.csv
                     else write_groups_table)
            write(groups, args.by, sys.stdout)
        elif args.json:
            write_json(rows, sys.stdout)
        elif args.csv:
            write_csv(rows, sys.stdout)
        else:
            write_table(rows, sys.stdout)
            if limit is not None and len(rows) == limit:
                print(
                    f"(newest {limit} rows shown; --limit 0 shows all)", file=sys.stderr
                )
        sys.stdout.flush()
    except BrokenPipeError:
        # `gateway usage | head`: stop quietly, and keep the interpreter from
        # reporting the same error again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


# -- output ------------------------------------------------------------------


def write_json(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    """A JSON array, one row object per line (greppable, and still one value)."""
    if not rows:
        out.write("[]\n")
        return
    out.write("[\n")
    last = len(rows) - 1
    for i, row in enumerate(rows):
        obj = {c: row.get(c) for c in LEDGER_COLUMNS}
        out.write(json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")))
        out.write(",\n" if i < last else "\n")
    out.write("]\n")


def write_csv(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    """Every ledger column, a header line first; NULL is an empty field."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LEDGER_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in LEDGER_COLUMNS])


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_num(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def _fmt_bool(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def _fmt_model(row: dict[str, Any]) -> str:
    model = row.get("model") or "-"
    served = row.get("served_model")
    if served and served != model:
        return f"{model} ({served})"
    return model


def _is_error(row: dict[str, Any]) -> bool:
    status = row.get("status")
    return row.get("error_kind") is not None or (status is not None and status >= 400)


# (header, cell function, right-aligned)
_TABLE: tuple[tuple[str, Any, bool], ...] = (
    ("TIME", lambda r: _fmt_time(r.get("ts")), False),
    ("PROTOCOL", lambda r: r.get("client_protocol") or "-", False),
    ("MODEL", _fmt_model, False),
    ("PROVIDER", lambda r: r.get("provider") or "-", False),
    ("STATUS", lambda r: _fmt_num(r.get("status")), True),
    ("ERROR", lambda r: r.get("error_kind") or "-", False),
    ("STREAM", lambda r: _fmt_bool(r.get("stream")), False),
    ("IN", lambda r: _fmt_num(r.get("input_tokens")), True),
    ("OUT", lambda r: _fmt_num(r.get("output_tokens")), True),
    ("CACHED", lambda r: _fmt_num(r.get("cached_tokens")), True),
    ("REASONING", lambda r: _fmt_num(r.get("reasoning_tokens")), True),
    ("COST_USD", lambda r: fmt_usd(r.get("cost_usd")), True),
    ("TTFB_MS", lambda r: _fmt_num(r.get("ttfb_ms")), True),
    ("LATENCY_MS", lambda r: _fmt_num(r.get("latency_ms")), True),
)

# Columns summed on the totals line.
_SUMMED = {
    "IN": "input_tokens",
    "OUT": "output_tokens",
    "CACHED": "cached_tokens",
    "REASONING": "reasoning_tokens",
}


def _total(rows: Sequence[dict[str, Any]], key: str) -> str:
    known = [r[key] for r in rows if r.get(key) is not None]
    return str(sum(known)) if known else "-"


def write_table(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    """Aligned columns, then a totals line over the rows shown."""
    if not rows:
        out.write("no requests recorded for this selection\n")
        return
    headers = [h for h, _, _ in _TABLE]
    body = [[cell(r) for _, cell, _ in _TABLE] for r in rows]
    errors = sum(1 for r in rows if _is_error(r))
    totals = [""] * len(_TABLE)
    totals[0] = f"total: {len(rows)} request{'s' if len(rows) != 1 else ''}"
    totals[headers.index("ERROR")] = f"{errors} error{'s' if errors != 1 else ''}"
    for header, key in _SUMMED.items():
        totals[headers.index(header)] = _total(rows, key)
    costs = [r["cost_usd"] for r in rows if r.get("cost_usd") is not None]
    unknown = len(rows) - len(costs)
    totals[headers.index("COST_USD")] = (fmt_usd(sum(costs)) if costs else "-") + (
        f" ({unknown} unknown)" if unknown else "")
    out.write(aligned([headers, *body, totals], [r for _, _, r in _TABLE],
                      rule_before_last=True))
