"""Render a result dict (one run) as the plain-text tables `python -m bench` prints."""

from __future__ import annotations

import statistics
from collections.abc import Callable

Cell = dict
Col = tuple[str, Callable[[Cell], str]]


def _num(v: object, fmt: str = "{:.2f}") -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "-"
    return fmt.format(v)


def _floor0(v: object) -> object:
    # Tick rounding can make "CPU nobody of ours used" slightly negative.
    return max(0.0, v) if isinstance(v, (int, float)) else v


def _rate(v: object) -> str:
    if not isinstance(v, (int, float)):
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _ratio(cell: Cell, key: str, base: str) -> str:
    v = (cell.get("ratio") or {}).get(key, {}).get(base)
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 0.1 else f"{v:.2f}"


def _added(cell: Cell, key: str, base: str) -> str:
    v = (cell.get("added_ms") or {}).get(key, {}).get(base)
    return "-" if v is None else f"{v:+.2f}"


def _mib(kib: object) -> str:
    return "-" if not isinstance(kib, (int, float)) else f"{kib / 1024:.1f} MiB"


def _table(header: list[str], rows: list[list[str]], left: int = 2,
           left_last: bool = False) -> str:
    """Columns before `left` (and the last one, if `left_last`) are left-aligned."""
    last = len(header) - 1
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def fmt(row: list[str]) -> str:
        cells = []
        for i, (c, w) in enumerate(zip(row, widths, strict=True)):
            if i == last and left_last:
                cells.append(c)
            elif i < left:
                cells.append(c.ljust(w))
            else:
                cells.append(c.rjust(w))
        return "  " + "  ".join(cells).rstrip()

    return "\n".join([fmt(header)] + [fmt(r) for r in rows])


