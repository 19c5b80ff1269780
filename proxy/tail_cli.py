"""``gateway tail``: requests as they finish, one line each, from the ledger.

    gateway tail [--db PATH | --database-url URL] [--since SINCE] [--model GLOB] [--provider NAME]
                 [--status CODE|2xx|4xx|5xx|errors] [--key KEY_ID] [--json]
                 [--color auto|always|never] [--interval SECONDS]

Polls the ledger file over a read-only connection (safe while the daemon
writes; SQLite's WAL lets a reader see each committed batch) for rows stored
after the last one shown. Without ``--since`` it starts with the rows stored
from now on. Colours on a terminal: red for server errors and cut streams,
yellow for client errors and refusals, cyan for a request that failed over
(``NO_COLOR`` or ``--color never`` turns them off). ``--json`` prints each row
as one JSON object per line, for scripts. Ctrl-C ends it (exit 0); so does a
closed pipe. Rows the daemon holds in its spill journal (a failing database)
show up once they are replayed.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

import orjson

from proxy.cli_args import number_arg
from proxy.ledger import LedgerError, open_backend
from proxy.usage_cli import add_database_url, ledger_location
from proxy.usage_report import fmt_usd, parse_since

EXIT_OK = 0
EXIT_USAGE = 2
DEFAULT_INTERVAL_S = 0.5
# Rows read per poll: a burst is printed over several polls, never all held at once.
ROWS_PER_POLL = 1000

_RED, _YELLOW, _CYAN, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[36m", "\x1b[0m"
_SERVER_SIDE_ERRORS = frozenset({"stream_cut", "internal", "upstream_timeout",
                                 "upstream_unreachable", "upstream_error",
                                 "upstream_unavailable", "upstream_protocol"})

Row = dict[str, Any]


_interval = number_arg(float, lambda v: 0.05 <= v <= 60, "seconds from 0.05 to 60")


def _status_filter(text: str) -> Callable[[Row], bool]:
    t = text.strip().lower()
    if t == "errors":
        return lambda r: r.get("error_kind") is not None or (r.get("status") or 0) >= 400
    if len(t) == 3 and t[0] in "12345" and t[1:] == "xx":
        lo = int(t[0]) * 100
        return lambda r: lo <= (r.get("status") or 0) < lo + 100
    if t.isdigit() and len(t) == 3:
        code = int(t)
        return lambda r: r.get("status") == code
    raise argparse.ArgumentTypeError(f"expected a status such as 429, 4xx, 5xx or 'errors', "
                                     f"got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gateway tail",
        description="Requests as they finish, one line each, read from the ledger.")
    p.add_argument("--db", metavar="PATH",
                   help="ledger database (default: $TOKENWAY_DB, else ./tokenway.db)")
    add_database_url(p)
    p.add_argument("--since", metavar="SINCE",
                   help="first show the rows since then (10m, 2h, 1d, or a date); default: "
                        "only rows stored from now on")
    p.add_argument("--model", metavar="GLOB", help="requested or served model (glob)")
    p.add_argument("--provider", metavar="NAME", help="provider name (glob)")
    p.add_argument("--status", metavar="STATUS", type=_status_filter,
                   help="429, 4xx, 5xx or 'errors' (any error kind or status >= 400)")
    p.add_argument("--key", metavar="KEY_ID", help="API key id (key_..., cfg_...)")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colours (auto: on a terminal, unless NO_COLOR is set)")
    p.add_argument("--interval", type=_interval, default=DEFAULT_INTERVAL_S,
                   metavar="SECONDS", help=f"poll period (default {DEFAULT_INTERVAL_S:g})")
    return p


def tail_main(argv: Sequence[str], out: TextIO | None = None,
              polls: int | None = None) -> int:
    """``polls`` bounds the number of polls (tests); None: until Ctrl-C."""
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, time.time())
        except ValueError as exc:
            print(f"gateway tail: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        where = ledger_location(args.db, args.database_url)
    except ValueError as exc:
        print(f"gateway tail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if where.path is not None and not os.path.exists(where.path):
        print(f"gateway tail: no ledger at {where.path} (start gatewayd, or pass --db)",
              file=sys.stderr)
        return EXIT_USAGE
    keep = _row_filter(args)
    color = args.color == "always" or (args.color == "auto" and _is_tty(out)
                                       and not os.environ.get("NO_COLOR"))
    write = _write_json if args.json else (lambda row, o: _write_line(row, o, color))
    backend = open_backend(where, readonly=True)
    try:
        backend.open()
        last = 0 if since is not None else -1
        n = 0
        while polls is None or n < polls:
            n += 1
            last, rows = backend.rows_after(last, since=since, limit=ROWS_PER_POLL)
            for row in rows:
                if keep(row):
                    write(row, out)
            out.flush()
            if len(rows) < ROWS_PER_POLL:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # The reader went away (gateway tail | head): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    except LedgerError as exc:
        print(f"gateway tail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        backend.close()
    return EXIT_OK


def _is_tty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _row_filter(args: argparse.Namespace) -> Callable[[Row], bool]:
    tests: list[Callable[[Row], bool]] = []
    if args.model:
        pat = args.model
        tests.append(lambda r: any(m is not None and fnmatch.fnmatchcase(m, pat)
                                   for m in (r.get("model"), r.get("served_model"))))
    if args.provider:
        prov = args.provider
        tests.append(lambda r: r.get("provider") is not None
                     and fnmatch.fnmatchcase(r["provider"], prov))
    if args.status is not None:
        tests.append(args.status)
    if args.key:
        key = args.key
        tests.append(lambda r: r.get("api_key_id") == key)
    return lambda r: all(t(r) for t in tests)


def _write_json(row: Row, out: TextIO) -> None:
    out.write(orjson.dumps(row).decode() + "\n")


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}" if isinstance(value, float) else str(value)


def _write_line(row: Row, out: TextIO, color: bool) -> None:
    ts = row.get("ts")
    when = datetime.fromtimestamp(ts).strftime("%H:%M:%S") if ts else "--:--:--"
    model = row.get("model") or "-"
    served = row.get("served_model")
    if served and served != model:
        model = f"{model} ({served})"
    parts = [when, _num(row.get("status")).rjust(3), (row.get("client_protocol") or "-"),
             model, "->", row.get("provider") or "-",
             f"in {_num(row.get('input_tokens'))} out {_num(row.get('output_tokens'))}",
             f"ttfb {_num(row.get('ttfb_ms'))} ms total {_num(row.get('latency_ms'))} ms",
             fmt_usd(row.get("cost_usd")) + " USD"]
    if row.get("stream"):
        parts.append("stream")
    attempts = row.get("attempts") or 1
    if attempts > 1:
        parts.append(f"failover x{attempts}")
    if row.get("error_kind"):
        parts.append(f"[{row['error_kind']}]")
    if row.get("api_key_id"):
        parts.append(row["api_key_id"])
    line = "  ".join(parts)
    if color:
        tint = _tint(row)
        if tint:
            line = tint + line + _RESET
    out.write(line + "\n")


def _tint(row: Row) -> str | None:
    status = row.get("status") or 0
    kind = row.get("error_kind")
    if status >= 500 or kind in _SERVER_SIDE_ERRORS:
        return _RED
    if status >= 400 or kind is not None:
        return _YELLOW
    if (row.get("attempts") or 1) > 1:
        return _CYAN
    return None
