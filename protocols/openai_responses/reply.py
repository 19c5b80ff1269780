"""OpenAI Responses complete replies: ``decode_response`` and ``encode_response`` (the
``response`` object, docs/protocols.md §2.4)."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .. import usage as usage_mod
from .._fields import client_name as _client_name
from .._fields import custom_tool_names, unwrap_custom_input
from .._fields import other_fields as _rest
from .._fields import public as _public
from .._fields import translated as _translated
from ..errors import (
    ClientProtocolError,
    UnsupportedFeature,
    UpstreamProtocolError,
)
from ..ir import (
    ErrorKind,
    NativeBlock,
    Reasoning,
    Response,
    Role,
    StopReason,
    Text,
    ToolCall,
    ToolKind,
    Usage,
)
from .request_decode import _decode_assistant_message, _decode_model_item
from .request_encode import (
    _encode_part,
    _encode_reasoning_item,
    _encode_text,
    _encode_tool,
    _encode_tool_call,
    _encode_tool_choice,
    _new_message_item,
)
from .tables import (
    _ASSISTANT_ITEMS,
    _CODE_TO_KIND,
    _INCOMPLETE_TO_STOP,
    FORMAT,
    _ex,
    _new_id,
    _own,
)

# ---------------------------------------------------------------------------------------
# Complete replies
# ---------------------------------------------------------------------------------------

_RESPONSE_MODELED = frozenset(
    {"id", "model", "output", "status", "usage", "incomplete_details", "error", "object"})


def _incomplete_stop(details: Any) -> StopReason:
    reason = details.get("reason") if type(details) is dict else None
    if type(reason) is str:
        return _INCOMPLETE_TO_STOP.get(reason, StopReason.MAX_TOKENS)
    return StopReason.MAX_TOKENS


def _upstream(fn: Any, *args: Any) -> Any:
    """Run a client-side decoder on upstream data: its errors become upstream errors."""
    try:
        return fn(*args)
    except ClientProtocolError as e:
        raise UpstreamProtocolError(e.message, param=e.param) from None


def decode_response(body: Any, ctx: ir.Context | None = None) -> Response:
    """Decode an upstream ``response`` object (§2.4). Tool names are mapped back through
    ``ctx.tool_names``; output items the IR does not model stay ``NativeBlock``s."""
    if type(body) is not dict:
        raise UpstreamProtocolError("response is not an object", param="response")
    output = body.get("output")
    if type(output) is not list:
        raise UpstreamProtocolError("response without an output list", param="output")
    blocks: list[ir.Block] = []
    for i, item in enumerate(output):
        p = f"output[{i}]"
        if type(item) is not dict:
            raise UpstreamProtocolError(f"{p} is not an object", param=p)
        itype = item.get("type")
        if type(itype) is not str:
            raise UpstreamProtocolError(f"{p} without a type", param=f"{p}.type")
        if itype == "message":
            blocks.extend(_upstream(_decode_assistant_message, item, p))
        elif itype in _ASSISTANT_ITEMS:
            b = _upstream(_decode_model_item, item, itype, p)
            if type(b) is ToolCall and b.kind is not ToolKind.LOCAL_SHELL:
                b = ToolCall(id=b.id, name=_client_name(ctx, b.name), arguments=b.arguments,
                             kind=b.kind, extras=b.extras)
            blocks.append(b)
        else:
            blocks.append(NativeBlock(FORMAT, itype, item))
    has_tools = any(type(b) is ToolCall for b in blocks)
    status = body.get("status")
    if status == "incomplete":
        stop = _incomplete_stop(body.get("incomplete_details"))
    elif status == "failed":
        err = body.get("error")
        code = err.get("code") if type(err) is dict else None
        stop = StopReason.CONTEXT_WINDOW if code == "context_length_exceeded" else StopReason.ERROR
    else:
        stop = StopReason.TOOL_USE if has_tools else StopReason.END_TURN
    u = body.get("usage")
    extras = _rest(body, _RESPONSE_MODELED)
    for k in ("status", "incomplete_details", "error", "usage"):
        if k in body:
            extras[f"_{k}"] = body[k]
    return Response(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=tuple(blocks),
        stop_reason=stop,
        usage=usage_mod.from_openai_responses(u) if u is not None else Usage(),
        extras=_ex(extras),
    )


class _ClientTools:
    """What the client declared, to write each call as the item kind it expects: a
    custom tool gets ``custom_tool_call`` (its raw input unwrapped from the
    ``{"input": …}`` object other providers return, ``ir.CUSTOM_INPUT_KEY``), the
    emulated ``local_shell`` gets ``local_shell_call``."""

    __slots__ = ("custom", "local_shell", "request")

    def __init__(self, ctx: ir.Context | None) -> None:
        req = ctx.client_request if ctx is not None else None
        self.request = req
        self.custom = custom_tool_names(ctx)
        self.local_shell: frozenset[str] = frozenset()
        if req is not None:
            self.local_shell = frozenset(
                t.name for t in req.tools
                if type(t) is ir.FunctionTool and "_local_shell" in _own(t))

    def kind(self, kind: ToolKind, name: str) -> ToolKind:
        if kind is ToolKind.FUNCTION:
            if name in self.custom:
                return ToolKind.CUSTOM
            if name in self.local_shell:
                return ToolKind.LOCAL_SHELL
        return kind


def _shell_action(arguments: str) -> dict[str, Any]:
    """A ``local_shell_call`` action from a call's arguments: ``type`` ``exec`` and an
    ``env`` object, both required by the item schema, filled in when missing."""
    action = ir.parse_arguments(arguments, jsonio.loads)
    out: dict[str, Any] = {"type": "exec"}
    out.update((k, v) for k, v in action.items() if k != "type")
    if type(out.get("env")) is not dict:
        out["env"] = {}
    return out


def _response_base(ctx: ir.Context | None, rid: str, model: str) -> dict[str, Any]:
    """The echo part of a ``response`` object (§2.4), from the client's request."""
    req = ctx.client_request if ctx is not None else None
    own = _own(req) if req is not None else {}
    tc = req.tool_choice if req is not None else None
    tools = []
    if req is not None:
        for t in req.tools:
            try:
                entry = _encode_tool(t, None, None)
            except UnsupportedFeature:
                continue
            if entry is not None:
                tools.append(entry)
    choice: Any = own.get("_tool_choice")
    if choice is None:
        # tc comes from req: both are set or neither.
        choice = (_encode_tool_choice(tc, req, None)
                  if req is not None and tc is not None and tc.mode else "auto")
    text = _encode_text(req.response_format, own.get("_text")) if req is not None else None
    text = dict(text or {})
    text.setdefault("format", {"type": "text"})
    text.setdefault("verbosity", "medium")
    r = req.reasoning if req is not None else None
    # A copy of the template, then the fields that depend on the request (every mutable
    # value is a new object).
    out = _RESPONSE_BASE.copy()
    out["id"] = rid
    out["created_at"] = ctx.created if ctx is not None else 0
    out["instructions"] = "\n".join(t.text for t in req.system) if req and req.system else None
    out["max_output_tokens"] = req.max_output_tokens if req is not None else None
    out["max_tool_calls"] = own.get("max_tool_calls")
    out["model"] = model or (req.model if req is not None else "")
    out["output"] = []
    out["parallel_tool_calls"] = not (tc is not None and tc.disable_parallel)
    out["prompt_cache_key"] = own.get("prompt_cache_key")
    out["reasoning"] = {"effort": r.effort if r else None, "summary": r.summary if r else None}
    out["safety_identifier"] = own.get("safety_identifier")
    out["store"] = own.get("store", True) if req is not None else False
    out["temperature"] = req.temperature if req and req.temperature is not None else 1.0
    out["text"] = text
    out["tool_choice"] = choice
    out["tools"] = tools
    out["top_p"] = req.top_p if req and req.top_p is not None else 1.0
    out["user"] = req.user if req is not None else None
    out["metadata"] = req.metadata if req and req.metadata is not None else {}
    return out


