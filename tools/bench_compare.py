#!/usr/bin/env python3
"""Compare two `python -m bench run` result files: per scenario and target, B / A.

    python tools/bench_compare.py A.json B.json [--target tokenway] [--all]

For every scenario and target present in both files it prints the ratio B/A of the main
figures: throughput (req/s or streams/s; above 1 is better), p50/p99 latency and CPU per
request or per chunk (below 1 is better). Paced-stream cells also show the change in
added milliseconds; the soak compares RSS at 1/4 and at the end. `--all` also shows
"x ref": each target against its own reference cell in the same run (translated paths
against the passthrough path, failover and weighted routes against the plain route,
head-of-line against the small streams alone). Ratios inside one run (x direct, x nginx)
are the robust numbers on a noisy machine; when two runs disagree, compare those too (`--all`
adds them).

Warnings are printed when the two runs come from different machines, tools or load
generators, because then B/A mixes the change with the setup.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (key, label, better): better is "up" or "down".
LOAD_KEYS = (("rps", "req/s", "up"), ("p50_ms", "p50", "down"), ("p99_ms", "p99", "down"),
             ("cpu_us_per_req", "CPU/req", "down"))
SSE_KEYS = (("rps", "streams/s", "up"), ("p50_ms", "p50", "down"), ("p99_ms", "p99", "down"),
            ("cpu_us_per_chunk", "CPU/chunk", "down"))
CHECK_KEYS = (("streams_per_s", "streams/s", "up"), ("ttfb_p50_ms", "TTFB p50", "down"),
              ("total_p50_ms", "stream p50", "down"), ("cpu_us_per_chunk", "CPU/chunk", "down"))
PACED_KEYS = (("ttfb_p50_ms", "TTFB p50", "down"),
              ("frame_delay_p50_ms", "frame delay p50", "down"),
              ("frame_delay_p99_ms", "frame delay p99", "down"),
              ("cpu_us_per_chunk", "CPU/chunk", "down"))
XLATE_SSE_KEYS = (("rps", "streams/s", "up"), ("p50_ms", "p50", "down"),
                  ("p99_ms", "p99", "down"), ("cpu_us_per_req", "CPU/stream", "down"))
TTFB_KEYS = (("streams_per_s", "streams/s", "up"), ("ttfb_p50_ms", "TTFB p50", "down"),
             ("ttfb_p99_ms", "TTFB p99", "down"), ("cpu_us_per_req", "CPU/stream", "down"))
HOL_KEYS = (("ttfb_p50_ms", "TTFB p50", "down"), ("ttfb_p99_ms", "TTFB p99", "down"),
            ("frame_delay_p99_ms", "frame delay p99", "down"),
            ("cpu_us_per_req", "CPU/req", "down"))
SOAK_KEYS = (("rps", "req/s", "up"), ("rss_q1_kib", "RSS 1/4 KiB", "down"),
             ("rss_end_kib", "RSS end KiB", "down"), ("cpu_us_per_req", "CPU/req", "down"))
# Keyed by the scenario's report table (`table`), else its group (older result files).
KEYS_BY_GROUP = {"chat": LOAD_KEYS, "messages": LOAD_KEYS, "sse": SSE_KEYS,
                 "messages_sse": SSE_KEYS, "stream_check": CHECK_KEYS, "paced": PACED_KEYS,
                 "paced_many": PACED_KEYS, "xlate": LOAD_KEYS, "xlate_sse": XLATE_SSE_KEYS,
                 "xlate_ttfb": TTFB_KEYS, "routing": LOAD_KEYS, "hol": HOL_KEYS,
                 "authflood": LOAD_KEYS, "workers": LOAD_KEYS, "workers_sse": XLATE_SSE_KEYS,
                 "soak": SOAK_KEYS}
# A change smaller than this fraction is shown without a marker.
NOISE_BAND = 0.10


def load(path: Path) -> dict:
    with open(path, "rb") as f:
        data = json.load(f)
    if not str(data.get("schema", "")).startswith("tokenway-bench/"):
        sys.exit(f"{path}: not a tokenway bench result (schema {data.get('schema')!r})")
    return data


def setup_warnings(a: dict, b: dict) -> list[str]:
    out = []
    for key in ("nproc", "cpu_model", "kernel", "python"):
        va, vb = a["machine"].get(key), b["machine"].get(key)
        if va != vb:
            out.append(f"machine {key} differs: {va} vs {vb}")
    for key, va in a.get("versions", {}).items():
        vb = b.get("versions", {}).get(key)
        if va != vb:
            out.append(f"{key} version differs: {va} vs {vb}")
    ca, cb = a.get("config", {}), b.get("config", {})
    for key in ("load_tool", "pin", "workers", "durations_s"):
        if ca.get(key) != cb.get(key):
            out.append(f"config {key} differs: {ca.get(key)} vs {cb.get(key)}")
    return out


def _source(res: dict) -> str:
    g = res.get("git") or {}
    out = f"commit {g.get('commit')}" + (" (dirty tree)" if g.get("dirty") else "")
    return out + (f" [{g['source']}]" if g.get("source") else "")


def _fmt(v: object) -> str:
    if not isinstance(v, (int, float)):
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:#.3g}" if abs(v) < 10 else f"{v:.1f}"


def _ratio(a: object, b: object, better: str) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or a <= 0:
        return "-"
    r = b / a
    mark = ""
    if abs(r - 1) > NOISE_BAND:
        improved = r > 1 if better == "up" else r < 1
        mark = " +" if improved else " -"
    return f"{r:.2f}{mark}"


def compare(a: dict, b: dict, only: set[str] | None, show_inner: bool) -> str:
    lines = [f"A: {a['timestamp']} {a['mode']} {_source(a)}",
             f"B: {b['timestamp']} {b['mode']} {_source(b)}",
             "B/A per figure; '+' better, '-' worse by more than "
             f"{NOISE_BAND:.0%} (throughput up, latency and CPU down are better)"]
    for w in setup_warnings(a, b):
        lines.append(f"warning: {w}")
    scs_b = {sc["id"]: sc for sc in b["scenarios"]}
    for sc_a in a["scenarios"]:
        sc_b = scs_b.get(sc_a["id"])
        if sc_b is None:
            continue
        keys = KEYS_BY_GROUP.get(sc_a.get("table") or sc_a["group"], LOAD_KEYS)
        rows = []
        for name, ca in sc_a["results"].items():
            if only and name not in only:
                continue
            cb = sc_b["results"].get(name)
            if cb is None:
                continue
            row = [name]
            for key, _, better in keys:
                row += [_fmt(ca.get(key)), _fmt(cb.get(key)), _ratio(ca.get(key), cb.get(key),
                                                                     better)]
            if show_inner:
                for key, _, _ in keys[:1] + keys[-1:]:
                    for base in ("direct", "nginx"):
                        ra = (ca.get("ratio") or {}).get(key, {}).get(base)
                        rb = (cb.get("ratio") or {}).get(key, {}).get(base)
                        row.append(f"{_fmt(ra)}->{_fmt(rb)}")
                    # Against the same target's reference cell in the same run (the
                    # passthrough path for translated scenarios, the plain route, ...).
                    ra = ((ca.get("vs_ref") or {}).get("ratio") or {}).get(key)
                    rb = ((cb.get("vs_ref") or {}).get("ratio") or {}).get(key)
                    row.append(f"{_fmt(ra)}->{_fmt(rb)}")
            rows.append(row)
        if not rows:
            continue
        header = ["target"]
        for _, label, _ in keys:
            header += [f"{label} A", "B", "B/A"]
        if show_inner:
            for _, label, _ in keys[:1] + keys[-1:]:
                header += [f"{label} x direct", f"{label} x nginx", f"{label} x ref"]
        lines.append("")
        lines.append(f"{sc_a['id']}: {sc_a.get('title', '')}")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        for r in [header] + rows:
            lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    ta, tb = a.get("targets", {}), b.get("targets", {})
    rows = []
    for name, ia in ta.items():
        ib = tb.get(name)
        if not ib or ia.get("status") != "ok" or ib.get("status") != "ok":
            continue
        if only and name not in only:
            continue
        row = [name]
        for key in ("startup_s", "rss_idle_kib", "rss_end_kib"):
            row += [_fmt(ia.get(key)), _fmt(ib.get(key)), _ratio(ia.get(key), ib.get(key),
                                                                 "down")]
        rows.append(row)
    if rows:
        header = ["target", "start A", "B", "B/A", "RSS idle KiB A", "B", "B/A",
                  "RSS end KiB A", "B", "B/A"]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        lines.append("")
        lines.append("startup and memory")
        for r in [header] + rows:
            lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="baseline result (A)")
    ap.add_argument("b", type=Path, help="new result (B)")
    ap.add_argument("--target", action="append", default=None,
                    help="only these targets (repeatable)")
    ap.add_argument("--all", action="store_true",
                    help="also show the in-run ratios (x direct, x nginx) of A and B")
    args = ap.parse_args(argv)
    sys.stdout.write(compare(load(args.a), load(args.b),
                             set(args.target) if args.target else None, args.all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
