"""OpenAI Responses requests from a client: ``decode_request`` (body -> ``ir.Request``).

Section marks (§) refer to docs/protocols.md.
"""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .._fields import foreign as _foreign
from .._fields import other_fields as _rest
from .._openai import _DATA_URL
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
from .payload import decode_reasoning_payload
from .tables import (
    _ASSISTANT_ITEMS,
    _LOCAL_SHELL_DESCRIPTION,
    _MODELED,
    _NATIVE_ITEMS,
    _OUTPUT_ITEMS,
    _OUTPUT_KIND,
    _ROLES,
    FORMAT,
    LOCAL_SHELL_PARAMETERS,
    LOCAL_SHELL_TOOL_NAME,
    _bad,
    _bool,
    _dict,
    _ex,
    _int,
    _list,
    _missing,
    _num,
    _own,
    _str,
)

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
    decoded, _ = _decode_content(content, f"{p}.content", Role.ASSISTANT)
    blocks = list(decoded)
    if not blocks:
        head["_empty"] = True
        return [Text("", extras=_ex({"_item": head}))]
    first = blocks[0]
    if type(first) is not Text:
        raise _bad(f"{p}.content[0].type", "assistant messages hold output_text or refusal parts.")
    fields = dict(_own(first))
    fields["_item"] = head
    blocks[0] = Text(first.text, extras=_ex(fields))
    for j, b in enumerate(blocks):
        if type(b) is not Text:
            raise _bad(f"{p}.content[{j}].type",
                       "assistant messages hold output_text or refusal parts.")
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
    # A built-in tool (web_search, tool_search, ...): another upstream's encoder
    # maps it or drops it (protocols/builtin_tools.py).
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
