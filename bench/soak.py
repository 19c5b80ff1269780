"""The soak (`soak` group): every driver of `soak_drivers` at once on one target for
`--soak-seconds`, with failing requests and hostile clients beside them
(`bench.soak_faults`); RSS and open file descriptors of its process tree sampled every
second, and, from a gateway's /health, its live asyncio tasks, client connections and
provider connections.

Verdicts, each judged between 1/4 of the soak (after warm-up) and its end, and between
before the load and 2 s after it:
- RSS: within 10% (the issue's target); the stricter max(2 MiB, 3%) is kept and reported;
- file descriptors: those not held by a client or provider connection grow by at most
  FD_SLACK from before to after (raw counts reported too);
- tasks: at most TASK_SLACK more at the end than at 1/4, and after than before;
- every hostile case refused or closed (none hung), every failing request answered.
"""

from __future__ import annotations

import http.client
import resource
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson

from bench import procstat
from bench.scenarios import Scenario, soak_drivers
from bench.soak_faults import FailureDriver, HostileClients

if TYPE_CHECKING:
    from bench.runner import Runner, TargetRun

SOAK_SAMPLE_PERIOD_S = 1.0
RSS_FLAT_FRAC = 0.10         # the target: RSS flat within 10% after warm-up
RSS_STRICT_KIB, RSS_STRICT_FRAC = 2048, 0.03   # the older, stricter criterion
TASK_SLACK = 16
FD_SLACK = 8