#: The ``response`` object's fields in wire order, with the values ``_response_base``
#: does not set (``None`` marks those it does). Copying this is a single C-level copy
#: of a presized dict; a 33-key literal holding lists and dicts is built key by key and
#: resized three times (measured 1.0 µs against 0.5 µs for copy and fill).
#: Every field the API writes is here whatever the upstream (docs/protocols.md §5.9):
#: ``completed_at`` stays null because protocols/ reads no clock (a Responses upstream's
#: own value is kept on a round trip); the penalties are the API's defaults, 0.
_RESPONSE_BASE: dict[str, Any] = {
    "id": None,
    "object": "response",
    "created_at": None,
    "status": "in_progress",
    "background": False,
    "completed_at": None,
    "error": None,
    "frequency_penalty": 0.0,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "model": None,
    "output": None,
    "parallel_tool_calls": None,
    "presence_penalty": 0.0,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "prompt_cache_retention": None,
    "reasoning": None,
    "safety_identifier": None,
    "service_tier": "default",
    "store": None,
    "temperature": None,
    "text": None,
    "tool_choice": None,
    "tools": None,
    "top_logprobs": 0,
    "top_p": None,
    "truncation": "disabled",
    "usage": None,
    "user": None,
    "metadata": None,
}


def _terminal(stop: StopReason) -> tuple[str, dict[str, Any] | None, str | None]:
    """(status, incomplete_details, error code) for a stop reason (§5.4)."""
    if stop is StopReason.MAX_TOKENS:
        return "incomplete", {"reason": "max_output_tokens"}, None
    if stop is StopReason.CONTENT_FILTER:
        return "incomplete", {"reason": "content_filter"}, None
    if stop is StopReason.CONTEXT_WINDOW:
        return "failed", None, "context_length_exceeded"
    if stop is StopReason.ERROR:
        return "failed", None, "server_error"
    return "completed", None, None