LOAD_COLS: list[Col] = [
    ("req/s", lambda c: _rate(c.get("rps"))),
    ("x direct", lambda c: _ratio(c, "rps", "direct")),
    ("x nginx", lambda c: _ratio(c, "rps", "nginx")),
    ("x floor", lambda c: _ratio(c, "rps", "floor")),
    ("p50 ms", lambda c: _num(c.get("p50_ms"), "{:.3f}")),
    ("p99 ms", lambda c: _num(c.get("p99_ms"), "{:.3f}")),
    ("CPU us/req", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("x direct", lambda c: _ratio(c, "cpu_us_per_req", "direct")),
    ("x nginx", lambda c: _ratio(c, "cpu_us_per_req", "nginx")),
    ("x floor", lambda c: _ratio(c, "cpu_us_per_req", "floor")),
    ("cores", lambda c: _num(c.get("cores"))),
    ("upstream us/req", lambda c: _num(c.get("upstream_cpu_us_per_req"), "{:.1f}")),
    ("other cores", lambda c: _num(_floor0(c.get("other_cores")))),
]

SSE_COLS: list[Col] = [
    ("streams/s", lambda c: _rate(c.get("rps"))),
    ("x direct", lambda c: _ratio(c, "rps", "direct")),
    ("x nginx", lambda c: _ratio(c, "rps", "nginx")),
    ("x floor", lambda c: _ratio(c, "rps", "floor")),
    ("p50 ms", lambda c: _num(c.get("p50_ms"), "{:.3f}")),
    ("p99 ms", lambda c: _num(c.get("p99_ms"), "{:.3f}")),
    ("CPU us/stream", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("us/chunk", lambda c: _num(c.get("cpu_us_per_chunk"), "{:.2f}")),
    ("x direct", lambda c: _ratio(c, "cpu_us_per_chunk", "direct")),
    ("x nginx", lambda c: _ratio(c, "cpu_us_per_chunk", "nginx")),
    ("x floor", lambda c: _ratio(c, "cpu_us_per_chunk", "floor")),
    ("cores", lambda c: _num(c.get("cores"))),
    ("other cores", lambda c: _num(_floor0(c.get("other_cores")))),
]

CHECK_COLS: list[Col] = [
    ("streams/s", lambda c: _rate(c.get("streams_per_s"))),
    ("streams", lambda c: _num(c.get("streams"), "{:d}")),
    ("frames lost", lambda c: _num(c.get("frames_lost"), "{:d}")),
    ("TTFB p50 ms", lambda c: _num(c.get("ttfb_p50_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "ttfb_p50_ms", "direct")),
    ("+nginx", lambda c: _added(c, "ttfb_p50_ms", "nginx")),
    ("TTFB p99", lambda c: _num(c.get("ttfb_p99_ms"), "{:.3f}")),
    ("stream p50 ms", lambda c: _num(c.get("total_p50_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "total_p50_ms", "direct")),
    ("CPU us/chunk", lambda c: _num(c.get("cpu_us_per_chunk"), "{:.2f}")),
    ("other cores", lambda c: _num(_floor0(c.get("other_cores")))),
]

PACED_COLS: list[Col] = [
    ("streams", lambda c: _num(c.get("streams"), "{:d}")),
    ("frames lost", lambda c: _num(c.get("frames_lost"), "{:d}")),
    ("TTFB p50 ms", lambda c: _num(c.get("ttfb_p50_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "ttfb_p50_ms", "direct")),
    ("+nginx", lambda c: _added(c, "ttfb_p50_ms", "nginx")),
    ("frame delay p50 ms", lambda c: _num(c.get("frame_delay_p50_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "frame_delay_p50_ms", "direct")),
    ("+nginx", lambda c: _added(c, "frame_delay_p50_ms", "nginx")),
    ("p99", lambda c: _num(c.get("frame_delay_p99_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "frame_delay_p99_ms", "direct")),
    ("gap excess p99", lambda c: _num(c.get("gap_excess_p99_ms"), "{:.3f}")),
    ("CPU us/chunk", lambda c: _num(c.get("cpu_us_per_chunk"), "{:.2f}")),
]

def _ref_ratio(cell: Cell, key: str) -> str:
    v = ((cell.get("vs_ref") or {}).get("ratio") or {}).get(key)
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 0.1 else f"{v:.2f}"


def _ref_added(cell: Cell, key: str) -> str:
    v = ((cell.get("vs_ref") or {}).get("added_ms") or {}).get(key)
    return "-" if v is None else f"{v:+.2f}"


def _comp(cell: Cell, key: str, fmt: str = "{:.2f}") -> str:
    return _num((cell.get("companion") or {}).get(key), fmt)


def _label(cell: Cell) -> str:
    return cell.get("_label") or "-"


PACED_COLS.insert(2, ("unfinished", lambda c: _num(c.get("unfinished"), "{:d}")))
PACED_COLS.append(("first-stream TTFB p99", lambda c: _num(c.get("first_ttfb_p99_ms"), "{:.1f}")))
PACED_COLS.append(("first-stream delay p99",
                   lambda c: _num(c.get("first_frame_delay_p99_ms"), "{:.1f}")))

ROUTE_COLS: list[Col] = [
    ("model route", _label),
    ("req/s", lambda c: _rate(c.get("rps"))),
    ("x direct", lambda c: _ratio(c, "rps", "direct")),
    ("p50 ms", lambda c: _num(c.get("p50_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "p50_ms", "direct")),
    ("+nginx", lambda c: _added(c, "p50_ms", "nginx")),
    ("+plain", lambda c: _ref_added(c, "p50_ms")),
    ("p99 ms", lambda c: _num(c.get("p99_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "p99_ms", "direct")),
    ("CPU us/req", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("x direct", lambda c: _ratio(c, "cpu_us_per_req", "direct")),
    ("x nginx", lambda c: _ratio(c, "cpu_us_per_req", "nginx")),
    ("x plain", lambda c: _ref_ratio(c, "cpu_us_per_req")),
    ("other cores", lambda c: _num(_floor0(c.get("other_cores")))),
]

XLATE_COLS: list[Col] = [
    ("path", _label),
    ("req/s", lambda c: _rate(c.get("rps"))),
    ("x direct", lambda c: _ratio(c, "rps", "direct")),
    ("x nginx", lambda c: _ratio(c, "rps", "nginx")),
    ("x floor", lambda c: _ratio(c, "rps", "floor")),
    ("x passthru", lambda c: _ref_ratio(c, "rps")),
    ("p50 ms", lambda c: _num(c.get("p50_ms"), "{:.3f}")),
    ("+passthru", lambda c: _ref_added(c, "p50_ms")),
    ("p99 ms", lambda c: _num(c.get("p99_ms"), "{:.3f}")),
    ("+passthru", lambda c: _ref_added(c, "p99_ms")),
    ("CPU us/req", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("x nginx", lambda c: _ratio(c, "cpu_us_per_req", "nginx")),
    ("x floor", lambda c: _ratio(c, "cpu_us_per_req", "floor")),
    ("x passthru", lambda c: _ref_ratio(c, "cpu_us_per_req")),
    ("other cores", lambda c: _num(_floor0(c.get("other_cores")))),
]

XLATE_TTFB_COLS: list[Col] = [
    ("path", _label),
    ("streams/s", lambda c: _rate(c.get("streams_per_s"))),
    ("frames lost", lambda c: _num(c.get("frames_lost"), "{:d}")),
    ("TTFB p50 ms", lambda c: _num(c.get("ttfb_p50_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "ttfb_p50_ms", "direct")),
    ("+nginx", lambda c: _added(c, "ttfb_p50_ms", "nginx")),
    ("+passthru", lambda c: _ref_added(c, "ttfb_p50_ms")),
    ("TTFB p99", lambda c: _num(c.get("ttfb_p99_ms"), "{:.3f}")),
    ("+passthru", lambda c: _ref_added(c, "ttfb_p99_ms")),
    ("stream p50 ms", lambda c: _num(c.get("total_p50_ms"), "{:.3f}")),
    ("+passthru", lambda c: _ref_added(c, "total_p50_ms")),
    ("CPU us/stream", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("x passthru", lambda c: _ref_ratio(c, "cpu_us_per_req")),
]

XLATE_PACED_COLS: list[Col] = [
    ("path", _label),
    ("streams", lambda c: _num(c.get("streams"), "{:d}")),
    ("frames lost", lambda c: _num(c.get("frames_lost"), "{:d}")),
    ("unfinished", lambda c: _num(c.get("unfinished"), "{:d}")),
    ("x passthru", lambda c: _ref_ratio(c, "streams_per_s")),
    ("TTFB p50 ms", lambda c: _num(c.get("ttfb_p50_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "ttfb_p50_ms", "direct")),
    ("+passthru", lambda c: _ref_added(c, "ttfb_p50_ms")),
    ("frame delay p50 ms", lambda c: _num(c.get("frame_delay_p50_ms"), "{:.3f}")),
    ("+passthru", lambda c: _ref_added(c, "frame_delay_p50_ms")),
    ("p99", lambda c: _num(c.get("frame_delay_p99_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "frame_delay_p99_ms", "direct")),
    ("+passthru", lambda c: _ref_added(c, "frame_delay_p99_ms")),
    ("CPU us/chunk", lambda c: _num(c.get("cpu_us_per_chunk"), "{:.2f}")),
    ("x passthru", lambda c: _ref_ratio(c, "cpu_us_per_chunk")),
]

HOL_COLS: list[Col] = [
    ("cell", _label),
    ("streams", lambda c: _num(c.get("streams"), "{:d}")),
    ("frames lost", lambda c: _num(c.get("frames_lost"), "{:d}")),
    ("TTFB p50 ms", lambda c: _num(c.get("ttfb_p50_ms"), "{:.3f}")),
    ("+alone", lambda c: _ref_added(c, "ttfb_p50_ms")),
    ("+direct", lambda c: _added(c, "ttfb_p50_ms", "direct")),
    ("TTFB p99", lambda c: _num(c.get("ttfb_p99_ms"), "{:.3f}")),
    ("+alone", lambda c: _ref_added(c, "ttfb_p99_ms")),
    ("+direct", lambda c: _added(c, "ttfb_p99_ms", "direct")),
    ("frame delay p99", lambda c: _num(c.get("frame_delay_p99_ms"), "{:.3f}")),
    ("+alone", lambda c: _ref_added(c, "frame_delay_p99_ms")),
    ("400 KB req/s", lambda c: _comp(c, "rps", "{:.1f}")),
    ("400 KB p50 ms", lambda c: _comp(c, "p50_ms")),
]

FLOOD_COLS: list[Col] = [
    ("cell", _label),
    ("req/s", lambda c: _rate(c.get("rps"))),
    ("rejected/s", lambda c: _rate(c.get("rejections_per_s"))),
    ("CPU us/req", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("x direct", lambda c: _ratio(c, "cpu_us_per_req", "direct")),
    ("x nginx", lambda c: _ratio(c, "cpu_us_per_req", "nginx")),
    ("valid req/s", lambda c: _comp(c, "rps", "{:.0f}") if c.get("companion")
     else _rate(c.get("rps"))),
    ("valid p50 ms", lambda c: _comp(c, "p50_ms", "{:.3f}") if c.get("companion")
     else _num(c.get("p50_ms"), "{:.3f}")),
    ("valid p99 ms", lambda c: _comp(c, "p99_ms", "{:.3f}") if c.get("companion")
     else _num(c.get("p99_ms"), "{:.3f}")),
    ("+alone p99", lambda c: _ref_added(c, "p99_ms")),
    ("valid non-2xx", lambda c: _comp(c, "non2xx", "{:d}") if c.get("companion")
     else _num(c.get("non2xx"), "{:d}")),
    ("ledger dropped", lambda c: _num(c["ledger_dropped"], "{:d}") if "ledger_dropped" in c
     else _num(((c.get("health") or {}).get("ledger") or {}).get("dropped"), "{:d}")),
    ("cores", lambda c: _num(c.get("cores"))),
]

RATE_COLS: list[Col] = [
    ("offered/s", lambda c: _rate(c.get("offered_rps"))),
    ("achieved/s", lambda c: _rate(c.get("rps"))),
    ("x direct", lambda c: _ratio(c, "rps", "direct")),
    ("p50 ms", lambda c: _num(c.get("p50_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "p50_ms", "direct")),
    ("+nginx", lambda c: _added(c, "p50_ms", "nginx")),
    ("p90 ms", lambda c: _num(c.get("p90_ms"), "{:.3f}")),
    ("p99 ms", lambda c: _num(c.get("p99_ms"), "{:.3f}")),
    ("+direct", lambda c: _added(c, "p99_ms", "direct")),
    ("+nginx", lambda c: _added(c, "p99_ms", "nginx")),
    ("max ms", lambda c: _num(c.get("max_ms"), "{:.2f}")),
    ("errors", lambda c: _num(sum(c.get(k) or 0 for k in ("non2xx", "sockerr", "dropped",
                                                          "unfinished")), "{:d}")),
    ("conns", lambda c: _num(c.get("conns_max"), "{:d}")),
    ("CPU us/req", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("x direct", lambda c: _ratio(c, "cpu_us_per_req", "direct")),
    ("x nginx", lambda c: _ratio(c, "cpu_us_per_req", "nginx")),
    ("cores", lambda c: _num(c.get("cores"))),
    ("other cores", lambda c: _num(_floor0(c.get("other_cores")))),
]

WORKERS_COLS: list[Col] = LOAD_COLS[:3] + [
    ("x 1 worker", lambda c: _num(c.get("_x_w1_rps"))),
] + [col for col in LOAD_COLS[3:] if col[0] != "x floor"]  # the floor has 1 worker

LEDGER_COLS: list[Col] = [
    ("cell", _label),
    ("req/s", lambda c: _rate(c.get("rps"))),
    ("sent", lambda c: _num(c.get("sent"), "{:,.0f}")),
    ("completed", lambda c: _num(c.get("reqs"), "{:,.0f}")),
    ("socket errors", lambda c: _num((c.get("read_err") or 0) + (c.get("write_err") or 0),
                                     "{:,.0f}")),
    ("in flight at stop", lambda c: _num(c.get("in_flight_at_stop"), "{:,.0f}")),
    ("rows", lambda c: _num(c.get("ledger_rows"), "{:,.0f}")),
    ("rows lost", lambda c: _num(c.get("rows_lost"), "{:,.0f}")),
    ("dropped (its count)", lambda c: _num(c.get("ledger_dropped"), "{:,.0f}")),
    ("SIGTERM->exit s", lambda c: _num(c.get("stop_s"))),
    ("CPU us/req", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("ledger thread us/req", lambda c: _num(c.get("ledger_thread_cpu_us_per_req"))),
    ("cores", lambda c: _num(c.get("cores"))),
    ("other cores", lambda c: _num(_floor0(c.get("other_cores")))),
]

H2_COLS: list[Col] = [
    ("cell", _label),
    ("req/s", lambda c: _rate(c.get("rps"))),
    ("x HTTP/1.1", lambda c: _ref_ratio(c, "rps")),
    ("p50 ms", lambda c: _num(c.get("p50_ms"), "{:.3f}")),
    ("p99 ms", lambda c: _num(c.get("p99_ms"), "{:.3f}")),
    ("CPU us/req", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("x HTTP/1.1", lambda c: _ref_ratio(c, "cpu_us_per_req")),
    ("errors", lambda c: _num(sum(c.get(k) or 0 for k in ("non2xx", "sockerr")), "{:d}")),
    ("cores", lambda c: _num(c.get("cores"))),
    ("other cores", lambda c: _num(_floor0(c.get("other_cores")))),
]

H2_PACED_COLS: list[Col] = [
    ("cell", _label),
    ("streams", lambda c: _num(c.get("streams"), "{:d}")),
    ("frames", lambda c: _num(c.get("frames"), "{:d}")),
    ("frames lost", lambda c: _num(c.get("frames_lost"), "{:d}")),
    ("unterminated", lambda c: _num(c.get("unterminated"), "{:d}")),
    ("unfinished", lambda c: _num(c.get("unfinished"), "{:d}")),
    ("errors", lambda c: _num(sum(c.get(k) or 0 for k in ("non2xx", "sockerr")), "{:d}")),
    ("TTFB p50 ms", lambda c: _num(c.get("ttfb_p50_ms"), "{:.3f}")),
    ("frame delay p50 ms", lambda c: _num(c.get("frame_delay_p50_ms"), "{:.3f}")),
    ("p99", lambda c: _num(c.get("frame_delay_p99_ms"), "{:.3f}")),
    ("CPU us/chunk", lambda c: _num(c.get("cpu_us_per_chunk"), "{:.2f}")),
]

COLS_BY_TABLE = {"chat": LOAD_COLS, "messages": LOAD_COLS, "sse": SSE_COLS,
                 "messages_sse": SSE_COLS, "stream_check": CHECK_COLS, "paced": PACED_COLS,
                 "routing": ROUTE_COLS, "xlate": XLATE_COLS, "xlate_sse": XLATE_COLS,
                 "xlate_ttfb": XLATE_TTFB_COLS, "xlate_paced": XLATE_PACED_COLS, "hol": HOL_COLS,
                 "authflood": FLOOD_COLS,
                 "workers": WORKERS_COLS, "workers_sse": WORKERS_COLS,
                 "rate": RATE_COLS, "ledger": LEDGER_COLS, "h2": H2_COLS,
                 "h2_paced": H2_PACED_COLS}
# Result files written before the `table` key existed name only the group.
COLS_BY_GROUP = COLS_BY_TABLE


def header_text(res: dict) -> str:
    m, v, g, cfg = res["machine"], res["versions"], res.get("git") or {}, res["config"]
    commit = (g.get("commit") or "no commit")[:10] + (" (dirty tree)" if g.get("dirty") else "")
    if g.get("source"):
        commit += f" [{g['source']}]"
    tools = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    pin = cfg.get("pin") or {}
    if pin.get("target_cpus"):
        place = (f"target on CPU {_cpus(pin['target_cpus'])}; load generator, fake upstream "
                 f"and harness on CPU {_cpus(pin['load_cpus'])}")
    else:
        place = "no CPU pinning"
    d = cfg["durations_s"]
    lines = [
        f"tokenway bench: {res['mode']} run, {res['timestamp']}, commit {commit}",
        f"machine: {m['nproc']} x {m['cpu_model']}, {m.get('mem_total_mib') or '?'} MiB, "
        f"{m.get('os') or ''} kernel {m['kernel']}, Python {m['python']}",
        f"tools: {tools}; load tool {cfg['load_tool']}",
        f"placement: {place}; loadavg {_la(res.get('loadavg_start'))} -> "
        f"{_la(res.get('loadavg_end'))}",
        f"cells: load {d['load']:g} s, stream check {d['check']:g} s, paced {d['paced']:g} s, "
        f"warm-up {d['warmup']:g} s"
        + (f", ledger {d['ledger']:g} s" if "ledger" in cfg.get("scenario_groups", ()) else "")
        + (f", soak {d['soak']:g} s" if d.get("soak") else "")
        + f"; repeat {cfg.get('repeat', 1)}; "
        f"elapsed {res.get('elapsed_s', 0):.0f} s",
    ]
    return "\n".join(lines)


def _cpus(cpus: list[int] | None) -> str:
    return ",".join(str(c) for c in cpus or []) or "-"


def _la(v: list[float] | None) -> str:
    return "/".join(f"{x:.2f}" for x in v) if v else "?"


def targets_text(res: dict) -> str:
    rows = []
    ups = res.get("upstream") or {}
    for name, t in res["targets"].items():
        status = t["status"]
        if status == "not run":
            status = f"not run ({t.get('reason')})"
        elif status != "ok":
            status = f"{status}: {t.get('reason')}"
        first = "-" if t.get("startup_s") is None else f"{t['startup_s']:.3f} s"
        if name == "direct" and t["status"] == "ok":
            first = f"{ups.get('startup_s', 0):.3f} s"
        if t.get("note") and t["status"] == "ok":
            status = f"ok ({t['note']})"
        rows.append([name, t.get("version") or "-", first, _mib(t.get("rss_idle_kib")),
                     _mib(t.get("rss_peak_kib")), _mib(t.get("rss_end_kib")), status])
    return "targets\n" + _table(["target", "version", "start->200", "RSS idle", "RSS peak",
                                 "RSS end", "status"], rows, left=2, left_last=True)


def _table_title(res: dict, table: str, scs: list[dict]) -> str:
    from bench.scenarios import TABLE_TITLES

    title = TABLE_TITLES.get(table) or scs[0].get("title") or table
    durs = sorted({sc["duration_s"] for sc in scs})
    return f"{title} ({'/'.join(f'{d:g}' for d in durs)} s per cell)"


def scenarios_text(res: dict) -> str:
    out = []
    by_table: dict[str, list[dict]] = {}
    for sc in res["scenarios"]:
        if sc.get("driver") == "soak":
            continue
        by_table.setdefault(sc.get("table") or sc["group"], []).append(sc)
    for table, scs in by_table.items():
        cols = COLS_BY_TABLE.get(table, LOAD_COLS)
        rows, problems = [], []
        for sc in scs:
            w1 = (sc["results"].get("tokenway") or {}).get("rps")
            for name, cell in sc["results"].items():
                cell = dict(cell)
                cell["_label"] = _cell_label(sc, name)
                if name == "tokenway-w2" and isinstance(w1, (int, float)) and w1 > 0 \
                        and isinstance(cell.get("rps"), (int, float)):
                    cell["_x_w1_rps"] = cell["rps"] / w1
                first = str(sc.get("rate")) if sc.get("driver") == "rate" else str(sc["conc"])
                row = [first, name] + [fn(cell) for _, fn in cols]
                if cell.get("errors"):
                    row[1] += " !"
                    problems.append(f"  ! {name} {sc['id']}: {cell['errors']}")
                rows.append(row)
        title = _table_title(res, table, scs)
        if not rows:
            out.append(f"{title}\n  (no target ran)")
            continue
        out.append(title + "\n" + _table(["rate" if table == "rate" else "c", "target"]
                                          + [h for h, _ in cols], rows,
                                          left=3 if cols and cols[0][1] is _label else 2)
                   + ("\n" + "\n".join(problems) if problems else ""))
    return "\n\n".join(out)


def _cell_label(sc: dict, name: str) -> str:
    """What a row did: the translated path, the route, the head-of-line cell..."""
    group = sc["group"]
    if group == "translated":
        if name == "tokenway":
            return sc.get("label") or sc["api"]
        if name in ("direct", "nginx", "floor"):
            return f"{sc['api']} (no translation)"
        if name == "ccr":
            return "messages->chat"
        if name == "litellm" and sc["api"] == "messages":
            return "messages->responses"
        return sc["api"]
    if group == "routing":
        if name.startswith("tokenway"):
            return sc.get("label") or sc["model"]
        return f"{sc['model']} (any model)"
    if group == "authflood":
        if sc.get("key") == "wrong":
            return "wrong key" if name not in ("direct", "nginx") else "no key check"
        return "valid only"
    return sc.get("label") or "-"


def _int(v: object) -> str:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else "-"


def _tally_rows(name: str, tallies: dict) -> list[list[str]]:
    rows = []
    for kind, t in tallies.items():
        outcomes = ", ".join(f"{k} x{v:,}" for k, v in (t.get("outcomes") or {}).items())
        rows.append([name, kind, t.get("what", ""), t.get("expected", ""),
                     f"{t.get('count', 0):,}", str(t.get("unexpected", 0)),
                     _num(t.get("max_s"), "{:.1f}"), outcomes or "-"])
    return rows


def soak_text(res: dict) -> str:
    scs = [sc for sc in res["scenarios"] if sc.get("driver") == "soak"]
    if not scs:
        return ""
    sc = scs[0]
    rows, frows, drows, problems = [], [], [], []
    fail_rows, hostile_rows = [], []
    for name, c in sc["results"].items():
        if "rss_q1_kib" not in c:
            problems.append(f"  ! {name}: {c.get('errors')}")
            continue
        pct = c.get("rss_growth_pct")
        rows.append([name, f"{c['duration_s']:.0f} s", _rate(c.get("rps")),
                     _num(c.get("cpu_us_per_req"), "{:.1f}"), _mib(c.get("rss_before_kib")),
                     _mib(c.get("rss_q1_kib")), _mib(c.get("rss_half_kib")),
                     _mib(c.get("rss_end_kib")), _mib(c.get("rss_after_kib")),
                     _mib(c.get("rss_max_kib")),
                     f"{c.get('rss_growth_q1_end_kib', 0) / 1024:+.1f} MiB"
                     + (f" ({pct:+.1f}%)" if isinstance(pct, (int, float)) else ""),
                     ("flat" if c.get("rss_flat_10pct", c.get("rss_flat")) else "GROWING")
                     + ("" if c.get("rss_flat") else " (strict: above max(2 MiB, 3%))"
                        if c.get("rss_flat_10pct") else "")])
        if "fds_growth" in c:
            other = (f"{_int(c.get('fds_other_before'))} -> {_int(c.get('fds_other_after'))}"
                     if c.get("fds_other_before") is not None else "-")
            tasks_ok = c.get("tasks_ok")
            frows.append([
                name,
                f"{_int(c.get('fds_before'))}/{_int(c.get('fds_q1'))}/"
                f"{_int(c.get('fds_half'))}/{_int(c.get('fds_end'))}/"
                f"{_int(c.get('fds_after'))}", _int(c.get("fds_max")),
                f"{_int(c.get('conns_before'))} -> {_int(c.get('conns_after'))}",
                f"{_int(c.get('upstream_open_before'))} -> {_int(c.get('upstream_open_after'))}",
                other, f"{c['fds_growth']:+d}", "flat" if c.get("fds_flat") else "GROWING",
                f"{_int(c.get('tasks_before'))}/{_int(c.get('tasks_q1'))}/"
                f"{_int(c.get('tasks_half'))}/{_int(c.get('tasks_end'))}/"
                f"{_int(c.get('tasks_after'))}", _int(c.get("tasks_max")),
                "-" if tasks_ok is None else ("flat" if tasks_ok else "GROWING")])
        elif "fds_q1" in c:
            frows.append([name, f"{c.get('fds_q1')}/{c.get('fds_end')}/{c.get('fds_after')}"]
                         + ["-"] * 9)
        for did, d in (c.get("drivers") or {}).items():
            mode = "stream" if d.get("stream") else "non-stream"
            what = f"{d.get('api')} {mode} {d.get('model')}"
            rate = d.get("rps") if d.get("rps") is not None else d.get("streams_per_s")
            drows.append([name, did, what, str(d.get("conc")), _rate(rate),
                          _num(d.get("p50_ms") if d.get("p50_ms") is not None
                               else d.get("ttfb_p50_ms"), "{:.3f}"),
                          _num(d.get("p99_ms") if d.get("p99_ms") is not None
                               else d.get("frame_delay_p99_ms"), "{:.3f}"),
                          _num(d.get("non2xx"), "{:d}"), _num(d.get("frames_lost"), "{:d}")])
        fail_rows += _tally_rows(name, c.get("failures") or {})
        hostile_rows += _tally_rows(name, c.get("hostile") or {})
        if c.get("errors"):
            problems.append(f"  ! {name}: {c['errors']}")
    out = (f"soak: mixed load for {sc['duration_s']:g} s (streams, translations, failing "
           "requests, hostile clients); RSS of the process tree sampled every second (flat: "
           "end - 1/4 <= 10% of 1/4; strict: <= max(2 MiB, 3%))\n"
           + _table(["target", "ran", "req/s", "CPU us/req", "RSS before", "at 1/4", "at 1/2",
                     "at end", "2 s after", "max", "1/4 -> end", "verdict"], rows, left=1))
    if frows:
        first = next(iter(sc["results"].values()), {})
        out += ("\n  file descriptors and asyncio tasks (before/1/4/half/end/2 s after); "
                "\"other fds\" = fds - client connections - provider connections, from "
                f"/health (flat: after - before <= {first.get('fd_slack', 8)}); "
                "tasks flat: end - 1/4 and after - before <= "
                f"{first.get('task_slack', 16)}\n"
                + _table(["target", "fds", "max", "client conns", "provider conns",
                          "other fds", "growth", "fds", "tasks", "max", "tasks"], frows,
                         left=1))
    if drows:
        out += ("\n  load drivers running together (req/s or streams/s; p50/p99 = request "
                "latency, or TTFB / frame delay for the paced SSE client)\n"
                + _table(["target", "driver", "what", "c", "rate", "p50 ms", "p99 ms",
                          "non-2xx", "frames lost"], drows, left=3))
    if fail_rows:
        out += ("\n  failing requests beside them (bench/soak_faults.py; outcome x count, "
                "max = slowest attempt in s)\n"
                + _table(["target", "kind", "what", "expected", "sent", "unexpected", "max s",
                          "outcomes"], fail_rows, left=4, left_last=True))
    if hostile_rows:
        keyless = any(r[1] == "no_key" for r in hostile_rows)
        out += ("\n  hostile clients beside them (raw sockets; every case must be refused or "
                "closed, none may hang" + ("" if keyless else "; no keyless case: the target "
                                           "runs without gateway keys") + ")\n"
                + _table(["target", "case", "what", "expected", "tried", "unexpected",
                          "max s", "outcomes"], hostile_rows, left=4, left_last=True))
    if problems:
        out += "\n" + "\n".join(problems)
    return out


def memory_text(res: dict) -> str:
    peak64: dict[str, int] = {}
    for sc in res["scenarios"]:
        if sc["id"] == "chat_c64":
            for name, c in sc["results"].items():
                if c.get("rss_peak_kib"):
                    peak64[name] = c["rss_peak_kib"]
    soak = {}
    for sc in res["scenarios"]:
        if sc.get("driver") == "soak":
            soak = sc["results"]
    rows = []
    for name, t in res["targets"].items():
        if t.get("status") != "ok":
            continue
        s = soak.get(name) or {}
        rows.append([name, _mib(t.get("rss_idle_kib")), _mib(peak64.get(name)),
                     _mib(t.get("rss_peak_kib")), _mib(t.get("rss_end_kib")),
                     _mib(s.get("rss_q1_kib")), _mib(s.get("rss_end_kib")),
                     ("flat" if s.get("rss_flat") else "GROWING") if s else "-"])
    if not rows:
        return ""
    return "memory (RSS of the process tree)\n" + _table(
        ["target", "idle", "peak chat c=64", "peak (any cell)", "end of run", "soak 1/4",
         "soak end", "soak"], rows, left=1)


def _cell(res: dict, sid: str, name: str) -> dict:
    for sc in res["scenarios"]:
        if sc["id"] == sid:
            return sc["results"].get(name) or {}
    return {}


# The gateway against the bare forwarder, its ledger, memory and start-up.
FLOOR_CPU_MAX_X = 2.0          # tokenway CPU per request / the floor's, chat c=64
CPU_SPREAD_MAX = 0.15          # (max - min) / median of the repeats' CPU per request
CPU_SPREAD_REPEATS = 5
LEDGER_THREAD_MAX_US = 2.0     # ledger writer CPU per request at saturation
# Key lookup, allow-list, rpm/tpm/budget admission of key and user, quota headers,
# cost and settlement together: the CPU they may add to a request.
ACCOUNTS_MAX_US = 5.0
# The fleet's target: a keyed request with its limits in Redis costs the gateway at most
# this many times the CPU of the same request counted in the process.
SHARED_LIMITS_MAX_X = 1.2
LEDGER_RUN_S = 60.0            # the rows-lost target's run length
XLATE_CPU_MAX_X = 1.5          # Anthropic client -> Chat provider vs passthrough, CPU
H2_CPU_MAX_X = 1.5             # HTTP/2, 16 streams on one connection vs HTTP/1.1 c=16, CPU
IDLE_RSS_MAX_MIB = 30.0
START_MAX_S = 0.3              # spawn to the first proxied 200


def _samples(cell: dict, key: str) -> list[float]:
    vals = [s.get(key) for s in cell.get("samples") or [cell]]
    return [v for v in vals if isinstance(v, (int, float))]


def gateway_checks(res: dict, check: Callable[[bool | None, str], None]) -> None:
    """The targets of the passthrough-cost issue, each judged in this run."""
    tw, fl = _cell(res, "chat_c64", "tokenway"), _cell(res, "chat_c64", "floor")
    a, b = tw.get("cpu_us_per_req"), fl.get("cpu_us_per_req")
    n = len(tw.get("samples") or [tw]) if tw else 0
    of = f"median of {n} repeats" if n > 1 else "one run"
    if a and b:
        rps = (tw.get("rps") or 0) / (fl.get("rps") or 1)
        check(a / b <= FLOOR_CPU_MAX_X and not tw.get("errors"),
              f"passthrough non-stream chat c=64, ledger on: tokenway CPU per request "
              f"{a:.1f} us = x{a / b:.2f} the floor's {b:.1f} us (target <= "
              f"x{FLOOR_CPU_MAX_X:.2f}; {of}); req/s x{rps:.2f} the floor's")
    if tw:
        vals = _samples(tw, "cpu_us_per_req")
        if len(vals) >= CPU_SPREAD_REPEATS:
            spread = (max(vals) - min(vals)) / statistics.median(vals)
            check(spread <= CPU_SPREAD_MAX,
                  f"passthrough non-stream chat c=64: CPU per request spread over "
                  f"{len(vals)} repeats (max-min)/median = {spread:.0%} (target <= "
                  f"{CPU_SPREAD_MAX:.0%}): {', '.join(f'{v:.1f}' for v in vals)} us")
        else:
            check(None, f"passthrough non-stream chat c=64: CPU per request spread needs "
                        f"--repeat {CPU_SPREAD_REPEATS} (this run: {len(vals)})")
    off = _cell(res, "chat_c64", "tokenway-noledger")
    if tw and off and tw.get("cpu_us_per_req") and off.get("cpu_us_per_req"):
        cost = tw["cpu_us_per_req"] - off["cpu_us_per_req"]
        check(cost <= LEDGER_THREAD_MAX_US,
              f"ledger cost to the whole process, chat c=64: tokenway {tw['cpu_us_per_req']:.1f}"
              f" us - the same with record() a no-op {off['cpu_us_per_req']:.1f} us = "
              f"{cost:.1f} us per request (target <= {LEDGER_THREAD_MAX_US:g} us)")
    acc = _cell(res, "chat_c64", "tokenway-accounts")
    if tw and acc and tw.get("cpu_us_per_req") and acc.get("cpu_us_per_req"):
        cost = acc["cpu_us_per_req"] - tw["cpu_us_per_req"]
        check(cost <= ACCOUNTS_MAX_US and not acc.get("errors"),
              f"accounts cost, chat c=64: a stored key with rpm, tpm and budget on key and "
              f"user, priced model {acc['cpu_us_per_req']:.1f} us - no key at all "
              f"{tw['cpu_us_per_req']:.1f} us = {cost:.1f} us per request (target <= "
              f"{ACCOUNTS_MAX_US:g} us; repeats "
              f"{', '.join(f'{x:.1f}' for x in _samples(acc, 'cpu_us_per_req'))} vs "
              f"{', '.join(f'{x:.1f}' for x in _samples(tw, 'cpu_us_per_req'))})")
    red = _cell(res, "chat_c64", "tokenway-accounts-redis")
    if acc and red and acc.get("cpu_us_per_req") and red.get("cpu_us_per_req"):
        x = red["cpu_us_per_req"] / acc["cpu_us_per_req"]
        check(x <= SHARED_LIMITS_MAX_X and not red.get("errors"),
              f"shared limits cost, chat c=64: the same key and user with their counters in "
              f"Redis {red['cpu_us_per_req']:.1f} us = x{x:.2f} the per-process meter's "
              f"{acc['cpu_us_per_req']:.1f} us (target <= x{SHARED_LIMITS_MAX_X:g}; repeats "
              f"{', '.join(f'{v:.1f}' for v in _samples(red, 'cpu_us_per_req'))} vs "
              f"{', '.join(f'{v:.1f}' for v in _samples(acc, 'cpu_us_per_req'))})")
    led = _cell(res, "ledger_c256", "tokenway-ledger")
    measured = [(cell, where) for cell, where in ((led, "ledger_c256, c=256"),
                                                   (tw, "chat c=64"))
                if cell.get("ledger_thread_cpu_us_per_req") is not None]
    if measured:
        # Judged on the first (the longest saturating cell), the other shown beside it.
        parts = []
        for cell, where in measured:
            vals = _samples(cell, "ledger_thread_cpu_us_per_req")
            parts.append(f"{where}: {cell['ledger_thread_cpu_us_per_req']:.2f} us of "
                         f"{cell.get('cpu_us_per_req') or 0:.1f} us in all (repeats: "
                         f"{', '.join(f'{x:.2f}' for x in vals)})")
        check(measured[0][0]["ledger_thread_cpu_us_per_req"] <= LEDGER_THREAD_MAX_US,
              f"ledger writer thread CPU per request at saturation (target <= "
              f"{LEDGER_THREAD_MAX_US:g} us): " + "; ".join(parts))
    else:
        for name, cell in (("tokenway-ledger", led), ("tokenway", tw)):
            why = (res["targets"].get(name) or {}).get("ledger_thread")
            if why and cell:
                check(None, f"ledger writer thread CPU: not measured ({name}: {why}); "
                            "see the whole process's CPU per request")
                break
    if led:
        dur = _scenario(res, "ledger_c256").get("duration_s") or 0
        lost, rows, sent = (_samples(led, k) for k in ("rows_lost", "ledger_rows", "sent"))
        dropped = _samples(led, "ledger_dropped")
        short = "" if dur >= LEDGER_RUN_S else \
            f"; the target names {LEDGER_RUN_S:g} s: --ledger-seconds {LEDGER_RUN_S:g}"
        check(bool(lost) and not any(lost) and not led.get("errors"),
              f"ledger rows, {dur:g} s saturating run at c=256 then SIGTERM: rows lost "
              f"{', '.join(f'{x:,.0f}' for x in lost)} per repeat (requests sent "
              f"{', '.join(f'{x:,.0f}' for x in sent)}; rows "
              f"{', '.join(f'{x:,.0f}' for x in rows)}; the gateway's own dropped count "
              f"{', '.join(f'{x:,.0f}' for x in dropped) or '-'}){short}")
    pt, xl = _cell(res, "xlate_chat_c16", "tokenway"), _cell(res, "xlate_messages_c16", "tokenway")
    a, b = xl.get("cpu_us_per_req"), pt.get("cpu_us_per_req")
    if a and b:
        check(a / b <= XLATE_CPU_MAX_X and not xl.get("errors"),
              f"translated non-stream, Anthropic client -> Chat provider (messages->chat): "
              f"CPU per request {a:.1f} us = x{a / b:.2f} the passthrough's {b:.1f} us "
              f"(target <= x{XLATE_CPU_MAX_X:.2f}; c=16)")
    t = res["targets"].get("tokenway") or {}
    if t.get("status") == "ok":
        rss = t.get("rss_idle_kib")
        if rss:
            check(rss / 1024 <= IDLE_RSS_MAX_MIB,
                  f"tokenway idle RSS {rss / 1024:.1f} MiB (target <= {IDLE_RSS_MAX_MIB:g} MiB)")
        up = t.get("startup_s")
        if up is not None:
            lst = t.get("listen_s")
            check(up < START_MAX_S,
                  f"tokenway start to first request served {up:.3f} s (target < "
                  f"{START_MAX_S:g} s)" + (f"; listening after {lst:.3f} s" if lst else ""))


def h2_checks(res: dict, check: Callable[[bool | None, str], None]) -> None:
    """The HTTP/2 issue's targets: CPU per request of h2c within x1.5 of HTTP/1.1
    keep-alive in the same run, and no frame lost by 512 streams over 8 connections."""
    from bench.scenarios import H2_MANY_CONNECTIONS, H2_MANY_STREAMS, H2_STREAMS

    h2 = _cell(res, f"h2_m{H2_STREAMS}", "tokenway")
    h1 = _cell(res, f"h2_h1_c{H2_STREAMS}", "tokenway")
    a, b = h2.get("cpu_us_per_req"), h1.get("cpu_us_per_req")
    if a and b:
        check(a / b <= H2_CPU_MAX_X and not h2.get("errors") and not h1.get("errors"),
              f"HTTP/2 non-stream chat, {H2_STREAMS} streams on one h2c connection: CPU per "
              f"request {a:.1f} us = x{a / b:.2f} HTTP/1.1 keep-alive's {b:.1f} us at "
              f"c={H2_STREAMS} (target <= x{H2_CPU_MAX_X:.2f}); req/s "
              f"{h2.get('rps') or 0:,.0f} vs {h1.get('rps') or 0:,.0f}")
    many = _cell(res, f"h2_paced_m{H2_MANY_STREAMS}", "tokenway")
    if many:
        check(many.get("streams") and not many.get("frames_lost")
              and not many.get("unterminated") and not many.get("errors"),
              f"HTTP/2 {H2_MANY_STREAMS} paced streams over {H2_MANY_CONNECTIONS} h2c "
              f"connections: frames lost {many.get('frames_lost')} of "
              f"{many.get('frames') or 0:,} in {many.get('streams') or 0:,} streams, "
              f"unterminated {many.get('unterminated')} (target 0)")


def _scenario(res: dict, sid: str) -> dict:
    for sc in res["scenarios"]:
        if sc["id"] == sid:
            return sc
    return {}


def checks_text(res: dict) -> str:
    """The issues' targets, each with the figure that decides it."""
    lines = []

    def check(ok: bool | None, text: str) -> None:
        mark = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"  {mark}  {text}")

    gateway_checks(res, check)
    h2_checks(res, check)

    for mode, what in (("", "non-stream"), ("_sse", "stream")):
        ref = _cell(res, f"xlate_chat{mode}_c16", "tokenway").get("rps")
        for api, path in (("messages", "messages->chat"), ("responses", "responses->messages")):
            c = _cell(res, f"xlate_{api}{mode}_c16", "tokenway")
            r = ((c.get("vs_ref") or {}).get("ratio") or {}).get("rps")
            if r is None:
                continue
            cpu = ((c.get("vs_ref") or {}).get("ratio") or {}).get("cpu_us_per_req")
            extra = (f"; CPU per request x{cpu:.2f}, i.e. {1 / cpu:.0%} of the passthrough's "
                     "rate once CPU-bound" if cpu else "")
            check(r >= 0.85 and not c.get("errors"),
                  f"translated {path} {what} keeps >= 85% of passthrough req/s: "
                  f"{c.get('rps', 0):,.0f} vs {ref or 0:,.0f} = {r:.0%}{extra}")
        # The same client left on a provider of its own protocol.
        for api, path, own in (("messages", "messages->chat", "messages->messages"),
                               ("responses", "responses->messages", "responses->responses")):
            c = _cell(res, f"xlate_{api}{mode}_c16", "tokenway")
            pt = _cell(res, f"xlate_{api}_pt{mode}_c16", "tokenway")
            if not c.get("rps") or not pt.get("rps"):
                continue
            r = c["rps"] / pt["rps"]
            cpu = (c.get("cpu_us_per_req") or 0) / (pt.get("cpu_us_per_req") or 1)
            check(r >= 0.85 and not c.get("errors"),
                  f"translated {path} {what} keeps >= 85% of the {own} passthrough's req/s: "
                  f"{c['rps']:,.0f} vs {pt['rps']:,.0f} = {r:.0%}; CPU per request x{cpu:.2f}")
    for api, path in (("messages", "messages->chat"), ("responses", "responses->messages")):
        c = _cell(res, f"xlate_{api}_ttfb_c16", "tokenway")
        a = ((c.get("vs_ref") or {}).get("added_ms") or {}).get("ttfb_p50_ms")
        if a is not None:
            d = ((c.get("added_ms") or {}).get("ttfb_p50_ms") or {}).get("direct")
            vs_direct = f", {d:+.3f} ms vs direct" if d is not None else ""  # not run
            ttfb = c.get("ttfb_p50_ms")
            check(None, f"translated {path} stream TTFB p50 "
                        f"{'-' if ttfb is None else f'{ttfb:.3f}'} ms: "
                        f"{a:+.3f} ms vs passthrough{vs_direct} (c=16)")
    for api, path, own in (("messages", "messages->chat", "messages->messages"),
                           ("responses", "responses->messages", "responses->responses")):
        c = _cell(res, f"xlate_{api}_paced_c16", "tokenway")
        v = c.get("vs_ref") or {}
        if not v:
            continue
        added = v.get("added_ms") or {}
        r = (v.get("ratio") or {}).get("streams_per_s")
        check(None, f"translated {path} paced streams (64 x 20 ms, c=16): frames lost "
                    f"{c.get('frames_lost')}, streams x{r or 0:.2f} of the {own} passthrough's, "
                    f"added frame delay p50 {_sgn(added.get('frame_delay_p50_ms'))} ms, "
                    f"p99 {_sgn(added.get('frame_delay_p99_ms'))} ms vs that passthrough")
    for name in ("tokenway", "tokenway-nobreaker"):
        for sid, what in (("route_failover_c1", "failover [dead, fake]"),
                          ("route_weighted_c1", "5-route weighted table")):
            c = _cell(res, sid, name)
            a = ((c.get("added_ms") or {}).get("p50_ms") or {}).get("direct")
            if a is None:
                continue
            extra = ("" if name == "tokenway" else
                     " (circuit never opens: every request is refused first)")
            check(a < 1.0 and not c.get("errors"),
                  f"{name} {what}: added p50 vs direct at c=1 {a:+.3f} ms < 1 ms{extra}")
    for sid, name_hint in (("paced_c16", 16), ("paced_c512", 512)):
        c = _cell(res, sid, "tokenway")
        if c:
            lost = c.get("frames_lost")
            d99 = ((c.get("added_ms") or {}).get("frame_delay_p99_ms") or {}).get("direct")
            d50 = ((c.get("added_ms") or {}).get("frame_delay_p50_ms") or {}).get("direct")
            check(lost == 0 and not c.get("unfinished"),
                  f"{name_hint} paced streams (64 x 20 ms): frames lost {lost}, added frame "
                  f"delay p50 {_sgn(d50)} ms, p99 {_sgn(d99)} ms vs direct")
    for name in ("tokenway", "nginx"):
        c = _cell(res, "hol_with_big", name)
        added = (c.get("vs_ref") or {}).get("added_ms") or {}
        if added:
            check(None, f"head-of-line, {name}: 400 KB bodies beside small streams add "
                        f"{_sgn(added.get('ttfb_p50_ms'))} ms TTFB p50, "
                        f"{_sgn(added.get('ttfb_p99_ms'))} ms TTFB p99, "
                        f"{_sgn(added.get('frame_delay_p99_ms'))} ms frame delay p99; "
                        f"frames lost {c.get('frames_lost')}")
    for sid in ("workers_c16", "workers_c64", "workers_c256", "workers_sse_c64"):
        one, two = _cell(res, sid, "tokenway"), _cell(res, sid, "tokenway-w2")
        if one.get("rps") and two.get("rps"):
            check(None, f"--workers 2 vs 1, {sid}: x{two['rps'] / one['rps']:.2f} req/s, "
                        f"CPU per request {one.get('cpu_us_per_req')} -> "
                        f"{two.get('cpu_us_per_req')} us")
    c = _cell(res, "auth_flood_c64", "tokenway-keys")
    if c:
        comp = c.get("companion") or {}
        alone = _cell(res, "auth_valid_c4", "tokenway-keys")
        check(not c.get("errors") and (comp.get("rps") or 0) > 0,
              f"invalid-key flood: {c.get('rejections_per_s') or 0:,.0f} rejections/s at "
              f"{c.get('cpu_us_per_req') or 0:.1f} us CPU each (valid requests beside: "
              f"{comp.get('rps') or 0:,.0f}/s, p99 {comp.get('p99_ms') or 0:.2f} ms, non-2xx "
              f"{comp.get('non2xx')}; alone {alone.get('rps') or 0:,.0f}/s, p99 "
              f"{alone.get('p99_ms') or 0:.2f} ms)")
    for sc in res["scenarios"]:
        if sc.get("driver") == "soak":
            for name, c in sc["results"].items():
                if "rss_flat" not in c:
                    continue
                head = f"{name} soak {c['duration_s']:.0f} s:"
                rss = (f"RSS {c['rss_q1_kib'] / 1024:.1f} MiB at 1/4 -> "
                       f"{c['rss_end_kib'] / 1024:.1f} MiB at the end")
                if "soak_ok" not in c:  # a result file from before the fault mix
                    check(c["rss_flat"], f"{head} {rss}")
                    continue
                pct = c.get("rss_growth_pct") or 0.0
                tasks = (f"tasks {c.get('tasks_q1')} -> {c.get('tasks_end')} (1/4 -> end), "
                         f"{c.get('tasks_before')} -> {c.get('tasks_after')} (before -> "
                         f"after)" if c.get("tasks_ok") is not None else "tasks not read")
                unexpected = sum(t.get("unexpected", 0)
                                 for part in ("failures", "hostile")
                                 for t in (c.get(part) or {}).values())
                check(c["soak_ok"], f"{head} {rss} ({pct:+.1f}%, target within 10%); other "
                      f"fds {c.get('fds_other_before')} -> {c.get('fds_other_after')} "
                      f"({c.get('fds_growth'):+d}); {tasks}; failing requests and hostile "
                      f"clients with an unexpected outcome: {unexpected}")
                check(c["rss_flat"], f"{head} {rss}, strict criterion max(2 MiB, 3%)")
    return "checks (the issues' targets)\n" + "\n".join(lines) if lines else ""


def _sgn(v: object) -> str:
    return f"{v:+.3f}" if isinstance(v, (int, float)) else "-"


def render(res: dict) -> str:
    parts = [header_text(res), targets_text(res), scenarios_text(res)]
    for extra in (soak_text(res), memory_text(res), checks_text(res)):
        if extra:
            parts.append(extra)
    if res.get("notes"):
        parts.append("notes\n" + "\n".join(f"  - {n}" for n in res["notes"]))
    return "\n\n".join(parts) + "\n"
