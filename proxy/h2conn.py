"""HTTP/2 server connections (RFC 9113) over the ``h2`` library's sans-IO state machine.

A connection becomes HTTP/2 in one of two ways (docs/request-path.md, "HTTP/2"):
on a clear-text listener the client opens with the 24-byte connection preface
(prior knowledge, RFC 9113 §3.3), which the HTTP/1.1 connection sees as its first
bytes and hands over with the transport (``take_over``); over TLS, ALPN chose
``h2`` (RFC 9113 §3.2) before the HTTP/1.1 connection read anything.

Each stream is an ordinary request: its head is admitted before its body (endpoint
set, key), its body is bounded by ``max_body_bytes`` and the body timeouts, and it
is answered through ``H2Stream``, the stream's ``ClientConnection`` (proxy/call.py),
with the same error bodies and SSE framing as HTTP/1.1.

Flow control is the backpressure: a stream's answer leaves as the client's window
(RFC 9113 §6.9) allows; what cannot leave yet waits on the stream up to
``STREAM_HIGH_WATER_BYTES``, beyond which the stream's ``flow`` is paused (the
exchange stops reading that provider answer) until WINDOW_UPDATE frames make room.
A stream that gets no room for ``send_timeout_s`` is reset.  Request bodies are
acknowledged (WINDOW_UPDATE) as they are read into the request.

Limits against known HTTP/2 attacks: SETTINGS_MAX_CONCURRENT_STREAMS, the header
list bounded by ``max_header_bytes`` (HPACK bombs, CVE-2016-6581), at most h2's 64
CONTINUATION frames per header block (CVE-2024-27316 class), client resets counted
per time window (rapid reset, CVE-2023-44487), PING and SETTINGS frames counted the
same way (CVE-2019-9512/9515), and no reading while the client leaves our answers
unread, so control-frame acknowledgements cannot pile up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from . import hpack_out
from .h1 import WRITE_HIGH_WATER_BYTES, WRITE_LOW_WATER_BYTES, ConnectionHost
from .wire import Request, date_header, half_close, reset

log = logging.getLogger("tokenway.h2")

# The client connection preface (RFC 9113 §3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# SETTINGS_MAX_FRAME_SIZE: the protocol's initial and smallest value (RFC 9113 §6.5.2).
MAX_FRAME_BYTES = 16384
# SETTINGS_INITIAL_WINDOW_SIZE for request bodies, and the connection's window: a
# 32 MiB body does not wait a round trip per 64 KiB; each body stays bounded by
# max_body_bytes whatever the window.
STREAM_WINDOW_BYTES = 1024 * 1024
CONNECTION_WINDOW_BYTES = 8 * 1024 * 1024
# Bytes of one stream's answer kept while the client's window is closed; above the
# high mark its flow pauses, below the low one it resumes (the HTTP/1.1 marks).
# Request body bytes a connection holds for streams whose bodies are still arriving are
# bounded by max_body_bytes (one whole body): beyond it DATA is no longer acknowledged,
# so the client's windows close (at most the 8 MiB connection window more arrives) until
# a body completes or fails.  HTTP/1.1 holds one body per connection; without this an
# HTTP/2 connection could hold one per stream.
STREAM_HIGH_WATER_BYTES = WRITE_HIGH_WATER_BYTES
STREAM_LOW_WATER_BYTES = WRITE_LOW_WATER_BYTES
# Rapid reset (CVE-2023-44487): more client RST_STREAMs than this within the window
# ends the connection with ENHANCE_YOUR_CALM.  A client cancelling agent turns sends
# a few per minute; the attack sends thousands per second.
MAX_RESETS_PER_WINDOW = 200
# PING and SETTINGS frames (each makes us write an acknowledgement) in the same window.
MAX_CONTROL_FRAMES_PER_WINDOW = 1000
ABUSE_WINDOW_S = 10.0

_STATUS = {n: b"%d" % n for n in range(100, 600)}
_SERVER = (b"server", b"tokenway")


def _response_headers(status: int, headers: list[tuple[bytes, bytes]],
                      length: int | None) -> list[tuple[bytes, bytes]]:
    """The answer's header list, pseudo-header first; hpack_out.py writes it from the
    static table alone (no field enters the peer's dynamic table)."""
    out = [(b":status", _STATUS.get(status) or b"%d" % status)]
    out += headers
    if length is not None:
        out.append((b"content-length", b"%d" % length))
    out.append((b"date", date_header()))
    out.append(_SERVER)
    return out


class _Counter:
    """Events in a fixed time window: ``hit`` says whether the limit was passed."""

    __slots__ = ("limit", "count", "since")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.since = 0.0

    def hit(self, now: float) -> bool:
        if now - self.since > ABUSE_WINDOW_S:
            self.since = now
            self.count = 0
        self.count += 1
        return self.count > self.limit


class H2Stream:
    """One request stream: the ``ClientConnection`` its call answers through."""

    __slots__ = (
        "conn", "sid", "client_addr", "closed", "streaming", "write_paused", "flow", "task",
        "req", "parts", "body_len", "discarding", "dispatched", "pending", "pending_bytes",
        "ending", "ended", "head_only", "deadline", "stall_deadline", "body_started",
        "body_last", "remote_done",
    )

    def __init__(self, conn: HTTP2Connection, sid: int) -> None:
        self.conn = conn
        self.sid = sid
        self.client_addr = conn.client_addr
        self.closed = False  # reset, or the connection is gone: nothing more is sent
        self.streaming = False
        self.write_paused = False
        self.flow: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.req: Request | None = None
        self.parts: list[bytes] = []
        self.body_len = 0
        self.discarding = False  # the request was answered at its head: body ignored
        self.dispatched = False
        self.pending: deque[bytes] = deque()  # answer bytes waiting for window
        self.pending_bytes = 0
        self.ending = False  # END_STREAM goes with the last pending byte
        self.ended = False  # END_STREAM was handed to h2
        self.head_only = False
        self.deadline = 0.0  # the request body's next deadline (loop time, 0: none)
        self.stall_deadline = 0.0  # window closed: the client must make room by then
        self.body_started = 0.0
        self.body_last = 0.0
        self.remote_done = False  # the client's END_STREAM came

    # -- ClientConnection ------------------------------------------------------------
    def respond(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
                content_type: bytes = b"application/json") -> None:
        self._answered()
        if self.closed:
            return
        hs = [(b"content-type", content_type)]
        if headers:
            hs.extend(headers)
        hs = _response_headers(status, hs, len(body))
        conn = self.conn
        if self.head_only or not body:
            conn.h2.send_headers(self.sid, hs, end_stream=True)
            self.ended = True
            conn.stream_sent(self)
        else:
            conn.h2.send_headers(self.sid, hs)
            self.ending = True
            self._queue(body)
        conn.want_flush()

    def start_stream(self, status: int, headers: list[tuple[bytes, bytes]],
                     *, hold: bool = False) -> None:
        # ``hold`` needs nothing here: frames leave once per loop turn (want_flush),
        # so the head goes out with the first bytes written in the same turn.
        self.streaming = True
        if self.closed:
            return
        self.conn.h2.send_headers(self.sid, _response_headers(status, headers, None))
        self.conn.want_flush()

    def flush_head(self) -> None:
        """The head is already with the connection's next write (see start_stream)."""

    def write(self, data: bytes) -> None:
        if data and not self.closed and not self.head_only:
            self._queue(data)
            self.conn.want_flush()

    def end_stream(self, last: bytes = b"") -> None:
        self._answered()
        if self.closed:
            return
        self.ending = True
        if last and not self.head_only:
            self._queue(last)
        else:
            self.conn.pump(self)
        self.conn.want_flush()

    def abort(self) -> None:
        """Cut this stream (RST_STREAM INTERNAL_ERROR): the client sees the answer end
        without its end; the connection's other streams go on.  The flow hears of it
        on the next loop turn, as an HTTP/1.1 flow hears of a cut connection."""
        if not self.closed:
            self.conn.reset(self, ErrorCodes.INTERNAL_ERROR)
            self.conn.loop.call_soon(self.gone)

    # -- inside --------------------------------------------------------------------------
    def _answered(self) -> None:
        self.flow = None
        self.task = None

    def _queue(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_bytes += len(data)
        self.conn.pump(self)
        if self.pending_bytes > STREAM_HIGH_WATER_BYTES and not self.write_paused \
                and not self.closed:
            self.write_paused = True
            self.stall_deadline = self.conn.arm(self.conn.send_timeout_s)
            flow = self.flow
            if flow is not None:
                flow.pause_writing()

    def gone(self) -> None:
        """The client reset the stream or left: the provider request is cancelled
        (the flow records the row as ``cancelled``)."""
        self.closed = True
        self.pending.clear()
        self.pending_bytes = 0
        flow = self.flow
        if flow is not None:
            self.flow = None
            flow.client_gone()
        task = self.task
        if task is not None and not task.done():
            task.cancel()


class HTTP2Connection(asyncio.Protocol):
    """One HTTP/2 client connection and its streams.  To the server it looks like
    an HTTP/1.1 connection: deadlines for the sweeper, ``hold_reading``,
    ``close_if_idle`` for the drain, ``flow``/``close_now``/``abort`` at its end."""

    def __init__(self, host: ConnectionHost, admit: Callable[[Request], None] | None,
                 max_streams: int) -> None:
        self.host = host
        cfg = host.settings
        self.settings = cfg
        self.loop = host.loop
        self._admit = admit or host.admit
        self.max_body_bytes: int = cfg.max_body_bytes
        self.send_timeout_s: float = cfg.send_timeout_s
        self.transport: asyncio.Transport | None = None
        self.client_addr = ""
        self.closed = False
        self.streams: dict[int, H2Stream] = {}
        self.waiting: deque[H2Stream] = deque()  # complete requests held by the server
        self.deadline = 0.0  # the earliest of the streams' and the idle deadline
        self.stall_deadline = 0.0  # our answers are not read: drop the client by then
        self._idle_deadline = 0.0
        self._transport_paused = False
        self._read_paused = False
        self._flush_queued = False
        self._in_events = False
        self._goaway_sent = False
        self._peer_done = False  # GOAWAY or EOF from the client: no new streams
        self._body_bytes = 0  # bytes of request bodies still arriving, all streams
        self._held_acks: list[tuple[int, int]] = []  # (stream, bytes) not acknowledged yet
        self._resets = _Counter(MAX_RESETS_PER_WINDOW)
        self._control = _Counter(MAX_CONTROL_FRAMES_PER_WINDOW)
        config = H2Configuration(client_side=False, header_encoding=None,
                                 validate_outbound_headers=False,
                                 normalize_outbound_headers=False)
        h2 = H2Connection(config)
        # Applied at once and sent in the first SETTINGS frame (initiate_connection).
        h2.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: cfg.max_header_bytes,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW_BYTES,
            SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_BYTES,
            SettingCodes.ENABLE_PUSH: 0,
        })
        # h2 reads the decoder's bound only from acknowledged settings: set it now, so
        # the first header blocks are held to it too (RFC 7541 §4.1 sizes).
        h2.decoder.max_header_list_size = cfg.max_header_bytes
        h2.max_inbound_frame_size = MAX_FRAME_BYTES
        # Response heads from the static table alone, values as plain literals
        # (hpack_out.py: a fifth of the h2 library's CPU per request was its encoder).
        hpack_out.install(h2.encoder)
        self.h2 = h2

    # -- taking the connection over --------------------------------------------------------
    def take_over(self, transport: asyncio.Transport, data: bytes) -> None:
        """Become the protocol of ``transport`` (an HTTP/1.1 connection's, before it
        answered anything); ``data``: the bytes already read from it."""
        transport.set_protocol(self)
        self.connection_made(transport)
        if data:
            self.data_received(data)

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        self.transport = stream
        stream.set_write_buffer_limits(WRITE_HIGH_WATER_BYTES, WRITE_LOW_WATER_BYTES)
        peer = stream.get_extra_info("peername")
        if peer:
            self.client_addr = f"{peer[0]}:{peer[1]}"
        self.host.connections.add(self)
        h2 = self.h2
        h2.initiate_connection()
        h2.increment_flow_control_window(CONNECTION_WINDOW_BYTES - 65535)
        self._set_idle()
        self._flush()
        # The HTTP/1.1 side may have paused reading (server holding): HTTP/2 keeps
        # reading, for the window updates of streams in flight, and holds requests.
        stream.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:
            code = getattr(exc, "error_code", None) or ErrorCodes.PROTOCOL_ERROR
            log.info("HTTP/2 client %s broke the protocol: %s", self.client_addr, exc)
            self._end(code)
            return
        self._in_events = True
        try:
            for ev in events:
                t = type(ev)
                if t is DataReceived:
                    self._on_data(cast(DataReceived, ev))
                elif t is StreamEnded:
                    self._on_end(cast(StreamEnded, ev).stream_id)
                elif t is RequestReceived:
                    self._on_request(cast(RequestReceived, ev))
                elif t is WindowUpdated:
                    sid = cast(WindowUpdated, ev).stream_id
                    if sid:
                        st = self.streams.get(sid)
                        if st is not None and st.pending:
                            self.pump(st)
                    else:
                        self._pump_all()
                elif t is StreamReset:
                    self._on_reset(cast(StreamReset, ev).stream_id)
                elif t is PingReceived or t is RemoteSettingsChanged:
                    if self._control.hit(self.loop.time()):
                        log.warning("HTTP/2 client %s sent over %d PING/SETTINGS frames in "
                                    "%g s: closing", self.client_addr,
                                    MAX_CONTROL_FRAMES_PER_WINDOW, ABUSE_WINDOW_S)
                        self._end(ErrorCodes.ENHANCE_YOUR_CALM)
                        return
                    if t is RemoteSettingsChanged:
                        self._pump_all()  # the initial window may have grown
                elif t is ConnectionTerminated:
                    self._peer_done = True
                if self.closed:
                    return
        finally:
            self._in_events = False
        self._flush()
        if self._peer_done and not self.streams:
            self._close()

    def eof_received(self) -> bool | None:
        self._peer_done = True
        if not self.streams:
            self._close()
        return half_close(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.host.connections.discard(self)
        self.deadline = 0.0
        streams = list(self.streams.values())
        self.streams.clear()
        self.waiting.clear()
        for st in streams:
            st.gone()

    def pause_writing(self) -> None:
        # The client reads none of what we send: stop handing stream data to the
        # transport (streams then pause their flows) and stop reading, so the
        # acknowledgements its frames ask for cannot pile up either.
        self._transport_paused = True
        self.stall_deadline = self.loop.time() + self.send_timeout_s
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._transport_paused = False
        self.stall_deadline = 0.0
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self._pump_all()
            self._flush()

    # -- requests -----------------------------------------------------------------------------
    def _on_request(self, ev: RequestReceived) -> None:
        sid = ev.stream_id
        if self._goaway_sent or self.closed:
            # After our GOAWAY (RFC 9113 §6.8): not processed, safe to retry (§8.7).
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        method = target = b""
        ctype = request_id = clen = None
        headers: list[tuple[bytes, bytes]] = []
        for k, v in ev.headers:
            if k[:1] == b":":
                if k == b":method":
                    method = v
                elif k == b":path":
                    target = v
                elif k == b":authority":
                    headers.append((b"host", v))
                continue
            if k == b"content-type":
                ctype = v
            elif k == b"content-length":
                clen = v
            elif k == b"x-request-id":
                request_id = v
            headers.append((k, v))
        st = H2Stream(self, sid)
        self.streams[sid] = st
        self._idle_deadline = 0.0
        now = self.loop.time()
        req = Request(method.decode("latin-1"), target, headers, "2", True, now)
        req.content_type = ctype
        req.client_request_id = request_id
        st.req = req
        st.head_only = method == b"HEAD"
        has_body = ev.stream_ended is None
        st.remote_done = not has_body  # its StreamEnded event follows, in this batch
        if method == b"CONNECT" or not target:
            # CONNECT (RFC 9113 §8.5) tunnels nothing here; h2 checked the other
            # pseudo-headers (§8.3.1).
            self._fail(st, 501, "protocol upgrade and CONNECT are not supported here")
            return
        if clen is not None and clen.isdigit() and int(clen) > self.max_body_bytes:
            self._fail(st, 413, f"request body of {int(clen)} bytes exceeds the limit of "
                                f"{self.max_body_bytes} bytes")
            return
        self._admit(req)
        if req.rejection is not None:
            # Answered at its head (or when the server stops holding requests); a
            # body on its way is read and thrown away.
            st.discarding = True
            if self.host.holding:
                self.waiting.append(st)
            else:
                self._dispatch(st)
            return
        if has_body:
            st.body_started = st.body_last = now
            st.deadline = now + min(self.settings.body_timeout_s, self.settings.body_deadline_s)
            self._note_deadline(st.deadline)

    def _on_data(self, ev: DataReceived) -> None:
        sid = ev.stream_id
        st = self.streams.get(sid)
        held = False
        if st is not None and not st.discarding and not st.remote_done:
            data = ev.data
            st.body_len += len(data)
            self._body_bytes += len(data)
            if st.body_len > self.max_body_bytes:
                self._fail(st, 413, f"request body exceeds the limit of "
                                    f"{self.max_body_bytes} bytes")
            else:
                st.parts.append(data)
                st.body_last = self.loop.time()
                held = self._body_bytes > self.max_body_bytes
        n = ev.flow_controlled_length
        if n and not self.closed:
            if held:
                self._held_acks.append((sid, n))
            else:
                # Read into the request (or thrown away): the client may send more.
                self.h2.acknowledge_received_data(n, sid)

    def _body_over(self, st: H2Stream) -> None:
        """``st``'s body is complete, refused or cut: it no longer counts against the
        connection's bound, and DATA held back is acknowledged while under it."""
        self._body_bytes -= st.body_len
        st.body_len = 0
        held = self._held_acks
        while held and self._body_bytes <= self.max_body_bytes and not self.closed:
            sid, n = held.pop(0)
            self.h2.acknowledge_received_data(n, sid)
        self.want_flush()

    def _on_end(self, sid: int) -> None:
        st = self.streams.get(sid)
        if st is None:
            return
        st.remote_done = True
        st.deadline = 0.0
        if st.body_len:
            self._body_over(st)
        if st.discarding or st.dispatched:
            if st.ended:  # answered at its head, and the answer is out
                self.streams.pop(sid, None)
                self._stream_closed()
            return
        req = st.req
        assert req is not None
        parts = st.parts
        req.body = parts[0] if len(parts) == 1 else b"".join(parts)
        st.parts = []
        if self.host.holding:
            self.waiting.append(st)
        else:
            self._dispatch(st)

    def _dispatch(self, st: H2Stream) -> None:
        st.dispatched = True
        req = st.req
        assert req is not None
        try:
            self.host.handle(req, st)
        except Exception:
            # The dispatcher answers its handlers' failures itself; this is its bug.
            log.exception("request dispatch failed")
            st.abort()

    def _on_reset(self, sid: int) -> None:
        st = self.streams.pop(sid, None)
        if st is not None:
            if st.body_len:
                self._body_over(st)
            if st in self.waiting:
                self.waiting.remove(st)
            st.gone()
            self._stream_closed()
        if self._resets.hit(self.loop.time()):
            log.warning("HTTP/2 client %s reset over %d streams in %g s: closing",
                        self.client_addr, MAX_RESETS_PER_WINDOW, ABUSE_WINDOW_S)
            self._end(ErrorCodes.ENHANCE_YOUR_CALM)

    def _fail(self, st: H2Stream, status: int, message: str) -> None:
        """A stream broke a limit or timed out: its error (recorded as on HTTP/1.1),
        then RST_STREAM NO_ERROR if its body is still coming (RFC 9113 §8.1)."""
        req = st.req
        st.discarding = True
        st.deadline = 0.0
        st.parts = []
        if st.body_len:
            self._body_over(st)
        body = self.host.reject(st, status, message, req.path if req is not None else None)
        st.respond(status, body)  # stream_sent resets it once the answer is out

    # -- sending --------------------------------------------------------------------------------
    def pump(self, st: H2Stream) -> None:
        """Hand ``st``'s waiting bytes to h2 as far as the windows allow; END_STREAM
        with the last of them once the answer is complete."""
        if self._transport_paused or st.closed or st.ended:
            return
        h2 = self.h2
        sid = st.sid
        pending = st.pending
        sent = False
        while pending:
            room = h2.local_flow_control_window(sid)
            if room <= 0:
                break
            chunk = pending[0]
            frame = h2.max_outbound_frame_size
            n = min(room, frame)
            if len(chunk) <= n:
                pending.popleft()
                st.pending_bytes -= len(chunk)
                h2.send_data(sid, chunk, end_stream=st.ending and not pending)
            else:
                pending[0] = chunk[n:]
                st.pending_bytes -= n
                h2.send_data(sid, chunk[:n])
            sent = True
        if st.ending and not pending and not st.ended:
            if not sent:
                h2.end_stream(sid)
            st.ended = True
            self.stream_sent(st)
            return
        if st.write_paused:
            if st.pending_bytes <= STREAM_LOW_WATER_BYTES:
                st.write_paused = False
                st.stall_deadline = 0.0
                flow = st.flow
                if flow is not None:
                    flow.resume_writing()
            elif sent:
                st.stall_deadline = self.arm(self.send_timeout_s)

    def _pump_all(self) -> None:
        for st in list(self.streams.values()):
            if st.pending or st.ending:
                self.pump(st)

    def stream_sent(self, st: H2Stream) -> None:
        """``st``'s answer is with h2 to its last byte: the stream is over once the
        request is too; a request body still coming is refused (RFC 9113 §8.1)."""
        if st.remote_done:
            if self.streams.pop(st.sid, None) is not None:
                self._stream_closed()
        elif st.discarding:
            self.reset(st, ErrorCodes.NO_ERROR)

    def reset(self, st: H2Stream, code: ErrorCodes) -> None:
        if not st.closed and not self.closed:
            try:
                self.h2.reset_stream(st.sid, code)
            except ProtocolError:
                pass  # h2 counts the stream closed already
        st.closed = True
        st.pending.clear()
        st.pending_bytes = 0
        if st.body_len and not st.remote_done:
            self._body_over(st)
        if self.streams.pop(st.sid, None) is not None:
            self._stream_closed()
        self.want_flush()

    def _stream_closed(self) -> None:
        if not self.streams:
            if self._goaway_sent or self._peer_done:
                self.loop.call_soon(self._close_when_idle)
            else:
                self._set_idle()

    def want_flush(self) -> None:
        """Frames leave once per loop turn: the streams answered in one turn share
        one write."""
        if not self._in_events and not self._flush_queued and not self.closed:
            self._flush_queued = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_queued = False
        if self.closed or self.transport is None:
            return
        out = self.h2.data_to_send()
        if out:
            self.transport.write(out)

    # -- deadlines ---------------------------------------------------------------------------------
    def arm(self, timeout_s: float) -> float:
        """A stream's deadline ``timeout_s`` from now, noted for the sweeper."""
        due = self.loop.time() + timeout_s
        self._note_deadline(due)
        return due

    def _note_deadline(self, due: float) -> None:
        if not self.deadline or due < self.deadline:
            self.deadline = due

    def _set_idle(self) -> None:
        self._idle_deadline = self.loop.time() + self.settings.keepalive_timeout_s
        self._note_deadline(self._idle_deadline)

    def expire(self) -> None:
        """Called by the server's sweeper once a deadline has passed."""
        now = self.loop.time()
        if self.stall_deadline and self.stall_deadline <= now:
            log.info("HTTP/2 client %s read nothing for %g s: disconnecting",
                     self.client_addr, self.send_timeout_s)
            self.abort()
            return
        if self._idle_deadline and self._idle_deadline <= now and not self.streams:
            self._end(ErrorCodes.NO_ERROR)
            return
        cfg = self.settings
        nxt = self._idle_deadline
        for st in list(self.streams.values()):
            if st.deadline:
                due = min(st.body_last + cfg.body_timeout_s,
                          st.body_started + cfg.body_deadline_s)
                if due <= now:
                    self._fail(st, 408, "timed out reading the request body")
                    continue
                st.deadline = due
                nxt = due if not nxt else min(nxt, due)
            if st.stall_deadline:
                if st.stall_deadline <= now:
                    log.info("HTTP/2 client %s made no room on stream %d for %g s: "
                             "resetting it", self.client_addr, st.sid, self.send_timeout_s)
                    self.reset(st, ErrorCodes.CANCEL)
                    st.gone()
                    continue
                nxt = st.stall_deadline if not nxt else min(nxt, st.stall_deadline)
        self.deadline = nxt
        self._flush()

    # -- the server's side ---------------------------------------------------------------------
    def hold_reading(self, hold: bool) -> None:
        """The server holds new requests (the ledger is behind): requests that
        complete wait, streams in flight go on (they need our reading for their
        window updates)."""
        if not hold:
            while self.waiting and not self.host.holding and not self.closed:
                self._dispatch(self.waiting.popleft())

    @property
    def flow(self) -> Any:
        """For the end of the shutdown grace: the connection ends its streams' flows
        (``shutdown``) when any is left, else it is simply cut."""
        return self if any(st.flow is not None for st in self.streams.values()) else None

    def shutdown(self) -> None:
        for st in list(self.streams.values()):
            flow = st.flow
            if flow is not None:
                flow.shutdown()
        self._flush()

    def close_if_idle(self) -> bool:
        """Graceful shutdown: GOAWAY once (the last stream we take is the last one
        opened), close once no stream is left."""
        if self.closed:
            return True
        if not self._goaway_sent:
            self._goaway(ErrorCodes.NO_ERROR)
        if not self.streams:
            self._close()
            return True
        return False

    def close_now(self) -> None:
        if not self._goaway_sent:
            self._goaway(ErrorCodes.NO_ERROR)
        self._close()

    def abort(self) -> None:
        """Drop the connection without a clean ending (``wire.reset``)."""
        reset(self.transport)

    # -- ending ------------------------------------------------------------------------------------
    def _goaway(self, code: ErrorCodes) -> None:
        """GOAWAY written around h2: h2 closes its state machine on sending one and
        would refuse the frames of the streams we still finish (RFC 9113 §6.8
        lets them complete)."""
        self._goaway_sent = True
        if self.closed or self.transport is None:
            return
        frame = GoAwayFrame(0, last_stream_id=self.h2.highest_inbound_stream_id,
                            error_code=int(code))
        self._flush()
        self.transport.write(frame.serialize())

    def _end(self, code: ErrorCodes) -> None:
        """A connection error or idle end: GOAWAY with ``code``, then close; what the
        streams still run is cancelled."""
        if not self._goaway_sent:
            self._goaway(code)
        self._close()

    def _close_when_idle(self) -> None:
        if not self.streams:
            self._close()

    def _close(self) -> None:
        if not self.closed and self.transport is not None:
            self._flush()
            self.closed = True
            self.deadline = 0.0
            self.transport.close()


def take_over(host: ConnectionHost, admit: Callable[[Request], None] | None,
              transport: asyncio.Transport, data: bytes) -> None:
    """Serve ``transport`` as HTTP/2 from now on (``data``: bytes already read)."""
    HTTP2Connection(host, admit, host.settings.max_concurrent_streams).take_over(transport, data)
