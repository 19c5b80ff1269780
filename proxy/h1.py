"""HTTP/1.1 server connections: one asyncio.Protocol over two parser backends.

The backends (``proxy.h1_parsers``: httptools fast, h11 strict) turn bytes into
three calls here (``on_request_head``, ``on_request_body``, ``on_request_end``);
the connection handles what RFC 9112 asks of a server: keep-alive, pipelined
requests answered in order (§9.3.2), Content-Length and chunked request bodies
(§6), ``Expect: 100-continue`` (RFC 9110 §10.1.1), HEAD (RFC 9110 §9.3.2).

Every byte from the client is untrusted (docs/request-path.md, "Limits"):

- the head is limited in raw bytes as they arrive, whatever the parser keeps;
- a request is admitted (endpoint known, gateway key valid) as soon as its
  head is complete, before any of its body is kept or ``100 Continue`` sent;
  the body of a refused request is read and thrown away, within limits;
- the body has an idle timeout and a whole-body deadline;
- reading stops whenever writing is paused (a client that does not read its
  answers gets no more served), and a client that reads nothing for
  ``send_timeout_s`` is disconnected;
- the server may hold reading on every connection (``hold_reading``) while the
  ledger catches up: requests in flight finish, new ones wait.

A connection knows nothing of what is above it: the server hands it a
``ConnectionHost`` (the listener's settings, the registry of connections, and
the dispatcher's ``admit``, ``handle`` and ``reject``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, cast

from .call import ClientConnection
from .h1_parsers import BACKENDS
from .wire import (
    HTTPError,
    Request,
    half_close,
    keep_alive,
    raw_response_head,
    reset,
    switching_protocols_head,
)

log = logging.getLogger("tokenway.h1")

# Write-buffer watermarks per client connection.  Above HIGH the exchange
# pauses reading from the provider and the connection stops reading requests
# (bounded memory per connection); asyncio's own default high-water mark is
# 64 KiB, we keep it.
WRITE_HIGH_WATER_BYTES = 64 * 1024
WRITE_LOW_WATER_BYTES = 16 * 1024
# Parsed-but-unanswered pipelined requests before we stop reading the socket
# (uvicorn pauses on the first one; a few in the queue keep pipelining fast).
MAX_PIPELINED_REQUESTS = 16

# The HTTP/2 connection preface (RFC 9113 §3.4): a client with prior knowledge of
# HTTP/2 opens a clear-text connection with it.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Why reading is paused; reading resumes when no reason is left.
_PIPELINE = 1  # MAX_PIPELINED_REQUESTS are waiting
_WRITE = 2  # the client is not reading what we write
_HELD = 4  # the server holds every connection (the ledger is behind)
_TUNNEL = 8  # a WebSocket's provider side cannot take more yet

# Request headers read at the head: what frames the request or the connection, the
# body's type and the client's request id (so the common path never builds a header map).
_FRAMING_HEADERS = frozenset({b"connection", b"content-length", b"transfer-encoding",
                              b"expect", b"upgrade", b"content-type", b"x-request-id"})

# The phase a connection's deadline belongs to.
_IDLE = 0  # keep-alive idle: close quietly
_HEAD = 1  # a request head is arriving too slowly: 408
_BODY = 2  # a request body is arriving too slowly: 408
_BUSY = 3  # a request is being answered: no phase deadline


class ListenerSettings(Protocol):
    """The limits a connection enforces (``proxy.config.ServerConfig``, a frozen dataclass:
    hence read-only members)."""

    @property
    def parser(self) -> str: ...
    @property
    def max_header_bytes(self) -> int: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def header_timeout_s(self) -> float: ...
    @property
    def body_timeout_s(self) -> float: ...
    @property
    def body_deadline_s(self) -> float: ...
    @property
    def send_timeout_s(self) -> float: ...
    @property
    def max_concurrent_streams(self) -> int: ...
    @property
    def keepalive_timeout_s(self) -> float: ...


class ConnectionHost(Protocol):
    """What a connection needs from the layers around it (the server builds it)."""

    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    draining: bool
    holding: bool

    @property
    def settings(self) -> ListenerSettings:
        """The listener's limits."""

    def admit(self, req: Request) -> None:
        """Decide, from the head alone, whether ``req`` may go on: sets
        ``req.rejection`` (an error to answer with) when it may not."""

    def handle(self, req: Request, conn: ClientConnection) -> None:
        """Answer ``req`` (now, or later through the connection's response API)."""

    def reject(self, conn: ClientConnection, status: int, message: str,
               path: str | None) -> bytes:
        """A request broke framing or a limit: record it, return the error body."""


