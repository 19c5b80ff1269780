"""``gateway audit``: has a provider got worse? (silent degradation, from the ledger)

    gateway audit [--db PATH | --database-url URL] [--window 1h] [--baseline 24h] [--until UNTIL]
                  [--min-requests N] [--json] [--plot FILE.png] [threshold flags]

Compares each (provider, requested model) over the window (the last hour by
default, or the hour before ``--until``) with the same group over the baseline
(the 24 hours before the window): error rate, p50/p95 latency and TTFB, output
tokens per second, the share of answers from another model than requested and
the share of streams cut. Every change beyond a threshold is a finding; the
rules are in ``proxy/audit.py``. Prints a table (figures as window / baseline)
or with ``--json`` one object. Reads the ledger over a read-only connection.

Exit status: 0 when nothing was found, 1 when there are findings (for cron or
CI to alert on), 2 for bad arguments, an unreadable database, or ``--plot``
without matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from proxy.audit import Thresholds, audit, parse_duration
from proxy.cli_args import aligned, number_arg, whole_number
from proxy.ledger import DEFAULT_DB_PATH, LedgerError
from proxy.usage_cli import add_database_url, journal_notes, ledger_location
from proxy.usage_report import NONE_LABEL, parse_since

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

_DEFAULTS = Thresholds()


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _until_arg(text: str) -> float:
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# A percentage such as ``50`` or ``50%``, returned as a fraction.
_percent_arg = number_arg(lambda t: float(t.strip().rstrip("%")) / 100.0, lambda v: v > 0,
                          "a percentage > 0")


_points_arg = number_arg(float, lambda v: v > 0, "percentage points > 0")


_ratio_arg = number_arg(float, lambda v: v >= 1, "a factor >= 1")


_count_arg = whole_number


def build_parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    parser = argparse.ArgumentParser(
        prog="gateway audit",
        description="Find providers that got worse: each provider and model over a recent "
        "window against a baseline before it. Exit status 1 when something is found.",
        epilog="Errors: status >= 500, or an upstream error_kind (upstream_error, "
        "upstream_timeout, upstream_unreachable) unless the status is a 4xx other than "
        "429. Percentiles are nearest-rank. README.md, section 'gateway audit'.",
    )
    parser.add_argument(
        "--db", default=None, metavar="PATH",
        help=f"ledger database (default: $TOKENWAY_DB, else {DEFAULT_DB_PATH}, as for "
        "gatewayd)",
    )
    add_database_url(parser)
    parser.add_argument("--window", type=_duration_arg, default=3600.0, metavar="DURATION",
                        help="the recent window: 15m, 1h, 6h, 1d (default 1h)")
    parser.add_argument("--baseline", type=_duration_arg, default=86_400.0,
                        metavar="DURATION",
                        help="the baseline: this long just before the window (default 24h)")
    parser.add_argument("--until", type=_until_arg, default=None, metavar="UNTIL",
                        help="end the window at UNTIL instead of now: 2h (ago), a unix "
                        "timestamp, or an ISO date/time (local time unless it has an offset)")
    parser.add_argument("--min-requests", type=_count_arg, default=d.min_requests,
                        metavar="N",
                        help="skip a provider/model with fewer than N requests in either "
                        f"window (default {d.min_requests})")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: windows, thresholds, groups, findings")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also draw window against baseline per group into FILE.png "
                        "(needs matplotlib: pip install 'tokenway[audit]')")
    th = parser.add_argument_group("thresholds (a change at least this large is a finding)")
    th.add_argument("--ttfb-rise", type=_percent_arg, default=d.ttfb_p95_rise, metavar="PCT",
                    help=f"TTFB p95 up by PCT %% (default {d.ttfb_p95_rise * 100:g})")
    th.add_argument("--latency-rise", type=_percent_arg, default=d.latency_p95_rise,
                    metavar="PCT", help=f"latency p95 up by PCT %% (default "
                    f"{d.latency_p95_rise * 100:g})")
    th.add_argument("--error-ratio", type=_ratio_arg, default=d.error_ratio, metavar="X",
                    help=f"error rate multiplied by X (default {d.error_ratio:g}) ...")
    th.add_argument("--error-points", type=_points_arg, default=d.error_points, metavar="PTS",
                    help=f"... and up by PTS percentage points (default {d.error_points:g})")
    th.add_argument("--served-points", type=_points_arg, default=d.served_points,
                    metavar="PTS", help="share answered by another model than requested up "
                    f"by PTS points (default {d.served_points:g})")
    th.add_argument("--cut-points", type=_points_arg, default=d.cut_points, metavar="PTS",
                    help=f"share of streams cut up by PTS points (default {d.cut_points:g})")
    th.add_argument("--tps-drop", type=_percent_arg, default=d.tps_drop, metavar="PCT",
                    help=f"output tokens/s down by PCT %% (default {d.tps_drop * 100:g})")
    return parser


def _load_pyplot() -> Any:
    """matplotlib.pyplot with the file-only Agg backend, or None when not installed."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def audit_main(argv: list[str]) -> int:
    """Run ``gateway audit`` with ``argv`` (the words after ``audit``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.ttfb_rise >= 10 or args.latency_rise >= 10 or args.tps_drop >= 1:
        print("gateway audit: a rise is at most 1000% and a drop below 100%",
              file=sys.stderr)
        return EXIT_USAGE
    plt = None
    if args.plot:
        plt = _load_pyplot()
        if plt is None:
            print("gateway audit: --plot needs matplotlib, which is not installed "
                  "(pip install 'tokenway[audit]' or pip install matplotlib)", file=sys.stderr)
            return EXIT_USAGE
    try:
        db = ledger_location(args.db, args.database_url)
    except ValueError as exc:
        print(f"gateway audit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    thresholds = Thresholds(
        ttfb_p95_rise=args.ttfb_rise, latency_p95_rise=args.latency_rise,
        error_ratio=args.error_ratio, error_points=args.error_points,
        served_points=args.served_points, cut_points=args.cut_points,
        tps_drop=args.tps_drop, min_requests=args.min_requests,
    )
    end = time.time() if args.until is None else args.until
    try:
        report = audit(db, end=end, window_s=args.window, baseline_s=args.baseline,
                       thresholds=thresholds)
    except LedgerError as exc:
        print(f"gateway audit: error: {exc}", file=sys.stderr)
        if db.path is not None and not os.path.exists(db.path):
            print("  (gatewayd creates it on start; pass --db to read another file)",
                  file=sys.stderr)
        return EXIT_USAGE
    journal_notes(db)
    if plt is not None:
        try:
            write_plot(report, args.plot, plt)
        except (OSError, ValueError) as exc:
            print(f"gateway audit: cannot write {args.plot}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        (write_json if args.json else write_table)(report, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_FINDINGS if report["findings"] else EXIT_OK


# -- output ------------------------------------------------------------------


def write_json(report: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(report, ensure_ascii=False, indent=1) + "\n")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _count(v: int) -> str:
    return str(v)


# (header, field, format): each cell shows "window / baseline".
_FIGURES: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("REQUESTS", "requests", _count),
    ("ERRORS", "error_rate", _pct),
    ("TTFB_P95_MS", "ttfb_p95_ms", _ms),
    ("LATENCY_P95_MS", "latency_p95_ms", _ms),
    ("OUT_TOK/S", "output_tokens_per_s", _rate),
    ("OTHER_MODEL", "served_model_changed_share", _pct),
    ("STREAMS_CUT", "stream_cut_share", _pct),
)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def write_table(report: dict[str, Any], out: TextIO) -> None:
    """One line per provider/model, figures as window / baseline, then the findings."""
    w, b = report["window"], report["baseline"]
    out.write(f"window   {_when(w['start'])} .. {_when(w['end'])}\n"
              f"baseline {_when(b['start'])} .. {_when(b['end'])}\n")
    groups = report["groups"]
    if not groups:
        out.write("no requests to a provider recorded in either window\n")
        return
    headers = ["PROVIDER", "MODEL", *(h for h, _, _ in _FIGURES), "FINDINGS"]
    body: list[list[str]] = []
    for g in groups:
        cells = [g["provider"], g["model"] or NONE_LABEL]
        cells += [f"{fmt(g['window'][f])} / {fmt(g['baseline'][f])}" for _, f, fmt in _FIGURES]
        if g["skipped"]:
            cells.append("skipped: " + g["skipped"])
        else:
            cells.append("; ".join(f["text"] for f in g["findings"]) or "ok")
        body.append(cells)
    right = [False, False] + [True] * len(_FIGURES) + [False]
    out.write(aligned([headers, *body], right))
    n, skipped = len(report["findings"]), report["skipped"]
    compared = len(groups) - skipped
    out.write(f"{n} finding{'s' if n != 1 else ''} in {compared} provider/model "
              f"group{'s' if compared != 1 else ''} compared"
              + (f"; {skipped} skipped with fewer than {report['thresholds']['min_requests']}"
                 " requests in a window" if skipped else "") + "\n")


def write_plot(report: dict[str, Any], path: str, plt: Any) -> None:
    """Bars of window against baseline for each compared group, one panel per figure."""
    groups = [g for g in report["groups"] if not g["skipped"]]
    panels = [("TTFB p95 (ms)", "ttfb_p95_ms", 1.0), ("latency p95 (ms)", "latency_p95_ms", 1.0),
              ("error rate (%)", "error_rate", 100.0),
              ("output tokens/s", "output_tokens_per_s", 1.0),
              ("other model served (%)", "served_model_changed_share", 100.0),
              ("streams cut (%)", "stream_cut_share", 100.0)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6, 1.5 * len(groups) + 3),
                                                       2.4 * len(panels)), squeeze=False)
    labels = [f"{g['provider']}\n{g['model'] or NONE_LABEL}" for g in groups]
    xs = list(range(len(groups)))
    for ax, (title, key, scale) in zip((row[0] for row in axes), panels, strict=True):
        def values(side: str, key: str = key, scale: float = scale) -> list[float]:
            return [(g[side][key] or 0.0) * scale for g in groups]

        ax.bar([x - 0.2 for x in xs], values("baseline"), width=0.4, label="baseline")
        ax.bar([x + 0.2 for x in xs], values("window"), width=0.4, label="window")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
