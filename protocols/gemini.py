"""Gemini ``generateContent`` / ``streamGenerateContent?alt=sse`` wire format ⇄ IR
(protocols.md §4, mapping §5).

* requests: ``decode_request`` (client body → ``ir.Request``: ``contents`` with
  ``user``/``model`` turns and ``text``/``inlineData``/``fileData``/``functionCall``/
  ``functionResponse``/thought parts with ``thoughtSignature``, ``systemInstruction``,
  ``tools[].functionDeclarations``, ``toolConfig``, ``generationConfig`` with
  ``thinkingConfig``) and ``encode_request`` (``ir.Request`` → body for a Gemini upstream:
  system text hoisted, turns merged to alternate, tool schemas cut down to the subset the
  ``parameters`` field accepts, at most five stop sequences);
* complete replies: ``decode_response`` / ``encode_response`` (``usageMetadata`` per §5.5,
  ``finishReason`` per §5.4, ``promptFeedback.blockReason`` → content filter);
* streams: ``StreamDecoder`` (data-only SSE, CRLF or LF; cumulative ``usageMetadata``:
  the last one wins, never summed; each whole ``functionCall`` part → block start, one
  argument delta, block stop) and ``StreamEncoder`` (data-only frames, each a
  ``GenerateContentResponse`` holding only the new parts; ``finishReason`` and usage on
  the last one);
* errors: ``decode_error`` / ``encode_error`` (Google RPC status bodies ⇄ HTTP codes).

The module interface is the one ``protocols/translate.py`` documents.

The model and the streaming flag live in the URL on this API (``/v1beta/models/{model}
:streamGenerateContent?alt=sse``), not in the body. ``decode_request`` therefore reads
two keys the gateway adds to the client's body from the path it routed: ``"model"`` and
``"stream"`` (both optional). ``encode_request`` returns the body only; the proxy builds
the upstream URL with :func:`request_path`.

Tool-call ids: ``functionCall.id`` is often absent (§4). Missing ids are synthesised as
``call_`` + 24 hex characters of a SHA-256 over where the call sits (the conversation
position in a request; the response id and the call's ordinal in a reply), so the same
history always yields the same ids, and ``functionResponse`` parts without an id are
matched back by name and order to the calls of the preceding model turn. Requests sent
to Gemini leave out ids Gemini did not issue and rely on the same name-and-order rule.

Thought signatures: a ``thoughtSignature`` on a ``thought`` part is that reasoning
block's signature; one on any other part (Gemini puts it on the first ``functionCall``
of a turn) becomes a reasoning block with an empty text just before that part, and the
encoder puts it back on the part that follows. Reasoning issued by another provider
(Anthropic thinking) travels to a Gemini client as a thought part whose
``thoughtSignature`` is a base64 payload (``tw1:`` + JSON, the scheme of
``openai_responses``), so it comes back intact on the next turn.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from . import ir, jsonio
from . import usage as usage_mod
from ._fields import GEMINI_FIELDS, custom_tool_names, sha256_hex
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
    "MAX_STOP_SEQUENCES",
    "MAX_TOOL_NAME_CHARS",
    "SYNTH_ID_PREFIX",
    "EFFORT_THINKING_BUDGET",
    "MAX_HELD_BYTES",
    "decode_request",
    "encode_request",
    "decode_response",
    "encode_response",
    "decode_error",
    "encode_error",
    "StreamDecoder",
    "StreamEncoder",
    "request_path",
    "synth_tool_id",
    "wire_tool_name",
    "to_gemini_schema",
]

FORMAT = ir.FORMAT_GEMINI

#: ``generationConfig.stopSequences`` holds at most five entries (§5.8 case 13).
MAX_STOP_SEQUENCES = 5
#: Function names: a letter or ``_`` first, then letters, digits, ``_.:-``, at most 64
#: characters (``FunctionDeclaration.name`` in the Gemini API reference).
MAX_TOOL_NAME_CHARS = 64
#: Synthesised tool-call ids: ``call_`` + 24 hex characters = 29 characters, within the
#: 40 OpenAI accepts and matching Anthropic's ``^[a-zA-Z0-9_-]+$`` (§4, §5.3).
SYNTH_ID_PREFIX = "call_"
_SYNTH_ID_CHARS = 24
#: An OpenAI-style effort becomes this ``thinkingBudget``; the values follow
#: ``anthropic_messages.EFFORT_BUDGET_TOKENS`` so a round trip keeps the effort, capped at
#: 24576, the largest budget Gemini 2.5 Flash accepts. ``none``/``minimal`` turn it off.
EFFORT_THINKING_BUDGET = {
    "none": 0,
    "minimal": 0,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
    "max": 24576,
}
#: Byte budget for tool arguments buffered until their block ends (a ``functionCall``
#: part carries whole ``args``), and for blocks held while another one is open.
MAX_HELD_BYTES = 8 * 1024 * 1024

# Marks a thoughtSignature written by this gateway for another provider's reasoning.
_PAYLOAD_PREFIX = b"tw1:"

_NAME_OK = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}")
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.:-]")
_HASH_CHARS = 8

_MODELED = frozenset(
    {"model", "stream", "contents", "systemInstruction", "tools", "toolConfig",
     "generationConfig"})
_GEN_MODELED = frozenset(
    {"temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "responseMimeType",
     "responseSchema", "responseJsonSchema", "thinkingConfig"})

# The OpenAPI subset the ``parameters`` field accepts (Gemini ``Schema``). Anything else
# (``additionalProperties``, ``$schema``, ``$ref``, ``const``, ``exclusiveMinimum``…) is
# rejected with 400 "Unknown name", so it is dropped or rewritten (§4 "tools").
_SCHEMA_KEYS = frozenset(
    {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
     "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
     "pattern", "anyOf", "propertyOrdering", "items", "minimum", "maximum"})
_SCHEMA_FORMATS = {"string": {"enum", "date-time"}, "integer": {"int32", "int64"},
                   "number": {"float", "double"}}
_MAX_SCHEMA_DEPTH = 32

_FINISH_TO_STOP = {
    "STOP": StopReason.END_TURN,
    "MAX_TOKENS": StopReason.MAX_TOKENS,
    "SAFETY": StopReason.CONTENT_FILTER,
    "RECITATION": StopReason.CONTENT_FILTER,
    "LANGUAGE": StopReason.CONTENT_FILTER,
    "BLOCKLIST": StopReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": StopReason.CONTENT_FILTER,
    "SPII": StopReason.CONTENT_FILTER,
    "IMAGE_SAFETY": StopReason.CONTENT_FILTER,
    "MALFORMED_FUNCTION_CALL": StopReason.ERROR,
    "UNEXPECTED_TOOL_CALL": StopReason.ERROR,
    "TOO_MANY_TOOL_CALLS": StopReason.ERROR,
    "OTHER": StopReason.END_TURN,
    "FINISH_REASON_UNSPECIFIED": StopReason.END_TURN,
}
_STOP_TO_FINISH = {
    StopReason.END_TURN: "STOP",
    StopReason.STOP_SEQUENCE: "STOP",
    StopReason.TOOL_USE: "STOP",
    StopReason.PAUSE: "STOP",
    StopReason.MAX_TOKENS: "MAX_TOKENS",
    StopReason.CONTEXT_WINDOW: "MAX_TOKENS",
    StopReason.CONTENT_FILTER: "SAFETY",
    StopReason.ERROR: "OTHER",
}

# Google RPC status name ⇄ HTTP code (google.rpc.Code, §4 "Errors", §5.7).
_STATUS_HTTP = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500,
}
_STATUS_KIND = {
    "INVALID_ARGUMENT": ErrorKind.INVALID_REQUEST,
    "FAILED_PRECONDITION": ErrorKind.INVALID_REQUEST,
    "OUT_OF_RANGE": ErrorKind.INVALID_REQUEST,
    "ALREADY_EXISTS": ErrorKind.INVALID_REQUEST,
    "ABORTED": ErrorKind.SERVER,
    "UNAUTHENTICATED": ErrorKind.AUTHENTICATION,
    "PERMISSION_DENIED": ErrorKind.PERMISSION,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "RESOURCE_EXHAUSTED": ErrorKind.RATE_LIMIT,
    "INTERNAL": ErrorKind.SERVER,
    "UNKNOWN": ErrorKind.SERVER,
    "DATA_LOSS": ErrorKind.SERVER,
    "UNIMPLEMENTED": ErrorKind.INVALID_REQUEST,
    "CANCELLED": ErrorKind.SERVER,
    "UNAVAILABLE": ErrorKind.OVERLOADED,
    "DEADLINE_EXCEEDED": ErrorKind.TIMEOUT,
}
_HTTP_KIND = {
    400: ErrorKind.INVALID_REQUEST, 401: ErrorKind.AUTHENTICATION, 403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND, 413: ErrorKind.REQUEST_TOO_LARGE, 429: ErrorKind.RATE_LIMIT,
    500: ErrorKind.SERVER, 502: ErrorKind.UPSTREAM_PROTOCOL, 503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
}
_KIND_STATUS: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_REQUEST: (400, "INVALID_ARGUMENT"),
    ErrorKind.AUTHENTICATION: (401, "UNAUTHENTICATED"),
    ErrorKind.PERMISSION: (403, "PERMISSION_DENIED"),
    ErrorKind.NOT_FOUND: (404, "NOT_FOUND"),
    ErrorKind.REQUEST_TOO_LARGE: (400, "INVALID_ARGUMENT"),
    ErrorKind.RATE_LIMIT: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.QUOTA: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.OVERLOADED: (503, "UNAVAILABLE"),
    ErrorKind.SERVER: (500, "INTERNAL"),
    ErrorKind.TIMEOUT: (504, "DEADLINE_EXCEEDED"),
    # No RPC status means "bad gateway"; 502 keeps the proxy's meaning (architecture.md
    # rule 4) and UNAVAILABLE tells Google clients to retry.
    ErrorKind.UPSTREAM_PROTOCOL: (502, "UNAVAILABLE"),
}


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


_bad, _missing = GEMINI_FIELDS.bad, GEMINI_FIELDS.missing
_str, _dict, _list = GEMINI_FIELDS.string, GEMINI_FIELDS.object, GEMINI_FIELDS.array
_num, _int, _bool = GEMINI_FIELDS.number, GEMINI_FIELDS.integer, GEMINI_FIELDS.boolean


def _ex(fields: dict[str, Any]) -> ir.Extras:
    return {FORMAT: fields} if fields else None


def _own(obj: Any) -> dict[str, Any]:
    return ir.extras_for(obj, FORMAT)


def synth_tool_id(seed: str, ordinal: int, name: str) -> str:
    """A deterministic tool-call id for a ``functionCall`` without one (§4): ``call_`` +
    24 hex characters of SHA-256 over ``seed``, ``ordinal`` and ``name``."""
    return SYNTH_ID_PREFIX + sha256_hex(f"{seed}\x00{ordinal}\x00{name}")[:_SYNTH_ID_CHARS]


def wire_tool_name(name: str, names: dict[str, str] | None = None) -> str:
    """A function name Gemini accepts; ``names`` receives the reverse mapping (wire name
    → original) so replies carry the client's names again (§5.3)."""
    if _NAME_OK.fullmatch(name):
        return name
    clean = _NAME_BAD.sub("_", name)
    if not clean or not (clean[0].isalpha() or clean[0] == "_"):
        clean = "_" + clean
    wire = f"{clean[: MAX_TOOL_NAME_CHARS - _HASH_CHARS - 1]}_{sha256_hex(name)[:_HASH_CHARS]}"
    if names is not None:
        names[wire] = name
    return wire