class HTTPConnection(asyncio.Protocol):
    """One client connection.  Requests are handled one at a time, in order.

    The host's ``handle`` answers through ``respond`` (whole body) or
    ``start_stream``/``write``/``end_stream`` (chunked).  While a stream is open,
    ``flow`` may hold an object with ``pause_writing``, ``resume_writing``,
    ``client_gone`` and ``shutdown`` so the exchange can pause the provider when
    this client reads slowly, cancel when it leaves, and end the stream cleanly
    when the server stops.
    """

    def __init__(self, host: ConnectionHost,
                 admit: Callable[[Request], None] | None = None,
                 http2: Callable[[asyncio.Transport, bytes], None] | None = None) -> None:
        """``admit``: the listener's own head check (its endpoint set), else the
        host's.  ``http2``: serves the transport as HTTP/2 from then on (given the
        bytes read so far) when the client speaks it (ALPN ``h2``, or the preface)."""
        self.host = host
        self._http2 = http2
        # The first bytes are looked at for the HTTP/2 preface, once.
        self._sniffing = http2 is not None
        self._sniffed = b""
        cfg = host.settings
        self.settings = cfg
        self.max_header_bytes: int = cfg.max_header_bytes
        self.max_body_bytes: int = cfg.max_body_bytes
        self._admit = admit or host.admit
        # The body's first deadline: the sooner of its idle timeout and its deadline.
        self._first_body_timeout_s = min(cfg.body_timeout_s, cfg.body_deadline_s)
        self.loop = host.loop
        self.backend = BACKENDS[cfg.parser](self)
        # None until connection_made; everything that answers a request runs after it.
        self.transport: asyncio.Transport | None = None
        self.client_addr = ""
        self.queue: deque[Request] = deque()
        self.current: Request | None = None  # the request being answered
        self.flow: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.closed = False
        self.write_paused = False
        self.streaming = False
        self._blocks = 0  # reasons reading is paused (_PIPELINE | _WRITE | _HELD)
        self._stash: list[bytes] = []  # bytes that arrived while reading was paused
        self._reading: Request | None = None  # request whose body is arriving
        self._discarding = False  # its body is thrown away (the request was refused)
        self._body_parts: list[bytes] = []
        self._body_len = 0
        self._head_bytes = 0  # raw bytes of the head arriving now
        self._pipelined_bytes = 0  # raw bytes that came while a request was answered
        # Deadlines checked by the server's sweeper (Server.sweep), no timer
        # object created or cancelled per request: ``deadline`` ends the phase
        # (loop time, 0: none), ``stall_deadline`` a client not reading.
        self.deadline = 0.0
        self._phase = _IDLE
        self._body_started = 0.0
        self._body_last = 0.0  # loop time of the last body read
        self.stall_deadline = 0.0  # writing paused: the client must read by then
        self._held_head = b""  # a response head waiting to leave with the first bytes
        self._head_only = False
        self._keep_alive = True
        self._close_after_request = False  # a refused request's body is still arriving
        self._peer_eof = False  # the client half-closed: nothing more will come
        self._dispatching = False  # inside _dispatch: answers leave the next to its loop
        self._next_ready: Request | None = None
        # A WebSocket upgrade request was read: bytes after it are the client's
        # frames, kept (bounded) until ``take_over`` hands them to ``tunnel``.
        self._upgrading = False
        self._early: list[bytes] = []
        self.tunnel: Any = None

    # asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # a stream server's (TCP) transport
        if self._http2 is not None:
            tls = stream.get_extra_info("ssl_object")
            if tls is not None and tls.selected_alpn_protocol() == "h2":
                self._sniffing = False
                self._http2(stream, b"")
                return
        self.transport = stream
        stream.set_write_buffer_limits(WRITE_HIGH_WATER_BYTES, WRITE_LOW_WATER_BYTES)
        peer = stream.get_extra_info("peername")
        if peer:
            self.client_addr = f"{peer[0]}:{peer[1]}"
        self.host.connections.add(self)
        self._set_phase(_IDLE, self.settings.keepalive_timeout_s)
        if self.host.holding:
            self.hold_reading(True)

    def data_received(self, data: bytes) -> None:
        if self._sniffing:
            data = self._sniff(data)
            if not data:
                return
        if self.closed:
            return
        if self._upgrading:
            self.upgrade_bytes(data)
            return
        if self._blocks or self._stash:
            # Reading is paused, yet bytes came: uvloop starts reading after
            # connection_made even when it paused there.  Keep them (one read)
            # for when reading resumes, and pause again; bytes that come before
            # the kept ones are fed wait behind them, in order.
            self._stash.append(data)
            if self._blocks:
                assert self.transport is not None
                self.transport.pause_reading()
            return
        if self._reading is None:
            if self.current is None and not self.queue:
                if self._phase != _HEAD:
                    self._head_bytes = 0
                    self._set_phase(_HEAD, self.settings.header_timeout_s)
                # Counted in raw bytes as they arrive: one endless header line
                # holds nothing back from this count (llhttp reports a header
                # only once it is complete).
                self._head_bytes += len(data)
            else:
                # Pipelined behind a request being answered: no head timer yet,
                # but a bound (h11 keeps the next requests unparsed until the
                # current one is done).
                self._pipelined_bytes += len(data)
        try:
            self.backend.feed(data)
            if self._phase == _HEAD and self._head_bytes > self.max_header_bytes:
                raise HTTPError(431, "request header fields too large")
        except HTTPError as exc:
            self._fail(exc.status, exc.message)
            return
        if self._pipelined_bytes > self.max_header_bytes:
            self._block(_PIPELINE)

    def _sniff(self, data: bytes) -> bytes:
        """The connection's first bytes: the HTTP/2 preface hands the connection
        over (the bytes may come in pieces: up to 24 are kept while they match);
        anything else is HTTP/1.1, returned to be read as such."""
        if self._sniffed:
            data = self._sniffed + data
            self._sniffed = b""
        n = min(len(data), len(H2_PREFACE))
        if data[:n] != H2_PREFACE[:n]:
            self._sniffing = False
            return data
        if n < len(H2_PREFACE):
            self._sniffed = data
            return b""
        self._sniffing = False
        http2 = self._http2
        transport = self.transport
        assert http2 is not None and transport is not None
        # This HTTP/1.1 connection ends here, without closing its transport.
        self.closed = True
        self.transport = None
        self.deadline = 0.0
        self.host.connections.discard(self)
        self.backend.release()
        http2(transport, data)
        return b""

    def eof_received(self) -> bool | None:
        if self._upgrading:
            # A WebSocket ends with a close frame: a half-close is the client gone.
            self._close()
            return None
        # Half-close from the client: finish what is queued, then close.
        self._peer_eof = True
        if self.current is None and not self.queue:
            self._close()
        return half_close(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.host.connections.discard(self)
        self.deadline = 0.0
        flow = self.flow
        if flow is not None:
            self.flow = None
            flow.client_gone()
        self.tunnel = None  # a WebSocket relay refers back to this connection
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.queue.clear()
        self.backend.release()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._block(_WRITE)
        self.stall_deadline = self.loop.time() + self.settings.send_timeout_s
        if self.flow is not None:
            self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.stall_deadline = 0.0
        if self.flow is not None:
            self.flow.resume_writing()
        self._unblock(_WRITE)
        if self.current is None and self.queue and not self.closed:
            self._dispatch(self.queue.popleft())

    # reading on and off -------------------------------------------------------------
    def _block(self, reason: int) -> None:
        if not self._blocks and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._blocks |= reason

    def _unblock(self, reason: int) -> None:
        if not self._blocks & reason:
            return
        self._blocks &= ~reason
        if not self._blocks and self.transport is not None and not self.closed:
            self.transport.resume_reading()
            if self._stash:
                self.loop.call_soon(self._feed_stash)

    def _feed_stash(self) -> None:
        if self._blocks or self.closed:
            return  # paused again meanwhile: the next resume feeds them
        data = b"".join(self._stash)
        self._stash.clear()
        if data:
            self.data_received(data)

    def hold_reading(self, hold: bool) -> None:
        """The server stops (or restarts) taking new requests.  A request whose
        body is arriving is read to its end first, and no head or body timer runs
        against a client that we are not reading."""
        if hold:
            if self._reading is None:
                self._block(_HELD)
                if self._phase == _HEAD:
                    self._set_phase(_IDLE, 0.0)
        elif self._blocks & _HELD:
            self._unblock(_HELD)
            if self._phase == _IDLE and self.current is None:
                self._set_phase(_IDLE, self.settings.keepalive_timeout_s)

    # deadlines ----------------------------------------------------------------------
    def _set_phase(self, phase: int, timeout_s: float) -> None:
        self._set_phase_at(phase, self.loop.time() + timeout_s if timeout_s else 0.0)

    def _set_phase_at(self, phase: int, deadline: float) -> None:
        """``phase`` until the loop time ``deadline`` (0: none)."""
        self._phase = phase
        self.deadline = deadline

    def expire(self) -> None:
        """Called by the server's sweeper once a deadline has passed."""
        now = self.loop.time()
        if self.stall_deadline and self.stall_deadline <= now:
            rec = getattr(self.flow, "rec", None)
            log.info("client %s read nothing for %g s: disconnecting", self.client_addr,
                     self.settings.send_timeout_s,
                     extra=None if rec is None else {"request_id": rec.request_id})
            self.abort()
            return
        if not self.deadline or self.deadline > now:
            return
        phase = self._phase
        if phase == _BODY:
            s = self.settings
            due = min(self._body_last + s.body_timeout_s, self._body_started + s.body_deadline_s)
            if due > now:  # the body moved since: not yet
                self.deadline = due
                return
        self.deadline = 0.0
        if phase == _HEAD:
            self._fail(408, "timed out reading the request head")
        elif phase == _BODY:
            self._fail(408, "timed out reading the request body")
        elif phase == _IDLE and self.current is None:
            self._close()

    # parser events ---------------------------------------------------------------
    def on_request_head(self, method: str, target: bytes,
                        headers: list[tuple[bytes, bytes]], version: str) -> None:
        conn_hdr = None
        clen = None
        expect = None
        ctype = None
        request_id = None
        chunked = False
        upgrade = b""
        for k, v in headers:
            if k in _FRAMING_HEADERS:  # one set lookup for the headers that do not frame
                if k == b"connection":
                    conn_hdr = v if conn_hdr is None else conn_hdr + b"," + v
                elif k == b"content-length":
                    clen = v
                elif k == b"transfer-encoding":
                    chunked = True
                elif k == b"content-type":
                    ctype = v
                elif k == b"expect":
                    expect = v
                elif k == b"x-request-id":
                    request_id = v
                else:
                    upgrade = v or b"?"
        req = Request(method, target, headers, version, keep_alive(version, conn_hdr),
                      self.loop.time())
        req.content_type = ctype
        req.client_request_id = request_id
        self._reading = req
        self._pipelined_bytes = 0
        self._discarding = False
        self._body_parts = []
        self._body_len = 0
        if version != "1.1" and version != "1.0":
            # HTTP/1.x framing only (RFC 9110 §15.6.6). llhttp reads "HTTP/2.0" and
            # "HTTP/0.9" heads (and a bare 0.9 request line) as requests that end
            # the connection, h11 some as persistent ones: refused on both.
            raise HTTPError(505, f"HTTP/{version} is not supported here: use HTTP/1.1")
        if upgrade:
            if (method != "GET" or upgrade.strip().lower() != b"websocket" or chunked
                    or clen not in (None, b"0")):
                # Refused before anything is answered: one response, then close,
                # so a front proxy never sees a second one (RFC 9110 §7.8 lets us
                # ignore Upgrade, but llhttp stops parsing HTTP after it).
                raise HTTPError(501, "protocol upgrade is supported only to websocket, "
                                     "on a GET without a body")
            # Nothing after this request is HTTP: it ends the connection unless
            # its handler takes it over as a WebSocket.
            req.upgrade = True
            req.keep_alive = False
            self._upgrading = True
        elif method == "CONNECT":
            raise HTTPError(501, "CONNECT is not supported here")
        has_body = chunked
        if clen is not None:
            try:
                n = int(clen)
            except ValueError:
                raise HTTPError(400, "invalid Content-Length") from None
            has_body = has_body or n > 0
            if n > self.max_body_bytes:
                raise HTTPError(413, f"request body of {n} bytes exceeds the limit of "
                                     f"{self.max_body_bytes} bytes")
            if chunked:
                # RFC 9112 §6.1: a request with both may be an attack; the server
                # must close the connection after answering it.
                req.keep_alive = False
        self._admit(req)
        if req.rejection is not None:
            self._discarding = True
            if has_body:
                req.keep_alive = False
            if has_body and self.current is None and not self.queue:
                # Answered now, before the body is read: the client waiting on
                # `Expect: 100-continue` gets the final status instead (RFC 9110
                # §10.1.1), and the body that follows is thrown away.
                self._close_after_request = True
                self._dispatch(req)
        elif expect is not None:
            if expect.lower() != b"100-continue":
                raise HTTPError(417, "unsupported Expect header")
            req.expect_continue = True
            if self.current is None and not self.queue:
                assert self.transport is not None
                self.transport.write(self.backend.informational_100())
        if has_body:
            # The body's deadlines: the first one due; expire() works out the real
            # one from the last read (no deadline arithmetic per body chunk).
            now = self._body_started = self._body_last = self.loop.time()
            self._phase = _BODY
            self.deadline = now + self._first_body_timeout_s
        else:
            self._phase = _BUSY
            self.deadline = 0.0

    def on_request_body(self, data: bytes) -> None:
        self._body_len += len(data)
        if self._body_len > self.max_body_bytes:
            raise HTTPError(413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
        if not self._discarding:
            self._body_parts.append(data)
        self._body_last = self.loop.time()

    def on_request_end(self) -> None:
        req = self._reading
        self._reading = None
        if req is None:
            return
        parts = self._body_parts
        req.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._body_parts = []
        self._discarding = False
        if self._phase != _BUSY:
            self._phase = _BUSY
            self.deadline = 0.0
        if self._close_after_request:
            # A refused request answered at its head: its body is now read.
            self._close()
            return
        if self.current is None and not self.write_paused and not self._dispatching:
            self._dispatch(req)
        else:
            self.queue.append(req)
            if len(self.queue) >= MAX_PIPELINED_REQUESTS:
                self._block(_PIPELINE)
        if self.host.holding:
            self.hold_reading(True)

    # request dispatch ------------------------------------------------------------
    def _dispatch(self, req: Request) -> None:
        """Answer ``req``, then every request that is ready behind it.  A request
        answered at once (from memory) leaves the next one in ``_next_ready``
        instead of dispatching it from inside its own answer: a pipeline of
        thousands is a loop here, not a recursion."""
        self._dispatching = True
        try:
            next_req: Request | None = req
            while next_req is not None:
                self.current = next_req
                self._keep_alive = next_req.keep_alive
                self._head_only = next_req.method == "HEAD"
                try:
                    self.host.handle(next_req, self)
                except Exception:
                    # The dispatcher answers its handlers' failures itself, in the
                    # client's protocol; reaching here is a bug in the dispatcher.
                    log.exception("request dispatch failed")
                    self.abort()
                    return
                next_req = self._next_ready
                self._next_ready = None
        finally:
            self._dispatching = False

    def _response_done(self) -> None:
        self.current = None
        self.flow = None
        self.task = None
        self.streaming = False
        if self._close_after_request:
            return  # closed once the refused request's body has been read
        if not self._keep_alive:
            self._close()
            return
        if self.closed:
            return
        self._pipelined_bytes = 0
        if self._blocks & _PIPELINE and len(self.queue) < MAX_PIPELINED_REQUESTS // 2:
            self._unblock(_PIPELINE)
        try:
            self.backend.cycle_done()
        except HTTPError as exc:
            # h11 reads a pipelined request only now: one refused at its head is
            # answered here, as llhttp's refusal is in data_received.
            self._fail(exc.status, exc.message)
            return
        if self.current is not None:
            return  # cycle_done found the next request complete and dispatched it
        if self.queue:
            if not self.write_paused:
                nxt = self.queue.popleft()
                if self._dispatching:
                    self._next_ready = nxt  # _dispatch's loop takes it
                else:
                    self._dispatch(nxt)
        elif self.host.draining or self._peer_eof:
            self._close()
        elif self._reading is None and self._phase != _HEAD:
            self._set_phase(_IDLE, self.settings.keepalive_timeout_s)
        elif self._reading is not None and self._reading.expect_continue:
            assert self.transport is not None
            self.transport.write(self.backend.informational_100())

    # WebSocket ------------------------------------------------------------------------
    def upgrade_bytes(self, data: bytes) -> None:
        """Bytes after an upgrade request's head: the client's WebSocket frames."""
        if not data or self.closed:
            return
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        # A client waits for 101 before it sends frames (RFC 6455 §4.1); one that
        # does not is held to a head's worth.
        self._early.append(data)
        if sum(len(b) for b in self._early) > self.max_header_bytes:
            self.abort()

    def take_over(self, tunnel: Any, headers: list[tuple[bytes, bytes]]) -> bool:
        """Answer the upgrade request with 101 and give the connection to
        ``tunnel`` (``from_client(bytes)``, and the ``flow`` methods); False when
        this connection cannot (gone, or the request was no upgrade)."""
        req = self.current
        if self.closed or req is None or not req.upgrade:
            return False
        assert self.transport is not None
        self.transport.write(switching_protocols_head(
            [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"), *headers]))
        self.tunnel = tunnel
        self.flow = tunnel
        self.streaming = True
        self._set_phase(_BUSY, 0.0)
        early, self._early = self._early, []
        for data in early:
            tunnel.from_client(data)
        return True

    def pause_client(self, on: bool) -> None:
        """Stop (or restart) reading the client: its tunnel's other side is full."""
        if on:
            self._block(_TUNNEL)
        else:
            self._unblock(_TUNNEL)

    def send_raw(self, data: bytes) -> None:
        if not self.closed:
            assert self.transport is not None
            self.transport.write(data)

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
        assert self.transport is not None
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
            assert self.transport is not None
            self.transport.write(head)

    def flush_head(self) -> None:
        head = self._held_head
        if head:
            self._held_head = b""
            if not self.closed:
                assert self.transport is not None
                self.transport.write(head)

    def write(self, data: bytes) -> None:
        if data and not self.closed and not self._head_only:
            assert self.transport is not None
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
                assert self.transport is not None
                self.transport.write(out)
        self._response_done()

    def abort(self) -> None:
        """Drop the connection without a clean ending (``wire.reset``)."""
        reset(self.transport)

    # failure and closing ---------------------------------------------------------------
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
            self.deadline = 0.0
            self.transport.close()

    def close_now(self) -> None:
        """Close after the bytes already written (graceful shutdown's last step)."""
        self._keep_alive = False
        self._close()

    def close_if_idle(self) -> bool:
        """Used by graceful shutdown: close now when nothing is in flight."""
        if self.current is None and not self.queue and self._reading is None:
            self._close()
            return True
        return False
