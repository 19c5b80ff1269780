"""The floor: the smallest uvloop + httptools + orjson forwarder that does the work of
the gateway's Chat passthrough, and nothing more. The bench runs it beside tokenway, so
"tokenway / floor" is what the gateway costs over a bare Python forwarder.

    python -m bench.floor --listen 127.0.0.1:PORT --upstream http://127.0.0.1:UPORT

Per request it does what the gateway's non-stream Chat passthrough does, no less:

- parses the HTTP/1.1 request with httptools (keep-alive, Content-Length or chunked
  bodies; pipelined requests wait their turn);
- reads `model` (a non-empty string, else 400) and `stream` from the body with
  orjson.loads;
- forwards the request, path as received, over a pooled keep-alive upstream connection
  (one per in-flight request, reused most-recent first; a pooled connection found dead
  before any response byte is retried once on a fresh one, RFC 9112 section 9.3.1);
- parses the reply with httptools; a non-stream reply is buffered, its `usage` read with
  orjson.loads (the totals are logged at exit), and its body sent to the client with
  Content-Length;
- a 200 `text/event-stream` reply is passed through without reading the events: what
  one upstream socket read brought leaves as one chunk of a chunked response.

What the gateway does beyond this (routing, keys, translation, the ledger, request ids,
limits, failover, /health) is what the two figures' difference measures. Bench code
only: nothing in proxy/ imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import logging
import signal
import sys
from collections import deque
from urllib.parse import urlsplit

import httptools
import orjson

log = logging.getLogger("bench.floor")

MAX_HEAD_BYTES = 64 * 1024                # request line + headers
MAX_BODY_BYTES = 32 * 1024 * 1024         # request body
MAX_RESPONSE_BYTES = 64 * 1024 * 1024     # a buffered (non-stream) upstream reply
MAX_PIPELINED = 16                        # queued requests before the client is paused
MAX_IDLE_UPSTREAM = 512                   # idle pooled connections kept
CONNECT_TIMEOUT_S = 5.0
UPSTREAM_SILENCE_S = 300.0                # no upstream byte this long mid-request: 504
CLIENT_IDLE_S = 75.0                      # idle (or half-sent) client connections closed
UPSTREAM_IDLE_S = 55.0                    # pooled connections older than this closed
SWEEP_S = 1.0                             # one timer for every deadline above
WRITE_HIGH_WATER = 256 * 1024             # client buffer above this pauses the upstream

STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
               b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
_REASONS: dict[int, bytes] = {}


def _reason(status: int) -> bytes:
    r = _REASONS.get(status)
    if r is None:
        try:
            r = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            r = b"Unknown"
        _REASONS[status] = r
    return r


def _error_body(message: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "floor_error"}})


class Floor:
    """Shared state: the upstream address, its connection pool, the open clients."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.host_header = f"{host}:{port}".encode()
        self.idle: deque[Upstream] = deque()
        self.upstreams: set[Upstream] = set()
        self.clients: set[Client] = set()
        # The event loop keeps only weak references to tasks: hold the connects here.
        self.connecting: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.errors = 0
        self.input_tokens = 0
        self.output_tokens = 0

    def forward(self, data: bytes, client: Client, fresh: bool = False) -> None:
        idle = self.idle
        while idle and not fresh:
            up = idle.pop()  # LIFO: the most recently used is the least likely dead
            if not up.closed:
                up.send(data, client, reused=True)
                return
        task = self.loop.create_task(self._connect_and_send(data, client))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect_and_send(self, data: bytes, client: Client) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, up = await self.loop.create_connection(lambda: Upstream(self), self.host,
                                                          self.port)
        except (OSError, TimeoutError) as exc:
            client.upstream_failed(502, f"cannot connect to the upstream: {exc!r}")
            return
        if client.closed:
            self.release(up)
            return
        up.send(data, client, reused=False)

    def release(self, up: Upstream) -> None:
        if len(self.idle) >= MAX_IDLE_UPSTREAM:
            up.close()
            return
        up.idle_since = self.loop.time()
        self.idle.append(up)

    def sweep(self) -> None:
        now = self.loop.time()
        for up in list(self.upstreams):
            if up._paused:
                up.last_rx = now
            if up.client is not None and now - up.last_rx > UPSTREAM_SILENCE_S:
                up.fail(504, f"upstream sent nothing for {UPSTREAM_SILENCE_S:g} s")
            elif up.client is None and up.idle_since and now - up.idle_since > UPSTREAM_IDLE_S:
                up.close()
        for c in list(self.clients):
            if c.upstream is None and now - c.last_rx > CLIENT_IDLE_S:
                c.transport.close()
        self.loop.call_later(SWEEP_S, self.sweep)


