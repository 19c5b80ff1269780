"""Anthropic Messages wire format ⇄ IR (protocols.md §3).

* requests: ``decode_request`` (client body → ``ir.Request``, including what Claude Code
  sends: ``role:"system"`` entries inside ``messages`` with their own ``output_config``,
  adaptive thinking, ``context_management``, ``defer_loading`` tools; real-clients.md §1)
  and ``encode_request`` (``ir.Request`` → body for an Anthropic upstream, applying the
  §5.8 hard cases: system hoisting, a ``max_tokens`` default, temperature clamp, empty
  text dropped, tool results grouped first in one user turn, tool ids and names made
  valid through deterministic maps, thinking budget below ``max_tokens``, forced tool
  choice versus thinking);
* complete replies: ``decode_response`` / ``encode_response``;
* streams: ``StreamDecoder`` (``event:``/``data:`` SSE → IR events) and ``StreamEncoder``
  (IR events → SSE obeying §3.8: ``event:`` lines matching ``type``, sequential block
  indexes, one block at a time, ``message_delta`` only once usage is final, exactly one
  ``message_stop``, mid-stream failures as ``event: error``);
* errors: ``decode_error`` / ``encode_error`` (§3.9, §5.7).

The module interface is the one ``protocols/translate.py`` documents.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from . import ir, jsonio
from . import usage as usage_mod
from ._fields import (
    ANTHROPIC_FIELDS,
    custom_tool_names,
    extras_entry,
    sha256_hex,
    unwrap_custom_input,
)
from ._fields import client_name as _client_name
from ._fields import foreign as _foreign
from ._fields import public as _public
from ._streams import StreamDecoderBase, StreamEncoderBase
from .errors import (
    BufferLimitExceeded,
    ClientProtocolError,
    UnsupportedFeature,
    UpstreamProtocolError,
)
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
    SignatureDelta,
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
    "DEFAULT_MAX_TOKENS",
    "MIN_THINKING_BUDGET_TOKENS",
    "EFFORT_BUDGET_TOKENS",
    "MAX_TEMPERATURE",
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

FORMAT = ir.FORMAT_ANTHROPIC_MESSAGES

#: ``max_tokens`` is required by Anthropic and optional in OpenAI (§5.8 case 2). Used when
#: a translated request gives no cap: 8192 is the output limit of the Claude 3.5
#: generation and long enough for ordinary replies; LiteLLM defaults to 4096. Clients that
#: need more send ``max_completion_tokens`` / ``max_output_tokens`` themselves.
DEFAULT_MAX_TOKENS = 8192
#: ``thinking.budget_tokens`` must be at least 1024 (§3.5).
MIN_THINKING_BUDGET_TOKENS = 1024
#: An OpenAI-style reasoning effort becomes this thinking budget (§5.1 "reasoning"). The
#: ``none``/``minimal`` efforts turn thinking off. ``openai_chat`` maps budgets back with
#: thresholds between these values, so a round trip keeps the effort.
EFFORT_BUDGET_TOKENS = {
    "none": 0,
    "minimal": 0,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 65536,
}
#: Anthropic accepts ``temperature`` in 0–1; higher values are clamped to 1, as
#: Anthropic's own OpenAI compatibility layer does (§5.8 case 3).
MAX_TEMPERATURE = 1.0
#: With thinking on, ``top_p`` may only be 0.95–1 (§3.5); other values are dropped.
THINKING_MIN_TOP_P = 0.95
#: Tool names: ``^[a-zA-Z0-9_-]{1,128}$`` in the Messages API tool schema.
MAX_TOOL_NAME_CHARS = 128
#: Image media types Anthropic accepts (§3.3, §5.8 case 10).
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
#: Appended as a system instruction for ``response_format: json_object``, which has no
#: exact Anthropic equivalent (§5.8 case 12).
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
_HASH_CHARS = 8

_ID_OK = re.compile(r"[a-zA-Z0-9_-]+")
_NAME_OK = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_BAD_CHAR = re.compile(r"[^a-zA-Z0-9_-]")

_MODELED = frozenset(
    {
        "model", "messages", "system", "max_tokens", "stop_sequences", "temperature",
        "top_p", "top_k", "stream", "tools", "tool_choice", "thinking", "metadata",
        "output_config",
    }
)

_STOP_FROM_WIRE = {
    "end_turn": StopReason.END_TURN,
    "max_tokens": StopReason.MAX_TOKENS,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "tool_use": StopReason.TOOL_USE,
    "pause_turn": StopReason.PAUSE,
    "refusal": StopReason.CONTENT_FILTER,
    "model_context_window_exceeded": StopReason.CONTEXT_WINDOW,
}
_STOP_TO_WIRE = {
    StopReason.END_TURN: "end_turn",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.STOP_SEQUENCE: "stop_sequence",
    StopReason.TOOL_USE: "tool_use",
    StopReason.PAUSE: "pause_turn",
    StopReason.CONTENT_FILTER: "refusal",
    StopReason.CONTEXT_WINDOW: "model_context_window_exceeded",
    StopReason.ERROR: "end_turn",
}

# §3.9 / §5.7: error kind -> (status, error.type).
_KIND_TO_ERROR: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_REQUEST: (400, "invalid_request_error"),
    ErrorKind.AUTHENTICATION: (401, "authentication_error"),
    ErrorKind.QUOTA: (402, "billing_error"),
    ErrorKind.PERMISSION: (403, "permission_error"),
    ErrorKind.NOT_FOUND: (404, "not_found_error"),
    ErrorKind.REQUEST_TOO_LARGE: (413, "request_too_large"),
    ErrorKind.RATE_LIMIT: (429, "rate_limit_error"),
    ErrorKind.SERVER: (500, "api_error"),
    ErrorKind.UPSTREAM_PROTOCOL: (502, "api_error"),
    ErrorKind.TIMEOUT: (504, "timeout_error"),
    # An OpenAI 503 reaches an Anthropic client as 529 overloaded_error (§5.7 notes).
    ErrorKind.OVERLOADED: (529, "overloaded_error"),
}
_TYPE_TO_KIND = {
    "invalid_request_error": ErrorKind.INVALID_REQUEST,
    "authentication_error": ErrorKind.AUTHENTICATION,
    "billing_error": ErrorKind.QUOTA,
    "permission_error": ErrorKind.PERMISSION,
    "not_found_error": ErrorKind.NOT_FOUND,
    "request_too_large": ErrorKind.REQUEST_TOO_LARGE,
    "rate_limit_error": ErrorKind.RATE_LIMIT,
    "api_error": ErrorKind.SERVER,
    "timeout_error": ErrorKind.TIMEOUT,
    "overloaded_error": ErrorKind.OVERLOADED,
}
_STATUS_TO_KIND = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.AUTHENTICATION,
    402: ErrorKind.QUOTA,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    413: ErrorKind.REQUEST_TOO_LARGE,
    429: ErrorKind.RATE_LIMIT,
    500: ErrorKind.SERVER,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.OVERLOADED,
}


# ---------------------------------------------------------------------------------------
# Validation helpers (client side: ClientProtocolError naming the param)
# ---------------------------------------------------------------------------------------


_bad, _missing = ANTHROPIC_FIELDS.bad, ANTHROPIC_FIELDS.missing
_str, _dict, _list = ANTHROPIC_FIELDS.string, ANTHROPIC_FIELDS.object, ANTHROPIC_FIELDS.array
_num, _int, _bool = ANTHROPIC_FIELDS.number, ANTHROPIC_FIELDS.integer, ANTHROPIC_FIELDS.boolean


#: ``_rest(obj, known, hints=None)``: the fields of ``obj`` outside ``known`` as this
#: format's extras (``_fields.extras_entry``).
_rest = partial(extras_entry, FORMAT)


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
    return Text(text, b.get("cache_control"), _rest(b, _TEXT_KEYS))


def _decode_source(b: dict[str, Any], p: str) -> tuple[str | None, str | None, str | None, str | None]:
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
        # Claude Code's per-turn system entries (real-clients.md pitfall 2): they stay in
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


def encode_request(req: Request, ctx: ir.Context | None = None) -> dict[str, Any]:
    """Build a Messages body from ``req`` (protocols.md §5.8 hard cases).

    1. System text: ``req.system`` plus every system/developer message (in order) is
       hoisted into ``system``; Claude Code's own in-place system entries stay in place.
       One string joined by ``\\n`` when no block needs ``cache_control``, else blocks.
    2. ``max_tokens`` = ``max_output_tokens`` or ``DEFAULT_MAX_TOKENS``. A thinking budget
       must stay below it: without a client cap ``max_tokens`` grows to make room; with a
       client cap the budget shrinks to half of it, and thinking is turned off when that
       is below ``MIN_THINKING_BUDGET_TOKENS``.
    3. ``temperature`` above 1 is clamped to 1; with thinking on, ``temperature`` and
       ``top_k`` are dropped and ``top_p`` outside 0.95–1 is dropped.
    6. Tool results are grouped into one user turn, first, before other user content.
    7. Empty and whitespace-only text blocks are dropped.
    11. Reasoning is replayed only when Anthropic issued it (signature or redacted data).
    12. ``json_schema`` → ``output_config.format``; ``json_object`` → a system instruction.
    20. A forced ``tool_choice`` (``any``/``tool``) turns thinking off, as does a tool loop
        whose last assistant turn has no thinking block to replay (§3.5).

    Cases 2, 3 (thinking part), 13 and 20 only adjust requests that came from another
    format: an Anthropic client's own request is forwarded as it was written.
    """
    translated = ctx is None or ctx.client_format != FORMAT
    names = ctx.tool_names if ctx is not None else None
    extras = ir.extras_for(req, FORMAT)
    body: dict[str, Any] = {"model": req.model}

    # 1. System.
    system_blocks: list[dict[str, Any]] = []
    for t in req.system:
        if not _is_blank(t.text):
            system_blocks.append(_text_block(t))
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        if m.role is Role.SYSTEM or m.role is Role.DEVELOPER:
            if ir.extras_for(m, FORMAT).get("_inline"):
                messages.append(_inline_system(m))
                continue
            texts = [b for b in m.content if type(b) is Text and not _is_blank(b.text)]
            if texts:
                joined = "\n".join(b.text for b in texts)
                cc = next((b.cache_control for b in reversed(texts) if b.cache_control), None)
                system_blocks.append({"type": "text", "text": joined, **({"cache_control": cc} if cc else {})})
            continue
        _append_message(messages, m, i, names)
    _finish_messages(messages)
    if req.response_format is not None and req.response_format.type == "json_object":
        system_blocks.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    if system_blocks:
        if not extras.get("_system_list") and all(len(b) == 2 for b in system_blocks):
            body["system"] = "\n".join(b["text"] for b in system_blocks)
        else:
            body["system"] = system_blocks
    body["messages"] = messages

    # Tools.
    allowed = set(req.tool_choice.allowed) if req.tool_choice and req.tool_choice.allowed is not None else None
    tools = []
    for t in req.tools:
        if allowed is not None and getattr(t, "name", None) not in allowed:
            continue  # Anthropic has no allowed-tools list: offer only those (§5.1).
        tools.append(_encode_tool(t, names, ctx))
    if tools:
        body["tools"] = tools

    # 2. max_tokens and thinking.
    max_tokens = req.max_output_tokens if req.max_output_tokens is not None else DEFAULT_MAX_TOKENS
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] = dict(extras.get("output_config") or {})
    r = req.reasoning
    if r is not None:
        budget = None
        if r.mode == "enabled":
            budget = r.budget_tokens or EFFORT_BUDGET_TOKENS.get(r.effort or "", 0) or MIN_THINKING_BUDGET_TOKENS
        elif r.mode == "adaptive":
            thinking = {"type": "adaptive"}
        elif r.mode == "disabled":
            thinking = {"type": "disabled"}
        elif r.effort is not None and not extras.get("_effort_only"):
            # An OpenAI-style effort: thinking with a matching budget.
            budget = EFFORT_BUDGET_TOKENS.get(r.effort, EFFORT_BUDGET_TOKENS["medium"]) or None
        if r.effort is not None and (r.mode is not None or extras.get("_effort_only")):
            output_config["effort"] = r.effort
        if budget is not None and translated:
            budget = max(budget, MIN_THINKING_BUDGET_TOKENS)
            if budget >= max_tokens:
                if req.max_output_tokens is None:
                    max_tokens = budget + DEFAULT_MAX_TOKENS
                else:
                    budget = max_tokens // 2
                    if budget < MIN_THINKING_BUDGET_TOKENS:
                        budget = None
        if budget is not None:
            thinking = {"type": "enabled", "budget_tokens": budget}
        if thinking is not None and r.display is not None:
            thinking["display"] = r.display
    thinking_on = thinking is not None and thinking["type"] != "disabled"
    if thinking_on and translated and (
        (req.tool_choice is not None and req.tool_choice.mode in ("any", "tool"))
        or _tool_loop_without_thinking(messages)
    ):
        thinking = None
        thinking_on = False
        output_config.pop("effort", None) if r is not None and r.mode is None else None
    body["max_tokens"] = max_tokens
    if thinking is not None:
        body["thinking"] = thinking

    # 3. Sampling.
    if req.temperature is not None and not (thinking_on and translated):
        body["temperature"] = min(req.temperature, MAX_TEMPERATURE)
    if req.top_p is not None and not (
        thinking_on and translated and not THINKING_MIN_TOP_P <= req.top_p <= 1.0
    ):
        body["top_p"] = req.top_p
    if req.top_k is not None and not (thinking_on and translated):
        body["top_k"] = req.top_k
    if req.stop:
        # §5.8 case 13: whitespace-only stop sequences do not work on Anthropic.
        stops = [s for s in req.stop if not (translated and _is_blank(s))]
        if stops:
            body["stop_sequences"] = stops
    if req.stream:
        body["stream"] = True

    tc = req.tool_choice
    if tc is not None and tools:
        choice = _encode_tool_choice(tc, names)
        if choice is not None:
            body["tool_choice"] = choice

    rf = req.response_format
    if rf is not None and rf.type == "json_schema" and rf.schema is not None:
        output_config["format"] = {"type": "json_schema", "schema": rf.schema}
    if output_config:
        body["output_config"] = output_config

    metadata = dict(extras.get("metadata") or {})
    if req.user is not None:
        metadata["user_id"] = req.user
    if metadata:
        body["metadata"] = metadata
    for k, v in extras.items():
        if not k.startswith("_") and k not in body and k not in ("output_config", "metadata"):
            body[k] = v
    return body


def _text_block(t: Text) -> dict[str, Any]:
    b: dict[str, Any] = {"type": "text", "text": t.text}
    if t.cache_control is not None:
        b["cache_control"] = t.cache_control
    if t.extras:
        b.update({k: v for k, v in ir.extras_for(t, FORMAT).items() if not k.startswith("_")})
    return b


def _inline_system(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "system"}
    if m.as_string:
        out["content"] = "".join(b.text for b in m.content if type(b) is Text)
    else:
        out["content"] = [_text_block(b) for b in m.content if type(b) is Text]
    out.update({k: v for k, v in ir.extras_for(m, FORMAT).items() if not k.startswith("_")})
    return out


def _source(b: Image | File, param: str) -> dict[str, Any]:
    if b.data is not None:
        return {"type": "base64", "media_type": b.media_type or "application/octet-stream",
                "data": b.data}
    if b.url is not None:
        return {"type": "url", "url": b.url}
    if b.file_id is not None:
        return {"type": "file", "file_id": b.file_id}
    raise _bad(param, "image or file without a source")


def _encode_block(b: ir.Block, param: str, names: dict[str, str] | None,
                  keep_blank: bool = False) -> dict[str, Any] | None:
    t = type(b)
    if t is Text:
        if _is_blank(b.text) and not keep_blank:
            return None  # §5.8 case 7: Anthropic rejects empty text blocks
        return _text_block(b)
    if t is Image:
        if b.data is not None and b.media_type not in IMAGE_MEDIA_TYPES:
            raise UnsupportedFeature(param, f"image type {b.media_type!r}")
        out = {"type": "image", "source": _source(b, param)}
        if b.cache_control is not None:
            out["cache_control"] = b.cache_control
        out.update({k: v for k, v in ir.extras_for(b, FORMAT).items() if not k.startswith("_")})
        return out
    if t is File:
        out = {"type": "document", "source": _source(b, param)}
        if b.filename is not None:
            out["title"] = b.filename
        if b.cache_control is not None:
            out["cache_control"] = b.cache_control
        out.update({k: v for k, v in ir.extras_for(b, FORMAT).items() if not k.startswith("_")})
        return out
    if t is ToolCall:
        if b.kind is ToolKind.CUSTOM:
            inp: Any = {ir.CUSTOM_INPUT_KEY: b.arguments}
        elif type(b.input) is dict:
            inp = b.input
        else:
            inp = ir.parse_arguments(b.arguments, jsonio.loads)
        out = {"type": "tool_use", "id": wire_tool_id(b.id), "name": wire_tool_name(b.name, names),
               "input": inp}
        if b.cache_control is not None:
            out["cache_control"] = b.cache_control
        out.update({k: v for k, v in ir.extras_for(b, FORMAT).items() if not k.startswith("_")})
        return out
    if t is ToolResult:
        bx = ir.extras_for(b, FORMAT)
        out = {"type": "tool_result", "tool_use_id": wire_tool_id(b.id)}
        parts = [_encode_block(c, f"{param}.content[{k}]", names) for k, c in enumerate(b.content)]
        parts = [p for p in parts if p is not None]
        if parts:
            if len(parts) == 1 and parts[0]["type"] == "text" and len(parts[0]) == 2 \
                    and not bx.get("_content_list"):
                out["content"] = parts[0]["text"]
            else:
                out["content"] = parts
        elif bx.get("_content_list"):
            out["content"] = []
        if b.is_error:
            out["is_error"] = True
        elif bx.get("_is_error_false"):
            out["is_error"] = False
        if b.cache_control is not None:
            out["cache_control"] = b.cache_control
        out.update({k: v for k, v in bx.items() if not k.startswith("_")})
        return out
    if t is Reasoning:
        # §5.8 case 11: only Anthropic's own thinking, byte for byte.
        if b.provider != FORMAT:
            return None
        if b.redacted_data is not None:
            return {"type": "redacted_thinking", "data": b.redacted_data}
        if b.signature is None or not b.text:
            return None
        return {"type": "thinking", "thinking": b.text, "signature": b.signature}
    if t is NativeBlock:
        if b.provider == FORMAT:
            return b.data
        raise UnsupportedFeature(param, f"{b.provider} {b.type!r} content")
    return None


def _append_message(out: list[dict[str, Any]], m: Message, i: int,
                    names: dict[str, str] | None) -> None:
    role = "assistant" if m.role is Role.ASSISTANT else "user"
    blocks = []
    for j, b in enumerate(m.content):
        if type(b) is Text:
            # Most blocks: what _encode_block does for text, without building its param
            # name (``messages[i].content[j]``, used only in errors).
            if not _is_blank(b.text):
                blocks.append(_text_block(b))
            continue
        eb = _encode_block(b, f"messages[{i}].content[{j}]", names)
        if eb is not None:
            blocks.append(eb)
    mx = ir.extras_for(m, FORMAT)
    if mx:
        mx = _public(mx)
    if not blocks and not mx:
        if m.as_string and not m.content:
            blocks = []
        else:
            return  # nothing left (for example only foreign reasoning or empty text)
    if out and out[-1]["role"] == role and not mx and not out[-1].get("_extra"):
        prev = out[-1]
        prev["content"] = _as_blocks(prev["content"]) + blocks
        prev["_string"] = False
        return
    msg = {"role": role, "content": blocks, "_string": m.as_string}
    if mx:
        msg.update(mx)
        msg["_extra"] = True
    out.append(msg)


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    if type(content) is str:
        return [{"type": "text", "text": content}] if content else []
    return content


def _finish_messages(messages: list[dict[str, Any]]) -> None:
    """Final shaping: tool results first in each user turn (§3.3), string content where
    the client sent a string, no trailing whitespace on an assistant prefill (§3.2)."""
    for msg in messages:
        content = msg["content"]
        string = msg.pop("_string", False)
        msg.pop("_extra", None)
        if type(content) is not list:
            continue
        if msg["role"] == "user" and len(content) > 1:
            results = [b for b in content if b.get("type") == "tool_result"]
            if results and content[: len(results)] != results:
                msg["content"] = results + [b for b in content if b.get("type") != "tool_result"]
        if string and len(content) == 1 and content[0].get("type") == "text" and len(content[0]) == 2:
            msg["content"] = content[0]["text"]
        elif string and not content:
            msg["content"] = ""
    if messages and messages[-1]["role"] == "assistant":
        content = messages[-1]["content"]
        if type(content) is str:
            messages[-1]["content"] = content.rstrip()
        elif content and content[-1].get("type") == "text":
            text = content[-1]["text"].rstrip()
            if text:
                content[-1] = {**content[-1], "text": text}
            else:
                content.pop()


def _tool_loop_without_thinking(messages: list[dict[str, Any]]) -> bool:
    """True when the conversation continues a tool loop whose assistant turn holds no
    thinking block to replay: Anthropic rejects thinking then (§3.5), which happens
    whenever the client's format could not carry the signed thinking (§5.8 case 11)."""
    for msg in reversed(messages):
        if msg["role"] != "assistant":
            continue
        content = msg["content"]
        if type(content) is not list:
            return False
        has_tool = any(b.get("type") == "tool_use" for b in content)
        has_thinking = bool(content) and content[0].get("type") in ("thinking", "redacted_thinking")
        return has_tool and not has_thinking
    return False


