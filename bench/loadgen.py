"""A keep-alive HTTP/1.1 POST load generator on uvloop + httptools (wrk's stand-in).

Used when wrk is missing and cannot be installed (`--load ours` forces it). Each of
`--conc` connections sends one request, waits for the whole response (chunked SSE
included), records the latency and sends the next, until `--duration` is up. Requests
in flight at the deadline are allowed to finish. It prints one line,
`BENCH_RESULT {json}`, with the same keys as bench/post.lua's `done()` hook.

It is a single Python process. Here it kept up with wrk against the fake upstream (about
50k req/s at c=16, unpinned), but it spends more CPU per request than wrk, and on a
2-core machine that CPU comes out of the same budget as the target's. Its latency
percentiles are exact (sorted samples) where wrk's come from a histogram, so compare
runs made with the same tool (the result file records which).

`--rate R` switches to fixed-rate (open-loop) mode: request i is due at start + i/R, sent
on an idle keep-alive connection of a pool that grows as needed up to `--max-conns`, and
counted as dropped when every connection is busy. Its latency is measured from the
scheduled send time, not from the write, so a stall cannot hide (coordinated omission).

Also home of the helpers the SSE client shares: URL and header parsing, request bytes and
percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from urllib.parse import urlsplit

import httptools
import orjson

CONNECT_TIMEOUT_S = 5.0
# After the deadline, in-flight requests get this long before their sockets are closed.
DRAIN_GRACE_S = 10.0
DEFAULT_BODY = (b'{"model":"gpt-bench","messages":[{"role":"user","content":"hi"}],'
                b'"max_tokens":16}')


def percentiles_ms(values_ns: list[int], points=(50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles in milliseconds, plus max and mean."""
    if not values_ns:
        return {}
    vals = sorted(values_ns)
    n = len(vals)
    out = {f"p{p}_ms": vals[min(n - 1, max(0, -(-p * n // 100) - 1))] / 1e6 for p in points}
    out["max_ms"] = vals[-1] / 1e6
    out["mean_ms"] = sum(vals) / n / 1e6
    return out


def parse_headers(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        for part in item.split("|"):
            if ":" in part:
                k, v = part.split(":", 1)
                out.append((k.strip(), v.strip()))
    return out


def build_request(url: str, body: bytes, headers: list[tuple[str, str]],
                  accept: str = "application/json") -> tuple[str, int, bytes]:
    u = urlsplit(url)
    host = u.hostname or "127.0.0.1"
    port = u.port or 80
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}",
             "Content-Type: application/json", f"Accept: {accept}",
             f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Run:
    """Shared state of one load run."""

    def __init__(self, host: str, port: int, request: bytes, duration_s: float) -> None:
        self.host, self.port, self.request = host, port, request
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + duration_s
        self.latencies: list[int] = []
        self.non2xx = 0
        self.sockerr = 0
        self.bytes = 0
        self.active = 0
        self.all_done = asyncio.Event()

    def conn_closed(self) -> None:
        self.active -= 1
        if self.active <= 0:
            self.all_done.set()


class Client(asyncio.Protocol):
    """One keep-alive connection that sends request after request."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.t0 = 0
        self.inflight = False
        self.status = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        run = self.run
        if run.loop.time() >= run.deadline:
            self.close()
            return
        self.inflight = True
        self.t0 = time.perf_counter_ns()
        self.transport.write(run.request)  # type: ignore[union-attr]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.run.bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.run.sockerr += 1
            self.inflight = False
            self.close()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        run = self.run
        run.latencies.append(time.perf_counter_ns() - self.t0)
        self.inflight = False
        if not 200 <= self.status < 400:
            run.non2xx += 1
        if self.parser.should_keep_alive():
            self.send()
        else:
            self.close()
            if run.loop.time() < run.deadline:
                run.loop.create_task(open_client(run))

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        if self.inflight:
            run.sockerr += 1
            if run.loop.time() < run.deadline:
                run.loop.create_task(open_client(run))
        self.closed = True
        run.conn_closed()


async def open_client(run: Run) -> None:
    run.active += 1
    try:
        await asyncio.wait_for(
            run.loop.create_connection(lambda: Client(run), run.host, run.port),
            CONNECT_TIMEOUT_S)
    except (TimeoutError, OSError):
        run.sockerr += 1
        run.conn_closed()
        if run.loop.time() < run.deadline:
            await asyncio.sleep(0.01)
            run.loop.create_task(open_client(run))


async def run_load(url: str, body: bytes, headers: list[tuple[str, str]], conc: int,
                   duration_s: float) -> dict:
    host, port, request = build_request(url, body, headers)
    run = Run(host, port, request, duration_s)
    start = time.perf_counter()
    for _ in range(conc):
        run.loop.create_task(open_client(run))
    try:
        await asyncio.wait_for(run.all_done.wait(), duration_s + DRAIN_GRACE_S)
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - start
    reqs = len(run.latencies)
    out = {"tool": "loadgen", "reqs": reqs, "duration_s": round(elapsed, 4),
           "rps": round(reqs / elapsed, 3) if elapsed else 0.0, "non2xx": run.non2xx,
           "sockerr": run.sockerr, "bytes": run.bytes}
    out.update({k: round(v, 4) for k, v in percentiles_ms(run.latencies).items()})
    return out


# ---------------------------------------------------------------- fixed-rate (open loop)
# The pool grows to this many connections at most; a request due while all of them are
# busy is counted as dropped instead of waiting (waiting would hide the stall).
RATE_MAX_CONNS = 512
RATE_PREOPEN = 8


class RateRun:
    """Shared state of one fixed-rate run: the schedule, the connection pool, the counts."""

    def __init__(self, host: str, port: int, request: bytes, rate: float, duration_s: float,
                 max_conns: int) -> None:
        self.host, self.port, self.request = host, port, request
        self.loop = asyncio.get_running_loop()
        self.rate = rate
        self.n = max(1, int(rate * duration_s))
        self.period_ns = 1e9 / rate
        self.max_conns = max_conns
        self.start_ns = 0
        self.i = 0                       # next request of the schedule
        self.idle: list[RateClient] = []
        self.pending: list[int] = []     # scheduled times waiting for a connection being opened
        self.conns = 0                   # open or opening
        self.conns_max = 0
        self.inflight = 0
        self.latencies: list[int] = []   # response end - scheduled send time
        self.service: list[int] = []     # response end - actual write
        self.send_lag: list[int] = []    # actual write - scheduled send time
        self.last_done_ns = 0
        self.non2xx = self.sockerr = self.dropped = self.bytes = 0
        self.sched_done = False
        self.all_done = asyncio.Event()

    def sched_ns(self, i: int) -> int:
        return self.start_ns + int(i * self.period_ns)

    def tick(self) -> None:
        now = time.monotonic_ns()
        while self.i < self.n and self.sched_ns(self.i) <= now:
            self.dispatch(self.sched_ns(self.i))
            self.i += 1
        if self.i < self.n:
            delay = (self.sched_ns(self.i) - time.monotonic_ns()) / 1e9
            self.loop.call_later(max(0.0, delay), self.tick)
        else:
            self.sched_done = True
            self.maybe_done()

    def dispatch(self, sched: int) -> None:
        if self.idle:
            self.idle.pop().send(sched)
        elif self.conns < self.max_conns:
            self.pending.append(sched)
            self.loop.create_task(self.open())
        else:
            self.dropped += 1

    def free(self, client: RateClient) -> None:
        """A connection is ready for its next request."""
        if self.pending:
            client.send(self.pending.pop(0))
        else:
            self.idle.append(client)
            self.maybe_done()

    def gone(self, client: RateClient) -> None:
        self.conns -= 1
        if client in self.idle:
            self.idle.remove(client)
        if self.pending and self.conns < self.max_conns and not self.sched_done:
            self.loop.create_task(self.open())
        self.maybe_done()

    def maybe_done(self) -> None:
        if self.sched_done and self.inflight == 0 and not self.pending:
            self.all_done.set()

    async def open(self) -> None:
        self.conns += 1
        self.conns_max = max(self.conns_max, self.conns)
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: RateClient(self), self.host, self.port),
                CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError):
            self.sockerr += 1
            self.conns -= 1
            if self.pending:  # the request this connection was opened for fails
                self.pending.pop(0)
            self.maybe_done()


class RateClient(asyncio.Protocol):
    """One keep-alive connection of the pool: one request at a time."""

    def __init__(self, run: RateRun) -> None:
        self.run = run
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.sched = 0
        self.sent = 0
        self.busy = False
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.run.free(self)

    def send(self, sched: int) -> None:
        run = self.run
        self.busy = True
        run.inflight += 1
        self.sched = sched
        self.sent = time.monotonic_ns()
        run.send_lag.append(self.sent - sched)
        self.transport.write(run.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.run.bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()  # type: ignore[union-attr]  # counted in connection_lost

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        run = self.run
        now = time.monotonic_ns()
        run.latencies.append(now - self.sched)
        run.service.append(now - self.sent)
        run.last_done_ns = now
        run.inflight -= 1
        self.busy = False
        if not 200 <= self.status < 400:
            run.non2xx += 1
        if self.parser.should_keep_alive():
            run.free(self)
        else:
            self.transport.close()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        if self.busy:
            self.busy = False
            run.inflight -= 1
            run.sockerr += 1
        run.gone(self)


async def run_rate(url: str, body: bytes, headers: list[tuple[str, str]], rate: float,
                   duration_s: float, max_conns: int = RATE_MAX_CONNS) -> dict:
    """Open loop: request i is due at start + i/rate whatever happened to the earlier ones.
    A due request takes an idle keep-alive connection, or opens a new one (up to
    `max_conns`), or is dropped. Latency runs from the *scheduled* time, so a stall of the
    target (or of this client) is charged to every request it delayed."""
    host, port, request = build_request(url, body, headers)
    run = RateRun(host, port, request, rate, duration_s, max_conns)
    for _ in range(min(RATE_PREOPEN, max_conns)):
        run.loop.create_task(run.open())
    await asyncio.sleep(0.2)  # let the first connections open before the clock starts
    run.start_ns = time.monotonic_ns()
    run.tick()
    try:
        await asyncio.wait_for(run.all_done.wait(), duration_s + DRAIN_GRACE_S)
    except TimeoutError:
        pass
    end_ns = time.monotonic_ns()
    unfinished = run.inflight + len(run.pending)
    for c in list(run.idle):
        c.transport.close()  # type: ignore[union-attr]
    sent_window = run.n / rate
    span = max(sent_window, ((run.last_done_ns or end_ns) - run.start_ns) / 1e9)
    reqs = len(run.latencies)
    out = {"tool": "loadgen-rate", "offered_rps": rate, "scheduled": run.n, "reqs": reqs,
           "duration_s": round(span, 4), "rps": round(reqs / span, 3) if span else 0.0,
           "non2xx": run.non2xx, "sockerr": run.sockerr, "dropped": run.dropped,
           "unfinished": unfinished, "conns_max": run.conns_max, "max_conns": max_conns,
           "bytes": run.bytes}
    out.update({k: round(v, 4) for k, v in percentiles_ms(run.latencies).items()})
    for name, vals in (("service", run.service), ("send_lag", run.send_lag)):
        out.update({f"{name}_{k}": round(v, 4)
                    for k, v in percentiles_ms(vals).items() if k in ("p50_ms", "p99_ms",
                                                                      "max_ms")})
    return out


def run_loop(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--url", required=True)
    ap.add_argument("--conc", "-c", type=int, default=16)
    ap.add_argument("--duration", "-d", type=float, default=5.0, help="seconds")
    ap.add_argument("--body-file", help="request body (default: a small chat request)")
    ap.add_argument("--header", "-H", action="append", default=[],
                    help='"k: v", repeatable; "k: v|k2: v2" also works')


def read_body(path: str | None) -> bytes:
    if not path:
        return DEFAULT_BODY
    with open(path, "rb") as f:
        return f.read()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    ap.add_argument("--rate", type=float, default=0.0,
                    help="fixed-rate (open-loop) mode: requests per second, sent on schedule "
                         "whatever the responses do (--conc is then ignored)")
    ap.add_argument("--max-conns", type=int, default=RATE_MAX_CONNS,
                    help="fixed-rate mode: the most keep-alive connections the pool may open; "
                         "a request due while all are busy is dropped")
    args = ap.parse_args(argv)
    body, headers = read_body(args.body_file), parse_headers(args.header)
    if args.rate > 0:
        result = run_loop(run_rate(args.url, body, headers, args.rate, args.duration,
                                   args.max_conns))
    else:
        result = run_loop(run_load(args.url, body, headers, args.conc, args.duration))
    sys.stdout.write("BENCH_RESULT " + orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
