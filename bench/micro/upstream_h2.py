"""CPU per request of the gateway to an HTTP/2 provider against an HTTP/1.1 one,
in the same run.

    python -m bench.micro.upstream_h2 [--conc 64] [--seconds 5] [--repeat 3] [--json OUT]

One gateway (``python -m proxy``, uvloop, ledger on) with two providers that give
the same non-stream Chat answer: ``h1`` (``bench.fake_upstream``, HTTP/1.1
keep-alive) and ``h2`` (``bench.fake_upstream_h2``, ``http2 = true``: h2c with
prior knowledge).  wrk drives non-stream chat requests at ``--conc``
connections, to model ``h1-bench`` or ``h2-bench`` (routed to one provider
each), in cells of ``--seconds``, alternating h1, h2, h1, h2... ``--repeat``
times.  Each cell's figure is the gateway process's CPU time (/proc, all its
threads) over the requests wrk completed; the medians are printed with each
cell, and the providers' CPU per request beside them (to show neither fake was
the bottleneck).  Everything binds 127.0.0.1; every process started is stopped
by its pid.

Then, in this process and without sockets, the client side of the HTTP/2 work
alone (``h2_alone``): the gateway's h2 configuration and ``request_headers``,
one request and its answer a loop, against an h2 server object; the CPU time of
the client's calls only, per request (the minimum of three runs).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from bench import procstat  # noqa: E402

POST_LUA = REPO_ROOT / "bench" / "post.lua"
CONFIG = """
[providers.h1]
kind = "openai"
base_url = "http://127.0.0.1:{h1}/v1"
list_models = false

[providers.h2]
kind = "openai"
base_url = "http://127.0.0.1:{h2}/v1"
http2 = true
list_models = false

[[routes]]
match = "h1-*"
to = ["h1"]

[[routes]]
match = "h2-*"
to = ["h2"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout_s:g} s")


def body(model: str) -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 16})


def cell(url: str, model: str, conc: int, seconds: int, pids: dict[str, int]) -> dict:
    env = dict(os.environ, WRK_BODY=body(model))
    env.pop("WRK_BODY_FILE", None)
    before = {k: procstat.cpu_seconds_tree(p) for k, p in pids.items()}
    out = subprocess.run(["wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(POST_LUA), url], capture_output=True, text=True,
                         env=env, timeout=seconds + 30, check=True).stdout
    after = {k: procstat.cpu_seconds_tree(p) for k, p in pids.items()}
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT "))
    res = json.loads(line.split(" ", 1)[1])
    n = res["reqs"]
    bad = res["non2xx"] + res["sockerr"]
    if not n or bad:
        raise RuntimeError(f"{model}: {n} requests, {bad} failed: {line}")
    return {"model": model, "reqs": n, "rps": res["rps"], "p50_ms": res["p50_ms"],
            "us_per_req": {k: (after[k] - before[k]) * 1e6 / n for k in pids}}


def h2_alone(n: int = 5000) -> float:
    """CPU seconds per request of the gateway's HTTP/2 client calls, no sockets."""
    from types import SimpleNamespace

    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived

    from bench.fake_upstream import chat_body
    from proxy.upstream_h2 import _CONFIG, CONNECTION_WINDOW, request_headers

    client = H2Connection(_CONFIG)
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    client.initiate_connection()
    client.increment_flow_control_window(CONNECTION_WINDOW - 65535)
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    provider = SimpleNamespace(scheme="http", host_header=b"127.0.0.1:18001")
    payload = body("h2-bench").encode()
    att = SimpleNamespace(provider=provider, path=b"/v1/chat/completions", payload=payload,
                          headers=b"accept-encoding: identity\r\nauthorization: Bearer sk-"
                                  + b"x" * 48 + b"\r\ncontent-type: application/json\r\n"
                                  b"user-agent: OpenAI/Python 1.99.0\r\n")
    answer = chat_body("gpt-bench", 0)
    spent = 0.0
    for _ in range(n):
        t0 = time.process_time()
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, request_headers(att))
        client.send_data(sid, payload, end_stream=True)
        out = client.data_to_send()
        spent += time.process_time() - t0
        server.receive_data(out)
        server.acknowledge_received_data(len(payload), sid)
        server.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/json"),
                                  (b"content-length", b"%d" % len(answer))])
        server.send_data(sid, answer, end_stream=True)
        back = server.data_to_send()
        t0 = time.process_time()
        for ev in client.receive_data(back):
            if isinstance(ev, DataReceived):
                client.acknowledge_received_data(ev.flow_controlled_length, sid)
        client.data_to_send()
        spent += time.process_time() - t0
    return spent / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conc", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    ports = {"h1": free_port(), "h2": free_port(), "gw": free_port()}
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "tokenway.toml"
        conf.write_text(CONFIG.format(**ports))
        try:
            procs["h1"] = subprocess.Popen(
                [sys.executable, "-m", "bench.fake_upstream", "--port", str(ports["h1"])],
                cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
            procs["h2"] = subprocess.Popen(
                [sys.executable, "-m", "bench.fake_upstream_h2", "--port", str(ports["h2"])],
                cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
            procs["gw"] = subprocess.Popen(
                [sys.executable, "-m", "proxy", "--listen", f"127.0.0.1:{ports['gw']}",
                 "--db", str(Path(tmp) / "ledger.db"), "--config", str(conf)],
                cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name in procs:
                wait_port(ports[name])
            url = f"http://127.0.0.1:{ports['gw']}/v1/chat/completions"
            pids = {"gateway": procs["gw"].pid, "h1": procs["h1"].pid, "h2": procs["h2"].pid}
            for model in ("h1-bench", "h2-bench"):  # warm both paths
                cell(url, model, args.conc, 1, pids)
            cells = []
            for _ in range(args.repeat):
                for model in ("h1-bench", "h2-bench"):
                    c = cell(url, model, args.conc, args.seconds, pids)
                    cells.append(c)
                    print(f"  {model}  {c['reqs']:>7,} req  {c['rps']:>8,.0f} req/s  "
                          f"p50 {c['p50_ms']:6.2f} ms  "
                          f"gateway {c['us_per_req']['gateway']:6.1f} us/req  provider "
                          f"{c['us_per_req'][model[:2]]:5.1f} us/req", flush=True)
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    med = {m: statistics.median(c["us_per_req"]["gateway"] for c in cells if c["model"] == m)
           for m in ("h1-bench", "h2-bench")}
    rps = {m: statistics.median(c["rps"] for c in cells if c["model"] == m)
           for m in ("h1-bench", "h2-bench")}
    print(f"gateway CPU per non-stream chat request, median of {args.repeat} cells of "
          f"{args.seconds} s at c={args.conc}:")
    print(f"  HTTP/1.1 provider  {med['h1-bench']:6.1f} us/req  {rps['h1-bench']:8,.0f} req/s")
    print(f"  HTTP/2 provider    {med['h2-bench']:6.1f} us/req  {rps['h2-bench']:8,.0f} req/s"
          f"  ({med['h2-bench'] / med['h1-bench']:.2f}x)")
    alone = min(h2_alone() for _ in range(3)) * 1e6
    print(f"HTTP/2 client work alone (h2, hpack; no sockets): {alone:6.1f} us/req")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"conc": args.conc, "seconds": args.seconds, "repeat": args.repeat,
             "median_us_per_req": med, "median_rps": rps, "h2_alone_us_per_req": alone,
             "cells": cells}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
