"""HTTP/1.1 server connections: one asyncio.Protocol over two parser backends.

The backends (``proxy.h1_parsers``: httptools fast, h11 strict) turn bytes into
three calls here (``on_request_head``, ``on_request_body``, ``on_request_end``);
the connection handles what RFC 9112 asks of a server: keep-alive, pipelined
requests answered in order (§9.3.2), Content-Length and chunked request bodies
(§6), ``Expect: 100-continue`` (RFC 9110 §10.1.1), HEAD (RFC 9110 §9.3.2), and
named limits.

A connection knows nothing of what is above it: the server hands it a
``ConnectionHost`` (the listener's settings, the registry of connections, and
the dispatcher's ``handle`` and ``reject``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Protocol

from .h1_parsers import BACKENDS
from .wire import HTTPError, Request, keep_alive, raw_response_head

log = logging.getLogger("tokenway.h1")

# Write-buffer watermarks per client connection.  Above HIGH the exchange
# pauses reading from the provider (bounded memory per stream); asyncio's own
# default high-water mark is 64 KiB, we keep it.
WRITE_HIGH_WATER_BYTES = 64 * 1024
WRITE_LOW_WATER_BYTES = 16 * 1024
# Parsed-but-unanswered pipelined requests before we stop reading the socket
# (uvicorn pauses on the first one; a few in the queue keep pipelining fast).
MAX_PIPELINED_REQUESTS = 16

# What a connection's deadline means when it passes.
_IDLE = 0  # keep-alive idle: close quietly
_HEAD_READ = 1  # a request head is arriving too slowly: 408


class ListenerSettings(Protocol):
    """The limits a connection enforces (``proxy.config.ServerConfig``)."""

    parser: str
    max_header_bytes: int
    max_body_bytes: int
    header_timeout_s: float
    keepalive_timeout_s: float


class ConnectionHost(Protocol):
    """What a connection needs from the layers around it (the server builds it)."""

    loop: asyncio.AbstractEventLoop
    settings: ListenerSettings
    connections: set[Any]
    draining: bool

    def handle(self, req: Request, conn: HTTPConnection) -> None:
        """Answer ``req`` (now, or later through the connection's response API)."""

    def reject(self, conn: HTTPConnection, status: int, message: str,
               path: str | None) -> bytes:
        """A request broke framing or a limit: record it, return the error body."""


class HTTPConnection(asyncio.Protocol):
    """One client connection.  Requests are handled one at a time, in order.

    The host's ``handle`` answers through ``respond`` (whole
    body) or ``start_stream``/``write``/``end_stream`` (chunked).  While a
    stream is open, ``flow`` may hold an object with ``pause_writing``,
    ``resume_writing`` and ``client_gone`` so the exchange can pause the
    provider when this client reads slowly, and cancel when it leaves.
    """

    def __init__(self, host: ConnectionHost) -> None:
        self.host = host
        cfg = host.settings
        self.max_header_bytes: int = cfg.max_header_bytes
        self.max_body_bytes: int = cfg.max_body_bytes
        self.header_timeout_s: float = cfg.header_timeout_s
        self.keepalive_timeout_s: float = cfg.keepalive_timeout_s
        self.loop = host.loop
        self.backend = BACKENDS[cfg.parser](self)
        self.transport: asyncio.Transport | None = None
        self.client_addr = ""
        self.queue: deque[Request] = deque()
        self.current: Request | None = None  # the request being answered
        self.flow: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.closed = False
        self.write_paused = False
        self.read_paused = False
        self._reading: Request | None = None  # request whose body is arriving
        self._body_parts: list[bytes] = []
        self._body_len = 0
        # One deadline per connection, checked by the server's sweeper (see
        # Server.sweep): no timer object is created or cancelled per request.
        self.deadline = 0.0  # loop time; 0: none
        self.deadline_kind = _IDLE
        self._in_head = False
        self.streaming = False
        self._held_head = b""  # a response head waiting to leave with the first bytes
        self._head_only = False
        self._keep_alive = True

    # asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(WRITE_HIGH_WATER_BYTES, WRITE_LOW_WATER_BYTES)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_addr = f"{peer[0]}:{peer[1]}"
        self.host.connections.add(self)
        self.deadline = self.loop.time() + self.keepalive_timeout_s
        self.deadline_kind = _IDLE

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._reading is None and not self._in_head:
            self._in_head = True
            self.deadline = self.loop.time() + self.header_timeout_s
            self.deadline_kind = _HEAD_READ
        try:
            self.backend.feed(data)
            if self._in_head and self.backend.pending_head_bytes() > self.max_header_bytes:
                raise HTTPError(431, "request header fields too large")
        except HTTPError as exc:
            self._fail(exc.status, exc.message)

    def eof_received(self) -> bool | None:
        # Half-close from the client: finish what is queued, then close.
        if self.current is None and not self.queue:
            self._close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.host.connections.discard(self)
        self.deadline = 0.0
        flow = self.flow
        if flow is not None:
            self.flow = None
            flow.client_gone()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.queue.clear()
        self.backend.release()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.flow is not None:
            self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.flow is not None:
            self.flow.resume_writing()

    # parser events ---------------------------------------------------------------
    def on_request_head(self, method: str, target: bytes,
                        headers: list[tuple[bytes, bytes]], version: str) -> None:
        self._in_head = False
        self.deadline = 0.0
        conn_hdr = None
        clen = None
        expect = None
        for k, v in headers:
            if k == b"connection":
                conn_hdr = v if conn_hdr is None else conn_hdr + b"," + v
            elif k == b"content-length":
                clen = v
            elif k == b"expect":
                expect = v
        req = Request(method, target, headers, version, keep_alive(version, conn_hdr),
                      self.loop.time())
        self._reading = req
        self._body_parts = []
        self._body_len = 0
        if clen is not None:
            try:
                n = int(clen)
            except ValueError:
                raise HTTPError(400, "invalid Content-Length") from None
            if n > self.max_body_bytes:
                raise HTTPError(413, f"request body of {n} bytes exceeds the limit of "
                                     f"{self.max_body_bytes} bytes")
        if expect is not None:
            if expect.lower() != b"100-continue":
                raise HTTPError(417, "unsupported Expect header")
            req.expect_continue = True
            if self.current is None and not self.queue:
                self.transport.write(self.backend.informational_100())

    def on_request_body(self, data: bytes) -> None:
        self._body_len += len(data)
        if self._body_len > self.max_body_bytes:
            raise HTTPError(413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
        self._body_parts.append(data)

    def on_request_end(self) -> None:
        req = self._reading
        self._reading = None
        if req is None:
            return
        parts = self._body_parts
        req.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._body_parts = []
        if self.current is None:
            self._dispatch(req)
        else:
            self.queue.append(req)
            if len(self.queue) >= MAX_PIPELINED_REQUESTS and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()

    # request dispatch ------------------------------------------------------------
    def _dispatch(self, req: Request) -> None:
        self.current = req
        self._keep_alive = req.keep_alive
        self._head_only = req.method == "HEAD"
        try:
            self.host.handle(req, self)
        except Exception:
            # The dispatcher answers its handlers' failures itself, in the
            # client's protocol; reaching here is a bug in the dispatcher.
            log.exception("request dispatch failed")
            self.abort()

    def _response_done(self) -> None:
        self.current = None
        self.flow = None
        self.task = None
        self.streaming = False
        if not self._keep_alive:
            self._close()
            return
        if self.closed:
            return
        self.backend.cycle_done()
        if self.queue:
            req = self.queue.popleft()
            if self.read_paused and len(self.queue) < MAX_PIPELINED_REQUESTS // 2:
                self.read_paused = False
                self.transport.resume_reading()
            self._dispatch(req)
        elif self.host.draining:
            self._close()
        elif self._reading is None and not self._in_head:
            self.deadline = self.loop.time() + self.keepalive_timeout_s
            self.deadline_kind = _IDLE
        elif self._reading is not None and self._reading.expect_continue:
            self.transport.write(self.backend.informational_100())

    # response API used by handlers --------------------------------------------------
    def respond(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
                content_type: bytes = b"application/json") -> None:
        """Send a whole response and move on to the next request."""
        if self.closed:
            self._response_done()
            return
        hs = [(b"content-type", content_type)]
        if headers:
            hs.extend(headers)
        if self.host.draining:
            self._keep_alive = False
        self.transport.write(
            self.backend.full_response(status, hs, body, self._keep_alive, self._head_only))
        self._response_done()

    def start_stream(self, status: int, headers: list[tuple[bytes, bytes]],
                     *, hold: bool = False) -> None:
        """Start a chunked response; follow with ``write`` and ``end_stream``.

        ``hold`` keeps the head back until the next ``write``/``flush_head``/
        ``end_stream`` so that it leaves in the same write as the first bytes
        (the caller flushes within the same event-loop turn: no delay)."""
        self.streaming = True
        if self.closed:
            return
        head = self.backend.response_head(status, headers, None, self._keep_alive)
        if hold:
            self._held_head = head
        else:
            self.transport.write(head)

    def flush_head(self) -> None:
        head = self._held_head
        if head:
            self._held_head = b""
            if not self.closed:
                self.transport.write(head)

    def write(self, data: bytes) -> None:
        if data and not self.closed and not self._head_only:
            head = self._held_head
            if head:
                self._held_head = b""
                self.transport.write(head + self.backend.chunk(data))
            else:
                self.transport.write(self.backend.chunk(data))

    def end_stream(self, last: bytes = b"") -> None:
        """End the chunked response, ``last`` being its final bytes (one write)."""
        if not self.closed:
            out = self._held_head
            self._held_head = b""
            if last and not self._head_only:
                out += self.backend.chunk(last)
            if not self._head_only:
                out += self.backend.last_chunk()
            if out:
                self.transport.write(out)
        self._response_done()

    def abort(self) -> None:
        """Drop the connection without a clean ending (the client sees a cut)."""
        if self.transport is not None:
            self.transport.abort()

    # failure and timers ---------------------------------------------------------------
    def _fail(self, status: int, message: str) -> None:
        """Answer a framing or limit error and close: the byte stream cannot be trusted."""
        self._keep_alive = False
        self.queue.clear()
        if self.transport is not None and not self.closed:
            if self.current is None:
                reading = self._reading
                body = self.host.reject(self, status, message,
                                        reading.path if reading is not None else None)
                # Written without the backend: after a parse error h11 is in
                # its ERROR state and refuses to serialise anything.
                self.transport.write(raw_response_head(
                    status, [(b"content-type", b"application/json")], len(body), False) + body)
            self._close()

    def _close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def expire(self) -> None:
        """Called by the server's sweeper once ``deadline`` has passed."""
        self.deadline = 0.0
        if self.deadline_kind == _HEAD_READ:
            if self._in_head:
                self._fail(408, "timed out reading the request head")
        elif self.current is None and not self._in_head:
            self._close()

    def close_if_idle(self) -> bool:
        """Used by graceful shutdown: close now when nothing is in flight."""
        if self.current is None and not self.queue and self._reading is None:
            self._close()
            return True
        return False
