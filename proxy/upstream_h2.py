"""HTTP/2 provider connections (RFC 9113): many requests multiplexed on one.

``H2Connection`` is the asyncio protocol of one connection over the sans-IO
``h2`` state machine (client side).  Each request is an ``H2Stream``, which
offers the exchange the interface of an HTTP/1.1 ``UpstreamConnection``:
``send_attempt``, ``pause_reading``/``resume_reading``, ``abandon``, and
timeouts checked by the pool's sweep on the server's 100 ms tick.

Flow control (RFC 9113 §5.2): received DATA is acknowledged (WINDOW_UPDATE) as
the exchange takes it, and not while the exchange has paused the stream for a
slow client: the provider may then send at most the stream's window (65,535
bytes, the default) more, so a slow client never makes the gateway buffer
without bound.  The connection's window is enlarged to 16 MiB so that streams
held that way (256 of them, each with its full window) do not stall the others.

Failures: a lost connection fails each stream still waiting for its head as
``unreachable`` (the exchange fails over, as for a refused connection) and
each stream mid-answer as ``cut`` (the client gets its protocol's error event).
A stream the provider never processed (above a GOAWAY's last stream id, or
reset with REFUSED_STREAM: RFC 9113 §8.7) fails as ``reused_dead``, which the
exchange sends again once on another connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, Protocol, cast

from h2.config import H2Configuration
from h2.connection import ConnectionState
from h2.connection import H2Connection as H2State
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error, TooManyStreamsError
from h2.settings import SettingCodes, Settings

from .upstream_sink import Sink, UpstreamError, overdue

# Connection-level receive window (RFC 9113 §6.9.2): 256 paused streams' full
# 64 KiB windows before the connection itself stalls.
CONNECTION_WINDOW = 16 * 1024 * 1024
# Streams we open on one connection at most, below the provider's
# SETTINGS_MAX_CONCURRENT_STREAMS (unbounded until its SETTINGS arrive; OpenAI-
# and Google-fronting servers announce 100-256).
MAX_STREAMS_PER_CONNECTION = 256
# A response head larger than this is refused (SETTINGS_MAX_HEADER_LIST_SIZE).
MAX_HEADER_LIST_BYTES = 64 * 1024
# Stream ids are 31 bits and never reused (RFC 9113 §5.1.1): a connection this
# far along takes no new stream and closes once its streams are done.
LAST_STREAM_ID = (1 << 31) - 1024

# Connection-specific fields may not appear in HTTP/2 (RFC 9113 §8.2.2); host
# becomes :authority and content-length is set here from the payload.
_NOT_IN_H2 = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
    b"host", b"content-length",
})

# Outbound headers are built here (request_headers: lower-case names, values
# from parsed HTTP/1.1 requests and the configuration, connection-specific ones
# left out), so h2's per-header checks and normalising are skipped for them
# (about a third of a request's HTTP/2 cost); inbound ones, the provider's, are
# checked.
_CONFIG = H2Configuration(client_side=True, header_encoding=None,
                          validate_outbound_headers=False,
                          normalize_outbound_headers=False)


class _ClientState(H2State):
    """h2's client state machine, kept open after a GOAWAY: h2 closes it at once,
    but the provider may still complete the streams at or below the GOAWAY's last
    stream id (RFC 9113 §6.8), whose frames must be read; no new stream is sent."""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        out = super()._receive_goaway_frame(frame)
        self.state_machine.state = ConnectionState.CLIENT_OPEN
        return out


class Outgoing(Protocol):
    """The request as the exchange's ``Attempt`` holds it."""

    provider: Any  # scheme, host_header
    path: bytes
    headers: bytes  # header lines, each `name: value\r\n`
    payload: bytes


class Owner(Protocol):
    """The pool, as its HTTP/2 connections see it."""

    def _forget(self, conn: H2Connection) -> None: ...
    def _stream_done(self, conn: H2Connection) -> None: ...
    def _going_away(self, conn: H2Connection) -> None: ...


