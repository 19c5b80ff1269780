"""Micro benchmark of the ledger writer: what one row costs the event loop.

    python -m bench.micro.ledger [--rows 200000] [--work-us 25] [--loop uvloop]
                                 [--tree DIR] [--strace] [--json OUT.json]
                                 [--database-url postgresql://...]

One process, one event loop: a task plays requests, each doing ``--work-us`` of
Python work (parsing a small chat request with orjson, building the answer,
then spinning) and then calling ``ledger.record()``, a few requests per loop
iteration, as a busy gateway does. The same run is made with a null ledger
(``record`` appends to a list) to subtract the work itself. Figures:

- **loop CPU per record()**: the loop thread's CPU time (``thread_time``) with
  the real ledger minus with the null one, per row. It includes what the writer
  thread costs the loop through the GIL (hand-offs, cache misses), not just the
  append.
- **loop wall per row**: the same difference in wall time: GIL waits show here.
- **writer CPU per row**: the writer thread's CPU clock
  (``pthread_getcpuclockid``) once every row is written, per row.
- **loop context switches per row**: voluntary plus involuntary switches of
  the loop thread (``/proc/self/task/TID/status``), real minus null, per row. A
  thread that must wait for the GIL sleeps on a futex: one switch per hand-off.
  A count, so it does not move with the machine's load as CPU times do.
- **futex calls per row** (``--strace``): the run is repeated under
  ``strace -f -c -e trace=futex`` for both ledgers, ``--repeat`` times;
  the median of (real - null) / rows.

``--database-url`` writes to that database (PostgreSQL; its rows stay there) instead
of a new SQLite file, with the spill journal in a temporary directory: the writer's
CPU per row of the two backends, side by side. With a server on this machine, the
CPU of the server process serving the writer's connection (``/proc/PID/stat``) is
given too (**server CPU per row**): with PostgreSQL the rows are parsed there.

CPU times are the minimum over ``--repeat`` runs (on a shared VM, time stolen by
the host is billed to whatever thread was running, so noise only adds).

``--tree DIR`` imports ``proxy`` from another checkout first (e.g. the code
before a change: ``git archive REV proxy | tar -x -C DIR``); a tree whose
``Ledger.record`` takes dicts (no ``DictRecord``) is fed dicts, as the gateway
fed it then. ``--against DIR`` measures that tree and this one side by side: each
repeat runs one of each, in turn, so that the machine's load hits both alike, and
the figures come in two columns (minimum and maximum over the runs).

A run that stores fewer rows than it records (any run, of either tree) fails
instead of printing figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.micro.ledger")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--work-us", type=float, default=25.0,
                   help="Python work per simulated request, in microseconds")
    p.add_argument("--per-iteration", type=int, default=8,
                   help="requests finished per loop iteration")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--tree", help="import proxy from this directory first")
    p.add_argument("--against", metavar="DIR",
                   help="also run the ledger of the proxy in DIR (e.g. the code before a "
                        "change), each of its runs next to one of this tree's: two columns")
    p.add_argument("--strace", action="store_true",
                   help="also count futex calls per row under strace -f -c")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each kind, alternating; medians are reported")
    p.add_argument("--spins", type=int, help=argparse.SUPPRESS)
    p.add_argument("--null", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", metavar="OUT")
    p.add_argument("--database-url", metavar="URL",
                   help="write to this database (postgresql://...) instead of a new "
                        "SQLite file")
    return p.parse_args(argv)


class BenchRecord:
    """Shaped like the gateway's request record: slots, as_row() in column order."""

    __slots__ = (
        "ts", "request_id", "endpoint", "client_protocol", "model", "served_model",
        "provider", "status", "error_kind", "stream", "input_tokens", "output_tokens",
        "cached_tokens", "cache_write_tokens", "reasoning_tokens", "latency_ms",
        "ttfb_ms", "bytes_in", "bytes_out", "attempts", "api_key_id", "client_addr",
        "tool_repeats", "cost_usd", "cost_source", "end_user", "dropped_tools",
    )

    def __init__(self, i: int, t0: float) -> None:
        self.ts = t0
        self.request_id = f"req_5f2a9c0e11d4{i:012x}"
        self.endpoint = "/v1/chat/completions"
        self.client_protocol = "openai_chat"
        self.model = "gpt-4o-mini"
        self.served_model = "gpt-4o-mini-2024-07-18"
        self.provider = "openai"
        self.status = 200
        self.error_kind = None
        self.stream = False
        self.input_tokens = 1200 + (i & 255)
        self.output_tokens = 80
        self.cached_tokens = 1024
        self.cache_write_tokens = None
        self.reasoning_tokens = 0
        self.latency_ms = 41.25
        self.ttfb_ms = 12.5
        self.bytes_in = 2048
        self.bytes_out = 1190
        self.attempts = 1
        self.api_key_id = None
        self.client_addr = "127.0.0.1:50412"
        self.tool_repeats = None
        self.cost_usd = 0.000228
        self.cost_source = "bundled"
        self.end_user = None
        self.dropped_tools = None

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.ts, self.request_id, self.endpoint, self.client_protocol, self.model,
            self.served_model, self.provider, self.status, self.error_kind, self.stream,
            self.input_tokens, self.output_tokens, self.cached_tokens,
            self.cache_write_tokens, self.reasoning_tokens, self.latency_ms,
            self.ttfb_ms, self.bytes_in, self.bytes_out, self.attempts,
            self.api_key_id, self.client_addr, self.tool_repeats, self.cost_usd,
            self.cost_source, self.end_user, self.dropped_tools,
        )


