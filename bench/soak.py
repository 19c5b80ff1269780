"""The memory soak (`soak` group): every driver of `soak_drivers` at once on one target
for `--soak-seconds`, RSS and open file descriptors of its process tree sampled every
second. Flat when RSS at the end minus RSS at 1/4 is at most max(2 MiB, 3%)."""

from __future__ import annotations

import resource
import threading
import time
from typing import TYPE_CHECKING

from bench import procstat
from bench.scenarios import Scenario, soak_drivers

if TYPE_CHECKING:
    from bench.runner import Runner, TargetRun

SOAK_SAMPLE_PERIOD_S = 1.0



def measure_soak(runner: Runner, sc: Scenario, tr: TargetRun) -> dict:
    """The soak: every driver of `soak_drivers` at once for the whole soak, RSS
    (and open file descriptors) of the target sampled every second."""
    assert tr.started is not None
    tpid, upid = tr.started.pid, runner.upstream_pid
    subs = [d for d in soak_drivers(sc.duration_s) if d.api in tr.target.apis]
    tcpu0 = procstat.cpu_ticks(procstat.tree(tpid))
    m0 = procstat.MachineCpu.read()
    ucpu0 = procstat.cpu_ticks(procstat.tree(upid))
    kids0 = procstat.rusage_cpu_s(resource.RUSAGE_CHILDREN)
    samples: list[tuple[float, int, int]] = []  # (seconds since start, RSS KiB, fds)
    stop = threading.Event()
    w0 = time.monotonic()

    def sample() -> None:
        while True:
            pids = procstat.tree(tpid)
            samples.append((round(time.monotonic() - w0, 2), procstat.rss_kib(pids),
                            procstat.fd_count(pids)))
            if stop.wait(SOAK_SAMPLE_PERIOD_S):
                return

    rss_before = procstat.rss_kib_tree(tpid)
    fds_before = procstat.fd_count(procstat.tree(tpid))
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    results: dict[str, dict] = {}
    errors: list[str] = []
    try:
        started = [(d, *runner.start_driver(d, tr, d.duration_s)) for d in subs]
        for d, p, cmd in started:
            try:
                results[d.id] = runner.collect(p, cmd, d.duration_s)
            except Exception as exc:
                errors.append(f"{d.id}: {exc}")
    finally:
        wall = time.monotonic() - w0
        stop.set()
        th.join(5)
    tcpu = (procstat.cpu_ticks(procstat.tree(tpid)) - tcpu0) / procstat.CLK_TCK
    ucpu = (procstat.cpu_ticks(procstat.tree(upid)) - ucpu0) / procstat.CLK_TCK
    m1 = procstat.MachineCpu.read()
    load_cpu = procstat.rusage_cpu_s(resource.RUSAGE_CHILDREN) - kids0
    time.sleep(2.0)  # let in-flight work settle, then look at memory once more
    rss_after = procstat.rss_kib_tree(tpid)
    fds_after = procstat.fd_count(procstat.tree(tpid))
    drivers: dict[str, dict] = {}
    served_all = 0
    for d in subs:
        res = results.get(d.id)
        if res is None:
            continue
        fields, served = runner._driver_fields(d, res)
        fields.update(conc=d.conc, api=d.api, stream=d.stream, model=d.model)
        drivers[d.id] = fields
        served_all += served
        for key in ("non2xx", "sockerr", "frames_lost", "unterminated", "unfinished"):
            if fields.get(key):
                errors.append(f"{d.id} {key}={fields[key]}")
    load_end = [s for s in samples if s[0] <= sc.duration_s] or samples

    def at(frac: float) -> tuple[float, int, int]:
        t = sc.duration_s * frac
        return min(load_end, key=lambda s: abs(s[0] - t))

    q1, half, end = at(0.25), at(0.5), load_end[-1]
    growth = end[1] - q1[1]
    flat = growth <= max(2048, 0.03 * q1[1])
    step = max(1, len(samples) // 120)
    busy = (m1.busy - m0.busy) / procstat.CLK_TCK
    out = {
        "tool": "soak", "duration_s": round(wall, 1), "drivers": drivers,
        "reqs": served_all, "rps": round(served_all / wall, 1) if wall else None,
        "cpu_s": round(tcpu, 2), "cores": round(tcpu / wall, 3) if wall else None,
        "cpu_us_per_req": round(tcpu * 1e6 / served_all, 2) if served_all else None,
        "upstream_cpu_us_per_req": round(ucpu * 1e6 / served_all, 2) if served_all else None,
        "other_cores": round((busy - tcpu - ucpu - load_cpu) / wall, 3) if wall else None,
        "rss_before_kib": rss_before, "rss_q1_kib": q1[1], "rss_half_kib": half[1],
        "rss_end_kib": end[1], "rss_after_kib": rss_after,
        "rss_max_kib": max(s[1] for s in samples) if samples else None,
        "rss_growth_q1_end_kib": growth, "rss_flat": flat,
        "fds_before": fds_before, "fds_q1": q1[2], "fds_end": end[2], "fds_after": fds_after,
        "rss_series": [[s[0], s[1]] for s in samples[::step]],
    }
    tr.rss_peak_kib = max(tr.rss_peak_kib, out["rss_max_kib"] or 0)
    if not flat:
        errors.append(f"RSS grew {growth / 1024:.1f} MiB between 1/4 soak and the end")
    if errors:
        out["errors"] = "; ".join(errors)
    return out