def request_headers(att: Outgoing) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 header list of ``att``: pseudo-headers first (RFC 9113 §8.3.1),
    then its header lines, lower-cased, without connection-specific ones."""
    p = att.provider
    out = [(b":method", b"POST"), (b":scheme", p.scheme.encode()),
           (b":authority", p.host_header), (b":path", att.path)]
    for line in att.headers.split(b"\r\n"):
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name in _NOT_IN_H2 or name == b"te" and value != b"trailers":
            continue
        out.append((name, value))
    out.append((b"content-length", b"%d" % len(att.payload)))
    return out


class H2Stream:
    """One request on an HTTP/2 connection, from hand-out to its end."""

    __slots__ = ("conn", "id", "sink", "body", "sent", "got_bytes", "paused", "held",
                 "reused", "rx_at_send", "done", "_sent_at", "_first_byte_s", "_idle_s",
                 "_last_rx")

    def __init__(self, conn: H2Connection, reused: bool) -> None:
        self.conn = conn
        self.id = 0  # given when the headers go out: ids must rise in sending order
        self.sink: Sink | None = None
        self.body = b""  # payload not yet sent (waiting for flow-control window)
        self.sent = 0
        self.got_bytes = False
        self.paused = False
        self.held = 0  # received bytes not acknowledged while paused
        self.reused = reused
        self.rx_at_send = 0
        self.done = False  # ended, failed or abandoned: its place is free again
        self._sent_at = 0.0
        self._first_byte_s = 0.0
        self._idle_s = 0.0
        self._last_rx = 0.0

    def send_attempt(self, att: Outgoing, sink: Sink, *, first_byte_s: float,
                     idle_s: float) -> None:
        self.sink = sink
        self._first_byte_s = first_byte_s
        self._idle_s = idle_s
        self._sent_at = self._last_rx = self.conn.loop.time()
        self.conn._start(self, att)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            self._last_rx = self.conn.loop.time()
            if self.held:
                held, self.held = self.held, 0
                self.conn._ack(self, held)
                self.conn._flush_soon()

    def abandon(self) -> None:
        """The client went away: RST_STREAM CANCEL, the provider stops generating."""
        self.sink = None
        self.conn._end(self, ErrorCodes.CANCEL)

    # events from the connection -------------------------------------------------------
    def _on_head(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.got_bytes = True
        status = 0
        out = []
        for k, v in headers:
            if k == b":status":
                status = int(v) if v.isdigit() and len(v) == 3 else 0
            elif k[:1] != b":":
                out.append((k, v))
        sink = self.sink
        if not status:
            self._fail(UpstreamError("protocol", "provider sent an HTTP/2 response "
                                                 "without a valid :status"))
        elif sink is not None:
            sink.on_upstream_head(status, out)

    def _on_data(self, data: bytes, size: int) -> None:
        self.got_bytes = True
        sink = self.sink
        if sink is None or not self.paused:
            self.conn._ack(self, size)
        else:
            self.held += size  # acknowledged on resume_reading: the window closes
        if sink is not None and data:
            sink.on_upstream_body(data)

    def _on_end(self) -> None:
        sink = self.sink
        self.sink = None
        self.conn._end(self, None)
        if sink is not None:
            sink.on_upstream_end()

    def _on_reset(self, code: int) -> None:
        if code == ErrorCodes.REFUSED_STREAM and not self.got_bytes:
            exc = UpstreamError("reused_dead", "provider refused the HTTP/2 stream "
                                               "(REFUSED_STREAM) before processing it")
        elif self.got_bytes:
            exc = UpstreamError("cut", f"provider reset the HTTP/2 stream mid-response "
                                       f"({_code_name(code)})")
        else:
            exc = UpstreamError("protocol", f"provider reset the HTTP/2 stream "
                                            f"({_code_name(code)})")
        self._fail(exc, reset=False)

    def _fail(self, exc: UpstreamError, reset: bool = True) -> None:
        sink = self.sink
        self.sink = None
        self.conn._end(self, ErrorCodes.CANCEL if reset else None)
        if sink is not None:
            sink.on_upstream_error(exc)

    # timeouts (checked by UpstreamPool.sweep) --------------------------------------------
    def check_timeouts(self, now: float) -> None:
        if self.sink is None:
            return
        if self.got_bytes and self.paused:
            self._last_rx = now  # waiting on a slow client is not the provider's fault
            return
        exc = overdue(now, self.got_bytes, self._sent_at, self._last_rx, self._first_byte_s,
                      self._idle_s)
        if exc is not None:
            self._fail(exc)


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection to a provider, carrying up to ``capacity`` streams.

    ``fallback`` (http2 = "auto") makes the HTTP/1.1 protocol that takes the
    transport over when the provider's ALPN choice is not h2; without it, an
    https provider that does not choose h2 is refused.
    """

    multiplexed = True  # what upstream._is_h2 looks for

    def __init__(self, pool: Owner, key: tuple, loop: asyncio.AbstractEventLoop,
                 fallback: Callable[[], asyncio.Protocol] | None = None) -> None:
        self.pool = pool
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.h2 = _ClientState(config=_CONFIG)
        self.streams: dict[int, H2Stream] = {}
        self.reserved = 0  # streams handed out, headers not yet sent
        self.closed = False
        self.going_away = False
        self.fallback = fallback
        self.replaced_by: asyncio.Protocol | None = None  # the HTTP/1.1 protocol, if any
        self.refused_alpn = ""  # what an https provider chose instead of h2
        self.failure = ""  # why the provider's bytes were not HTTP/2, if they were not
        self.idle_since = loop.time()
        self.rx = 0  # reads so far: a stream lost with none since it was sent never got out
        self.used = False
        self.flush_due = False  # a _flush is scheduled for the end of this loop turn
        # Done once the provider's first SETTINGS came (or the connection went).
        self.ready: asyncio.Future[None] = loop.create_future()

    # asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)
        tls = cast("ssl.SSLObject | None", t.get_extra_info("ssl_object"))
        chosen = tls.selected_alpn_protocol() if tls is not None else "h2"
        if chosen != "h2":
            if self.fallback is not None:
                # http2 = "auto" and the provider chose HTTP/1.1 (RFC 7301 §3.2).
                proto = self.fallback()
                t.set_protocol(proto)
                proto.connection_made(t)
                self.replaced_by = proto
            else:
                self.refused_alpn = chosen or "no ALPN"
                t.abort()
            self.closed = True
            return
        self.transport = t
        h2 = self.h2
        h2.local_settings = Settings(client=True, initial_values={
            SettingCodes.ENABLE_PUSH: 0,
            SettingCodes.MAX_CONCURRENT_STREAMS: 0,  # the provider may open none
            SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_BYTES,
        })
        h2.initiate_connection()
        h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        t.write(h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        self.rx += 1
        now = self.loop.time()
        try:
            events = self.h2.receive_data(data)
        except H2Error as exc:
            self.failure = f"provider broke HTTP/2: {exc}"
            self._lose(UpstreamError("protocol", self.failure))
            return
        touched: list[H2Stream] = []
        streams = self.streams
        for ev in events:
            if isinstance(ev, DataReceived):
                s = streams.get(ev.stream_id or 0)
                size = ev.flow_controlled_length or 0
                if s is not None:
                    s._last_rx = now
                    s._on_data(ev.data or b"", size)
                    touched.append(s)
                elif size:
                    # A stream we ended already: hand its bytes back to the connection.
                    self.h2.acknowledge_received_data(size, ev.stream_id or 0)
            elif isinstance(ev, ResponseReceived):
                s = streams.get(ev.stream_id or 0)
                if s is not None:
                    s._last_rx = now
                    s._on_head(cast(list[tuple[bytes, bytes]], ev.headers or []))
                    touched.append(s)
            elif isinstance(ev, StreamEnded):
                s = streams.get(ev.stream_id or 0)
                if s is not None:
                    s._on_end()
            elif isinstance(ev, StreamReset):
                s = streams.get(ev.stream_id or 0)
                if s is not None:
                    s._on_reset(int(ev.error_code or 0))
            elif isinstance(ev, InformationalResponseReceived):
                # 1xx (103 Early Hints) is skipped; it still counts as the first byte.
                s = streams.get(ev.stream_id or 0)
                if s is not None:
                    s.got_bytes = True
                    s._last_rx = now
            elif isinstance(ev, WindowUpdated):
                if ev.stream_id:
                    s = streams.get(ev.stream_id)
                    if s is not None and s.body:
                        self._pump(s)
                else:
                    self._pump_all()
            elif isinstance(ev, RemoteSettingsChanged):
                if not self.ready.done():
                    self.ready.set_result(None)
                changed = ev.changed_settings
                if SettingCodes.INITIAL_WINDOW_SIZE in changed:
                    self._pump_all()
                if SettingCodes.MAX_CONCURRENT_STREAMS in changed:
                    self.pool._stream_done(self)  # room may have grown: wake a waiter
            elif isinstance(ev, ConnectionTerminated):
                self._on_goaway(ev)
        for s in touched:
            sink = s.sink
            if sink is not None:
                # Everything this read brought for the stream is out: the sink may
                # write it to its client in one go.
                sink.on_upstream_read_done()
        self._flush()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
        if self.replaced_by is not None or self.transport is None:
            return
        self.closed = True
        self.pool._forget(self)
        streams = list(self.streams.values())
        self.streams.clear()
        why = f" ({exc})" if exc else ""
        for s in streams:
            sink = s.sink
            s.sink = None
            s.done = True
            if sink is None:
                continue
            if not s.got_bytes and s.reused and s.rx_at_send == self.rx:
                err = UpstreamError("reused_dead", "pooled HTTP/2 connection was closed "
                                                   "by the provider")
            elif not s.got_bytes:
                err = UpstreamError("unreachable", "connection to the provider was lost "
                                                   "before it answered" + why)
            else:
                err = UpstreamError("cut", "provider closed the HTTP/2 connection "
                                           "mid-response" + why)
            sink.on_upstream_error(err)

    # streams --------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """Streams that may still be handed out on this connection."""
        if self.closed or self.going_away:
            return 0
        limit = min(self.h2.remote_settings.max_concurrent_streams, MAX_STREAMS_PER_CONNECTION)
        return limit - len(self.streams) - self.reserved

    def open_stream(self) -> H2Stream:
        """Reserve a stream (the caller checked ``capacity``)."""
        # Sent on a connection that sat idle in the pool: if nothing at all comes
        # back before it is lost, it was dead already (as for HTTP/1.1).
        reused = self.used and not self.streams and not self.reserved
        self.reserved += 1
        self.used = True
        return H2Stream(self, reused)

    def _start(self, s: H2Stream, att: Outgoing) -> None:
        self.reserved -= 1
        h2 = self.h2
        if self.closed or self.going_away:
            # Lost (or told to go away) between hand-out and send: never sent.
            self._later_error(s, UpstreamError("reused_dead", "HTTP/2 connection closed "
                                                              "before the request went out"))
            return
        sid = h2.get_next_available_stream_id()
        try:
            h2.send_headers(sid, request_headers(att), end_stream=not att.payload)
        except TooManyStreamsError:
            # The provider lowered SETTINGS_MAX_CONCURRENT_STREAMS after the hand-out.
            self._later_error(s, UpstreamError("reused_dead", "provider's HTTP/2 stream "
                                                              "limit was reached"))
            return
        except H2Error as exc:
            self._later_error(s, UpstreamError("protocol", f"request cannot be sent over "
                                                           f"HTTP/2: {exc}"))
            return
        s.id = sid
        s.rx_at_send = self.rx
        self.streams[sid] = s
        if sid >= LAST_STREAM_ID:
            self._stop_new_streams()
        if att.payload:
            s.body = att.payload
            self._pump(s)
        self._flush_soon()

    def _later_error(self, s: H2Stream, exc: UpstreamError) -> None:
        """Report a failure on the loop's next turn: never from inside send."""
        sink = s.sink
        s.sink = None
        s.done = True
        self._released()
        if sink is not None:
            self.loop.call_soon(sink.on_upstream_error, exc)

    def _pump(self, s: H2Stream) -> None:
        """Send as much of the payload as the provider's windows allow."""
        h2 = self.h2
        body = s.body
        pos = s.sent
        n = len(body)
        try:
            while pos < n:
                window = h2.local_flow_control_window(s.id)
                if window <= 0:
                    break
                end = pos + min(window, h2.max_outbound_frame_size, n - pos)
                h2.send_data(s.id, body[pos:end], end_stream=end == n)
                pos = end
        except H2Error:
            pos = n  # the provider closed or reset the stream: nothing more to send
        s.sent = pos
        if pos >= n:
            s.body = b""

    def _pump_all(self) -> None:
        for s in list(self.streams.values()):
            if s.body:
                self._pump(s)

    def _ack(self, s: H2Stream, size: int) -> None:
        """Hand ``size`` received bytes back to the provider's windows (sent with
        the next flush, batched by h2 to half a window)."""
        if size and not self.closed:
            self.h2.acknowledge_received_data(size, s.id)

    def _end(self, s: H2Stream, reset: ErrorCodes | None) -> None:
        """Stream ``s`` is over (ended, failed or abandoned): free its place."""
        if s.done:
            return
        s.done = True
        if not s.id:
            # Handed out but never sent (the client left while connecting).
            self.reserved -= 1
            self._released()
            return
        if self.streams.pop(s.id, None) is None:
            return
        if not self.closed:
            if reset is not None:
                try:
                    self.h2.reset_stream(s.id, reset)
                except H2Error:
                    pass  # already closed on the provider's side
            if s.held:
                held, s.held = s.held, 0
                self.h2.acknowledge_received_data(held, s.id)
            self._flush_soon()
        self._released()

    def _released(self) -> None:
        if not self.streams and not self.reserved:
            self.idle_since = self.loop.time()
            if self.going_away:
                self._close()
                return
        self.pool._stream_done(self)

    # connection-level -----------------------------------------------------------------
    def _on_goaway(self, ev: ConnectionTerminated) -> None:
        """GOAWAY (RFC 9113 §6.8): streams above its last id were not processed and
        may go elsewhere; those at or below it may still complete."""
        last = ev.last_stream_id if ev.last_stream_id is not None else (1 << 31)
        self._stop_new_streams()
        # h2 closes its state machine on GOAWAY; the streams the provider still
        # serves need their frames read, so it is reopened (no new stream is sent).
        self.h2.state_machine.state = ConnectionState.CLIENT_OPEN
        for sid in [sid for sid in self.streams if sid > last]:
            s = self.streams.pop(sid)
            sink = s.sink
            s.sink = None
            s.done = True
            if sink is not None:
                sink.on_upstream_error(UpstreamError(
                    "reused_dead", "provider is closing the HTTP/2 connection (GOAWAY) "
                                   "and did not process this request"))
        if not self.streams and not self.reserved:
            self._close()

    def _stop_new_streams(self) -> None:
        if not self.going_away:
            self.going_away = True
            self.pool._going_away(self)

    def _lose(self, exc: UpstreamError) -> None:
        """The provider broke the protocol: every stream fails, the connection goes."""
        streams = list(self.streams.values())
        self.streams.clear()
        self._flush()  # h2's GOAWAY for the error, if it made one
        self._shutdown()
        for s in streams:
            sink = s.sink
            s.sink = None
            s.done = True
            if sink is not None:
                sink.on_upstream_error(exc)

    def sweep(self, now: float, idle_cutoff: float) -> None:
        for s in list(self.streams.values()):
            s.check_timeouts(now)
        if not self.streams and not self.reserved and self.idle_since < idle_cutoff:
            self._close()

    def _close(self) -> None:
        """Close gracefully: GOAWAY, then the socket once it is written."""
        if self.closed:
            return
        try:
            self.h2.close_connection()
        except H2Error:
            pass
        self._flush()
        self.closed = True
        self.pool._forget(self)
        if self.transport is not None:
            self.transport.close()

    def _shutdown(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
            if self.transport is not None:
                self.transport.abort()

    def _flush(self) -> None:
        self.flush_due = False
        out = self.h2.data_to_send()
        if out and self.transport is not None and not self.closed:
            self.transport.write(out)

    def _flush_soon(self) -> None:
        """Write what h2 has to send at the end of this loop turn: the requests that
        clients sent in one turn leave in one write (a write per request cost
        three times a request's CPU at 64 concurrent requests)."""
        if not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self._flush)


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"error {code}"