class HealthProbe:
    """GET /health on one keep-alive connection: tasks, connections, provider sockets."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        u = urlsplit(base_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.headers = headers
        self.conn: http.client.HTTPConnection | None = None

    def read(self) -> dict | None:
        for _ in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5.0)
            try:
                self.conn.request("GET", "/health", headers=self.headers)
                obj = orjson.loads(self.conn.getresponse().read())
                if not isinstance(obj, dict):
                    return None
                up = obj.get("upstream") or {}
                return {"tasks": obj.get("tasks"), "conns": obj.get("connections"),
                        "up_open": up.get("open") if isinstance(up, dict) else None}
            except (OSError, ValueError, http.client.HTTPException):
                self.close()
        return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None



def measure_soak(runner: Runner, sc: Scenario, tr: TargetRun) -> dict:
    """The soak: every driver of `soak_drivers` at once for the whole soak, RSS
    (and open file descriptors) of the target sampled every second."""
    assert tr.started is not None
    tpid, upid = tr.started.pid, runner.upstream_pid
    subs = [d for d in soak_drivers(sc.duration_s) if d.api in tr.target.apis]
    gateway = tr.target.kind == "gateway"
    base = tr.started.base_url
    probe = HealthProbe(base, tr.target.request_headers("chat")) if gateway else None
    tcpu0 = procstat.cpu_ticks(procstat.tree(tpid))
    m0 = procstat.MachineCpu.read()
    ucpu0 = procstat.cpu_ticks(procstat.tree(upid))
    kids0 = procstat.rusage_cpu_s(resource.RUSAGE_CHILDREN)
    # (seconds since start, RSS KiB, fds, tasks, client conns, provider conns)
    samples: list[tuple[float, int, int, int | None, int | None, int | None]] = []
    stop = threading.Event()
    w0 = time.monotonic()

    def point() -> tuple[int, int, int | None, int | None, int | None]:
        h = probe.read() if probe is not None else None
        pids = procstat.tree(tpid)
        h = h or {}
        return (procstat.rss_kib(pids), procstat.fd_count(pids), h.get("tasks"),
                h.get("conns"), h.get("up_open"))

    def sample() -> None:
        while True:
            samples.append((round(time.monotonic() - w0, 2), *point()))
            if stop.wait(SOAK_SAMPLE_PERIOD_S):
                return

    before = point()
    w0 = time.monotonic()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    results: dict[str, dict] = {}
    errors: list[str] = []
    fails: FailureDriver | None = None
    hostile: HostileClients | None = None
    if gateway:
        fails = FailureDriver(base, tr.target.request_headers)
        hostile = HostileClients(base, tr.target.request_headers, tr.target.checks_keys)
    try:
        started = [(d, *runner.start_driver(d, tr, d.duration_s)) for d in subs]
        if fails is not None and hostile is not None:
            fails.start()
            hostile.start()
        try:
            # The load drivers stop on their own clock; the fault threads with them.
            time.sleep(max(0.0, sc.duration_s - (time.monotonic() - w0)))
        finally:
            if fails is not None and hostile is not None:
                hostile.stop()
                fails.stop()
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
    after = point()
    if probe is not None:
        probe.close()
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

    def at(frac: float) -> tuple:
        t = sc.duration_s * frac
        return min(load_end, key=lambda s: abs(s[0] - t))

    q1, half, end = at(0.25), at(0.5), load_end[-1]
    growth = end[1] - q1[1]
    flat_strict = growth <= max(RSS_STRICT_KIB, RSS_STRICT_FRAC * q1[1])
    flat = growth <= RSS_FLAT_FRAC * q1[1]

    def other_fds(p: tuple) -> int | None:
        """fds held by neither a client nor a provider connection."""
        fds, conns, up = p[1], p[3], p[4]
        return None if conns is None or up is None else fds - conns - up

    ob, oa = other_fds(before), other_fds(after)
    fd_growth = (oa - ob) if ob is not None and oa is not None else after[1] - before[1]
    fds_flat = fd_growth <= FD_SLACK
    tasks_ok: bool | None = None
    tb, tq, te, ta = before[2], q1[3], end[3], after[2]
    if isinstance(tb, int) and isinstance(tq, int) and isinstance(te, int) \
            and isinstance(ta, int):
        tasks_ok = te - tq <= TASK_SLACK and ta - tb <= TASK_SLACK
    task_series = [s[3] for s in samples if isinstance(s[3], int)]
    step = max(1, len(samples) // 120)
    busy = (m1.busy - m0.busy) / procstat.CLK_TCK
    out = {
        "tool": "soak", "duration_s": round(wall, 1), "drivers": drivers,
        "reqs": served_all, "rps": round(served_all / wall, 1) if wall else None,
        "cpu_s": round(tcpu, 2), "cores": round(tcpu / wall, 3) if wall else None,
        "cpu_us_per_req": round(tcpu * 1e6 / served_all, 2) if served_all else None,
        "upstream_cpu_us_per_req": round(ucpu * 1e6 / served_all, 2) if served_all else None,
        "other_cores": round((busy - tcpu - ucpu - load_cpu) / wall, 3) if wall else None,
        "rss_before_kib": before[0], "rss_q1_kib": q1[1], "rss_half_kib": half[1],
        "rss_end_kib": end[1], "rss_after_kib": after[0],
        "rss_max_kib": max(s[1] for s in samples) if samples else None,
        "rss_growth_q1_end_kib": growth,
        "rss_growth_pct": round(100 * growth / q1[1], 2) if q1[1] else None,
        "rss_flat": flat_strict, "rss_flat_10pct": flat,
        "fds_before": before[1], "fds_q1": q1[2], "fds_half": half[2], "fds_end": end[2],
        "fds_after": after[1], "fds_max": max(s[2] for s in samples) if samples else None,
        "fds_other_before": ob, "fds_other_after": oa, "fds_growth": fd_growth,
        "fds_flat": fds_flat,
        "conns_before": before[3], "conns_after": after[3],
        "upstream_open_before": before[4], "upstream_open_after": after[4],
        "tasks_before": before[2], "tasks_q1": q1[3], "tasks_half": half[3],
        "tasks_end": end[3], "tasks_after": after[2],
        "tasks_max": max(task_series) if task_series else None, "tasks_ok": tasks_ok,
        "task_slack": TASK_SLACK, "fd_slack": FD_SLACK,
        "rss_series": [[s[0], s[1]] for s in samples[::step]],
        "fd_series": [[s[0], s[2]] for s in samples[::step]],
        "task_series": [[s[0], s[3]] for s in samples[::step]],
    }
    tr.rss_peak_kib = max(tr.rss_peak_kib, out["rss_max_kib"] or 0)
    if fails is not None and hostile is not None:
        out["failures"] = fails.result()
        out["hostile"] = hostile.result()
        for kind, res in (("failing request", out["failures"]),
                          ("hostile client", out["hostile"])):
            for name, t in res.items():
                if t["unexpected"]:
                    errors.append(f"{kind} {name}: {t['unexpected']} of {t['count']} "
                                  f"unexpected ({t['outcomes']})")
        for pool in (fails.pool, hostile.pool):
            errors += [f"harness: {e}" for e in pool.errors]
    faults_ok = not any(t["unexpected"] for res in (out.get("failures") or {},
                                                     out.get("hostile") or {})
                        for t in res.values())
    out["faults_ok"] = faults_ok
    out["soak_ok"] = bool(flat and fds_flat and tasks_ok is not False and faults_ok)
    if not flat:
        errors.append(f"RSS grew {growth / 1024:.1f} MiB ({100 * growth / q1[1]:.1f}%) "
                      "between 1/4 soak and the end")
    elif not flat_strict:
        errors.append(f"RSS grew {growth / 1024:.1f} MiB between 1/4 soak and the end "
                      "(within 10%, above max(2 MiB, 3%))")
    if not fds_flat:
        errors.append(f"fds not held by a connection grew by {fd_growth}")
    if tasks_ok is False:
        errors.append(f"tasks grew: {q1[3]} at 1/4 -> {end[3]} at the end, "
                      f"{before[2]} before -> {after[2]} after")
    if errors:
        out["errors"] = "; ".join(errors)
    return out

