"""HTTP/1.1 server connections: one asyncio.Protocol over two parser backends.

``httptools`` (llhttp, C) is the fast path; ``h11`` is the strict, pure-Python
path.  Both feed the same three events into :class:`HTTPConnection`
(``_on_head``, ``_on_body``, ``_on_end``) and both are run by the same tests.
The connection itself handles what RFC 9112 asks of a server: keep-alive,
pipelined requests answered in order (§9.3.2), Content-Length and chunked
request bodies (§6), ``Expect: 100-continue`` (RFC 9110 §10.1.1), HEAD
(RFC 9110 §9.3.2), and named limits.

Response bytes are written by the backend too, so the strict backend also
checks what we send (h11 raises ``LocalProtocolError`` on a framing mistake).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httptools

from .errors import openai_error_body

if TYPE_CHECKING:
    import h11

    from .server import Server

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

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_REASONS[499] = b"Client Closed Request"
_REASONS[529] = b"Overloaded"

_HEADER_DATE = b""


def _refresh_date() -> None:
    global _HEADER_DATE
    _HEADER_DATE = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()


_refresh_date()


def start_date_clock(loop: asyncio.AbstractEventLoop) -> asyncio.TimerHandle:
    """Refresh the cached ``Date`` header once a second instead of per response."""

    def tick() -> None:
        _refresh_date()
        holder[0] = loop.call_later(1.0, tick)

    holder = [loop.call_later(1.0, tick)]
    return holder[0]


class HTTPError(Exception):
    """The request could not be parsed or breaks a limit: answer ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """One parsed request.  Header names are lower-case bytes, values raw bytes."""

    __slots__ = (
        "method", "target", "path", "query", "headers", "version", "keep_alive",
        "body", "started", "expect_continue", "_map",
    )

    def __init__(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                 version: str, keep_alive: bool, started: float) -> None:
        self.method = method
        self.target = target
        q = target.find(b"?")
        if q < 0:
            self.path = target.decode("latin-1")
            self.query = ""
        else:
            self.path = target[:q].decode("latin-1")
            self.query = target[q + 1:].decode("latin-1")
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.body = b""
        self.started = started
        self.expect_continue = False
        self._map: dict[bytes, bytes] | None = None

    def header(self, name: bytes) -> bytes | None:
        """Value of header ``name`` (lower-case); repeated headers are joined by ``, ``."""
        m = self._map
        if m is None:
            m = {}
            for k, v in self.headers:
                if k in m:
                    m[k] = m[k] + b", " + v
                else:
                    m[k] = v
            self._map = m
        return m.get(name)


def _keep_alive(version: str, connection: bytes | None) -> bool:
    if connection is not None:
        tokens = connection.lower()
        if b"close" in tokens:
            return False
        if version == "1.0":
            return b"keep-alive" in tokens
    return version != "1.0"


def raw_response_head(status: int, headers: list[tuple[bytes, bytes]],
                      content_length: int | None, keep_alive: bool) -> bytes:
    """Serialise a response head (RFC 9112 §4) without any state machine."""
    return b"HTTP/1.1 %d %s\r\n%s%s%sdate: %s\r\nserver: tokenway\r\n\r\n" % (
        status, _REASONS.get(status, b"Unknown"),
        b"".join([k + b": " + v + b"\r\n" for k, v in headers]),
        b"transfer-encoding: chunked\r\n" if content_length is None
        else b"content-length: %d\r\n" % content_length,
        b"" if keep_alive else b"connection: close\r\n",
        _HEADER_DATE)


# --------------------------------------------------------------------------
# Parser backends.  Each turns bytes into calls on the connection and turns
# our responses into bytes.


class HttptoolsBackend:
    """Fast path over llhttp.  Response bytes are assembled by hand."""

    name = "httptools"

    def __init__(self, conn: HTTPConnection) -> None:
        self.conn = conn
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0

    # httptools callbacks ------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.conn.max_header_bytes:
            raise HTTPError(431, "request header fields too large")
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        p = self.parser
        self.conn._on_head(
            p.get_method().decode("ascii"), self._url, self._headers,
            p.get_http_version(),
        )

    def on_body(self, body: bytes) -> None:
        self.conn._on_body(body)

    def on_message_complete(self) -> None:
        self.conn._on_end()

    # bytes in -------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, HTTPError):
                raise cause from None
            raise
        except httptools.HttpParserUpgrade:
            raise HTTPError(501, "protocol upgrade is not supported on this listener") from None
        except httptools.HttpParserError as exc:
            raise HTTPError(400, f"malformed HTTP request: {exc}") from None

    def pending_head_bytes(self) -> int:
        return self._head_bytes

    # bytes out ------------------------------------------------------------
    def informational_100(self) -> bytes:
        return b"HTTP/1.1 100 Continue\r\n\r\n"

    @staticmethod
    def response_head(status: int, headers: list[tuple[bytes, bytes]],
                      content_length: int | None, keep_alive: bool) -> bytes:
        return raw_response_head(status, headers, content_length, keep_alive)

    @staticmethod
    def full_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                      keep_alive: bool, head_only: bool) -> bytes:
        head = raw_response_head(status, headers, len(body), keep_alive)
        return head if head_only else head + body

    @staticmethod
    def chunk(data: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(data), data)

    @staticmethod
    def last_chunk() -> bytes:
        return b"0\r\n\r\n"

    def cycle_done(self) -> None:
        """Nothing to do: llhttp parses pipelined requests as they come."""

    def release(self) -> None:
        """The connection is gone: drop the references back to it and from the parser,
        so the connection is freed at once rather than by the cycle collector."""
        self.conn = None  # type: ignore[assignment]
        self.parser = None  # type: ignore[assignment]


