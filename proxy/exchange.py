"""One proxied request, in explicit phases.

``route`` (done by the caller) -> ``acquire`` an upstream connection -> ``send``
-> ``on_upstream_head`` -> ``on_upstream_body``* (pumped to the client through
a body *filter*) -> ``on_upstream_end`` -> ``record`` one ledger row.

The exchange is driven by callbacks from both connections, not by a task:
the only await is opening a new provider connection.  That keeps a pooled,
keep-alive request to a handful of function calls.

Backpressure: the client connection calls ``pause_writing`` when its write
buffer is above the high-water mark, and the exchange pauses reading from
the provider until ``resume_writing`` — memory per stream stays bounded by
the two socket buffers plus one chunk.

Body filters are sans-IO objects from ``protocols/`` with ``feed(bytes) ->
bytes``, ``finish() -> bytes``, ``error_frame(message, kind) -> bytes`` and
facts read for the ledger (``usage``, ``model``, ``complete``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from protocols.errors import ProtocolError

from .accounting import usage_to_row
from .errors import UPSTREAM, GatewayError
from .upstream import (
    HOP_BY_HOP,
    MAX_BUFFERED_RESPONSE_BYTES,
    UpstreamError,
    build_request_head,
)

if TYPE_CHECKING:
    from .app import Gateway
    from .h1 import HTTPConnection, Request

log = logging.getLogger("tokenway.exchange")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # nginx and similar buffers in front of us must not hold frames back.
    (b"x-accel-buffering", b"no"),
]

# Provider response headers not relayed to the client: hop-by-hop ones, the
# framing we redo ourselves, and identity we replace with our own.
_NOT_RELAYED = HOP_BY_HOP | {
    b"content-length", b"date", b"server", b"set-cookie", b"content-encoding",
    b"alt-svc", b"cf-ray", b"x-request-id",
}

_HEAD, _STREAM, _BUFFER, _DONE = range(4)


class ProxyExchange:
    """Forward one request to one provider target and pump the answer back."""

    __slots__ = (
        "gw", "req", "conn", "row", "provider", "key", "data", "stream", "filter",
        "up", "state", "status", "parts", "size", "resp_headers", "retried",
        "bytes_out", "request_id", "error_format", "translation",
    )

    def __init__(self, gw: Gateway, req: Request, conn: HTTPConnection, row: dict[str, Any],
                 provider: Any, upstream_path: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes, *, stream: bool, body_filter: Any, error_format: str,
                 translation: Any = None) -> None:
        self.gw = gw
        self.req = req
        self.conn = conn
        self.row = row
        self.provider = provider
        self.key = gw.pool.key_for(provider)
        self.data = build_request_head(b"POST", upstream_path, provider.host_header,
                                       headers, len(body)) + body
        self.stream = stream
        self.filter = body_filter
        self.up: Any = None
        self.state = _HEAD
        self.status = 0
        self.parts: list[bytes] = []
        self.size = 0
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.retried = False
        self.bytes_out = 0
        self.request_id = row["request_id"]
        self.error_format = error_format
        # Non-stream replies and errors go through it (None: OpenAI passthrough).
        self.translation = translation

    # phases ---------------------------------------------------------------------
    def start(self) -> Any:
        """Send on an idle pooled connection now, or return a coroutine that connects."""
        self.conn.flow = self
        up = self.gw.pool.take_idle(self.key)
        if up is not None:
            self._send(up)
            return None
        return self._connect_and_send()

    async def _connect_and_send(self) -> None:
        try:
            up = await self.gw.pool.connect(self.key, self.provider.connect_timeout_s)
        except UpstreamError as exc:
            self.on_upstream_error(exc)
            return
        if self.state == _DONE:  # the client left while we were connecting
            up.abandon()
            return
        self._send(up)

    def _send(self, up: Any) -> None:
        self.up = up
        up.send(self.data, self, first_byte_s=self.provider.first_byte_timeout_s,
                idle_s=self.provider.idle_timeout_s)

    # upstream callbacks -------------------------------------------------------------
    def on_upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.row["ttfb_ms"] = (time.monotonic() - self.row["_t0"]) * 1000.0
        relayed = [(b"x-request-id", self.request_id.encode())]
        ctype = b""
        for k, v in headers:
            if k == b"content-type":
                ctype = v
            elif k not in _NOT_RELAYED:
                relayed.append((k, v))
        if status == 200 and self.stream and ctype.startswith(b"text/event-stream"):
            self.state = _STREAM
            self.conn.start_stream(200, SSE_HEADERS + relayed)
        else:
            self.state = _BUFFER
            relayed.append((b"content-type", ctype or b"application/json"))
            self.resp_headers = relayed

    def on_upstream_body(self, data: bytes) -> None:
        if self.state == _STREAM:
            out = self.filter.feed(data)
            if out:
                self.bytes_out += len(out)
                self.conn.write(out)
        else:
            self.size += len(data)
            if self.size > MAX_BUFFERED_RESPONSE_BYTES:
                self.up.abandon()
                self.on_upstream_error(UpstreamError(
                    "protocol", f"provider response exceeds {MAX_BUFFERED_RESPONSE_BYTES} bytes"))
                return
            self.parts.append(data)

    def on_upstream_end(self) -> None:
        if self.state == _STREAM:
            self._finish_stream()
        elif self.state == _BUFFER:
            self._finish_buffered()

    def on_upstream_error(self, exc: UpstreamError) -> None:
        if self.state == _DONE:
            return
        if exc.kind == "reused_dead" and not self.retried and self.state == _HEAD:
            # The pooled connection was dead before the provider saw anything: retry once.
            self.retried = True
            self.row["attempts"] = 2
            coro = self._connect_and_send()
            self.conn.task = self.gw.server.spawn_request(coro, self.conn)
            return
        row = self.row
        if self.state == _STREAM:
            # Bytes already reached the client: no silent switch, no fabricated
            # clean end.  The client gets its protocol's own error event.
            self.state = _DONE
            tail = self.filter.error_frame(f"upstream stream failed: {exc.message}", exc.kind)
            self.bytes_out += len(tail)
            self.conn.write(tail)
            self.conn.end_stream()
            row["status"] = 200
            row["error_kind"] = "upstream_timeout" if exc.kind == "timeout" else "stream_cut"
            self._record()
            return
        if exc.kind == "timeout":
            err = GatewayError(504, f"provider {self.provider.name}: {exc.message}",
                               kind="upstream_timeout", source=UPSTREAM)
        elif exc.kind in ("unreachable", "reused_dead"):
            err = GatewayError(502, f"provider {self.provider.name} unreachable: {exc.message}",
                               kind="upstream_unreachable", source=UPSTREAM)
        else:
            err = GatewayError(502, f"provider {self.provider.name}: {exc.message}",
                               kind="upstream_error", source=UPSTREAM)
        self.state = _DONE
        self.gw.send_error(self.req, self.conn, err, row, self.error_format)

    # client callbacks ---------------------------------------------------------------
    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()

    def client_gone(self) -> None:
        if self.state == _DONE:
            return
        self.state = _DONE
        if self.up is not None:
            self.up.abandon()  # stop the provider spending tokens on nobody
        row = self.row
        row["status"] = 499
        row["error_kind"] = "cancelled"
        self._record()

    # endings --------------------------------------------------------------------------
    def _finish_stream(self) -> None:
        self.state = _DONE
        f = self.filter
        tail = f.finish()
        row = self.row
        if not f.complete:
            tail += f.error_frame("upstream stream ended without its terminal event", "stream_cut")
            row["error_kind"] = "stream_cut"
        if tail:
            self.bytes_out += len(tail)
            self.conn.write(tail)
        self.conn.end_stream()
        row["status"] = 200
        self._record()

    def _finish_buffered(self) -> None:
        self.state = _DONE
        parts = self.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        status = self.status
        row = self.row
        tr = self.translation
        ctype = _pop_ctype(self.resp_headers)
        if tr is None:
            if status == 200:
                self.gw.read_usage(body, row)
            else:
                row["error_kind"] = "upstream_error"
                body = self.gw.relay_error_body(status, body, self.error_format)
        elif status == 200:
            try:
                obj = orjson.loads(body)
                out = tr.response(obj)
            except (orjson.JSONDecodeError, ProtocolError) as exc:
                err = GatewayError(502, f"provider {self.provider.name} sent an invalid "
                                        f"response: {exc}", kind="upstream_protocol",
                                   source=UPSTREAM)
                self.gw.send_error(self.req, self.conn, err, row, self.error_format)
                return
            if out is not obj:
                body = orjson.dumps(out)
                ctype = b"application/json"
            usage_to_row(tr.usage, row)
            if tr.model:
                row["served_model"] = tr.model
        else:
            row["error_kind"] = "upstream_error"
            status, body = tr.error(status, body)
            ctype = b"application/json"
        row["status"] = status
        self.bytes_out = len(body)
        self.conn.respond(status, body, self.resp_headers, content_type=ctype)
        self._record()

    def _record(self) -> None:
        if self.conn.flow is self:
            self.conn.flow = None
        row = self.row
        row["bytes_out"] = self.bytes_out
        if self.filter is not None and self.stream:
            f = self.filter
            usage_to_row(f.usage, row)
            if f.model:
                row["served_model"] = f.model
        self.gw.finish_row(row)


def _pop_ctype(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Take the content-type out of ``headers`` (``respond`` writes it first)."""
    for i in range(len(headers) - 1, -1, -1):
        if headers[i][0] == b"content-type":
            return headers.pop(i)[1]
    return b"application/json"


