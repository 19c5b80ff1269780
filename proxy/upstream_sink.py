"""What a provider connection reports to, and how it fails.

The interface shared by the HTTP/1.1 connection (``proxy.upstream``) and the
HTTP/2 streams (``proxy.upstream_h2``): the exchange is a ``Sink`` for either,
and both report transport failures as an ``UpstreamError`` of the same kinds.
"""

from __future__ import annotations

from typing import Protocol


class UpstreamError(Exception):
    """Transport-level failure talking to a provider.

    ``kind`` is ``unreachable`` (connect failed, or an HTTP/2 connection was lost
    before the stream's head), ``timeout`` (connect, first byte or idle timer
    fired), ``cut`` (the connection ended mid-response), ``reused_dead`` (a
    pooled connection was found closed before any response byte, or HTTP/2 said
    the stream was not processed: GOAWAY, REFUSED_STREAM; the provider never saw
    the request, so it may be sent again),
    ``protocol`` (the provider broke HTTP or its wire format), or ``pool_full``
    (every connection this peer may have was busy for the whole wait).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Sink(Protocol):
    def on_upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...
    def on_upstream_body(self, data: bytes) -> None: ...
    def on_upstream_end(self) -> None: ...
    def on_upstream_read_done(self) -> None: ...
    def on_upstream_error(self, exc: UpstreamError) -> None: ...


def overdue(now: float, got_bytes: bool, sent_at: float, last_rx: float,
            first_byte_s: float, idle_s: float) -> UpstreamError | None:
    """The timeout a request in flight has run into at loop time ``now``, if any: no
    byte within ``first_byte_s`` of sending it, or silence for ``idle_s`` after its
    first byte (both connections' sweeps ask; a paused read is the caller's case)."""
    if not got_bytes:
        if now - sent_at >= first_byte_s:
            return UpstreamError("timeout",
                                 f"provider sent no response within {first_byte_s:g} s")
    elif now - last_rx >= idle_s:
        return UpstreamError("timeout", f"provider sent nothing for {idle_s:g} s mid-response")
    return None