def request_path(req: Request, api_version: str = "v1beta") -> str:
    """The upstream path for ``req``: ``/v1beta/models/{model}:generateContent`` or
    ``…:streamGenerateContent?alt=sse`` (without ``alt=sse`` the stream is one JSON
    array, not SSE, §4)."""
    model = req.model if req.model.startswith("models/") else f"models/{req.model}"
    if req.stream:
        return f"/{api_version}/{model}:streamGenerateContent?alt=sse"
    return f"/{api_version}/{model}:generateContent"


def _payload_signature(provider: str, text: str, signature: str | None,
                       redacted: str | None) -> str:
    """Another provider's reasoning as a ``thoughtSignature`` (base64, as the field is
    bytes in Google's SDKs, so it survives their decode and re-encode)."""
    obj: dict[str, Any] = {"provider": provider}
    if redacted is not None:
        obj["redacted"] = redacted
    else:
        obj["thinking"] = text
        obj["signature"] = signature
    return base64.b64encode(_PAYLOAD_PREFIX + jsonio.dumps(obj)).decode("ascii")


def _read_payload(sig: str) -> dict[str, Any] | None:
    """The payload in a ``thoughtSignature`` this gateway wrote, else ``None``."""
    if not sig.startswith("dHcxO"):  # base64 of "tw1:"
        return None
    try:
        raw = base64.b64decode(sig, validate=True)
        if not raw.startswith(_PAYLOAD_PREFIX):
            return None
        obj = jsonio.loads(raw[len(_PAYLOAD_PREFIX):])
    except (ValueError, binascii.Error):
        return None
    if type(obj) is not dict or type(obj.get("provider")) is not str:
        return None
    return obj


