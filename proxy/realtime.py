"""The Realtime API's WebSocket relay: a client's WebSocket to a provider's.

OpenAI's Realtime API (https://platform.openai.com/docs/guides/realtime-websocket)
is a WebSocket at ``/v1/realtime?model=...`` carrying JSON events both ways.
The gateway accepts the client's upgrade only once the provider accepted its
own (so a refusal reaches the client as an HTTP error in OpenAI's shape), then
relays every message unchanged, fragment by fragment, with wsproto on both
sides (the client's frames are masked and the provider's are not, RFC 6455
§5.3, so frames are re-encoded, never copied).  Pings are answered on each hop;
a close on one side is passed to the other with its code and reason.

Backpressure both ways: while the client's socket is full the provider's is
not read, and while the provider's is full the client's is not read.  Nothing
is buffered beyond the transports' own limits.

Usage: the provider's ``session.created`` (the model it serves) and
``response.done`` events (``response.usage``) are read as they pass; the
session is one ledger row with the token totals of all its responses (one
request reached the gateway; its responses are counted within it), written
when the session ends, however it ends.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from typing import Any

import orjson
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from .call import Call
from .provider import Provider
from .upstream import UpstreamPool

log = logging.getLogger("tokenway.realtime")

# RFC 6455 §1.3: the server's proof that it read the client's key.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Events read for usage are a few KiB; a bigger one that claims to be one is
# passed on but not read (its tokens are then missing from the row).
MAX_TAPPED_CHARS = 1 << 20
# The start of a text message that may be one of the events read for usage.
_TAP_PREFIX_CHARS = 256
# An upstream refusal's body kept for the client's error message.
MAX_REFUSAL_BYTES = 64 * 1024
# The provider socket's write buffer: beyond it the client is not read.
PROVIDER_HIGH_WATER = 1 << 20
PROVIDER_LOW_WATER = 256 << 10
# WebSocket close codes (RFC 6455 §7.4.1).
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011


def accept_key(client_key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(client_key + _GUID).digest())


class RelayRefused(Exception):
    """The provider did not accept the WebSocket (``status`` 0: no HTTP answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ProviderSocket(asyncio.Protocol):
    def __init__(self, relay: RealtimeRelay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream: asyncio.Transport = transport  # type: ignore[assignment]
        stream.set_write_buffer_limits(PROVIDER_HIGH_WATER, PROVIDER_LOW_WATER)
        self.transport = stream

    def data_received(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.from_provider(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        relay = self.relay
        if relay is not None:
            relay.provider_lost()
            # relay.sock points back here: break the cycle for reference counting.
            self.relay = None  # type: ignore[assignment]

    def pause_writing(self) -> None:
        relay = self.relay
        relay.provider_stalled_at = relay.conn.loop.time()
        relay.conn.pause_client(True)

    def resume_writing(self) -> None:
        self.relay.provider_stalled_at = 0.0
        self.relay.conn.pause_client(False)


class RealtimeRelay:
    """One Realtime session: the client connection (after 101), the provider's
    WebSocket, and the call whose ledger row the session is."""

    def __init__(self, call: Call, pool: UpstreamPool, provider: Provider) -> None:
        self.call = call
        self.conn: Any = call.conn
        self.pool = pool
        self.provider = provider
        self.up = WSConnection(ConnectionType.CLIENT)
        self.client = Connection(ConnectionType.SERVER)
        self.sock: _ProviderSocket | None = None
        self.accepted: asyncio.Future[AcceptConnection] | None = None
        self.refusal_status = 0
        self.refusal_body: list[bytes] = []
        self.client_open = True
        self.provider_open = True
        self.ended = False
        self.last_activity = 0.0
        # Usage, summed over the session's responses.
        self.responses = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_tokens = 0
        self._tap: list[str] | None = None  # the text message being read for usage
        self._tap_chars = 0
        self.provider_stalled_at = 0.0  # its socket is full since (0: it is not)
        self.started = 0.0  # loop time of the client's 101 (0: not yet)
        self._early: list[Message[Any]] = []
        self._timer: asyncio.TimerHandle | None = None

    # -- opening ------------------------------------------------------------------

    async def open(self, path: str, headers: list[tuple[bytes, bytes]],
                   subprotocols: list[str]) -> AcceptConnection:
        """Connect to the provider and complete its handshake, within the
        provider's connect and first-byte timeouts; ``RelayRefused`` otherwise."""
        p = self.provider
        key = self.pool.key_for(p)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(p.connect_timeout_s):
                _, sock = await loop.create_connection(
                    lambda: _ProviderSocket(self), p.host, p.port,
                    ssl=self.pool.tls_context(key),
                    server_hostname=p.host if key[0] == "https" else None)
        except TimeoutError:
            raise RelayRefused(0, f"connecting to {p.host}:{p.port} timed out after "
                                  f"{p.connect_timeout_s:g} s") from None
        except OSError as exc:  # ssl.SSLError included
            raise RelayRefused(0, f"cannot connect to {p.host}:{p.port}: "
                                  f"{getattr(exc, 'strerror', None) or exc}") from None
        self.sock = sock
        self.accepted = loop.create_future()
        request = Request(host=p.host_header.decode("latin-1"), target=path,
                          extra_headers=headers, subprotocols=subprotocols)
        assert sock.transport is not None
        sock.transport.write(self.up.send(request))
        try:
            async with asyncio.timeout(p.first_byte_timeout_s):
                return await self.accepted
        except TimeoutError:
            self._close_provider()
            raise RelayRefused(0, f"the provider did not answer the WebSocket handshake "
                                  f"within {p.first_byte_timeout_s:g} s") from None
        except BaseException:
            self._close_provider()
            raise

    def start(self) -> None:
        """The client got its 101: relay from now on, and end a session silent
        both ways for the provider's idle timeout, or older than its request
        timeout when one is set."""
        loop = self.conn.loop
        self.started = self.last_activity = loop.time()
        self._timer = loop.call_later(self._check_every(), self._check_time)
        early, self._early = self._early, []
        for ev in early:
            self._to_client(ev)
        self.resume_writing()

    def _check_every(self) -> float:
        send_timeout: float = self.conn.settings.send_timeout_s
        return max(0.05, min(self.provider.idle_timeout_s / 4, send_timeout / 2, 30.0))

    def _check_time(self) -> None:
        if self.ended:
            return
        loop = self.conn.loop
        now = loop.time()
        whole = self.provider.config.request_timeout_s
        stalled = self.provider_stalled_at
        send_timeout = self.conn.settings.send_timeout_s
        if stalled and now - stalled >= send_timeout:
            # The provider reads nothing of what the client sends (the client is
            # not read meanwhile): the rule a client that reads nothing meets.
            self._timeout(f"the provider read nothing for {send_timeout:g} s")
        elif now - self.last_activity >= self.provider.idle_timeout_s:
            self._timeout(f"no message either way for {self.provider.idle_timeout_s:g} s")
        elif whole and now - self.started >= whole:
            self._timeout(f"the session reached the request timeout of {whole:g} s")
        else:
            self._timer = loop.call_later(self._check_every(), self._check_time)

    def _timeout(self, why: str) -> None:
        log.info("realtime session ended: %s", why,
                 extra={"request_id": self.call.rec.request_id})
        if self.provider_open:
            self._send_provider(CloseConnection(code=CLOSE_GOING_AWAY, reason="idle"))
        self._close_client(CLOSE_GOING_AWAY, why)
        self._end("upstream_timeout")

    # -- provider -> client ---------------------------------------------------------

    def from_provider(self, data: bytes) -> None:
        self.up.receive_data(data)
        for ev in self.up.events():
            if isinstance(ev, Message):
                if self.started:
                    self._to_client(ev)
                else:
                    # Sent with the acceptance (session.created): the client gets
                    # it after its own 101.  The provider is not read meanwhile.
                    self._early.append(ev)
            elif isinstance(ev, Ping):
                self._send_provider(ev.response())
            elif isinstance(ev, CloseConnection):
                self._provider_closed(ev)
            elif isinstance(ev, AcceptConnection):
                if self.accepted is not None and not self.accepted.done():
                    self.accepted.set_result(ev)
                    self.pause_writing()  # until start()
            elif isinstance(ev, RejectConnection):
                self.refusal_status = ev.status_code
                if not ev.has_body:
                    self._refused()
            elif isinstance(ev, RejectData):
                if sum(map(len, self.refusal_body)) < MAX_REFUSAL_BYTES:
                    self.refusal_body.append(ev.data)
                if ev.body_finished:
                    self._refused()

    def _refused(self) -> None:
        body = b"".join(self.refusal_body)[:MAX_REFUSAL_BYTES]
        message = f"the provider refused the WebSocket with HTTP {self.refusal_status}"
        try:
            err = orjson.loads(body).get("error", {}).get("message")
            if isinstance(err, str) and err:
                message += f": {err[:500]}"
        except (orjson.JSONDecodeError, AttributeError):
            pass
        if self.accepted is not None and not self.accepted.done():
            self.accepted.set_exception(RelayRefused(self.refusal_status, message))
        self._close_provider()

    def _to_client(self, ev: Message[Any]) -> None:
        if isinstance(ev, TextMessage):
            self._read_usage(ev)
        self.call.rec.bytes_out += len(ev.data)  # characters, for text
        self.last_activity = self.conn.loop.time()
        try:
            self.conn.send_raw(self.client.send(ev))
        except LocalProtocolError:
            pass  # the client side is closing: nothing more goes to it

    def _read_usage(self, ev: TextMessage) -> None:
        tap = self._tap
        if tap is None:
            head = ev.data[:_TAP_PREFIX_CHARS]
            if '"response.done"' not in head and '"session.created"' not in head:
                return
            tap = self._tap = []
            self._tap_chars = 0
        self._tap_chars += len(ev.data)
        if self._tap_chars <= MAX_TAPPED_CHARS:
            tap.append(ev.data)
        if not ev.message_finished:
            return
        self._tap = None
        if self._tap_chars > MAX_TAPPED_CHARS:
            log.warning("a realtime usage event of %d characters was not read",
                        self._tap_chars, extra={"request_id": self.call.rec.request_id})
            return
        try:
            event = orjson.loads("".join(tap))
        except orjson.JSONDecodeError:
            return
        if type(event) is not dict:
            return
        kind = event.get("type")
        if kind == "session.created":
            session = event.get("session")
            model = session.get("model") if type(session) is dict else None
            if type(model) is str and 0 < len(model) <= 256:
                self.call.rec.served_model = model
        elif kind == "response.done":
            response = event.get("response")
            usage = response.get("usage") if type(response) is dict else None
            if type(usage) is not dict:
                return
            self.responses += 1
            self.input_tokens += _count(usage.get("input_tokens"))
            self.output_tokens += _count(usage.get("output_tokens"))
            details = usage.get("input_token_details")
            if type(details) is dict:
                self.cached_tokens += _count(details.get("cached_tokens"))

    def _provider_closed(self, ev: CloseConnection) -> None:
        if self.provider_open:
            self.provider_open = False
            self._send_provider(ev.response())
        self._close_client(ev.code, ev.reason or "")
        self._end(None)

    def provider_lost(self) -> None:
        self.provider_open = False
        if self.accepted is not None and not self.accepted.done():
            self.accepted.set_exception(RelayRefused(
                0, "the provider closed the connection during the WebSocket handshake"))
            return
        if self.started and not self.ended:
            self._close_client(CLOSE_INTERNAL_ERROR, "provider connection lost")
            self._end("stream_cut")

    # -- client -> provider ---------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        self.client.receive_data(data)
        for ev in self.client.events():
            if isinstance(ev, Message):
                self.call.rec.bytes_in += len(ev.data)
                self.last_activity = self.conn.loop.time()
                self._send_provider(ev)
            elif isinstance(ev, Ping):
                self._send_client(ev.response())
            elif isinstance(ev, CloseConnection):
                if self.client_open:
                    self.client_open = False
                    self._send_client(ev.response())
                if self.provider_open:
                    self._send_provider(CloseConnection(code=ev.code, reason=ev.reason or ""))
                self.conn.close_now()
                self._end(None)

    # -- the client connection's flow (proxy.h1 calls these) ------------------------

    def pause_writing(self) -> None:
        """The client reads slowly: stop reading the provider."""
        sock = self.sock
        if sock is not None and sock.transport is not None and not sock.transport.is_closing():
            sock.transport.pause_reading()

    def resume_writing(self) -> None:
        sock = self.sock
        if sock is not None and sock.transport is not None and not sock.transport.is_closing():
            sock.transport.resume_reading()

    def client_gone(self) -> None:
        """The client's connection ended (with or without a close frame)."""
        self.client_open = False
        if self.provider_open:
            self._send_provider(CloseConnection(code=CLOSE_GOING_AWAY, reason="client left"))
        self._close_provider()
        self._end("cancelled")

    def shutdown(self) -> None:
        """The gateway stops: both sides get a going-away close."""
        if self.provider_open:
            self._send_provider(CloseConnection(code=CLOSE_GOING_AWAY,
                                                reason="gateway shutting down"))
        self._close_client(CLOSE_GOING_AWAY, "gateway shutting down")
        self._close_provider()
        self._end("shutdown")

    # -- helpers --------------------------------------------------------------------

    def _send_provider(self, ev: Any) -> None:
        sock = self.sock
        if sock is None or sock.transport is None or sock.transport.is_closing():
            return
        try:
            sock.transport.write(self.up.send(ev))
        except LocalProtocolError:
            pass

    def _send_client(self, ev: Any) -> None:
        try:
            self.conn.send_raw(self.client.send(ev))
        except LocalProtocolError:
            pass

    def _close_client(self, code: int, reason: str) -> None:
        if self.client_open:
            self.client_open = False
            self._send_client(CloseConnection(code=code, reason=reason[:120]))
        self.conn.close_now()

    def _close_provider(self) -> None:
        sock = self.sock
        if sock is not None and sock.transport is not None:
            sock.transport.close()

    def _end(self, error_kind: str | None) -> None:
        """The session is over: its row goes to the ledger, once."""
        if self.ended:
            return
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
        self._close_provider()
        rec = self.call.rec
        if error_kind is not None and rec.error_kind is None:
            rec.error_kind = error_kind
        if self.responses:
            rec.input_tokens = self.input_tokens
            rec.output_tokens = self.output_tokens
            rec.cached_tokens = self.cached_tokens
        self.call.finish()


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0
