"""One benchmark run: start the fake upstream and the targets, run every scenario
against every target, side by side, and turn the measurements into a result dict.

Scenario-major order: each scenario runs on each target in turn (direct, nginx,
tokenway, peers) before the next scenario starts, so the targets compared in one table
row were measured seconds apart, under the same background noise. All targets stay up
for the whole run; an idle target costs no CPU.

CPU placement (`--pin auto`, the default on a machine with 2+ CPUs): the measured
process tree owns the first CPU; the load generator, the fake upstream and this harness
share the others. When the measured target is the fake itself (direct), the fake moves
to the first CPU for that measurement. Everything runs at the default nice level, so
the target and the load generator compete on equal terms with anything else on the box.
"""

from __future__ import annotations

import http.client
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench import ledger_check, machine, procstat, soak
from bench.scenarios import (
    CHUNKS,
    CONCURRENCY,
    DEFAULT_GROUPS,
    DURATIONS,
    GROUPS,
    HOL_MODEL,
    HOL_STREAM_CONC,
    PACED_CHUNKS,
    PACED_CONC,
    PACED_INTERVAL_MS,
    PACED_MANY_CONC,
    RATES,
    SSE_CONCURRENCY,
    WRONG_KEY,
    Scenario,
    build_scenarios,
    runs_on,
)
from bench.summary import (
    BENCH_DIR,
    _median_cell,
    add_ratios,
    add_ref_ratios,
    noise_notes,
)
from bench.targets import (
    CORE_NAMES,
    PEER_CLASSES,
    REPO_ROOT,
    Context,
    DirectTarget,
    FloorTarget,
    NginxTarget,
    Started,
    Target,
    TokenwayTarget,
    free_port,
    last_lines,
    tokenway_variants,
)

POST_LUA = BENCH_DIR / "post.lua"
SCHEMA = "tokenway-bench/1"

WRK_TIMEOUT = "10s"
# A load run may overrun its duration by this much before it is killed.
DRIVER_SLACK_S = 90.0
RSS_SAMPLE_PERIOD_S = 0.25
READY_POLL_S = 0.02
PROBE_TIMEOUT_S = 5.0
WARMUP_FIRST_TIMEOUT_S = 60.0
UPSTREAM_START_TIMEOUT_S = 15.0


