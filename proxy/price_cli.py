"""``gateway price``: the prices that turn tokens into ``cost_usd``.

    gateway price list [--db PATH] [--config PATH] [--json]
    gateway price set MODEL-GLOB --input X --output Y [--cache-read X] [--cache-write X]
    gateway price delete MODEL-GLOB

Prices are USD per million tokens. ``set`` and ``delete`` change the ``prices``
table of the ledger file (``--db``, else ``TOKENWAY_DB``, else ./tokenway.db),
which a running gateway picks up; ``list`` shows those, the config file's
``[prices]`` tables and the bundled table with the date it was taken, in lookup
order (proxy/accounts/prices.py). Exit status: 0 done, 1 refused (no such price,
database error), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from proxy.accounts.bundled_prices import BUNDLED_PRICES_DATE
from proxy.accounts.model import AccountError
from proxy.accounts.prices import PRICE_FIELDS, PriceBook
from proxy.accounts.store import AccountStore
from proxy.cli_args import aligned, finite, number_arg
from proxy.config import ConfigError, load_config
from proxy.ledger import LedgerError
from proxy.ledger.url import StorageURL
from proxy.usage_cli import add_database_url, ledger_location

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


_per_mtok = number_arg(float, finite(lambda v: v >= 0), "USD per million tokens >= 0")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway price",
                                description="Model prices, USD per million tokens.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_help = "ledger database (default: $TOKENWAY_DB, else ./tokenway.db)"

    ls = sub.add_parser("list", help="every price, in lookup order, with its source")
    ls.add_argument("--db", metavar="PATH", help=db_help)
    add_database_url(ls)
    ls.add_argument("--config", metavar="PATH",
                    help="config file whose [prices] to show (default: $TOKENWAY_CONFIG)")
    ls.add_argument("--json", action="store_true", help="print one JSON object")

    st = sub.add_parser("set", help="set the price of models matching a glob")
    st.add_argument("pattern", metavar="MODEL-GLOB")
    st.add_argument("--input", type=_per_mtok, required=True, metavar="USD")
    st.add_argument("--output", type=_per_mtok, required=True, metavar="USD")
    st.add_argument("--cache-read", type=_per_mtok, metavar="USD",
                    help="cached prompt tokens (default: the input price)")
    st.add_argument("--cache-write", type=_per_mtok, metavar="USD",
                    help="prompt tokens written to the cache (default: the input price)")
    st.add_argument("--db", metavar="PATH", help=db_help)
    add_database_url(st)

    rm = sub.add_parser("delete", help="remove a price set with 'gateway price set'")
    rm.add_argument("pattern", metavar="MODEL-GLOB")
    rm.add_argument("--db", metavar="PATH", help=db_help)
    add_database_url(rm)
    return p


def price_main(argv: Sequence[str]) -> int:
    """Run ``gateway price`` with ``argv`` (the words after ``price``)."""
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse exits on --help and on errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        db = ledger_location(args.db, args.database_url)
        if args.action == "list":
            return _list(db, args.config, args.json)
        with AccountStore(db) as store:
            if args.action == "set":
                row = store.set_price(args.pattern, input=args.input, output=args.output,
                                      cache_read=args.cache_read,
                                      cache_write=args.cache_write)
                print(f"{row['pattern']}: " + ", ".join(
                    f"{f} {_usd(row[f] if row[f] is not None else row['input'])}"
                    for f in PRICE_FIELDS) + " USD per million tokens")
            else:
                store.delete_price(args.pattern)
                print(f"deleted the price of {args.pattern}")
    except AccountError as exc:
        print(f"gateway price: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if exc.kind == "invalid" else EXIT_REFUSED
    except (LedgerError, ValueError) as exc:
        print(f"gateway price: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def _list(db: StorageURL, config_path: str | None, as_json: bool) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"gateway price: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rows: list[dict[str, Any]] = []
    if db.path is None or os.path.exists(db.path):  # listing never creates a file
        with AccountStore(db) as store:
            rows = store.prices()
    entries = PriceBook(config.prices, rows).entries()
    seen: set[str] = set()
    listed: list[dict[str, Any]] = []
    for e in entries:
        listed.append({"pattern": e.pattern, **e.price.as_dict(), "source": e.origin,
                       "shadowed": e.pattern in seen})
        seen.add(e.pattern)
    if as_json:
        sys.stdout.write(orjson.dumps({"bundled_date": BUNDLED_PRICES_DATE,
                                       "prices": listed}).decode() + "\n")
        return EXIT_OK
    headers = ["PATTERN", "INPUT", "OUTPUT", "CACHE_READ", "CACHE_WRITE", "SOURCE"]
    grid = [headers] + [
        [p["pattern"], *(_usd(p[f]) for f in PRICE_FIELDS),
         p["source"] + (" (shadowed)" if p["shadowed"] else "")] for p in listed]
    sys.stdout.write(aligned(grid, [False, True, True, True, True, False]))
    print(f"\nUSD per million tokens; first match wins: config, then database, then bundled "
          f"(bundled prices taken {BUNDLED_PRICES_DATE})")
    return EXIT_OK


def _usd(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
