"""Gemini requests to an upstream: ``encode_request`` (``ir.Request`` -> body) and
``request_path``.

Section marks (§) refer to docs/protocols.md.
"""

from __future__ import annotations

from typing import Any, cast

from .. import ir, jsonio
from .._fields import public as _public
from .._fields import translated as _translated
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
from .request_decode import _decode_thinking, _decode_tool_config
from .schema import SchemaBudget, to_gemini_schema
from .tables import (
    EFFORT_THINKING_BUDGET,
    FORMAT,
    MAX_STOP_SEQUENCES,
    _dict,
    _own,
    wire_tool_name,
)


def request_path(req: Request, api_version: str = "v1beta") -> str:
    """The upstream path for ``req``: ``/v1beta/models/{model}:generateContent`` or
    ``…:streamGenerateContent?alt=sse`` (without ``alt=sse`` the stream is one JSON
    array, not SSE, §4)."""
    model = req.model if req.model.startswith("models/") else f"models/{req.model}"
    if req.stream:
        return f"/{api_version}/{model}:streamGenerateContent?alt=sse"
    return f"/{api_version}/{model}:generateContent"


# ---------------------------------------------------------------------------------------
# Request: IR -> wire (for a Gemini upstream)
# ---------------------------------------------------------------------------------------


def encode_request(req: Request, ctx: ir.Context | None = None) -> dict[str, Any]:
    """Build a ``generateContent`` body from ``req`` (the model and streaming go in the
    URL: :func:`request_path`).

    Hard cases (§5.8): system and developer messages are hoisted into
    ``systemInstruction`` (case 1); turns of the same role are merged so ``user`` and
    ``model`` alternate, with function responses in a ``user`` turn (case 19); tool
    results become ``functionResponse`` parts (``{"result": …}`` or ``{"error": …}``)
    with their images inlined next to them (cases 8, 9); reasoning from other providers
    is dropped (case 11); more than five stop sequences raise ``UnsupportedFeature``
    (case 13); tool schemas are cut down to the ``parameters`` subset.
    """
    translated = _translated(ctx, FORMAT)
    names = ctx.tool_names if ctx is not None else None
    extras = _own(req)
    body: dict[str, Any] = {}

    system = [t for t in req.system]
    call_names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        if m.role is Role.SYSTEM or m.role is Role.DEVELOPER:
            system.extend(b for b in m.content if type(b) is Text)
            continue
        _encode_message(m, f"messages[{i}]", contents, names, call_names, translated)
    body["contents"] = contents
    if system or "_system" in extras:
        parts = []
        for t in system:
            if translated and not t.text:
                continue
            part = {"text": t.text}
            part.update(_public(_own(t)))
            parts.append(part)
        if parts or not translated:
            si: dict[str, Any] = dict(extras.get("_system") or {})
            si["parts"] = parts
            body["systemInstruction"] = si

    tools = _encode_tools(req, names, ctx)
    if tools:
        body["tools"] = tools
    if req.tool_choice is not None:
        tc = _encode_tool_config(req.tool_choice, names)
        orig = extras.get("_tool_config")
        if orig is not None:
            try:
                if _decode_tool_config(_dict(orig, "toolConfig")) == req.tool_choice:
                    tc = orig
            except ClientProtocolError:
                pass
        if tc is not None and (tools or not translated):
            body["toolConfig"] = tc

    gc: dict[str, Any] = dict(extras.get("_gen_rest") or {})
    if req.temperature is not None:
        gc["temperature"] = req.temperature
    if req.top_p is not None:
        gc["topP"] = req.top_p
    if req.top_k is not None:
        gc["topK"] = req.top_k
    if req.max_output_tokens is not None:
        gc["maxOutputTokens"] = req.max_output_tokens
    if req.stop is not None:
        stops = [s for s in req.stop if not (translated and not s)]
        if len(stops) > MAX_STOP_SEQUENCES:
            raise UnsupportedFeature("stop", f"Gemini accepts at most {MAX_STOP_SEQUENCES}")
        if stops or not translated:
            gc["stopSequences"] = stops
    rf = req.response_format
    if "_mime" in extras:
        gc["responseMimeType"] = extras["_mime"]
    if rf is not None and rf.type != "text":
        gc["responseMimeType"] = "application/json"
        if rf.type == "json_schema" and rf.schema is not None:
            orig_schema = extras.get("_schema")
            if orig_schema is not None:
                gc[orig_schema[0]] = orig_schema[1]
            else:
                gc["responseSchema"] = to_gemini_schema(
                    rf.schema, SchemaBudget("the response format", "response_format"))
    thinking = _encode_thinking(req.reasoning, extras.get("_thinking"), translated)
    if thinking is not None:
        gc["thinkingConfig"] = thinking
    if gc or "_gen_rest" in extras:
        body["generationConfig"] = gc
    for k, v in extras.items():
        if not k.startswith("_") and k not in body:
            body[k] = v
    return body


