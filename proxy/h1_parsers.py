"""The two HTTP/1.1 parser backends of a client connection.

``httptools`` (llhttp, C) is the fast path; ``h11`` is the strict, pure-Python
path.  Both turn bytes into the same three calls on the connection
(``_on_head``, ``_on_body``, ``_on_end``) and turn its responses into bytes, so
the strict backend also checks what we send (h11 raises ``LocalProtocolError``
on a framing mistake).  Every HTTP/1 test runs on both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import httptools

from .wire import HTTPError, date_header, raw_response_head

if TYPE_CHECKING:
    import h11


class RequestEvents(Protocol):
    """What a backend feeds: the connection (``proxy.h1.HTTPConnection``)."""

    max_header_bytes: int

    def on_request_head(self, method: str, target: bytes,
                        headers: list[tuple[bytes, bytes]], version: str) -> None: ...

    def on_request_body(self, data: bytes) -> None: ...

    def on_request_end(self) -> None: ...

    def upgrade_bytes(self, data: bytes) -> None: ...


class HttptoolsBackend:
    """Fast path over llhttp.  Response bytes are assembled by hand."""

    name = "httptools"

    def __init__(self, conn: RequestEvents) -> None:
        self.conn = conn
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._trailers = False  # the head is complete: fields now are trailer fields

    # httptools callbacks ------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._trailers = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._trailers:
            # A chunked body's trailer field: llhttp reports it like a header field,
            # but it is not one (RFC 9110 §6.5.1) and the head was handed on
            # already. Dropped, as h11 drops them; the body timeouts bound them.
            return
        # llhttp keeps the whitespace after a value; it is not part of the value
        # (RFC 9112 §5), and h11 strips it: the same bytes, the same request.
        value = value.rstrip(b" \t")
        self._head_bytes += len(name) + len(value)
        name = name.lower()
        if name == b"transfer-encoding":
            # Codings are case-insensitive (RFC 9112 §7) and h11 lower-cases them.
            value = value.lower()
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._trailers = True
        headers = self._headers
        # A whole head that came in one read is measured here, once; one arriving
        # over many reads is also counted in raw bytes by the connection.
        if self._head_bytes + 4 * len(headers) > self.conn.max_header_bytes:
            raise HTTPError(431, "request header fields too large")
        p = self.parser
        self.conn.on_request_head(
            p.get_method().decode("ascii"), self._url, headers, p.get_http_version(),
        )

    def on_body(self, body: bytes) -> None:
        self.conn.on_request_body(body)

    def on_message_complete(self) -> None:
        self.conn.on_request_end()

    # bytes in -------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, HTTPError):
                raise cause from None
            raise
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops at the end of an upgrade request's head (the connection
            # accepted it: on_request_head refuses the others); what follows in
            # this read is the client's first WebSocket bytes.
            self.conn.upgrade_bytes(data[exc.args[0]:])
        except httptools.HttpParserError as exc:
            raise HTTPError(400, f"malformed HTTP request: {exc}") from None

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

    def __init__(self, conn: RequestEvents) -> None:
        global h11
        import h11  # the strict backend is loaded only when configured

        self.conn = conn
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=conn.max_header_bytes)
        self._in_body = False
        # Set once the bytes were refused (HTTPError): nothing after them is read.
        # h11 reads a pipelined request only when the cycle before it ends, from
        # ``cycle_done`` inside the connection's answer, so a refusal raised there
        # is caught by the connection while an outer ``_drain`` is still looping.
        self._refused = False

    def feed(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._drain()

    def _drain(self) -> None:
        try:
            self._drain_events()
        except HTTPError:
            self._refused = True
            raise

    def _drain_events(self) -> None:
        c = self.h11
        conn = self.conn
        while not self._refused:
            try:
                ev = c.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                if status == 400 and "exceeded" in str(exc).lower():
                    status = 431
                if status == 431:
                    raise HTTPError(431, "request header fields too large") from None
                raise HTTPError(status, f"malformed HTTP request: {exc}") from None
            if ev is h11.PAUSED and c.their_state is h11.MIGHT_SWITCH_PROTOCOL:
                # An upgrade request is complete: what h11 holds after it are
                # the client's first WebSocket bytes (its own reads stop here).
                data, _ = c.trailing_data
                if data:
                    conn.upgrade_bytes(bytes(data))
                return
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return
            if type(ev) is h11.Request:
                headers = list(ev.headers)
                # h11 bounds only *incomplete* heads; a whole head that
                # arrived at once is measured here, as llhttp's path does.
                size = len(ev.target) + sum(len(k) + len(v) + 4 for k, v in headers)
                if size > conn.max_header_bytes:
                    raise HTTPError(431, "request header fields too large")
                conn.on_request_head(ev.method.decode("ascii"), ev.target, headers,
                              ev.http_version.decode("ascii"))
            elif type(ev) is h11.Data:
                conn.on_request_body(bytes(ev.data))
            elif type(ev) is h11.EndOfMessage:
                conn.on_request_end()
            elif type(ev) is h11.ConnectionClosed:
                return

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
        hs.append((b"date", date_header()))
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


BACKENDS: dict[str, Callable[[RequestEvents], Any]] = {
    "httptools": HttptoolsBackend,
    "h11": H11Backend,
}
