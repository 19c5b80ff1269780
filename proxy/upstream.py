"""Provider connections: HTTP/1.1 client protocol and a keep-alive pool.

The pool is keyed by the full peer identity (scheme, host, port, TLS settings),
pingora's same-peer rule: a connection is reused only for the exact peer and
TLS configuration it was opened with.

A request runs on callbacks, not a task per request: ``send`` writes the
request and the parser pushes the response into a *sink* (the exchange) as it
arrives — head, body chunks, end — so a streamed body reaches the client one
callback after it left the provider.  Timeouts (first byte, idle between
chunks) are deadlines checked by ``UpstreamPool.sweep`` on the server's
100 ms tick, not a timer per request (arming and cancelling a uvloop timer
costs about 1 us each, several times per request).

A provider with ``http2`` on is reached over HTTP/2 (``proxy.upstream_h2``):
the pool keeps one connection per peer, or a few once the provider's
SETTINGS_MAX_CONCURRENT_STREAMS is reached, and hands out *streams* on it,
which the exchange drives exactly like connections.  ``max_connections`` caps
the connections of either kind.  Requests that find no stream free while a
connection to the peer is being opened wait for that one instead of opening
their own: a burst of 50 goes out on one connection.

A request is retried once, transparently, only when it was sent on a reused
idle connection that turned out to be dead before any response byte came
back (the server closed it while it sat in our pool; RFC 9112 §9.3.1 allows
retrying such an idempotent-by-construction attempt).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import httptools

from .upstream_sink import Sink as Sink
from .upstream_sink import UpstreamError as UpstreamError
from .upstream_sink import overdue

log = logging.getLogger("tokenway.upstream")

# Connections kept idle per peer: as many as were in flight at a busy moment,
# or every request beyond the cap opens a new connection (at 256 concurrent
# requests a cap of 64 meant 36 new connections per 100 requests and twice the
# CPU per request).  Each idle socket + parser is ~10 KiB; IDLE_EXPIRY_S trims
# them once the burst is over.
MAX_IDLE_PER_PEER = 512
# Idle connections older than this are closed: most providers close idle
# keep-alive connections after 60-120 s; we drop ours first.
IDLE_EXPIRY_S = 55.0
# Cap on a non-streamed upstream body we buffer to read usage (providers'
# largest non-stream answers are a few MiB).
MAX_BUFFERED_RESPONSE_BYTES = 64 * 1024 * 1024

if TYPE_CHECKING:  # h2 is loaded with the first HTTP/2 provider (about 2 MiB)
    from typing_extensions import TypeIs

    from .upstream_h2 import H2Connection, H2Stream


def _is_h2(conn: object) -> TypeIs[H2Connection]:
    """An HTTP/2 connection (``upstream_h2.H2Connection.multiplexed``), told apart
    without importing h2 for gateways that never use it."""
    return getattr(conn, "multiplexed", False) is True


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to a provider, carrying one request at a time."""

    def __init__(self, pool: UpstreamPool, key: tuple, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.key = key
        self.loop = loop
        # None until connection_made; the pool hands out only connected connections.
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: Sink | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.got_bytes = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._status = 0
        self._keep_alive = True
        self._close_delimited = False
        self._sent_at = 0.0
        self._first_byte_s = 0.0
        self._idle_s = 0.0
        self._last_rx = 0.0
        self._paused = False
        self._closed_waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP (or TLS) stream

    def data_received(self, data: bytes) -> None:
        if self.sink is None:
            # Bytes on an idle connection: the server is misbehaving; drop it.
            self._shutdown()
            return
        self.got_bytes = True
        self._last_rx = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            raise
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("protocol", f"malformed HTTP response from provider: {exc}"))
            return
        sink = self.sink
        if sink is not None:
            # Everything that one socket read brought is out of the parser: the
            # sink may now write it to its client in one go.
            sink.on_upstream_read_done()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        sink = self.sink
        if sink is not None:
            if self._close_delimited and self._status:
                # The body was delimited by the close itself (RFC 9112 §6.3 rule 8).
                self.sink = None
                sink.on_upstream_end()
            elif not self.got_bytes and self.reused:
                self.sink = None
                sink.on_upstream_error(UpstreamError(
                    "reused_dead", "pooled connection was closed by the provider"))
            else:
                self.sink = None
                sink.on_upstream_error(UpstreamError(
                    "cut", "provider closed the connection mid-response"
                    + (f" ({exc})" if exc else "")))
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        # The parser holds this protocol for its callbacks: without this reference cycle
        # a closed connection is freed at once, not by the cycle collector.
        self.parser = None  # type: ignore[assignment]

    # request ----------------------------------------------------------------
    def send(self, data: bytes, sink: Sink, *, first_byte_s: float, idle_s: float) -> None:
        self.sink = sink
        self.got_bytes = False
        self._status = 0
        self._headers = []
        self._keep_alive = True
        self._close_delimited = False
        self._first_byte_s = first_byte_s
        self._idle_s = idle_s
        # Timeouts are checked by the pool's sweep (no timer per request).
        self._sent_at = self.loop.time()
        assert self.transport is not None
        self.transport.write(data)

    def send_attempt(self, att: Any, sink: Sink, *, first_byte_s: float,
                     idle_s: float) -> None:
        """Send the exchange's ``Attempt`` (its HTTP/1.1 bytes, ``att.data``)."""
        self.send(att.data, sink, first_byte_s=first_byte_s, idle_s=idle_s)

    def pause_reading(self) -> None:
        if not self._paused and not self.closed:
            self._paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and not self.closed:
            self._paused = False
            self._last_rx = self.loop.time()
            assert self.transport is not None
            self.transport.resume_reading()

    def abandon(self) -> None:
        """The client went away: close without reading the rest."""
        self.sink = None
        self._shutdown()

    # httptools callbacks -----------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        p = self.parser
        status = p.get_status_code()
        if 100 <= status < 200:
            # Interim responses (100 Continue, 103 Early Hints) are skipped;
            # llhttp resets for the final response.
            self._headers = []
            return
        self._status = status
        self._keep_alive = p.should_keep_alive()
        has_len = False
        for k, _ in self._headers:
            if k == b"content-length" or k == b"transfer-encoding":
                has_len = True
                break
        self._close_delimited = not has_len and status not in (204, 304)
        if self._close_delimited:
            self._keep_alive = False
        sink = self.sink
        if sink is not None:
            sink.on_upstream_head(status, self._headers)

    def on_body(self, body: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink.on_upstream_body(body)

    def on_message_complete(self) -> None:
        if not self._status:
            return
        sink = self.sink
        self.sink = None
        if self._paused:
            # The whole body is parsed; the pause was only for the client's sake.
            self._paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        if self._keep_alive:
            self.pool._release(self)
        else:
            self._shutdown()
        if sink is not None:
            sink.on_upstream_end()

    # timeouts (checked by UpstreamPool.sweep) ---------------------------------------------
    def check_timeouts(self, now: float) -> None:
        if self.sink is None or self.closed:
            return
        if self.got_bytes and self._paused:
            self._last_rx = now  # waiting on a slow client is not the provider's fault
            return
        exc = overdue(now, self.got_bytes, self._sent_at, self._last_rx, self._first_byte_s,
                      self._idle_s)
        if exc is not None:
            self._fail(exc)

    def _fail(self, exc: UpstreamError) -> None:
        sink = self.sink
        self.sink = None
        self._shutdown()
        if sink is not None:
            sink.on_upstream_error(exc)

    def _shutdown(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
            if self.transport is not None:
                self.transport.abort()


def _reusable(conn: UpstreamConnection) -> UpstreamConnection | None:
    """``conn``, marked as reused, if it is still open; else None."""
    if conn.closed or conn.transport is None or conn.transport.is_closing():
        return None
    conn.reused = True
    return conn


# ALPN offers (RFC 7301) for each ``[providers.X] http2`` mode.
_ALPN = {"off": ("http/1.1",), "on": ("h2",), "auto": ("h2", "http/1.1")}


class UpstreamPool:
    """Keep-alive pool of provider connections, keyed by peer identity.

    ``connect`` opens at most ``max_connections`` connections per peer (idle ones
    included, ``[providers.X] max_connections``): beyond that a request waits, in
    arrival order and within its connect timeout, for a connection to come back
    idle (or, over HTTP/2, a stream to end) or to close, then fails with
    ``pool_full``. A connection that comes back while requests wait is handed to
    the first of them, never left idle for a request that came later to take
    (``take_idle``): a woken waiter that lost that race went to the back of the
    queue, again and again while the pool stayed full.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._idle: dict[tuple, deque[UpstreamConnection]] = {}
        self._all: set[UpstreamConnection | H2Connection] = set()
        self._ssl: dict[tuple, ssl.SSLContext] = {}
        self._open: dict[tuple, int] = {}  # open or opening connections per peer
        # Requests waiting for a slot, per peer: each future gets the connection
        # handed over (``_release``) or None (a slot freed: open one, or an HTTP/2
        # stream ended: take one).
        self._waiters: dict[tuple, deque[asyncio.Future[UpstreamConnection | None]]] = {}
        # HTTP/2: the connections that take new streams, per peer, oldest first (new
        # streams fill the oldest, so a connection opened for a burst empties and
        # expires), and the one being opened, which other requests wait for.
        self._h2: dict[tuple, list[H2Connection]] = {}
        self._h2_opening: dict[tuple, asyncio.Future[UpstreamError | None]] = {}
        # http2 = "auto" peers whose last connection chose HTTP/1.1 by ALPN.
        self._h1_peers: set[tuple] = set()

    @staticmethod
    def key_for(provider: Any) -> tuple:
        return (provider.scheme, provider.host, provider.port,
                provider.ca_bundle, provider.verify_tls, provider.http2)

    def _speaks_h2(self, key: tuple) -> bool:
        return key[5] != "off" and key not in self._h1_peers

    def take_idle(self, key: tuple) -> UpstreamConnection | H2Stream | None:
        """An idle, still-open connection for ``key`` (over HTTP/2: a stream on an
        open connection with room), or None (no await needed)."""
        if self._speaks_h2(key):
            for h2 in self._h2.get(key, ()):
                if h2.capacity > 0:
                    return h2.open_stream()
            return None
        idle = self._idle.get(key)
        while idle:
            conn = _reusable(idle.pop())  # LIFO: the most recently used is the least likely dead
            if conn is not None:
                return conn
        return None

    async def connect(self, key: tuple, timeout_s: float,
                      max_connections: int = 1 << 30) -> UpstreamConnection | H2Stream:
        """A connection to ``key`` (over HTTP/2, a stream): an idle one that came
        back while waiting for a free slot, or a new one."""
        deadline = self.loop.time() + timeout_s
        while True:
            if self._speaks_h2(key):
                stream = self.take_idle(key)
                if stream is not None:
                    return stream
                opening = self._h2_opening.get(key)
                if opening is not None:
                    await self._wait_opening(key, opening, deadline)
                    continue
            if self._open.get(key, 0) < max_connections:
                break
            conn = await self._wait_for_slot(key, deadline, max_connections)
            if conn is not None:
                return conn
        self._open[key] = self._open.get(key, 0) + 1
        opened: asyncio.Future[UpstreamError | None] | None = None
        if self._speaks_h2(key):
            opened = self._h2_opening[key] = self.loop.create_future()
        failure: UpstreamError | None = None
        try:
            new = await self._open_connection(key, max(0.001, deadline - self.loop.time()))
        except UpstreamError as exc:
            failure = exc
            self._closed_one(key)
            raise
        except BaseException:
            self._closed_one(key)
            raise
        finally:
            if opened is not None:
                # Those waiting for it take a stream on it, or share its failure
                # (as many HTTP/1.1 connects would each have failed).
                del self._h2_opening[key]
                opened.set_result(failure)
        return new.open_stream() if _is_h2(new) else new

    async def _wait_opening(self, key: tuple, opening: asyncio.Future[UpstreamError | None],
                            deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                failure = await asyncio.shield(opening)
        except TimeoutError:
            raise UpstreamError("timeout", f"connecting to {key[1]}:{key[2]} timed out") from None
        if failure is not None:
            raise UpstreamError(failure.kind, failure.message)

    async def _wait_for_slot(self, key: tuple, deadline: float,
                             max_connections: int) -> UpstreamConnection | H2Stream | None:
        """Wait, in arrival order, until a connection to ``key`` is handed over
        (returned), a stream on one ends (a stream on it, or None), or one closes
        (None: a slot is free).  A turn that is not used (cancelled, or given as
        the deadline passed) goes to the next waiter, with its connection."""
        fut: asyncio.Future[UpstreamConnection | None] = self.loop.create_future()
        waiters = self._waiters.setdefault(key, deque())
        waiters.append(fut)
        used = False
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    handed = await fut
            except TimeoutError:
                if not (fut.done() and not fut.cancelled()):
                    raise UpstreamError(
                        "pool_full", f"all {max_connections} connections to {key[1]}:{key[2]} "
                                     f"are busy (max_connections); none came free in time"
                    ) from None
                handed = fut.result()  # given just as the deadline passed
            used = True
            if handed is not None:
                return _reusable(handed)  # None: it closed meanwhile, its slot is free
            return self.take_idle(key)
        finally:
            if not fut.done():
                fut.cancel()
            try:
                waiters.remove(fut)
            except ValueError:
                pass
            # Only this deque, if it is still the peer's: another may have taken its
            # place (this one emptied and dropped while we were woken), and dropping
            # that one left its waiters with no one to wake them: at c=256 over 100
            # connections, ~55 requests of each 60,000 waited out their 10 s and got
            # a 503 while the connections sat idle, and a SIGTERM waited for them.
            if not waiters and self._waiters.get(key) is waiters:
                del self._waiters[key]
            if not used and fut.done() and not fut.cancelled():
                handed = fut.result()
                if handed is not None:
                    self._release(handed)
                else:
                    self._wake(key)

    def _wake(self, key: tuple, conn: UpstreamConnection | None = None) -> bool:
        """A slot freed (``conn`` None) or ``conn`` came back: the first waiter gets
        it. False when no one waits."""
        waiters = self._waiters.get(key)
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return True
        return False

    def tls_context(self, key: tuple, alpn: tuple[str, ...] = ("http/1.1",)
                    ) -> ssl.SSLContext | None:
        """The client TLS context for the peer ``key`` (None: clear text), made
        once per peer and ALPN offer: verification with its CA bundle unless
        turned off.  Connections of their own (model lists, WebSocket) speak
        HTTP/1.1 whatever the provider's ``http2``."""
        scheme, _, _, ca_bundle, verify, _ = key
        if scheme != "https":
            return None
        ctx = self._ssl.get((key, alpn))
        if ctx is None:
            ctx = ssl.create_default_context(cafile=ca_bundle)
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(list(alpn))
            self._ssl[(key, alpn)] = ctx
        return ctx

    async def _open_connection(self, key: tuple,
                               timeout_s: float) -> UpstreamConnection | H2Connection:
        _, host, port, _, _, mode = key
        ctx = self.tls_context(key, _ALPN[mode])
        factory: Callable[[], UpstreamConnection | H2Connection]
        if mode == "off":
            factory = lambda: UpstreamConnection(self, key, self.loop)  # noqa: E731
        else:
            from .upstream_h2 import H2Connection  # only when a provider speaks HTTP/2

            h1 = (lambda: UpstreamConnection(self, key, self.loop)) if mode == "auto" else None
            factory = lambda: H2Connection(self, key, self.loop, h1)  # noqa: E731
        proto: Any = None
        try:
            async with asyncio.timeout(timeout_s):
                _, proto = await self.loop.create_connection(
                    factory, host, port, ssl=ctx, server_hostname=host if ctx else None)
                if _is_h2(proto) and not proto.closed:
                    # The provider's SETTINGS (RFC 9113 §3.4) say how many streams it
                    # takes: none is handed out before they are known.
                    await asyncio.shield(proto.ready)
        except TimeoutError:
            if _is_h2(proto):
                proto._shutdown()
            raise UpstreamError("timeout", f"connecting to {host}:{port} timed out after "
                                           f"{timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise UpstreamError("unreachable", f"TLS handshake with {host}:{port} failed: "
                                               f"{exc.reason or exc}") from None
        except OSError as exc:
            raise UpstreamError("unreachable", f"cannot connect to {host}:{port}: "
                                               f"{exc.strerror or exc}") from None
        conn = cast("UpstreamConnection | H2Connection", proto)
        if _is_h2(conn):
            proto = conn
            if isinstance(proto.replaced_by, UpstreamConnection):
                conn = proto.replaced_by  # "auto": the provider chose HTTP/1.1
                self._h1_peers.add(key)
            elif proto.refused_alpn:
                raise UpstreamError("unreachable", f"{host}:{port} does not speak HTTP/2 "
                                                   f"(ALPN: {proto.refused_alpn}); set "
                                                   f'http2 = "auto" or false')
            else:
                self._h1_peers.discard(key)
        if conn.closed:
            if _is_h2(conn):
                raise UpstreamError("unreachable", f"{host}:{port} closed the connection "
                                                   f"before its HTTP/2 SETTINGS"
                                                   f" ({conn.failure or 'no HTTP/2 there?'})")
            raise UpstreamError("unreachable", f"{host}:{port} closed the connection at once")
        self._all.add(conn)
        if _is_h2(conn):
            self._h2.setdefault(key, []).append(conn)
        return conn

    def _closed_one(self, key: tuple) -> None:
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)
        self._wake(key)

    def _release(self, conn: UpstreamConnection) -> None:
        """``conn`` finished its exchange and may carry another: to the first
        waiting request, else to the idle set."""
        if self._wake(conn.key, conn):
            return
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        if len(idle) >= MAX_IDLE_PER_PEER:
            conn._shutdown()
            return
        conn.idle_since = self.loop.time()
        idle.append(conn)

    def _stream_done(self, conn: H2Connection) -> None:
        """A stream on ``conn`` ended: room for a waiting request."""
        self._wake(conn.key)

    def _going_away(self, conn: H2Connection) -> None:
        """``conn`` takes no new stream (GOAWAY): later requests go elsewhere."""
        live = self._h2.get(conn.key)
        if live and conn in live:
            live.remove(conn)
            if not live:
                del self._h2[conn.key]

    def _forget(self, conn: UpstreamConnection | H2Connection) -> None:
        if conn not in self._all:
            return
        self._all.discard(conn)
        if _is_h2(conn):
            self._going_away(conn)
        else:
            idle = self._idle.get(conn.key)
            if idle:
                try:
                    idle.remove(conn)
                except ValueError:
                    pass
        self._closed_one(conn.key)

    def sweep(self, now: float) -> None:
        """Fire request timeouts and close idle connections past their expiry."""
        cutoff = now - IDLE_EXPIRY_S
        for conn in list(self._all):
            if _is_h2(conn):
                conn.sweep(now, cutoff)
            elif conn.sink is not None:
                conn.check_timeouts(now)
            elif conn.idle_since and conn.idle_since < cutoff:
                conn._shutdown()

    def stats(self) -> dict[str, int]:
        """Open connections (HTTP/2 ones included), idle ones (an HTTP/2 connection
        without streams is idle) and requests waiting for a slot."""
        idle = sum(len(d) for d in self._idle.values())
        idle += sum(1 for c in self._all if _is_h2(c) and not c.streams)
        return {"open": len(self._all), "idle": idle,
                "waiting": sum(len(w) for w in self._waiters.values())}

    def close(self) -> None:
        for conn in list(self._all):
            conn._shutdown()
        self._idle.clear()
        self._h2.clear()