def _encode_thinking(r: ir.ReasoningConfig | None, orig: Any,
                     translated: bool) -> dict[str, Any] | None:
    if r is None:
        return None
    if type(orig) is dict:
        try:
            if _decode_thinking(orig) == r:
                return orig
        except ClientProtocolError:
            pass
    out: dict[str, Any] = {}
    if r.mode == "disabled":
        out["thinkingBudget"] = 0
    elif r.mode == "adaptive":
        out["thinkingBudget"] = -1
    elif r.budget_tokens is not None:
        out["thinkingBudget"] = r.budget_tokens
    elif r.effort is not None:
        default = EFFORT_THINKING_BUDGET["medium"]
        out["thinkingBudget"] = EFFORT_THINKING_BUDGET.get(r.effort, default)
    if r.summary is not None or (translated and out.get("thinkingBudget", -1) != 0):
        # The client can show reasoning (Anthropic thinking, Responses summaries, Chat
        # reasoning_content): ask Gemini for thought summaries.
        out["includeThoughts"] = True
    return out or None


def _encode_tool_config(tc: ir.ToolChoice, names: dict[str, str] | None) -> dict[str, Any] | None:
    if tc.mode is None:
        return None  # only disable_parallel: Gemini has no equivalent
    fcc: dict[str, Any]
    if tc.mode == "tool":
        fcc = {"mode": "ANY", "allowedFunctionNames": [wire_tool_name(tc.name or "", names)]}
    else:
        fcc = {"mode": {"auto": "AUTO", "any": "ANY", "none": "NONE"}[tc.mode]}
        if tc.allowed is not None and tc.mode != "none":
            fcc["allowedFunctionNames"] = [wire_tool_name(n, names) for n in tc.allowed]
    return {"functionCallingConfig": fcc}


