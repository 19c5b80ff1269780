"""Gemini requests from a client: ``decode_request`` (body -> ``ir.Request``).

Section marks (§) refer to docs/protocols.md.
"""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .._fields import foreign as _foreign
from .._fields import other_fields as _rest
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
from .payload import _read_payload
from .schema import _from_gemini_schema
from .tables import (
    _GEN_MODELED,
    _MODELED,
    FORMAT,
    _bad,
    _bool,
    _dict,
    _ex,
    _int,
    _list,
    _missing,
    _num,
    _str,
    synth_tool_id,
)

# ---------------------------------------------------------------------------------------
# Request: wire -> IR
# ---------------------------------------------------------------------------------------


def decode_request(body: Any, ctx: ir.Context | None = None) -> Request:
    """Decode a client's ``generateContent`` body (§4).

    ``body["model"]`` and ``body["stream"]`` are the gateway's additions from the URL
    (module docstring). Raises ``ClientProtocolError`` naming the field for malformed
    input; when ``ctx`` names another upstream, Gemini-only tools (``googleSearch``,
    ``codeExecution``…) and parts raise ``UnsupportedFeature``, and so does
    ``candidateCount`` above 1.
    """
    body = _dict(body, "body")
    foreign = _foreign(ctx, FORMAT)
    model = body.get("model")
    model = model if type(model) is str else ""
    if model.startswith("models/"):
        model = model[len("models/"):]
    stream = body.get("stream")
    extras: dict[str, Any] = _rest(body, _MODELED)

    contents = body.get("contents")
    if contents is None:
        raise _missing("contents")
    messages = _decode_contents(_list(contents, "contents"), foreign)

    system: tuple[Text, ...] = ()
    si = body.get("systemInstruction")
    if si is not None:
        si = _dict(si, "systemInstruction")
        parts = _list(si.get("parts") or [], "systemInstruction.parts")
        texts = []
        for j, part in enumerate(parts):
            part = _dict(part, f"systemInstruction.parts[{j}]")
            texts.append(Text(_str(part, "text", f"systemInstruction.parts[{j}].text",
                                   required=True) or "",
                              extras=_ex(_rest(part, {"text"}))))
        system = tuple(texts)
        extras["_system"] = _rest(si, {"parts"})

    tools: list[ir.Tool] = []
    for i, entry in enumerate(_list(body.get("tools") or [], "tools")):
        entry = _dict(entry, f"tools[{i}]")
        for key, value in entry.items():
            if key == "functionDeclarations":
                where = f"tools[{i}].functionDeclarations"
                for j, fd in enumerate(_list(value, where)):
                    tools.append(_decode_declaration(fd, f"{where}[{j}]", i))
            else:
                if foreign:
                    raise UnsupportedFeature(f"tools[{i}].{key}",
                                             "Gemini built-in tools need a Gemini upstream")
                tools.append(ir.NativeTool(provider=FORMAT, type=key, spec={key: value}))

    tool_choice = None
    tc = body.get("toolConfig")
    if tc is not None:
        tool_choice = _decode_tool_config(_dict(tc, "toolConfig"))
        extras["_tool_config"] = tc

    gc = _dict(body.get("generationConfig") or {}, "generationConfig")
    if "generationConfig" in body:
        extras["_gen_rest"] = _rest(gc, _GEN_MODELED)
    count = gc.get("candidateCount")
    if foreign and type(count) is int and count > 1:
        raise UnsupportedFeature("generationConfig.candidateCount",
                                 "only one candidate can be translated")
    stop = None
    if gc.get("stopSequences") is not None:
        seqs = _list(gc["stopSequences"], "generationConfig.stopSequences")
        if any(type(x) is not str for x in seqs):
            raise _bad("generationConfig.stopSequences", "expected strings.")
        stop = tuple(seqs)
    response_format = None
    mime = _str(gc, "responseMimeType", "generationConfig.responseMimeType")
    if mime is not None:
        extras["_mime"] = mime
    schema_key = next((k for k in ("responseJsonSchema", "responseSchema") if k in gc), None)
    if schema_key is not None:
        raw = _dict(gc[schema_key], f"generationConfig.{schema_key}")
        response_format = ir.ResponseFormat(
            type="json_schema",
            schema=raw if schema_key == "responseJsonSchema" else _from_gemini_schema(raw))
        extras["_schema"] = (schema_key, raw)
    elif mime == "application/json":
        response_format = ir.ResponseFormat(type="json_object")
    reasoning = None
    tcfg = gc.get("thinkingConfig")
    if tcfg is not None:
        tcfg = _dict(tcfg, "generationConfig.thinkingConfig")
        reasoning = _decode_thinking(tcfg)
        extras["_thinking"] = tcfg
    _bool(body, "stream")  # checked last: the errors above come first
    return Request(
        model=model,
        messages=messages,
        system=system,
        tools=tuple(tools),
        tool_choice=tool_choice,
        max_output_tokens=_int(gc, "maxOutputTokens", 1, param="generationConfig.maxOutputTokens"),
        temperature=_num(gc, "temperature", 0.0, 2.0, param="generationConfig.temperature"),
        top_p=_num(gc, "topP", 0.0, 1.0, param="generationConfig.topP"),
        top_k=_int(gc, "topK", 1, param="generationConfig.topK"),
        stop=stop,
        stream=bool(stream),
        response_format=response_format,
        reasoning=reasoning,
        extras=_ex(extras),
    )


