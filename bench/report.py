"""Render a result dict (one run) as the plain-text tables `python -m bench` prints."""

from __future__ import annotations

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
    ("p50 ms", lambda c: _num(c.get("p50_ms"), "{:.3f}")),
    ("p99 ms", lambda c: _num(c.get("p99_ms"), "{:.3f}")),
    ("CPU us/req", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("x direct", lambda c: _ratio(c, "cpu_us_per_req", "direct")),
    ("x nginx", lambda c: _ratio(c, "cpu_us_per_req", "nginx")),
    ("cores", lambda c: _num(c.get("cores"))),
    ("upstream us/req", lambda c: _num(c.get("upstream_cpu_us_per_req"), "{:.1f}")),
    ("other cores", lambda c: _num(_floor0(c.get("other_cores")))),
]

SSE_COLS: list[Col] = [
    ("streams/s", lambda c: _rate(c.get("rps"))),
    ("x direct", lambda c: _ratio(c, "rps", "direct")),
    ("x nginx", lambda c: _ratio(c, "rps", "nginx")),
    ("p50 ms", lambda c: _num(c.get("p50_ms"), "{:.3f}")),
    ("p99 ms", lambda c: _num(c.get("p99_ms"), "{:.3f}")),
    ("CPU us/stream", lambda c: _num(c.get("cpu_us_per_req"), "{:.1f}")),
    ("us/chunk", lambda c: _num(c.get("cpu_us_per_chunk"), "{:.2f}")),
    ("x direct", lambda c: _ratio(c, "cpu_us_per_chunk", "direct")),
    ("x nginx", lambda c: _ratio(c, "cpu_us_per_chunk", "nginx")),
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

COLS_BY_GROUP = {"chat": LOAD_COLS, "messages": LOAD_COLS, "sse": SSE_COLS,
                 "messages_sse": SSE_COLS, "stream_check": CHECK_COLS, "paced": PACED_COLS}


def header_text(res: dict) -> str:
    m, v, g, cfg = res["machine"], res["versions"], res.get("git") or {}, res["config"]
    commit = (g.get("commit") or "no commit")[:10] + (" (dirty tree)" if g.get("dirty") else "")
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
        f"warm-up {d['warmup']:g} s; repeat {cfg.get('repeat', 1)}; "
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
        rows.append([name, t.get("version") or "-", first, _mib(t.get("rss_idle_kib")),
                     _mib(t.get("rss_peak_kib")), _mib(t.get("rss_end_kib")), status])
    return "targets\n" + _table(["target", "version", "start->200", "RSS idle", "RSS peak",
                                 "RSS end", "status"], rows, left=2, left_last=True)


def scenarios_text(res: dict) -> str:
    out = []
    by_group: dict[str, list[dict]] = {}
    for sc in res["scenarios"]:
        by_group.setdefault(sc["group"], []).append(sc)
    for group, scs in by_group.items():
        cols = COLS_BY_GROUP.get(group, LOAD_COLS)
        rows, problems = [], []
        for sc in scs:
            for name, cell in sc["results"].items():
                row = [str(sc["conc"]), name] + [fn(cell) for _, fn in cols]
                if cell.get("errors"):
                    row[1] += " !"
                    problems.append(f"  ! {name} c={sc['conc']}: {cell['errors']}")
                rows.append(row)
        dur = scs[0]["duration_s"]
        title = f"{scs[0]['title']} ({dur:g} s per cell)"
        if not rows:
            out.append(f"{title}\n  (no target ran)")
            continue
        out.append(title + "\n" + _table(["c", "target"] + [h for h, _ in cols], rows)
                   + ("\n" + "\n".join(problems) if problems else ""))
    return "\n\n".join(out)


def render(res: dict) -> str:
    parts = [header_text(res), targets_text(res), scenarios_text(res)]
    if res.get("notes"):
        parts.append("notes\n" + "\n".join(f"  - {n}" for n in res["notes"]))
    return "\n\n".join(parts) + "\n"
