"""Gemini complete replies and errors: ``decode_response``, ``encode_response``,
``decode_error``, ``encode_error``.

Section marks (§) refer to docs/protocols.md.
"""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .. import usage as usage_mod
from .._fields import client_name as _client_name
from .._fields import custom_tool_names
from .._fields import other_fields as _rest
from .._fields import public as _public
from ..errors import (
    ClientProtocolError,
    UpstreamProtocolError,
)
from ..ir import (
    ApiError,
    ErrorKind,
    Message,
    Reasoning,
    Response,
    Role,
    StopReason,
    ToolCall,
    ToolKind,
    Usage,
)
from .payload import _payload_signature
from .request_decode import _decode_part
from .request_encode import _encode_message
from .tables import (
    _FINISH_TO_STOP,
    _HTTP_KIND,
    _KIND_STATUS,
    _STATUS_HTTP,
    _STATUS_KIND,
    _STOP_TO_FINISH,
    FORMAT,
    _ex,
    _own,
    synth_tool_id,
)

# ---------------------------------------------------------------------------------------
# Complete replies
# ---------------------------------------------------------------------------------------


def _call_from_wire(fc: dict[str, Any], ctx: ir.Context | None, custom: frozenset[str],
                    seed: str, ordinal: int) -> tuple[str, str, str, ToolKind, Any, bool]:
    """(id, name, arguments, kind, args object, synthesised) of a functionCall part."""
    name = fc.get("name")
    if type(name) is not str:
        raise UpstreamProtocolError("functionCall without a name", param="functionCall.name")
    args = fc.get("args")
    if args is None:
        args = {}
    if type(args) is not dict:
        raise UpstreamProtocolError("functionCall.args is not an object", param="functionCall.args")
    wire_id = fc.get("id")
    if type(wire_id) is str and wire_id:
        cid, synth = wire_id, False
    else:
        cid, synth = synth_tool_id(seed, ordinal, name), True
    name = _client_name(ctx, name)
    if name in custom and type(args.get(ir.CUSTOM_INPUT_KEY)) is str:
        return cid, name, args[ir.CUSTOM_INPUT_KEY], ToolKind.CUSTOM, None, synth
    return cid, name, jsonio.dumps(args).decode(), ToolKind.FUNCTION, args, synth


def _stop(finish: Any, blocked: bool, has_tools: bool) -> StopReason:
    if blocked:
        return StopReason.CONTENT_FILTER
    stop = StopReason.END_TURN
    if type(finish) is str:
        stop = _FINISH_TO_STOP.get(finish, StopReason.END_TURN)
    if has_tools and stop is StopReason.END_TURN:
        return StopReason.TOOL_USE  # §5.4: decide tool use from the calls first
    return stop