class Client(asyncio.Protocol):
    """One client connection: parse requests, hand each to an upstream connection."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.loop = floor.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.closed = False
        self.upstream: Upstream | None = None  # the request in flight
        self.queue: deque[tuple[bytes, bool]] = deque()  # (request bytes, keep-alive)
        self.keep_alive = True  # of the request in flight
        self.last_rx = floor.loop.time()
        self._eof = False
        self._url = b""
        self._auth = b""
        self._head = 0
        self._parts: list[bytes] = []
        self._size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(WRITE_HIGH_WATER)
        self.floor.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.floor.clients.discard(self)
        self.queue.clear()
        up = self.upstream
        if up is not None:
            self.upstream = None
            up.abandon()  # its reply has nowhere to go
        self.parser = None  # type: ignore[assignment]  # no parser <-> protocol cycle

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserCallbackError as exc:
            # httptools wraps what a callback raised; ours say what to answer.
            why = exc.__context__
            if not isinstance(why, _Reject):
                raise
            self._reject(why.status, why.message)
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}")

    def eof_received(self) -> bool | None:
        # Half-closed by the client: answer what is in flight, then close.
        self._eof = True
        return self.upstream is not None

    def pause_writing(self) -> None:
        up = self.upstream
        if up is not None and not up.closed:
            up.pause()

    def resume_writing(self) -> None:
        up = self.upstream
        if up is not None and not up.closed:
            up.resume()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._auth = b""
        self._head = 0
        self._parts = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head += len(url)
        if self._head > MAX_HEAD_BYTES:
            raise _Reject(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += len(name) + len(value) + 4
        if self._head > MAX_HEAD_BYTES:
            raise _Reject(431, "request header fields too large")
        if len(name) == 13 and name.lower() == b"authorization":
            self._auth = value

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY_BYTES:
            raise _Reject(413, f"request body over {MAX_BODY_BYTES} bytes")
        self._parts.append(body)

    def on_message_complete(self) -> None:
        parts = self._parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        keep = self.parser.should_keep_alive()
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _Reject(400, f"request body is not JSON: {exc}") from None
        model = obj.get("model") if type(obj) is dict else None
        if type(model) is not str or not model:
            raise _Reject(400, "'model' must be a non-empty string")
        head = b"%s %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n" % (
            self.parser.get_method(), self._url, self.floor.host_header)
        if self._auth:
            head += b"authorization: %s\r\n" % self._auth
        data = head + b"content-length: %d\r\n\r\n" % len(body) + body
        if self.upstream is not None or self.queue:
            self.queue.append((data, keep))
            if len(self.queue) >= MAX_PIPELINED:
                self.transport.pause_reading()
            return
        self._start(data, keep)

    def _start(self, data: bytes, keep: bool) -> None:
        self.keep_alive = keep
        self.upstream = _PENDING
        self.floor.requests += 1
        self.floor.forward(data, self)

    # from the upstream connection
    def reply(self, status: int, body: bytes, ctype: bytes) -> None:
        if status == 200:
            try:
                obj = orjson.loads(body)
            except orjson.JSONDecodeError:
                obj = None  # relayed as is, like the gateway's passthrough
            usage = obj.get("usage") if type(obj) is dict else None
            if type(usage) is dict:
                n = usage.get("prompt_tokens")
                if type(n) is int:
                    self.floor.input_tokens += n
                n = usage.get("completion_tokens")
                if type(n) is int:
                    self.floor.output_tokens += n
        self._write_whole(status, body, ctype)
        self._done()

    def stream_start(self, first: bytes) -> None:
        self.transport.write(STREAM_HEAD + first if first else STREAM_HEAD)

    def stream_data(self, data: bytes) -> None:
        self.transport.write(data)

    def stream_end(self, last: bytes) -> None:
        self.transport.write(last + b"0\r\n\r\n")
        self._done()

    def upstream_failed(self, status: int, message: str, started: bool = False) -> None:
        self.floor.errors += 1
        if self.closed:
            return
        if started:  # the head is out: only a cut connection can tell the client
            self.upstream = None
            self.transport.abort()
            return
        self._write_whole(status, _error_body(message), b"application/json")
        self._done()

    def _write_whole(self, status: int, body: bytes, ctype: bytes) -> None:
        if self.closed:
            return
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
            status, _reason(status), ctype, len(body))
        if not self.keep_alive:
            head += b"connection: close\r\n"
        self.transport.write(head + b"\r\n" + body)

    def _done(self) -> None:
        self.upstream = None
        if self.closed:
            return
        if not self.keep_alive or (self._eof and not self.queue):
            self.transport.close()
            return
        if self.queue:
            data, keep = self.queue.popleft()
            if len(self.queue) == MAX_PIPELINED - 1:
                self.transport.resume_reading()
            self._start(data, keep)

    def _reject(self, status: int, message: str) -> None:
        """A request we cannot parse or forward: answer it and close the connection."""
        self.floor.errors += 1
        self.keep_alive = False
        self.queue.clear()
        if self.upstream is None:
            self._write_whole(status, _error_body(message), b"application/json")
        self.transport.close()


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Pending:
    """Stands for the upstream connection of a request still connecting."""

    closed = True

    def abandon(self) -> None:
        pass


_PENDING: Upstream = _Pending()  # type: ignore[assignment]


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream, one request at a time."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.loop = floor.loop
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: Client | None = None
        self.closed = False
        self.data = b""
        self.reused = False
        self.got_bytes = False
        self.idle_since = 0.0
        self.last_rx = 0.0
        self._paused = False
        self._status = 0
        self._ctype = b""
        self._stream = False
        self._head_out = False
        self._keep_alive = True
        self._complete = False
        self._parts: list[bytes] = []
        self._size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.floor.upstreams.add(self)

    def send(self, data: bytes, client: Client, reused: bool) -> None:
        self.client = client
        client.upstream = self
        self.data = data
        self.reused = reused
        self.got_bytes = False
        self.idle_since = 0.0
        self.last_rx = self.loop.time()
        self._status = 0
        self._ctype = b""
        self._stream = False
        self._head_out = False
        self._keep_alive = True
        self._complete = False
        self._parts = []
        self._size = 0
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:  # bytes on an idle connection: drop it
            self.close()
            return
        self.got_bytes = True
        self.last_rx = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(502, f"malformed HTTP reply from the upstream: {exc}")
            return
        if self._size > MAX_RESPONSE_BYTES:
            self.fail(502, f"upstream reply over {MAX_RESPONSE_BYTES} bytes")
            return
        if self._stream:
            # Everything this read brought leaves as one chunk.
            parts = self._parts
            chunk = b""
            if parts:
                body = parts[0] if len(parts) == 1 else b"".join(parts)
                parts.clear()
                chunk = b"%x\r\n%b\r\n" % (len(body), body)
            if not self._head_out:
                self._head_out = True
                if not self._complete:
                    client.stream_start(chunk)
                    return
                chunk = STREAM_HEAD + chunk
            if self._complete:
                self._finish()
                client.stream_end(chunk)
            elif chunk:
                client.stream_data(chunk)
        elif self._complete:
            parts = self._parts
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            status, ctype = self._status, self._ctype or b"application/json"
            self._finish()
            client.reply(status, body, ctype)

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self.last_rx = self.loop.time()  # waiting on a slow client is not silence
            self.transport.resume_reading()

    def _finish(self) -> None:
        self.client = None
        self._parts = []
        self.resume()  # a pause was for that client's sake only
        if self._keep_alive:
            self.floor.release(self)
        else:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.floor.upstreams.discard(self)
        client = self.client
        self.client = None
        self.parser = None  # type: ignore[assignment]
        if client is None:
            return
        if not self.got_bytes and self.reused:
            client.upstream = _PENDING
            self.floor.forward(self.data, client, fresh=True)
        else:
            client.upstream_failed(502, "the upstream closed the connection mid-reply",
                                   started=self._head_out)

    def fail(self, status: int, message: str) -> None:
        client = self.client
        self.client = None
        self.close()
        if client is not None:
            client.upstream_failed(status, message, started=self._head_out)

    def abandon(self) -> None:
        """The client went away: close without reading the rest."""
        self.client = None
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.floor.upstreams.discard(self)
            self.transport.abort()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 12 and name.lower() == b"content-type":
            self._ctype = value

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._keep_alive = self.parser.should_keep_alive()
        self._stream = self._status == 200 and self._ctype.startswith(b"text/event-stream")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        self._parts.append(body)

    def on_message_complete(self) -> None:
        self._complete = True


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_upstream(value: str) -> tuple[str, int]:
    u = urlsplit(value)
    if u.scheme != "http" or not u.hostname or u.path not in ("", "/"):
        raise argparse.ArgumentTypeError(
            f"expected http://HOST:PORT (the client's path is forwarded as is), got {value!r}")
    return u.hostname, u.port or 80


async def serve(listen: tuple[str, int], upstream: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    floor = Floor(loop, *upstream)
    server = await loop.create_server(lambda: Client(floor), *listen, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(SWEEP_S, floor.sweep)
    log.info("listening on http://%s:%d, upstream http://%s:%d", *listen, *upstream)
    await stop.wait()
    server.close()
    for c in list(floor.clients):
        c.transport.close()
    for up in list(floor.upstreams):
        up.close()
    log.info("stopped: %d requests, %d failed, usage read: %d input and %d output tokens",
             floor.requests, floor.errors, floor.input_tokens, floor.output_tokens)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=parse_listen, required=True, help="HOST:PORT")
    ap.add_argument("--upstream", type=parse_upstream, required=True,
                    help="http://HOST:PORT of the provider")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import uvloop

    try:
        uvloop.run(serve(args.listen, args.upstream))
    except OSError as exc:
        print(f"floor: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
