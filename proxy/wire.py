"""HTTP/1.1 pieces shared by every layer: the parsed request, framing errors,
response heads, and the header sets that never cross the gateway.

This is the bottom of proxy/'s HTTP stack: the connection (``h1``), dispatch,
the endpoints and the exchange all use these, so it imports none of them.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from http import HTTPStatus
from typing import Any

# Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, never
# the message, so they are not forwarded in either direction.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"proxy-connection",
})

REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
REASONS[499] = b"Client Closed Request"
REASONS[529] = b"Overloaded"

_date = b""


def _refresh_date() -> None:
    global _date
    _date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()


_refresh_date()


def date_header() -> bytes:
    """The ``Date`` value (RFC 9110 §6.6.1), refreshed once a second by the clock."""
    return _date


def start_date_clock(loop: asyncio.AbstractEventLoop) -> asyncio.TimerHandle:
    """Refresh the cached ``Date`` header once a second instead of per response."""

    def tick() -> None:
        _refresh_date()
        holder[0] = loop.call_later(1.0, tick)

    holder = [loop.call_later(1.0, tick)]
    return holder[0]


def half_close(transport: asyncio.BaseTransport | None) -> bool | None:
    """What ``eof_received`` returns to keep writing after the client's half-close:
    True on TCP; over TLS the transport closes on close_notify whatever is returned
    (asyncio's SSL protocol has no half-close), so None says so."""
    return None if transport is not None and transport.get_extra_info("sslcontext") else True


# SO_LINGER on, 0 s: close() resets the connection and drops unsent bytes.
_LINGER_RESET = struct.pack("ii", 1, 0)


def reset(transport: asyncio.Transport | None) -> None:
    """Drop a client connection without a clean ending (the client sees a cut).

    With SO_LINGER at zero the kernel sends a reset and frees what it still holds
    to send (megabytes, for a client that stopped reading), instead of delivering
    it after the close."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
    transport.abort()


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
        "body", "started", "expect_continue", "content_type", "client_request_id", "route",
        "rejection", "identity", "upgrade",
        "_map",
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
        self.content_type: bytes | None = None  # read with the framing headers
        self.client_request_id: bytes | None = None  # x-request-id, read with them too
        # Set by dispatch when the head is admitted: the endpoint it goes to, or
        # the error it is refused with (answered without reading its body).
        self.route: Any = None
        self.rejection: Any = None
        # The key's identity (proxy.accounts.Identity) once dispatch checked it;
        # None while authentication is off.
        self.identity: Any = None
        # A WebSocket upgrade request (RFC 6455 §4.1): the connection carries
        # WebSocket frames once its handler has answered 101.
        self.upgrade = False
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


def keep_alive(version: str, connection: bytes | None) -> bool:
    """Whether the connection stays open after this request (RFC 9112 §9.3)."""
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
        status, REASONS.get(status, b"Unknown"),
        b"".join([k + b": " + v + b"\r\n" for k, v in headers]),
        b"transfer-encoding: chunked\r\n" if content_length is None
        else b"content-length: %d\r\n" % content_length,
        b"" if keep_alive else b"connection: close\r\n",
        _date)


def switching_protocols_head(headers: list[tuple[bytes, bytes]]) -> bytes:
    """A 101 response head (RFC 9110 §15.2.2): no body framing at all."""
    return b"HTTP/1.1 101 Switching Protocols\r\n%sdate: %s\r\nserver: tokenway\r\n\r\n" % (
        b"".join([k + b": " + v + b"\r\n" for k, v in headers]), _date)


def build_request_head(method: bytes, path: bytes, host_header: bytes,
                       header_block: bytes, body_len: int) -> bytes:
    """Serialise an HTTP/1.1 request head for a provider (``header_block``: the
    header lines, each ending in CRLF)."""
    return b"%s %s HTTP/1.1\r\nhost: %s\r\n%scontent-length: %d\r\n\r\n" % (
        method, path, host_header, header_block, body_len)