def decode_response(body: Any, ctx: ir.Context | None = None) -> Response:
    """Decode an upstream ``GenerateContentResponse`` (first candidate only)."""
    if type(body) is not dict:
        raise UpstreamProtocolError("response is not an object", param="response")
    rid = body.get("responseId")
    rid = rid if type(rid) is str else ""
    seed = rid or (ctx.request_id if ctx is not None else "")
    custom = custom_tool_names(ctx)
    blocks: list[ir.Block] = []
    finish = None
    cand_rest: dict[str, Any] = {}
    candidates = body.get("candidates")
    if candidates is not None and type(candidates) is not list:
        raise UpstreamProtocolError("candidates is not an array", param="candidates")
    ordinal = 0
    if candidates:
        cand = candidates[0]
        if type(cand) is not dict:
            raise UpstreamProtocolError("candidate is not an object", param="candidates[0]")
        finish = cand.get("finishReason")
        cand_rest = _rest(cand, {"content", "finishReason"})
        content = cand.get("content")
        if content is not None and type(content) is not dict:
            raise UpstreamProtocolError("candidates[0].content is not an object",
                                        param="candidates[0].content")
        parts = content.get("parts") if content is not None else None
        if content is not None:
            cand_rest["_content"] = _rest(content, {"parts"})
        for j, part in enumerate(parts if type(parts) is list else ()):
            p = f"candidates[0].content.parts[{j}]"
            if type(part) is not dict:
                raise UpstreamProtocolError(f"{p} is not an object", param=p)
            if "functionCall" in part:
                fc = part["functionCall"]
                if type(fc) is not dict:
                    raise UpstreamProtocolError(f"{p}.functionCall is not an object", param=p)
                sig = part.get("thoughtSignature")
                if type(sig) is str:
                    blocks.append(Reasoning(signature=sig, provider=FORMAT))
                cid, name, args, kind, obj, synth = _call_from_wire(fc, ctx, custom, seed, ordinal)
                ordinal += 1
                own = _rest(part, {"functionCall", "thoughtSignature"})
                if not synth:
                    own["_wire_id"] = True
                if "args" not in fc:
                    own["_no_args"] = True
                if _rest(fc, {"name", "args", "id"}):
                    own["_fc"] = _rest(fc, {"name", "args", "id"})
                blocks.append(ToolCall(id=cid, name=name, arguments=args, input=obj, kind=kind,
                                       extras=_ex(own)))
            else:
                try:
                    blocks.extend(_decode_part(part, p, Role.ASSISTANT, [], False))
                except ClientProtocolError as e:
                    raise UpstreamProtocolError(e.message, param=e.param) from None
    feedback = body.get("promptFeedback")
    blocked = type(feedback) is dict and feedback.get("blockReason") is not None
    u = body.get("usageMetadata")
    extras = _rest(body, {"candidates", "usageMetadata", "modelVersion", "responseId"})
    if candidates is None:
        extras["_no_candidates"] = True
    if cand_rest:
        extras["_candidate"] = cand_rest
    if finish is not None:
        extras["_finish"] = finish
    if u is not None:
        extras["_usage"] = u
    model = body.get("modelVersion")
    return Response(
        id=rid,
        model=model if type(model) is str else "",
        content=tuple(blocks),
        stop_reason=_stop(finish, blocked, any(type(b) is ToolCall for b in blocks)),
        usage=usage_mod.from_gemini(u) if u is not None else Usage(),
        extras=_ex(extras),
    )


def encode_response(resp: Response, ctx: ir.Context | None = None) -> dict[str, Any]:
    """A ``GenerateContentResponse`` for a Gemini client. A reply decoded from a Gemini
    upstream keeps its own fields; any other is written from the IR alone."""
    own = _own(resp)
    translated = not own
    msg = Message(Role.ASSISTANT, resp.content)
    contents: list[dict[str, Any]] = []
    _encode_message(msg, "content", contents, None, {}, translated)
    parts = contents[0]["parts"] if contents else []
    if translated:
        parts = _reply_parts(resp.content, parts)
    out: dict[str, Any] = {}
    if not own.get("_no_candidates"):
        cand: dict[str, Any] = {"content": {**(own.get("_candidate", {}).get("_content") or {}),
                                            "parts": parts, "role": "model"}}
        if "_candidate" in own and "_content" not in own["_candidate"]:
            del cand["content"]
        finish = own.get("_finish")
        if finish is None or _stop(finish, False, False) is not _plain(resp.stop_reason):
            finish = _STOP_TO_FINISH[resp.stop_reason]
        cand["finishReason"] = finish
        cand.update(_public(own.get("_candidate") or {"index": 0}))
        out["candidates"] = [cand]
    raw_usage = own.get("_usage")
    if raw_usage is not None and usage_mod.from_gemini(raw_usage) == resp.usage:
        out["usageMetadata"] = raw_usage
    else:
        out["usageMetadata"] = usage_mod.to_gemini(resp.usage)
    out["modelVersion"] = resp.model
    out["responseId"] = ctx.new_id("resp_") if ctx is not None else resp.id
    out.update(_public(own))
    return out


def _plain(stop: StopReason) -> StopReason:
    return StopReason.END_TURN if stop is StopReason.TOOL_USE else stop


