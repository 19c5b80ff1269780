"""Micro benchmark of the metrics recording path: what counting one finished
request costs, in CPU, with no sockets.

    python -m bench.micro.metrics [--requests 200000] [--repeat 5] [--json OUT.json]
                                  [--in-gateway SECONDS [--conc 16]]

One process, the gateway's own code: a ``GatewayState`` and a ``Dispatcher``
(which name the models, providers and endpoints the labels may take) and a
mix of finished request records (``MIX``: streamed and whole answers on three
endpoints, a failover, a 4xx with no provider, a junk model and a junk path).
Each case records every record of the mix in turn, ``--requests`` times:

- ``GatewayMetrics.observe``: the hand-written counters (proxy/metrics.py),
  what ``GatewayState.finish_record`` calls;
- ``prometheus_client``, the same metrics (same bounded labels) kept by the
  client library: ``.labels(...)`` looked up per metric and request, and with
  each label set's children looked up once and kept (its fastest use).

The figure is CPU time of this thread (``time.thread_time``) per request, less
the same loop calling a no-op, the minimum of ``--repeat`` runs (time stolen by
a noisy host only ever adds).  The prometheus_client cases run only when it is
installed (``pip install -e '.[bench]'``).  A scrape (``render``) of what the
runs recorded is timed too.  ``--in-gateway`` also times ``observe`` inside a
running gateway under load (``measure_in_gateway``), where the caches are
colder than in this loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from proxy.config import load_config  # noqa: E402
from proxy.dispatch import Dispatcher  # noqa: E402
from proxy.metrics import BUCKETS_S, LABELS, GatewayMetrics  # noqa: E402
from proxy.request import RequestRecord  # noqa: E402
from proxy.state import GatewayState  # noqa: E402

CONFIG = """
[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "sk-provider"

[providers.anthropic]
kind = "anthropic"
base_url = "http://127.0.0.1:9"
api_key = "sk-provider"

[[routes]]
match = "gpt-4o"
to = ["openai", "anthropic:claude-sonnet-4-5"]

[[routes]]
match = "claude-*"
to = ["anthropic"]
"""

# (endpoint, protocol, model, provider, status, stream, tokens in/out/cached/reasoning,
#  attempts, latency ms, ttfb ms, cost)
MIX: tuple[tuple[Any, ...], ...] = (
    ("/v1/chat/completions", "openai_chat", "gpt-4o", "openai", 200, False,
     (19, 10, 4, 2), 1, 412.0, 410.0, 0.00012),
    ("/v1/chat/completions", "openai_chat", "gpt-4o", "openai", 200, True,
     (1200, 350, 1024, 0), 1, 5210.0, 380.0, 0.0051),
    ("/v1/messages", "anthropic_messages", "claude-sonnet-4-5", "anthropic", 200, True,
     (3000, 800, 2048, 120), 1, 9100.0, 650.0, 0.021),
    ("/v1/chat/completions", "openai_chat", "gpt-4o", "anthropic", 200, False,
     (19, 10, None, None), 2, 980.0, 975.0, 0.0002),
    ("/v1/responses", "openai_responses", "gpt-4o", "openai", 429, False,
     (None, None, None, None), 3, 35.0, 35.0, 0.0),
    ("/v1/chat/completions", "openai_chat", None, None, 401, False,
     (None, None, None, None), 1, 0.08, 0.07, None),
    ("/v1/chat/completions", "openai_chat", "junk-model-8d1f", None, 404, False,
     (None, None, None, None), 1, 0.1, 0.09, None),
    ("/no/such/path", "other", None, None, 404, False,
     (None, None, None, None), 1, 0.05, 0.05, None),
)


def records() -> list[RequestRecord]:
    out = []
    for (path, protocol, model, provider, status, stream, tokens, attempts, latency, ttfb,
         cost) in MIX:
        rec = RequestRecord(path, protocol, "127.0.0.1:40000", 200)
        rec.model, rec.provider, rec.status, rec.stream = model, provider, status, stream
        (rec.input_tokens, rec.output_tokens, rec.cached_tokens,
         rec.reasoning_tokens) = tokens
        rec.attempts, rec.latency_ms, rec.ttfb_ms, rec.cost_usd = attempts, latency, ttfb, cost
        out.append(rec)
    return out


class ClientLibraryMetrics:
    """The same request metrics kept with ``prometheus_client`` (for comparison
    only; the gateway does not use it)."""

    def __init__(self, labels_of: Callable[[RequestRecord], tuple[str, ...]],
                 keep_children: bool) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        reg = CollectorRegistry()
        self.registry = reg
        self.labels_of = labels_of
        self.requests = Counter("tokenway_requests", "requests", LABELS, registry=reg)
        self.tokens = Counter("tokenway_tokens", "tokens", (*LABELS, "type"), registry=reg)
        self.cost = Counter("tokenway_cost_usd", "cost", LABELS, registry=reg)
        self.attempts = Counter("tokenway_upstream_attempts", "attempts", LABELS, registry=reg)
        self.failovers = Counter("tokenway_upstream_failovers", "failovers", LABELS,
                                 registry=reg)
        self.latency = Histogram("tokenway_request_duration_seconds", "latency", LABELS,
                                 buckets=BUCKETS_S, registry=reg)
        self.ttfb = Histogram("tokenway_time_to_first_byte_seconds", "ttfb", LABELS,
                              buckets=BUCKETS_S, registry=reg)
        self.children: dict[tuple[str, ...], tuple[Any, ...]] = {}
        self.observe = self._observe_kept if keep_children else self._observe

    def _children(self, key: tuple[str, ...]) -> tuple[Any, ...]:
        return (self.requests.labels(*key), self.tokens.labels(*key, "input"),
                self.tokens.labels(*key, "output"), self.tokens.labels(*key, "cached"),
                self.tokens.labels(*key, "reasoning"), self.cost.labels(*key),
                self.attempts.labels(*key), self.failovers.labels(*key),
                self.latency.labels(*key), self.ttfb.labels(*key))

    def _observe(self, rec: RequestRecord) -> None:
        self._record(rec, self._children(self.labels_of(rec)))

    def _observe_kept(self, rec: RequestRecord) -> None:
        key = self.labels_of(rec)
        c = self.children.get(key)
        if c is None:
            c = self.children[key] = self._children(key)
        self._record(rec, c)

    @staticmethod
    def _record(rec: RequestRecord, c: tuple[Any, ...]) -> None:
        c[0].inc()
        for i, v in ((1, rec.input_tokens), (2, rec.output_tokens), (3, rec.cached_tokens),
                     (4, rec.reasoning_tokens)):
            if v:
                c[i].inc(v)
        if rec.cost_usd:
            c[5].inc(rec.cost_usd)
        if rec.provider is not None:
            c[6].inc(rec.attempts)
            c[7].inc(rec.attempts - 1)
        if rec.latency_ms is not None:
            c[8].observe(rec.latency_ms / 1000.0)
        if rec.ttfb_ms is not None:
            c[9].observe(rec.ttfb_ms / 1000.0)


def _run(observe: Callable[[RequestRecord], None], recs: list[RequestRecord], n: int) -> float:
    """CPU seconds of ``n`` calls of ``observe``, over ``recs`` in turn."""
    k = len(recs)
    batch = recs * (n // k)
    t0 = time.thread_time()
    for rec in batch:
        observe(rec)
    return (time.thread_time() - t0) / len(batch)


def _noop(rec: RequestRecord) -> None:
    pass


def gateway_metrics() -> GatewayMetrics:
    """The metrics of a real ``GatewayState`` with its ``Dispatcher``'s endpoints."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "tokenway.toml")
        Path(conf).write_text(CONFIG)
        config = load_config(conf)
    loop = asyncio.new_event_loop()
    try:
        state = GatewayState(config, loop, lambda rec: None)
        Dispatcher(state, lambda: {})
    finally:
        loop.close()
    return state.metrics


def measure(requests: int, repeat: int) -> dict[str, Any]:
    recs = records()
    metrics = gateway_metrics()
    cases: list[tuple[str, Callable[[RequestRecord], None], Any]] = [
        ("hand-written (GatewayMetrics.observe)", metrics.observe, metrics)]
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        pass
    else:
        for name, keep in (("prometheus_client, .labels() per metric", False),
                           ("prometheus_client, children kept per label set", True)):
            lib = ClientLibraryMetrics(metrics.key_of, keep)
            cases.append((name, lib.observe, lib))
    for _, observe, _ in cases:
        _run(observe, recs, 2000)  # warm: every label set exists
    _run(_noop, recs, 2000)
    base: list[float] = []
    runs: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(repeat):
        base.append(_run(_noop, recs, requests))
        for name, observe, _ in cases:
            runs[name].append(_run(observe, recs, requests))
    floor = min(base)
    out = []
    for name, _, _ in cases:
        out.append({"case": name, "us_per_request": round((min(runs[name]) - floor) * 1e6, 3),
                    "runs_us": [round(x * 1e6, 3) for x in runs[name]]})
    t0 = time.thread_time()
    body = metrics.render({"connections": 1, "ledger": {"queued": 0}}, {"open": 2, "idle": 1},
                          {"openai": {"state": "closed"}}, time.time())
    scrape_ms = (time.thread_time() - t0) * 1e3
    return {"schema": "tokenway-bench-micro-metrics/1", "requests": requests,
            "repeat": repeat, "noop_loop_us": round(floor * 1e6, 3), "cases": out,
            "series": metrics.series_count, "scrape_ms": round(scrape_ms, 3),
            "scrape_bytes": len(body)}


IN_GATEWAY_CONFIG = """
[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
api_key = "sk-bench"

[[routes]]
match = "gpt-bench"
to = ["openai"]
"""


def measure_in_gateway(seconds: float, conc: int) -> dict[str, Any]:
    """``observe`` timed inside a running gateway under load: the fake upstream
    (bench/fake_upstream.py) and the load generator (bench/loadgen.py, ``conc``
    connections for ``seconds``) in processes of their own, the gateway on
    uvloop in a thread of this one with a real ledger, and every ``observe`` call
    timed with ``perf_counter_ns`` (wall time of the loop's thread: a call the
    scheduler preempts counts its wait too, so the median is the figure), less
    the same timing of a no-op right before it (the timer's own cost, as cold)."""
    import socket
    import subprocess
    import tempfile
    import threading

    from bench.targets import free_port
    from proxy.aio import new_event_loop
    from proxy.ledger import Ledger
    from proxy.server import Server

    port = free_port()
    fake = subprocess.Popen([sys.executable, "-m", "bench.fake_upstream", "--port", str(port)],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: list[int] = []
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the fake upstream did not start") from None
                time.sleep(0.05)
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "tokenway.toml"
            conf.write_text(IN_GATEWAY_CONFIG.format(port=port))
            db = str(Path(tmp) / "ledger.db")
            config = load_config(str(conf), overrides={"listen": "127.0.0.1:0", "db": db})
            ledger = Ledger(db)
            ledger.start()
            loop = new_event_loop("uvloop")
            ready = threading.Event()
            box: list[Server] = []

            async def serve() -> None:
                server = Server(config, ledger, loop)
                box.append(server)
                await server.start()
                ready.set()
                await server.wait_stopped()
                await server.shutdown(2.0)

            def run() -> None:
                asyncio.set_event_loop(loop)
                try:
                    loop.run_until_complete(serve())
                finally:
                    loop.close()

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            if not ready.wait(15):
                raise RuntimeError("the gateway did not start")
            server = box[0]
            metrics = server.state.metrics
            real = metrics.observe
            clock = time.perf_counter_ns
            keep = samples.append

            def timed(rec: RequestRecord) -> None:
                # The timer's own cost, in the same (cold) state, is the no-op's.
                t0 = clock()
                _noop(rec)
                t1 = clock()
                real(rec)
                t2 = clock()
                keep(t2 - t1 - (t1 - t0))

            metrics.observe = timed  # type: ignore[method-assign]
            try:
                subprocess.run(
                    [sys.executable, "-m", "bench.loadgen", "--url",
                     server.url + "/v1/chat/completions", "--conc", str(conc),
                     "--duration", str(seconds)],
                    cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL,
                    timeout=seconds + 60)
            finally:
                loop.call_soon_threadsafe(server.request_stop)
                thread.join(30)
                ledger.close()
    finally:
        fake.terminate()
        fake.wait(10)
    samples.sort()
    n = len(samples)
    return {"calls": n, "median_us": round(samples[n // 2] / 1000, 3),
            "p90_us": round(samples[n * 9 // 10] / 1000, 3),
            "mean_us": round(sum(samples) / n / 1000, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro.metrics")
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    p.add_argument("--in-gateway", type=float, metavar="SECONDS", default=0.0,
                   help="also time observe inside a running gateway under SECONDS of load")
    p.add_argument("--conc", type=int, default=16, help="--in-gateway's connections")
    args = p.parse_args(argv)
    res = measure(args.requests, args.repeat)
    print(f"metrics recording path, CPU per request (min of {args.repeat} runs of "
          f"{args.requests:,}, less a no-op loop of {res['noop_loop_us']:.3f} us):")
    for c in res["cases"]:
        print(f"  {c['case']:<50} {c['us_per_request']:6.3f} us")
    print(f"scrape of {res['series']} label sets: {res['scrape_ms']:.3f} ms CPU, "
          f"{res['scrape_bytes']:,} bytes")
    if args.in_gateway > 0:
        res["in_gateway"] = g = measure_in_gateway(args.in_gateway, args.conc)
        print(f"in a gateway under load ({args.conc} connections, {args.in_gateway:g} s, "
              f"{g['calls']:,} requests): observe median {g['median_us']:.3f} us, "
              f"p90 {g['p90_us']:.3f} us, mean {g['mean_us']:.3f} us (wall time, less "
              "a no-op's)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