def http_post(base_url: str, path: str, body: bytes, headers: dict[str, str],
              timeout_s: float = PROBE_TIMEOUT_S) -> tuple[int, bytes]:
    from urllib.parse import urlsplit

    u = urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout_s)
    try:
        conn.request("POST", path, body=body,
                     headers={"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class RssSampler(threading.Thread):
    """Peak RSS of a process tree while a load run is going."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            self.peak_kib = max(self.peak_kib, procstat.rss_kib_tree(self.pid))
            if self._stop_event.wait(RSS_SAMPLE_PERIOD_S):
                return

    def stop(self) -> int:
        self._stop_event.set()
        self.join(5)
        return self.peak_kib


@dataclass
class TargetRun:
    target: Target
    status: str = "not run"       # ok | not available | not run | failed
    reason: str | None = None
    started: Started | None = None
    startup_s: float | None = None
    listen_s: float | None = None
    rss_idle_kib: int | None = None
    rss_peak_kib: int = 0
    rss_end_kib: int | None = None
    warned: set[str] = field(default_factory=set)
    ledger_tid: int | None = None   # gateways: the ledger writer thread (ledger_check)
    ledger_thread: str = ""         # how it was found, or why not
    restarts: int = 0               # `ledger` cells stop and start the gateway again

    def info(self) -> dict:
        t = self.target
        return {"status": self.status, "reason": self.reason, "kind": t.kind,
                "version": t.version, "base_url": self.started.base_url if self.started else None,
                "startup_s": _r(self.startup_s), "listen_s": _r(self.listen_s),
                "rss_idle_kib": self.rss_idle_kib, "rss_peak_kib": self.rss_peak_kib or None,
                "rss_end_kib": self.rss_end_kib, "apis": sorted(t.apis), "note": t.note,
                "command": t.cmdline, "log": str(t.log_path) if t.log_path else None,
                **({"ledger_thread": self.ledger_thread, "restarts": self.restarts}
                   if t.kind == "gateway" else {})}


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)



class Runner:
    def __init__(self, opts) -> None:
        self.opts = opts
        self.mode = "quick" if opts.quick else "full"
        self.dur = dict(DURATIONS[self.mode])
        if opts.duration:
            self.dur["load"] = opts.duration
        self.t_start = time.monotonic()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="tokenway-bench-"))
        self.upstream_proc: subprocess.Popen | None = None
        self.upstream_url = ""
        self.upstream_pid = 0
        self.upstream_info: dict = {}
        self.target_cpus, self.load_cpus = self._placement(opts.pin)
        self.load_tool = "loadgen"
        self.notes: list[str] = []
        self.context: Context | None = None  # set by run(); targets restart with it

    # ------------------------------------------------------------------ helpers
    def say(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    @staticmethod
    def _placement(pin: str) -> tuple[set[int] | None, set[int] | None]:
        cpus = procstat.online_cpus()
        if pin == "none" or (pin == "auto" and len(cpus) < 2):
            return None, None
        if pin == "auto":
            return {cpus[0]}, set(cpus[1:])
        tpart, lpart = pin.split(":", 1)  # "0:1-3" or "0:1,2"

        def parse(spec: str) -> set[int]:
            out: set[int] = set()
            for item in spec.split(","):
                if "-" in item:
                    a, b = item.split("-", 1)
                    out.update(range(int(a), int(b) + 1))
                elif item:
                    out.add(int(item))
            return out

        return parse(tpart), parse(lpart)

    def _pin_load(self) -> None:
        if self.load_cpus:
            os.sched_setaffinity(0, self.load_cpus)

    # ------------------------------------------------------------------ upstream
    def start_upstream(self) -> None:
        port = free_port()
        log = self.tmpdir / "fake_upstream.log"
        cmd = [sys.executable, "-m", "bench.fake_upstream", "--port", str(port),
               "--chunks", str(CHUNKS), "--interval-ms", "0", "--delay-ms", "0"]
        t0 = time.monotonic()
        with open(log, "ab") as f:
            self.upstream_proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=f,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=self._pin_load)
        self.upstream_pid = self.upstream_proc.pid
        self.upstream_url = f"http://127.0.0.1:{port}/v1"
        body = Scenario("probe", "chat", "chat", 1, False, "load", "gpt-bench", 0, 0, 0).body()
        while True:
            if self.upstream_proc.poll() is not None:
                raise RuntimeError(f"fake upstream exited: {last_lines(log)}")
            try:
                status, _ = http_post(f"http://127.0.0.1:{port}", "/v1/chat/completions", body,
                                      {})
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > UPSTREAM_START_TIMEOUT_S:
                raise RuntimeError("fake upstream did not answer in time")
            time.sleep(READY_POLL_S)
        startup = time.monotonic() - t0
        time.sleep(0.2)
        self.upstream_info = {"url": self.upstream_url, "pid": self.upstream_pid,
                              "startup_s": round(startup, 4),
                              "rss_idle_kib": procstat.rss_kib_tree(self.upstream_pid)}
        self.say(f"fake upstream on {self.upstream_url} (pid {self.upstream_pid}, "
                 f"first 200 after {startup * 1000:.0f} ms)")

    def stop_upstream(self) -> None:
        p = self.upstream_proc
        if p is None or p.poll() is not None:
            return
        self.upstream_info["rss_end_kib"] = procstat.rss_kib_tree(p.pid)
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    # ------------------------------------------------------------------ targets
    def make_targets(self, scenarios: list[Scenario]) -> list[TargetRun]:
        opts = self.opts
        only = set(opts.only) if opts.only else set(CORE_NAMES)
        peers = set(opts.peers)
        runs: list[TargetRun] = []
        core: list[Target] = [DirectTarget(self.upstream_pid), NginxTarget(), FloorTarget(),
                              TokenwayTarget()]
        for t in core:
            tr = TargetRun(t)
            if t.name not in only:
                tr.reason = "excluded by --only"
            elif t.groups is not None and not any(runs_on(sc, t) for sc in scenarios):
                tr.reason = "no selected scenario uses it"
            runs.append(tr)
        # Variants of tokenway start only when a selected scenario needs them.
        for t in tokenway_variants():
            tr = TargetRun(t)
            wanted = t.name in only or "tokenway" in only
            if not wanted:
                tr.reason = "excluded by --only"
            elif not any(runs_on(sc, t) for sc in scenarios):
                tr.reason = "no selected scenario uses it"
            runs.append(tr)
        for name, cls in PEER_CLASSES.items():
            tr = TargetRun(cls())
            if name not in peers and name not in only:
                tr.reason = "use --peers " + name
            runs.append(tr)
        return runs

    def ctx(self, models: list[str]) -> Context:
        return Context(tmpdir=self.tmpdir, target_cpus=self.target_cpus,
                       workers=self.opts.workers, models=models,
                       install=not self.opts.no_install,
                       tokenway_args=list(self.opts.tokenway_args),
                       tokenway_env=dict(self.opts.tokenway_env), log=self.say)

    def start_target(self, tr: TargetRun, ctx: Context, probe: Scenario) -> None:
        t = tr.target
        try:
            why = t.unavailable(ctx)
        except Exception as exc:  # a peer's install must never break the run
            why = f"check failed: {exc!r}"
        if why:
            tr.status, tr.reason = "not available", why
            self.say(f"{t.name}: not available: {why}")
            return
        t0 = time.monotonic()
        try:
            tr.started = t.start(self.upstream_url, ctx)
        except Exception as exc:
            tr.status, tr.reason = "failed", f"start failed: {exc!r}"
            self.say(f"{t.name}: {tr.reason}")
            t.stop()
            return
        last = ""
        body, headers = probe.body(), t.request_headers(probe.api)
        while True:
            died = t.exited()
            if died:
                tr.status, tr.reason = "not available", died
                break
            if tr.listen_s is None and isinstance(t, TokenwayTarget) and t.listening_line():
                tr.listen_s = time.monotonic() - t0
            try:
                status, data = http_post(tr.started.base_url, probe.path, body, headers)
                if status == 200:
                    tr.startup_s = time.monotonic() - t0
                    tr.status = "ok"
                    break
                last = f"HTTP {status}: {data[:160].decode(errors='replace')}"
            except OSError as exc:
                last = repr(exc)
            if time.monotonic() - t0 > t.start_timeout_s:
                tr.status = "failed"
                tr.reason = (f"no 200 within {t.start_timeout_s:.0f} s (last: {last}); "
                             f"log: {last_lines(t.log_path) if t.log_path else '-'}")
                break
            time.sleep(READY_POLL_S)
        if tr.status != "ok":
            self.say(f"{t.name}: {tr.status}: {tr.reason}")
            t.stop()
            return
        time.sleep(0.2)
        tr.rss_idle_kib = procstat.rss_kib_tree(tr.started.pid)
        if t.kind == "gateway":
            ledger_check.locate_writer(tr)
        self.say(f"{t.name}: ready at {tr.started.base_url} (pid {tr.started.pid}), "
                 f"first 200 after {tr.startup_s:.3f} s, RSS {tr.rss_idle_kib / 1024:.1f} MiB")

    # ------------------------------------------------------------------ drivers
    def driver_cmd(self, sc: Scenario, url: str, headers: dict[str, str], duration_s: float,
                   body_file: Path) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        hdr_items = [f"{k}: {v}" for k, v in headers.items()]
        if sc.driver == "load" and self.load_tool == "wrk":
            nthreads = max(1, min(sc.conc, len(self.load_cpus or procstat.online_cpus())))
            env.update({"WRK_BODY_FILE": str(body_file), "WRK_HDRS": "|".join(hdr_items)})
            env.pop("WRK_BODY", None)
            env.pop("WRK_KEY", None)
            if sc.group == "ledger":
                env["WRK_COUNT_SENT"] = "1"  # rows are checked against requests sent
            secs = max(1, round(duration_s))
            return (["wrk", f"-t{nthreads}", f"-c{sc.conc}", f"-d{secs}s", "--timeout",
                     WRK_TIMEOUT, "--latency", "-s", str(POST_LUA), url], env)
        if sc.driver in ("h2load", "h2sse"):
            if sc.driver == "h2load":
                cmd = [sys.executable, "-m", "bench.h2load", "--url", url, "--clients",
                       str(sc.connections), "--streams", str(sc.conc // sc.connections),
                       "--duration", str(duration_s), "--body-file", str(body_file)]
            else:
                cmd = [sys.executable, "-m", "bench.h2_sse_client", "--url", url, "--conc",
                       str(sc.conc), "--connections", str(sc.connections), "--duration",
                       str(duration_s), "--body-file", str(body_file), "--expect",
                       str(sc.chunks), "--interval-ms", str(sc.interval_ms)]
            for h in hdr_items:
                cmd += ["--header", h]
            return cmd, env
        module = "bench.loadgen" if sc.driver in ("load", "rate") else "bench.sse_client"
        cmd = [sys.executable, "-m", module, "--url", url, "--conc", str(sc.conc),
               "--duration", str(duration_s), "--body-file", str(body_file)]
        if sc.driver == "rate":
            cmd += ["--rate", str(sc.rate)]
        for h in hdr_items:
            cmd += ["--header", h]
        if sc.driver == "sse":
            cmd += ["--expect", str(sc.chunks), "--interval-ms", str(sc.interval_ms)]
            if sc.interval_ms:
                # Spread the stream starts over one frame interval: streams that all
                # start and tick in the same instant measure queueing in the fake.
                cmd += ["--stagger-ms", str(sc.interval_ms / sc.conc)]
            if sc.conc >= PACED_MANY_CONC:
                # 512 new connections in one interval is a burst: time it apart.
                cmd += ["--warm-streams", "1"]
        return cmd, env

    def headers_for(self, sc: Scenario, t: Target) -> dict[str, str]:
        headers = t.request_headers(sc.api)
        if sc.key == "wrong":
            headers = {k: (f"Bearer {WRONG_KEY}" if k.lower() == "authorization"
                           else WRONG_KEY if k.lower() == "x-api-key" else v)
                       for k, v in headers.items()}
        return headers

    def start_driver(self, sc: Scenario, tr: TargetRun, duration_s: float,
                     free: bool = False) -> tuple[subprocess.Popen, list[str]]:
        assert tr.started is not None
        body_file = self.tmpdir / f"body-{sc.id}.json"
        if not body_file.exists():
            body_file.write_bytes(sc.body())
        cmd, env = self.driver_cmd(sc, tr.started.base_url + sc.path,
                                   self.headers_for(sc, tr.target), duration_s, body_file)
        pin = self._unpin if free else self._pin_load
        p = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                             preexec_fn=pin)
        return p, cmd

    @staticmethod
    def collect(p: subprocess.Popen, cmd: list[str], duration_s: float) -> dict:
        try:
            out, err = p.communicate(timeout=duration_s + DRIVER_SLACK_S)
        except subprocess.TimeoutExpired:
            p.kill()  # our own driver, by its pid
            out, err = p.communicate()
            raise RuntimeError(f"{cmd[0]} overran its {duration_s:g} s by "
                               f"{DRIVER_SLACK_S:g} s and was killed") from None
        for line in out.splitlines():
            if line.startswith("BENCH_RESULT "):
                return orjson.loads(line[len("BENCH_RESULT "):])
        raise RuntimeError(f"{cmd[0]} exited {p.returncode} without a result: "
                           f"{(err or out).strip()[-300:]}")

    def run_driver(self, sc: Scenario, tr: TargetRun, duration_s: float) -> dict:
        p, cmd = self.start_driver(sc, tr, duration_s)
        return self.collect(p, cmd, duration_s)

    def _unpin(self) -> None:
        os.sched_setaffinity(0, set(procstat.online_cpus_all()))

    @staticmethod
    def _driver_fields(sc: Scenario, res: dict) -> tuple[dict, int]:
        """The figures of one driver's result, and how many requests (streams) it served."""
        out: dict = {}
        if sc.driver in ("load", "h2load"):
            served = int(res.get("reqs", 0))
            out.update({k: res.get(k) for k in ("reqs", "rps", "p50_ms", "p90_ms", "p99_ms",
                                                "max_ms", "non2xx", "sockerr")})
            out.update({k: res[k] for k in ("sent", "read_err", "write_err", "timeouts")
                        if k in res})
            if sc.stream:
                out["streams_per_s"] = res.get("rps")
        elif sc.driver == "rate":
            served = int(res.get("reqs", 0))
            out.update({k: res.get(k) for k in (
                "offered_rps", "scheduled", "reqs", "rps", "p50_ms", "p90_ms", "p99_ms",
                "max_ms", "non2xx", "sockerr", "dropped", "unfinished", "conns_max",
                "service_p50_ms", "service_p99_ms", "send_lag_p99_ms")})
        else:
            served = int(res.get("streams", 0))
            out.update({k: res.get(k) for k in ("streams", "streams_ok", "streams_per_s",
                                                "frames", "frames_lost", "frames_extra",
                                                "unterminated", "unfinished", "non2xx",
                                                "sockerr", "frame_delay_samples")})
            for key in ("ttfb", "ttff", "total", "frame_delay", "gap_excess", "first_ttfb",
                        "first_frame_delay"):
                for pk, v in (res.get(key) or {}).items():
                    out[f"{key}_{pk}"] = v
        return out, served

    def measure(self, sc: Scenario, tr: TargetRun) -> dict:
        """One cell: run the driver(s), and account for every CPU second on the box."""
        if sc.driver == "soak":
            return soak.measure_soak(self, sc, tr)
        assert tr.started is not None
        tpid, upid = tr.started.pid, self.upstream_pid
        same = tpid == upid
        free = sc.placement == "free" and self.target_cpus is not None
        all_cpus = set(procstat.online_cpus_all())
        if free:
            procstat.set_affinity_tree(tpid, all_cpus)
            procstat.set_affinity_tree(upid, all_cpus)
        elif self.target_cpus:
            procstat.set_affinity_tree(upid, self.target_cpus if same else self.load_cpus)
        tcpu0 = procstat.cpu_ticks(procstat.tree(tpid))
        ucpu0 = procstat.cpu_ticks(procstat.tree(upid))
        flt0 = procstat.major_faults(procstat.tree(tpid))
        psi0 = procstat.memory_pressure_full_us()
        m0 = procstat.MachineCpu.read()
        kids0 = procstat.rusage_cpu_s(resource.RUSAGE_CHILDREN)
        self0 = procstat.rusage_cpu_s(resource.RUSAGE_SELF)
        lw0 = ledger_check.writer_cpu_ns(tr)
        sampler = RssSampler(tpid)
        sampler.start()
        w0 = time.monotonic()
        comp_res: dict | None = None
        try:
            p, cmd = self.start_driver(sc, tr, sc.duration_s, free)
            cp = None
            if sc.companion is not None:
                cp = self.start_driver(sc.companion, tr, sc.duration_s, free)
            try:
                res = self.collect(p, cmd, sc.duration_s)
            finally:
                if cp is not None:
                    comp_res = self.collect(cp[0], cp[1], sc.duration_s)
        finally:
            wall = time.monotonic() - w0
            peak = sampler.stop()
            if free:
                procstat.set_affinity_tree(tpid, self.target_cpus)
                procstat.set_affinity_tree(upid, self.load_cpus)
        tcpu = (procstat.cpu_ticks(procstat.tree(tpid)) - tcpu0) / procstat.CLK_TCK
        lw1 = ledger_check.writer_cpu_ns(tr)
        ucpu = (procstat.cpu_ticks(procstat.tree(upid)) - ucpu0) / procstat.CLK_TCK
        majflt = procstat.major_faults(procstat.tree(tpid)) - flt0
        psi1 = procstat.memory_pressure_full_us()
        m1 = procstat.MachineCpu.read()
        load_cpu = procstat.rusage_cpu_s(resource.RUSAGE_CHILDREN) - kids0
        self_cpu = procstat.rusage_cpu_s(resource.RUSAGE_SELF) - self0
        if self.target_cpus and same and not free:
            procstat.set_affinity_tree(upid, self.load_cpus)
        tr.rss_peak_kib = max(tr.rss_peak_kib, peak)
        busy = (m1.busy - m0.busy) / procstat.CLK_TCK
        ours = tcpu + (0.0 if same else ucpu) + load_cpu + self_cpu
        out: dict = {"tool": res.get("tool")}
        fields, served = self._driver_fields(sc, res)
        out.update(fields)
        served_all = served
        if comp_res is not None and sc.companion is not None:
            cfields, cserved = self._driver_fields(sc.companion, comp_res)
            out["companion"] = dict(cfields, id=sc.companion.id, conc=sc.companion.conc)
            served_all += cserved
        dur = float(res.get("duration_s") or wall) or wall
        out.update({
            "duration_s": round(dur, 3),
            "cpu_s": round(tcpu, 3),
            "cores": round(tcpu / dur, 3) if dur else None,
            # With a companion driver this divides by the requests of both drivers.
            "cpu_us_per_req": round(tcpu * 1e6 / served_all, 2) if served_all else None,
            "upstream_cpu_us_per_req": round(ucpu * 1e6 / served_all, 2) if served_all else None,
            "loadgen_cores": round(load_cpu / wall, 3),
            "other_cores": round((busy - ours) / wall, 3),
            "steal_cores": round((m1.steal - m0.steal) / procstat.CLK_TCK / wall, 3),
            "rss_peak_kib": peak or None,
            "placement": "free" if free else ("pinned" if self.target_cpus else "none"),
            "major_faults": majflt,
            "memory_stall_ms": round((psi1 - psi0) / 1000, 1)
            if psi0 is not None and psi1 is not None else None,
        })
        out.update(ledger_check.writer_figures(lw0, lw1, served_all))
        if sc.stream and served and sc.companion is None:
            out["cpu_us_per_chunk"] = round(tcpu * 1e6 / served / sc.events_per_stream, 3)
        problems = []
        if not served:
            problems.append("no request completed")
        if sc.key == "wrong" and tr.target.checks_keys:
            # Every wrong-key request must be turned away.
            out["rejected"] = out.get("non2xx") or 0
            out["rejections_per_s"] = round(out["rejected"] / dur, 1) if dur else None
            accepted = served - out["rejected"]
            if accepted:
                problems.append(f"accepted {accepted} wrong-key requests")
            keys = ("sockerr",)
        else:
            keys = ("non2xx", "sockerr", "dropped", "frames_lost", "unterminated", "unfinished")
        for key in keys:
            if out.get(key):
                problems.append(f"{key}={out[key]}")
        comp = out.get("companion") or {}
        for key in ("non2xx", "sockerr", "frames_lost", "unterminated", "unfinished"):
            if comp.get(key):
                problems.append(f"companion {key}={comp[key]}")
        if problems:
            out["errors"] = ", ".join(problems)
        return out

    @staticmethod
    def health_of(tr: TargetRun) -> dict | None:
        """tokenway's /health after a cell: its ledger counters (rows dropped?) and pool."""
        assert tr.started is not None
        from urllib.parse import urlsplit

        u = urlsplit(tr.started.base_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=PROBE_TIMEOUT_S)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            obj = orjson.loads(resp.read())
            return {"ledger": obj.get("ledger"), "upstream": obj.get("upstream"),
                    "connections": obj.get("connections")}
        except (OSError, ValueError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def warm_up(self, tr: TargetRun, sc: Scenario) -> None:
        """Before a target's first cell of an API and mode: one request that may take
        its time (lazy imports, first connections), then a discarded load run at c=16."""
        model = "gpt-bench" if sc.model.startswith("gpt-bench") else sc.model
        warm = Scenario(f"warmup-{sc.api}-{int(sc.stream)}-{model}", sc.group, sc.api, 16,
                        sc.stream, "load", model, CHUNKS if sc.stream else 0, 0.0,
                        self.dur["warmup"])
        assert tr.started is not None
        try:
            http_post(tr.started.base_url, warm.path, warm.body(),
                      tr.target.request_headers(warm.api), WARMUP_FIRST_TIMEOUT_S)
            self.run_driver(warm, tr, warm.duration_s)
        except Exception as exc:
            self.say(f"{tr.target.name}: warm-up ({sc.api}, stream={sc.stream}) failed: {exc!r}")

    # ------------------------------------------------------------------ the run
    def run(self) -> dict:
        opts = self.opts
        started_at = datetime.now(UTC)
        groups = opts.scenarios or list(DEFAULT_GROUPS)
        concs = opts.conc or list(CONCURRENCY)
        sse_concs = opts.conc or list(SSE_CONCURRENCY)
        if opts.soak_seconds is not None:
            self.dur["soak"] = float(opts.soak_seconds)
        if getattr(opts, "ledger_seconds", None) is not None:
            self.dur["ledger"] = float(opts.ledger_seconds)
        rates = getattr(opts, "rates", None) or list(RATES)
        scenarios = build_scenarios(groups, concs, self.dur, sse_concs,
                                    tuple(opts.soak_targets), rates)
        # gpt-bench first: claude-code-router sends every request to the first model.
        models = ["gpt-bench"] + sorted({sc.model for sc in scenarios} - {"gpt-bench"})
        if self.target_cpus:
            os.sched_setaffinity(0, self.load_cpus)  # this harness stays off the target CPU
        if opts.load in ("auto", "wrk"):
            why = machine.ensure_tool("wrk", "wrk", not opts.no_install, self.say)
            if why is None:
                self.load_tool = "wrk"
            else:
                self.notes.append(f"wrk unavailable ({why}); load from bench.loadgen")
                self.say(self.notes[-1])
        if any(sc.driver == "h2load" for sc in scenarios):
            why = machine.ensure_tool("h2load", "nghttp2-client", not opts.no_install, self.say)
            if why:
                self.notes.append(f"h2load unavailable ({why}): HTTP/2 load cells skipped")
                self.say(self.notes[-1])
                scenarios = [sc for sc in scenarios if sc.driver != "h2load"]
        only = set(opts.only) if opts.only else set(CORE_NAMES)
        if "nginx" in only:
            why = machine.ensure_tool("nginx", "nginx", not opts.no_install, self.say)
            if why:
                self.say(f"nginx: {why}")
        result: dict = {
            "schema": SCHEMA,
            "timestamp": started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mode": self.mode,
            "machine": machine.describe(),
            "versions": machine.versions(),
            "git": machine.git_info(),
            "loadavg_start": machine.loadavg(),
        }
        result["config"] = {
            "durations_s": self.dur, "load_tool": self.load_tool,
            "pin": {"target_cpus": sorted(self.target_cpus) if self.target_cpus else None,
                    "load_cpus": sorted(self.load_cpus) if self.load_cpus else None},
            "workers": opts.workers, "repeat": opts.repeat, "chunks": CHUNKS,
            "paced": {"chunks": PACED_CHUNKS, "interval_ms": PACED_INTERVAL_MS,
                      "conc": PACED_CONC},
            "paced_many_conc": PACED_MANY_CONC,
            "hol": {"conc": HOL_STREAM_CONC, "model": HOL_MODEL,
                    "big_body_bytes": len(Scenario("x", "hol", "chat", 1, False, "load",
                                                   "gpt-bench", 0, 0.0, 0.0,
                                                   big_body=True).body())},
            "scenario_groups": groups, "concurrency": concs, "sse_concurrency": sse_concs,
            "rates": rates,
            "soak_targets": list(opts.soak_targets),
            "argv": sys.argv[1:],
        }
        cells: dict[str, dict[str, list[dict]]] = {sc.id: {} for sc in scenarios}
        runs: list[TargetRun] = []
        try:
            self.start_upstream()
            runs = self.make_targets(scenarios)  # after the upstream: direct needs its pid
            ctx = self.context = self.ctx(models)
            for tr in runs:
                if tr.reason is not None:  # not selected
                    continue
                api = "chat" if "chat" in tr.target.apis else "messages"
                probe = Scenario("probe", "chat", api, 1, False, "load", "gpt-bench", 0, 0, 0)
                self.start_target(tr, ctx, probe)
            live = [tr for tr in runs if tr.status == "ok"]
            warmed: set[tuple[str, str, bool, str]] = set()
            ledger_dropped: dict[str, int] = {}
            for rep in range(opts.repeat):
                for sc in scenarios:
                    for tr in live:
                        if not runs_on(sc, tr.target):
                            continue
                        died = tr.target.exited()
                        if died:
                            if tr.status == "ok":
                                tr.status, tr.reason = "failed", f"died during the run: {died}"
                                self.say(f"{tr.target.name}: {tr.reason}")
                            continue
                        key = (tr.target.name, sc.api, sc.stream,
                               "gpt-bench" if sc.model.startswith("gpt-bench") else sc.model)
                        if key not in warmed:
                            warmed.add(key)
                            self.warm_up(tr, sc)
                        try:
                            cell = (ledger_check.measure(self, sc, tr) if sc.group == "ledger"
                                    else self.measure(sc, tr))
                        except Exception as exc:
                            cell = {"errors": f"measurement failed: {exc!r}"}
                        # (A `ledger` cell restarts the gateway: its own exit line says
                        # what it dropped.)
                        if tr.target.kind == "gateway" and sc.group != "ledger":
                            # tokenway's /health after every cell: rows the ledger had to
                            # drop during this cell (its queue is bounded) are recorded.
                            health = self.health_of(tr)
                            if health is not None:
                                cell["health"] = health
                                dropped = (health.get("ledger") or {}).get("dropped")
                                if isinstance(dropped, int):
                                    before = ledger_dropped.get(tr.target.name, 0)
                                    cell["ledger_dropped"] = dropped - before
                                    ledger_dropped[tr.target.name] = dropped
                        cells[sc.id].setdefault(tr.target.name, []).append(cell)
                        self.say(f"{sc.id:<18} {tr.target.name:<9} {_brief(cell)}"
                                 + (f" (rep {rep + 1})" if opts.repeat > 1 else ""))
            for tr in live:
                if tr.target.exited() is None and tr.started:
                    tr.rss_end_kib = procstat.rss_kib_tree(tr.started.pid)
        finally:
            for tr in runs:
                try:
                    tr.target.stop()
                except Exception as exc:
                    self.say(f"{tr.target.name}: stop failed: {exc!r}")
            self.stop_upstream()
        result["loadavg_end"] = machine.loadavg()
        result["elapsed_s"] = round(time.monotonic() - self.t_start, 1)
        result["upstream"] = self.upstream_info
        result["targets"] = {tr.target.name: tr.info() for tr in runs}
        for tr in runs:
            if tr.reason and tr.status == "not run":
                result["targets"][tr.target.name]["status"] = "not run"
        result["scenarios"] = []
        for sc in scenarios:
            per_target = {}
            for name, samples in cells[sc.id].items():
                summary = _median_cell(samples)
                if len(samples) > 1:
                    summary["samples"] = samples
                per_target[name] = summary
            add_ratios(sc, per_target)
            result["scenarios"].append({
                "table": sc.table or sc.group, "label": sc.label, "ref": sc.ref,
                "key": sc.key, "placement": sc.placement, "big_body": sc.big_body,
                "companion": sc.companion.id if sc.companion else None,
                "id": sc.id, "group": sc.group, "title": GROUPS[sc.group], "api": sc.api,
                "path": sc.path, "conc": sc.conc, "rate": sc.rate or None, "stream": sc.stream,
                "driver": sc.driver,
                "model": sc.model, "chunks": sc.chunks, "interval_ms": sc.interval_ms,
                "events_per_stream": sc.events_per_stream, "duration_s": sc.duration_s,
                "results": per_target,
            })
        add_ref_ratios(result["scenarios"])
        failed = [tr.target.name for tr in runs if tr.status == "failed"]
        if self.opts.keep_tmp or failed:
            result["tmpdir"] = str(self.tmpdir)
            self.notes.append(f"configs and logs kept in {self.tmpdir}")
        else:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        result["notes"] = self.notes + noise_notes(result)
        return result


def _brief(cell: dict) -> str:
    if "errors" in cell and not cell.get("cpu_s"):
        return "ERROR " + cell["errors"]
    parts = []
    if "offered_rps" in cell:
        parts.append(f"offered {cell['offered_rps']:.0f}/s")
    if "rps" in cell and "p50_ms" in cell:
        parts.append(f"{cell['rps']:.0f}/s p50 {cell.get('p50_ms') or 0:.2f} ms")
    elif "rps" in cell:
        parts.append(f"{cell['rps']:.0f}/s")
    if "streams_per_s" in cell and "rps" not in cell:
        parts.append(f"{cell['streams_per_s']:.0f} streams/s lost {cell.get('frames_lost')}")
    if "ttfb_p50_ms" in cell:
        parts.append(f"TTFB p50 {cell['ttfb_p50_ms']:.2f} ms")
    if "frame_delay_p99_ms" in cell:
        parts.append(f"frame delay p99 {cell['frame_delay_p99_ms']:.2f} ms")
    if "rejections_per_s" in cell:
        parts.append(f"{cell['rejections_per_s']:.0f} rejections/s")
    comp = cell.get("companion")
    if comp and comp.get("rps") is not None:
        parts.append(f"companion {comp['rps']:.0f}/s p99 {comp.get('p99_ms') or 0:.2f} ms")
    if cell.get("cpu_us_per_req") is not None:
        parts.append(f"CPU {cell['cpu_us_per_req']:.1f} us/req")
    if "rss_q1_kib" in cell:
        parts.append(f"RSS q1 {cell['rss_q1_kib'] / 1024:.1f} end {cell['rss_end_kib'] / 1024:.1f}"
                     f" MiB ({'flat' if cell['rss_flat'] else 'growing'})")
    if cell.get("errors"):
        parts.append("ERRORS " + cell["errors"])
    return ", ".join(parts)
