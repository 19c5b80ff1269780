"""Anthropic Messages requests from a client: ``decode_request`` (body -> ``ir.Request``),
and the tool id and name wiring the encoders share."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .._fields import foreign as _foreign
from .._fields import (
    sha256_hex,
)
from ..errors import (
    UnsupportedFeature,
)
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
    ToolResult,
)
from .tables import (
    _BAD_CHAR,
    _HASH_CHARS,
    _ID_OK,
    _MODELED,
    _NAME_OK,
    FORMAT,
    MAX_TEMPERATURE,
    MAX_TOOL_NAME_CHARS,
    MIN_THINKING_BUDGET_TOKENS,
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


def _digest(text: str) -> str:
    return sha256_hex(text)[:_HASH_CHARS]


# ---------------------------------------------------------------------------------------
# Ids and names (§5.3)
# ---------------------------------------------------------------------------------------


def wire_tool_id(tool_id: str) -> str:
    """A ``tool_use.id`` matching ``^[a-zA-Z0-9_-]+$`` (§3.3).

    Invalid characters become ``_`` (LiteLLM's rule) and a hash of the original is
    appended so two ids cannot collide. Deterministic, so a ``tool_use`` id and the
    matching ``tool_result.tool_use_id`` always agree (§5.3 "one map").
    """
    if _ID_OK.fullmatch(tool_id):
        return tool_id
    return f"{_BAD_CHAR.sub('_', tool_id) or 'toolu'}_{_digest(tool_id)}"


def wire_tool_name(name: str, names: dict[str, str] | None = None) -> str:
    """A tool name matching ``^[a-zA-Z0-9_-]{1,128}$``; ``names`` receives the reverse
    mapping (wire name → original) so replies carry the client's names again."""
    if _NAME_OK.fullmatch(name):
        return name
    keep = MAX_TOOL_NAME_CHARS - _HASH_CHARS - 1
    wire = f"{_BAD_CHAR.sub('_', name)[:keep]}_{_digest(name)}"
    if names is not None:
        names[wire] = name
    return wire


# ---------------------------------------------------------------------------------------
# Request: wire -> IR
# ---------------------------------------------------------------------------------------


def decode_request(body: Any, ctx: ir.Context | None = None) -> Request:
    """Decode a client's ``POST /v1/messages`` body.

    Raises ``ClientProtocolError`` naming the param for malformed input. When ``ctx``
    says the upstream speaks another format, ``mcp_servers`` (the API connecting to MCP
    servers itself) raises ``UnsupportedFeature``; server tools and other
    Anthropic-only content are kept as ``NativeTool``/``NativeBlock`` and fail in the
    foreign encoder. Fields only Anthropic understands and that are safe to lose
    (``context_management``, ``container``, ``service_tier``, top-level
    ``cache_control``) go to ``extras``.
    """
    # Each field is read with one ``get``; the validators (which build the error) run
    # only when a value is not of the expected type.
    if type(body) is not dict:
        _dict(body, "body")  # raises
    foreign = _foreign(ctx, FORMAT)
    model = body.get("model")
    if type(model) is not str:
        model = _str(body, "model", "model", required=True)  # raises
    max_tokens = body.get("max_tokens")
    if type(max_tokens) is not int or max_tokens < 0:
        max_tokens = _int(body, "max_tokens", required=True)  # raises
    raw_messages = body.get("messages")
    if raw_messages is None:
        raise _missing("messages")
    if type(raw_messages) is not list:
        _list(raw_messages, "messages")  # raises
    messages = tuple([_decode_message(m, i) for i, m in enumerate(raw_messages)])
    if foreign and body.get("mcp_servers"):
        raise UnsupportedFeature("mcp_servers")

    extras: dict[str, Any] = {}
    system: tuple[Text, ...] = ()
    raw_system = body.get("system")
    if type(raw_system) is str:
        system = (Text(raw_system),) if raw_system else ()
    elif raw_system is not None:
        blocks = []
        for j, b in enumerate(_list(raw_system, "system")):
            p = f"system[{j}]"
            b = _dict(b, p)
            if b.get("type") != "text":
                raise _bad(f"{p}.type", "Input should be 'text'")
            blocks.append(_decode_text(b, p))
        system = tuple(blocks)
        extras["_system_list"] = True

    stop = body.get("stop_sequences")
    stop_t = None
    if stop is not None:
        stop_l = _list(stop, "stop_sequences")
        if any(type(s) is not str for s in stop_l):
            raise _bad("stop_sequences", "Input should be a list of strings")
        stop_t = tuple(stop_l)

    raw_tools = body.get("tools")
    tools: tuple[ir.Tool, ...] = ()
    if raw_tools:
        tools = tuple([_decode_tool(t, i) for i, t in enumerate(_list(raw_tools, "tools"))])
    tool_choice = _decode_tool_choice(body.get("tool_choice"))

    reasoning = None
    response_format = None
    thinking = body.get("thinking")
    output_config = body.get("output_config")
    effort = None
    if output_config is not None:
        output_config = _dict(output_config, "output_config")
        effort = _str(output_config, "effort", "output_config.effort")
        fmt = output_config.get("format")
        if fmt is not None:
            fmt = _dict(fmt, "output_config.format")
            if fmt.get("type") != "json_schema":
                raise _bad("output_config.format.type", "Input should be 'json_schema'")
            response_format = ir.ResponseFormat(
                type="json_schema", schema=_dict(fmt.get("schema"), "output_config.format.schema")
            )
        other = {k: v for k, v in output_config.items() if k not in ("effort", "format")}
        if other:
            extras["output_config"] = other
    if thinking is not None:
        thinking = _dict(thinking, "thinking")
        ttype = thinking.get("type")
        if ttype not in ("enabled", "disabled", "adaptive"):
            raise _bad("thinking.type", "Input should be 'enabled', 'disabled' or 'adaptive'")
        budget = _int(thinking, "budget_tokens", required=True, lo=MIN_THINKING_BUDGET_TOKENS,
                      param="thinking.budget_tokens") if ttype == "enabled" else None
        reasoning = ir.ReasoningConfig(
            mode=ttype, effort=effort, budget_tokens=budget,
            display=_str(thinking, "display", "thinking.display"),
        )
    elif effort is not None:
        reasoning = ir.ReasoningConfig(effort=effort)
        extras["_effort_only"] = True

    user = None
    metadata = body.get("metadata")
    if metadata is not None:
        metadata = _dict(metadata, "metadata")
        user = _str(metadata, "user_id", "metadata.user_id")
        other = {k: v for k, v in metadata.items() if k != "user_id"}
        if other:
            extras["metadata"] = other

    stream = body.get("stream")
    if stream is not None and type(stream) is not bool:
        _bool(body, "stream")  # raises
    temperature = body.get("temperature")
    if temperature is not None:
        temperature = _num(body, "temperature", 0.0, MAX_TEMPERATURE)
    top_p = body.get("top_p")
    if top_p is not None:
        top_p = _num(body, "top_p", 0.0, 1.0)
    top_k = body.get("top_k")
    if top_k is not None:
        top_k = _int(body, "top_k")
    if not body.keys() <= _MODELED:
        for k, v in body.items():
            if k not in _MODELED:
                extras[k] = v
    return Request(
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=tool_choice,
        max_output_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop=stop_t,
        stream=stream is True,
        response_format=response_format,
        reasoning=reasoning,
        user=user,
        extras={FORMAT: extras} if extras else None,
    )


_TEXT_KEYS = frozenset({"type", "text", "cache_control"})


def _decode_text(b: dict[str, Any], p: str) -> Text:
    text = b.get("text")
    if type(text) is not str:
        text = _str(b, "text", f"{p}.text", required=True)  # raises
    return Text(str(text), b.get("cache_control"), _rest(b, _TEXT_KEYS))


def _decode_source(b: dict[str, Any],
                   p: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(media_type, data, url, file_id) of an image/document ``source``."""
    src = _dict(b.get("source"), f"{p}.source")
    stype = src.get("type")
    if stype == "base64":
        return (_str(src, "media_type", f"{p}.source.media_type", required=True),
                _str(src, "data", f"{p}.source.data", required=True), None, None)
    if stype == "url":
        return None, None, _str(src, "url", f"{p}.source.url", required=True), None
    if stype == "file":
        return None, None, None, _str(src, "file_id", f"{p}.source.file_id", required=True)
    raise _bad(f"{p}.source.type", "Input should be 'base64', 'url' or 'file'")


def _decode_block(b: Any, p: str, *, in_tool_result: bool = False) -> ir.Block:
    b = _dict(b, p)
    btype = b.get("type")
    cc = b.get("cache_control")
    if btype == "text":
        return _decode_text(b, p)
    if btype == "image":
        media_type, data, url, file_id = _decode_source(b, p)
        return Image(media_type=media_type, data=data, url=url, file_id=file_id,
                     cache_control=cc, extras=_rest(b, {"type", "source", "cache_control"}))
    if btype == "document":
        src = b.get("source")
        if type(src) is dict and src.get("type") in ("base64", "url", "file"):
            media_type, data, url, file_id = _decode_source(b, p)
            return File(media_type=media_type, data=data, url=url, file_id=file_id,
                        filename=b.get("title") if type(b.get("title")) is str else None,
                        cache_control=cc,
                        extras=_rest(b, {"type", "source", "cache_control", "title"}))
        return NativeBlock(FORMAT, "document", b)
    if in_tool_result:
        if type(btype) is not str:
            raise _bad(f"{p}.type", "Input should be a valid string")
        return NativeBlock(FORMAT, btype, b)
    if btype == "tool_use":
        tid = _str(b, "id", f"{p}.id", required=True) or ""
        name = _str(b, "name", f"{p}.name", required=True) or ""
        inp = b.get("input")
        if inp is None:
            inp = {}
        inp = _dict(inp, f"{p}.input")
        return ToolCall(id=tid, name=name, arguments=jsonio.dumps(inp).decode(), input=inp,
                        cache_control=cc,
                        extras=_rest(b, {"type", "id", "name", "input", "cache_control"}))
    if btype == "tool_result":
        tid = _str(b, "tool_use_id", f"{p}.tool_use_id", required=True) or ""
        content = b.get("content")
        hints = None
        if content is None:
            blocks: tuple[ir.Block, ...] = ()
        elif type(content) is str:
            blocks = (Text(content),) if content else ()
        else:
            blocks = tuple(
                _decode_block(c, f"{p}.content[{k}]", in_tool_result=True)
                for k, c in enumerate(_list(content, f"{p}.content"))
            )
            hints = {"_content_list": True}
        is_error = _bool(b, "is_error", f"{p}.is_error")
        if is_error is False:
            hints = dict(hints or {}, _is_error_false=True)
        return ToolResult(id=tid, content=blocks, is_error=bool(is_error), cache_control=cc,
                          extras=_rest(b, {"type", "tool_use_id", "content", "is_error",
                                           "cache_control"}, hints))
    if btype == "thinking":
        return Reasoning(text=_str(b, "thinking", f"{p}.thinking", required=True) or "",
                         signature=_str(b, "signature", f"{p}.signature"), provider=FORMAT)
    if btype == "redacted_thinking":
        return Reasoning(redacted_data=_str(b, "data", f"{p}.data", required=True),
                         provider=FORMAT)
    if type(btype) is not str:
        raise _bad(f"{p}.type", "Input should be a valid string")
    # Server tool blocks, search results, container uploads, future types.
    return NativeBlock(FORMAT, btype, b)


_MESSAGE_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM}
_MESSAGE_KEYS = frozenset({"role", "content"})


def _decode_message(m: Any, i: int) -> Message:
    # The param names (``messages[i]…``) are built only for an error.
    if type(m) is not dict:
        _dict(m, f"messages[{i}]")  # raises
    role_s = m.get("role")
    role = _MESSAGE_ROLES.get(role_s) if type(role_s) is str else None
    if role is None:
        raise _bad(f"messages[{i}].role", "Input should be 'user' or 'assistant'")
    content = m.get("content")
    as_string = False
    if type(content) is str:
        as_string = True
        blocks: tuple[ir.Block, ...] = (Text(content),) if content else ()
    elif content is None:
        raise _missing(f"messages[{i}].content")
    else:
        p = f"messages[{i}]"
        blocks = tuple([_decode_block(b, f"{p}.content[{j}]")
                        for j, b in enumerate(_list(content, f"{p}.content"))])
    if role is Role.SYSTEM:
        # Claude Code's per-turn system entries (docs/protocols.md §3.2): they stay in
        # place when going back to Anthropic, and carry their own output_config.
        extras = _rest(m, _MESSAGE_KEYS, {"_inline": True})
    elif m.keys() <= _MESSAGE_KEYS:
        extras = None  # nothing else in the message (the usual case)
    else:
        extras = _rest(m, _MESSAGE_KEYS)
    return Message(role, blocks, as_string=as_string, extras=extras)


def _decode_tool(t: Any, i: int) -> ir.Tool:
    p = f"tools[{i}]"
    t = _dict(t, p)
    ttype = t.get("type")
    if ttype is not None and ttype != "custom":
        # Server tools: web_search_20250305, bash_…, text_editor_…, code_execution_….
        name = t.get("name")
        return ir.NativeTool(provider=FORMAT, type=str(ttype), spec=t,
                             name=name if type(name) is str else None)
    name = _str(t, "name", f"{p}.name", required=True) or ""
    schema = t.get("input_schema")
    if schema is None:
        raise _missing(f"{p}.input_schema")
    strict = t.get("strict")
    return ir.FunctionTool(
        name=name,
        description=_str(t, "description", f"{p}.description"),
        parameters=_dict(schema, f"{p}.input_schema"),
        strict=strict if type(strict) is bool else None,
        cache_control=t.get("cache_control"),
        extras=_rest(t, {"name", "description", "input_schema", "cache_control", "strict"}),
    )


def _decode_tool_choice(tc: Any) -> ir.ToolChoice | None:
    if tc is None:
        return None
    tc = _dict(tc, "tool_choice")
    ttype = tc.get("type")
    dp = _bool(tc, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use")
    if ttype in ("auto", "any", "none"):
        return ir.ToolChoice(mode=ttype, disable_parallel=dp)
    if ttype == "tool":
        return ir.ToolChoice(mode="tool", name=_str(tc, "name", "tool_choice.name", required=True),
                             disable_parallel=dp)
    raise _bad("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")


# ---------------------------------------------------------------------------------------
# Request: IR -> wire (for an Anthropic upstream)
# ---------------------------------------------------------------------------------------


def _is_blank(text: str) -> bool:
    return not text or text.isspace()
