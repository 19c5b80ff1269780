"""The SSE stream client over HTTP/2: `--conc` streams spread over `--connections`
prior-knowledge h2c connections, each stream posting again when it ends, until
`--duration` is up.  Every stream is accounted for exactly as `bench.sse_client`
does it (TTFB, frames, frame delay, frames lost, terminal event): the per-stream
state is its `StreamClient`, fed from h2 events instead of an HTTP/1.1 parser.

Prints one line `BENCH_RESULT {json}` with the same fields as `bench.sse_client`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from urllib.parse import urlsplit

import orjson
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)

from bench.loadgen import CONNECT_TIMEOUT_S, common_args, parse_headers, read_body, run_loop
from bench.sse_client import STREAM_GRACE_S, Run, StreamClient, _rounded, percentiles_ms

# The client's receive windows: large, so the client never throttles the gateway.
WINDOW_BYTES = 16 * 1024 * 1024


class H2StreamClient(StreamClient):
    """One stream slot: a stream, then the next one when it ends."""

    def __init__(self, run: Run, conn: H2Conn) -> None:
        self.conn = conn
        self.sid = 0
        super().__init__(run)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raise NotImplementedError("a stream has no transport of its own")

    def send(self) -> None:
        run = self.run
        if run.loop.time() >= run.deadline or self.conn.closed:
            self.close()
            return
        self._reset()
        self.inflight = True
        self.nstreams += 1
        self.t0 = time.monotonic_ns()
        self.sid = self.conn.open(self)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.run.clients.discard(self)
            self.run.conn_closed()
            self.conn.slot_closed()

    def ended(self) -> None:
        if self.data:  # a final event without its blank line
            self._event(b"\n".join(self.data))
            self.data = []
        self._finish(broken=False)
        self.send()

    def broken(self) -> None:
        if self.inflight:
            self.run.sockerr += 1
            self._finish(broken=True)


class H2Conn(asyncio.Protocol):
    def __init__(self, run: Run, slots: int, authority: bytes, path: bytes,
                 headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.run = run
        self.slots = slots
        self.open_slots = 0
        self.head = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", authority),
                     (b":path", path), *headers, (b"content-length", b"%d" % len(body))]
        self.body = body
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.streams: dict[int, H2StreamClient] = {}
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.initiate_connection()  # the preface first
        self.h2.update_settings({4: WINDOW_BYTES})  # SETTINGS_INITIAL_WINDOW_SIZE
        self.h2.increment_flow_control_window(WINDOW_BYTES)
        for _ in range(self.slots):
            self.open_slots += 1
            H2StreamClient(self.run, self).send()
        self._flush()

    def open(self, st: H2StreamClient) -> int:
        sid = self.h2.get_next_available_stream_id()
        self.streams[sid] = st
        self.h2.send_headers(sid, self.head)
        self.h2.send_data(sid, self.body, end_stream=True)
        self._flush()
        return sid

    def _flush(self) -> None:
        out = self.h2.data_to_send()
        if out and self.transport is not None and not self.closed:
            self.transport.write(out)

    def slot_closed(self) -> None:
        self.open_slots -= 1
        if self.open_slots <= 0 and not self.closed:
            self.closed = True
            self._flush()
            assert self.transport is not None
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        for ev in self.h2.receive_data(data):
            if isinstance(ev, DataReceived):
                st = self.streams.get(ev.stream_id)
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if st is not None:
                    st.now = now
                    st.on_body(ev.data)
            elif isinstance(ev, ResponseReceived):
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    st.first_byte = now
                    st.status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, StreamEnded):
                st = self.streams.pop(ev.stream_id, None)
                if st is not None:
                    st.ended()
            elif isinstance(ev, StreamReset):
                st = self.streams.pop(ev.stream_id, None)
                if st is not None:
                    st.broken()
                    st.send()
            elif isinstance(ev, ConnectionTerminated):
                self.closed = True
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for st in list(self.streams.values()):
            st.broken()
            st.close()
        self.streams.clear()


async def run_streams(url: str, body: bytes, headers: list[tuple[str, str]], conc: int,
                      connections: int, duration_s: float, expected: int,
                      interval_ms: float) -> dict:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    run = Run(host, port, b"", duration_s, expected, interval_ms)
    hs = [(k.lower().encode(), v.encode()) for k, v in headers]
    hs.append((b"accept", b"text/event-stream"))
    authority = f"{host}:{port}".encode()
    start = time.perf_counter()
    per = [conc // connections + (1 if i < conc % connections else 0)
           for i in range(connections)]
    for slots in per:
        run.active += slots
        try:
            await asyncio.wait_for(run.loop.create_connection(
                lambda s=slots: H2Conn(run, s, authority, (u.path or "/").encode(), hs, body),
                host, port), CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError):
            run.sockerr += slots
            run.active -= slots
    if run.active <= 0:
        run.all_done.set()
    try:
        await asyncio.wait_for(run.all_done.wait(), duration_s + STREAM_GRACE_S)
    except TimeoutError:
        pass
    unfinished = sum(1 for c in run.clients if c.inflight and not c.closed)
    elapsed = time.perf_counter() - start
    streams = run.streams_ok + run.streams_bad
    gaps_excess = [g - run.interval_ns for g in run.gaps]
    return {
        "tool": "h2_sse_client", "connections": connections,
        "streams": streams, "streams_ok": run.streams_ok, "streams_bad": run.streams_bad,
        "non2xx": run.non2xx, "sockerr": run.sockerr, "duration_s": round(elapsed, 4),
        "streams_per_s": round(run.streams_ok / elapsed, 3) if elapsed else 0.0,
        "frames_expected_per_stream": expected, "frames": run.frames,
        "frames_lost": run.frames_lost, "frames_extra": run.frames_extra,
        "unterminated": run.unterminated, "unfinished": unfinished, "events": run.events,
        "ttfb": _rounded(percentiles_ms(run.ttfb)),
        "ttff": _rounded(percentiles_ms(run.ttff)),
        "total": _rounded(percentiles_ms(run.total)),
        "frame_delay": _rounded(percentiles_ms(run.delays)),
        "frame_delay_samples": len(run.delays),
        "gap_excess": _rounded(percentiles_ms(gaps_excess, (50, 99))) if gaps_excess else {},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.h2_sse_client", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    ap.add_argument("--connections", type=int, default=8, help="HTTP/2 connections")
    ap.add_argument("--expect", type=int, default=20, help="content frames per stream")
    ap.add_argument("--interval-ms", type=float, default=0.0,
                    help="the upstream's frame interval, for gap statistics")
    args = ap.parse_args(argv)
    result = run_loop(run_streams(args.url, read_body(args.body_file),
                                  parse_headers(args.header), args.conc, args.connections,
                                  args.duration, args.expect, args.interval_ms))
    sys.stdout.write("BENCH_RESULT " + orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