def _decode_thinking(t: dict[str, Any]) -> ir.ReasoningConfig:
    budget = t.get("thinkingBudget")
    if budget is not None and type(budget) is not int:
        raise _bad("generationConfig.thinkingConfig.thinkingBudget", "expected an integer.")
    level = _str(t, "thinkingLevel", "generationConfig.thinkingConfig.thinkingLevel")
    include = t.get("includeThoughts")
    mode: Any = None
    if budget == 0:
        mode = "disabled"
    elif budget == -1:
        mode = "adaptive"
    elif budget is not None:
        mode = "enabled"
    return ir.ReasoningConfig(
        mode=mode, effort=level.lower() if level else None,
        budget_tokens=budget if budget is not None and budget > 0 else None,
        summary="auto" if include is True else None)


def _decode_tool_config(tc: dict[str, Any]) -> ir.ToolChoice | None:
    fcc = tc.get("functionCallingConfig")
    if fcc is None:
        return None
    fcc = _dict(fcc, "toolConfig.functionCallingConfig")
    mode = fcc.get("mode", "AUTO")
    allowed = fcc.get("allowedFunctionNames")
    names = None
    if allowed is not None:
        names = tuple(_list(allowed, "toolConfig.functionCallingConfig.allowedFunctionNames"))
        if any(type(n) is not str for n in names):
            raise _bad("toolConfig.functionCallingConfig.allowedFunctionNames", "expected strings.")
    if mode in ("AUTO", "MODE_UNSPECIFIED", "VALIDATED"):
        return ir.ToolChoice(mode="auto", allowed=names)
    if mode == "NONE":
        return ir.ToolChoice(mode="none")
    if mode == "ANY":
        if names is not None and len(names) == 1:
            return ir.ToolChoice(mode="tool", name=names[0])
        return ir.ToolChoice(mode="any", allowed=names)
    raise _bad("toolConfig.functionCallingConfig.mode", "expected AUTO, ANY, NONE or VALIDATED.")


def _decode_declaration(fd: Any, p: str, group: int) -> ir.FunctionTool:
    fd = _dict(fd, p)
    name = _str(fd, "name", f"{p}.name", required=True) or ""
    own: dict[str, Any] = _rest(fd, {"name", "description", "parameters",
                                     "parametersJsonSchema"})
    own["_group"] = group
    params = None
    if "parametersJsonSchema" in fd:
        params = _dict(fd["parametersJsonSchema"], f"{p}.parametersJsonSchema")
        own["_params"] = ("parametersJsonSchema", params)
    elif "parameters" in fd:
        raw = _dict(fd["parameters"], f"{p}.parameters")
        params = _from_gemini_schema(raw)
        own["_params"] = ("parameters", raw)
    return ir.FunctionTool(name=name, description=_str(fd, "description", f"{p}.description"),
                           parameters=params, extras=_ex(own))


def _decode_contents(contents: list[Any], foreign: bool) -> tuple[Message, ...]:
    messages = []
    pending: list[tuple[str, str]] = []  # (name, id) of the last model turn's calls
    for i, content in enumerate(contents):
        p = f"contents[{i}]"
        content = _dict(content, p)
        role_s = content.get("role")
        if role_s not in (None, "user", "model", "function"):
            raise _bad(f"{p}.role", "expected 'user' or 'model'.")
        role = Role.ASSISTANT if role_s == "model" else Role.USER
        if role is Role.ASSISTANT:
            pending = []
        blocks: list[ir.Block] = []
        for j, part in enumerate(_list(content.get("parts") or [], f"{p}.parts")):
            blocks.extend(_decode_part(_dict(part, f"{p}.parts[{j}]"), f"{p}.parts[{j}]",
                                       role, pending, foreign))
        rest = _rest(content, {"role", "parts"})
        if role_s is None:
            rest["_no_role"] = True
        elif role_s == "function":
            rest["_role"] = role_s
        messages.append(Message(role, tuple(blocks), extras=_ex(rest)))
    return tuple(messages)