def _encode_tools(req: Request, names: dict[str, str] | None,
                  ctx: ir.Context | None = None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    groups: dict[Any, list[dict[str, Any]]] = {}
    for t in req.tools:
        if type(t) is ir.FunctionTool or type(t) is ir.CustomTool:
            decl = _declaration(t, names)
            group = _own(t).get("_group", "_all")
            if group not in groups:
                groups[group] = []
                entries.append({"functionDeclarations": groups[group]})
            groups[group].append(decl)
        elif type(t) is ir.NativeTool and t.provider == FORMAT:
            entries.append(t.spec)
        else:
            native = cast(ir.NativeTool, t)  # the one kind left
            entry = foreign_tool(native, FORMAT, ctx)
            if entry is not None and entry not in entries:
                entries.append(entry)
    return entries


def _declaration(t: ir.FunctionTool | ir.CustomTool,
                 names: dict[str, str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": wire_tool_name(t.name, names)}
    if type(t) is ir.CustomTool:
        # A freeform tool: one string argument (ir.CUSTOM_INPUT_KEY), the grammar in the
        # description, as anthropic_messages does.
        desc = t.description or ""
        fmt = t.format or {}
        if fmt.get("type") == "grammar" and type(fmt.get("definition")) is str:
            desc += (f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n"
                     f"{fmt['definition']}")
        out["description"] = desc.strip() or t.name
        out["parameters"] = {"type": "object",
                             "properties": {ir.CUSTOM_INPUT_KEY: {"type": "string"}},
                             "required": [ir.CUSTOM_INPUT_KEY]}
        return out
    own = _own(t)
    if t.description is not None:
        out["description"] = t.description
    orig = own.get("_params")
    if orig is not None:
        out[orig[0]] = orig[1]
    elif type(t) is ir.FunctionTool and t.parameters is not None:
        params = to_gemini_schema(t.parameters, SchemaBudget(f"tool {t.name!r}", "tools"))
        if params.get("properties") or params.get("type") not in (None, "object"):
            out["parameters"] = params
    out.update(_public(own))
    return out


def _encode_part(b: ir.Block, param: str, translated: bool) -> dict[str, Any] | None:
    if type(b) is NativeBlock:
        if b.provider == FORMAT:
            return b.data
        raise UnsupportedFeature(param, f"{b.provider} {b.type!r} content")
    own = _own(b)
    if type(b) is Text:
        if translated and not b.text and not own:
            return None  # Gemini rejects empty text parts
        part: dict[str, Any] = {"text": b.text}
        part.update(_public(own))
        return part
    if type(b) is Image or type(b) is File:
        if b.data is not None:
            d: dict[str, Any] = {"mimeType": b.media_type or "application/octet-stream",
                                 "data": b.data}
            d.update(own.get("_d") or {})
            part = {"inlineData": d}
        elif b.url is not None:
            d = {"fileUri": b.url}
            mime = b.media_type or _guess_mime(b.url, type(b) is Image)
            if mime is not None:
                d["mimeType"] = mime
            d.update(own.get("_d") or {})
            part = {"fileData": d}
        else:
            raise UnsupportedFeature(param, "files by provider file id")
        part.update(_public(own))
        return part
    return None


_EXT_MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
             "webp": "image/webp", "pdf": "application/pdf", "txt": "text/plain"}


def _guess_mime(url: str, image: bool) -> str | None:
    ext = url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
    return _EXT_MIME.get(ext, "image/jpeg" if image else None)


def _args_object(b: ToolCall) -> dict[str, Any]:
    if b.kind is ToolKind.CUSTOM:
        return {ir.CUSTOM_INPUT_KEY: b.arguments}
    if type(b.input) is dict:
        return b.input
    return ir.parse_arguments(b.arguments, jsonio.loads)


def _encode_message(m: Message, p: str, contents: list[dict[str, Any]],
                    names: dict[str, str] | None, call_names: dict[str, str],
                    translated: bool) -> None:
    mx = _own(m)
    role = "model" if m.role is Role.ASSISTANT else "user"
    parts: list[dict[str, Any]] = []
    extra_parts: list[dict[str, Any]] = []  # images returned by tools, after the responses
    sig: str | None = None  # a signature waiting for the next part (module docstring)

    def add(part: dict[str, Any]) -> None:
        nonlocal sig
        if sig is not None:
            part = {**part, "thoughtSignature": sig}
            sig = None
        parts.append(part)

    for j, b in enumerate(m.content):
        q = f"{p}.content[{j}]"
        if type(b) is ToolCall:
            own = _own(b)
            name = wire_tool_name(b.name, names)
            call_names[b.id] = name
            fc: dict[str, Any] = {"name": name}
            if not own.get("_no_args"):
                fc["args"] = _args_object(b)
            if own.get("_wire_id"):
                fc["id"] = b.id
            fc.update(own.get("_fc") or {})
            part: dict[str, Any] = {"functionCall": fc}
            part.update(_public(own))
            add(part)
        elif type(b) is ToolResult:
            own = _own(b)
            name = b.name or call_names.get(b.id) or ""
            if not name:
                raise UnsupportedFeature(f"{q}.name", "a Gemini functionResponse needs the "
                                         "tool's name and no earlier call has this id")
            resp = own.get("_response")
            if resp is None:
                texts = []
                for k, c in enumerate(b.content):
                    if type(c) is Text:
                        texts.append(c.text)
                    else:
                        # §5.8 case 9: images go next to the functionResponse.
                        ep = _encode_part(c, f"{q}.content[{k}]", translated)
                        if ep is not None:
                            extra_parts.append(ep)
                text = "\n".join(texts) if len(texts) > 1 else "".join(texts)
                resp = {"error": text} if b.is_error else {"result": text}
            fr: dict[str, Any] = {"name": wire_tool_name(name, names) if not own else name,
                                  "response": resp}
            if own.get("_wire_id"):
                fr["id"] = b.id
            fr.update(own.get("_fr") or {})
            part = {"functionResponse": fr}
            part.update(_public(own))
            add(part)
        elif type(b) is Reasoning:
            own = _own(b)
            if b.provider == FORMAT and "_sig" not in own:
                if own.get("_thought") or b.text:
                    part = {"text": b.text, "thought": True}
                    if b.signature is not None:
                        part["thoughtSignature"] = b.signature
                    part.update(_public(own))
                    add(part)
                elif b.signature is not None:
                    sig = b.signature
            elif "_sig" in own and not translated:
                part = {"text": own.get("_text", ""), "thought": True,
                        "thoughtSignature": own["_sig"]}
                part.update(_public(own))
                add(part)
            # Reasoning from other providers cannot be replayed to Gemini (§5.8 case 11).
        else:
            part_or_none = _encode_part(b, q, translated)
            if part_or_none is not None:
                add(part_or_none)
    if sig is not None:
        parts.append({"text": "", "thoughtSignature": sig})
    parts.extend(extra_parts)
    if not parts and translated:
        return
    if translated and contents and contents[-1]["role"] == role and not mx:
        contents[-1]["parts"].extend(parts)  # Gemini alternates user and model turns
        return
    content: dict[str, Any] = {}
    if not mx.get("_no_role"):
        content["role"] = mx.get("_role", role)
    content["parts"] = parts
    content.update(_public(mx))
    contents.append(content)