def _reply_parts(blocks: tuple[ir.Block, ...], parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parts for a translated reply: calls carry their ids (a Gemini client echoes them in
    its ``functionResponse``), and reasoning from another provider becomes a thought part
    with a payload signature (module docstring)."""
    out: list[dict[str, Any]] = []
    calls = iter([b for b in blocks if type(b) is ToolCall])
    for part in parts:
        if "functionCall" in part:
            b = next(calls, None)
            if b is not None:
                part = {**part, "functionCall": {**part["functionCall"], "id": b.id}}
        out.append(part)
    # Reasoning _encode_message dropped (not Gemini's own) is shown first, as thoughts.
    thoughts: list[dict[str, Any]] = []
    for r in blocks:
        if type(r) is not Reasoning or r.provider == FORMAT:
            continue
        if r.provider is not None and (r.signature or r.redacted_data is not None):
            thoughts.append({"text": r.text, "thought": True,
                             "thoughtSignature": _payload_signature(
                                 r.provider, r.text, r.signature, r.redacted_data)})
        elif r.text or r.summary:
            thoughts.append({"text": r.text or "\n\n".join(r.summary), "thought": True})
    return thoughts + out


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def _error_kind(status: int, name: Any, details: Any) -> ErrorKind:
    if type(details) is list:
        for d in details:
            if type(d) is dict and d.get("reason") == "API_KEY_INVALID":
                return ErrorKind.AUTHENTICATION
    if type(name) is str and name in _STATUS_KIND:
        return _STATUS_KIND[name]
    kind = _HTTP_KIND.get(status)
    if kind is not None:
        return kind
    return ErrorKind.INVALID_REQUEST if 400 <= status < 500 else ErrorKind.SERVER


def decode_error(status: int, body: bytes) -> ApiError:
    """An upstream error reply (``{"error": {code, message, status, details}}``, also the
    one-element array ``streamGenerateContent`` without ``alt=sse`` sends); tolerant of
    non-JSON bodies."""
    try:
        obj = jsonio.loads(body) if body else None
    except jsonio.JSONDecodeError:
        obj = None
    if type(obj) is list and obj and type(obj[0]) is dict:
        obj = obj[0]
    err = obj.get("error") if type(obj) is dict else None
    if type(err) is dict:
        message = err.get("message")
        message = message if type(message) is str else str(message or "")
        name = err.get("status")
        details = err.get("details")
    else:
        message = body[:500].decode("utf-8", "replace").strip() or f"HTTP {status}"
        name = details = None
    reason = None
    if type(details) is list:
        for d in details:
            if type(d) is dict and type(d.get("reason")) is str:
                reason = d["reason"]
                break
    return ApiError(kind=_error_kind(status, name, details), message=message, status=status,
                    type_=name if type(name) is str else None, code=reason)


def _error_body(kind: ErrorKind, message: str, status: int | None = None,
                name: str | None = None) -> tuple[int, dict[str, Any]]:
    code, sname = _KIND_STATUS[kind]
    if name is not None and name in _STATUS_HTTP:
        sname = name
        code = status or _STATUS_HTTP[name]
    elif status is not None:
        code = status
    return code, {"error": {"code": code, "message": message, "status": sname}}


def encode_error(err: ApiError, source_format: str | None = None) -> tuple[int, bytes]:
    """Status and Google RPC body for a Gemini client; an error already in Google's
    terms (``source_format`` Gemini: a Gemini upstream's, or the gateway's own for a
    Gemini client) keeps its code, and its status name when it has one."""
    own = source_format == FORMAT
    code, obj = _error_body(err.kind, err.message, err.status if own else None,
                            err.type_ if own else None)
    return code, jsonio.dumps(obj)


def is_error_body(body: bytes) -> bool:
    """Whether ``body`` is Google's own error shape: ``{"error": {...}}``, or the
    one-element array of it ``streamGenerateContent`` without ``alt=sse`` sends."""
    try:
        obj = jsonio.loads(body) if body else None
    except jsonio.JSONDecodeError:
        return False
    if type(obj) is list and len(obj) == 1:
        obj = obj[0]
    return type(obj) is dict and type(obj.get("error")) is dict