def _decode_part(part: dict[str, Any], p: str, role: Role, pending: list[tuple[str, str]],
                 foreign: bool) -> list[ir.Block]:
    """One part → IR blocks (a signature-only reasoning block may precede it)."""
    sig = _str(part, "thoughtSignature", f"{p}.thoughtSignature")
    rest = _rest(part, {"text", "thought", "thoughtSignature", "inlineData", "fileData",
                        "functionCall", "functionResponse"})
    out: list[ir.Block] = []
    if part.get("thought") is True:
        text = _str(part, "text", f"{p}.text") or ""
        payload = _read_payload(sig) if sig else None
        if payload is not None:
            return [Reasoning(text=payload.get("thinking") or "",
                              signature=payload.get("signature"),
                              redacted_data=payload.get("redacted"),
                              provider=payload["provider"],
                              extras=_ex({"_sig": sig, "_text": text, **rest}))]
        return [Reasoning(text=text, signature=sig, provider=FORMAT,
                          extras=_ex({"_thought": True, **rest}))]
    if sig is not None:
        # A signature on an ordinary part (a functionCall's, usually): its own reasoning
        # block right before that part, so other formats can carry it (module docstring).
        out.append(Reasoning(signature=sig, provider=FORMAT))
    if "thought" in part:
        rest["thought"] = part["thought"]
    if "text" in part:
        out.append(Text(_str(part, "text", f"{p}.text") or "", extras=_ex(rest)))
    elif "inlineData" in part:
        d = _dict(part["inlineData"], f"{p}.inlineData")
        mime = _str(d, "mimeType", f"{p}.inlineData.mimeType", required=True) or ""
        data = _str(d, "data", f"{p}.inlineData.data", required=True) or ""
        rest.update({"_d": _rest(d, {"mimeType", "data"})} if len(d) > 2 else {})
        if mime.startswith("image/"):
            out.append(Image(media_type=mime, data=data, extras=_ex(rest)))
        else:
            out.append(File(media_type=mime, data=data, extras=_ex(rest)))
    elif "fileData" in part:
        d = _dict(part["fileData"], f"{p}.fileData")
        uri = _str(d, "fileUri", f"{p}.fileData.fileUri", required=True) or ""
        file_mime = _str(d, "mimeType", f"{p}.fileData.mimeType")
        rest.update({"_d": _rest(d, {"mimeType", "fileUri"})} if len(d) > 2 else {})
        if file_mime is not None and file_mime.startswith("image/"):
            out.append(Image(media_type=file_mime, url=uri, extras=_ex(rest)))
        else:
            out.append(File(media_type=file_mime, url=uri, extras=_ex(rest)))
    elif "functionCall" in part:
        fc = _dict(part["functionCall"], f"{p}.functionCall")
        name = _str(fc, "name", f"{p}.functionCall.name", required=True) or ""
        args = fc.get("args")
        args = {} if args is None else _dict(args, f"{p}.functionCall.args")
        cid = _str(fc, "id", f"{p}.functionCall.id")
        own = dict(rest)
        if _rest(fc, {"name", "args", "id"}):
            own["_fc"] = _rest(fc, {"name", "args", "id"})
        if "args" not in fc:
            own["_no_args"] = True
        if cid is None:
            cid = synth_tool_id(p, 0, name)
        else:
            own["_wire_id"] = True
        pending.append((name, cid))
        out.append(ToolCall(id=cid, name=name, arguments=jsonio.dumps(args).decode(),
                            input=args, extras=_ex(own)))
    elif "functionResponse" in part:
        fr = _dict(part["functionResponse"], f"{p}.functionResponse")
        name = _str(fr, "name", f"{p}.functionResponse.name", required=True) or ""
        resp = fr.get("response")
        resp = {} if resp is None else _dict(resp, f"{p}.functionResponse.response")
        cid = _str(fr, "id", f"{p}.functionResponse.id")
        own = dict(rest)
        own["_response"] = resp
        if _rest(fr, {"name", "response", "id"}):
            own["_fr"] = _rest(fr, {"name", "response", "id"})
        if cid is None:
            cid = _match_call(pending, name)
            if cid is None:
                cid = synth_tool_id(p, 0, name)
        else:
            own["_wire_id"] = True
            for k, (_name, pid) in enumerate(pending):
                if pid == cid:
                    del pending[k]
                    break
        text, is_error = _response_text(resp)
        out.append(ToolResult(id=cid, content=(Text(text),), is_error=is_error, name=name,
                              extras=_ex(own)))
    elif rest:
        # executableCode, codeExecutionResult, videoMetadata-only parts, future types.
        if foreign:
            raise UnsupportedFeature(p, f"the Gemini part {sorted(rest)[0]!r}")
        out.append(NativeBlock(FORMAT, sorted(rest)[0], part))
    else:
        raise _bad(p, "a part needs text, inlineData, fileData, functionCall or "
                      "functionResponse.")
    return out


def _match_call(pending: list[tuple[str, str]], name: str) -> str | None:
    """The id of the first unanswered call named ``name`` (§4: by name and order)."""
    for k, (pname, pid) in enumerate(pending):
        if pname == name:
            del pending[k]
            return pid
    return None


def _response_text(resp: dict[str, Any]) -> tuple[str, bool]:
    """Text of a ``functionResponse.response`` for formats whose tool results are text:
    the value of a lone ``result``/``output``/``content``/``error`` string, else the JSON."""
    if len(resp) == 1:
        (key, value), = resp.items()
        if type(value) is str:
            if key == "error":
                return value, True
            if key in ("result", "output", "content"):
                return value, False
    return jsonio.dumps(resp).decode(), False