# ---------------------------------------------------------------------------------------
# JSON Schema ⇄ Gemini Schema
# ---------------------------------------------------------------------------------------


def to_gemini_schema(schema: Any) -> dict[str, Any]:
    """A JSON Schema cut down to what ``FunctionDeclaration.parameters`` accepts.

    ``$ref`` into ``$defs``/``definitions`` is inlined (to a bounded depth), ``type``
    lists with ``"null"`` become ``nullable``, ``const`` becomes a one-value ``enum``,
    ``oneOf`` becomes ``anyOf``, unsupported ``format`` values and every keyword outside
    the Gemini ``Schema`` fields are dropped, as are empty ``properties`` (Gemini rejects
    an object with no properties) and ``required`` names that are not properties.
    """
    if type(schema) is not dict:
        return {}
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if type(schema.get(key)) is dict:
            defs.update(schema[key])
    return _schema(schema, defs, 0)


def _schema(s: Any, defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if type(s) is not dict or depth > _MAX_SCHEMA_DEPTH:
        return {}
    ref = s.get("$ref")
    if type(ref) is str:
        name = ref.rsplit("/", 1)[-1]
        target = defs.get(name)
        merged = {**(target if type(target) is dict else {}),
                  **{k: v for k, v in s.items() if k != "$ref"}}
        return _schema(merged, defs, depth + 1)
    out: dict[str, Any] = {}
    t = s.get("type")
    if type(t) is list:
        kinds = [k for k in t if k != "null"]
        if len(kinds) != len(t):
            out["nullable"] = True
        if len(kinds) == 1:
            t = kinds[0]
        elif kinds:
            out["anyOf"] = [{"type": k} for k in kinds if type(k) is str]
            t = None
        else:
            t = None
    if type(t) is str:
        out["type"] = t
    if "const" in s and type(s["const"]) is str:
        out["enum"] = [s["const"]]
    for k, v in s.items():
        if k not in _SCHEMA_KEYS and k != "oneOf":
            continue
        if k == "type":
            continue
        if k == "properties":
            if type(v) is dict and v:
                out["properties"] = {pk: _schema(pv, defs, depth + 1) for pk, pv in v.items()}
        elif k == "items":
            out["items"] = _schema(v, defs, depth + 1)
        elif k in ("anyOf", "oneOf"):
            if type(v) is list:
                out["anyOf"] = [_schema(x, defs, depth + 1) for x in v]
        elif k == "enum":
            if type(v) is list and v and all(type(x) is str for x in v):
                out["enum"] = v
        elif k == "format":
            kind = out.get("type", "")
            if type(kind) is str and type(v) is str and v in _SCHEMA_FORMATS.get(kind.lower(), ()):
                out["format"] = v
        elif k == "required":
            props = s.get("properties")
            if type(v) is list and type(props) is dict:
                req = [x for x in v if type(x) is str and x in props]
                if req:
                    out["required"] = req
        else:
            out[k] = v
    return out


def _from_gemini_schema(s: Any, depth: int = 0) -> Any:
    """A Gemini ``Schema`` as JSON Schema for other formats: lower-case ``type`` names
    (``OBJECT`` → ``object``) and ``nullable`` folded into the type."""
    if type(s) is not dict or depth > _MAX_SCHEMA_DEPTH:
        return s
    out: dict[str, Any] = {}
    for k, v in s.items():
        if k == "type" and type(v) is str:
            out["type"] = v.lower()
        elif k == "properties" and type(v) is dict:
            out[k] = {pk: _from_gemini_schema(pv, depth + 1) for pk, pv in v.items()}
        elif k == "items":
            out[k] = _from_gemini_schema(v, depth + 1)
        elif k == "anyOf" and type(v) is list:
            out[k] = [_from_gemini_schema(x, depth + 1) for x in v]
        elif k == "nullable":
            continue
        else:
            out[k] = v
    if s.get("nullable") is True and type(out.get("type")) is str:
        out["type"] = [out["type"], "null"]
    return out


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
                for j, fd in enumerate(_list(value, f"tools[{i}].functionDeclarations")):
                    tools.append(_decode_declaration(fd, f"tools[{i}].functionDeclarations[{j}]", i))
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
        mime = _str(d, "mimeType", f"{p}.fileData.mimeType")
        rest.update({"_d": _rest(d, {"mimeType", "fileUri"})} if len(d) > 2 else {})
        if mime is not None and mime.startswith("image/"):
            out.append(Image(media_type=mime, url=uri, extras=_ex(rest)))
        else:
            out.append(File(media_type=mime, url=uri, extras=_ex(rest)))
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

    tools = _encode_tools(req, names)
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
                gc["responseSchema"] = to_gemini_schema(rf.schema)
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
        out["thinkingBudget"] = EFFORT_THINKING_BUDGET.get(r.effort, EFFORT_THINKING_BUDGET["medium"])
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


def _encode_tools(req: Request, names: dict[str, str] | None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    groups: dict[Any, list[dict[str, Any]]] = {}
    for t in req.tools:
        tt = type(t)
        if tt is ir.FunctionTool or tt is ir.CustomTool:
            decl = _declaration(t, names)
            group = _own(t).get("_group", "_all")
            if group not in groups:
                groups[group] = []
                entries.append({"functionDeclarations": groups[group]})
            groups[group].append(decl)
        elif t.provider == FORMAT:
            entries.append(t.spec)
        else:
            raise UnsupportedFeature("tools", f"the {t.provider} built-in tool {t.type!r}")
    return entries


def _declaration(t: ir.FunctionTool | ir.CustomTool, names: dict[str, str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": wire_tool_name(t.name, names)}
    if type(t) is ir.CustomTool:
        # A freeform tool: one string argument (ir.CUSTOM_INPUT_KEY), the grammar in the
        # description, as anthropic_messages does.
        desc = t.description or ""
        fmt = t.format or {}
        if fmt.get("type") == "grammar" and type(fmt.get("definition")) is str:
            desc += f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
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
    elif t.parameters is not None:
        params = to_gemini_schema(t.parameters)
        if params.get("properties") or params.get("type") not in (None, "object"):
            out["parameters"] = params
    out.update(_public(own))
    return out


def _encode_part(b: ir.Block, param: str, translated: bool) -> dict[str, Any] | None:
    t = type(b)
    if t is NativeBlock:
        if b.provider == FORMAT:
            return b.data
        raise UnsupportedFeature(param, f"{b.provider} {b.type!r} content")
    own = _own(b)
    if t is Text:
        if translated and not b.text and not own:
            return None  # Gemini rejects empty text parts
        part: dict[str, Any] = {"text": b.text}
        part.update(_public(own))
        return part
    if t is Image or t is File:
        if b.data is not None:
            d: dict[str, Any] = {"mimeType": b.media_type or "application/octet-stream",
                                 "data": b.data}
            d.update(own.get("_d") or {})
            part = {"inlineData": d}
        elif b.url is not None:
            d = {"fileUri": b.url}
            mime = b.media_type or _guess_mime(b.url, t is Image)
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
        t = type(b)
        q = f"{p}.content[{j}]"
        if t is ToolCall:
            own = _own(b)
            name = wire_tool_name(b.name, names)
            call_names[b.id] = name
            fc: dict[str, Any] = {"name": name}
            if not own.get("_no_args"):
                fc["args"] = _args_object(b)
            if own.get("_wire_id"):
                fc["id"] = b.id
            fc.update(own.get("_fc") or {})
            part = {"functionCall": fc}
            part.update(_public(own))
            add(part)
        elif t is ToolResult:
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
        elif t is Reasoning:
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


# ---------------------------------------------------------------------------------------
# Complete replies
# ---------------------------------------------------------------------------------------


def _call_from_wire(fc: dict[str, Any], ctx: ir.Context | None, custom: frozenset[str],
                    seed: str, ordinal: int) -> tuple[str, str, str, ToolKind, Any, bool]:
    """(id, name, arguments, kind, args object, synthesised) of a functionCall part."""
    name = fc.get("name")
    if type(name) is not str:
        raise UpstreamProtocolError("functionCall without a name", param="functionCall.name")
    args = fc.get("args")
    if args is None:
        args = {}
    if type(args) is not dict:
        raise UpstreamProtocolError("functionCall.args is not an object", param="functionCall.args")
    cid = fc.get("id")
    synth = type(cid) is not str or not cid
    if synth:
        cid = synth_tool_id(seed, ordinal, name)
    name = _client_name(ctx, name)
    if name in custom and type(args.get(ir.CUSTOM_INPUT_KEY)) is str:
        return cid, name, args[ir.CUSTOM_INPUT_KEY], ToolKind.CUSTOM, None, synth
    return cid, name, jsonio.dumps(args).decode(), ToolKind.FUNCTION, args, synth


def _stop(finish: Any, blocked: bool, has_tools: bool) -> StopReason:
    if blocked:
        return StopReason.CONTENT_FILTER
    stop = _FINISH_TO_STOP.get(finish, StopReason.END_TURN) if type(finish) is str else StopReason.END_TURN
    if has_tools and stop is StopReason.END_TURN:
        return StopReason.TOOL_USE  # §5.4: decide tool use from the calls first
    return stop


def decode_response(body: Any, ctx: ir.Context | None = None) -> Response:
    """Decode an upstream ``GenerateContentResponse`` (first candidate only)."""
    if type(body) is not dict:
        raise UpstreamProtocolError("response is not an object", param="response")
    rid = body.get("responseId")
    rid = rid if type(rid) is str else ""
    seed = rid or (ctx.request_id if ctx is not None else "")
    custom = custom_tool_names(ctx)
    blocks: list[ir.Block] = []
    finish = None
    cand_rest: dict[str, Any] = {}
    candidates = body.get("candidates")
    if candidates is not None and type(candidates) is not list:
        raise UpstreamProtocolError("candidates is not an array", param="candidates")
    ordinal = 0
    if candidates:
        cand = candidates[0]
        if type(cand) is not dict:
            raise UpstreamProtocolError("candidate is not an object", param="candidates[0]")
        finish = cand.get("finishReason")
        cand_rest = _rest(cand, {"content", "finishReason"})
        content = cand.get("content")
        parts = content.get("parts") if type(content) is dict else None
        if content is not None:
            cand_rest["_content"] = _rest(content, {"parts"}) if type(content) is dict else content
        for j, part in enumerate(parts if type(parts) is list else ()):
            p = f"candidates[0].content.parts[{j}]"
            if type(part) is not dict:
                raise UpstreamProtocolError(f"{p} is not an object", param=p)
            if "functionCall" in part:
                fc = part["functionCall"]
                if type(fc) is not dict:
                    raise UpstreamProtocolError(f"{p}.functionCall is not an object", param=p)
                sig = part.get("thoughtSignature")
                if type(sig) is str:
                    blocks.append(Reasoning(signature=sig, provider=FORMAT))
                cid, name, args, kind, obj, synth = _call_from_wire(fc, ctx, custom, seed, ordinal)
                ordinal += 1
                own = _rest(part, {"functionCall", "thoughtSignature"})
                if not synth:
                    own["_wire_id"] = True
                if "args" not in fc:
                    own["_no_args"] = True
                if _rest(fc, {"name", "args", "id"}):
                    own["_fc"] = _rest(fc, {"name", "args", "id"})
                blocks.append(ToolCall(id=cid, name=name, arguments=args, input=obj, kind=kind,
                                       extras=_ex(own)))
            else:
                try:
                    blocks.extend(_decode_part(part, p, Role.ASSISTANT, [], False))
                except ClientProtocolError as e:
                    raise UpstreamProtocolError(e.message, param=e.param) from None
    feedback = body.get("promptFeedback")
    blocked = type(feedback) is dict and feedback.get("blockReason") is not None
    u = body.get("usageMetadata")
    extras = _rest(body, {"candidates", "usageMetadata", "modelVersion", "responseId"})
    if candidates is None:
        extras["_no_candidates"] = True
    if cand_rest:
        extras["_candidate"] = cand_rest
    if finish is not None:
        extras["_finish"] = finish
    if u is not None:
        extras["_usage"] = u
    model = body.get("modelVersion")
    return Response(
        id=rid,
        model=model if type(model) is str else "",
        content=tuple(blocks),
        stop_reason=_stop(finish, blocked, any(type(b) is ToolCall for b in blocks)),
        usage=usage_mod.from_gemini(u) if u is not None else Usage(),
        extras=_ex(extras),
    )


def encode_response(resp: Response, ctx: ir.Context | None = None) -> dict[str, Any]:
    """A ``GenerateContentResponse`` for a Gemini client. A reply decoded from a Gemini
    upstream keeps its own fields; any other is written from the IR alone."""
    own = _own(resp)
    translated = not own
    msg = Message(Role.ASSISTANT, resp.content)
    contents: list[dict[str, Any]] = []
    _encode_message(msg, "content", contents, None, {}, translated)
    parts = contents[0]["parts"] if contents else []
    if translated:
        parts = _reply_parts(resp.content, parts)
    out: dict[str, Any] = {}
    if not own.get("_no_candidates"):
        cand: dict[str, Any] = {"content": {**(own.get("_candidate", {}).get("_content") or {}),
                                            "parts": parts, "role": "model"}}
        if "_candidate" in own and "_content" not in own["_candidate"]:
            del cand["content"]
        finish = own.get("_finish")
        if finish is None or _stop(finish, False, False) is not _plain(resp.stop_reason):
            finish = _STOP_TO_FINISH[resp.stop_reason]
        cand["finishReason"] = finish
        cand.update(_public(own.get("_candidate") or {"index": 0}))
        out["candidates"] = [cand]
    raw_usage = own.get("_usage")
    if raw_usage is not None and usage_mod.from_gemini(raw_usage) == resp.usage:
        out["usageMetadata"] = raw_usage
    else:
        out["usageMetadata"] = usage_mod.to_gemini(resp.usage)
    out["modelVersion"] = resp.model
    out["responseId"] = ctx.new_id("resp_") if ctx is not None else resp.id
    out.update(_public(own))
    return out


def _plain(stop: StopReason) -> StopReason:
    return StopReason.END_TURN if stop is StopReason.TOOL_USE else stop


def _reply_parts(blocks: tuple[ir.Block, ...], parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parts for a translated reply: calls carry their ids (a Gemini client echoes them in
    its ``functionResponse``), and reasoning from another provider becomes a thought part
    with a payload signature (module docstring)."""
    out: list[dict[str, Any]] = []
    calls = iter([b for b in blocks if type(b) is ToolCall])
    for part in parts:
        if "functionCall" in part:
            b = next(calls, None)
            if b is not None:
                part = {**part, "functionCall": {**part["functionCall"], "id": b.id}}
        out.append(part)
    # Reasoning _encode_message dropped (not Gemini's own) is shown first, as thoughts.
    thoughts: list[dict[str, Any]] = []
    for b in blocks:
        if type(b) is not Reasoning or b.provider == FORMAT:
            continue
        if b.provider is not None and (b.signature or b.redacted_data is not None):
            thoughts.append({"text": b.text, "thought": True,
                             "thoughtSignature": _payload_signature(
                                 b.provider, b.text, b.signature, b.redacted_data)})
        elif b.text or b.summary:
            thoughts.append({"text": b.text or "\n\n".join(b.summary), "thought": True})
    return thoughts + out


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def _error_kind(status: int, name: Any, details: Any) -> ErrorKind:
    if type(details) is list:
        for d in details:
            if type(d) is dict and d.get("reason") == "API_KEY_INVALID":
                return ErrorKind.AUTHENTICATION
    if type(name) is str and name in _STATUS_KIND:
        return _STATUS_KIND[name]
    kind = _HTTP_KIND.get(status)
    if kind is not None:
        return kind
    return ErrorKind.INVALID_REQUEST if 400 <= status < 500 else ErrorKind.SERVER


def decode_error(status: int, body: bytes) -> ApiError:
    """An upstream error reply (``{"error": {code, message, status, details}}``, also the
    one-element array ``streamGenerateContent`` without ``alt=sse`` sends); tolerant of
    non-JSON bodies."""
    try:
        obj = jsonio.loads(body) if body else None
    except jsonio.JSONDecodeError:
        obj = None
    if type(obj) is list and obj and type(obj[0]) is dict:
        obj = obj[0]
    err = obj.get("error") if type(obj) is dict else None
    if type(err) is dict:
        message = err.get("message")
        message = message if type(message) is str else str(message or "")
        name = err.get("status")
        details = err.get("details")
    else:
        message = body[:500].decode("utf-8", "replace").strip() or f"HTTP {status}"
        name = details = None
    reason = None
    if type(details) is list:
        for d in details:
            if type(d) is dict and type(d.get("reason")) is str:
                reason = d["reason"]
                break
    return ApiError(kind=_error_kind(status, name, details), message=message, status=status,
                    type_=name if type(name) is str else None, code=reason)


def _error_body(kind: ErrorKind, message: str, status: int | None = None,
                name: str | None = None) -> tuple[int, dict[str, Any]]:
    code, sname = _KIND_STATUS[kind]
    if name is not None and name in _STATUS_HTTP:
        sname = name
        code = status or _STATUS_HTTP[name]
    return code, {"error": {"code": code, "message": message, "status": sname}}


def encode_error(err: ApiError, source_format: str | None = None) -> tuple[int, bytes]:
    """Status and Google RPC body for a Gemini client; a Gemini upstream's own status
    name and code are kept."""
    own = source_format == FORMAT and err.type_ is not None
    code, obj = _error_body(err.kind, err.message, err.status if own else None,
                            err.type_ if own else None)
    return code, jsonio.dumps(obj)


# ---------------------------------------------------------------------------------------
# Streams: wire -> IR
# ---------------------------------------------------------------------------------------


class StreamDecoder(StreamDecoderBase):
    """Gemini ``alt=sse`` stream → IR events (protocols.md §4 "Stream").

    Frames are data-only, ended by CRLF or LF blank lines (``FrameSplitter`` handles
    both); each is a whole ``GenerateContentResponse`` holding only new parts. Text parts
    extend the open text block, ``thought`` parts the open reasoning block; a whole
    ``functionCall`` part becomes a block start, one argument delta and a block stop.
    ``usageMetadata`` is cumulative: the last one is the usage, never a sum. There is no
    end marker: the clean end is EOF after a chunk with ``finishReason`` (or a
    ``promptFeedback.blockReason``), so ``MessageEnd`` is emitted by ``close()``; EOF
    without either is a ``StreamError``. A chunk with an ``error`` object ends the
    stream with a ``StreamError``.

    Facts read by ``Translation``: ``model``, ``id``, ``usage``, ``stop_reason``,
    ``tool_calls``, ``failed``, ``done``.
    """

    __slots__ = ("_started", "_next", "_text", "_reasoning", "_finish", "_blocked", "_raw_usage",
                 "_custom")

    def __init__(self, ctx: ir.Context | None = None, *, observe: bool = False) -> None:
        super().__init__(ctx, observe=observe)
        self._started = False
        self._next = 0
        self._text = -1  # open text block, or -1
        self._reasoning = -1  # open reasoning block, or -1
        self._finish: Any = None
        self._blocked = False
        self._raw_usage: Any = None
        self._custom = custom_tool_names(ctx)

    def _payload(self, payload: bytes, out: list[ir.StreamEvent]) -> None:
        try:
            chunk = jsonio.loads(payload)
        except jsonio.JSONDecodeError:
            raise UpstreamProtocolError("Gemini stream chunk is not JSON", param="data") from None
        self._chunk(chunk, out)

    def _eof(self, out: list[ir.StreamEvent]) -> None:
        if self._finish is None and not self._blocked:
            self._fail(out, StreamError(ErrorKind.UPSTREAM_PROTOCOL,
                                        "upstream closed the stream before finishReason"))
            return
        self._close_blocks(out)
        self.stop_reason = _stop(self._finish, self._blocked, self.tool_calls > 0)
        self.done = True
        out.append(MessageEnd(self.stop_reason))

    # -- internals ---------------------------------------------------------------------

    def _chunk(self, chunk: Any, out: list[ir.StreamEvent]) -> None:
        if type(chunk) is list:
            # A proxy that dropped alt=sse framing into an array: read its elements.
            for c in chunk:
                self._chunk(c, out)
                if self.done:
                    return
            return
        if type(chunk) is not dict:
            raise UpstreamProtocolError("Gemini stream chunk is not an object", param="data")
        err = chunk.get("error")
        if err is not None:
            e = err if type(err) is dict else {}
            message = e.get("message")
            code = e.get("code")
            kind = _error_kind(code if type(code) is int else 0, e.get("status"), e.get("details"))
            self._fail(out, StreamError(kind, message if type(message) is str else "upstream error",
                                        code if type(code) is int else _KIND_STATUS[kind][0],
                                        e.get("status") if type(e.get("status")) is str else None))
            return
        if not self._started:
            self._started = True
            rid, model = chunk.get("responseId"), chunk.get("modelVersion")
            self.id = rid if type(rid) is str else ""
            self.model = model if type(model) is str else ""
            out.append(MessageStart(self.id, self.model))
        candidates = chunk.get("candidates")
        if candidates:
            if type(candidates) is not list:
                raise UpstreamProtocolError("candidates is not an array", param="candidates")
            for cand in candidates:
                if type(cand) is not dict:
                    raise UpstreamProtocolError("candidate is not an object", param="candidates")
                if cand.get("index", 0) == 0:
                    self._candidate(cand, out)
        feedback = chunk.get("promptFeedback")
        if type(feedback) is dict and feedback.get("blockReason") is not None:
            self._blocked = True
        u = chunk.get("usageMetadata")
        if u is not None and u != self._raw_usage:
            # Cumulative on every chunk: replace, never add (§4, §5.5).
            self._raw_usage = u
            self.usage = usage_mod.from_gemini(u)
            out.append(UsageUpdate(self.usage))

    def _candidate(self, cand: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        content = cand.get("content")
        parts = content.get("parts") if type(content) is dict else None
        if parts:
            if type(parts) is not list:
                raise UpstreamProtocolError("parts is not an array", param="parts")
            for part in parts:
                if type(part) is not dict:
                    raise UpstreamProtocolError("part is not an object", param="parts")
                self._part(part, out)
        finish = cand.get("finishReason")
        if finish is not None:
            self._finish = finish

    def _close_blocks(self, out: list[ir.StreamEvent]) -> None:
        if self._text >= 0:
            out.append(BlockStop(self._text))
            self._text = -1
        if self._reasoning >= 0:
            out.append(BlockStop(self._reasoning))
            self._reasoning = -1

    def _new(self) -> int:
        idx = self._next
        self._next += 1
        return idx

    def _part(self, part: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        sig = part.get("thoughtSignature")
        if sig is not None and type(sig) is not str:
            raise UpstreamProtocolError("thoughtSignature is not a string", param="thoughtSignature")
        text = part.get("text")
        if text is not None and type(text) is not str:
            raise UpstreamProtocolError("text is not a string", param="text")
        if part.get("thought") is True:
            if self._text >= 0:
                out.append(BlockStop(self._text))
                self._text = -1
            if self._reasoning < 0:
                self._reasoning = self._new()
                out.append(BlockStart(self._reasoning, BlockKind.REASONING, provider=FORMAT))
            if text and not self._observe:
                out.append(ReasoningDelta(self._reasoning, text))
            if sig:
                out.append(SignatureDelta(self._reasoning, sig, FORMAT))
            return
        if sig:
            # A signature on an ordinary part: a reasoning block of its own just before it.
            self._close_blocks(out)
            idx = self._new()
            out.append(BlockStart(idx, BlockKind.REASONING, provider=FORMAT))
            out.append(SignatureDelta(idx, sig, FORMAT))
            out.append(BlockStop(idx))
        fc = part.get("functionCall")
        if fc is not None:
            if type(fc) is not dict:
                raise UpstreamProtocolError("functionCall is not an object", param="functionCall")
            self._close_blocks(out)
            seed = self.id or (self._ctx.request_id if self._ctx is not None else "")
            cid, name, args, kind, _, _ = _call_from_wire(fc, self._ctx, self._custom, seed,
                                                          self.tool_calls)
            self.tool_calls += 1
            idx = self._new()
            out.append(BlockStart(idx, BlockKind.TOOL_CALL, tool_id=cid, tool_name=name,
                                  tool_kind=kind))
            if args and not self._observe:
                out.append(ToolArgsDelta(idx, args))  # whole args: one delta (§5.6)
            out.append(BlockStop(idx))
            return
        if text:
            if self._reasoning >= 0:
                out.append(BlockStop(self._reasoning))
                self._reasoning = -1
            if self._text < 0:
                self._text = self._new()
                out.append(BlockStart(self._text, BlockKind.TEXT))
            if not self._observe:
                out.append(TextDelta(self._text, text))
        # inlineData (generated images), executableCode…: not modelled in streams.


# ---------------------------------------------------------------------------------------
# Streams: IR -> wire
# ---------------------------------------------------------------------------------------


class StreamEncoder(StreamEncoderBase):
    """IR events → Gemini ``alt=sse`` frames for a Gemini client (protocols.md §4).

    Every frame is ``data: <GenerateContentResponse>`` plus a blank line (no ``event:``
    lines, no end marker) and holds only the new parts: one ``text`` part per text delta,
    one ``text`` + ``thought`` part per reasoning delta, one whole ``functionCall`` part
    per tool call (its arguments are buffered, within ``MAX_HELD_BYTES``, until the
    block stops). The last frame carries ``finishReason`` and ``usageMetadata``. A
    ``StreamError`` becomes a frame holding a Google RPC ``error`` object, after which
    the stream ends; so does a cut stream, never with a fabricated ``finishReason`` (§6.3
    "Cut streams").
    """

    __slots__ = ("_head", "_tail", "_usage", "_tools", "_held", "_sig", "_id", "_model",
                 "_kinds", "_reasoning_text")

    def __init__(self, ctx: ir.Context | None = None) -> None:
        super().__init__(ctx)
        self._head = b""
        self._tail = b""
        self._usage: Usage | None = None
        self._tools: dict[int, tuple[str, str, ToolKind, list[str]]] = {}
        self._held = 0
        self._sig: dict[int, list[str]] = {}  # reasoning block -> signature pieces
        self._kinds: dict[int, BlockStart] = {}
        self._reasoning_text: dict[int, list[str]] = {}
        self._id = ""
        self._model = ""

    # -- writing -----------------------------------------------------------------------

    def _frame(self, parts: list[dict[str, Any]]) -> bytes:
        return self._head + jsonio.dumps(parts) + self._tail

    def _ensure_started(self) -> None:
        if not self._started:
            self._on_start(MessageStart("", ""))

    # -- handlers ----------------------------------------------------------------------

    def _on_start(self, ev: MessageStart) -> bytes:
        if self._started:
            return b""
        self._started = True
        ctx = self._ctx
        creq = ctx.client_request if ctx is not None else None
        self._id = ctx.new_id("resp_") if ctx is not None else (ev.id or "resp")
        self._model = ev.model or (creq.model if creq is not None else "")
        if ev.usage is not None:
            self._usage = ev.usage
        self._head = b'data: {"candidates":[{"content":{"parts":'
        self._tail = (b',"role":"model"},"index":0}],"modelVersion":' + jsonio.dumps(self._model)
                      + b',"responseId":' + jsonio.dumps(self._id) + b"}\n\n")
        return b""

    def _on_block_start(self, ev: BlockStart) -> bytes:
        self._ensure_started()
        self._kinds[ev.index] = ev
        if ev.kind is BlockKind.TOOL_CALL:
            tid = ev.tool_id or (self._ctx.new_id("call_") if self._ctx is not None else "call")
            self._tools[ev.index] = (tid, ev.tool_name or "", ev.tool_kind, [])
        return b""

    def _on_text(self, ev: TextDelta) -> bytes:
        if not ev.text:
            return b""
        self._ensure_started()
        return self._head + b'[{"text":' + jsonio.dumps(ev.text) + b"}]" + self._tail

    def _on_reasoning(self, ev: ReasoningDelta) -> bytes:
        if not ev.text:
            return b""
        self._ensure_started()
        self._reasoning_text.setdefault(ev.index, []).append(ev.text)
        return (self._head + b'[{"text":' + jsonio.dumps(ev.text) + b',"thought":true}]'
                + self._tail)

    def _on_signature(self, ev: SignatureDelta) -> bytes:
        if ev.signature:
            self._sig.setdefault(ev.index, []).append(ev.signature)
            start = self._kinds.get(ev.index)
            if start is not None and ev.provider is not None:
                self._kinds[ev.index] = BlockStart(start.index, start.kind,
                                                   redacted_data=start.redacted_data,
                                                   provider=ev.provider)
        return b""

    def _on_args(self, ev: ToolArgsDelta) -> bytes:
        tool = self._tools.get(ev.index)
        if tool is None or not ev.arguments:
            return b""
        self._held += len(ev.arguments)
        if self._held > MAX_HELD_BYTES:
            raise BufferLimitExceeded(f"more than {MAX_HELD_BYTES} bytes of tool arguments held",
                                      param="functionCall.args", limit=MAX_HELD_BYTES)
        tool[3].append(ev.arguments)
        return b""

    def _on_block_stop(self, ev: BlockStop) -> bytes:
        idx = ev.index
        start = self._kinds.pop(idx, None)
        tool = self._tools.pop(idx, None)
        if tool is not None:
            tid, name, kind, pieces = tool
            raw = "".join(pieces)
            self._held -= len(raw)
            if kind is ToolKind.CUSTOM:
                args: Any = {ir.CUSTOM_INPUT_KEY: raw}
            else:
                args = ir.parse_arguments(raw, jsonio.loads)
            return self._frame([{"functionCall": {"id": tid, "name": name, "args": args}}])
        sig = self._sig.pop(idx, None)
        text = "".join(self._reasoning_text.pop(idx, ()))
        if start is None or start.kind is not BlockKind.REASONING:
            return b""
        provider = start.provider
        if provider == FORMAT:
            if sig:
                return self._frame([{"text": "", "thought": True, "thoughtSignature": "".join(sig)}])
            return b""
        if sig or start.redacted_data is not None:
            payload = _payload_signature(provider or "", text, "".join(sig) if sig else None,
                                         start.redacted_data)
            return self._frame([{"text": "", "thought": True, "thoughtSignature": payload}])
        return b""

    def _on_usage(self, ev: UsageUpdate) -> bytes:
        self._usage = ev.usage
        return b""

    def _on_end(self, ev: MessageEnd) -> bytes:
        self._ensure_started()
        out = b""
        for idx in list(self._kinds):
            out += self._on_block_stop(BlockStop(idx))  # defensive: blocks left open
        self._done = True
        usage = jsonio.dumps(usage_mod.to_gemini(self._usage or Usage()))
        return out + (b'data: {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},'
                      b'"finishReason":"' + _STOP_TO_FINISH[ev.stop_reason].encode()
                      + b'","index":0}],"usageMetadata":' + usage + b',"modelVersion":'
                      + jsonio.dumps(self._model) + b',"responseId":' + jsonio.dumps(self._id)
                      + b"}\n\n")

    def _on_error(self, ev: StreamError) -> bytes:
        self._done = True
        _, body = _error_body(ev.kind, ev.message)
        return b"data: " + jsonio.dumps(body) + b"\n\n"
