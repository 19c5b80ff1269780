"""OpenAI Chat Completions complete replies: ``decode_response`` and ``encode_response``.

Section marks (§) refer to docs/protocols.md.
"""

from __future__ import annotations

from typing import Any

from .. import ir
from .. import usage as usage_mod
from .._fields import client_name as _client_name
from .._fields import public as _public
from .._openai import wire_tool_id
from ..errors import ClientProtocolError, UpstreamProtocolError
from ..ir import (
    Reasoning,
    Response,
    StopReason,
    Text,
    ToolCall,
    ToolKind,
    Usage,
)
from .request import _decode_tool_call
from .tables import _FINISH_TO_STOP, _STOP_TO_FINISH, FORMAT, _rest

# ---------------------------------------------------------------------------------------
# Complete replies
# ---------------------------------------------------------------------------------------


def _upstream_dict(v: Any, what: str) -> dict[str, Any]:
    if type(v) is not dict:
        raise UpstreamProtocolError(f"{what} is not an object", param=what)
    return v


def _stop_from_finish(finish: Any, has_tools: bool) -> StopReason:
    # §1.4 gotcha: a forced tool_choice ends with "stop"; decide from the calls first.
    if has_tools and finish in (None, "stop", "tool_calls", "function_call"):
        return StopReason.TOOL_USE
    if type(finish) is not str:
        return StopReason.END_TURN
    return _FINISH_TO_STOP.get(finish, StopReason.END_TURN)


def decode_response(body: Any, ctx: ir.Context | None = None) -> Response:
    """Decode an upstream ``chat.completion`` object (first choice only)."""
    if type(body) is not dict:
        _upstream_dict(body, "response")  # raises
    choices = body.get("choices")
    if type(choices) is not list or not choices:
        raise UpstreamProtocolError("chat.completion without choices", param="choices")
    choice = choices[0]
    if type(choice) is not dict:
        _upstream_dict(choice, "choices[0]")  # raises
    msg = choice.get("message")
    if type(msg) is not dict:
        _upstream_dict(msg, "choices[0].message")  # raises
    blocks: list[ir.Block] = []
    rc = msg.get("reasoning_content") or msg.get("reasoning")
    if type(rc) is str and rc:
        blocks.append(Reasoning(text=rc, extras={FORMAT: {"reasoning_content": True}}))
    content = msg.get("content")
    if type(content) is str and content:
        blocks.append(Text(content))
    refusal = msg.get("refusal")
    if type(refusal) is str and refusal:
        blocks.append(Text(refusal, extras={FORMAT: {"type": "refusal"}}))
    calls = msg.get("tool_calls") or []
    if type(calls) is not list:
        raise UpstreamProtocolError("tool_calls is not an array", param="tool_calls")
    for j, tc in enumerate(calls):
        try:
            call = _decode_tool_call(tc, f"choices[0].message.tool_calls[{j}]")
        except ClientProtocolError as e:
            raise UpstreamProtocolError(e.message, param=e.param) from None
        blocks.append(ToolCall(id=call.id, name=_client_name(ctx, call.name),
                               arguments=call.arguments, kind=call.kind))
    u = body.get("usage")
    return Response(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=tuple(blocks),
        stop_reason=_stop_from_finish(choice.get("finish_reason"), bool(calls)),
        usage=usage_mod.from_openai_chat(u) if u is not None else Usage(),
        extras=_rest(body, _RESPONSE_KEYS),
    )


_RESPONSE_KEYS = frozenset({"id", "object", "model", "choices", "usage"})


def encode_response(resp: Response, ctx: ir.Context | None = None) -> dict[str, Any]:
    """A ``chat.completion`` object for a Chat client."""
    texts: list[str] = []
    refusal = None
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for b in resp.content:
        if type(b) is Text:
            if ir.extras_for(b, FORMAT).get("type") == "refusal":
                refusal = b.text
            else:
                texts.append(b.text)
        elif type(b) is ToolCall:
            if b.kind is ToolKind.CUSTOM:
                calls.append({"id": wire_tool_id(b.id), "type": "custom",
                              "custom": {"name": b.name, "input": b.arguments}})
            else:
                calls.append({"id": wire_tool_id(b.id), "type": "function",
                              "function": {"name": b.name, "arguments": b.arguments}})
        elif type(b) is Reasoning:
            text = b.text or "\n\n".join(b.summary)
            if text:
                reasoning.append(text)
    text = "".join(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": refusal,
    }
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    finish = _STOP_TO_FINISH[resp.stop_reason]
    if calls and finish == "stop":
        finish = "tool_calls"
    out = {
        "id": ctx.new_id("chatcmpl-") if ctx is not None else resp.id,
        "object": "chat.completion",
        "created": ctx.created if ctx is not None else 0,
        "model": resp.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_mod.to_openai_chat(resp.usage),
        # The tier the API reports for a request that named none (§1.4).
        "service_tier": "default",
    }
    if ctx is None or ctx.upstream_format == FORMAT:
        # Chat's own extra fields (created, system_fingerprint, service_tier) go back
        # only to where they came from: without a translation context, or Chat to Chat.
        for k, v in _public(ir.extras_for(resp, FORMAT)).items():
            if k == "created" and ctx is not None:
                continue
            out[k] = v
    return out
