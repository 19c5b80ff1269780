"""The wire-format registry: format name → the package that implements it.

Everything that depends on a format reaches it through ``format_module(name)``; nothing
in ``protocols/`` or ``proxy/`` compares format names to pick a code path. A format is
one package ``protocols/<name>/`` whose ``__init__`` (its facade) provides the interface
below, plugged in by one line in ``FORMAT_MODULES``.

Format module interface
-----------------------
Translation (see ``protocols.translate``):

``FORMAT: str``
    Its own format name (``ir.FORMAT_*`` for the built-in four).
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
``is_error_body(body: bytes) -> bool``
    Whether ``body`` is this format's own JSON error shape (observe mode relays such a
    body unchanged and rewrites anything else, an HTML page from a load balancer say).
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
    ``ctx.client_request``. A ``done`` property tells whether a terminal event was
    written, and ``keepalive() -> bytes | None`` gives an ignorable event in the stream
    when the format has one that resets a client's idle timer (``None`` otherwise).

Observe mode (same format on both sides; see ``protocols.observe``):

``REPLY_FACTS: tuple[str, str, Callable[[Any], ir.Usage]]``
    Where a complete reply keeps its usage and served model, and the reader of that
    usage object (the same one the decoders use).
``request_stream_usage(body: dict) -> dict | None``
    A shallow copy of a streaming request that asks the provider to report usage when
    the format makes that optional and the client did not ask (Chat
    ``stream_options.include_usage``); ``None`` when nothing must change.
``stream_watch(*, strip_usage: bool = False) -> StreamWatch``
    The fact reader ``StreamTap`` drives over a same-format stream; ``strip_usage``
    drops the usage report ``request_stream_usage`` asked for.
``stream_error_event(message: str, kind: str, next_sequence: int) -> bytes``
    The event that ends a same-format stream after the provider failed mid-stream, in
    the format's own error shape. ``kind`` is the failure (``timeout``,
    ``stream_cut``, …); ``next_sequence`` the sequence number it must carry where the
    format numbers its events.
``HEARTBEAT: bytes``
    A keep-alive a client of this format ignores (an SSE comment, or the format's own
    ping event).

Request-body upkeep (raw wire bodies, no IR; see ``protocols.model_limits`` and
``protocols.loopguard``):

``cap_output_tokens(body: dict, cap: int) -> dict``, ``strip_reasoning(body: dict) ->
dict``
    ``body`` fitted to the target model (a shallow copy), or ``body`` itself when
    nothing changes.
``tool_calls(body: dict) -> Iterator[tuple[str, Any]]``
    The history's tool calls as (name, arguments), newest first.
``inject_warning(body: dict, text: str) -> dict``
    A copy of ``body`` carrying ``text`` for the model, the way the format carries a
    note naturally.

Request facts for accounting (see ``protocols.request_facts``):

``output_tokens_asked(body: dict) -> int | None``
    The output-token limit the request names, if any.
``end_user(body: dict) -> str | None``
    The end user the client names for abuse tracking, if the format has such a field.

Optional: ``estimate_input_tokens(body: dict) -> int`` (``protocols.tokens``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from . import ir

__all__ = ["FORMAT_MODULES", "encode_error", "format_module"]

#: Format name → package implementing the interface above. Packages are imported on
#: first use, so a format whose package is not installed only fails when asked for.
FORMAT_MODULES: dict[str, str] = {
    ir.FORMAT_OPENAI_CHAT: "protocols.openai_chat",
    ir.FORMAT_ANTHROPIC_MESSAGES: "protocols.anthropic_messages",
    ir.FORMAT_OPENAI_RESPONSES: "protocols.openai_responses",
    ir.FORMAT_GEMINI: "protocols.gemini",
}

_loaded: dict[str, ModuleType] = {}


def format_module(name: str) -> ModuleType:
    """The package for format ``name``; ``ValueError`` for an unknown or missing format."""
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


def encode_error(client_format: str, err: ir.ApiError) -> tuple[int, bytes]:
    """Status and body of ``err`` for a client of ``client_format``: every error body the
    gateway writes itself goes through here, so a client always gets its own format.
    The error is in the client's own terms (``source_format`` is the client's), so its
    ``code`` and ``param`` are kept."""
    result: tuple[int, bytes] = format_module(client_format).encode_error(err, client_format)
    return result
