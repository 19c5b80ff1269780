"""Where tokenway's CPU goes, on one path under steady load: perf + py-spy.

    python -m bench profile [--paths passthrough,translated] [--seconds 15] [--conc 16]
                            [--keep DIR]

For each path it starts the fake upstream (load CPU) and one tokenway (target CPU, the
same generated config as `python -m bench run`), drives it with wrk from the load CPU,
and while the load runs:

1. `perf record -e cpu-clock -g -p PID` for `--seconds` (hardware counters do not work
   on this VM; the cpu-clock software event does). `perf report --sort dso` splits the
   samples between the kernel, the interpreter (libpython), the C extensions (uvloop,
   httptools, orjson, ...), libc and the rest; `--sort sym` gives the top symbols.
2. `py-spy record --native --nolineno -f raw` for `--seconds` right after: collapsed Python
   (and native) stacks. The summary gives the top Python functions by self time (the
   innermost Python frame of each sample) and by inclusive time.

Both only observe: the gateway runs unmodified. The sampling costs the gateway some
throughput while it runs (py-spy pauses the process for each sample), so the req/s
printed here are not benchmark figures. Everything binds 127.0.0.1; every process
started here is stopped by its pid at the end.

Paths:
  passthrough   POST /v1/chat/completions, non-stream, gpt-bench -> OpenAI upstream
  translated    POST /v1/messages, stream (20 deltas), gpt-bench: Anthropic client,
                OpenAI Chat upstream (the messages->chat translation)
  translated_ns POST /v1/messages, non-stream, gpt-bench: the same translation, non-stream
  responses     POST /v1/responses, stream, claude-bench: Responses client, Anthropic
                upstream
  stream        POST /v1/chat/completions, stream (20 deltas): the passthrough tap
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import procstat
from bench.runner import POST_LUA, http_post
from bench.scenarios import CHUNKS, Scenario
from bench.targets import REPO_ROOT, Context, TokenwayTarget, free_port

PATHS = {
    "passthrough": Scenario("profile_passthrough", "chat", "chat", 16, False, "load",
                            "gpt-bench", 0, 0.0, 0.0),
    "translated": Scenario("profile_translated", "translated", "messages", 16, True, "load",
                           "gpt-bench", CHUNKS, 0.0, 0.0),
    "translated_ns": Scenario("profile_translated_ns", "translated", "messages", 16, False,
                              "load", "gpt-bench", 0, 0.0, 0.0),
    "responses": Scenario("profile_responses", "translated", "responses", 16, True, "load",
                          "claude-bench", CHUNKS, 0.0, 0.0),
    "stream": Scenario("profile_stream", "sse", "chat", 16, True, "load", "gpt-bench",
                       CHUNKS, 0.0, 0.0),
}

# perf's DSO names -> the category they count towards.
def category(dso: str) -> str:
    d = dso.strip("[]")
    if d.startswith("kernel") or d in ("vdso", "vsyscall"):
        return "kernel"
    if "libpython" in d or re.fullmatch(r"python3(\.\d+)?", d):
        return "interpreter (libpython)"
    if d.endswith(".so") and ("cpython" in d or "orjson" in d or "uvloop" in d
                              or "httptools" in d):
        return "C extensions"
    if d.startswith("libc") or d.startswith("libm") or d.startswith("ld-linux"):
        return "libc/libm"
    if d == "unknown":
        return "unknown"
    return "other"


def perf_report(data: Path, sort: str, limit: int = 25) -> list[tuple[float, str]]:
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                          "--sort", sort, "--percent-limit", "0.2"],
                         capture_output=True, text=True, timeout=300)
    rows = []
    for line in out.stdout.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(.*\S)\s*$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2)))
    return rows[:limit] if limit else rows


_IDLE = re.compile(r"pthread_cond_(timed)?wait|epoll_p?wait|Condition\.wait|sem_(timed)?wait")


def collapsed_summary(path: Path, top: int = 25) -> dict:
    """From py-spy's raw (collapsed) stacks: samples of each thread that were running
    (a stack waiting in epoll or on a condition is idle and left out), and per Python
    function the share of running samples where it is the innermost Python frame (self)
    or anywhere on the stack (inclusive)."""
    self_py: collections.Counter[str] = collections.Counter()
    incl_py: collections.Counter[str] = collections.Counter()
    self_native: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        if _IDLE.search(stack):
            idle += n
            continue
        total += n
        frames = stack.split(";")
        threads["ledger writer thread" if "Ledger._run" in stack
                else "event loop (main thread)" if "gatewayd_main" in stack
                or "_serve_one" in stack else "other"] += n
        py = [f for f in frames if re.search(r"\(.*\.py\)", f)]
        if py:
            self_py[_short(py[-1])] += n
        leaf = frames[-1] if frames else ""
        if leaf and not re.search(r"\(.*\.py\)", leaf):
            self_native[_short(leaf)] += n
        for f in {_short(f) for f in py}:
            incl_py[f] += n

    def pct(c: collections.Counter[str]) -> list[tuple[float, str]]:
        return [(round(100 * v / total, 1), k) for k, v in c.most_common(top)] if total else []

    return {"samples_running": total, "samples_idle": idle, "threads": pct(threads),
            "self_python": pct(self_py), "inclusive_python": pct(incl_py),
            "native_leaf": pct(self_native)}


def _short(frame: str) -> str:
    # "feed (protocols/sse.py)" or "feed (/work/main/protocols/sse.py:467)"
    m = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame.strip())
    if not m:
        return frame.strip()
    fn, file = m.groups()
    for marker in ("site-packages/", "lib/python3.11/", str(REPO_ROOT) + "/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{fn} ({file})"


def profile_path(name: str, sc: Scenario, seconds: float, tmp: Path, say) -> dict:
    cpus = procstat.online_cpus_all()
    tcpus, lcpus = ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else (None, None)

    def pin_load() -> None:
        if lcpus:
            os.sched_setaffinity(0, lcpus)

    port = free_port()
    fake_log = open(tmp / f"fake-{name}.log", "ab")
    fake = subprocess.Popen([sys.executable, "-m", "bench.fake_upstream", "--port", str(port)],
                            cwd=REPO_ROOT, stdout=fake_log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=pin_load)
    fake_log.close()
    upstream = f"http://127.0.0.1:{port}/v1"
    tw = TokenwayTarget()
    ctx = Context(tmpdir=tmp, target_cpus=tcpus)
    wrk = None
    try:
        for _ in range(500):
            try:
                if http_post(f"http://127.0.0.1:{port}", "/v1/chat/completions",
                             sc.body(), {})[0] == 200:
                    break
            except OSError:
                time.sleep(0.02)
        started = tw.start(upstream, ctx)
        for _ in range(750):
            try:
                if http_post(started.base_url, sc.path, sc.body(),
                             tw.request_headers(sc.api))[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.02)
        body = tmp / f"body-{name}.json"
        body.write_bytes(sc.body())
        hdrs = "|".join(f"{k}: {v}" for k, v in tw.request_headers(sc.api).items())
        env = dict(os.environ, WRK_BODY_FILE=str(body), WRK_HDRS=hdrs)
        total = int(2 * seconds + 6)
        wrk = subprocess.Popen(["wrk", "-t1", f"-c{sc.conc}", f"-d{total}s", "--timeout", "10s",
                                "-s", str(POST_LUA), started.base_url + sc.path], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=pin_load)
        time.sleep(2.0)  # past the first connections
        pid = started.pid
        cpu0 = procstat.cpu_seconds_tree(pid)
        t0 = time.monotonic()
        say(f"{name}: perf record -e cpu-clock -g for {seconds:g} s (pid {pid})")
        perf_data = tmp / f"perf-{name}.data"
        subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", str(pid),
                        "-o", str(perf_data), "--", "sleep", str(seconds)],
                       capture_output=True, timeout=seconds + 120)
        cores = (procstat.cpu_seconds_tree(pid) - cpu0) / (time.monotonic() - t0)
        say(f"{name}: py-spy record --native for {seconds:g} s")
        raw = tmp / f"pyspy-{name}.txt"
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        subprocess.run([pyspy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "250",
                        "--native", "--nolineno", "-f", "raw", "-o", str(raw)],
                       capture_output=True, timeout=seconds + 120)
        out, _ = wrk.communicate(timeout=total + 60)
        m = re.search(r"BENCH_RESULT (\{.*\})", out)
        import json

        res = json.loads(m.group(1)) if m else {}
        dsos = perf_report(perf_data, "dso", 0)
        cats: dict[str, float] = collections.defaultdict(float)
        for pct, dso in dsos:
            cats[category(dso)] += pct
        return {
            "path": name, "api": sc.api, "stream": sc.stream, "model": sc.model,
            "conc": sc.conc, "seconds": seconds, "cores_during_perf": round(cores, 3),
            "wrk": {k: res.get(k) for k in ("rps", "p50_ms", "p99_ms", "non2xx")},
            "categories": {k: round(v, 1) for k, v in sorted(cats.items(),
                                                              key=lambda kv: -kv[1])},
            "dso": dsos[:15], "symbols": perf_report(perf_data, "dso,sym", 30),
            "pyspy": collapsed_summary(raw) if raw.exists() else None,
        }
    finally:
        if wrk is not None and wrk.poll() is None:
            wrk.kill()
            wrk.wait(5)
        tw.stop()
        fake.terminate()
        try:
            fake.wait(10)
        except subprocess.TimeoutExpired:
            fake.kill()


def render(results: list[dict]) -> str:
    lines = []
    for r in results:
        w = r["wrk"]
        lines += [f"== {r['path']}: {r['api']} {'stream' if r['stream'] else 'non-stream'} "
                  f"{r['model']}, wrk c={r['conc']}; tokenway used {r['cores_during_perf']:.2f} "
                  f"cores under perf (req/s while sampled {w.get('rps') or 0:,.0f}: not a "
                  "benchmark figure)",
                  "  perf cpu-clock samples by kind:"]
        lines += [f"    {v:5.1f}%  {k}" for k, v in r["categories"].items()]
        lines.append("  by DSO:")
        lines += [f"    {p:5.1f}%  {d}" for p, d in r["dso"][:10]]
        lines.append("  top symbols (DSO, symbol):")
        lines += [f"    {p:5.1f}%  {d}" for p, d in r["symbols"][:20]]
        ps = r.get("pyspy")
        if ps:
            lines.append(f"  py-spy: {ps['samples_running']} running samples "
                         f"({ps['samples_idle']} idle left out); by thread:")
            lines += [f"    {p:5.1f}%  {f}" for p, f in ps["threads"]]
            lines.append("  self time by innermost Python function (% of running samples):")
            lines += [f"    {p:5.1f}%  {f}" for p, f in ps["self_python"][:20]]
            lines.append("  inclusive (any frame on the stack):")
            lines += [f"    {p:5.1f}%  {f}" for p, f in ps["inclusive_python"][:25]]
            lines.append("  innermost native frame (C code running under Python):")
            lines += [f"    {p:5.1f}%  {f}" for p, f in ps["native_leaf"][:12]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", default="passthrough,translated",
                    help=f"comma-separated, from {', '.join(PATHS)}")
    ap.add_argument("--seconds", type=float, default=15.0,
                    help="seconds of perf and then of py-spy per path (default 15)")
    ap.add_argument("--json", type=Path, default=None, help="also write the summaries here")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep perf.data, the py-spy stacks and the logs in this folder")
    args = ap.parse_args(argv)
    for tool in ("perf", "wrk"):
        if not shutil.which(tool):
            package = "linux-perf" if tool == "perf" else tool
            print(f"{tool} is needed (apt-get install -y {package})", file=sys.stderr)
            return 2
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="tokenway-profile-"))
    tmp.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        print(f"[profile] {msg}", file=sys.stderr, flush=True)

    cpus = procstat.online_cpus_all()
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus[1:]))
    results = []
    for name in [p.strip() for p in args.paths.split(",") if p.strip()]:
        if name not in PATHS:
            print(f"unknown path {name!r}; known: {', '.join(PATHS)}", file=sys.stderr)
            return 2
        results.append(profile_path(name, PATHS[name], args.seconds, tmp, say))
    sys.stdout.write(render(results))
    if args.json:
        import orjson

        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
