"""OpenAI Chat Completions wire format ⇄ IR (protocols.md §1).

One module, four directions, all pure:

* requests: ``decode_request`` (client body → ``ir.Request``) and ``encode_request``
  (``ir.Request`` → body for a Chat upstream, applying the §5.8 hard cases that concern
  Chat: tool-call ids ≤ 40 characters and function names ≤ 64 characters from
  ``[a-zA-Z0-9_-]`` with a reverse map, ``max_completion_tokens``, forced
  ``include_usage``, tool results split into ``tool`` messages with images moved to a
  following user message);
* complete replies: ``decode_response`` / ``encode_response``;
* streams: ``StreamDecoder`` (``data:`` chunks → IR events) and ``StreamEncoder`` (IR
  events → ``data:`` chunks obeying every MUST of §1.5: role once, tool id and name once
  per index, integer indexes, the usage chunk with ``choices: []``, bare ``data: [DONE]``,
  no ``event:``/``id:``/``retry:`` lines, mid-stream errors as ``data: {"error": …}``
  without ``[DONE]``);
* errors: ``decode_error`` / ``encode_error`` (``{"error": {message, type, param, code}}``,
  §1.6 and §5.7).

The module interface is the one ``protocols/translate.py`` documents.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import Any

from . import ir, jsonio
from . import usage as usage_mod
from ._fields import OPENAI_FIELDS, custom_tool_names, extras_entry, sha256_hex
from ._fields import client_name as _client_name
from ._fields import foreign as _foreign
from ._fields import public as _public
from ._streams import StreamDecoderBase, StreamEncoderBase
from .errors import ClientProtocolError, UnsupportedFeature, UpstreamProtocolError
from .ir import (
    ApiError,
    BlockKind,
    BlockStart,
    BlockStop,
    ErrorKind,
    File,
    Image,
    Message,
    MessageEnd,
    MessageStart,
    NativeBlock,
    Reasoning,
    ReasoningDelta,
    Request,
    Response,
    Role,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolKind,
    ToolResult,
    Usage,
    UsageUpdate,
)

__all__ = [
    "FORMAT",
    "MAX_TOOL_ID_CHARS",
    "MAX_TOOL_NAME_CHARS",
    "MAX_STOP_SEQUENCES",
    "decode_request",
    "encode_request",
    "decode_response",
    "encode_response",
    "decode_error",
    "encode_error",
    "StreamDecoder",
    "StreamEncoder",
    "wire_tool_id",
    "wire_tool_name",
]

FORMAT = ir.FORMAT_OPENAI_CHAT

#: OpenAI rejects longer tool-call ids with 400 ``string_above_max_length`` (§1.3).
MAX_TOOL_ID_CHARS = 40
#: Function names: ``[a-zA-Z0-9_-]``, at most 64 characters (§1.2, §5.3).
MAX_TOOL_NAME_CHARS = 64
#: ``stop`` takes a string or an array of 1–4 strings (§1.2, §5.8 case 13).
MAX_STOP_SEQUENCES = 4
#: Chat accepts ``temperature`` in 0–2 (§1.2).
MAX_TEMPERATURE = 2.0
#: Hash characters appended when an id or name has to be shortened; 8 hex digits keep
#: accidental collisions below 1 in 4 billion per pair.
_HASH_CHARS = 8

_NAME_OK = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NAME_BAD_CHAR = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL = re.compile(r"data:([^;,]+)?(?:;[^,]*)?;base64,(.*)", re.S)

# Request fields the IR models; everything else goes to extras (kept for a Chat upstream,
# ignored by other formats, as Anthropic's own compatibility layer does, §5.1).
_MODELED = frozenset(
    {
        "model", "messages", "max_completion_tokens", "max_tokens", "temperature",
        "top_p", "stop", "stream", "stream_options", "tools", "tool_choice",
        "parallel_tool_calls", "response_format", "reasoning_effort", "user",
        "metadata",
    }
)

_FINISH_TO_STOP = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.CONTENT_FILTER,
}

# §5.4: pause_turn has no Chat equivalent (stop, the caller re-sends); a model error and
# a context-window stop have none either.
_STOP_TO_FINISH = {
    StopReason.END_TURN: "stop",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.MAX_TOKENS: "length",
    StopReason.CONTEXT_WINDOW: "length",
    StopReason.TOOL_USE: "tool_calls",
    StopReason.CONTENT_FILTER: "content_filter",
    StopReason.PAUSE: "stop",
    StopReason.ERROR: "stop",
}

# Error kinds ⇄ OpenAI error bodies (§1.6, §5.7): kind -> (status, type, code).
_KIND_TO_ERROR: dict[ErrorKind, tuple[int, str, str | None]] = {
    ErrorKind.INVALID_REQUEST: (400, "invalid_request_error", None),
    ErrorKind.AUTHENTICATION: (401, "invalid_request_error", "invalid_api_key"),
    ErrorKind.PERMISSION: (403, "permission_error", None),
    ErrorKind.NOT_FOUND: (404, "invalid_request_error", "not_found"),
    ErrorKind.REQUEST_TOO_LARGE: (413, "invalid_request_error", "request_too_large"),
    ErrorKind.RATE_LIMIT: (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    ErrorKind.QUOTA: (429, "insufficient_quota", "insufficient_quota"),
    # An Anthropic 529 reaches an OpenAI client as 503 (§5.7 notes).
    ErrorKind.OVERLOADED: (503, "server_error", "server_is_overloaded"),
    ErrorKind.SERVER: (500, "server_error", None),
    ErrorKind.TIMEOUT: (504, "server_error", "timeout"),
    ErrorKind.UPSTREAM_PROTOCOL: (502, "server_error", "bad_gateway"),
}

_STATUS_TO_KIND = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.AUTHENTICATION,
    402: ErrorKind.QUOTA,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.REQUEST_TOO_LARGE,
    429: ErrorKind.RATE_LIMIT,
    500: ErrorKind.SERVER,
    502: ErrorKind.SERVER,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.OVERLOADED,
}


# ---------------------------------------------------------------------------------------
# Small validation helpers (client side: ClientProtocolError naming the param)
# ---------------------------------------------------------------------------------------


_bad, _missing = OPENAI_FIELDS.bad, OPENAI_FIELDS.missing
_str, _dict, _list = OPENAI_FIELDS.string, OPENAI_FIELDS.object, OPENAI_FIELDS.array
_num, _int, _bool = OPENAI_FIELDS.number, OPENAI_FIELDS.integer, OPENAI_FIELDS.boolean


#: ``_rest(obj, known, hints=None)``: the fields of ``obj`` outside ``known`` as this
#: format's extras (``_fields.extras_entry``).
_rest = partial(extras_entry, FORMAT)


def _digest(text: str) -> str:
    return sha256_hex(text)[:_HASH_CHARS]


# ---------------------------------------------------------------------------------------
# Ids and names (§5.3): deterministic, so the same input maps the same way in every request
# ---------------------------------------------------------------------------------------


def wire_tool_id(tool_id: str) -> str:
    """A tool-call id OpenAI accepts (≤ 40 characters, §1.3).

    Shortening keeps a prefix and appends a hash of the whole id, so the mapping is
    deterministic: a ``tool_use`` id and its ``tool_result`` id always agree, in this
    request and the next.
    """
    if len(tool_id) <= MAX_TOOL_ID_CHARS:
        return tool_id
    keep = MAX_TOOL_ID_CHARS - _HASH_CHARS - 1
    return f"{tool_id[:keep]}_{_digest(tool_id)}"


def wire_tool_name(name: str, names: dict[str, str] | None = None) -> str:
    """A function name OpenAI accepts (``[a-zA-Z0-9_-]{1,64}``, §5.3).

    Invalid characters become ``_``; a name that had to change gets a hash suffix (so two
    names cannot collide) and is cut to 64 characters. ``names`` (the translation's
    ``Context.tool_names``) receives ``wire name -> original name`` for the way back.
    """
    if _NAME_OK.fullmatch(name):
        return name
    cleaned = _NAME_BAD_CHAR.sub("_", name)
    keep = MAX_TOOL_NAME_CHARS - _HASH_CHARS - 1
    wire = f"{cleaned[:keep]}_{_digest(name)}"
    if names is not None:
        names[wire] = name
    return wire


def _data_url(media_type: str | None, data: str) -> str:
    return f"data:{media_type or 'application/octet-stream'};base64,{data}"


# ---------------------------------------------------------------------------------------
# Request: wire -> IR
# ---------------------------------------------------------------------------------------


def decode_request(body: Any, ctx: ir.Context | None = None) -> Request:
    """Decode a client's ``POST /v1/chat/completions`` body.

    Raises ``ClientProtocolError`` (naming the param) for malformed input. When ``ctx``
    says the upstream speaks another format, fields that format cannot express raise
    ``UnsupportedFeature``: ``n > 1``, ``logprobs``/``top_logprobs``, audio input or output
    and the deprecated ``functions`` API (§5.1, §5.8 cases 4 and 18). Other Chat-only
    fields (penalties, ``seed``, ``logit_bias``…) are kept in ``extras`` and ignored by
    foreign encoders, as Anthropic's own compatibility layer ignores them.
    """
    body = _dict(body, "body")
    foreign = _foreign(ctx, FORMAT)
    model = _str(body, "model", "model", required=True)
    raw_messages = body.get("messages")
    if raw_messages is None:
        raise _missing("messages")
    raw_messages = _list(raw_messages, "messages")
    if foreign:
        _reject_foreign(body)

    tool_names: dict[str, str] = {}  # tool-call id -> name, for ToolResult.name
    messages = tuple(
        _decode_message(m, i, tool_names) for i, m in enumerate(raw_messages)
    )

    max_out = _int(body, "max_completion_tokens", 0)
    extras: dict[str, Any] = {}
    if max_out is None:
        max_out = _int(body, "max_tokens", 0)
        if max_out is not None:
            # Round trip: a Chat upstream gets back the key the client used.
            extras["_max_tokens_key"] = "max_tokens"
    elif body.get("max_tokens") is not None:
        extras["max_tokens"] = body["max_tokens"]

    stop = body.get("stop")
    stop_t: tuple[str, ...] | None = None
    if stop is not None:
        if type(stop) is str:
            stop_t = (stop,)
        else:
            stop_list = _list(stop, "stop")
            if not 1 <= len(stop_list) <= MAX_STOP_SEQUENCES or any(
                type(s) is not str for s in stop_list
            ):
                raise _bad("stop", "expected a string or an array of 1 to 4 strings.")
            stop_t = tuple(stop_list)

    stream = bool(_bool(body, "stream"))
    include_usage = None
    stream_options = body.get("stream_options")
    if stream_options is not None:
        stream_options = _dict(stream_options, "stream_options")
        include_usage = _bool(stream_options, "include_usage", "stream_options.include_usage")
        other = {k: v for k, v in stream_options.items() if k != "include_usage"}
        if other:
            extras["stream_options"] = other

    tools = tuple(_decode_tool(t, i) for i, t in enumerate(_list(body.get("tools") or [], "tools")))
    tool_choice = _decode_tool_choice(body.get("tool_choice"), _bool(body, "parallel_tool_calls"))

    response_format = None
    rf = body.get("response_format")
    if rf is not None:
        response_format = _decode_response_format(_dict(rf, "response_format"))

    reasoning = None
    effort = _str(body, "reasoning_effort", "reasoning_effort")
    if effort is not None:
        reasoning = ir.ReasoningConfig(effort=effort)

    metadata = body.get("metadata")
    if metadata is not None:
        metadata = _dict(metadata, "metadata")

    for k, v in body.items():
        if k not in _MODELED:
            extras[k] = v
    return Request(
        model=model or "",
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        max_output_tokens=max_out,
        temperature=_num(body, "temperature", 0.0, MAX_TEMPERATURE),
        top_p=_num(body, "top_p", 0.0, 1.0),
        stop=stop_t,
        stream=stream,
        include_usage=include_usage,
        response_format=response_format,
        reasoning=reasoning,
        user=_str(body, "user", "user"),
        metadata=metadata,
        extras={FORMAT: extras} if extras else None,
    )


def _reject_foreign(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise UnsupportedFeature("n", "only n=1 can be translated (§5.8 case 4)")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise UnsupportedFeature("logprobs" if body.get("logprobs") else "top_logprobs")
    if body.get("audio") is not None:
        raise UnsupportedFeature("audio")
    modalities = body.get("modalities")
    if type(modalities) is list and "audio" in modalities:
        raise UnsupportedFeature("modalities", "audio output")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise UnsupportedFeature(
            "functions" if body.get("functions") is not None else "function_call",
            "the deprecated functions API; use tools",
        )


def _text_parts(content: Any, param: str) -> tuple[tuple[Text, ...], bool]:
    """Content that may only hold text: a string or text parts."""
    if type(content) is str:
        return ((Text(content),) if content else ()), True
    if content is None:
        return (), False
    out = []
    for j, part in enumerate(_list(content, param)):
        p = f"{param}[{j}]"
        part = _dict(part, p)
        ptype = part.get("type")
        if ptype == "text":
            out.append(_decode_text_part(part, p))
        else:
            raise _bad(f"{p}.type", "expected 'text'.")
    return tuple(out), False


def _decode_text_part(part: dict[str, Any], p: str) -> Text:
    text = _str(part, "text", f"{p}.text", required=True)
    cc = part.get("cache_control")
    return Text(text or "", cache_control=cc, extras=_rest(part, {"type", "text", "cache_control"}))


def _decode_image(part: dict[str, Any], p: str) -> Image:
    iu = part.get("image_url")
    if type(iu) is str:
        iu = {"url": iu}
    iu = _dict(iu, f"{p}.image_url")
    url = _str(iu, "url", f"{p}.image_url.url", required=True) or ""
    detail = _str(iu, "detail", f"{p}.image_url.detail")
    m = _DATA_URL.match(url) if url.startswith("data:") else None
    extras = _rest(part, {"type", "image_url", "cache_control"})
    if m:
        return Image(media_type=m.group(1), data=m.group(2), detail=detail,
                     cache_control=part.get("cache_control"), extras=extras)
    return Image(url=url, detail=detail, cache_control=part.get("cache_control"), extras=extras)


def _decode_file(part: dict[str, Any], p: str) -> File:
    f = _dict(part.get("file"), f"{p}.file")
    filename = _str(f, "filename", f"{p}.file.filename")
    file_id = _str(f, "file_id", f"{p}.file.file_id")
    file_data = _str(f, "file_data", f"{p}.file.file_data")
    if file_id is None and file_data is None:
        raise _bad(f"{p}.file", "expected file_id or file_data.")
    media_type = data = None
    if file_data is not None:
        m = _DATA_URL.match(file_data)
        if m:
            media_type, data = m.group(1), m.group(2)
        else:
            data = file_data
    return File(media_type=media_type, data=data, file_id=file_id, filename=filename,
                cache_control=part.get("cache_control"))


def _decode_user_content(content: Any, param: str) -> tuple[tuple[ir.Block, ...], bool]:
    if type(content) is str:
        return ((Text(content),) if content else ()), True
    if content is None:
        raise _missing(param)
    out: list[ir.Block] = []
    for j, part in enumerate(_list(content, param)):
        p = f"{param}[{j}]"
        part = _dict(part, p)
        ptype = part.get("type")
        if ptype == "text":
            out.append(_decode_text_part(part, p))
        elif ptype == "image_url":
            out.append(_decode_image(part, p))
        elif ptype == "file":
            out.append(_decode_file(part, p))
        elif type(ptype) is str:
            # input_audio and future part types: kept for a Chat upstream only.
            out.append(NativeBlock(FORMAT, ptype, part))
        else:
            raise _bad(f"{p}.type", "expected a string.")
    return tuple(out), False


def _decode_tool_call(tc: Any, p: str) -> ToolCall:
    tc = _dict(tc, p)
    tid = _str(tc, "id", f"{p}.id", required=True) or ""
    ttype = tc.get("type", "function")
    extras = _rest(tc, {"id", "type", "function", "custom"})
    if ttype == "custom":
        c = _dict(tc.get("custom"), f"{p}.custom")
        return ToolCall(
            id=tid,
            name=_str(c, "name", f"{p}.custom.name", required=True) or "",
            arguments=_str(c, "input", f"{p}.custom.input") or "",
            kind=ToolKind.CUSTOM,
            extras=extras,
        )
    if ttype != "function":
        raise _bad(f"{p}.type", "expected 'function' or 'custom'.")
    f = _dict(tc.get("function"), f"{p}.function")
    args = f.get("arguments")
    if args is None:
        args = ""
    elif type(args) is not str:
        # Some clients send an object; keep it as compact JSON text (§5.2).
        try:
            args = jsonio.dumps(args).decode()
        except jsonio.JSONEncodeError:
            raise _bad(f"{p}.function.arguments", "expected a JSON string.") from None
    return ToolCall(
        id=tid,
        name=_str(f, "name", f"{p}.function.name", required=True) or "",
        arguments=args,
        extras=extras,
    )


def _decode_message(m: Any, i: int, tool_names: dict[str, str]) -> Message:
    p = f"messages[{i}]"
    m = _dict(m, p)
    role = m.get("role")
    name = _str(m, "name", f"{p}.name")
    if role == "system" or role == "developer":
        blocks, as_string = _text_parts(m.get("content"), f"{p}.content")
        return Message(Role(role), blocks, name=name, as_string=as_string,
                       extras=_rest(m, {"role", "content", "name"}))
    if role == "user":
        blocks2, as_string = _decode_user_content(m.get("content"), f"{p}.content")
        return Message(Role.USER, blocks2, name=name, as_string=as_string,
                       extras=_rest(m, {"role", "content", "name"}))
    if role == "assistant":
        return _decode_assistant(m, p, name, tool_names)
    if role == "tool":
        tid = _str(m, "tool_call_id", f"{p}.tool_call_id", required=True) or ""
        blocks3, as_string = _text_parts(m.get("content"), f"{p}.content")
        result = ToolResult(id=tid, content=blocks3, name=tool_names.get(tid),
                            extras=None if as_string else {FORMAT: {"_content_list": True}})
        return Message(Role.USER, (result,), as_string=as_string,
                       extras=_rest(m, {"role", "content", "tool_call_id"}))
    if role == "function":
        raise UnsupportedFeature(f"{p}.role", "the deprecated 'function' role; use tools")
    raise _bad(f"{p}.role", "expected system, developer, user, assistant or tool.")


def _decode_assistant(m: dict[str, Any], p: str, name: str | None,
                      tool_names: dict[str, str]) -> Message:
    blocks: list[ir.Block] = []
    # De-facto reasoning fields (§5.6 step 5, §5.8 case 11): DeepSeek/vLLM
    # ``reasoning_content`` and LiteLLM ``thinking_blocks`` (Anthropic thinking kept by a
    # Chat client so it can be replayed to Anthropic with its signature).
    thinking_blocks = m.get("thinking_blocks")
    if thinking_blocks is not None:
        for j, tb in enumerate(_list(thinking_blocks, f"{p}.thinking_blocks")):
            tb = _dict(tb, f"{p}.thinking_blocks[{j}]")
            if tb.get("type") == "redacted_thinking":
                blocks.append(Reasoning(redacted_data=str(tb.get("data") or ""),
                                        provider=ir.FORMAT_ANTHROPIC_MESSAGES))
            else:
                blocks.append(Reasoning(text=str(tb.get("thinking") or ""),
                                        signature=tb.get("signature") or None,
                                        provider=ir.FORMAT_ANTHROPIC_MESSAGES))
    else:
        rc = m.get("reasoning_content")
        if type(rc) is str and rc:
            blocks.append(Reasoning(text=rc, extras={FORMAT: {"reasoning_content": True}}))
    content = m.get("content")
    as_string = False
    if type(content) is str:
        as_string = True
        if content:
            blocks.append(Text(content))
    elif content is not None:
        for j, part in enumerate(_list(content, f"{p}.content")):
            pp = f"{p}.content[{j}]"
            part = _dict(part, pp)
            ptype = part.get("type")
            if ptype == "text":
                blocks.append(_decode_text_part(part, pp))
            elif ptype == "refusal":
                blocks.append(Text(_str(part, "refusal", f"{pp}.refusal") or "",
                                   extras={FORMAT: {"type": "refusal"}}))
            else:
                raise _bad(f"{pp}.type", "expected 'text' or 'refusal'.")
    tool_calls = m.get("tool_calls")
    if tool_calls is not None:
        for j, tc in enumerate(_list(tool_calls, f"{p}.tool_calls")):
            call = _decode_tool_call(tc, f"{p}.tool_calls[{j}]")
            tool_names[call.id] = call.name
            blocks.append(call)
    known = {"role", "content", "name", "tool_calls", "reasoning_content", "thinking_blocks"}
    hints = None if "content" in m else {"_no_content": True}
    return Message(Role.ASSISTANT, tuple(blocks), name=name, as_string=as_string,
                   extras=_rest(m, known, hints))


def _decode_tool(t: Any, i: int) -> ir.Tool:
    p = f"tools[{i}]"
    t = _dict(t, p)
    ttype = t.get("type")
    if ttype == "function":
        f = _dict(t.get("function"), f"{p}.function")
        params = f.get("parameters")
        if params is not None:
            params = _dict(params, f"{p}.function.parameters")
        return ir.FunctionTool(
            name=_str(f, "name", f"{p}.function.name", required=True) or "",
            description=_str(f, "description", f"{p}.function.description"),
            parameters=params,
            strict=_bool(f, "strict", f"{p}.function.strict"),
            cache_control=t.get("cache_control"),
            extras=_rest(f, {"name", "description", "parameters", "strict"}),
        )
    if ttype == "custom":
        c = _dict(t.get("custom"), f"{p}.custom")
        fmt = c.get("format")
        return ir.CustomTool(
            name=_str(c, "name", f"{p}.custom.name", required=True) or "",
            description=_str(c, "description", f"{p}.custom.description"),
            format=_dict(fmt, f"{p}.custom.format") if fmt is not None else None,
        )
    if type(ttype) is not str:
        raise _bad(f"{p}.type", "expected 'function' or 'custom'.")
    return ir.NativeTool(provider=FORMAT, type=ttype, spec=t)


def _decode_tool_choice(tc: Any, parallel: bool | None) -> ir.ToolChoice | None:
    disable = None if parallel is None else not parallel
    if tc is None:
        return ir.ToolChoice(disable_parallel=disable) if disable is not None else None
    if tc == "auto" or tc == "none":
        return ir.ToolChoice(mode=tc, disable_parallel=disable)
    if tc == "required":
        return ir.ToolChoice(mode="any", disable_parallel=disable)
    if type(tc) is dict:
        ttype = tc.get("type")
        if ttype in ("function", "custom"):
            inner = _dict(tc.get(ttype), f"tool_choice.{ttype}")
            name = _str(inner, "name", f"tool_choice.{ttype}.name", required=True)
            return ir.ToolChoice(mode="tool", name=name, disable_parallel=disable)
        if ttype == "allowed_tools":
            at = _dict(tc.get("allowed_tools"), "tool_choice.allowed_tools")
            mode = at.get("mode")
            if mode not in ("auto", "required"):
                raise _bad("tool_choice.allowed_tools.mode", "expected 'auto' or 'required'.")
            names = []
            for j, t in enumerate(_list(at.get("tools"), "tool_choice.allowed_tools.tools")):
                t = _dict(t, f"tool_choice.allowed_tools.tools[{j}]")
                inner = t.get(t.get("type")) if type(t.get("type")) is str else None
                n = inner.get("name") if type(inner) is dict else t.get("name")
                if type(n) is not str:
                    raise _bad(f"tool_choice.allowed_tools.tools[{j}]", "expected a named tool.")
                names.append(n)
            return ir.ToolChoice(mode="auto" if mode == "auto" else "any",
                                 allowed=tuple(names), disable_parallel=disable)
    raise _bad("tool_choice", "expected 'none', 'auto', 'required' or a named tool.")


def _decode_response_format(rf: dict[str, Any]) -> ir.ResponseFormat:
    rtype = rf.get("type")
    if rtype in ("text", "json_object"):
        return ir.ResponseFormat(type=rtype)
    if rtype == "json_schema":
        js = _dict(rf.get("json_schema"), "response_format.json_schema")
        schema = js.get("schema")
        return ir.ResponseFormat(
            type="json_schema",
            name=_str(js, "name", "response_format.json_schema.name"),
            schema=_dict(schema, "response_format.json_schema.schema") if schema is not None else None,
            strict=_bool(js, "strict", "response_format.json_schema.strict"),
            description=_str(js, "description", "response_format.json_schema.description"),
        )
    raise _bad("response_format.type", "expected 'text', 'json_object' or 'json_schema'.")


# ---------------------------------------------------------------------------------------
# Request: IR -> wire (for a Chat upstream)
# ---------------------------------------------------------------------------------------


def encode_request(req: Request, ctx: ir.Context | None = None) -> dict[str, Any]:
    """Build a Chat Completions body from ``req``.

    Hard cases applied (protocols.md §5.8): system text first as one system message
    (case 1); ``max_completion_tokens`` (case 2); tool results become one ``tool`` message
    each, with ``is_error`` as an ``Error: `` prefix (case 8) and images moved to a
    following user message (case 9); reasoning and signatures from other providers are
    dropped (case 11); at most four stop sequences (case 13); ``stream_options.
    include_usage`` is always on for streams so usage is reported, not estimated (§5.5).
    """
    names = ctx.tool_names if ctx is not None else None
    extras = ir.extras_for(req, FORMAT)
    body: dict[str, Any] = {"model": req.model}
    messages: list[dict[str, Any]] = []
    if req.system:
        text = "\n".join(t.text for t in req.system if t.text)
        if text:
            messages.append({"role": "system", "content": text})
    for i, m in enumerate(req.messages):
        _encode_message(m, i, messages, names)
    body["messages"] = messages

    if req.max_output_tokens is not None:
        key = extras.get("_max_tokens_key", "max_completion_tokens")
        body[key] = req.max_output_tokens
    if req.temperature is not None:
        body["temperature"] = min(max(req.temperature, 0.0), MAX_TEMPERATURE)
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        stops = list(req.stop)
        if len(stops) > MAX_STOP_SEQUENCES:
            raise UnsupportedFeature("stop", f"Chat accepts at most {MAX_STOP_SEQUENCES}")
        body["stop"] = stops
    if req.stream:
        body["stream"] = True
        so = dict(extras.get("stream_options") or {})
        so["include_usage"] = True
        body["stream_options"] = so

    tools = [_encode_tool(t, names) for t in req.tools] if req.tools else []
    tools = [t for t in tools if t is not None] if tools else tools
    if tools:
        body["tools"] = tools
    tc = req.tool_choice
    if tc is not None:
        choice = _encode_tool_choice(tc, req, names)
        if choice is not None and (tools or choice == "none"):
            body["tool_choice"] = choice
        if tc.disable_parallel is not None and tools:
            body["parallel_tool_calls"] = not tc.disable_parallel
    rf = req.response_format
    if rf is not None:
        if rf.type == "json_schema":
            js: dict[str, Any] = {"name": rf.name or "response"}
            if rf.description is not None:
                js["description"] = rf.description
            if rf.schema is not None:
                js["schema"] = rf.schema
            if rf.strict is not None:
                js["strict"] = rf.strict
            body["response_format"] = {"type": "json_schema", "json_schema": js}
        else:
            body["response_format"] = {"type": rf.type}
    r = req.reasoning
    if r is not None and r.mode != "disabled":
        effort = r.effort or _budget_to_effort(r.budget_tokens)
        if effort is not None:
            body["reasoning_effort"] = effort
    if req.user is not None and len(req.user) <= MAX_TOOL_NAME_CHARS:
        # OpenAI caps end-user ids at 64 characters; longer opaque ids (Claude Code's
        # JSON metadata.user_id) are dropped rather than failing the request.
        body["user"] = req.user
    if req.metadata and all(type(v) is str for v in req.metadata.values()):
        # Chat metadata holds string values only.
        body["metadata"] = req.metadata
    for k, v in extras.items():
        if not k.startswith("_") and k not in body and k != "stream_options":
            body[k] = v
    return body


# Budget → effort when only an Anthropic/Gemini token budget is known. The thresholds are
# the Anthropic budgets ``anthropic_messages`` uses for each effort, so a round trip
# through both keeps the effort.
_BUDGET_EFFORTS = ((2048, "low"), (12288, "medium"))


def _budget_to_effort(budget: int | None) -> str | None:
    if budget is None:
        return None
    for limit, effort in _BUDGET_EFFORTS:
        if budget <= limit:
            return effort
    return "high"


def _text_of(blocks: Sequence[ir.Block]) -> str:
    if len(blocks) == 1:
        b = blocks[0]
        return b.text if type(b) is Text else ""
    return "".join([b.text for b in blocks if type(b) is Text])


def _encode_user_part(b: ir.Block, param: str) -> dict[str, Any]:
    t = type(b)
    if t is Text:
        part: dict[str, Any] = {"type": "text", "text": b.text}
        if b.cache_control is not None:
            part["cache_control"] = b.cache_control
        part.update(_public(ir.extras_for(b, FORMAT)))
        return part
    if t is Image:
        if b.data is not None:
            url = _data_url(b.media_type, b.data)
        elif b.url is not None:
            url = b.url
        else:
            raise UnsupportedFeature(param, "images by provider file id")
        iu: dict[str, Any] = {"url": url}
        if b.detail is not None:
            iu["detail"] = b.detail
        return {"type": "image_url", "image_url": iu}
    if t is File:
        f: dict[str, Any] = {}
        if b.file_id is not None:
            f["file_id"] = b.file_id
        elif b.data is not None:
            f["file_data"] = _data_url(b.media_type, b.data)
        else:
            raise UnsupportedFeature(param, "files by URL")
        if b.filename is not None:
            f["filename"] = b.filename
        return {"type": "file", "file": f}
    if t is NativeBlock and b.provider == FORMAT:
        return b.data
    raise UnsupportedFeature(param, f"{getattr(b, 'type', t.__name__)} content")


def _encode_message(m: Message, i: int, out: list[dict[str, Any]],
                    names: dict[str, str] | None) -> None:
    # ``i`` only names the message in an error (``messages[i]…``).
    mx_all = ir.extras_for(m, FORMAT)
    mx = _public(mx_all) if mx_all else mx_all
    role = m.role
    if role is Role.SYSTEM or role is Role.DEVELOPER:
        texts = [b for b in m.content if type(b) is Text]
        if not texts and not m.as_string and ir.extras_for(m, ir.FORMAT_ANTHROPIC_MESSAGES):
            return  # Claude Code's empty per-turn system entries (real-clients.md pitfall 2)
        msg: dict[str, Any] = {"role": role.value}
        if m.as_string or not texts:
            msg["content"] = "".join(t.text for t in texts)
        else:
            msg["content"] = [{"type": "text", "text": t.text} for t in texts]
        if m.name is not None:
            msg["name"] = m.name
        msg.update(mx)
        out.append(msg)
        return
    if role is Role.USER:
        content = m.content
        if len(content) == 1 and type(content[0]) is Text:
            rest: Any = content  # the usual user turn: one text, no tool results
        else:
            rest = []
            moved_images: list[dict[str, Any]] = []
            for j, b in enumerate(content):
                if type(b) is ToolResult:
                    out.append(_encode_tool_result(b, f"messages[{i}].content[{j}]",
                                                   moved_images, m, mx))
                else:
                    rest.append(b)
            if moved_images:
                # §5.8 case 9: Chat tool messages are text-only.
                out.append({"role": "user", "content": moved_images})
            if not rest:
                return
        msg = {"role": "user"}
        if m.as_string and all(type(b) is Text for b in rest):
            msg["content"] = _text_of(rest)
        else:
            msg["content"] = [_encode_user_part(b, f"messages[{i}].content[{j}]")
                              for j, b in enumerate(rest)]
        if m.name is not None:
            msg["name"] = m.name
        msg.update(mx)
        out.append(msg)
        return
    # Assistant.
    texts = []
    calls = []
    reasoning = None
    refusal = None
    for j, b in enumerate(m.content):
        t = type(b)
        if t is Text:
            if ir.extras_for(b, FORMAT).get("type") == "refusal":
                refusal = b.text
            elif b.text:
                texts.append(b.text)
        elif t is ToolCall:
            calls.append(_encode_tool_call(b, names))
        elif t is Reasoning:
            # Only Chat's own de-facto reasoning_content goes back (§5.8 case 11).
            if ir.extras_for(b, FORMAT).get("reasoning_content") and b.text:
                reasoning = b.text
        elif t is NativeBlock and b.provider == FORMAT:
            continue
        elif t is NativeBlock:
            raise UnsupportedFeature(f"messages[{i}].content[{j}]", f"{b.type} content")
    msg = {"role": "assistant"}
    if texts:
        msg["content"] = "".join(texts) if m.as_string or len(texts) == 1 else [
            {"type": "text", "text": t} for t in texts
        ]
    elif refusal is None and not mx_all.get("_no_content"):
        msg["content"] = "" if m.as_string else None
    if refusal is not None:
        msg["refusal"] = refusal
    if reasoning is not None:
        msg["reasoning_content"] = reasoning
    if calls:
        msg["tool_calls"] = calls
    if m.name is not None:
        msg["name"] = m.name
    msg.update(mx)
    if not texts and not calls and refusal is None and reasoning is None and not m.as_string:
        return  # nothing a Chat upstream could use (e.g. only foreign reasoning)
    out.append(msg)


def _encode_tool_call(b: ToolCall, names: dict[str, str] | None) -> dict[str, Any]:
    name = wire_tool_name(b.name, names)
    if b.kind is ToolKind.CUSTOM:
        call = {"id": wire_tool_id(b.id), "type": "custom",
                "custom": {"name": name, "input": b.arguments}}
    else:
        call = {"id": wire_tool_id(b.id), "type": "function",
                "function": {"name": name, "arguments": b.arguments}}
    call.update(_public(ir.extras_for(b, FORMAT)))
    return call


def _encode_tool_result(b: ToolResult, param: str, moved_images: list[dict[str, Any]],
                        m: Message, mx: dict[str, Any]) -> dict[str, Any]:
    parts: list[str] = []
    for j, c in enumerate(b.content):
        if type(c) is Text:
            parts.append(c.text)
        elif type(c) is Image or type(c) is File:
            if not moved_images:
                label = b.name or b.id
                moved_images.append({"type": "text", "text": f"(image returned by tool {label})"})
            moved_images.append(_encode_user_part(c, f"{param}.content[{j}]"))
        else:
            raise UnsupportedFeature(f"{param}.content[{j}]", "non-text tool result content")
    text = "".join(parts) if m.as_string or len(parts) <= 1 else "\n".join(parts)
    if b.is_error:
        # §5.8 case 8: Chat has no is_error flag.
        text = f"Error: {text}"
    msg: dict[str, Any] = {"role": "tool", "tool_call_id": wire_tool_id(b.id)}
    if ir.extras_for(b, FORMAT).get("_content_list") and not b.is_error:
        msg["content"] = [{"type": "text", "text": c.text} for c in b.content if type(c) is Text]
    else:
        # A plain string is what every OpenAI-compatible server accepts.
        msg["content"] = text
    msg.update(mx)
    return msg


def _encode_tool(t: ir.Tool, names: dict[str, str] | None) -> dict[str, Any] | None:
    tt = type(t)
    if tt is ir.FunctionTool:
        f: dict[str, Any] = {"name": wire_tool_name(t.name, names)}
        if t.description is not None:
            f["description"] = t.description
        if t.parameters is not None:
            f["parameters"] = t.parameters
        if t.strict is not None:
            f["strict"] = t.strict
        f.update(_public(ir.extras_for(t, FORMAT)))
        return {"type": "function", "function": f}
    if tt is ir.CustomTool:
        c: dict[str, Any] = {"name": wire_tool_name(t.name, names)}
        if t.description is not None:
            c["description"] = t.description
        if t.format is not None:
            c["format"] = t.format
        return {"type": "custom", "custom": c}
    if tt is ir.NativeTool:
        if t.provider == FORMAT:
            return t.spec
        raise UnsupportedFeature("tools", f"the {t.provider} built-in tool {t.type!r}")
    return None


def _encode_tool_choice(tc: ir.ToolChoice, req: Request,
                        names: dict[str, str] | None) -> Any:
    if tc.allowed is not None:
        kinds = {t.name: "custom" if type(t) is ir.CustomTool else "function"
                 for t in req.tools if type(t) is not ir.NativeTool}
        tools = []
        for n in tc.allowed:
            kind = kinds.get(n, "function")
            tools.append({"type": kind, kind: {"name": wire_tool_name(n, names)}})
        return {"type": "allowed_tools", "allowed_tools": {
            "mode": "required" if tc.mode == "any" else "auto", "tools": tools}}
    if tc.mode == "any":
        return "required"
    if tc.mode == "tool":
        kind = "function"
        for t in req.tools:
            if type(t) is ir.CustomTool and t.name == tc.name:
                kind = "custom"
        return {"type": kind, kind: {"name": wire_tool_name(tc.name or "", names)}}
    return tc.mode


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
        t = type(b)
        if t is Text:
            if ir.extras_for(b, FORMAT).get("type") == "refusal":
                refusal = b.text
            else:
                texts.append(b.text)
        elif t is ToolCall:
            if b.kind is ToolKind.CUSTOM:
                calls.append({"id": wire_tool_id(b.id), "type": "custom",
                              "custom": {"name": b.name, "input": b.arguments}})
            else:
                calls.append({"id": wire_tool_id(b.id), "type": "function",
                              "function": {"name": b.name, "arguments": b.arguments}})
        elif t is Reasoning:
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
    }
    if ctx is None or ctx.upstream_format == FORMAT:
        # Chat's own extra fields (created, system_fingerprint, service_tier) go back
        # only to where they came from: without a translation context, or Chat to Chat.
        for k, v in _public(ir.extras_for(resp, FORMAT)).items():
            if k == "created" and ctx is not None:
                continue
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def _kind_for(status: int, etype: Any, code: Any) -> ErrorKind:
    if code == "insufficient_quota" or etype == "insufficient_quota":
        return ErrorKind.QUOTA
    if code in ("server_is_overloaded", "slow_down"):
        return ErrorKind.OVERLOADED
    if code == "rate_limit_exceeded":
        return ErrorKind.RATE_LIMIT
    kind = _STATUS_TO_KIND.get(status)
    if kind is not None:
        return kind
    if etype == "server_error":
        return ErrorKind.SERVER
    if 400 <= status < 500:
        return ErrorKind.INVALID_REQUEST
    return ErrorKind.SERVER


def _error_fields(err: Any) -> tuple[str, Any, Any, Any]:
    if type(err) is not dict:
        return (str(err), None, None, None)
    msg = err.get("message")
    return (msg if type(msg) is str else str(msg or ""), err.get("type"), err.get("code"),
            err.get("param"))


def decode_error(status: int, body: bytes) -> ApiError:
    """An upstream error reply (status + body) as an ``ApiError``; tolerant of non-JSON
    bodies (an HTML page from a load balancer becomes the message)."""
    try:
        obj = jsonio.loads(body) if body else None
    except jsonio.JSONDecodeError:
        obj = None
    if type(obj) is dict and "error" in obj:
        message, etype, code, param = _error_fields(obj["error"])
    else:
        message = body[:500].decode("utf-8", "replace").strip() or f"HTTP {status}"
        etype = code = param = None
    return ApiError(
        kind=_kind_for(status, etype, code),
        message=message,
        status=status,
        type_=etype if type(etype) is str else None,
        code=code if type(code) is str else None,
        param=param if type(param) is str else None,
    )


def _error_object(kind: ErrorKind, message: str, type_: str | None, code: str | None,
                  param: str | None, own: bool) -> tuple[int, dict[str, Any]]:
    status, etype, ecode = _KIND_TO_ERROR[kind]
    if own:
        etype = type_ or etype
        ecode = code if code is not None else ecode
    return status, {"error": {"message": message, "type": etype, "param": param, "code": ecode}}


def encode_error(err: ApiError, source_format: str | None = None) -> tuple[int, bytes]:
    """Status and body for a Chat client. The source's own type/code strings are kept
    when the error came from an OpenAI-format upstream (``source_format``); the status is
    the source's when it is in the same class as the kind's canonical one."""
    own = source_format in (FORMAT, ir.FORMAT_OPENAI_RESPONSES)
    status, obj = _error_object(err.kind, err.message, err.type_, err.code, err.param, own)
    if err.kind in (ErrorKind.INVALID_REQUEST, ErrorKind.SERVER) and err.status // 100 == status // 100:
        status = err.status
    return status, jsonio.dumps(obj)


# ---------------------------------------------------------------------------------------
# Streams: wire -> IR
# ---------------------------------------------------------------------------------------

_DONE = b"[DONE]"


def _nothing_to_observe(payload: bytes) -> bool:
    """True when a chunk cannot carry a fact observe mode needs (tool calls, a finish
    reason, usage, an error), judged by byte search so most chunks are never parsed.
    Conservative: any doubt (other spacing, ``null`` spelled differently) means parse."""
    if b'"tool_calls"' in payload or b'"error"' in payload:
        return False
    i = payload.find(b'"finish_reason"')
    if i >= 0 and not payload.startswith(b":null", i + 15):
        return False
    i = payload.find(b'"usage"')
    if i >= 0 and not payload.startswith(b":null", i + 7):
        return False
    return True


class StreamDecoder(StreamDecoderBase):
    """Chat ``data:`` chunks → IR events (protocols.md §1.5).

    Holds the terminal ``MessageEnd`` until usage is known: OpenAI sends the usage chunk
    *after* the finish chunk (§5.8 case 15), so the finish reason is remembered and
    ``MessageEnd`` is emitted at ``[DONE]`` or, for a close-delimited stream that did send a
    finish reason, at ``close()``. EOF without a finish reason becomes a ``StreamError``
    (§5.6, "Chat upstream → Anthropic client" 7).

    Tool calls are keyed by their Chat ``index``. Each gets an IR block when first seen and
    stays open until the finish chunk, so interleaved fragments stay correct (IR contract
    rule 3). Only choice 0 is read (``n > 1`` is rejected for translation).

    Facts read by ``Translation``: ``model``, ``id``, ``usage``, ``stop_reason``,
    ``tool_calls``, ``failed``, ``done``.
    """

    __slots__ = ("_started", "_next", "_text", "_reasoning", "_tools", "_open_tools", "_finish")

    _TEXT_KEY = b'"content":"'
    _VARYING_KEY = b'"obfuscation":"'  # OpenAI pads each chunk with a random string

    def __init__(self, ctx: ir.Context | None = None, *, observe: bool = False) -> None:
        super().__init__(ctx, observe=observe)
        self._started = False
        self._next = 0  # next IR block index
        self._text = -1  # open text block, or -1
        self._reasoning = -1  # open reasoning block, or -1
        self._tools: dict[int, int] = {}  # Chat tool index -> IR block index
        self._open_tools: list[int] = []  # open tool blocks, IR indexes in start order
        self._finish: Any = None

    def _eof(self, out: list[ir.StreamEvent]) -> None:
        if self._finish is not None:
            # Close-delimited stream (no [DONE]) after a finish reason: a clean end
            # (real-clients.md: the SDKs accept it).
            self._end(out)
        else:
            self._fail(out, StreamError(ErrorKind.UPSTREAM_PROTOCOL,
                                        "upstream closed the stream before finish_reason"))

    # -- internals ---------------------------------------------------------------------

    def _start(self, chunk: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._started = True
        model = chunk.get("model")
        cid = chunk.get("id")
        self.model = model if type(model) is str else ""
        self.id = cid if type(cid) is str else ""
        out.append(MessageStart(self.id, self.model))

    def _payload(self, payload: bytes, out: list[ir.StreamEvent]) -> None:
        if payload[:6] == _DONE and payload.strip() == _DONE:
            self._end(out)
            return
        if self._observe and self._started and _nothing_to_observe(payload):
            return
        try:
            chunk = jsonio.loads(payload)
        except jsonio.JSONDecodeError:
            raise UpstreamProtocolError("Chat stream chunk is not JSON", param="data") from None
        if type(chunk) is not dict:
            raise UpstreamProtocolError("Chat stream chunk is not an object", param="data")
        err = chunk.get("error")
        if err:
            message, etype, code, _ = _error_fields(err)
            kind = _kind_for(0, etype, code)
            self._fail(out, StreamError(kind, message, _KIND_TO_ERROR[kind][0],
                                        etype if type(etype) is str else None,
                                        code if type(code) is str else None))
            return
        plain = None  # the text of a chunk that is only a text delta
        before = len(out)
        if not self._started:
            self._start(chunk, out)
        choices = chunk.get("choices")
        if choices:
            if type(choices) is not list:
                raise UpstreamProtocolError("choices is not an array", param="choices")
            for choice in choices:
                if type(choice) is not dict:
                    raise UpstreamProtocolError("choice is not an object", param="choices")
                if choice.get("index", 0) == 0:
                    # Most chunks: {"content": "..."} while a text block is open and no
                    # finish reason; _choice's fast path, without the call.
                    delta = choice.get("delta")
                    if (type(delta) is dict and len(delta) == 1 and self._text >= 0
                            and not self._observe and choice.get("finish_reason") is None
                            and type(content := delta.get("content")) is str):
                        if content:
                            out.append(TextDelta(self._text, content))
                            plain = content
                    else:
                        self._choice(choice, out)
        u = chunk.get("usage")
        if u:
            self.usage = usage_mod.from_openai_chat(u)
            out.append(UsageUpdate(self.usage))
        elif plain is not None and len(choices) == 1 and len(out) == before + 1:
            self._learn_text(plain, None)

    def _text_event(self, text: str, where: Any) -> Any:
        # A templated frame is a content-only delta of choice 0: what _payload's fast
        # path makes of it while a text block is open.
        return TextDelta(self._text, text) if self._text >= 0 else None

    def _choice(self, choice: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        delta = choice.get("delta")
        if delta:
            if type(delta) is not dict:
                raise UpstreamProtocolError("delta is not an object", param="delta")
            if len(delta) == 1 and self._text >= 0 and not self._observe:
                # Fast path, most chunks: {"content": "..."} while a text block is open.
                content = delta.get("content")
                if content is not None and type(content) is str:
                    if content:
                        out.append(TextDelta(self._text, content))
                else:
                    self._delta(delta, out)
            elif self._observe:
                # Observe mode needs facts only: tool calls and the finish reason.
                tcs = delta.get("tool_calls")
                if tcs:
                    self._tool_calls(tcs, out)
            else:
                self._delta(delta, out)
        finish = choice.get("finish_reason")
        if finish is not None and self._finish is None:
            self._finish = finish
            self._close_blocks(out)

    def _delta(self, delta: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        rc = delta.get("reasoning_content") or delta.get("reasoning")
        if rc and type(rc) is str:
            self._reasoning_delta(rc, out)
        content = delta.get("content")
        if content:
            self._text_delta(content, out)
        refusal = delta.get("refusal")
        if refusal:
            self._text_delta(refusal, out)
        tcs = delta.get("tool_calls")
        if tcs:
            self._tool_calls(tcs, out)

    def _close_blocks(self, out: list[ir.StreamEvent]) -> None:
        if self._text >= 0:
            out.append(BlockStop(self._text))
            self._text = -1
        if self._reasoning >= 0:
            out.append(BlockStop(self._reasoning))
            self._reasoning = -1
        for idx in self._open_tools:
            out.append(BlockStop(idx))
        self._open_tools = []

    def _text_delta(self, text: Any, out: list[ir.StreamEvent]) -> None:
        if type(text) is not str:
            raise UpstreamProtocolError("content is not a string", param="content")
        idx = self._text
        if idx < 0:
            if self._reasoning >= 0 or self._open_tools:
                self._close_blocks(out)
            idx = self._text = self._next
            self._next += 1
            out.append(BlockStart(idx, BlockKind.TEXT))
        out.append(TextDelta(idx, text))

    def _reasoning_delta(self, text: str, out: list[ir.StreamEvent]) -> None:
        idx = self._reasoning
        if idx < 0:
            if self._text >= 0 or self._open_tools:
                self._close_blocks(out)
            idx = self._reasoning = self._next
            self._next += 1
            out.append(BlockStart(idx, BlockKind.REASONING))
        out.append(ReasoningDelta(idx, text))

    def _tool_calls(self, tcs: Any, out: list[ir.StreamEvent]) -> None:
        if type(tcs) is not list:
            raise UpstreamProtocolError("tool_calls is not an array", param="tool_calls")
        for tc in tcs:
            if type(tc) is not dict or type(tc.get("index", 0)) is not int:
                raise UpstreamProtocolError("tool call fragment without an integer index",
                                            param="tool_calls.index")
            k = tc.get("index", 0)
            ttype = tc.get("type")
            inner = tc.get("custom") if ttype == "custom" else tc.get("function")
            if inner is not None and type(inner) is not dict:
                raise UpstreamProtocolError("tool call function is not an object",
                                            param="tool_calls.function")
            args = None
            if inner:
                args = inner.get("input") if ttype == "custom" else inner.get("arguments")
                if args is not None and type(args) is not str:
                    raise UpstreamProtocolError("tool call arguments are not a string",
                                                param="tool_calls.function.arguments")
            idx = self._tools.get(k)
            if idx is None:
                if self._finish is not None:
                    raise UpstreamProtocolError("tool call after finish_reason",
                                                param="tool_calls")
                if self._text >= 0 or self._reasoning >= 0:
                    # Text and reasoning never overlap another block (IR rule 3).
                    if self._text >= 0:
                        out.append(BlockStop(self._text))
                        self._text = -1
                    if self._reasoning >= 0:
                        out.append(BlockStop(self._reasoning))
                        self._reasoning = -1
                idx = self._next
                self._next += 1
                self._tools[k] = idx
                self._open_tools.append(idx)
                self.tool_calls += 1
                tid = tc.get("id")
                name = inner.get("name") if inner else None
                if type(tid) is not str or not tid:
                    tid = self._ctx.new_id("call_") if self._ctx is not None else f"call_{k}"
                if type(name) is not str:
                    name = ""
                out.append(BlockStart(
                    idx, BlockKind.TOOL_CALL, tool_id=tid,
                    tool_name=_client_name(self._ctx, name),
                    tool_kind=ToolKind.CUSTOM if ttype == "custom" else ToolKind.FUNCTION,
                ))
            elif idx not in self._open_tools:
                raise UpstreamProtocolError("tool call fragment after its block closed",
                                            param="tool_calls")
            if args and not self._observe:
                out.append(ToolArgsDelta(idx, args))

    def _end(self, out: list[ir.StreamEvent]) -> None:
        self._close_blocks(out)
        self.stop_reason = _stop_from_finish(self._finish, self.tool_calls > 0)
        self.done = True
        out.append(MessageEnd(self.stop_reason))


# ---------------------------------------------------------------------------------------
# Streams: IR -> wire
# ---------------------------------------------------------------------------------------


class StreamEncoder(StreamEncoderBase):
    """IR events → Chat ``data:`` chunks for a Chat client (protocols.md §1.5, §5.6).

    Chunks are built from byte templates prepared once at ``MessageStart``: the common
    ``id``/``object``/``created``/``model`` head and the ``choices`` tail are constant for
    the whole stream, so a text delta costs one ``dumps`` of its string and one
    concatenation. Strings are always serialised by ``jsonio.dumps`` (never spliced raw),
    so the JSON stays valid and the line holds no raw CR/LF. A call to a custom tool the
    client declared is a ``type: "custom"`` tool call whose raw input streams as
    ``custom.input`` fragments. A cut stream ends with an error chunk, never with a
    fabricated ``[DONE]`` (§6.3 "Cut streams").
    """

    __slots__ = (
        "_include_usage", "_head", "_tail", "_usage_head", "_text_head", "_text_tail",
        "_tool_args", "_tool_count", "_usage", "_custom",
    )

    def __init__(self, ctx: ir.Context | None = None) -> None:
        super().__init__(ctx)
        creq = ctx.client_request if ctx is not None else None
        self._include_usage = bool(creq.include_usage) if creq is not None else False
        self._custom = custom_tool_names(ctx)
        self._head = b""
        self._tail = b""
        self._usage_head = b""
        self._text_head = b""
        self._text_tail = b""
        # IR block index -> the head of its argument delta chunk (holds the Chat index).
        self._tool_args: dict[int, bytes] = {}
        self._tool_count = 0
        self._usage: Usage | None = None

    # -- handlers ----------------------------------------------------------------------

    def _chunk(self, delta: bytes) -> bytes:
        return self._head + delta + self._tail

    def _on_start(self, ev: MessageStart) -> bytes:
        ctx = self._ctx
        creq = ctx.client_request if ctx is not None else None
        cid = ctx.new_id("chatcmpl-") if ctx is not None else (ev.id or "chatcmpl")
        model = ev.model or (creq.model if creq is not None else "")
        created = ctx.created if ctx is not None else 0
        common = (b'{"id":' + jsonio.dumps(cid) + b',"object":"chat.completion.chunk","created":'
                  + str(int(created)).encode() + b',"model":' + jsonio.dumps(model))
        self._head = b"data: " + common + b',"choices":[{"index":0,"delta":'
        self._tail = (b',"logprobs":null,"finish_reason":null}]'
                      + (b',"usage":null' if self._include_usage else b"") + b"}\n\n")
        self._usage_head = b"data: " + common + b',"choices":[],"usage":'
        self._text_head = self._head + b'{"content":'
        self._text_tail = b"}" + self._tail
        self._started = True
        if ev.usage is not None:
            self._usage = ev.usage
        # Role once, in the first chunk (§1.5 step 1).
        return self._chunk(b'{"role":"assistant","content":"","refusal":null}')

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        return self._on_start(MessageStart("", ""))

    def _on_block_start(self, ev: BlockStart) -> bytes:
        if ev.kind is not BlockKind.TOOL_CALL:
            return b""
        k = self._tool_count
        self._tool_count += 1
        index = b'{"index":' + str(k).encode()
        name = ev.tool_name or ""
        tid = wire_tool_id(ev.tool_id or (self._ctx.new_id("call_") if self._ctx else f"call_{k}"))
        if ev.tool_kind is ToolKind.CUSTOM and name in self._custom:
            # A custom tool's raw input streams as custom.input, typed on every fragment.
            body = (index + b',"id":' + jsonio.dumps(tid)
                    + b',"type":"custom","custom":{"name":' + jsonio.dumps(name)
                    + b',"input":""}}')
            self._tool_args[ev.index] = b'{"tool_calls":[' + index + b',"type":"custom","custom":{"input":'
        else:
            # id, type and name once per index (§1.5).
            body = (index + b',"id":' + jsonio.dumps(tid)
                    + b',"type":"function","function":{"name":' + jsonio.dumps(name)
                    + b',"arguments":""}}')
            self._tool_args[ev.index] = b'{"tool_calls":[' + index + b',"function":{"arguments":'
        return self._ensure_started() + self._chunk(b'{"tool_calls":[' + body + b"]}")

    def _on_text(self, ev: TextDelta) -> bytes:
        if not ev.text:
            return b""
        return self._text_head + jsonio.dumps(ev.text) + self._text_tail

    def _on_args(self, ev: ToolArgsDelta) -> bytes:
        if not ev.arguments:
            return b""
        head = self._tool_args.get(ev.index)
        if head is None:
            return b""
        return self._chunk(head + jsonio.dumps(ev.arguments) + b"}}]}")

    def _on_reasoning(self, ev: ReasoningDelta) -> bytes:
        # The de-facto reasoning_content delta (DeepSeek, vLLM, LiteLLM), §5.6 step 5.
        if not ev.text:
            return b""
        return self._chunk(b'{"reasoning_content":' + jsonio.dumps(ev.text) + b"}")

    def _on_usage(self, ev: UsageUpdate) -> bytes:
        self._usage = ev.usage
        return b""

    def _on_end(self, ev: MessageEnd) -> bytes:
        out = self._ensure_started()
        finish = _STOP_TO_FINISH[ev.stop_reason]
        if self._tool_count and finish == "stop":
            finish = "tool_calls"
        out += (self._head + b'{},"logprobs":null,"finish_reason":"' + finish.encode() + b'"}]'
                + (b',"usage":null' if self._include_usage else b"") + b"}\n\n")
        if self._include_usage and self._usage is not None:
            # §1.5 step 5: choices:[] with the full usage.
            out += self._usage_head + jsonio.dumps(usage_mod.to_openai_chat(self._usage)) + b"}\n\n"
        self._done = True
        return out + b"data: [DONE]\n\n"

    def _on_error(self, ev: StreamError) -> bytes:
        # §1.6: a data line whose JSON has an "error" key, then no [DONE].
        _, etype, code = _KIND_TO_ERROR[ev.kind]
        self._done = True
        return b"data: " + jsonio.dumps({"error": {
            "message": ev.message, "type": etype, "param": None, "code": code,
        }}) + b"\n\n"

    def _on_ping(self, ev: ir.Ping) -> bytes:
        # §6.3: an SSE comment is the safe Chat heartbeat.
        return b": ping\n\n"
