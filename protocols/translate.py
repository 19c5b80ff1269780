"""Per-request translation between a client's wire format and an upstream's.

``Translation(client_format, upstream_format, request_id=…, created=…)`` is built once per
request. It turns the client's request body into the upstream's, the upstream's reply
(complete, streamed or an error) into the client's, and keeps the facts the ledger needs.
All of it is pure: bytes and dicts in, bytes and dicts out; time and ids are inputs.

Formats meet in the IR (``protocols.ir``): each format has one decoder and one encoder,
never a translator per pair (design/style-anchors.md §4.2). When both sides speak the same
format the translation runs in **observe mode**: the request body and every stream chunk
are returned unchanged (the same objects), and a decoder only watches the stream for
usage, the stop reason, tool calls and errors (architecture.md rule 2).

Format module interface
-----------------------
``FORMAT_MODULES`` maps each format name to the module implementing it. A module is
plugged in by adding its name there; it must provide:

``FORMAT: str``
    Its own format name (``ir.FORMAT_*``).
``decode_request(body: dict, ctx: ir.Context | None = None) -> ir.Request``
    A client request body. Raises ``ClientProtocolError`` (with ``param``) for invalid
    input, and ``UnsupportedFeature`` for fields ``ctx.upstream_format`` cannot express.
``encode_request(req: ir.Request, ctx: ir.Context | None = None) -> dict``
    The body for an upstream of this format. Records renamed tools in
    ``ctx.tool_names`` (wire name → client name). ``UnsupportedFeature`` when ``req``
    holds something this format cannot carry (a ``NativeBlock``/``NativeTool`` of another
    provider, …).
``decode_response(body: dict, ctx: ir.Context | None = None) -> ir.Response``
    A complete upstream reply; tool names mapped back through ``ctx.tool_names``.
    Raises ``UpstreamProtocolError`` on malformed input.
``encode_response(resp: ir.Response, ctx: ir.Context | None = None) -> dict``
    A complete reply for a client; ids come from ``ctx.new_id``, time from
    ``ctx.created``.
``decode_error(status: int, body: bytes) -> ir.ApiError``
    An upstream HTTP error (any body, JSON or not).
``encode_error(err: ir.ApiError, source_format: str | None = None) -> tuple[int, bytes]``
    Status and body for a client. ``source_format`` is where ``err`` came from, so a
    same-family source may keep its own type/code strings.
``StreamDecoder(ctx: ir.Context | None = None, *, observe: bool = False)``
    ``feed(data: bytes) -> list[ir.StreamEvent]`` for any split of the body, and
    ``close() -> list[ir.StreamEvent]`` at upstream EOF. Events follow the contract in
    ``protocols.ir``: exactly one terminal event, and EOF without the format's terminal
    marker becomes ``StreamError(ErrorKind.UPSTREAM_PROTOCOL, …)``. Raises only
    ``ProtocolError`` subclasses: a broken upstream (a bad frame, an exceeded buffer
    limit) raises, but the events decoded before it in the same ``feed`` are returned
    first and the error comes from the next call, so the events up to the error do not
    depend on the split (``protocols._streams``). Facts as attributes: ``model``, ``id``
    (``str | None``), ``usage`` (``ir.Usage | None``), ``stop_reason``
    (``ir.StopReason | None``), ``tool_calls`` (int), ``failed`` and ``done`` (bool). With
    ``observe=True`` it may skip work that only produces content events, but the facts
    must stay exact.
``StreamEncoder(ctx: ir.Context | None = None)``
    ``encode(events: list[ir.StreamEvent]) -> bytes`` (``b""`` when nothing is ready)
    and ``close() -> bytes`` at end of input: if no terminal event was encoded it writes
    the format's error event, never a clean end. Reads client options from
    ``ctx.client_request``. A ``done`` property tells whether a terminal event was written.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from . import ir, jsonio
from . import usage as usage_mod
from .errors import ProtocolError, UpstreamProtocolError
from .ir import ErrorKind, StreamError

__all__ = ["FORMAT_MODULES", "Translation", "encode_error", "format_module"]

#: Format name → module implementing the interface above. Modules are imported on first
#: use, so a format whose module is not installed only fails when asked for.
FORMAT_MODULES: dict[str, str] = {
    ir.FORMAT_OPENAI_CHAT: "protocols.openai_chat",
    ir.FORMAT_ANTHROPIC_MESSAGES: "protocols.anthropic_messages",
    ir.FORMAT_OPENAI_RESPONSES: "protocols.openai_responses",
    ir.FORMAT_GEMINI: "protocols.gemini",
}

_loaded: dict[str, ModuleType] = {}

#: Where a complete reply of each format keeps its usage and served model, and how its
#: decoder reads the usage: observe mode reads just these (see ``Translation.response``).
_REPLY_FACTS: dict[str, tuple[str, str, Any]] = {
    ir.FORMAT_OPENAI_CHAT: ("usage", "model", usage_mod.from_openai_chat),
    ir.FORMAT_ANTHROPIC_MESSAGES: ("usage", "model", usage_mod.from_anthropic),
    ir.FORMAT_OPENAI_RESPONSES: ("usage", "model", usage_mod.from_openai_responses),
    ir.FORMAT_GEMINI: ("usageMetadata", "modelVersion", usage_mod.from_gemini),
}


def format_module(name: str) -> ModuleType:
    """The module for format ``name``; ``ValueError`` for an unknown or missing format."""
    mod = _loaded.get(name)
    if mod is not None:
        return mod
    path = FORMAT_MODULES.get(name)
    if path is None:
        raise ValueError(f"unknown wire format {name!r}; known: {sorted(FORMAT_MODULES)}")
    try:
        mod = importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name != path:
            raise
        raise ValueError(f"wire format {name!r} is not available ({path} missing)") from None
    _loaded[name] = mod
    return mod


class Translation:
    """One request's translation (mutable, not thread-safe).

    Call ``request(body)`` first (it also tells the client-side encoder the client's
    options), then either ``response(body)`` for a complete reply, ``feed(chunk)`` for
    each streamed chunk followed by one ``finish()``, or ``error(status, body)`` for an
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
        "_dec", "_enc", "_dead", "_broke", "_cut", "_response", "_error", "_requested_model",
        "_observed", "_observed_usage",
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
        self._ctx = ir.Context(
            request_id=request_id,
            created=created,
            client_format=client_format,
            upstream_format=upstream_format,
            id_factory=id_factory,
        )
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

    @property
    def context(self) -> ir.Context:
        return self._ctx

    # -- request -----------------------------------------------------------------------

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """The upstream request body for the client's ``body``.

        Observe mode returns ``body`` itself without decoding it (only the model is
        read): an invalid body is the upstream's to reject, the gateway forwards what the
        client wrote.
        """
        ctx = self._ctx
        if self.observe:
            # Nothing is re-encoded, so the body is not decoded either: a Claude
            # Code request (~50 KB) costs ~270 us to decode and the passthrough
            # path needs only the model.  The decoders' facts do not depend on it.
            ctx.client_request = None
            model = body.get("model") if type(body) is dict else None
            self._requested_model = model if type(model) is str else None
            return body
        req = self._client.decode_request(body, ctx)
        ctx.client_request = req
        self._requested_model = req.model
        return self._upstream.encode_request(req, ctx)

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
            usage_key, _, read = _REPLY_FACTS[self.upstream_format]
            if type(body) is dict:
                u = body.get(usage_key)
                try:
                    # No usage object: zeros, as the decoder makes them.
                    self._observed_usage = read(u) if u is not None else ir.Usage()
                except ProtocolError:
                    self._broke = True
            return body
        resp = self._upstream.decode_response(body, self._ctx)
        self._response = resp
        return self._client.encode_response(resp, self._ctx)

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        """Status and body for the client, for the upstream's HTTP error reply.

        Observe mode passes the provider's own JSON error through unchanged; a body
        that is not one (an HTML page from a load balancer, plain text, nothing)
        becomes the client format's error, so the client can always read it."""
        err = self._upstream.decode_error(status, body)
        self._error = err
        if self.observe and _is_json_error(body):
            return status, body
        return self._client.encode_error(err, self.upstream_format)

    # -- streams -----------------------------------------------------------------------

    def _start_stream(self) -> None:
        self._dec = self._upstream.StreamDecoder(self._ctx, observe=self.observe)
        if not self.observe:
            self._enc = self._client.StreamEncoder(self._ctx)

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
            return self._enc.encode(events)
        except ProtocolError as e:
            return self._broken(e)

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
            out = self._enc.encode(dec.close())
        except ProtocolError as e:
            return self._broken(e)
        self._dead = True
        return out + self._enc.close()

    def _broken(self, e: ProtocolError) -> bytes:
        """The upstream broke its protocol mid-stream: end the client's stream with an
        error event (status hint 502) and ignore the rest of the input."""
        self._dead = self._broke = True
        kind = ErrorKind.UPSTREAM_PROTOCOL if isinstance(e, UpstreamProtocolError) else ErrorKind.SERVER
        try:
            return self._enc.encode([StreamError(kind, f"upstream protocol error: {e.message}",
                                                 e.status_hint)]) + self._enc.close()
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
        fn = getattr(enc, "keepalive", None)
        return fn() if fn is not None else None

    # -- facts -------------------------------------------------------------------------

    def _decoded(self) -> ir.Response | None:
        """The complete reply as IR; in observe mode decoded on first use."""
        body = self._observed
        if body is not None and self._response is None and not self._broke:
            try:
                self._response = self._upstream.decode_response(body, self._ctx)
            except ProtocolError:
                self._broke = True
        return self._response

    @property
    def usage(self) -> ir.Usage | None:
        if self._dec is not None and self._dec.usage is not None:
            return self._dec.usage
        if self._observed is not None:
            return self._observed_usage
        if self._response is not None:
            return self._response.usage
        return None

    @property
    def model(self) -> str | None:
        if self._dec is not None and self._dec.model:
            return self._dec.model
        body = self._observed
        if body is not None:
            model = body.get(_REPLY_FACTS[self.upstream_format][1]) if type(body) is dict else None
            return str(model) if model else self._requested_model
        if self._response is not None and self._response.model:
            return self._response.model
        return self._requested_model

    @property
    def stop_reason(self) -> ir.StopReason | None:
        if self._dec is not None:
            return self._dec.stop_reason
        resp = self._decoded()
        return resp.stop_reason if resp is not None else None

    @property
    def tool_calls_seen(self) -> int:
        if self._dec is not None:
            return self._dec.tool_calls
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


def _is_json_error(body: bytes) -> bool:
    """Every format's error body is a JSON object with an ``error`` object."""
    try:
        obj = jsonio.loads(body) if body else None
    except jsonio.JSONDecodeError:
        return False
    return type(obj) is dict and type(obj.get("error")) is dict


def encode_error(client_format: str, err: ir.ApiError) -> tuple[int, bytes]:
    """Status and body of ``err`` for a client of ``client_format``: the one way every
    error body of the gateway's own is written (the codec of that format encodes it,
    as an error in the client's own terms)."""
    mod = _loaded.get(client_format) or format_module(client_format)
    status, body = mod.encode_error(err, client_format)
    return status, body
