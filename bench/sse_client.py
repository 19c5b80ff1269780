"""SSE stream client: time to first byte, per-frame added latency, frames lost.

`--conc` keep-alive connections each run streams back to back until `--duration` is up;
streams in flight at the deadline finish (bounded by a grace period). For every stream
it records:

- TTFB: request written -> first response byte;
- TTFF: request written -> first content frame;
- every content frame (a Chat `delta.content`, an Anthropic `text_delta`, a Responses
  `output_text.delta`) with its arrival time; the gap between consecutive frames;
- when the fake upstream stamps frames (`[i:monotonic_ns]`, paced mode), the frame's
  delay = arrival - stamp. Both sides read CLOCK_MONOTONIC on the same machine, so
  the delay measured through a proxy minus the delay measured direct is what the proxy
  added to each frame;
- whether the stream ended properly ([DONE], message_stop or response.completed).

`frames_lost` = sum over streams of (expected - received content frames) when received
falls short, including streams that broke. It must be 0. `unfinished` counts streams
still open when the grace period after the deadline ran out (too slow, not broken).

Prints one line `BENCH_RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time

import httptools
import orjson

from bench.loadgen import (
    CONNECT_TIMEOUT_S,
    build_request,
    common_args,
    parse_headers,
    percentiles_ms,
    read_body,
    run_loop,
)

# Paced streams last expected * interval; give them this long beyond the deadline.
STREAM_GRACE_S = 30.0
_STAMP_RE = re.compile(r"\[(\d+):(\d+)\]")
_TERMINAL_TYPES = frozenset({"message_stop", "response.completed", "response.failed",
                             "response.incomplete"})


def content_of(obj: object) -> str | None:
    """The text of a content frame in any of the three formats, else None."""
    if not isinstance(obj, dict):
        return None
    choices = obj.get("choices")
    if isinstance(choices, list):
        parts = []
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                parts.append(text)
        return "".join(parts) if parts else None
    typ = obj.get("type")
    if typ == "content_block_delta":
        delta = obj.get("delta")
        if isinstance(delta, dict) and delta.get("type") == "text_delta":
            return delta.get("text") or None
    elif typ == "response.output_text.delta":
        return obj.get("delta") or None
    return None


class Run:
    def __init__(self, host: str, port: int, request: bytes, duration_s: float,
                 expected: int, interval_ms: float, warm_streams: int = 0) -> None:
        self.host, self.port, self.request = host, port, request
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + duration_s
        self.expected = expected
        self.interval_ns = int(interval_ms * 1e6)
        self.ttfb: list[int] = []
        self.ttff: list[int] = []
        self.total: list[int] = []
        self.delays: list[int] = []
        self.gaps: list[int] = []
        self.streams_ok = 0
        self.streams_bad = 0
        self.non2xx = 0
        self.sockerr = 0
        self.frames = 0
        self.frames_lost = 0
        self.frames_extra = 0
        self.events = 0
        self.unterminated = 0
        self.active = 0
        self.all_done = asyncio.Event()
        self.clients: set[StreamClient] = set()
        # The first `warm_streams` streams of each connection (the burst of new
        # connections at the start) are timed apart from the steady state.
        self.warm_streams = warm_streams
        self.first_ttfb: list[int] = []
        self.first_delays: list[int] = []

    def conn_closed(self) -> None:
        self.active -= 1
        if self.active <= 0:
            self.all_done.set()


class StreamClient(asyncio.Protocol):
    def __init__(self, run: Run) -> None:
        self.run = run
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.inflight = False
        self.nstreams = 0  # streams started on this connection
        self._reset()
        run.clients.add(self)

    def _reset(self) -> None:
        self.t0 = 0
        self.first_byte = 0
        self.first_frame = 0
        self.last_frame = 0
        self.now = 0
        self.status = 0
        self.count = 0
        self.terminal = False
        self.buf = b""
        self.data: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        run = self.run
        if run.loop.time() >= run.deadline:
            self.close()
            return
        self._reset()
        self.inflight = True
        self.nstreams += 1
        self.t0 = time.monotonic_ns()
        self.transport.write(run.request)  # type: ignore[union-attr]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.now = time.monotonic_ns()
        if not self.first_byte:
            self.first_byte = self.now
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(broken=True)
            self.close()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        # SSE lines end in LF or CRLF (WHATWG also allows a lone CR; no provider sends it).
        buf = self.buf + body
        lines = buf.split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self.data:
                    self._event(b"\n".join(self.data))
                    self.data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self.data.append(value[1:] if value.startswith(b" ") else value)

    def _event(self, data: bytes) -> None:
        run = self.run
        run.events += 1
        if data == b"[DONE]":
            self.terminal = True
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        text = content_of(obj)
        if text is None:
            if isinstance(obj, dict) and obj.get("type") in _TERMINAL_TYPES:
                self.terminal = True
            return
        now = self.now
        steady = self.nstreams > run.warm_streams
        self.count += 1
        if not self.first_frame:
            self.first_frame = now
        elif run.interval_ns and steady:
            run.gaps.append(now - self.last_frame)
        self.last_frame = now
        if "[" in text:
            delays = run.delays if steady else run.first_delays
            for _, stamp in _STAMP_RE.findall(text):
                delays.append(now - int(stamp))

    def on_message_complete(self) -> None:
        if self.data:  # a final event without its blank line
            self._event(b"\n".join(self.data))
            self.data = []
        self._finish(broken=False)
        if self.parser.should_keep_alive() and not self.closed:
            self.send()
        else:
            self.close()
            if self.run.loop.time() < self.run.deadline:
                self.run.loop.create_task(open_client(self.run))

    def _finish(self, broken: bool) -> None:
        if not self.inflight:
            return
        self.inflight = False
        run = self.run
        end = time.monotonic_ns()
        if not 200 <= self.status < 300:
            run.non2xx += 1
            broken = True
        steady = self.nstreams > run.warm_streams
        if self.first_byte:
            (run.ttfb if steady else run.first_ttfb).append(self.first_byte - self.t0)
        if self.first_frame and steady:
            run.ttff.append(self.first_frame - self.t0)
        run.frames += self.count
        if self.count < run.expected:
            run.frames_lost += run.expected - self.count
        elif self.count > run.expected:
            run.frames_extra += self.count - run.expected
        if not self.terminal and not broken:
            run.unterminated += 1
        if broken or not self.terminal or self.count < run.expected:
            run.streams_bad += 1
        else:
            run.streams_ok += 1
            if steady:
                run.total.append(end - self.t0)

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        if self.inflight:
            run.sockerr += 1
            self._finish(broken=True)
            if run.loop.time() < run.deadline:
                run.loop.create_task(open_client(run))
        self.closed = True
        run.clients.discard(self)
        run.conn_closed()


async def open_client(run: Run) -> None:
    run.active += 1
    try:
        await asyncio.wait_for(
            run.loop.create_connection(lambda: StreamClient(run), run.host, run.port),
            CONNECT_TIMEOUT_S)
    except (TimeoutError, OSError):
        run.sockerr += 1
        run.conn_closed()
        if run.loop.time() < run.deadline:
            await asyncio.sleep(0.01)
            run.loop.create_task(open_client(run))


def _rounded(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in d.items()}


async def _open_later(run: Run, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    run.active -= 1  # open_client counts itself; drop the placeholder from run_streams
    await open_client(run)


async def run_streams(url: str, body: bytes, headers: list[tuple[str, str]], conc: int,
                      duration_s: float, expected: int, interval_ms: float,
                      stagger_ms: float = 0.0, warm_streams: int = 0) -> dict:
    host, port, request = build_request(url, body, headers, accept="text/event-stream")
    run = Run(host, port, request, duration_s, expected, interval_ms, warm_streams)
    start = time.perf_counter()
    for i in range(conc):
        if stagger_ms and i:
            run.active += 1  # counted now, so all_done cannot fire before it opens
            run.loop.create_task(_open_later(run, i * stagger_ms / 1000))
        else:
            run.loop.create_task(open_client(run))
    try:
        await asyncio.wait_for(run.all_done.wait(), duration_s + STREAM_GRACE_S)
    except TimeoutError:
        pass
    # Streams still open after the grace period: too slow, not lost; reported apart.
    unfinished = sum(1 for c in run.clients if c.inflight and not c.closed)
    elapsed = time.perf_counter() - start
    streams = run.streams_ok + run.streams_bad
    gaps_excess = [g - run.interval_ns for g in run.gaps]
    out = {
        "tool": "sse_client", "streams": streams, "streams_ok": run.streams_ok,
        "streams_bad": run.streams_bad, "non2xx": run.non2xx, "sockerr": run.sockerr,
        "duration_s": round(elapsed, 4),
        "streams_per_s": round(run.streams_ok / elapsed, 3) if elapsed else 0.0,
        "frames_expected_per_stream": expected, "frames": run.frames,
        "frames_lost": run.frames_lost, "frames_extra": run.frames_extra,
        "unterminated": run.unterminated, "unfinished": unfinished, "events": run.events,
        "ttfb": _rounded(percentiles_ms(run.ttfb)),
        "ttff": _rounded(percentiles_ms(run.ttff)),
        "total": _rounded(percentiles_ms(run.total)),
        "frame_delay": _rounded(percentiles_ms(run.delays)),
        "frame_delay_samples": len(run.delays),
        # gap - interval: how late each frame came after the previous one.
        "gap_excess": _rounded(percentiles_ms(gaps_excess, (50, 99))) if gaps_excess else {},
        "warm_streams": warm_streams,
    }
    if warm_streams:
        out["first_ttfb"] = _rounded(percentiles_ms(run.first_ttfb))
        out["first_frame_delay"] = _rounded(percentiles_ms(run.first_delays))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sse_client", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    ap.add_argument("--expect", type=int, default=20, help="content frames per stream")
    ap.add_argument("--interval-ms", type=float, default=0.0,
                    help="the upstream's frame interval, for gap statistics")
    ap.add_argument("--stagger-ms", type=float, default=0.0,
                    help="open connection i after i x this, so paced streams do not all "
                         "start (and tick) in the same instant")
    ap.add_argument("--warm-streams", type=int, default=0,
                    help="time the first N streams of each connection apart (first_ttfb, "
                         "first_frame_delay): the steady-state figures leave them out; "
                         "frames lost still count them")
    args = ap.parse_args(argv)
    result = run_loop(run_streams(args.url, read_body(args.body_file),
                                  parse_headers(args.header), args.conc, args.duration,
                                  args.expect, args.interval_ms, args.stagger_ms,
                                  args.warm_streams))
    sys.stdout.write("BENCH_RESULT " + orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
