"""OpenAI Chat Completions requests: ``decode_request`` (client body -> ``ir.Request``)
and ``encode_request`` (``ir.Request`` -> body for a Chat upstream)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import ir, jsonio
from .._fields import foreign as _foreign
from .._fields import public as _public
from .._openai import (
    _DATA_URL,
    MAX_TOOL_NAME_CHARS,
    _budget_to_effort,
    _data_url,
    wire_tool_id,
    wire_tool_name,
)
from ..builtin_tools import foreign_tool
from ..errors import UnsupportedFeature
from ..ir import (
    File,
    Image,
    Message,
    NativeBlock,
    Reasoning,
    Request,
    Role,
    Text,
    ToolCall,
    ToolKind,
    ToolResult,
)
from .tables import (
    _MODELED,
    FORMAT,
    MAX_STOP_SEQUENCES,
    MAX_TEMPERATURE,
    _bad,
    _bool,
    _dict,
    _int,
    _list,
    _missing,
    _num,
    _rest,
    _str,
)

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
                entry = _dict(t, f"tool_choice.allowed_tools.tools[{j}]")
                kind = entry.get("type")
                named = entry.get(kind) if type(kind) is str else None
                n = named.get("name") if type(named) is dict else entry.get("name")
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
            schema=(_dict(schema, "response_format.json_schema.schema")
                    if schema is not None else None),
            strict=_bool(js, "strict", "response_format.json_schema.strict"),
            description=_str(js, "description", "response_format.json_schema.description"),
        )
    raise _bad("response_format.type", "expected 'text', 'json_object' or 'json_schema'.")


# ---------------------------------------------------------------------------------------
# Request: IR -> wire (for a Chat upstream)
# ---------------------------------------------------------------------------------------


def encode_request(req: Request, ctx: ir.Context | None = None) -> dict[str, Any]:
    """Build a Chat Completions body from ``req``.

    Hard cases applied (docs/protocols.md §5.8): system text first as one system message
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

    tools = [_encode_tool(t, names, ctx) for t in req.tools] if req.tools else []
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


def _text_of(blocks: Sequence[ir.Block]) -> str:
    if len(blocks) == 1:
        b = blocks[0]
        return b.text if type(b) is Text else ""
    return "".join([b.text for b in blocks if type(b) is Text])


def _encode_user_part(b: ir.Block, param: str) -> dict[str, Any]:
    t = type(b)
    if type(b) is Text:
        part: dict[str, Any] = {"type": "text", "text": b.text}
        if b.cache_control is not None:
            part["cache_control"] = b.cache_control
        part.update(_public(ir.extras_for(b, FORMAT)))
        return part
    if type(b) is Image:
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
    if type(b) is File:
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
    if type(b) is NativeBlock and b.provider == FORMAT:
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
            return  # Claude Code's empty per-turn system entries (docs/protocols.md §3.2)
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
    parts: list[str] = []
    calls = []
    reasoning = None
    refusal = None
    for j, b in enumerate(m.content):
        if type(b) is Text:
            if ir.extras_for(b, FORMAT).get("type") == "refusal":
                refusal = b.text
            elif b.text:
                parts.append(b.text)
        elif type(b) is ToolCall:
            calls.append(_encode_tool_call(b, names))
        elif type(b) is Reasoning:
            # Only Chat's own de-facto reasoning_content goes back (§5.8 case 11).
            if ir.extras_for(b, FORMAT).get("reasoning_content") and b.text:
                reasoning = b.text
        elif type(b) is NativeBlock and b.provider == FORMAT:
            continue
        elif type(b) is NativeBlock:
            raise UnsupportedFeature(f"messages[{i}].content[{j}]", f"{b.type} content")
    msg = {"role": "assistant"}
    if parts:
        msg["content"] = "".join(parts) if m.as_string or len(parts) == 1 else [
            {"type": "text", "text": t} for t in parts
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
    if not parts and not calls and refusal is None and reasoning is None and not m.as_string:
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


def _encode_tool(t: ir.Tool, names: dict[str, str] | None,
                 ctx: ir.Context | None) -> dict[str, Any] | None:
    if type(t) is ir.FunctionTool:
        f: dict[str, Any] = {"name": wire_tool_name(t.name, names)}
        if t.description is not None:
            f["description"] = t.description
        if t.parameters is not None:
            f["parameters"] = t.parameters
        if t.strict is not None:
            f["strict"] = t.strict
        f.update(_public(ir.extras_for(t, FORMAT)))
        return {"type": "function", "function": f}
    if type(t) is ir.CustomTool:
        c: dict[str, Any] = {"name": wire_tool_name(t.name, names)}
        if t.description is not None:
            c["description"] = t.description
        if t.format is not None:
            c["format"] = t.format
        return {"type": "custom", "custom": c}
    if type(t) is ir.NativeTool:
        if t.provider == FORMAT:
            return t.spec
        return foreign_tool(t, FORMAT, ctx)
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
