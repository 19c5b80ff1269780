"""Anthropic Messages complete replies and errors: ``decode_response``,
``encode_response``, ``decode_error``, ``encode_error`` (docs/protocols.md §3.7, §3.9)."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .. import usage as usage_mod
from .._fields import client_name as _client_name
from .._fields import (
    custom_tool_names,
)
from ..errors import (
    ClientProtocolError,
    UpstreamProtocolError,
)
from ..ir import (
    ApiError,
    ErrorKind,
    NativeBlock,
    Reasoning,
    Response,
    StopReason,
    Text,
    ToolCall,
    ToolKind,
    Usage,
)
from .request_decode import _decode_block, wire_tool_id
from .tables import (
    _KIND_TO_ERROR,
    _STATUS_TO_KIND,
    _STOP_FROM_WIRE,
    _STOP_TO_WIRE,
    _TYPE_TO_KIND,
    FORMAT,
    MESSAGE_NULLS,
    direct_caller,
)

# ---------------------------------------------------------------------------------------
# Complete replies
# ---------------------------------------------------------------------------------------


def _stop_from_wire(stop: Any) -> StopReason:
    if type(stop) is not str:
        return StopReason.END_TURN
    return _STOP_FROM_WIRE.get(stop, StopReason.END_TURN)


def decode_response(body: Any, ctx: ir.Context | None = None) -> Response:
    """Decode an upstream ``message`` object."""
    if type(body) is not dict:
        raise UpstreamProtocolError("response is not an object", param="response")
    content = body.get("content")
    if type(content) is not list:
        raise UpstreamProtocolError("message without a content list", param="content")
    blocks: list[ir.Block] = []
    custom = custom_tool_names(ctx)
    for j, c in enumerate(content):
        try:
            b = _decode_block(c, f"content[{j}]")
        except ClientProtocolError as e:
            raise UpstreamProtocolError(e.message, param=e.param) from None
        if type(b) is ToolCall:
            name = _client_name(ctx, b.name)
            if name in custom:
                # A client custom tool: the raw input, out of its {"input": …} wrapper.
                raw = b.input.get(ir.CUSTOM_INPUT_KEY)
                b = ToolCall(id=b.id, name=name, kind=ToolKind.CUSTOM,
                             arguments=raw if type(raw) is str else b.arguments)
            else:
                b = ToolCall(id=b.id, name=name, arguments=b.arguments, input=b.input)
        blocks.append(b)
    u = body.get("usage")
    stop_sequence = body.get("stop_sequence")
    return Response(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=tuple(blocks),
        stop_reason=_stop_from_wire(body.get("stop_reason")),
        stop_sequence=stop_sequence if type(stop_sequence) is str else None,
        usage=usage_mod.from_anthropic(u) if u is not None else Usage(),
    )


def _reasoning_block(b: Reasoning) -> dict[str, Any] | None:
    if b.redacted_data is not None:
        if b.provider != FORMAT:
            return None
        return {"type": "redacted_thinking", "data": b.redacted_data}
    text = b.text or "\n\n".join(b.summary)
    if not text:
        return None
    # Foreign reasoning is shown with an empty signature; encode_request drops it again
    # on the way back, because only Anthropic's own signatures are valid (§5.8 case 11).
    return {"type": "thinking", "thinking": text,
            "signature": b.signature if b.provider == FORMAT and b.signature else ""}


def encode_response(resp: Response, ctx: ir.Context | None = None) -> dict[str, Any]:
    """A ``message`` object for an Anthropic client."""
    content: list[dict[str, Any]] = []
    has_tools = False
    for b in resp.content:
        if type(b) is Text:
            if b.text:
                content.append({"type": "text", "text": b.text, "citations": None})
        elif type(b) is ToolCall:
            has_tools = True
            if b.kind is ToolKind.CUSTOM:
                inp: Any = {ir.CUSTOM_INPUT_KEY: b.arguments}
            elif type(b.input) is dict:
                inp = b.input
            else:
                inp = ir.parse_arguments(b.arguments, jsonio.loads)
            content.append({"type": "tool_use", "id": wire_tool_id(b.id), "name": b.name,
                            "input": inp, "caller": direct_caller()})
        elif type(b) is Reasoning:
            rb = _reasoning_block(b)
            if rb is not None:
                content.append(rb)
        elif type(b) is NativeBlock and b.provider == FORMAT:
            content.append(b.data)
    stop = resp.stop_reason
    if has_tools and stop is StopReason.END_TURN:
        stop = StopReason.TOOL_USE  # §5.4: decide tool use from the calls first
    stop_sequence = resp.stop_sequence if stop is StopReason.STOP_SEQUENCE else None
    if stop is StopReason.STOP_SEQUENCE and stop_sequence is None:
        stop = StopReason.END_TURN  # §5.4: only report a stop sequence when known
    creq = ctx.client_request if ctx is not None else None
    return {
        "id": ctx.new_id("msg_") if ctx is not None else resp.id,
        "type": "message",
        "role": "assistant",
        # An upstream that names no model: the one asked for (``model`` has minLength 1).
        "model": resp.model or (creq.model if creq is not None else ""),
        "content": content,
        "stop_reason": _STOP_TO_WIRE[stop],
        "stop_sequence": stop_sequence,
        "usage": usage_mod.to_anthropic_message(resp.usage),
        **MESSAGE_NULLS,
    }


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def _kind_for(status: int, etype: Any) -> ErrorKind:
    kind = _TYPE_TO_KIND.get(etype) if type(etype) is str else None
    if kind is not None:
        return kind
    kind = _STATUS_TO_KIND.get(status)
    if kind is not None:
        return kind
    return ErrorKind.INVALID_REQUEST if 400 <= status < 500 else ErrorKind.SERVER


def decode_error(status: int, body: bytes) -> ApiError:
    """An upstream error reply as an ``ApiError`` (tolerates non-JSON bodies)."""
    try:
        obj = jsonio.loads(body) if body else None
    except jsonio.JSONDecodeError:
        obj = None
    err = obj.get("error") if type(obj) is dict else None
    if type(err) is dict:
        message = err.get("message")
        etype = err.get("type")
        message = message if type(message) is str else str(message or "")
    else:
        message = body[:500].decode("utf-8", "replace").strip() or f"HTTP {status}"
        etype = None
    return ApiError(kind=_kind_for(status, etype), message=message, status=status,
                    type_=etype if type(etype) is str else None)


def encode_error(err: ApiError, source_format: str | None = None) -> tuple[int, bytes]:
    """Status and body for an Anthropic client: ``{"type":"error","error":{type,
    message},"request_id":null}`` (no request id reaches an encoder), with the status of
    the kind (529 for overloaded, §5.7), or the error's own status when it is already in
    Anthropic's terms (``source_format`` Anthropic)."""
    status, etype = _KIND_TO_ERROR[err.kind]
    own = source_format == FORMAT
    if own and err.type_ in _TYPE_TO_KIND:
        etype = err.type_  # a type outside Anthropic's vocabulary keeps the kind's
    if own or (err.kind in (ErrorKind.INVALID_REQUEST, ErrorKind.SERVER)
               and err.status // 100 == status // 100):
        status = err.status
    return status, jsonio.dumps({"type": "error", "error": {"type": etype, "message": err.message},
                                 "request_id": None})


def is_error_body(body: bytes) -> bool:
    """Whether ``body`` is Anthropic's own error shape: ``{"type": "error", "error":
    {...}}``."""
    try:
        obj = jsonio.loads(body) if body else None
    except jsonio.JSONDecodeError:
        return False
    return type(obj) is dict and obj.get("type") == "error" and type(obj.get("error")) is dict
