"""OpenAI Responses requests to an upstream: ``encode_request`` (``ir.Request`` -> body).

Section marks (§) refer to docs/protocols.md.
"""

from __future__ import annotations

from typing import Any, cast

from .. import _openai, ir, jsonio
from .._fields import public as _public
from .._fields import translated as _translated
from .._openai import _budget_to_effort, _data_url
from ..builtin_tools import foreign_tool
from ..errors import (
    ClientProtocolError,
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
    ToolKind,
    ToolResult,
)
from .payload import decode_reasoning_payload, encode_reasoning_payload
from .request_decode import _decode_format, _decode_tool_choice
from .tables import _KIND_OUTPUT, FORMAT, _ex, _own

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
    tools = [e for e in (_encode_tool(t, names, ctx) for t in req.tools) if e is not None]
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


def _encode_tool(t: ir.Tool, names: dict[str, str] | None,
                 ctx: ir.Context | None) -> dict[str, Any] | None:
    if type(t) is ir.FunctionTool:
        own = _own(t)
        if "_local_shell" in own:
            shell: dict[str, Any] = own["_local_shell"]
            return shell
        out: dict[str, Any] = {"type": "function", "name": _openai.wire_tool_name(t.name, names)}
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
    if type(t) is ir.CustomTool:
        out = {"type": "custom", "name": _openai.wire_tool_name(t.name, names)}
        if t.description is not None:
            out["description"] = t.description
        if t.format is not None:
            out["format"] = t.format
        out.update(_public(_own(t)))
        return out
    native = cast(ir.NativeTool, t)  # the one kind left
    if native.provider == FORMAT:
        return native.spec
    return foreign_tool(native, FORMAT, ctx)


def _encode_tool_choice(tc: ir.ToolChoice, req: Request,
                        names: dict[str, str] | None) -> Any:
    if tc.allowed is not None:
        kinds = {t.name: "custom" if type(t) is ir.CustomTool else "function"
                 for t in req.tools if type(t) is not ir.NativeTool}
        tools = [{"type": kinds.get(n, "function"), "name": _openai.wire_tool_name(n, names)}
                 for n in tc.allowed]
        return {"type": "allowed_tools", "mode": "required" if tc.mode == "any" else "auto",
                "tools": tools}
    if tc.mode == "any":
        return "required"
    if tc.mode == "tool":
        kind = "function"
        for t in req.tools:
            if type(t) is ir.CustomTool and t.name == tc.name:
                kind = "custom"
        return {"type": kind, "name": _openai.wire_tool_name(tc.name or "", names)}
    return tc.mode


def _encode_part(b: ir.Block, param: str, role: Role) -> dict[str, Any]:
    t = type(b)
    if type(b) is NativeBlock:
        if b.provider == FORMAT:
            return b.data
        raise UnsupportedFeature(param, f"{b.provider} {b.type!r} content")
    own = _own(b)
    if type(b) is Text:
        ptype = own.get("_ptype") or ("output_text" if role is Role.ASSISTANT else "input_text")
        key = "refusal" if ptype == "refusal" else "text"
        part: dict[str, Any] = {"type": ptype, key: b.text}
        part.update(_public(own))
        return part
    if type(b) is Image:
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
    if type(b) is File:
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
        first = run[0] if run else None
        if m.as_string and all(type(b) is Text for b in run) and len(run) <= 1:
            item["content"] = first.text if type(first) is Text else ""
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
    item: dict[str, Any] = {"type": _KIND_OUTPUT[kind], key: _openai.wire_tool_id(b.id)
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
        if type(b) is Text:
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
        if type(b) is ToolCall:
            items.append(_encode_tool_call(b, names))
        elif type(b) is Reasoning:
            item = _encode_reasoning_item(b, for_upstream, None)
            if item is not None:
                items.append(item)
        elif type(b) is NativeBlock:
            if b.provider != FORMAT:
                raise UnsupportedFeature(f"{p}.content[{j}]", f"{b.provider} {b.type!r} content")
            items.append(b.data)
        elif type(b) is ToolResult:
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
    call_id = b.id if own else _openai.wire_tool_id(b.id)
    item: dict[str, Any]
    if b.kind is ToolKind.CUSTOM:
        item = {"type": "custom_tool_call", "call_id": call_id,
                "name": _openai.wire_tool_name(b.name, names), "input": b.arguments}
    elif b.kind is ToolKind.LOCAL_SHELL:
        action = b.input if type(b.input) is dict else ir.parse_arguments(b.arguments, jsonio.loads)
        item = {"type": "local_shell_call", "call_id": call_id, "action": action}
    else:
        item = {"type": "function_call", "call_id": call_id,
                "name": _openai.wire_tool_name(b.name, names), "arguments": b.arguments}
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