def _encode_tool(t: ir.Tool, names: dict[str, str] | None, ctx: ir.Context | None) -> dict[str, Any]:
    tt = type(t)
    if tt is ir.FunctionTool:
        schema = t.parameters
        if not schema:
            schema = {"type": "object", "properties": {}}
        elif "type" not in schema:
            schema = {"type": "object", **schema}
        elif schema.get("type") != "object":
            raise UnsupportedFeature(f"tools[{t.name}].parameters",
                                     "Anthropic needs an object schema at the top level")
        out: dict[str, Any] = {"name": wire_tool_name(t.name, names)}
        if t.description is not None:
            out["description"] = t.description
        out["input_schema"] = schema
        if t.cache_control is not None:
            out["cache_control"] = t.cache_control
        if t.strict is not None and (ctx is None or ctx.client_format == FORMAT):
            # Other formats' strict flag is ignored, as Anthropic's compat layer does.
            out["strict"] = t.strict
        out.update(ir.extras_for(t, FORMAT))
        return out
    if tt is ir.CustomTool:
        desc = t.description or ""
        fmt = t.format or {}
        if fmt.get("type") == "grammar" and type(fmt.get("definition")) is str:
            desc += f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
        return {
            "name": wire_tool_name(t.name, names),
            "description": desc.strip() or t.name,
            "input_schema": {
                "type": "object",
                "properties": {ir.CUSTOM_INPUT_KEY: {"type": "string"}},
                "required": [ir.CUSTOM_INPUT_KEY],
            },
        }
    if t.provider == FORMAT:
        return t.spec
    raise UnsupportedFeature("tools", f"the {t.provider} built-in tool {t.type!r}")