class H11Backend:
    """Strict path over h11: every byte in and out goes through its state machine."""

    name = "h11"

    def __init__(self, conn: HTTPConnection) -> None:
        global h11
        import h11  # the strict backend is loaded only when configured

        self.conn = conn
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=conn.max_header_bytes)
        self._in_body = False

    def feed(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._drain()

    def _drain(self) -> None:
        c = self.h11
        conn = self.conn
        while True:
            try:
                ev = c.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                if status == 400 and "exceeded" in str(exc).lower():
                    status = 431
                raise HTTPError(status, f"malformed HTTP request: {exc}") from None
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return
            t = type(ev)
            if t is h11.Request:
                headers = list(ev.headers)
                # h11 bounds only *incomplete* heads; a whole head that
                # arrived at once is measured here, as llhttp's path does.
                size = len(ev.target) + sum(len(k) + len(v) + 4 for k, v in headers)
                if size > conn.max_header_bytes:
                    raise HTTPError(431, "request header fields too large")
                for k, _ in headers:
                    if k == b"upgrade":
                        raise HTTPError(501, "protocol upgrade is not supported on this listener")
                conn._on_head(ev.method.decode("ascii"), ev.target, headers,
                              ev.http_version.decode("ascii"))
            elif t is h11.Data:
                conn._on_body(bytes(ev.data))
            elif t is h11.EndOfMessage:
                conn._on_end()
            elif t is h11.ConnectionClosed:
                return

    def pending_head_bytes(self) -> int:
        return 0  # h11 enforces max_incomplete_event_size itself

    def informational_100(self) -> bytes:
        return self.h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""

    def response_head(self, status: int, headers: list[tuple[bytes, bytes]],
                      content_length: int | None, keep_alive: bool) -> bytes:
        hs = list(headers)
        if content_length is not None:
            hs.append((b"content-length", b"%d" % content_length))
        else:
            hs.append((b"transfer-encoding", b"chunked"))
        if not keep_alive:
            hs.append((b"connection", b"close"))
        hs.append((b"date", _HEADER_DATE))
        hs.append((b"server", b"tokenway"))
        return self.h11.send(h11.Response(status_code=status, headers=hs)) or b""

    def full_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                      keep_alive: bool, head_only: bool) -> bytes:
        out = self.response_head(status, headers, len(body), keep_alive)
        if body and not head_only:
            out += self.h11.send(h11.Data(data=body)) or b""
        return out + (self.h11.send(h11.EndOfMessage()) or b"")

    def chunk(self, data: bytes) -> bytes:
        return self.h11.send(h11.Data(data=data)) or b""

    def last_chunk(self) -> bytes:
        return self.h11.send(h11.EndOfMessage()) or b""

    def cycle_done(self) -> None:
        c = self.h11
        if c.our_state is h11.DONE and c.their_state is h11.DONE:
            c.start_next_cycle()
            self._drain()

    def release(self) -> None:
        """The connection is gone: drop the reference back to it (see HttptoolsBackend)."""
        self.conn = None  # type: ignore[assignment]


BACKENDS: dict[str, Callable[[HTTPConnection], Any]] = {
    "httptools": HttptoolsBackend,
    "h11": H11Backend,
}


# --------------------------------------------------------------------------


class HTTPConnection(asyncio.Protocol):
    """One client connection.  Requests are handled one at a time, in order.

    The handler (``server.app.handle``) answers through ``respond`` (whole
    body) or ``start_stream``/``write``/``end_stream`` (chunked).  While a
    stream is open, ``flow`` may hold an object with ``pause_writing``,
    ``resume_writing`` and ``client_gone`` so the exchange can pause the
    provider when this client reads slowly, and cancel when it leaves.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        cfg = server.config.server
        self.max_header_bytes: int = cfg.max_header_bytes
        self.max_body_bytes: int = cfg.max_body_bytes
        self.header_timeout_s: float = cfg.header_timeout_s
        self.keepalive_timeout_s: float = cfg.keepalive_timeout_s
        self.loop = server.loop
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
        self._streaming = False
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
        self.server.connections.add(self)
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
        self.server.connections.discard(self)
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
    def _on_head(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                 version: str) -> None:
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
        req = Request(method, target, headers, version, _keep_alive(version, conn_hdr),
                      self.loop.time())
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
        self._reading = req
        self._body_parts = []
        self._body_len = 0

    def _on_body(self, data: bytes) -> None:
        self._body_len += len(data)
        if self._body_len > self.max_body_bytes:
            raise HTTPError(413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
        self._body_parts.append(data)

    def _on_end(self) -> None:
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
            result = self.server.app.handle(req, self)
        except Exception:  # a handler bug must not kill the connection silently
            log.exception("handler failed")
            if self.current is req and not self._streaming:
                self.respond(500, openai_error_body(500, "internal error"))
            return
        if result is not None:
            self.task = self.server.spawn_request(result, self)

    def _response_done(self) -> None:
        self.current = None
        self.flow = None
        self.task = None
        self._streaming = False
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
        elif self.server.draining:
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
        if self.server.draining:
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
        self._streaming = True
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
                body = openai_error_body(status, message)
                self.server.app.record_rejected(self, status, message)
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
