"""Per-request translation between a client's wire format and an upstream's.

``Translation(client_format, upstream_format, request_id=…, created=…)`` is built once per
request. It turns the client's request body into the upstream's, the upstream's reply
(complete, streamed or an error) into the client's, and keeps the facts the ledger needs.
All of it is pure: bytes and dicts in, bytes and dicts out; time and ids are inputs.

Formats meet in the IR (``protocols.ir``): each format has one decoder and one encoder,
never a translator per pair (docs/protocols.md §5). When both sides speak the same
format the translation runs in **observe mode**: the request body and every stream chunk
are returned unchanged (the same objects; a Chat streaming request gains the usage
report it lacked, see ``request``), and a decoder only watches the stream for usage, the
stop reason, tool calls and errors.

Each format is a package reached through ``protocols.registry`` (``FORMAT_MODULES``,
``format_module``), which documents the interface every format package provides.

One interface for the gateway, whatever the mode: ``request`` (the body to send),
``response`` (a complete reply), ``error`` (an HTTP error reply, always in the client's
format) and ``stream_filter()`` (the body filter for a streamed reply,
``protocols.stream_filter.StreamFilter``), with the ledger's facts (``usage`` as
``ir.Usage``, ``model``) read the same way in both modes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import ir
from .errors import ProtocolError, UpstreamProtocolError
from .ir import ErrorKind, StreamError
from .registry import FORMAT_MODULES, _loaded, format_module

if TYPE_CHECKING:
    from .observe import StreamTap
    from .stream_filter import TranslatedStream

__all__ = ["FORMAT_MODULES", "Translation", "format_module"]


class Translation:
    """One request's translation (mutable, not thread-safe).

    Call ``request(body)`` first (it also tells the client-side encoder the client's
    options), then either ``response(body)`` for a complete reply, ``stream_filter()``
    for a streamed one (or ``feed(chunk)`` for each streamed chunk followed by one
    ``finish()``, what the translating filter does), or ``error(status, body)`` for an
    HTTP error reply.

    Mid-stream, ``feed`` never raises for bad upstream data: an upstream that breaks its
    protocol (invalid JSON, an oversized event) ends the client's stream with the client
    format's error event, and ``failed`` becomes true. ``request``, ``response`` raise
    ``ProtocolError`` subclasses (``ClientProtocolError``/``UnsupportedFeature`` for the
    client's request, ``UpstreamProtocolError`` for the upstream's reply).

    Facts (read-only): ``usage`` (``ir.Usage``, ``None`` until reported), ``model`` (the
    served model, else the requested one), ``stop_reason``, ``tool_calls_seen`` (count),
    ``failed`` (an error was seen or the stream was cut), ``ended`` (the client's stream
    has been terminated properly, see there), ``observe`` (same format).
    """

    __slots__ = (
        "client_format", "upstream_format", "observe", "_client", "_upstream", "_ctx",
        "_ctx_args",
        "_dec", "_enc", "_dead", "_broke", "_cut", "_response", "_error", "_requested_model",
        "_observed", "_observed_usage", "_strip_usage",
    )

    def __init__(
        self,
        client_format: str,
        upstream_format: str,
        *,
        request_id: str,
        created: int,
        id_factory: Any = None,
    ) -> None:
        self.client_format = client_format
        self.upstream_format = upstream_format
        # One per request: the loaded modules are looked up directly.
        self._client = _loaded.get(client_format) or format_module(client_format)
        self._upstream = _loaded.get(upstream_format) or format_module(upstream_format)
        self.observe = client_format == upstream_format
        # The Context is made when a codec needs it: a passthrough reply never does
        # (about 1 us a request saved on the gateway's commonest path).
        self._ctx: ir.Context | None = None
        self._ctx_args = (request_id, created, id_factory)
        self._dec: Any = None
        self._enc: Any = None
        self._dead = False
        self._broke = False
        self._cut = False  # observe mode: the upstream ended without its terminal marker
        self._response: ir.Response | None = None
        self._error: ir.ApiError | None = None
        self._requested_model: str | None = None
        self._observed: Any = None  # observe mode: the upstream's complete reply
        self._observed_usage: Any = None
        self._strip_usage = False  # observe mode: request() asked for usage the client did not

    @property
    def context(self) -> ir.Context:
        ctx = self._ctx
        if ctx is None:
            request_id, created, id_factory = self._ctx_args
            ctx = self._ctx = ir.Context(
                request_id=request_id,
                created=created,
                client_format=self.client_format,
                upstream_format=self.upstream_format,
                id_factory=id_factory,
            )
        return ctx

    # -- request -----------------------------------------------------------------------

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """The upstream request body for the client's ``body``.

        Observe mode returns ``body`` itself without decoding it (only the model is
        read): an invalid body is the upstream's to reject, the gateway forwards what the
        client wrote.  The one exception is a streaming request in a format where usage
        reports are optional (Chat ``stream_options.include_usage``): the provider is
        asked for them in a shallow copy, so usage is reported rather than estimated,
        and ``stream_filter()`` strips the report again for the client that did not ask.
        """
        if self.observe:
            # Nothing is re-encoded, so the body is not decoded either: a Claude
            # Code request (~50 KB) costs ~270 us to decode and the passthrough
            # path needs only the model.  The decoders' facts do not depend on it
            # (the Context's client_request stays None).
            if type(body) is not dict:
                self._requested_model = None
                return body
            model = body.get("model")
            self._requested_model = model if type(model) is str else None
            asked = self._upstream.request_stream_usage(body)
            if asked is None:
                return body
            self._strip_usage = True
            sent: dict[str, Any] = asked
            return sent
        ctx = self.context
        req = self._client.decode_request(body, ctx)
        ctx.client_request = req
        self._requested_model = req.model
        up: dict[str, Any] = self._upstream.encode_request(req, ctx)
        return up

    # -- complete replies --------------------------------------------------------------

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        """The client's reply for the upstream's complete reply ``body``.

        Observe mode returns ``body`` itself.  The usage and the served model are read
        straight from it (the same keys and usage reader as the decoder's); the whole
        reply is decoded only when another fact is asked for (``stop_reason``,
        ``tool_calls_seen``, ``failed``): the passthrough needs just those two, and a
        full decode of a Responses reply costs more than the rest of the request.  A body
        the decoder cannot read still goes to the client unchanged (``failed`` is set).
        """
        if self.observe:
            self._observed = body
            usage_key, _, read = self._upstream.REPLY_FACTS
            if type(body) is dict:
                u = body.get(usage_key)
                try:
                    # No usage object: zeros, as the decoder makes them.
                    self._observed_usage = read(u) if u is not None else ir.Usage()
                except ProtocolError:
                    self._broke = True
            return body
        resp = self._upstream.decode_response(body, self.context)
        self._response = resp
        out: dict[str, Any] = self._client.encode_response(resp, self.context)
        return out

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        """Status and body for the client, for the upstream's HTTP error reply: always in
        the client's format.  Observe mode relays the provider's status and body
        unchanged when the body is the format's own JSON error shape; anything else (an
        HTML page from a load balancer, plain text, nothing) is rewritten as the format's
        error, as a translated reply is."""
        err = self._upstream.decode_error(status, body)
        self._error = err
        if self.observe and self._upstream.is_error_body(body):
            return status, body
        result: tuple[int, bytes] = self._client.encode_error(err, self.upstream_format)
        return result

    # -- streams -----------------------------------------------------------------------

    def _start_stream(self) -> None:
        self._dec = self._upstream.StreamDecoder(self.context, observe=self.observe)
        if not self.observe:
            self._enc = self._client.StreamEncoder(self.context)

    def feed(self, chunk: bytes) -> bytes:
        """Bytes for the client for the next piece of the upstream body (``b""`` when
        nothing is complete yet). Observe mode returns ``chunk`` itself."""
        dec = self._dec
        if dec is None:
            self._start_stream()
            dec = self._dec
        if self.observe:
            if not self._dead:
                try:
                    dec.feed(chunk)
                except ProtocolError:
                    # The bytes still go to the client; only the watching stops.
                    self._dead = self._broke = True
            return chunk
        if self._dead:
            return b""
        try:
            events = dec.feed(chunk)
        except ProtocolError as e:
            return self._broken(e)
        if not events:
            return b""
        try:
            out: bytes = self._enc.encode(events)
        except ProtocolError as e:
            return self._broken(e)
        return out

    def finish(self) -> bytes:
        """Upstream EOF: the rest of the client's stream. A stream that ended without its
        terminal marker ends with the client format's error event."""
        dec = self._dec
        if dec is None:
            self._start_stream()
            dec = self._dec
        if self.observe:
            if not self._dead:
                try:
                    tail = dec.close()
                except ProtocolError:
                    self._dead = self._broke = True
                else:
                    # A StreamError made up at close is the decoder noticing the cut;
                    # nothing of it reached the client, which only got upstream's bytes.
                    self._cut = any(type(e) is StreamError for e in tail)
            return b""
        if self._dead:
            return b""
        try:
            out: bytes = self._enc.encode(dec.close())
        except ProtocolError as e:
            return self._broken(e)
        self._dead = True
        end: bytes = self._enc.close()
        return out + end

    def fail(self, kind: ErrorKind, message: str) -> bytes:
        """The upstream failed mid-stream in a way only the caller saw (it went silent,
        its connection dropped): in place of ``finish()``, end the client's stream with
        the client format's error event of ``kind``, saying ``message``.  ``b""`` once
        the client's stream has ended, and in observe mode (the caller writes the
        format's error event itself)."""
        if self.observe or self._dead:
            return b""
        if self._dec is None:
            self._start_stream()
        self._dead = True
        if self._enc.done:
            return b""
        self._broke = True
        try:
            out: bytes = self._enc.encode([StreamError(kind, message)])
            end: bytes = self._enc.close()
        except ProtocolError:
            return b""
        return out + end

    def _broken(self, e: ProtocolError) -> bytes:
        """The upstream broke its protocol mid-stream: end the client's stream with an
        error event (status hint 502) and ignore the rest of the input."""
        self._dead = self._broke = True
        kind = (ErrorKind.UPSTREAM_PROTOCOL if isinstance(e, UpstreamProtocolError)
                else ErrorKind.SERVER)
        error = StreamError(kind, f"upstream protocol error: {e.message}", e.status_hint)
        try:
            out: bytes = self._enc.encode([error])
            end: bytes = self._enc.close()
            return out + end
        except ProtocolError:
            return b""

    def keepalive(self) -> bytes | None:
        """An ignorable event in the client's format to keep a silent stream alive,
        when the client encoder has one (Responses: a repeated
        ``response.in_progress`` with the next sequence number, because Codex
        resets its idle timer only on events); None otherwise."""
        enc = self._enc
        if enc is None or self.observe or self._dead:
            return None
        beat: bytes | None = enc.keepalive()
        return beat

    def stream_filter(self) -> StreamTap | TranslatedStream:
        """The body filter for the streamed reply (``protocols.stream_filter``): in
        observe mode the zero-copy tap over the provider's events (stripping the usage
        report ``request`` asked for), else the translating filter over ``feed`` and
        ``finish``.  Call ``request`` first.  Both are imported with the first
        stream (with the SSE framing under them: 0.4 MiB of a gateway that has
        served none)."""
        if self.observe:
            from .observe import stream_tap

            return stream_tap(self.upstream_format, strip_usage=self._strip_usage)
        from .stream_filter import TranslatedStream

        return TranslatedStream(self)

    # -- facts -------------------------------------------------------------------------

    def _decoded(self) -> ir.Response | None:
        """The complete reply as IR; in observe mode decoded on first use."""
        body = self._observed
        if body is not None and self._response is None and not self._broke:
            try:
                self._response = self._upstream.decode_response(body, self.context)
            except ProtocolError:
                self._broke = True
        return self._response

    @property
    def dropped_tools(self) -> list[str]:
        """Another provider's built-in tools the upstream request left out
        (``protocols/builtin_tools.py``); empty in observe mode."""
        ctx = self._ctx
        return ctx.dropped_tools if ctx is not None else []

    @property
    def usage(self) -> ir.Usage | None:
        if self._dec is not None and self._dec.usage is not None:
            usage: ir.Usage = self._dec.usage
            return usage
        if self._observed is not None:
            observed: ir.Usage | None = self._observed_usage
            return observed
        if self._response is not None:
            return self._response.usage
        return None

    @property
    def model(self) -> str | None:
        if self._dec is not None and self._dec.model:
            served: str = self._dec.model
            return served
        body = self._observed
        if body is not None:
            model = body.get(self._upstream.REPLY_FACTS[1]) if type(body) is dict else None
            return str(model) if model else self._requested_model
        if self._response is not None and self._response.model:
            return self._response.model
        return self._requested_model

    @property
    def stop_reason(self) -> ir.StopReason | None:
        if self._dec is not None:
            stop: ir.StopReason | None = self._dec.stop_reason
            return stop
        resp = self._decoded()
        return resp.stop_reason if resp is not None else None

    @property
    def tool_calls_seen(self) -> int:
        if self._dec is not None:
            n: int = self._dec.tool_calls
            return n
        resp = self._decoded()
        if resp is not None:
            return sum(1 for b in resp.content if type(b) is ir.ToolCall)
        return 0

    @property
    def ended(self) -> bool:
        """True when the bytes returned so far end the client's stream properly: a clean
        end or the client format's own error event. After ``finish()`` a ``False`` means
        the caller must end the stream itself; this happens only in observe mode, which
        forwards exactly what the upstream sent, when the upstream stopped before its
        terminal marker (or could not be watched). ``failed`` says whether it was an
        error; ``ended`` says whether the client has already been told."""
        if not self.observe:
            return self._enc is not None and self._enc.done
        dec = self._dec
        return dec is not None and dec.done and not self._cut and not self._broke

    @property
    def failed(self) -> bool:
        self._decoded()  # observe mode: a reply the decoder cannot read has failed
        return (
            self._error is not None
            or self._broke
            or (self._dec is not None and self._dec.failed)
        )