def _encode_tool_choice(tc: ir.ToolChoice, names: dict[str, str] | None) -> dict[str, Any] | None:
    mode = tc.mode
    if mode is None:
        if not tc.disable_parallel:
            return None
        mode = "auto"  # §5.1: disable_parallel_tool_use needs a choice to ride on
    out: dict[str, Any] = {"type": mode}
    if mode == "tool":
        out["name"] = wire_tool_name(tc.name or "", names)
    if tc.disable_parallel is not None and mode != "none":
        out["disable_parallel_tool_use"] = tc.disable_parallel
    return out


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
        t = type(b)
        if t is Text:
            if b.text:
                content.append({"type": "text", "text": b.text})
        elif t is ToolCall:
            has_tools = True
            if b.kind is ToolKind.CUSTOM:
                inp: Any = {ir.CUSTOM_INPUT_KEY: b.arguments}
            elif type(b.input) is dict:
                inp = b.input
            else:
                inp = ir.parse_arguments(b.arguments, jsonio.loads)
            content.append({"type": "tool_use", "id": wire_tool_id(b.id), "name": b.name,
                            "input": inp})
        elif t is Reasoning:
            rb = _reasoning_block(b)
            if rb is not None:
                content.append(rb)
        elif t is NativeBlock and b.provider == FORMAT:
            content.append(b.data)
    stop = resp.stop_reason
    if has_tools and stop is StopReason.END_TURN:
        stop = StopReason.TOOL_USE  # §5.4: decide tool use from the calls first
    stop_sequence = resp.stop_sequence if stop is StopReason.STOP_SEQUENCE else None
    if stop is StopReason.STOP_SEQUENCE and stop_sequence is None:
        stop = StopReason.END_TURN  # §5.4: only report a stop sequence when known
    return {
        "id": ctx.new_id("msg_") if ctx is not None else resp.id,
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": _STOP_TO_WIRE[stop],
        "stop_sequence": stop_sequence,
        "usage": usage_mod.to_anthropic(resp.usage),
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
    message}}`` with the status of the kind (529 for overloaded, §5.7)."""
    status, etype = _KIND_TO_ERROR[err.kind]
    if source_format == FORMAT and err.type_:
        etype = err.type_
    if err.kind in (ErrorKind.INVALID_REQUEST, ErrorKind.SERVER) and err.status // 100 == status // 100:
        status = err.status
    return status, jsonio.dumps({"type": "error", "error": {"type": etype, "message": err.message}})


# ---------------------------------------------------------------------------------------
# Streams: wire -> IR
# ---------------------------------------------------------------------------------------

#: Byte budget for tool input held back: by the encoder, tool blocks that start while an
#: earlier block is still streaming (IR contract rule 3); by the decoder, the input of a
#: custom-tool call until its block stops. Tool arguments are small (Claude Code's
#: largest observed inputs are file writes of a few hundred KiB); 8 MiB bounds a
#: misbehaving upstream.
MAX_HELD_BYTES = 8 * 1024 * 1024

# Observe mode skips the JSON of these frames: they carry no facts.
_OBSERVE_SKIP = (b"event: content_block_delta\n", b"event: ping\n")


class StreamDecoder(StreamDecoderBase):
    """Anthropic SSE → IR events (protocols.md §3.8).

    Dispatches on the JSON ``type`` (equal to the ``event:`` name on the real API, and
    present even when a proxy dropped the ``event:`` lines). Anthropic block indexes are
    renumbered into IR indexes, so blocks the IR does not model (server tool blocks) can
    be skipped without leaving gaps. Usage from ``message_start`` and the cumulative
    ``message_delta`` reports is merged field by field (``usage.merge_anthropic``).
    ``message_stop`` is the only clean end; EOF before it is a ``StreamError``.

    A call to a custom (freeform) tool of the client (``ctx.client_request``), which
    reached Anthropic as a tool taking ``{"input": raw}`` (``ir.CUSTOM_INPUT_KEY``), is a
    ``ToolKind.CUSTOM`` block: its input is held (within ``MAX_HELD_BYTES``) and comes
    out unwrapped, as one ``ToolArgsDelta`` with the raw string, when the block stops.

    Facts read by ``Translation``: ``model``, ``id``, ``usage``, ``stop_reason``,
    ``tool_calls``, ``failed``, ``done``.
    """

    __slots__ = ("_blocks", "_next", "_raw_usage", "_stop", "_stop_sequence", "_started",
                 "_custom", "_held", "_held_bytes")

    _OBSERVE_SKIP = _OBSERVE_SKIP
    _TEXT_KEY = b'"text":"'
    _WHAT = "Anthropic stream event"

    def __init__(self, ctx: ir.Context | None = None, *, observe: bool = False) -> None:
        super().__init__(ctx, observe=observe)
        self._blocks: dict[Any, int] = {}  # Anthropic index -> IR index (-1 = skipped)
        self._next = 0
        self._raw_usage: dict[str, Any] = {}
        self._stop: StopReason | None = None
        self._stop_sequence: str | None = None
        self._started = False
        self._custom = custom_tool_names(ctx)
        self._held: dict[int, list[str]] = {}  # custom-tool block -> its input pieces
        self._held_bytes = 0

    def _eof(self, out: list[ir.StreamEvent]) -> None:
        self._fail(out, StreamError(ErrorKind.UPSTREAM_PROTOCOL,
                                    "upstream closed the stream before message_stop"))

    # -- handlers ----------------------------------------------------------------------

    def _on_message_start(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        msg = obj.get("message")
        if type(msg) is not dict:
            raise UpstreamProtocolError("message_start without a message", param="message")
        if self._started:
            return
        self._started = True
        mid = msg.get("id")
        model = msg.get("model")
        self.id = mid if type(mid) is str else ""
        self.model = model if type(model) is str else ""
        u = msg.get("usage")
        if u is not None:
            self._raw_usage = usage_mod.merge_anthropic({}, u)
            self.usage = usage_mod.from_anthropic(self._raw_usage)
        out.append(MessageStart(self.id, self.model, self.usage))

    def _ir_index(self, obj: dict[str, Any]) -> int:
        aidx = obj.get("index")
        idx = self._blocks.get(aidx) if type(aidx) is int else None
        if idx is None:
            raise UpstreamProtocolError("content block event for an unknown index", param="index")
        return idx

    def _on_block_start(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        cb = obj.get("content_block")
        aidx = obj.get("index")
        if type(cb) is not dict or type(aidx) is not int:
            raise UpstreamProtocolError("content_block_start without a block", param="content_block")
        if aidx in self._blocks:
            raise UpstreamProtocolError("content block index started twice", param="index")
        ctype = cb.get("type")
        if ctype == "text":
            idx = self._new(aidx)
            out.append(BlockStart(idx, BlockKind.TEXT))
            text = cb.get("text")
            if text and type(text) is str and not self._observe:
                out.append(TextDelta(idx, text))
        elif ctype == "tool_use":
            idx = self._new(aidx)
            tid, name = cb.get("id"), cb.get("name")
            if type(tid) is not str or type(name) is not str:
                raise UpstreamProtocolError("tool_use block without id and name", param="content_block")
            self.tool_calls += 1
            name = _client_name(self._ctx, name)
            inp = cb.get("input")
            if name in self._custom:
                out.append(BlockStart(idx, BlockKind.TOOL_CALL, tool_id=tid, tool_name=name,
                                      tool_kind=ToolKind.CUSTOM))
                self._held[idx] = []
                if inp:
                    self._hold(idx, jsonio.dumps(inp).decode())
            else:
                out.append(BlockStart(idx, BlockKind.TOOL_CALL, tool_id=tid, tool_name=name))
                if inp and not self._observe:
                    # Input given whole in the start event (real-clients.md: accepted).
                    out.append(ToolArgsDelta(idx, jsonio.dumps(inp).decode()))
        elif ctype == "thinking":
            idx = self._new(aidx)
            out.append(BlockStart(idx, BlockKind.REASONING, provider=FORMAT))
            text = cb.get("thinking")
            if text and type(text) is str and not self._observe:
                out.append(ReasoningDelta(idx, text))
            sig = cb.get("signature")
            if sig and type(sig) is str and not self._observe:
                out.append(SignatureDelta(idx, sig, FORMAT))
        elif ctype == "redacted_thinking":
            idx = self._new(aidx)
            data = cb.get("data")
            out.append(BlockStart(idx, BlockKind.REASONING,
                                  redacted_data=data if type(data) is str else "",
                                  provider=FORMAT))
        else:
            self._blocks[aidx] = -1  # server tool blocks etc.: not modelled

    def _new(self, aidx: int) -> int:
        idx = self._next
        self._next += 1
        self._blocks[aidx] = idx
        return idx

    def _text_event(self, text: str, where: Any) -> Any:
        # A templated frame is a text_delta of Anthropic block ``where``.
        idx = self._blocks.get(where)
        return TextDelta(idx, text) if idx is not None and idx >= 0 else None

    def _on_block_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        # The hot path (one call per streamed token): _ir_index inlined.
        aidx = obj.get("index")
        idx = self._blocks.get(aidx) if type(aidx) is int else None
        if idx is None:
            raise UpstreamProtocolError("content block event for an unknown index", param="index")
        if idx < 0:
            return
        delta = obj.get("delta")
        if type(delta) is not dict:
            raise UpstreamProtocolError("content_block_delta without a delta", param="delta")
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = delta.get("text")
            if type(text) is not str:
                raise UpstreamProtocolError("text_delta without text", param="delta.text")
            out.append(TextDelta(idx, text))
            self._learn_text(text, aidx)
        elif dtype == "input_json_delta":
            pj = delta.get("partial_json")
            if type(pj) is not str:
                raise UpstreamProtocolError("input_json_delta without partial_json",
                                            param="delta.partial_json")
            if pj:
                if self._held and idx in self._held:
                    self._hold(idx, pj)
                else:
                    out.append(ToolArgsDelta(idx, pj))
        elif dtype == "thinking_delta":
            text = delta.get("thinking")
            if type(text) is not str:
                raise UpstreamProtocolError("thinking_delta without thinking", param="delta.thinking")
            out.append(ReasoningDelta(idx, text))
        elif dtype == "signature_delta":
            sig = delta.get("signature")
            if type(sig) is not str:
                raise UpstreamProtocolError("signature_delta without signature",
                                            param="delta.signature")
            out.append(SignatureDelta(idx, sig, FORMAT))
        # citations_delta and future delta types: not modelled.

    def _on_block_stop(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        idx = self._ir_index(obj)
        if idx >= 0:
            if self._held:
                held = self._held.pop(idx, None)
                if held is not None:
                    raw = unwrap_custom_input("".join(held))
                    if raw:
                        out.append(ToolArgsDelta(idx, raw))
            out.append(BlockStop(idx))

    def _hold(self, idx: int, piece: str) -> None:
        self._held_bytes += len(piece)
        if self._held_bytes > MAX_HELD_BYTES:
            raise BufferLimitExceeded(f"more than {MAX_HELD_BYTES} bytes of custom tool input held",
                                      param="delta.partial_json", limit=MAX_HELD_BYTES)
        self._held[idx].append(piece)

    def _on_message_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        delta = obj.get("delta")
        if type(delta) is dict:
            stop = delta.get("stop_reason")
            if stop is not None:
                self._stop = _stop_from_wire(stop)
                seq = delta.get("stop_sequence")
                self._stop_sequence = seq if type(seq) is str else None
        u = obj.get("usage")
        if u is not None:
            # Cumulative: overlay, never add (§3.8 step 3).
            self._raw_usage = usage_mod.merge_anthropic(self._raw_usage, u)
            self.usage = usage_mod.from_anthropic(self._raw_usage)
            out.append(UsageUpdate(self.usage))

    def _on_message_stop(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        stop = self._stop
        if stop is None:
            stop = StopReason.TOOL_USE if self.tool_calls else StopReason.END_TURN
        self.stop_reason = stop
        self.done = True
        out.append(MessageEnd(stop, self._stop_sequence))

    def _on_ping(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        out.append(ir.PING)

    def _on_error(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        err = obj.get("error")
        etype = err.get("type") if type(err) is dict else None
        message = err.get("message") if type(err) is dict else None
        kind = _kind_for(0, etype)
        self._fail(out, StreamError(
            kind, message if type(message) is str else "upstream error",
            _KIND_TO_ERROR[kind][0], etype if type(etype) is str else None,
        ))

    _HANDLERS = {
        "message_start": _on_message_start,
        "content_block_start": _on_block_start,
        "content_block_delta": _on_block_delta,
        "content_block_stop": _on_block_stop,
        "message_delta": _on_message_delta,
        "message_stop": _on_message_stop,
        "ping": _on_ping,
        "error": _on_error,
    }


# ---------------------------------------------------------------------------------------
# Streams: IR -> wire
# ---------------------------------------------------------------------------------------

_DELTA_EVENT = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_MID = b',"delta":{"type":"text_delta","text":'
_ARGS_MID = b',"delta":{"type":"input_json_delta","partial_json":'
_THINK_MID = b',"delta":{"type":"thinking_delta","thinking":'
_SIG_MID = b',"delta":{"type":"signature_delta","signature":'
_END = b"}}\n\n"


class StreamEncoder(StreamEncoderBase):
    """IR events → Anthropic SSE for an Anthropic client (protocols.md §3.8, §5.6).

    * Every event has an ``event:`` line equal to its ``type`` (the SDK dispatches on it).
    * Blocks are numbered 0, 1, 2… in the order they are opened here, one at a time. A
      text or thinking block opens at its first non-empty delta, so an upstream's empty
      text never becomes an empty block (§5.8 case 7). A tool block that starts while
      another block is open is held (bounded by ``MAX_HELD_BYTES``) and replayed whole
      once the open block stops.
    * ``message_delta`` is written at ``MessageEnd``, when usage is final (decoders emit
      every ``UsageUpdate`` before it), then exactly one ``message_stop``.
    * ``StreamError`` becomes ``event: error``; nothing follows it. A cut stream ends with
      one, never with a fabricated ``message_stop`` (§6.3 "Cut streams").
    """

    __slots__ = (
        "_next", "_map", "_open", "_kinds", "_pending_tool", "_held", "_held_bytes", "_usage",
        "_tool_blocks", "_prefix",
    )

    def __init__(self, ctx: ir.Context | None = None) -> None:
        super().__init__(ctx)
        self._next = 0  # next Anthropic block index
        self._map: dict[int, int] = {}  # IR index -> Anthropic index (opened blocks)
        self._open = -1  # IR index of the open Anthropic block, or -1
        self._kinds: dict[int, BlockStart] = {}  # IR index -> its BlockStart (not yet opened)
        self._held: dict[int, list[ir.StreamEvent]] = {}  # IR index -> held events
        self._held_bytes = 0
        self._pending_tool: list[int] = []  # held tool blocks, in start order
        self._prefix: dict[int, bytes] = {}  # Anthropic index -> delta event prefix
        self._usage: Usage | None = None
        self._tool_blocks = 0

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _event(name: bytes, obj: Any) -> bytes:
        return b"event: " + name + b"\ndata: " + jsonio.dumps(obj) + b"\n\n"

    def _open_block(self, idx: int, block: dict[str, Any]) -> bytes:
        """Write content_block_start for IR block ``idx``."""
        a = self._next
        self._next += 1
        self._map[idx] = a
        self._open = idx
        self._prefix[a] = _DELTA_EVENT + str(a).encode()
        return (b'event: content_block_start\ndata: {"type":"content_block_start","index":'
                + str(a).encode() + b',"content_block":' + jsonio.dumps(block) + b"}\n\n")

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        return self._on_start(MessageStart("", ""))

    def _busy(self, idx: int) -> bool:
        """True when events of block ``idx`` must wait: another block is open."""
        return self._open >= 0 and self._open != idx

    def _hold(self, idx: int, ev: ir.StreamEvent, size: int) -> bytes:
        self._held_bytes += size
        if self._held_bytes > MAX_HELD_BYTES:
            raise UpstreamProtocolError(
                f"more than {MAX_HELD_BYTES} bytes of overlapping tool calls held",
                param="tool_calls")
        self._held.setdefault(idx, []).append(ev)
        return b""

    # -- handlers ----------------------------------------------------------------------

    def _on_start(self, ev: MessageStart) -> bytes:
        if self._started:
            return b""
        self._started = True
        ctx = self._ctx
        creq = ctx.client_request if ctx is not None else None
        if ev.usage is not None:
            self._usage = ev.usage
        u = usage_mod.to_anthropic(ev.usage or Usage())
        msg = {
            "id": ctx.new_id("msg_") if ctx is not None else (ev.id or "msg"),
            "type": "message",
            "role": "assistant",
            "model": ev.model or (creq.model if creq is not None else ""),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": u,
        }
        return self._event(b"message_start", {"type": "message_start", "message": msg})

    def _on_block_start(self, ev: BlockStart) -> bytes:
        idx = ev.index
        if ev.kind is BlockKind.TOOL_CALL:
            self._tool_blocks += 1
            if self._open >= 0 or self._pending_tool:
                self._kinds[idx] = ev
                self._pending_tool.append(idx)
                self._held[idx] = []
                return b""
            return self._start_tool(ev)
        if ev.kind is BlockKind.REASONING and ev.redacted_data is not None:
            self._kinds[idx] = ev
            if ev.provider != FORMAT:
                return b""
            # Whole block in the start event; no deltas follow.
            return self._open_block(idx, {"type": "redacted_thinking", "data": ev.redacted_data})
        # Text and thinking blocks open lazily at their first non-empty delta.
        self._kinds[idx] = ev
        return b""

    def _start_tool(self, ev: BlockStart) -> bytes:
        self._kinds.pop(ev.index, None)
        block = {"type": "tool_use", "id": wire_tool_id(ev.tool_id or ""),
                 "name": ev.tool_name or "", "input": {}}
        return self._ensure_started() + self._open_block(ev.index, block)

    def _on_text(self, ev: TextDelta) -> bytes:
        if not ev.text:
            return b""
        idx = ev.index
        a = self._map.get(idx)
        if a is None:
            if self._open >= 0:
                return b""  # text never overlaps (IR rule 3); ignore a stray delta
            head = self._open_block(idx, {"type": "text", "text": ""})
            a = self._map[idx]
            return head + self._prefix[a] + _TEXT_MID + jsonio.dumps(ev.text) + _END
        return self._prefix[a] + _TEXT_MID + jsonio.dumps(ev.text) + _END

    def _on_args(self, ev: ToolArgsDelta) -> bytes:
        if not ev.arguments:
            return b""
        idx = ev.index
        if idx in self._held:
            return self._hold(idx, ev, len(ev.arguments))
        a = self._map.get(idx)
        if a is None:
            return b""
        return self._prefix[a] + _ARGS_MID + jsonio.dumps(ev.arguments) + _END

    def _thinking_block(self, idx: int) -> bytes | None:
        """Open thinking block ``idx`` if needed; None if it cannot be shown."""
        if idx in self._map:
            return b""
        if self._open >= 0:
            return None
        return self._open_block(idx, {"type": "thinking", "thinking": "", "signature": ""})

    def _on_reasoning(self, ev: ReasoningDelta) -> bytes:
        if not ev.text:
            return b""
        head = self._thinking_block(ev.index)
        if head is None:
            return b""
        return head + self._prefix[self._map[ev.index]] + _THINK_MID + jsonio.dumps(ev.text) + _END

    def _on_signature(self, ev: SignatureDelta) -> bytes:
        # Only Anthropic's own signatures are valid for an Anthropic client (§5.8 case 11).
        if ev.provider != FORMAT or not ev.signature:
            return b""
        start = self._kinds.get(ev.index)
        if start is not None and start.kind is not BlockKind.REASONING:
            return b""
        head = self._thinking_block(ev.index)
        if head is None:
            return b""
        return head + self._prefix[self._map[ev.index]] + _SIG_MID + jsonio.dumps(ev.signature) + _END

    def _on_block_stop(self, ev: BlockStop) -> bytes:
        idx = ev.index
        if idx in self._held:
            return self._hold(idx, ev, 0)
        self._kinds.pop(idx, None)
        a = self._map.pop(idx, None)
        if a is None:
            return b""  # a block that never opened (empty text, foreign redacted data)
        self._prefix.pop(a, None)
        out = (b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
               + str(a).encode() + b"}\n\n")
        if self._open == idx:
            self._open = -1
            out += self._flush_held()
        return out

    def _flush_held(self) -> bytes:
        """Replay held tool blocks in start order until one is still streaming."""
        parts = []
        while self._pending_tool and self._open < 0:
            idx = self._pending_tool.pop(0)
            start = self._kinds.pop(idx)
            events = self._held.pop(idx)
            parts.append(self._start_tool(start))
            for e in events:
                self._held_bytes -= len(e.arguments) if type(e) is ToolArgsDelta else 0
                parts.append(self._dispatch[type(e)](self, e))
        return b"".join(parts)

    def _on_usage(self, ev: UsageUpdate) -> bytes:
        self._usage = ev.usage
        return b""

    def _on_end(self, ev: MessageEnd) -> bytes:
        out = self._ensure_started()
        # Decoders stop every block before MessageEnd; should one not have, close it and
        # replay any held tool blocks, so the client still gets complete blocks. Each
        # pass closes the open block or opens a held one, so this terminates.
        while self._open >= 0 or self._pending_tool:
            if self._open >= 0:
                out += self._on_block_stop(BlockStop(self._open))
            else:
                out += self._flush_held()
        stop = ev.stop_reason
        if self._tool_blocks and stop is StopReason.END_TURN:
            stop = StopReason.TOOL_USE
        seq = ev.stop_sequence if stop is StopReason.STOP_SEQUENCE else None
        if stop is StopReason.STOP_SEQUENCE and seq is None:
            stop = StopReason.END_TURN
        usage = usage_mod.to_anthropic(self._usage or Usage())
        self._done = True
        return (out + self._event(b"message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP_TO_WIRE[stop], "stop_sequence": seq},
            "usage": usage,
        }) + b'event: message_stop\ndata: {"type":"message_stop"}\n\n')

    def _on_error(self, ev: StreamError) -> bytes:
        _, etype = _KIND_TO_ERROR[ev.kind]
        self._done = True
        return self._event(b"error", {"type": "error", "error": {"type": etype, "message": ev.message}})

    def _on_ping(self, ev: ir.Ping) -> bytes:
        if not self._started:
            return b""
        return b'event: ping\ndata: {"type": "ping"}\n\n'
