"""``gateway ledger``: keep a long-lived ledger small and its reports fast.

    gateway ledger rollup                    # add new rows to the daily totals
    gateway ledger prune --older-than 90d    # roll up, then delete whole old days
    gateway ledger copy --to postgresql://... # move a whole ledger (resumable)

Both work on SQLite and PostgreSQL (``--db``, ``--database-url``), while
gateways write: each step is a short transaction (``proxy/ledger/retention.py``).
The daily totals (per UTC day, API key, model and provider) keep what ``gateway
usage --by`` reports for pruned days; ``gateway usage`` without ``--by`` lists
rows, so it shows only what is left.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from .audit import parse_duration
from .ledger import LedgerError, StorageURL, open_backend, parse_storage_url
from .ledger.copy import copy_ledger
from .ledger.retention import cutoff_day
from .usage_cli import EXIT_OK, EXIT_USAGE, add_database_url, ledger_location

EXIT_FAILED = 1


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gateway ledger",
        description="Daily totals and pruning of the ledger (SQLite or PostgreSQL).")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, text in (("rollup", "add the rows stored since the last rollup to the daily "
                                  "totals per UTC day, key, model and provider"),
                       ("prune", "roll up, then delete the rows of whole UTC days older "
                                 "than --older-than (their totals stay)"),
                       ("copy", "copy users, keys, prices, daily totals and every row to "
                                "another database (--to), exactly once; run it again to "
                                "resume a copy that stopped")):
        c = sub.add_parser(name, help=text, description=text)
        c.add_argument("--db", metavar="PATH",
                       help="ledger database (default: $TOKENWAY_DB, else ./tokenway.db)")
        add_database_url(c)
        if name == "copy":
            c.add_argument("--to", metavar="URL", required=True,
                           help="the new database: postgresql://USER@HOST/DBNAME, or "
                                "sqlite:///PATH; stop the gateways writing to the source first")
        if name == "prune":
            c.add_argument("--older-than", metavar="DURATION", type=_duration, required=True,
                           help="age of the rows to delete: 90d, 12w, 2160h ... (whole UTC "
                                "days before the day that is this old go)")
    return p


def ledger_main(argv: Sequence[str]) -> int:
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        where = ledger_location(args.db, args.database_url)
    except ValueError as exc:
        print(f"gateway ledger: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.cmd == "copy":
        return _copy(where, args.to)
    backend = open_backend(where)
    try:
        backend.open()
        backend.migrate()  # an older file gets the daily totals' tables first
        if args.cmd == "rollup":
            n = backend.rollup()
            print(f"{n} row(s) added to the daily totals of {where.shown}")
        else:
            before = time.time() - args.older_than
            n = backend.prune(before)
            day = time.strftime("%Y-%m-%d", time.gmtime(cutoff_day(before)))
            print(f"deleted {n} row(s) from before {day} (UTC) in {where.shown}; their "
                  "totals per day, key, model and provider stay ('gateway usage --by')")
    except LedgerError as exc:
        print(f"gateway ledger: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        backend.close()
    return EXIT_OK


def _copy(where: StorageURL, to: str) -> int:
    try:
        target_where = parse_storage_url(to)
    except ValueError as exc:
        print(f"gateway ledger copy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if target_where.shown == where.shown:
        print("gateway ledger copy: --to names the source itself", file=sys.stderr)
        return EXIT_USAGE
    source, target = open_backend(where), open_backend(target_where)
    try:
        source.open()
        source.migrate()
        target.open()
        target.migrate()

        def progress(n: int) -> None:
            print(f"\r{n} row(s) copied", end="", file=sys.stderr, flush=True)

        counts = copy_ledger(source, target, where.shown, progress)
        print(file=sys.stderr)
        print(f"copied {where.shown} to {target_where.shown}: {counts['rows']} row(s), "
              f"{counts['users']} user(s), {counts['keys']} key(s), {counts['prices']} "
              f"price(s), {counts['daily']} daily total(s)")
    except LedgerError as exc:
        print(f"\ngateway ledger copy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        source.close()
        target.close()
    return EXIT_OK