def encode_response(resp: Response, ctx: ir.Context | None = None) -> dict[str, Any]:
    """A ``response`` object for a Responses client (§2.4)."""
    counter = [0]
    own = _own(resp)
    tools: _ClientTools | None = None  # made at the first tool call
    translated = _translated(ctx, FORMAT)
    round_trip = bool(own) and not translated
    rid = ctx.new_id("resp_") if ctx is not None else resp.id
    if round_trip:
        # Same format (a round trip): the upstream's own echo fields, over the complete
        # set when the upstream left one out (an upstream as current as the API writes
        # them all, and the set is not built).
        out = _public(own)
        if not _RESPONSE_BASE.keys() <= out.keys():
            out = {**_response_base(ctx, rid, resp.model), **out}
        out["id"] = rid
        out["object"] = "response"
        out["model"] = resp.model
    else:
        out = _response_base(ctx, rid, resp.model)
    items: list[dict[str, Any]] = []
    msg: dict[str, Any] | None = None
    for b in resp.content:
        if type(b) is Text:
            bown = _own(b)
            if not bown and msg is None:
                # Text from another format (the usual translated reply): a new message
                # item holding one output_text part, as the general path below writes it.
                msg = {"type": "message", "role": "assistant",
                       "content": [{"type": "output_text", "text": b.text, "annotations": [],
                                    "logprobs": []}],
                       "id": _new_id(ctx, "msg_", counter), "status": "completed"}
                items.append(msg)
                continue
            head = bown.get("_item")
            if head is not None or msg is None:
                msg = _new_message_item(head)
                if "id" not in msg:
                    msg["id"] = _new_id(ctx, "msg_", counter)
                msg.setdefault("status", "completed")
                items.append(msg)
                if head is not None and (head.get("_empty") or head.get("_string")):
                    msg["content"] = [] if head.get("_empty") else b.text
                    msg = None
                    continue
            part = {k: v for k, v in bown.items() if k != "_item"}
            if not part:
                part = {"annotations": [], "logprobs": []}
            msg["content"].append(_encode_part(Text(b.text, extras=_ex(part)), "output",
                                               Role.ASSISTANT))
            continue
        msg = None
        if type(b) is ToolCall:
            if tools is None:
                tools = _ClientTools(ctx)
            items.append(_response_tool_item(b, tools, ctx, counter))
        elif type(b) is Reasoning:
            item = _encode_reasoning_item(b, False, lambda: _new_id(ctx, "rs_", counter))
            if item is not None:
                items.append(item)
        elif type(b) is NativeBlock and b.provider == FORMAT:
            items.append(b.data)
    out["output"] = items
    status, details, code = _terminal(resp.stop_reason)
    out["status"] = own.get("_status", status) if round_trip else status
    if round_trip and "_incomplete_details" in own:
        out["incomplete_details"] = own["_incomplete_details"]
    else:
        out["incomplete_details"] = details
    if round_trip and "_error" in own:
        out["error"] = own["_error"]
    else:
        out["error"] = {"code": code, "message": "the upstream model failed"} if code else None
    raw_usage = own.get("_usage") if not translated else None
    out["usage"] = _usage_wire(resp.usage)
    if raw_usage is not None and (
        type(raw_usage) is dict and usage_mod.from_openai_responses(raw_usage) == resp.usage
    ):
        # The upstream's own usage, over the complete one: its extra fields are kept and
        # a detail it left out is still written.
        for k, v in raw_usage.items():
            base = out["usage"].get(k)
            out["usage"][k] = {**base, **v} if type(base) is dict and type(v) is dict else v
    return out


def _response_tool_item(b: ToolCall, tools: _ClientTools, ctx: ir.Context | None,
                        counter: list[int]) -> dict[str, Any]:
    own = _own(b)
    if own:
        item = _encode_tool_call(b, None)
        return item
    kind = tools.kind(b.kind, b.name)
    if kind is ToolKind.CUSTOM:
        text = b.arguments if b.kind is ToolKind.CUSTOM else unwrap_custom_input(b.arguments)
        return {"id": _new_id(ctx, "ctc_", counter), "type": "custom_tool_call",
                "status": "completed", "call_id": b.id, "name": b.name, "input": text}
    if kind is ToolKind.LOCAL_SHELL:
        return {"id": _new_id(ctx, "lsh_", counter), "type": "local_shell_call",
                "status": "completed", "call_id": b.id, "action": _shell_action(b.arguments)}
    return {"id": _new_id(ctx, "fc_", counter), "type": "function_call", "status": "completed",
            "arguments": b.arguments or "{}", "call_id": b.id, "name": b.name}


def _usage_wire(u: Usage) -> dict[str, Any]:
    """Responses usage with every detail field written: the current SDK types require
    ``input_tokens_details.cache_write_tokens`` and Codex accepts it (§2.7)."""
    out = usage_mod.to_openai_responses(u)
    out["input_tokens_details"].setdefault("cache_write_tokens", 0)
    return out


def _error_kind(code: Any) -> ErrorKind:
    if type(code) is str:
        kind = _CODE_TO_KIND.get(code)
        if kind is not None:
            return kind
    return ErrorKind.SERVER
