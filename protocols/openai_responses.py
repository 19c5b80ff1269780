"""OpenAI Responses API wire format ⇄ IR (protocols.md §2).

One module, four directions, all pure:

* requests: ``decode_request`` (client body → ``ir.Request``: ``input`` as a string or an
  item list, ``instructions``, message items with ``input_text``/``output_text``/
  ``input_image``/``input_file`` parts, ``function_call``/``function_call_output``,
  ``custom_tool_call``/``custom_tool_call_output`` (Codex ``apply_patch``),
  ``local_shell_call``/``local_shell_call_output``, ``reasoning`` items, tools, flat
  ``tool_choice``, ``text.format``, ``reasoning``) and ``encode_request`` (``ir.Request``
  → body for a Responses upstream);
* complete replies: ``decode_response`` / ``encode_response`` (the ``response`` object,
  §2.4);
* streams: ``StreamDecoder`` (typed ``response.*`` events → IR events) and
  ``StreamEncoder`` (IR events → exactly the canonical grammar of §2.5, with the
  obligations of §2.7 for Codex);
* errors: ``decode_error`` / ``encode_error`` (the Chat error body, §2.6).

The module interface is the one ``protocols/translate.py`` documents.

Reasoning continuity across providers (§2.7, §5.8 case 11). Codex replays every
``reasoning`` item with its ``encrypted_content`` verbatim. When the reasoning came from
another provider (Anthropic thinking and its signature, redacted thinking, a Gemini
``thoughtSignature``), the encoders put a reversible payload there instead of OpenAI's
opaque blob: ``"tw1:" + base64url(JSON {"provider", "thinking", "signature"} or
{"provider", "redacted"})`` (:func:`encode_reasoning_payload`). ``decode_request`` turns
it back into an ``ir.Reasoning`` of that provider, so Anthropic gets its thinking block
back byte for byte on the next turn. OpenAI-issued ``encrypted_content`` stays an
``ir.Reasoning`` with ``provider="openai_responses"``: only an OpenAI Responses upstream
gets it, every other encoder drops it. ``encode_request`` likewise drops reasoning
issued by anyone else, since OpenAI cannot read it.

The ``local_shell`` tool (§2.3) travels to other providers as a function tool named
``local_shell`` whose parameters are the ``exec`` action; calls to it come back to the
client as ``local_shell_call`` items. Built-in tools (``web_search``, ``tool_search``,
``namespace``…) and the items they produce only make sense to an OpenAI upstream: when
``ctx`` names another upstream, ``decode_request`` raises ``UnsupportedFeature`` naming
them. An item type this module does not know at all is a ``ClientProtocolError`` naming
``input[i].type``, never a silent drop (§2.2).

Keep-alive for Responses clients: Codex resets its idle timer only on a real event, not
on SSE comments (§2.7), and ignores ``response.in_progress``. ``StreamEncoder.keepalive``
writes a repeated ``response.in_progress`` with the next ``sequence_number``; an IR
``Ping`` from the upstream produces the same event.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from . import ir, jsonio
from . import openai_chat as _chat
from . import usage as usage_mod
from ._fields import OPENAI_FIELDS, custom_tool_names, unwrap_custom_input
from ._fields import client_name as _client_name
from ._fields import foreign as _foreign
from ._fields import other_fields as _rest
from ._fields import public as _public
from ._fields import translated as _translated
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
    "REASONING_PAYLOAD_PREFIX",
    "LOCAL_SHELL_TOOL_NAME",
    "LOCAL_SHELL_PARAMETERS",
    "CODEX_ERROR_CODES",
    "MAX_HELD_BYTES",
    "MAX_ITEM_BYTES",
    "decode_request",
    "encode_request",
    "decode_response",
    "encode_response",
    "decode_error",
    "encode_error",
    "StreamDecoder",
    "StreamEncoder",
    "encode_reasoning_payload",
    "decode_reasoning_payload",
    "keepalive_event",
]

FORMAT = ir.FORMAT_OPENAI_RESPONSES

#: Marks an ``encrypted_content`` written by this gateway (version 1 of the payload).
#: OpenAI's own blobs start with ``gAAAA`` (a Fernet token), so the two never collide.
REASONING_PAYLOAD_PREFIX = "tw1:"

#: The function name a ``local_shell`` tool gets when it travels to another provider,
#: and the parameters offered for it: the fields of the ``exec`` action (§2.2).
LOCAL_SHELL_TOOL_NAME = "local_shell"
LOCAL_SHELL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["exec"]},
        "command": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The program and its arguments (argv).",
        },
        "timeout_ms": {"type": "integer"},
        "working_directory": {"type": "string"},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "user": {"type": "string"},
    },
    "required": ["command"],
}
_LOCAL_SHELL_DESCRIPTION = "Run a command in a local shell and return its output."

#: ``response.error.code`` values Codex classifies (§2.7): these choose between a fatal
#: error, a quota message and a retry. Anything else is retried.
CODEX_ERROR_CODES = frozenset(
    {
        "context_length_exceeded",
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "usage_not_included",
        "server_is_overloaded",
        "rate_limit_exceeded",
        "slow_down",
        "invalid_prompt",
        "cyber_policy",
        "bio_policy",
        "server_error",
    }
)

#: Byte budget for blocks held back while an earlier output item is still streaming
#: (IR contract rule 3: a Chat upstream keeps every tool call open until its finish
#: chunk). The same bound as ``anthropic_messages.MAX_HELD_BYTES``.
MAX_HELD_BYTES = 8 * 1024 * 1024
#: Largest text or argument string of one output item. The encoder must keep it to
#: repeat it in ``*.done``, ``output_item.done`` and ``response.completed`` (§2.5);
#: 32 MiB is far above any model's output limit (128k tokens ≈ 0.5 MiB of text).
MAX_ITEM_BYTES = 32 * 1024 * 1024

_DATA_URL = re.compile(r"data:([^;,]+)?(?:;[^,]*)?;base64,(.*)", re.S)

# Top-level request fields modelled by the IR; everything else goes to extras.
_MODELED = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
        "max_output_tokens", "temperature", "top_p", "text", "reasoning", "stream",
        "user", "metadata",
    }
)

# Item types the IR does not model but an OpenAI upstream understands (§2.2): kept
# verbatim as NativeBlocks. Anything else is rejected.
_NATIVE_ITEMS = frozenset(
    {
        "item_reference", "web_search_call", "file_search_call", "computer_call",
        "computer_call_output", "code_interpreter_call", "image_generation_call",
        "mcp_call", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response",
        "compaction", "shell_call", "shell_call_output", "apply_patch_call",
        "apply_patch_call_output", "tool_search_call", "tool_search_output",
        "additional_tools", "program", "program_output",
    }
)
_ASSISTANT_ITEMS = frozenset({"function_call", "custom_tool_call", "local_shell_call", "reasoning"})
_OUTPUT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output",
                           "local_shell_call_output"})
_OUTPUT_KIND = {
    "function_call_output": ToolKind.FUNCTION,
    "custom_tool_call_output": ToolKind.CUSTOM,
    "local_shell_call_output": ToolKind.LOCAL_SHELL,
}
_KIND_OUTPUT = {v: k for k, v in _OUTPUT_KIND.items()}

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM,
          "developer": Role.DEVELOPER}

# Terminal status → stop reason (§5.4).
_INCOMPLETE_TO_STOP = {
    "max_output_tokens": StopReason.MAX_TOKENS,
    "content_filter": StopReason.CONTENT_FILTER,
}

# response.error.code → error kind (§2.5 response.failed, §2.7).
_CODE_TO_KIND = {
    "server_error": ErrorKind.SERVER,
    "rate_limit_exceeded": ErrorKind.RATE_LIMIT,
    "slow_down": ErrorKind.OVERLOADED,
    "server_is_overloaded": ErrorKind.OVERLOADED,
    "insufficient_quota": ErrorKind.QUOTA,
    "credit_balance_exhausted": ErrorKind.QUOTA,
    "organization_spend_limit_exceeded": ErrorKind.QUOTA,
    "project_spend_limit_exceeded": ErrorKind.QUOTA,
    "usage_not_included": ErrorKind.QUOTA,
    "context_length_exceeded": ErrorKind.REQUEST_TOO_LARGE,
    "invalid_prompt": ErrorKind.INVALID_REQUEST,
    "cyber_policy": ErrorKind.INVALID_REQUEST,
    "bio_policy": ErrorKind.INVALID_REQUEST,
}
# error kind → (HTTP status it would have had, Codex error code).
_KIND_TO_CODE: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_REQUEST: (400, "invalid_prompt"),
    ErrorKind.AUTHENTICATION: (401, "server_error"),
    ErrorKind.PERMISSION: (403, "server_error"),
    ErrorKind.NOT_FOUND: (404, "server_error"),
    ErrorKind.REQUEST_TOO_LARGE: (400, "context_length_exceeded"),
    ErrorKind.RATE_LIMIT: (429, "rate_limit_exceeded"),
    ErrorKind.QUOTA: (429, "insufficient_quota"),
    ErrorKind.OVERLOADED: (503, "server_is_overloaded"),
    ErrorKind.SERVER: (500, "server_error"),
    ErrorKind.TIMEOUT: (504, "server_error"),
    ErrorKind.UPSTREAM_PROTOCOL: (502, "server_error"),
}

# Budget → effort for a Responses upstream, when only a token budget is known; the same
# thresholds as ``openai_chat`` so both OpenAI formats agree.
_BUDGET_EFFORTS = ((2048, "low"), (12288, "medium"))


# ---------------------------------------------------------------------------------------
# Validation helpers (client side: ClientProtocolError naming the param)
# ---------------------------------------------------------------------------------------


_bad, _missing = OPENAI_FIELDS.bad, OPENAI_FIELDS.missing
_str, _dict, _list = OPENAI_FIELDS.string, OPENAI_FIELDS.object, OPENAI_FIELDS.array
_num, _int, _bool = OPENAI_FIELDS.number, OPENAI_FIELDS.integer, OPENAI_FIELDS.boolean


def _ex(fields: dict[str, Any]) -> ir.Extras:
    return {FORMAT: fields} if fields else None


def _own(obj: Any) -> dict[str, Any]:
    return ir.extras_for(obj, FORMAT)


def _new_id(ctx: ir.Context | None, prefix: str, counter: list[int]) -> str:
    if ctx is not None:
        return ctx.new_id(prefix)
    counter[0] += 1
    return f"{prefix}{counter[0]}"


# ---------------------------------------------------------------------------------------
# Reasoning payloads (§2.7, §5.8 case 11)
# ---------------------------------------------------------------------------------------


def encode_reasoning_payload(r: Reasoning, provider: str | None = None) -> str | None:
    """The ``encrypted_content`` for reasoning issued by another provider, or ``None``
    when there is nothing opaque to carry (reasoning text alone needs no payload).

    ``"tw1:" + base64url(JSON)`` without padding; the JSON is ``{"provider", "thinking",
    "signature"}`` or ``{"provider", "redacted"}``. Deterministic, so a decoded payload
    re-encodes to the same string.
    """
    provider = provider or r.provider
    if provider is None or provider == FORMAT:
        return None
    if r.redacted_data is not None:
        obj: dict[str, Any] = {"provider": provider, "redacted": r.redacted_data}
    elif r.signature:
        obj = {"provider": provider, "thinking": r.text, "signature": r.signature}
    else:
        return None
    raw = base64.urlsafe_b64encode(jsonio.dumps(obj)).rstrip(b"=")
    return REASONING_PAYLOAD_PREFIX + raw.decode("ascii")


def decode_reasoning_payload(value: str, param: str = "encrypted_content") -> dict[str, Any] | None:
    """The payload of a ``tw1:`` value (``None`` for any other string, i.e. OpenAI's own).

    Raises ``ClientProtocolError`` naming ``param`` when the prefix is there but the rest
    is not a payload this gateway wrote.
    """
    if not value.startswith(REASONING_PAYLOAD_PREFIX):
        return None
    body = value[len(REASONING_PAYLOAD_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        obj = jsonio.loads(raw)
    except (ValueError, TypeError):
        raise _bad(param, "not a reasoning payload issued by this gateway.") from None
    if (type(obj) is not dict or type(obj.get("provider")) is not str
            or not all(type(obj.get(k)) in (str, type(None))
                       for k in ("thinking", "signature", "redacted"))):
        raise _bad(param, "not a reasoning payload issued by this gateway.")
    return obj


# ---------------------------------------------------------------------------------------
# Request: wire -> IR
# ---------------------------------------------------------------------------------------


def decode_request(body: Any, ctx: ir.Context | None = None) -> Request:
    """Decode a client's ``POST /v1/responses`` body (§2.1, §2.2, Codex §2.7).

    Raises ``ClientProtocolError`` naming the param for malformed input, unknown item
    types (``input[i].type``) and ``previous_response_id``/``conversation`` (the gateway
    keeps no server-side state: send the whole history, as Codex does). When ``ctx``
    names a non-Responses upstream, built-in tools and the items only OpenAI understands
    raise ``UnsupportedFeature`` naming them.
    """
    # Each field is read with one ``get``; the validators (which build the error) run
    # only when a value is not of the expected type.
    if type(body) is not dict:
        _dict(body, "body")  # raises
    for key in ("previous_response_id", "conversation"):
        if body.get(key) is not None:
            raise ClientProtocolError(
                f"Invalid '{key}': this gateway keeps no stored responses; send the whole "
                "conversation in 'input' with 'store': false.", param=key)
    foreign = _foreign(ctx, FORMAT)
    model = body.get("model")
    if type(model) is not str:
        model = _str(body, "model", "model", required=True)  # raises
    extras: dict[str, Any] = _rest(body, _MODELED)

    system: tuple[Text, ...] = ()
    instructions = body.get("instructions")
    if instructions is not None:
        if type(instructions) is not str:
            raise _bad("instructions", "expected a string.")
        system = (Text(instructions),)

    raw_input = body.get("input")
    if raw_input is None:
        raise _missing("input")
    if type(raw_input) is str:
        messages: tuple[Message, ...] = (Message(
            Role.USER, (Text(raw_input),) if raw_input else (), as_string=True,
            extras={FORMAT: {"_input_string": True}}),)
    else:
        messages = _decode_items(_list(raw_input, "input"), foreign)

    raw_tools = body.get("tools")
    tools: tuple[ir.Tool, ...] = ()
    if raw_tools:
        tools = tuple([_decode_tool(t, i, foreign)
                       for i, t in enumerate(_list(raw_tools, "tools"))])
    tool_choice = _decode_tool_choice(body, foreign)
    if "tool_choice" in body:
        extras["_tool_choice"] = body["tool_choice"]
    if "tools" in body:
        extras["_tools"] = True

    response_format = None
    text = body.get("text")
    if text is not None:
        text = _dict(text, "text")
        fmt = text.get("format")
        if fmt is not None:
            response_format = _decode_format(_dict(fmt, "text.format"))
        extras["_text"] = text

    reasoning = None
    raw_reasoning = body.get("reasoning")
    if raw_reasoning is not None:
        rr = _dict(raw_reasoning, "reasoning")
        effort = _str(rr, "effort", "reasoning.effort")
        summary = _str(rr, "summary", "reasoning.summary")
        reasoning = ir.ReasoningConfig(effort=effort, summary=summary)
        extras["_reasoning"] = rr

    metadata = body.get("metadata")
    if metadata is not None:
        metadata = _dict(metadata, "metadata")
    stream = body.get("stream")
    if stream is not None and type(stream) is not bool:
        _bool(body, "stream")  # raises
    if stream is False:
        extras["stream"] = False  # kept so a round trip writes it back
    max_output_tokens = body.get("max_output_tokens")
    if max_output_tokens is not None:
        max_output_tokens = _int(body, "max_output_tokens", 1)
    temperature = body.get("temperature")
    if temperature is not None:
        temperature = _num(body, "temperature", 0.0, 2.0)
    top_p = body.get("top_p")
    if top_p is not None:
        top_p = _num(body, "top_p", 0.0, 1.0)
    user = body.get("user")
    if user is not None and type(user) is not str:
        _str(body, "user", "user")  # raises
    return Request(
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=tool_choice,
        max_output_tokens=max_output_tokens,
        temperature=temperature,
        top_p=top_p,
        stream=stream is True,
        response_format=response_format,
        reasoning=reasoning,
        user=user,
        metadata=metadata,
        extras=_ex(extras),
    )


class _Groups:
    """Builds IR messages from the flat item list: consecutive model-side items
    (assistant messages, reasoning, tool calls) form one assistant message, consecutive
    tool outputs one user message; other messages stay one per item."""

    __slots__ = ("messages", "role", "blocks")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.role: Role | None = None  # role of the open group
        self.blocks: list[ir.Block] = []

    def add(self, role: Role, blocks: list[ir.Block]) -> None:
        if self.role is not role:
            self.flush()
            self.role = role
        self.blocks.extend(blocks)

    def add_any(self, block: ir.Block) -> None:
        """A native item joins whatever group is open (its position is what matters)."""
        if self.role is None:
            self.role = Role.ASSISTANT
        self.blocks.append(block)

    def flush(self) -> None:
        if self.role is not None:
            self.messages.append(Message(self.role, tuple(self.blocks)))
        self.role = None
        self.blocks = []


def _decode_items(items: list[Any], foreign: bool) -> tuple[Message, ...]:
    g = _Groups()
    for i, item in enumerate(items):
        p = f"input[{i}]"
        item = _dict(item, p)
        itype = item.get("type")
        if itype is None and "role" in item:
            itype = "message"
        if type(itype) is not str:
            raise _bad(f"{p}.type", "expected a string.")
        if itype == "message":
            role_s = item.get("role")
            role = _ROLES.get(role_s) if type(role_s) is str else None
            if role is None:
                raise _bad(f"{p}.role", "expected one of 'user', 'assistant', 'system' "
                                        "or 'developer'.")
            if role is Role.ASSISTANT:
                g.add(Role.ASSISTANT, _decode_assistant_message(item, p))
            else:
                g.flush()
                blocks, as_string = _decode_content(item.get("content"), f"{p}.content", role)
                rest = _rest(item, {"role", "content"})
                if "type" not in item:
                    rest["_untyped"] = True
                g.messages.append(Message(role, blocks, as_string=as_string, extras=_ex(rest)))
        elif itype in _ASSISTANT_ITEMS:
            g.add(Role.ASSISTANT, [_decode_model_item(item, itype, p)])
        elif itype in _OUTPUT_ITEMS:
            g.add(Role.USER, [_decode_output_item(item, itype, p)])
        elif itype in _NATIVE_ITEMS:
            if foreign:
                raise UnsupportedFeature(
                    f"{p}.type", f"'{itype}' items need an OpenAI Responses upstream")
            g.add_any(NativeBlock(FORMAT, itype, item))
        else:
            raise ClientProtocolError(
                f"Invalid '{p}.type': unsupported input item type '{itype}'.", param=f"{p}.type")
    g.flush()
    return tuple(g.messages)


def _decode_assistant_message(item: dict[str, Any], p: str) -> list[ir.Block]:
    """An assistant message item: one Text per part. Item-level fields ride on the first
    block (``_item``) so the item boundaries survive a round trip."""
    head = _rest(item, {"role", "content"})
    if "type" not in item:
        head["_untyped"] = True
    content = item.get("content")
    if type(content) is str:
        head["_string"] = True
        return [Text(content, extras=_ex({"_item": head}))]
    blocks, _ = _decode_content(content, f"{p}.content", Role.ASSISTANT)
    if not blocks:
        head["_empty"] = True
        return [Text("", extras=_ex({"_item": head}))]
    first = blocks[0]
    if type(first) is not Text:
        raise _bad(f"{p}.content[0].type", "assistant messages hold output_text or refusal parts.")
    fields = dict(_own(first))
    fields["_item"] = head
    blocks = list(blocks)
    blocks[0] = Text(first.text, extras=_ex(fields))
    for j, b in enumerate(blocks):
        if type(b) is not Text:
            raise _bad(f"{p}.content[{j}].type", "assistant messages hold output_text or refusal parts.")
    return blocks


def _decode_content(content: Any, p: str, role: Role) -> tuple[tuple[ir.Block, ...], bool]:
    if content is None:
        raise _missing(p)
    if type(content) is str:
        return ((Text(content),) if content else ()), True
    return tuple(_decode_part(_dict(c, f"{p}[{j}]"), f"{p}[{j}]", role)
                 for j, c in enumerate(_list(content, p))), False


def _decode_part(part: dict[str, Any], p: str, role: Role) -> ir.Block:
    ptype = part.get("type")
    if ptype in ("input_text", "output_text", "refusal"):
        key = "refusal" if ptype == "refusal" else "text"
        text = _str(part, key, f"{p}.{key}", required=True) or ""
        rest = _rest(part, {"type", key})
        default = "output_text" if role is Role.ASSISTANT else "input_text"
        if ptype != default:
            rest["_ptype"] = ptype
        return Text(text, extras=_ex(rest))
    if ptype == "input_image":
        url = _str(part, "image_url", f"{p}.image_url")
        file_id = _str(part, "file_id", f"{p}.file_id")
        detail = _str(part, "detail", f"{p}.detail")
        rest = _rest(part, {"type", "image_url", "file_id", "detail"})
        if url is not None:
            m = _DATA_URL.match(url)
            if m:
                return Image(media_type=m.group(1), data=m.group(2), detail=detail,
                             extras=_ex(rest))
            return Image(url=url, detail=detail, extras=_ex(rest))
        if file_id is not None:
            return Image(file_id=file_id, detail=detail, extras=_ex(rest))
        raise ClientProtocolError(f"Invalid '{p}': input_image needs image_url or file_id.",
                                  param=f"{p}.image_url")
    if ptype == "input_file":
        rest = _rest(part, {"type", "file_data", "file_url", "file_id", "filename"})
        filename = _str(part, "filename", f"{p}.filename")
        data = _str(part, "file_data", f"{p}.file_data")
        if data is not None:
            m = _DATA_URL.match(data)
            if m:
                return File(media_type=m.group(1), data=m.group(2), filename=filename,
                            extras=_ex(rest))
            rest["_raw_data"] = True
            return File(data=data, filename=filename, extras=_ex(rest))
        url = _str(part, "file_url", f"{p}.file_url")
        if url is not None:
            return File(url=url, filename=filename, extras=_ex(rest))
        file_id = _str(part, "file_id", f"{p}.file_id")
        if file_id is not None:
            return File(file_id=file_id, filename=filename, extras=_ex(rest))
        raise ClientProtocolError(
            f"Invalid '{p}': input_file needs file_data, file_url or file_id.", param=p)
    if type(ptype) is str:
        raise ClientProtocolError(f"Invalid '{p}.type': unsupported content part type '{ptype}'.",
                                  param=f"{p}.type")
    raise _bad(f"{p}.type", "expected a string.")


def _decode_model_item(item: dict[str, Any], itype: str, p: str) -> ir.Block:
    if itype == "function_call":
        call_id = _str(item, "call_id", f"{p}.call_id", required=True) or ""
        name = _str(item, "name", f"{p}.name", required=True) or ""
        args = _str(item, "arguments", f"{p}.arguments", required=True) or ""
        return ToolCall(id=call_id, name=name, arguments=args,
                        extras=_ex(_rest(item, {"type", "call_id", "name", "arguments"})))
    if itype == "custom_tool_call":
        call_id = _str(item, "call_id", f"{p}.call_id", required=True) or ""
        name = _str(item, "name", f"{p}.name", required=True) or ""
        text = _str(item, "input", f"{p}.input", required=True) or ""
        return ToolCall(id=call_id, name=name, arguments=text, kind=ToolKind.CUSTOM,
                        extras=_ex(_rest(item, {"type", "call_id", "name", "input"})))
    if itype == "local_shell_call":
        call_id = _str(item, "call_id", f"{p}.call_id", required=True) or ""
        action = _dict(item.get("action"), f"{p}.action")
        return ToolCall(id=call_id, name=LOCAL_SHELL_TOOL_NAME,
                        arguments=jsonio.dumps(action).decode(), input=action,
                        kind=ToolKind.LOCAL_SHELL,
                        extras=_ex(_rest(item, {"type", "call_id", "action"})))
    return _decode_reasoning_item(item, p)


def _decode_reasoning_item(item: dict[str, Any], p: str) -> Reasoning:
    summary = []
    for j, s in enumerate(_list(item.get("summary") or [], f"{p}.summary")):
        s = _dict(s, f"{p}.summary[{j}]")
        summary.append(_str(s, "text", f"{p}.summary[{j}].text", required=True) or "")
    texts = []
    content = item.get("content")
    if content is not None:
        for j, c in enumerate(_list(content, f"{p}.content")):
            c = _dict(c, f"{p}.content[{j}]")
            texts.append(_str(c, "text", f"{p}.content[{j}].text", required=True) or "")
    rid = _str(item, "id", f"{p}.id")
    enc = _str(item, "encrypted_content", f"{p}.encrypted_content")
    rest = _rest(item, {"type", "id", "summary", "encrypted_content"})
    if "summary" not in item:
        rest["_no_summary"] = True
    payload = decode_reasoning_payload(enc, f"{p}.encrypted_content") if enc else None
    if payload is not None:
        # Another provider's reasoning carried through this client (§2.7).
        rest["_payload"] = enc
        return Reasoning(text=payload.get("thinking") or "", summary=tuple(summary),
                         signature=payload.get("signature"),
                         redacted_data=payload.get("redacted"), id=rid,
                         provider=payload["provider"], extras=_ex(rest))
    return Reasoning(text="".join(texts), summary=tuple(summary), encrypted=enc, id=rid,
                     provider=FORMAT, extras=_ex(rest))


def _decode_output_item(item: dict[str, Any], itype: str, p: str) -> ToolResult:
    kind = _OUTPUT_KIND[itype]
    key = "call_id"
    if kind is ToolKind.LOCAL_SHELL and "call_id" not in item:
        key = "id"  # the spec's local_shell_call_output names the call by ``id``
    call_id = _str(item, key, f"{p}.{key}", required=True) or ""
    output = item.get("output")
    rest = _rest(item, {"type", key, "output"})
    if key == "id":
        rest["_id_key"] = True
    if type(output) is str:
        blocks: tuple[ir.Block, ...] = (Text(output),)
    elif output is None:
        raise _missing(f"{p}.output")
    else:
        blocks = tuple(_decode_part(_dict(c, f"{p}.output[{j}]"), f"{p}.output[{j}]", Role.USER)
                       for j, c in enumerate(_list(output, f"{p}.output")))
        rest["_list"] = True
    return ToolResult(id=call_id, content=blocks, kind=kind, extras=_ex(rest))


def _decode_tool(t: Any, i: int, foreign: bool) -> ir.Tool:
    p = f"tools[{i}]"
    t = _dict(t, p)
    ttype = t.get("type")
    if ttype == "function":
        name = _str(t, "name", f"{p}.name", required=True) or ""
        params = t.get("parameters")
        strict = _bool(t, "strict", f"{p}.strict")
        return ir.FunctionTool(
            name=name, description=_str(t, "description", f"{p}.description"),
            parameters=_dict(params, f"{p}.parameters") if params is not None else None,
            strict=strict,
            extras=_ex(_rest(t, {"type", "name", "description", "parameters", "strict"})))
    if ttype == "custom":
        name = _str(t, "name", f"{p}.name", required=True) or ""
        fmt = t.get("format")
        return ir.CustomTool(
            name=name, description=_str(t, "description", f"{p}.description"),
            format=_dict(fmt, f"{p}.format") if fmt is not None else None,
            extras=_ex(_rest(t, {"type", "name", "description", "format"})))
    if ttype == "local_shell":
        # Emulated as a function tool for other providers (module docstring).
        return ir.FunctionTool(
            name=LOCAL_SHELL_TOOL_NAME, description=_LOCAL_SHELL_DESCRIPTION,
            parameters=LOCAL_SHELL_PARAMETERS, extras=_ex({"_local_shell": t}))
    if type(ttype) is not str:
        raise _bad(f"{p}.type", "expected a string.")
    if foreign:
        raise UnsupportedFeature(f"{p}.type",
                                 f"the built-in tool '{ttype}' needs an OpenAI Responses upstream")
    name = t.get("name")
    return ir.NativeTool(provider=FORMAT, type=ttype, spec=t,
                         name=name if type(name) is str else None)


def _decode_tool_choice(body: dict[str, Any], foreign: bool) -> ir.ToolChoice | None:
    tc = body.get("tool_choice")
    parallel = _bool(body, "parallel_tool_calls")
    disable = None if parallel is None else not parallel
    if tc is None:
        return ir.ToolChoice(disable_parallel=disable) if disable is not None else None
    if tc in ("none", "auto"):
        return ir.ToolChoice(mode=tc, disable_parallel=disable)
    if tc == "required":
        return ir.ToolChoice(mode="any", disable_parallel=disable)
    if type(tc) is not dict:
        raise _bad("tool_choice", "expected 'none', 'auto', 'required' or an object.")
    ttype = tc.get("type")
    if ttype in ("function", "custom"):
        name = _str(tc, "name", "tool_choice.name", required=True)
        return ir.ToolChoice(mode="tool", name=name, disable_parallel=disable)
    if ttype == "allowed_tools":
        mode = tc.get("mode")
        if mode not in ("auto", "required"):
            raise _bad("tool_choice.mode", "expected 'auto' or 'required'.")
        names = []
        for j, entry in enumerate(_list(tc.get("tools"), "tool_choice.tools")):
            entry = _dict(entry, f"tool_choice.tools[{j}]")
            n = entry.get("name")
            if type(n) is not str:
                if foreign:
                    raise UnsupportedFeature(f"tool_choice.tools[{j}]",
                                             "built-in tools need an OpenAI Responses upstream")
                continue
            names.append(n)
        return ir.ToolChoice(mode="any" if mode == "required" else "auto",
                             allowed=tuple(names), disable_parallel=disable)
    if foreign:
        raise UnsupportedFeature("tool_choice", f"forcing the built-in tool {ttype!r} needs an "
                                                "OpenAI Responses upstream")
    return ir.ToolChoice(mode="auto", disable_parallel=disable)


def _decode_format(fmt: dict[str, Any]) -> ir.ResponseFormat:
    ftype = fmt.get("type")
    if ftype == "json_schema":
        strict = fmt.get("strict")
        return ir.ResponseFormat(
            type="json_schema", name=_str(fmt, "name", "text.format.name"),
            schema=_dict(fmt.get("schema"), "text.format.schema"),
            strict=strict if type(strict) is bool else None,
            description=_str(fmt, "description", "text.format.description"))
    if ftype in ("text", "json_object"):
        return ir.ResponseFormat(type=ftype)
    raise _bad("text.format.type", "expected 'text', 'json_object' or 'json_schema'.")


# ---------------------------------------------------------------------------------------
# Request: IR -> wire (for a Responses upstream)
# ---------------------------------------------------------------------------------------


def encode_request(req: Request, ctx: ir.Context | None = None) -> dict[str, Any]:
    """Build a Responses body from ``req``.

    * ``instructions`` from ``req.system``; system/developer messages stay input items.
    * Tool-call ids go in ``call_id`` and tool names through ``openai_chat``'s rules (64
      characters of ``[a-zA-Z0-9_-]``, reverse map in ``ctx.tool_names``, §5.3).
    * Reasoning is replayed only when OpenAI issued it (§5.8 case 11); others are dropped.
    * A translated request is stateless: ``store: false`` (the whole history is sent).
    * ``stop`` cannot be expressed (§2.1: no ``stop`` in Responses): ``UnsupportedFeature``.
    """
    translated = _translated(ctx, FORMAT)
    names = ctx.tool_names if ctx is not None else None
    extras = _own(req)
    body: dict[str, Any] = {"model": req.model}
    if req.system:
        body["instructions"] = "\n".join(t.text for t in req.system)
    body["input"] = _encode_input(req, names, for_upstream=True)
    tools = [_encode_tool(t, names) for t in req.tools]
    if tools or "_tools" in extras:
        body["tools"] = tools
    if req.stop and translated:
        raise UnsupportedFeature("stop", "the Responses API has no stop sequences")
    tc = req.tool_choice
    if tc is not None:
        choice = _encode_tool_choice(tc, req, names)
        orig = extras.get("_tool_choice")
        if orig is not None and _same_choice(orig, tc):
            choice = orig
        if choice is not None:
            body["tool_choice"] = choice
        if tc.disable_parallel is not None:
            body["parallel_tool_calls"] = not tc.disable_parallel
    if req.max_output_tokens is not None:
        body["max_output_tokens"] = req.max_output_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    text = _encode_text(req.response_format, extras.get("_text"))
    if text is not None:
        body["text"] = text
    reasoning = _encode_reasoning_config(req.reasoning, extras.get("_reasoning"), translated)
    if reasoning is not None:
        body["reasoning"] = reasoning
    if req.stream:
        body["stream"] = True
    if req.user is not None and (not translated or len(req.user) <= 64):
        body["user"] = req.user  # OpenAI caps end-user ids at 64 characters
    if req.metadata is not None and (
        not translated or all(type(v) is str for v in req.metadata.values())
    ):
        body["metadata"] = req.metadata
    for k, v in extras.items():
        if not k.startswith("_") and k not in body:
            body[k] = v
    if translated and "store" not in body:
        body["store"] = False
    return body


def _same_choice(orig: Any, tc: ir.ToolChoice) -> bool:
    try:
        return _decode_tool_choice({"tool_choice": orig}, False) == ir.ToolChoice(
            mode=tc.mode, name=tc.name, allowed=tc.allowed)
    except ClientProtocolError:
        return False


def _encode_text(rf: ir.ResponseFormat | None, orig: Any) -> dict[str, Any] | None:
    if type(orig) is dict:
        fmt = orig.get("format")
        try:
            same = (rf is None and fmt is None) or (
                type(fmt) is dict and _decode_format(fmt) == rf)
        except ClientProtocolError:
            same = False
        if same:
            return orig
        out = {k: v for k, v in orig.items() if k != "format"}
    else:
        out = {}
    if rf is not None:
        out["format"] = _format_wire(rf)
    return out or None


def _format_wire(rf: ir.ResponseFormat) -> dict[str, Any]:
    if rf.type != "json_schema":
        return {"type": rf.type}
    fmt: dict[str, Any] = {"type": "json_schema", "name": rf.name or "response"}
    if rf.description is not None:
        fmt["description"] = rf.description
    fmt["schema"] = rf.schema if rf.schema is not None else {}
    if rf.strict is not None:
        fmt["strict"] = rf.strict
    return fmt


def _budget_to_effort(budget: int | None) -> str | None:
    if budget is None:
        return None
    for limit, effort in _BUDGET_EFFORTS:
        if budget <= limit:
            return effort
    return "high"


def _encode_reasoning_config(r: ir.ReasoningConfig | None, orig: Any,
                             translated: bool) -> dict[str, Any] | None:
    if r is None:
        return orig if type(orig) is dict else None
    if type(orig) is dict:
        effort = orig.get("effort")
        if (effort if type(effort) is str else None) == r.effort and (
            orig.get("summary") if type(orig.get("summary")) is str else None
        ) == r.summary:
            return orig
    if r.mode == "disabled":
        return {"effort": "none"} if r.effort == "none" else None
    out: dict[str, Any] = {}
    effort = r.effort or _budget_to_effort(r.budget_tokens)
    if r.mode == "adaptive" and effort is None:
        effort = "medium"
    if effort is not None:
        out["effort"] = effort
    summary = r.summary
    if summary is None and translated and effort not in (None, "none", "minimal"):
        # The other format's client asked for thinking it can see (§5.1 "reasoning").
        summary = "auto"
    if summary is not None:
        out["summary"] = summary
    return out or None


def _encode_tool(t: ir.Tool, names: dict[str, str] | None) -> dict[str, Any]:
    tt = type(t)
    if tt is ir.FunctionTool:
        own = _own(t)
        if "_local_shell" in own:
            return own["_local_shell"]
        out: dict[str, Any] = {"type": "function", "name": _chat.wire_tool_name(t.name, names)}
        if t.description is not None:
            out["description"] = t.description
        if t.parameters is not None:
            out["parameters"] = t.parameters
        if t.strict is not None:
            out["strict"] = t.strict
        elif not own:
            # Responses defaults ``strict`` to true (§2.3), which rejects ordinary schemas
            # from other formats; a translated tool asks for what they meant.
            out["strict"] = False
        out.update(_public(own))
        return out
    if tt is ir.CustomTool:
        out = {"type": "custom", "name": _chat.wire_tool_name(t.name, names)}
        if t.description is not None:
            out["description"] = t.description
        if t.format is not None:
            out["format"] = t.format
        out.update(_public(_own(t)))
        return out
    if t.provider == FORMAT:
        return t.spec
    raise UnsupportedFeature("tools", f"the {t.provider} built-in tool {t.type!r}")


def _encode_tool_choice(tc: ir.ToolChoice, req: Request,
                        names: dict[str, str] | None) -> Any:
    if tc.allowed is not None:
        kinds = {t.name: "custom" if type(t) is ir.CustomTool else "function"
                 for t in req.tools if type(t) is not ir.NativeTool}
        return {"type": "allowed_tools", "mode": "required" if tc.mode == "any" else "auto",
                "tools": [{"type": kinds.get(n, "function"), "name": _chat.wire_tool_name(n, names)}
                          for n in tc.allowed]}
    if tc.mode == "any":
        return "required"
    if tc.mode == "tool":
        kind = "function"
        for t in req.tools:
            if type(t) is ir.CustomTool and t.name == tc.name:
                kind = "custom"
        return {"type": kind, "name": _chat.wire_tool_name(tc.name or "", names)}
    return tc.mode


def _data_url(media_type: str | None, data: str) -> str:
    return f"data:{media_type or 'application/octet-stream'};base64,{data}"


def _encode_part(b: ir.Block, param: str, role: Role) -> dict[str, Any]:
    t = type(b)
    if t is NativeBlock:
        if b.provider == FORMAT:
            return b.data
        raise UnsupportedFeature(param, f"{b.provider} {b.type!r} content")
    own = _own(b)
    if t is Text:
        ptype = own.get("_ptype") or ("output_text" if role is Role.ASSISTANT else "input_text")
        key = "refusal" if ptype == "refusal" else "text"
        part: dict[str, Any] = {"type": ptype, key: b.text}
        part.update(_public(own))
        return part
    if t is Image:
        part = {"type": "input_image"}
        if b.data is not None:
            part["image_url"] = _data_url(b.media_type, b.data)
        elif b.url is not None:
            part["image_url"] = b.url
        elif b.file_id is not None:
            part["file_id"] = b.file_id
        if b.detail is not None:
            part["detail"] = b.detail
        part.update(_public(own))
        return part
    if t is File:
        part = {"type": "input_file"}
        if b.data is not None:
            part["file_data"] = b.data if own.get("_raw_data") else _data_url(b.media_type, b.data)
        elif b.url is not None:
            part["file_url"] = b.url
        elif b.file_id is not None:
            part["file_id"] = b.file_id
        if b.filename is not None:
            part["filename"] = b.filename
        part.update(_public(own))
        return part
    raise UnsupportedFeature(param, f"{t.__name__} content")


def _encode_input(req: Request, names: dict[str, str] | None, *,
                  for_upstream: bool) -> Any:
    """The ``input`` value: a string when the client sent one, else the item list."""
    msgs = req.messages
    if len(msgs) == 1 and _own(msgs[0]).get("_input_string"):
        return "".join(b.text for b in msgs[0].content if type(b) is Text)
    # call id -> kind of the call, so outputs of custom calls become the right item.
    kinds = {b.id: b.kind for m in msgs for b in m.content if type(b) is ToolCall}
    items: list[dict[str, Any]] = []
    for i, m in enumerate(msgs):
        _encode_message(m, f"messages[{i}]", items, names, kinds, for_upstream)
    return items


def _encode_message(m: Message, p: str, items: list[dict[str, Any]],
                    names: dict[str, str] | None, kinds: dict[str, ToolKind],
                    for_upstream: bool) -> None:
    if m.role is Role.ASSISTANT:
        _encode_assistant(m, p, items, names, for_upstream)
        return
    mx = _own(m)
    run: list[ir.Block] = []

    def flush_run() -> None:
        item: dict[str, Any] = {} if mx.get("_untyped") else {"type": "message"}
        item["role"] = m.role.value
        if m.as_string and all(type(b) is Text for b in run) and len(run) <= 1:
            item["content"] = run[0].text if run else ""
        else:
            item["content"] = [_encode_part(b, f"{p}.content", m.role) for b in run]
        item.update(_public(mx))
        items.append(item)
        run.clear()

    for j, b in enumerate(m.content):
        if type(b) is ToolResult:
            if run:
                flush_run()
            items.append(_encode_tool_result(b, f"{p}.content[{j}]", names, kinds))
        elif type(b) is NativeBlock:
            if b.provider != FORMAT:
                raise UnsupportedFeature(f"{p}.content[{j}]", f"{b.provider} {b.type!r} content")
            if run:
                flush_run()
            items.append(b.data)
        elif type(b) in (ToolCall, Reasoning):
            continue  # model output in a user turn: not expressible, and not meaningful
        else:
            run.append(b)
    if run or (not m.content):
        flush_run()


def _encode_tool_result(b: ToolResult, p: str, names: dict[str, str] | None,
                        kinds: dict[str, ToolKind]) -> dict[str, Any]:
    own = _own(b)
    kind = b.kind
    if kind is ToolKind.FUNCTION:
        kind = kinds.get(b.id, ToolKind.FUNCTION)
    key = "id" if own.get("_id_key") else "call_id"
    item: dict[str, Any] = {"type": _KIND_OUTPUT[kind], key: _chat.wire_tool_id(b.id)
                            if not own else b.id}
    texts = [c for c in b.content if type(c) is Text]
    if not own.get("_list") and len(texts) == len(b.content):
        text = "".join(c.text for c in texts) if len(texts) <= 1 else "\n".join(
            c.text for c in texts)
        if b.is_error:
            text = f"Error: {text}"  # §5.8 case 8: no is_error flag in Responses
        item["output"] = text
    else:
        parts = [_encode_part(c, f"{p}.content[{k}]", Role.USER) for k, c in enumerate(b.content)]
        if b.is_error:
            parts.insert(0, {"type": "input_text", "text": "Error:"})
        item["output"] = parts
    item.update(_public(own))
    return item


def _encode_assistant(m: Message, p: str, items: list[dict[str, Any]],
                      names: dict[str, str] | None, for_upstream: bool) -> None:
    msg: dict[str, Any] | None = None  # the message item texts are appended to
    for j, b in enumerate(m.content):
        t = type(b)
        if t is Text:
            own = _own(b)
            head = own.get("_item")
            if head is not None or msg is None:
                msg = _new_message_item(head)
                items.append(msg)
                if head is not None and head.get("_empty"):
                    msg["content"] = []
                    msg = None
                    continue
                if head is not None and head.get("_string"):
                    msg["content"] = b.text
                    msg = None
                    continue
            elif type(msg["content"]) is str:
                msg["content"] += b.text
                continue
            if head is None and not own and for_upstream and not msg["content"]:
                # A translated assistant turn: the EasyInputMessage string form.
                msg["content"] = b.text
                continue
            part = {k: v for k, v in own.items() if k != "_item"}
            msg["content"].append(_encode_part(Text(b.text, extras=_ex(part)), p, Role.ASSISTANT))
            continue
        msg = None
        if t is ToolCall:
            items.append(_encode_tool_call(b, names))
        elif t is Reasoning:
            item = _encode_reasoning_item(b, for_upstream, None)
            if item is not None:
                items.append(item)
        elif t is NativeBlock:
            if b.provider != FORMAT:
                raise UnsupportedFeature(f"{p}.content[{j}]", f"{b.provider} {b.type!r} content")
            items.append(b.data)
        elif t is ToolResult:
            items.append(_encode_tool_result(b, f"{p}.content[{j}]", names, {}))
        else:
            raise UnsupportedFeature(f"{p}.content[{j}]",
                                     f"{t.__name__} content in an assistant turn")


def _new_message_item(head: dict[str, Any] | None) -> dict[str, Any]:
    if head is None:
        return {"type": "message", "role": "assistant", "content": []}
    item: dict[str, Any] = {} if head.get("_untyped") else {"type": "message"}
    item["role"] = "assistant"
    item["content"] = []
    item.update(_public(head))
    return item


def _encode_tool_call(b: ToolCall, names: dict[str, str] | None) -> dict[str, Any]:
    own = _own(b)
    call_id = b.id if own else _chat.wire_tool_id(b.id)
    if b.kind is ToolKind.CUSTOM:
        item = {"type": "custom_tool_call", "call_id": call_id,
                "name": _chat.wire_tool_name(b.name, names), "input": b.arguments}
    elif b.kind is ToolKind.LOCAL_SHELL:
        action = b.input if type(b.input) is dict else ir.parse_arguments(b.arguments, jsonio.loads)
        item = {"type": "local_shell_call", "call_id": call_id, "action": action}
    else:
        item = {"type": "function_call", "call_id": call_id,
                "name": _chat.wire_tool_name(b.name, names), "arguments": b.arguments}
    item.update(_public(own))
    return item


def _encode_reasoning_item(b: Reasoning, for_upstream: bool,
                           new_id: Any) -> dict[str, Any] | None:
    """A reasoning item; ``None`` when it must be dropped.

    Towards an upstream only OpenAI's own reasoning is replayed. Towards a client
    (``for_upstream=False``) every reasoning is shown, another provider's opaque data
    wrapped in a ``tw1:`` payload.
    """
    own = _own(b)
    if b.provider == FORMAT or "_payload" in own:
        if for_upstream and b.provider != FORMAT:
            return None
        enc = own.get("_payload", b.encrypted)
        payload_ok = "_payload" not in own or decode_reasoning_payload(own["_payload"]) == (
            _payload_fields(b))
        if not payload_ok:
            enc = encode_reasoning_payload(b)
    else:
        if for_upstream:
            return None
        enc = encode_reasoning_payload(b)
    item: dict[str, Any] = {"type": "reasoning"}
    rid = b.id or (new_id() if new_id is not None else None)
    if rid is not None:
        item["id"] = rid
    summary = list(b.summary)
    if not summary and b.text and b.provider != FORMAT:
        summary = [b.text]
    if not own.get("_no_summary") or summary:
        item["summary"] = [{"type": "summary_text", "text": s} for s in summary]
    if b.provider == FORMAT and b.text and "content" not in own:
        item["content"] = [{"type": "reasoning_text", "text": b.text}]
    if enc is not None:
        item["encrypted_content"] = enc
    item.update(_public(own))
    return item


def _payload_fields(b: Reasoning) -> dict[str, Any]:
    if b.redacted_data is not None:
        return {"provider": b.provider, "redacted": b.redacted_data}
    return {"provider": b.provider, "thinking": b.text, "signature": b.signature}


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
                tools.append(_encode_tool(t, None))
            except UnsupportedFeature:
                continue
    choice: Any = own.get("_tool_choice")
    if choice is None:
        choice = _encode_tool_choice(tc, req, None) if tc is not None and tc.mode else "auto"
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
#: of a presized dict; a 29-key literal holding lists and dicts is built key by key and
#: resized three times (measured 1.0 µs against 0.5 µs for copy and fill).
_RESPONSE_BASE: dict[str, Any] = {
    "id": None,
    "object": "response",
    "created_at": None,
    "status": "in_progress",
    "background": False,
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "model": None,
    "output": None,
    "parallel_tool_calls": None,
    "previous_response_id": None,
    "prompt_cache_key": None,
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
    if round_trip:
        # Same format (a round trip): the upstream's own echo fields.
        out = _public(own)
        out["id"] = ctx.new_id("resp_") if ctx is not None else resp.id
        out["object"] = "response"
        out["model"] = resp.model
    else:
        out = _response_base(ctx, ctx.new_id("resp_") if ctx is not None else resp.id, resp.model)
    items: list[dict[str, Any]] = []
    msg: dict[str, Any] | None = None
    for b in resp.content:
        t = type(b)
        if t is Text:
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
        if t is ToolCall:
            if tools is None:
                tools = _ClientTools(ctx)
            items.append(_response_tool_item(b, tools, ctx, counter))
        elif t is Reasoning:
            item = _encode_reasoning_item(b, False, lambda: _new_id(ctx, "rs_", counter))
            if item is not None:
                items.append(item)
        elif t is NativeBlock and b.provider == FORMAT:
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
    if raw_usage is not None and (
        type(raw_usage) is dict and usage_mod.from_openai_responses(raw_usage) == resp.usage
    ):
        out["usage"] = raw_usage
    else:
        out["usage"] = _usage_wire(resp.usage)
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


# ---------------------------------------------------------------------------------------
# Errors (§2.6: the Chat error body)
# ---------------------------------------------------------------------------------------


def decode_error(status: int, body: bytes) -> ApiError:
    """An upstream HTTP error: the same ``{"error": {message, type, param, code}}`` body as
    Chat Completions (§2.6), so ``openai_chat`` reads it."""
    return _chat.decode_error(status, body)


def encode_error(err: ApiError, source_format: str | None = None) -> tuple[int, bytes]:
    """Status and body for a Responses client (the Chat error body, §2.6)."""
    return _chat.encode_error(err, source_format)


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


# ---------------------------------------------------------------------------------------
# Streams: wire -> IR
# ---------------------------------------------------------------------------------------

# Observe mode does not parse the JSON of these frames: they carry no facts.
_OBSERVE_SKIP = tuple(
    b"event: " + name + b"\n" for name in (
        b"response.output_text.delta", b"response.function_call_arguments.delta",
        b"response.custom_tool_call_input.delta", b"response.reasoning_summary_text.delta",
        b"response.reasoning_text.delta", b"response.refusal.delta",
        b"response.in_progress", b"response.content_part.added",
        b"response.content_part.done", b"response.output_text.done",
    )
)
_TOOL_ITEM_KINDS = {
    "function_call": ToolKind.FUNCTION,
    "custom_tool_call": ToolKind.CUSTOM,
    "local_shell_call": ToolKind.LOCAL_SHELL,
}


class _InItem:
    """An upstream output item being decoded."""

    __slots__ = ("index", "kind", "streamed", "open")

    def __init__(self, index: int, kind: str) -> None:
        self.index = index  # IR block index
        self.kind = kind  # item type
        self.streamed = False  # a delta was seen (else take the text from .done)
        self.open = True


class StreamDecoder(StreamDecoderBase):
    """Responses SSE → IR events (protocols.md §2.5).

    Dispatches on the JSON ``type`` (the ``event:`` line is optional, real-clients.md).
    Each output item becomes one IR block, opened at ``output_item.added`` and stopped at
    ``output_item.done``; tool calls are read from ``output_item.added`` (id and name)
    plus the argument deltas, and an item whose deltas never came gets its whole text
    from ``output_item.done``. Usage comes from the terminal event.
    ``response.completed``/``response.incomplete`` end cleanly; ``response.failed`` and
    ``error`` become ``StreamError``; EOF before any of them is a ``StreamError`` too
    (§6.3 "Cut streams").

    Facts read by ``Translation``: ``model``, ``id``, ``usage``, ``stop_reason``,
    ``tool_calls``, ``failed``, ``done``.
    """

    __slots__ = ("_started", "_next", "_items", "_open")

    _OBSERVE_SKIP = _OBSERVE_SKIP
    _WHAT = "Responses stream event"

    def __init__(self, ctx: ir.Context | None = None, *, observe: bool = False) -> None:
        super().__init__(ctx, observe=observe)
        self._started = False
        self._next = 0
        self._items: dict[int, _InItem] = {}  # output_index -> item
        self._open: _InItem | None = None  # text/reasoning item that is open

    def _eof(self, out: list[ir.StreamEvent]) -> None:
        self._fail(out, StreamError(ErrorKind.UPSTREAM_PROTOCOL,
                                    "stream closed before response.completed"))

    # -- helpers -----------------------------------------------------------------------

    def _start(self, resp: Any, out: list[ir.StreamEvent]) -> None:
        if self._started:
            return
        self._started = True
        if type(resp) is dict:
            rid, model = resp.get("id"), resp.get("model")
            self.id = rid if type(rid) is str else ""
            self.model = model if type(model) is str else ""
        else:
            self.id, self.model = "", ""
        out.append(MessageStart(self.id, self.model))

    def _item(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> _InItem | None:
        idx = obj.get("output_index")
        if type(idx) is not int:
            raise UpstreamProtocolError("event without an integer output_index",
                                        param="output_index")
        return self._items.get(idx)

    def _close_open(self, out: list[ir.StreamEvent]) -> None:
        it = self._open
        if it is not None and it.open:
            it.open = False
            out.append(BlockStop(it.index))
        self._open = None

    def _new(self, kind: str, out: list[ir.StreamEvent]) -> _InItem:
        # Text and reasoning never overlap another block (IR rule 3).
        self._close_open(out)
        it = _InItem(self._next, kind)
        self._next += 1
        return it

    # -- handlers ----------------------------------------------------------------------

    def _on_created(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._start(obj.get("response"), out)

    def _on_item_added(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._start(None, out)
        item = obj.get("item")
        idx = obj.get("output_index")
        if type(item) is not dict or type(idx) is not int:
            raise UpstreamProtocolError("output_item.added without item and output_index",
                                        param="item")
        if idx in self._items:
            raise UpstreamProtocolError("output_index added twice", param="output_index")
        itype = item.get("type")
        if itype == "message":
            it = self._new("message", out)
            self._open = it
            out.append(BlockStart(it.index, BlockKind.TEXT))
        elif itype == "reasoning":
            it = self._new("reasoning", out)
            self._open = it
            out.append(BlockStart(it.index, BlockKind.REASONING, provider=FORMAT))
        elif type(itype) is str and itype in _TOOL_ITEM_KINDS:
            call_id = item.get("call_id")
            name = item.get("name") if itype != "local_shell_call" else LOCAL_SHELL_TOOL_NAME
            if type(call_id) is not str or type(name) is not str:
                raise UpstreamProtocolError(f"{itype} item without call_id and name",
                                            param="item")
            it = self._new(itype, out)
            self.tool_calls += 1
            out.append(BlockStart(it.index, BlockKind.TOOL_CALL, tool_id=call_id,
                                  tool_name=_client_name(self._ctx, name),
                                  tool_kind=_TOOL_ITEM_KINDS[itype]))
            args = item.get("arguments") if itype == "function_call" else item.get("input")
            if args and type(args) is str and not self._observe:
                it.streamed = True
                out.append(ToolArgsDelta(it.index, args))
        else:
            it = _InItem(-1, str(itype))  # built-in tool items: not modelled
            it.open = False
        self._items[idx] = it

    def _on_text_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        it = self._item(obj, out)
        delta = obj.get("delta")
        if type(delta) is not str:
            raise UpstreamProtocolError("delta is not a string", param="delta")
        if it is None:
            # Text without output_item.added (tolerated by Codex, real-clients.md).
            self._start(None, out)
            it = self._new("message", out)
            self._open = it
            self._items[obj["output_index"]] = it
            out.append(BlockStart(it.index, BlockKind.TEXT))
        if not it.open or it.kind != "message":
            return
        it.streamed = True
        if delta:
            out.append(TextDelta(it.index, delta))

    def _on_args_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        it = self._item(obj, out)
        if it is None:
            raise UpstreamProtocolError("argument delta for an item never added",
                                        param="output_index")
        delta = obj.get("delta")
        if type(delta) is not str:
            raise UpstreamProtocolError("delta is not a string", param="delta")
        if not it.open or it.kind not in _TOOL_ITEM_KINDS:
            return
        it.streamed = True
        if delta and not self._observe:
            out.append(ToolArgsDelta(it.index, delta))

    def _on_reasoning_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        it = self._item(obj, out)
        if it is None or not it.open or it.kind != "reasoning":
            return
        delta = obj.get("delta")
        if type(delta) is not str:
            raise UpstreamProtocolError("delta is not a string", param="delta")
        part = obj.get("summary_index", obj.get("content_index", 0))
        it.streamed = True
        if delta:
            out.append(ReasoningDelta(it.index, delta, part if type(part) is int else 0))

    def _on_item_done(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        it = self._item(obj, out)
        item = obj.get("item")
        if type(item) is not dict:
            raise UpstreamProtocolError("output_item.done without an item", param="item")
        if it is None or not it.open:
            return
        it.open = False
        if self._open is it:
            self._open = None
        kind = it.kind
        if not self._observe:
            if kind == "message" and not it.streamed:
                content = item.get("content")
                for part in content if type(content) is list else ():
                    if type(part) is dict:
                        text = part.get("text", part.get("refusal"))
                        if type(text) is str and text:
                            out.append(TextDelta(it.index, text))
            elif kind == "function_call" and not it.streamed:
                args = item.get("arguments")
                if type(args) is str and args:
                    out.append(ToolArgsDelta(it.index, args))
            elif kind == "custom_tool_call" and not it.streamed:
                text = item.get("input")
                if type(text) is str and text:
                    out.append(ToolArgsDelta(it.index, text))
            elif kind == "local_shell_call":
                action = item.get("action")
                if type(action) is dict:
                    out.append(ToolArgsDelta(it.index, jsonio.dumps(action).decode()))
            elif kind == "reasoning":
                if not it.streamed:
                    for k, s in enumerate(item.get("summary") or ()):
                        text = s.get("text") if type(s) is dict else None
                        if type(text) is str and text:
                            out.append(ReasoningDelta(it.index, text, k))
                enc = item.get("encrypted_content")
                if type(enc) is str and enc:
                    out.append(SignatureDelta(it.index, enc, FORMAT))
        out.append(BlockStop(it.index))

    def _finish_blocks(self, out: list[ir.StreamEvent]) -> None:
        for it in self._items.values():
            if it.open:
                it.open = False
                out.append(BlockStop(it.index))
        self._open = None

    def _usage(self, resp: Any, out: list[ir.StreamEvent]) -> None:
        u = resp.get("usage") if type(resp) is dict else None
        if u is not None:
            self.usage = usage_mod.from_openai_responses(u)
            out.append(UsageUpdate(self.usage))

    def _on_completed(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        resp = obj.get("response")
        if type(resp) is not dict:
            raise UpstreamProtocolError("terminal event without a response", param="response")
        self._start(resp, out)
        model = resp.get("model")
        if type(model) is str and model:
            self.model = model
        self._finish_blocks(out)
        self._usage(resp, out)
        if obj.get("type") == "response.incomplete":
            stop = _incomplete_stop(resp.get("incomplete_details"))
        else:
            stop = StopReason.TOOL_USE if self.tool_calls else StopReason.END_TURN
        self.stop_reason = stop
        self.done = True
        out.append(MessageEnd(stop))

    def _on_failed(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        resp = obj.get("response")
        self._start(resp, out)
        if type(resp) is dict:
            self._usage(resp, out)
            err = resp.get("error")
        else:
            err = None
        code = err.get("code") if type(err) is dict else None
        message = err.get("message") if type(err) is dict else None
        self._error(code, message, out)

    def _on_error(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._start(None, out)
        err = obj.get("error")
        src = err if type(err) is dict else obj
        self._error(src.get("code"), src.get("message"), out)

    def _error(self, code: Any, message: Any, out: list[ir.StreamEvent]) -> None:
        kind = _error_kind(code)
        if code == "context_length_exceeded":
            self.stop_reason = StopReason.CONTEXT_WINDOW
        self._fail(out, StreamError(
            kind, message if type(message) is str else "upstream error",
            _KIND_TO_CODE[kind][0], "response.failed", code if type(code) is str else None))


    _HANDLERS = {
        "response.created": _on_created,
        "response.queued": _on_created,
        "response.in_progress": _on_created,
        "response.output_item.added": _on_item_added,
        "response.output_text.delta": _on_text_delta,
        "response.refusal.delta": _on_text_delta,
        "response.function_call_arguments.delta": _on_args_delta,
        "response.custom_tool_call_input.delta": _on_args_delta,
        "response.reasoning_summary_text.delta": _on_reasoning_delta,
        "response.reasoning_text.delta": _on_reasoning_delta,
        "response.output_item.done": _on_item_done,
        "response.completed": _on_completed,
        "response.incomplete": _on_completed,
        "response.failed": _on_failed,
        "error": _on_error,
    }


# ---------------------------------------------------------------------------------------
# Streams: IR -> wire
# ---------------------------------------------------------------------------------------


def keepalive_event(response_id: str, sequence_number: int, model: str = "",
                    created_at: int = 0) -> bytes:
    """A stand-alone keep-alive for a Responses stream the gateway does not encode itself
    (observe mode): a minimal ``response.in_progress`` for ``response_id``.

    Codex resets its idle timer only on complete events and ignores this one; the OpenAI
    SDK accepts a repeated lifecycle event as long as the response id is unchanged
    (§2.7). ``sequence_number`` should be the number of events forwarded so far; the
    upstream's next event then repeats that number, which neither client checks. A
    translated stream uses ``StreamEncoder.keepalive`` instead, which keeps the numbers
    gap-free."""
    resp = {"id": response_id, "object": "response", "created_at": created_at,
            "status": "in_progress", "model": model, "output": [], "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "usage": None}
    return (b"event: response.in_progress\ndata: " + jsonio.dumps(
        {"type": "response.in_progress", "sequence_number": sequence_number, "response": resp})
        + b"\n\n")


def _event_prefix(name: bytes) -> bytes:
    return b"event: " + name + b'\ndata: {"type":"' + name + b'","sequence_number":'


_TEXT_DELTA = _event_prefix(b"response.output_text.delta")
_ARGS_DELTA = _event_prefix(b"response.function_call_arguments.delta")
_CUSTOM_DELTA = _event_prefix(b"response.custom_tool_call_input.delta")
_SUMMARY_DELTA = _event_prefix(b"response.reasoning_summary_text.delta")
_EMPTY_PART = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}


def _item_too_big() -> BufferLimitExceeded:
    return BufferLimitExceeded(f"an output item grew beyond {MAX_ITEM_BYTES} characters",
                               param="output_item", limit=MAX_ITEM_BYTES)


def _held_size(ev: ir.StreamEvent) -> int:
    t = type(ev)
    if t is ToolArgsDelta:
        return len(ev.arguments)  # type: ignore[union-attr]
    if t is TextDelta or t is ReasoningDelta:
        return len(ev.text)  # type: ignore[union-attr]
    if t is SignatureDelta:
        return len(ev.signature)  # type: ignore[union-attr]
    return 0


class _OutItem:
    """An output item of the encoder: one IR block."""

    __slots__ = ("block", "kind", "item_id", "output_index", "opened", "parts", "size",
                 "call_id", "name", "signature", "provider", "redacted", "summary",
                 "part", "mid", "done", "wrapped")

    def __init__(self, block: int, kind: ToolKind | BlockKind) -> None:
        self.block = block
        self.kind = kind  # BlockKind.TEXT / REASONING, or the ToolKind of a call
        self.item_id = ""
        self.output_index = -1
        self.opened = False  # output_item.added written
        self.parts: list[str] = []  # text / arguments / summary text of the current part
        self.size = 0
        self.call_id = ""
        self.name = ""
        self.signature: list[str] = []
        self.provider: str | None = None
        self.redacted: str | None = None
        self.summary: list[str] = []  # finished summary parts
        self.part = -1  # current summary part (ReasoningDelta.part), -1 = none open
        self.mid = b""  # the constant middle of this item's delta events
        self.done = False
        # Custom-tool input another provider returned inside {"input": …}: unwrapped at
        # the end, so the deltas cannot be forwarded as they come.
        self.wrapped = False


class StreamEncoder(StreamEncoderBase):
    """IR events → Responses SSE for a Responses client (protocols.md §2.5, §2.7, §5.6).

    Writes exactly the canonical grammar: ``response.created`` (``sequence_number`` 0,
    status ``in_progress``, ``output: []``, ``usage: null``) → ``response.in_progress`` →
    for each output item, strictly one after another, ``output_item.added`` … its content
    events … ``output_item.done`` carrying the complete item → one terminal
    ``response.completed`` / ``response.incomplete`` / ``response.failed`` whose
    ``output`` repeats every done item and whose ``usage`` has integer totals. Every
    event has an ``event:`` line equal to its ``type`` and a gap-free ``sequence_number``.

    * A text block is a ``message`` item with one ``output_text`` part, opened at its
      first non-empty delta (an empty upstream block writes nothing).
    * A tool-call block is a ``function_call`` item with a fresh ``fc_`` id and
      ``call_id`` = the upstream tool id; calls to a custom tool the client declared are
      ``custom_tool_call`` items and calls to its ``local_shell`` tool
      ``local_shell_call`` items (their input is known only at the block's end).
    * A reasoning block is a ``reasoning`` item with one summary part per
      ``ReasoningDelta.part`` and, at ``output_item.done``, ``encrypted_content``: the
      upstream's own for an OpenAI upstream, else a ``tw1:`` payload holding another
      provider's signature or redacted data (module docstring).
    * Blocks that overlap (a Chat upstream's parallel tool calls) are held, within
      ``MAX_HELD_BYTES``, and replayed once the open item is done.
    * ``MessageEnd``: ``max_tokens`` → ``response.incomplete`` (``max_output_tokens``),
      ``content_filter`` → ``response.incomplete`` (``content_filter``), a context-window
      or model error → ``response.failed``; otherwise ``response.completed``.
      ``StreamError`` → ``response.failed`` whose ``error.code`` is one Codex classifies,
      and so does a cut stream: never a fabricated ``response.completed`` (§6.3 "Cut
      streams"; Codex retries ``server_error``).
    """

    __slots__ = (
        "_seq", "_base", "_tools", "_usage", "_items", "_active", "_pending", "_held",
        "_held_bytes", "_done_items", "_counter", "_resp_id", "_flushing",
    )

    def __init__(self, ctx: ir.Context | None = None) -> None:
        super().__init__(ctx)
        self._seq = 0
        self._base: dict[str, Any] = {}
        self._tools = _ClientTools(ctx)
        self._usage: Usage | None = None
        self._items: dict[int, _OutItem] = {}  # IR block index -> item
        self._active: _OutItem | None = None  # the item that may write now
        self._pending: list[int] = []  # blocks waiting for the active item, in start order
        self._held: dict[int, list[ir.StreamEvent]] = {}
        self._held_bytes = 0
        self._done_items: list[dict[str, Any]] = []
        self._counter = [0]
        self._resp_id = ""
        self._flushing = False

    def keepalive(self) -> bytes:
        """A heartbeat for a Responses client: a repeated ``response.in_progress``.

        Codex only resets its stream idle timer (300 s by default) on a complete event,
        never on an SSE comment, and ignores ``response.in_progress``; the OpenAI SDK
        accepts a repeated lifecycle event. ``b""`` before the stream started or after
        its end (§2.7)."""
        if not self._started or self._done:
            return b""
        return self._lifecycle("response.in_progress", "in_progress", None)

    # -- writing -----------------------------------------------------------------------

    def _next_seq(self) -> bytes:
        seq = self._seq
        self._seq = seq + 1
        return str(seq).encode()

    def _event(self, name: str, fields: dict[str, Any]) -> bytes:
        obj = {"type": name, "sequence_number": self._seq}
        self._seq += 1
        obj.update(fields)
        return b"event: " + name.encode() + b"\ndata: " + jsonio.dumps(obj) + b"\n\n"

    def _lifecycle(self, name: str, status: str, usage: Usage | None,
                   extra: dict[str, Any] | None = None) -> bytes:
        resp = dict(self._base)
        resp["status"] = status
        if status != "in_progress":
            resp["output"] = self._done_items
            resp["usage"] = _usage_wire(usage or Usage())
        if extra:
            resp.update(extra)
        return self._event(name, {"response": resp})

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        return self._on_start(MessageStart("", ""))

    def _grow(self, it: _OutItem, text: str) -> None:
        it.size += len(text)
        if it.size > MAX_ITEM_BYTES:
            raise _item_too_big()
        it.parts.append(text)

    # -- holding (overlapping blocks) --------------------------------------------------

    def _busy(self, idx: int) -> bool:
        return idx in self._held

    def _hold(self, idx: int, ev: ir.StreamEvent, size: int) -> bytes:
        self._held_bytes += size
        if self._held_bytes > MAX_HELD_BYTES:
            raise BufferLimitExceeded(
                f"more than {MAX_HELD_BYTES} bytes of overlapping blocks held",
                param="output_item", limit=MAX_HELD_BYTES)
        self._held[idx].append(ev)
        return b""

    def _flush_pending(self) -> bytes:
        """The active item is done: replay held blocks in start order until one is
        still streaming (it becomes the active item)."""
        parts = []
        self._flushing = True
        try:
            while self._pending and self._active is None:
                idx = self._pending.pop(0)
                events = self._held.pop(idx)
                parts.append(self._activate(self._items[idx]))
                for ev in events:
                    self._held_bytes -= _held_size(ev)
                    parts.append(self._dispatch[type(ev)](self, ev))
        finally:
            self._flushing = False
        return b"".join(parts)

    def _activate(self, it: _OutItem) -> bytes:
        """Item ``it`` may write now. Tool calls show at once; text and reasoning at their
        first content; a local shell call only at its end (its action is its input)."""
        self._active = it
        if it.kind is ToolKind.FUNCTION or it.kind is ToolKind.CUSTOM:
            return self._ensure_started() + self._open_tool(it)
        return b""

    # -- handlers ----------------------------------------------------------------------

    def _on_start(self, ev: MessageStart) -> bytes:
        if self._started:
            return b""
        self._started = True
        ctx = self._ctx
        self._resp_id = _new_id(ctx, "resp_", self._counter) if ctx is not None else (
            ev.id or "resp_0")
        self._base = _response_base(ctx, self._resp_id, ev.model)
        if ev.usage is not None:
            self._usage = ev.usage
        return (self._lifecycle("response.created", "in_progress", None)
                + self._lifecycle("response.in_progress", "in_progress", None))

    def _on_block_start(self, ev: BlockStart) -> bytes:
        idx = ev.index
        if idx in self._items:
            return b""  # a block index starts once (IR rule 2); a repeat is ignored
        if ev.kind is BlockKind.TOOL_CALL:
            it = _OutItem(idx, self._tools.kind(ev.tool_kind, ev.tool_name or ""))
            it.call_id = ev.tool_id or _new_id(self._ctx, "call_", self._counter)
            it.name = ev.tool_name or ""
            it.wrapped = ev.tool_kind is ToolKind.FUNCTION and it.kind is ToolKind.CUSTOM
        else:
            it = _OutItem(idx, ev.kind)
            it.provider = ev.provider
            it.redacted = ev.redacted_data
        self._items[idx] = it
        if self._active is not None or self._pending:
            self._pending.append(idx)
            self._held[idx] = []
            return b""
        return self._activate(it)

    def _open(self, it: _OutItem, item: dict[str, Any]) -> bytes:
        # Items are written strictly one after another, so every earlier item is done.
        it.opened = True
        it.output_index = len(self._done_items)
        return self._event("response.output_item.added",
                           {"output_index": it.output_index, "item": item})

    def _open_tool(self, it: _OutItem) -> bytes:
        if it.kind is ToolKind.CUSTOM:
            it.item_id = _new_id(self._ctx, "ctc_", self._counter)
            item = {"id": it.item_id, "type": "custom_tool_call", "status": "in_progress",
                    "call_id": it.call_id, "name": it.name, "input": ""}
        else:
            it.item_id = _new_id(self._ctx, "fc_", self._counter)
            item = {"id": it.item_id, "type": "function_call", "status": "in_progress",
                    "arguments": "", "call_id": it.call_id, "name": it.name}
        out = self._open(it, item)
        it.mid = (b',"item_id":' + jsonio.dumps(it.item_id) + b',"output_index":'
                  + str(it.output_index).encode() + b',"delta":')
        return out

    def _open_text(self, it: _OutItem) -> bytes:
        it.item_id = _new_id(self._ctx, "msg_", self._counter)
        out = self._ensure_started() + self._open(it, {
            "id": it.item_id, "type": "message", "status": "in_progress", "content": [],
            "role": "assistant"})
        out += self._event("response.content_part.added", {
            "item_id": it.item_id, "output_index": it.output_index, "content_index": 0,
            "part": _EMPTY_PART})
        it.mid = (b',"item_id":' + jsonio.dumps(it.item_id) + b',"output_index":'
                  + str(it.output_index).encode() + b',"content_index":0,"delta":')
        return out

    def _open_reasoning(self, it: _OutItem) -> bytes:
        it.item_id = _new_id(self._ctx, "rs_", self._counter)
        return self._ensure_started() + self._open(
            it, {"id": it.item_id, "type": "reasoning", "summary": []})

    def _on_text(self, ev: TextDelta) -> bytes:
        # The hot path (one call per upstream text delta): the event is spliced from
        # bytes prepared when the item opened, and only the delta string is serialised.
        # _busy, _grow and _next_seq are inlined here; this path measured 0.8 µs/event.
        text = ev.text
        if not text:
            return b""
        idx = ev.index
        if idx in self._held:
            return self._hold(idx, ev, len(text))
        it = self._items.get(idx)
        if it is None or it.done or it.kind is not BlockKind.TEXT:
            return b""
        head = b"" if it.opened else self._open_text(it)
        it.size += len(text)
        if it.size > MAX_ITEM_BYTES:
            raise _item_too_big()
        it.parts.append(text)
        seq = self._seq
        self._seq = seq + 1
        return (head + _TEXT_DELTA + str(seq).encode() + it.mid + jsonio.dumps(text)
                + b',"logprobs":[]}\n\n')

    def _on_args(self, ev: ToolArgsDelta) -> bytes:
        if not ev.arguments:
            return b""
        idx = ev.index
        if self._busy(idx):
            return self._hold(idx, ev, len(ev.arguments))
        it = self._items.get(idx)
        if it is None or it.done or type(it.kind) is not ToolKind:
            return b""
        self._grow(it, ev.arguments)
        if not it.opened or it.wrapped:
            return b""  # input known only at the end (local shell, wrapped custom input)
        prefix = _CUSTOM_DELTA if it.kind is ToolKind.CUSTOM else _ARGS_DELTA
        return prefix + self._next_seq() + it.mid + jsonio.dumps(ev.arguments) + b"}\n\n"

    def _on_reasoning(self, ev: ReasoningDelta) -> bytes:
        if not ev.text:
            return b""
        idx = ev.index
        if self._busy(idx):
            return self._hold(idx, ev, len(ev.text))
        it = self._items.get(idx)
        if it is None or it.done or it.kind is not BlockKind.REASONING:
            return b""
        out = b"" if it.opened else self._open_reasoning(it)
        if it.part != ev.part:
            out += self._close_summary_part(it)
            it.part = ev.part
            k = len(it.summary)
            out += self._event("response.reasoning_summary_part.added", {
                "item_id": it.item_id, "output_index": it.output_index, "summary_index": k,
                "part": {"type": "summary_text", "text": ""}})
            it.mid = (b',"item_id":' + jsonio.dumps(it.item_id) + b',"output_index":'
                      + str(it.output_index).encode() + b',"summary_index":'
                      + str(k).encode() + b',"delta":')
        self._grow(it, ev.text)
        return out + _SUMMARY_DELTA + self._next_seq() + it.mid + jsonio.dumps(ev.text) + b"}\n\n"

    def _close_summary_part(self, it: _OutItem) -> bytes:
        if it.part < 0:
            return b""
        text = "".join(it.parts)
        it.parts = []
        k = len(it.summary)
        it.summary.append(text)
        it.part = -1
        base = {"item_id": it.item_id, "output_index": it.output_index, "summary_index": k}
        return (self._event("response.reasoning_summary_text.done", {**base, "text": text})
                + self._event("response.reasoning_summary_part.done",
                              {**base, "part": {"type": "summary_text", "text": text}}))

    def _on_signature(self, ev: SignatureDelta) -> bytes:
        idx = ev.index
        if self._busy(idx):
            return self._hold(idx, ev, len(ev.signature))
        it = self._items.get(idx)
        if it is None or it.done or it.kind is not BlockKind.REASONING or not ev.signature:
            return b""
        if ev.provider is not None:
            it.provider = ev.provider
        it.signature.append(ev.signature)
        return b""

    def _on_block_stop(self, ev: BlockStop) -> bytes:
        idx = ev.index
        if self._busy(idx):
            return self._hold(idx, ev, 0)
        it = self._items.get(idx)
        if it is None or it.done:
            return b""
        return self._stop(it)

    def _stop(self, it: _OutItem) -> bytes:
        it.done = True
        out = self._finish(it)
        if self._active is it:
            self._active = None
            if not self._flushing:
                out += self._flush_pending()
        return out

    def _finish(self, it: _OutItem) -> bytes:
        """Write the end of item ``it`` (nothing for a block that never showed)."""
        kind = it.kind
        if kind is BlockKind.TEXT:
            if not it.opened:
                return b""
            text = "".join(it.parts)
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            base = {"item_id": it.item_id, "output_index": it.output_index, "content_index": 0}
            item = {"id": it.item_id, "type": "message", "status": "completed",
                    "content": [part], "role": "assistant"}
            return (self._event("response.output_text.done", {**base, "text": text,
                                                              "logprobs": []})
                    + self._event("response.content_part.done", {**base, "part": part})
                    + self._item_done(it, item))
        if kind is BlockKind.REASONING:
            sig = "".join(it.signature) if it.signature else None
            r = Reasoning(text="".join(it.summary) + "".join(it.parts), signature=sig,
                          redacted_data=it.redacted, provider=it.provider)
            if it.provider == FORMAT:
                enc = sig
            else:
                enc = encode_reasoning_payload(r)
            if not it.opened and enc is None:
                return b""  # nothing visible and nothing to carry
            out = b"" if it.opened else self._open_reasoning(it)
            out += self._close_summary_part(it)
            item: dict[str, Any] = {"id": it.item_id, "type": "reasoning",
                                    "summary": [{"type": "summary_text", "text": s}
                                                for s in it.summary]}
            if enc is not None:
                item["encrypted_content"] = enc
            return out + self._item_done(it, item)
        # Tool calls.
        raw = "".join(it.parts)
        out = self._ensure_started()
        if kind is ToolKind.LOCAL_SHELL:
            it.item_id = _new_id(self._ctx, "lsh_", self._counter)
            item = {"id": it.item_id, "type": "local_shell_call", "status": "in_progress",
                    "call_id": it.call_id, "action": _shell_action(raw)}
            out += self._open(it, item)
            return out + self._item_done(it, {**item, "status": "completed"})
        if kind is ToolKind.CUSTOM:
            if not it.opened:
                out += self._open_tool(it)
            text = unwrap_custom_input(raw) if it.wrapped else raw
            base = {"item_id": it.item_id, "output_index": it.output_index}
            if it.wrapped and text:
                out += self._event("response.custom_tool_call_input.delta",
                                   {**base, "delta": text})
            out += self._event("response.custom_tool_call_input.done", {**base, "input": text})
            return out + self._item_done(it, {
                "id": it.item_id, "type": "custom_tool_call", "status": "completed",
                "call_id": it.call_id, "name": it.name, "input": text})
        if not it.opened:
            out += self._open_tool(it)
        base = {"item_id": it.item_id, "output_index": it.output_index}
        if not raw:
            # Codex parses ``arguments`` as JSON: an argument-less call is "{}".
            raw = "{}"
            out += self._event("response.function_call_arguments.delta", {**base, "delta": raw})
        out += self._event("response.function_call_arguments.done", {**base, "arguments": raw})
        return out + self._item_done(it, {
            "id": it.item_id, "type": "function_call", "status": "completed",
            "arguments": raw, "call_id": it.call_id, "name": it.name})

    def _item_done(self, it: _OutItem, item: dict[str, Any]) -> bytes:
        self._done_items.append(item)
        return self._event("response.output_item.done",
                           {"output_index": it.output_index, "item": item})

    def _finish_all(self) -> bytes:
        """Close every block the upstream left open, in order (defensive: decoders stop
        every block before ``MessageEnd``)."""
        out = b""
        while self._active is not None or self._pending:
            if self._active is not None:
                out += self._stop(self._active)  # clears _active: the loop progresses
            else:
                out += self._flush_pending()  # pops at least one pending block
        return out

    def _on_usage(self, ev: UsageUpdate) -> bytes:
        self._usage = ev.usage
        return b""

    def _on_end(self, ev: MessageEnd) -> bytes:
        out = self._ensure_started() + self._finish_all()
        status, details, code = _terminal(ev.stop_reason)
        self._done = True
        if status == "completed":
            return out + self._lifecycle("response.completed", status, self._usage)
        if status == "incomplete":
            return out + self._lifecycle("response.incomplete", status, self._usage,
                                         {"incomplete_details": details})
        message = ("the input exceeds the model's context window"
                   if code == "context_length_exceeded" else "the upstream model failed")
        return out + self._lifecycle("response.failed", status, self._usage,
                                     {"error": {"code": code, "message": message}})

    def _on_error(self, ev: StreamError) -> bytes:
        out = self._ensure_started()
        code = ev.code if ev.code in CODEX_ERROR_CODES else _KIND_TO_CODE[ev.kind][1]
        self._done = True
        return out + self._lifecycle("response.failed", "failed", self._usage,
                                     {"error": {"code": code, "message": ev.message}})

    def _on_ping(self, ev: ir.Ping) -> bytes:
        # An upstream ping becomes the keep-alive, except one right after the start
        # (Anthropic pings just after message_start): response.in_progress was just
        # written, so the canonical opening stays created → in_progress → items.
        if self._seq == 2:
            return b""
        return self.keepalive()