def _dict_row(rec: BenchRecord) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in BenchRecord.__slots__}


class NullLedger:
    def __init__(self) -> None:
        self.rows: list[Any] = []

    def record(self, rec: Any) -> None:
        self.rows.append(rec)
        if len(self.rows) >= 4096:
            self.rows.clear()


REQUEST = (b'{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are '
           b'terse."},{"role":"user","content":"Say hello in five words."}],'
           b'"max_tokens":64,"stream":false}')


def _calibrate(work_us: float) -> int:
    """Spin iterations that, with the request handling, take about work_us."""
    import orjson

    def once(spins: int) -> None:
        body = orjson.loads(REQUEST)
        orjson.dumps({"id": "x", "model": body["model"], "choices": [
            {"message": {"role": "assistant", "content": "hello"}}]})
        for _ in range(spins):
            pass

    def cost_us(spins: int, n: int) -> float:
        best = float("inf")
        for _ in range(5):  # the fastest try: load on the machine only adds
            t0 = time.perf_counter()
            for _ in range(n):
                once(spins)
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        return best

    base = cost_us(0, 5_000)
    per_spin = (cost_us(1000, 500) - base) / 1000
    return max(0, int((work_us - base) / max(per_spin, 1e-6)))


def _run_one(args: argparse.Namespace) -> dict[str, Any]:
    if args.tree:
        sys.path.insert(0, os.path.abspath(args.tree))
    import orjson

    import proxy.ledger as ledger_mod

    new_api = hasattr(ledger_mod, "DictRecord")
    tmp = tempfile.mkdtemp(prefix="ledger-bench-")
    path = os.path.join(tmp, "bench.db")
    if args.null:
        ledger: Any = NullLedger()
    elif args.database_url:
        ledger = ledger_mod.Ledger(path, backend=ledger_mod.open_backend(args.database_url))
    else:
        ledger = ledger_mod.Ledger(path)
    if not args.null:
        ledger.start()
    spins = args.spins if args.spins is not None else _calibrate(args.work_us)
    rows = args.rows
    per = args.per_iteration
    out: dict[str, Any] = {}

    async def produce() -> None:
        switches0 = _switches()
        loop_cpu0, wall0 = time.thread_time(), time.perf_counter()
        t0 = time.time()
        i = 0
        while i < rows:
            for _ in range(per):
                body = orjson.loads(REQUEST)
                orjson.dumps({"id": "x", "model": body["model"], "choices": [
                    {"message": {"role": "assistant", "content": "hello"}}]})
                for _ in range(spins):
                    pass
                rec = BenchRecord(i, t0)
                ledger.record(rec if new_api or args.null else _dict_row(rec))
                i += 1
            await asyncio.sleep(0)
        out["loop_cpu_s"] = time.thread_time() - loop_cpu0
        out["loop_wall_s"] = time.perf_counter() - wall0
        out["loop_switches"] = _switches() - switches0

    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(produce())
    finally:
        loop.close()
    if not args.null:
        deadline = time.monotonic() + 120
        while ledger.stats()["queued"] and time.monotonic() < deadline:
            time.sleep(0.01)
        writer = next(t for t in threading.enumerate() if t.name == "tokenway-ledger")
        assert writer.ident is not None
        out["writer_cpu_s"] = time.clock_gettime(time.pthread_getcpuclockid(writer.ident))
        out["server_cpu_s"] = _server_cpu_s(ledger)
        ledger.close()
        stats = ledger.stats()
        out["written"] = stats["written"]
        out["dropped"] = stats["dropped"]
    out["rows"] = rows
    out["new_api"] = new_api
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def _server_cpu_s(ledger: Any) -> float | None:
    """CPU seconds of the PostgreSQL process serving the writer's connection, when it
    runs on this machine and /proc shows it; None otherwise (and for SQLite)."""
    db = getattr(getattr(ledger, "_backend", None), "_db", None)
    if db is None or not hasattr(db, "info"):
        return None
    try:
        with open(f"/proc/{db.info.backend_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime, fields 14 and 15 of proc(5), in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _switches() -> int:
    """Context switches of the calling thread so far."""
    total = 0
    with open(f"/proc/self/task/{threading.get_native_id()}/status") as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def _child(args: argparse.Namespace, *, null: bool, strace: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.micro.ledger", "--one", "--rows", str(args.rows),
           "--spins", str(args.spins), "--per-iteration", str(args.per_iteration),
           "--loop", args.loop]
    if args.tree:
        cmd += ["--tree", args.tree]
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    if null:
        cmd.append("--null")
    trace = None
    if strace:
        trace = tempfile.NamedTemporaryFile(suffix=".strace", delete=False)
        trace.close()
        cmd = ["strace", "-f", "-c", "-e", "trace=futex", "-o", trace.name] + cmd
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if trace is not None:
        text = open(trace.name).read()
        os.unlink(trace.name)
        m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+\s+)?futex\s*$", text, re.M)
        result["futex_calls"] = int(m.group(1)) if m else 0
    return result


