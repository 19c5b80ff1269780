"""Anthropic Messages requests to an upstream: ``encode_request`` (``ir.Request`` -> body),
applying the docs/protocols.md §5.8 hard cases."""

from __future__ import annotations

from typing import Any, cast

from .. import ir, jsonio
from .._fields import public as _public
from ..builtin_tools import foreign_tool
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
    ToolKind,
    ToolResult,
)
from .request_decode import _is_blank, wire_tool_id, wire_tool_name
from .tables import (
    DEFAULT_MAX_TOKENS,
    EFFORT_BUDGET_TOKENS,
    FORMAT,
    IMAGE_MEDIA_TYPES,
    JSON_OBJECT_INSTRUCTION,
    MAX_TEMPERATURE,
    MIN_THINKING_BUDGET_TOKENS,
    THINKING_MIN_TOP_P,
    _bad,
)


def encode_request(req: Request, ctx: ir.Context | None = None) -> dict[str, Any]:
    """Build a Messages body from ``req`` (docs/protocols.md §5.8 hard cases).

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
                block = {"type": "text", "text": joined}
                system_blocks.append({**block, "cache_control": cc} if cc else block)
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
    tc = req.tool_choice
    allowed = set(tc.allowed) if tc and tc.allowed is not None else None
    tools = []
    for tool in req.tools:
        if allowed is not None and getattr(tool, "name", None) not in allowed:
            continue  # Anthropic has no allowed-tools list: offer only those (§5.1).
        entry = _encode_tool(tool, names, ctx)
        if entry is not None:  # another provider's built-in without an equivalent
            tools.append(entry)
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
            budget = (r.budget_tokens or EFFORT_BUDGET_TOKENS.get(r.effort or "", 0)
                      or MIN_THINKING_BUDGET_TOKENS)
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
    if type(b) is Text:
        if _is_blank(b.text) and not keep_blank:
            return None  # §5.8 case 7: Anthropic rejects empty text blocks
        return _text_block(b)
    if type(b) is Image:
        if b.data is not None and b.media_type not in IMAGE_MEDIA_TYPES:
            raise UnsupportedFeature(param, f"image type {b.media_type!r}")
        out: dict[str, Any] = {"type": "image", "source": _source(b, param)}
        if b.cache_control is not None:
            out["cache_control"] = b.cache_control
        out.update({k: v for k, v in ir.extras_for(b, FORMAT).items() if not k.startswith("_")})
        return out
    if type(b) is File:
        out = {"type": "document", "source": _source(b, param)}
        if b.filename is not None:
            out["title"] = b.filename
        if b.cache_control is not None:
            out["cache_control"] = b.cache_control
        out.update({k: v for k, v in ir.extras_for(b, FORMAT).items() if not k.startswith("_")})
        return out
    if type(b) is ToolCall:
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
    if type(b) is ToolResult:
        bx = ir.extras_for(b, FORMAT)
        out = {"type": "tool_result", "tool_use_id": wire_tool_id(b.id)}
        encoded = [_encode_block(c, f"{param}.content[{k}]", names)
                   for k, c in enumerate(b.content)]
        parts = [p for p in encoded if p is not None]
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
    if type(b) is Reasoning:
        # §5.8 case 11: only Anthropic's own thinking, byte for byte.
        if b.provider != FORMAT:
            return None
        if b.redacted_data is not None:
            return {"type": "redacted_thinking", "data": b.redacted_data}
        if b.signature is None or not b.text:
            return None
        return {"type": "thinking", "thinking": b.text, "signature": b.signature}
    if type(b) is NativeBlock:
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
    blocks: list[dict[str, Any]] = content
    return blocks


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
        if (string and len(content) == 1 and content[0].get("type") == "text"
                and len(content[0]) == 2):
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


def _encode_tool(t: ir.Tool, names: dict[str, str] | None,
                 ctx: ir.Context | None) -> dict[str, Any] | None:
    if type(t) is ir.FunctionTool:
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
    if type(t) is ir.CustomTool:
        desc = t.description or ""
        fmt = t.format or {}
        if fmt.get("type") == "grammar" and type(fmt.get("definition")) is str:
            desc += (f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n"
                     f"{fmt['definition']}")
        return {
            "name": wire_tool_name(t.name, names),
            "description": desc.strip() or t.name,
            "input_schema": {
                "type": "object",
                "properties": {ir.CUSTOM_INPUT_KEY: {"type": "string"}},
                "required": [ir.CUSTOM_INPUT_KEY],
            },
        }
    native = cast(ir.NativeTool, t)  # the one kind left
    if native.provider == FORMAT:
        return native.spec
    return foreign_tool(native, FORMAT, ctx)


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