def _compare(args: argparse.Namespace) -> int:
    """This tree against ``--against``, one run of each per repeat, in turn."""
    other = argparse.Namespace(**{**vars(args), "tree": args.against})
    runs: dict[str, list[dict[str, Any]]] = {"against": [], "this": [], "null": []}
    for _ in range(args.repeat):
        runs["against"].append(_child(other, null=False, strace=False))
        runs["this"].append(_child(args, null=False, strace=False))
        runs["null"].append(_child(args, null=True, strace=False))
    n = args.rows
    for kind in ("against", "this"):
        lost = [r["written"] for r in runs[kind] if r["written"] != n]
        if lost:
            print(f"{kind}: a run wrote {lost[0]} of {n} rows", file=sys.stderr)
            return 1
    null_cpu = min(r["loop_cpu_s"] for r in runs["null"])

    def span(kind: str, key: str, per: float, minus: float = 0.0) -> str:
        values = [(r[key] - minus) / per * 1e6 for r in runs[kind]]
        return f"{min(values):6.2f} - {max(values):6.2f}"

    print(f"{'spins per request':<28} {args.spins}")
    print(f"{'':<28} {'against ' + args.against:>22} {'this tree':>16}")
    for label, key, minus in (("writer CPU us/row", "writer_cpu_s", 0.0),
                              ("loop CPU us/record", "loop_cpu_s", null_cpu)):
        print(f"{label:<28} {span('against', key, n, minus):>22} {span('this', key, n, minus):>16}")
    rates = {k: [n / r["loop_wall_s"] for r in runs[k]] for k in ("against", "this")}
    print(f"{'rows/s (loop wall)':<28} "
          + "".join(f"{f'{min(v):,.0f} - {max(v):,.0f}':>{w}}"
                    for v, w in ((rates["against"], 22), (rates["this"], 17))))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.one:
        print(json.dumps(_run_one(args)))
        return 0
    # One calibration for every run, so that both kinds do the same work.
    args.spins = _calibrate(args.work_us)
    if args.against:
        return _compare(args)
    reals, nulls = [], []
    for _ in range(args.repeat):
        reals.append(_child(args, null=False, strace=False))
        nulls.append(_child(args, null=True, strace=False))
    n = args.rows

    def low(runs: list[dict[str, Any]], key: str) -> float:
        return min(r[key] for r in runs)

    def med(runs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    written = min(r["written"] for r in reals)
    if written != n or any(r["written"] != n for r in reals):
        # A record shaped unlike the columns is dropped, and a writer that stores
        # nothing costs little: such a run measures nothing. (Every run: the
        # record had 26 values after the ledger gained its 27th column, and each
        # row was dropped.)
        print(f"only {written} of {n} rows were written; see the runs' output",
              file=sys.stderr)
        return 1
    figures: dict[str, Any] = {
        "rows": n,
        "database": "postgresql" if args.database_url else "sqlite",
        "written": written,
        "dropped": reals[-1]["dropped"],
        "api": "record(obj.as_row)" if reals[-1]["new_api"] else "record(dict)",
        "loop_cpu_us_per_record": (low(reals, "loop_cpu_s") - low(nulls, "loop_cpu_s"))
        / n * 1e6,
        "loop_switches_per_row": (med(reals, "loop_switches") - med(nulls, "loop_switches"))
        / n,
        "null_loop_cpu_us_per_row": low(nulls, "loop_cpu_s") / n * 1e6,
        "writer_cpu_us_per_row": low(reals, "writer_cpu_s") / written * 1e6,
        "rows_per_s": n / low(reals, "loop_wall_s"),
    }
    if all(r.get("server_cpu_s") is not None for r in reals):
        figures["server_cpu_us_per_row"] = low(reals, "server_cpu_s") / written * 1e6
    if args.strace:
        if shutil.which("strace") is None:
            print("strace is not installed; skipping futex counts", file=sys.stderr)
        else:
            per_row = []
            for _ in range(args.repeat):
                traced = _child(args, null=False, strace=True)
                traced_null = _child(args, null=True, strace=True)
                per_row.append((traced["futex_calls"] - traced_null["futex_calls"]) / n)
            figures["futex_per_row"] = statistics.median(per_row)
            figures["futex_per_row_runs"] = " ".join(f"{x:.3f}" for x in sorted(per_row))
    print(f"{'spins per request':<28} {args.spins}")
    for key, value in figures.items():
        print(f"{key:<28} {value:.3f}" if isinstance(value, float) else f"{key:<28} {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"schema": "tokenway-bench-ledger/1", "args": vars(args),
                       "figures": figures}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
