"""Gemini codec: requests, replies, streams and errors (docs/protocols.md §4, §5)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import gemini as gm
from protocols import ir, jsonio
from protocols.errors import (
    ClientProtocolError,
    UnsupportedFeature,
    UpstreamProtocolError,
)
from protocols.gemini import request_encode as gm_request
from protocols.gemini import schema as gm_schema
from protocols.gemini import tables as gm_tables
from protocols.ir import (
    BlockKind,
    BlockStart,
    BlockStop,
    ErrorKind,
    MessageEnd,
    MessageStart,
    ReasoningDelta,
    SignatureDelta,
    StopReason,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolKind,
    Usage,
    UsageUpdate,
)
from protocols.translate import Translation
from tests.protocols.conftest import (
    CREATED,
    REQUEST_ID,
    byte_at_a_time,
    random_chunks,
    split_at,
    transcript,
)

FMT = gm.FORMAT
TRANSCRIPT = "gemini_stream_text_crlf.sse"
SYNTH_ID = re.compile(r"call_[0-9a-f]{24}")


def ctx(client: str = FMT, upstream: str = FMT, request: ir.Request | None = None) -> ir.Context:
    c = ir.Context(request_id=REQUEST_ID, created=CREATED, client_format=client,
                   upstream_format=upstream)
    c.client_request = request
    return c


def decode_stream(chunks: list[bytes], c: ir.Context | None = None,
                  **kw: Any) -> list[ir.StreamEvent]:
    d = gm.StreamDecoder(c or ctx(), **kw)
    events: list[ir.StreamEvent] = []
    for chunk in chunks:
        events += d.feed(chunk)
    return events + d.close()


def frames(body: bytes) -> list[dict[str, Any]]:
    """The JSON of every data-only frame (CRLF or LF), checking there is nothing else."""
    text = body.replace(b"\r\n", b"\n")
    out = []
    for block in text.split(b"\n\n"):
        if not block:
            continue
        assert block.startswith(b"data: ") and b"\n" not in block, block
        out.append(jsonio.loads(block[6:]))
    return out


def gemini_final(body: bytes) -> dict[str, Any]:
    """What a Gemini streaming client accumulates: text, thoughts, function calls, the
    last usage and the finish reason. Raises ``RuntimeError`` on an error frame."""
    text, thoughts, calls, sigs = [], [], [], []
    usage = finish = None
    for f in frames(body):
        if "error" in f:
            raise RuntimeError(f["error"]["status"] + ": " + f["error"]["message"])
        usage = f.get("usageMetadata", usage)
        for cand in f.get("candidates", []):
            finish = cand.get("finishReason", finish)
            for part in cand.get("content", {}).get("parts", []):
                if "thoughtSignature" in part:
                    sigs.append(part["thoughtSignature"])
                if "functionCall" in part:
                    calls.append(part["functionCall"])
                elif part.get("thought"):
                    thoughts.append(part.get("text", ""))
                else:
                    text.append(part.get("text", ""))
    return {"text": "".join(text), "thoughts": "".join(thoughts), "calls": calls,
            "usage": usage, "finish": finish, "signatures": sigs}


# --------------------------------------------------------------------------------------
# Requests: wire -> IR
# --------------------------------------------------------------------------------------

PNG = "iVBORw0KGgo="
FULL_REQUEST: dict[str, Any] = {
    "contents": [
        {"role": "user", "parts": [
            {"text": "What is the weather here and there?"},
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}},
        ]},
        {"role": "model", "parts": [
            {"text": "Thinking about places.", "thought": True, "thoughtSignature": "CiQBsig=="},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
             "thoughtSignature": "CiQBcall=="},
            {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}},
            {"functionResponse": {"name": "get_weather", "response": {"temp": 25, "unit": "C"}}},
            {"functionResponse": {"name": "get_time", "response": {"error": "no clock"}}},
        ]},
        {"role": "model", "parts": [
            {"functionCall": {"id": "fc-7", "name": "get_time", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "fc-7", "name": "get_time",
                                  "response": {"output": "noon"}}}]},
        {"parts": [{"text": "Thanks"}]},
        {"role": "model", "parts": [{"executableCode": {"language": "PYTHON", "code": "1+1"}}]},
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric."}]},
    "tools": [
        {"functionDeclarations": [
            {"name": "get_weather", "description": "Weather",
             "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                            "required": ["city"]}},
            {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {
                "tz": {"type": "string"}}, "additionalProperties": False}},
        ]},
        {"googleSearch": {}},
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY",
                                             "allowedFunctionNames": ["get_weather", "get_time"]}},
    "generationConfig": {
        "temperature": 0.7, "topP": 0.9, "topK": 40, "maxOutputTokens": 1000,
        "stopSequences": ["END"], "candidateCount": 1, "seed": 7,
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}


def test_decode_full_request() -> None:
    req = gm.decode_request({**copy.deepcopy(FULL_REQUEST), "model": "models/gemini-2.5-pro",
                             "stream": True})
    assert req.model == "gemini-2.5-pro" and req.stream
    assert req.system == (ir.Text("Be brief."), ir.Text("Use metric."))
    assert (req.temperature, req.top_p, req.top_k, req.max_output_tokens, req.stop) == (
        0.7, 0.9, 40, 1000, ("END",))
    assert req.reasoning == ir.ReasoningConfig(mode="enabled", budget_tokens=2048, summary="auto")
    assert req.tool_choice == ir.ToolChoice(mode="any", allowed=("get_weather", "get_time"))
    weather, time_tool, search = req.tools
    assert weather.parameters == {"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"]}  # lower-cased for other formats
    assert time_tool.parameters["additionalProperties"] is False
    assert type(search) is ir.NativeTool and search.type == "googleSearch"
    user = req.messages[0].content
    assert user[1] == ir.Image(media_type="image/png", data=PNG)
    assert type(user[2]) is ir.File and user[2].url == "gs://bucket/doc.pdf"
    model = req.messages[1].content
    assert [type(b).__name__ for b in model] == ["Reasoning", "Reasoning", "ToolCall", "ToolCall",
                                                "ToolCall"]
    assert (model[0].text, model[0].signature, model[0].provider) == (
        "Thinking about places.", "CiQBsig==", FMT)
    assert (model[1].text, model[1].signature) == ("", "CiQBcall==")  # the call's signature
    calls = model[2:]
    assert all(SYNTH_ID.fullmatch(c.id) for c in calls) and len({c.id for c in calls}) == 3
    assert calls[0].input == {"city": "Paris"} and calls[0].arguments == '{"city":"Paris"}'
    # functionResponse without ids: matched by name and order (§4).
    results = req.messages[2].content
    assert [r.id for r in results] == [calls[0].id, calls[2].id, calls[1].id]
    assert [(r.name, r.content[0].text, r.is_error) for r in results] == [
        ("get_weather", "18C", False), ("get_weather", '{"temp":25,"unit":"C"}', False),
        ("get_time", "no clock", True)]
    assert req.messages[3].content[0].id == "fc-7" and req.messages[4].content[0].id == "fc-7"
    assert req.messages[5].role is ir.Role.USER
    assert type(req.messages[6].content[0]) is ir.NativeBlock


def test_synthesised_ids_are_deterministic() -> None:
    a = gm.decode_request(copy.deepcopy(FULL_REQUEST))
    b = gm.decode_request(copy.deepcopy(FULL_REQUEST))
    ids = [blk.id for m in a.messages for blk in m.content if type(blk) is ir.ToolCall]
    assert ids == [blk.id for m in b.messages for blk in m.content if type(blk) is ir.ToolCall]
    synth = gm_tables.synth_tool_id
    assert synth("s", 0, "f") == synth("s", 0, "f") != synth("s", 1, "f")
    assert len(gm_tables.synth_tool_id("s", 0, "f")) <= 40


def test_request_round_trip_full() -> None:
    body = copy.deepcopy(FULL_REQUEST)
    assert gm.encode_request(gm.decode_request(body)) == FULL_REQUEST
    assert body == FULL_REQUEST


@pytest.mark.parametrize("body", [
    {"contents": [{"parts": [{"text": "hi"}]}]},
    {"contents": [], "systemInstruction": {"role": "system", "parts": []}},
    {"contents": [{"role": "user", "parts": [{"text": "x"}]}],
     "generationConfig": {"responseMimeType": "application/json",
                          "responseSchema": {"type": "OBJECT", "properties": {
                              "a": {"type": "STRING", "nullable": True}}}}},
    {"contents": [{"role": "user", "parts": [{"text": "x"}]}],
     "generationConfig": {"responseMimeType": "text/x.enum"}},
    {"contents": [{"role": "user", "parts": [{"text": "x"}]}],
     "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
     "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
    {"contents": [{"role": "user", "parts": [{"text": "x"}]}],
     "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
     "generationConfig": {"thinkingConfig": {"thinkingLevel": "high"}}},
    {"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
                  {"role": "function",
                   "parts": [{"functionResponse": {"name": "f", "response": {}}}]}],
     "cachedContent": "cachedContents/abc"},
])
def test_request_round_trip(body: dict[str, Any]) -> None:
    assert gm.encode_request(gm.decode_request(copy.deepcopy(body))) == body


@pytest.mark.parametrize(("body", "param"), [
    ({}, "contents"),
    ({"contents": {}}, "contents"),
    ({"contents": [{"role": "robot", "parts": []}]}, "contents[0].role"),
    ({"contents": [{"parts": [{}]}]}, "contents[0].parts[0]"),
    ({"contents": [{"parts": [{"text": 3}]}]}, "contents[0].parts[0].text"),
    ({"contents": [{"parts": [{"functionCall": {"args": {}}}]}]},
     "contents[0].parts[0].functionCall.name"),
    ({"contents": [{"parts": [{"functionCall": {"name": "f", "args": []}}]}]},
     "contents[0].parts[0].functionCall.args"),
    ({"contents": [{"parts": [{"inlineData": {"data": "x"}}]}]},
     "contents[0].parts[0].inlineData.mimeType"),
    ({"contents": [], "generationConfig": {"temperature": 5}}, "generationConfig.temperature"),
    ({"contents": [], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
     "toolConfig.functionCallingConfig.mode"),
    ({"contents": [], "generationConfig": {"thinkingConfig": {"thinkingBudget": "lots"}}},
     "generationConfig.thinkingConfig.thinkingBudget"),
])
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ClientProtocolError) as e:
        gm.decode_request(body)
    assert e.value.param == param and e.value.status_hint == 400


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
    ({"generationConfig": {"candidateCount": 2}}, "generationConfig.candidateCount"),
    ({"contents": [{"parts": [{"executableCode": {"code": "1"}}]}]}, "contents[0].parts[0]"),
])
def test_gemini_only_features_need_a_gemini_upstream(body: dict[str, Any], param: str) -> None:
    full = {"contents": [], **body}
    with pytest.raises(UnsupportedFeature) as e:
        gm.decode_request(copy.deepcopy(full), ctx(FMT, "anthropic_messages"))
    assert e.value.param == param
    gm.decode_request(copy.deepcopy(full), ctx(FMT, FMT))


# --------------------------------------------------------------------------------------
# Requests: IR -> wire (for a Gemini upstream)
# --------------------------------------------------------------------------------------


def test_schema_cut_down_to_the_parameters_subset() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "path": {"type": "string", "format": "uri", "description": "Where"},
            "when": {"type": "string", "format": "date-time"},
            "mode": {"const": "fast"},
            "count": {"type": ["integer", "null"], "minimum": 0, "exclusiveMinimum": 0},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
            "either": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "levels": {"type": "integer", "enum": [1, 2]},
            "empty": {"type": "object", "properties": {}},
        },
        "required": ["path", "ghost"],
        "$defs": {"Tag": {"type": "object", "properties": {"name": {"type": "string"}},
                          "additionalProperties": False}},
    }
    assert gm_schema.to_gemini_schema(schema) == {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Where"},
            "when": {"type": "string", "format": "date-time"},
            "mode": {"enum": ["fast"]},
            "count": {"type": "integer", "nullable": True, "minimum": 0},
            "tags": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}}}},
            "either": {"anyOf": [{"type": "string"}, {"type": "number"}]},
            "levels": {"type": "integer"},
            "empty": {"type": "object"},
        },
        "required": ["path"],
    }
    recursive = {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}},
                 "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}}
    assert gm_schema.to_gemini_schema(recursive)["type"] == "object"  # bounded, no recursion error
    assert gm_schema.to_gemini_schema("nope") == {}


# A tool schema whose $ref inlining explodes: a 2-child recursive type (270 bytes of
# request) and a diamond where each definition refers to the previous one twice. Both
# once ran for minutes and took gigabytes; now they stop at MAX_SCHEMA_NODES.
RECURSIVE_TREE = {"$defs": {"n": {"type": "object", "properties": {
    "l": {"$ref": "#/$defs/n"}, "r": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}
DIAMOND = {"$defs": {"d0": {"type": "string"}, **{
    f"d{i}": {"type": "object", "properties": {"a": {"$ref": f"#/$defs/d{i - 1}"},
                                               "b": {"$ref": f"#/$defs/d{i - 1}"}}}
    for i in range(1, 31)}}, "$ref": "#/$defs/d30"}


@pytest.mark.parametrize("schema", [RECURSIVE_TREE, DIAMOND], ids=["recursive", "diamond"])
def test_exploding_schema_is_refused_with_bounded_work(schema) -> None:
    budget = gm_schema.SchemaBudget("tool 'tree'")
    with pytest.raises(UnsupportedFeature) as exc:
        gm_schema.to_gemini_schema(schema, budget)
    assert budget.nodes == gm_schema.MAX_SCHEMA_NODES + 1  # stopped at the bound
    assert "tool 'tree'" in exc.value.message and exc.value.status_hint == 400
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "tree", "parameters": schema}}]}
    tr = Translation(ir.FORMAT_OPENAI_CHAT, ir.FORMAT_GEMINI, request_id="r", created=0)
    with pytest.raises(UnsupportedFeature, match="tool 'tree'") as exc:
        tr.request(body)
    assert exc.value.param == "tools"


def test_schema_copying_a_large_value_often_is_refused_by_bytes() -> None:
    defs = {"d0": {"type": "string", "description": "x" * 100_000}}
    for i in range(1, 6):  # 32 copies of 100 KB: 3.2 MB from a 100 KB schema
        defs[f"d{i}"] = {"type": "object", "properties": {
            "a": {"$ref": f"#/$defs/d{i - 1}"}, "b": {"$ref": f"#/$defs/d{i - 1}"}}}
    budget = gm_schema.SchemaBudget("tool 'wide'")
    with pytest.raises(UnsupportedFeature, match="bytes"):
        gm_schema.to_gemini_schema({"$defs": defs, "$ref": "#/$defs/d5"}, budget)
    assert budget.nodes < 100
    assert budget.output_bytes <= gm_schema.MAX_SCHEMA_OUTPUT_BYTES + 100_000


def test_encode_translated_request() -> None:
    req = ir.Request(
        model="gemini-2.5-flash",
        system=(ir.Text("Sys."),),
        messages=(
            ir.Message(ir.Role.DEVELOPER, (ir.Text("Dev note."),)),
            ir.Message(ir.Role.USER, (ir.Text("hi"), ir.Text(""),
                                      ir.Image(url="https://x.test/cat.png"))),
            ir.Message(ir.Role.USER, (ir.Text("more"),)),
            ir.Message(ir.Role.ASSISTANT, (
                ir.Reasoning(text="t", signature="s", provider="anthropic_messages"),
                ir.Reasoning(signature="gemSig", provider=FMT),
                ir.ToolCall(id="toolu_1", name="look up!", arguments='{"q":1}'),
                ir.ToolCall(id="toolu_2", name="patch", arguments="RAW", kind=ToolKind.CUSTOM),
                ir.ToolCall(id="toolu_3", name="look up!", arguments="not json"),
            )),
            ir.Message(ir.Role.USER, (
                ir.ToolResult(id="toolu_1", content=(ir.Text("ok"), ir.Image(
                    media_type="image/png", data=PNG))),
                ir.ToolResult(id="toolu_2", content=(ir.Text("bad"),), is_error=True),
                ir.ToolResult(id="toolu_3", content=()),
            )),
        ),
        tools=(ir.FunctionTool(name="look up!", description="d", parameters={
            "type": "object", "properties": {"q": {"type": "integer"}},
            "additionalProperties": False}),
               ir.CustomTool(name="patch", format={"type": "grammar", "syntax": "lark",
                                                   "definition": "start: x"}),
               ir.FunctionTool(name="noargs", parameters={"type": "object", "properties": {}})),
        tool_choice=ir.ToolChoice(mode="tool", name="look up!"),
        max_output_tokens=300,
        temperature=1.5,
        stop=("a", "b"),
        reasoning=ir.ReasoningConfig(effort="high"),
        response_format=ir.ResponseFormat(type="json_schema", schema={
            "type": "object", "properties": {"a": {"type": "string"}},
            "additionalProperties": False}),
        stream=True,
    )
    c = ctx("openai_chat", FMT, req)
    body = gm.encode_request(req, c)
    wire = next(n for n in c.tool_names)
    assert c.tool_names[wire] == "look up!" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]*", wire)
    assert body["systemInstruction"] == {"parts": [{"text": "Sys."}, {"text": "Dev note."}]}
    assert [c_["role"] for c_ in body["contents"]] == ["user", "model", "user"]  # merged
    user = body["contents"][0]["parts"]
    assert user == [{"text": "hi"}, {"fileData": {"fileUri": "https://x.test/cat.png",
                                                  "mimeType": "image/png"}}, {"text": "more"}]
    model = body["contents"][1]["parts"]
    assert model == [
        {"functionCall": {"name": wire, "args": {"q": 1}}, "thoughtSignature": "gemSig"},
        {"functionCall": {"name": "patch", "args": {"input": "RAW"}}},
        {"functionCall": {"name": wire, "args": {"raw_arguments": "not json"}}},
    ]
    results = body["contents"][2]["parts"]
    assert results == [
        {"functionResponse": {"name": wire, "response": {"result": "ok"}}},
        {"functionResponse": {"name": "patch", "response": {"error": "bad"}}},
        {"functionResponse": {"name": wire, "response": {"result": ""}}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},  # §5.8 case 9
    ]
    decls = body["tools"][0]["functionDeclarations"]
    assert decls[0] == {"name": wire, "description": "d", "parameters": {
        "type": "object", "properties": {"q": {"type": "integer"}}}}
    assert decls[1]["parameters"]["properties"] == {"input": {"type": "string"}}
    assert "lark" in decls[1]["description"]
    assert decls[2] == {"name": "noargs"}  # Gemini rejects an object without properties
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY",
                                                            "allowedFunctionNames": [wire]}}
    gc = body["generationConfig"]
    assert gc["maxOutputTokens"] == 300 and gc["temperature"] == 1.5
    assert gc["stopSequences"] == ["a", "b"]
    assert gc["thinkingConfig"] == {"thinkingBudget": 16384, "includeThoughts": True}
    assert gc["responseMimeType"] == "application/json"
    assert gc["responseSchema"] == {"type": "object", "properties": {"a": {"type": "string"}}}
    assert "model" not in body and "stream" not in body
    assert gm_request.request_path(req) == \
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


@pytest.mark.parametrize(("choice", "wire"), [
    (ir.ToolChoice(mode="auto"), {"mode": "AUTO"}),
    (ir.ToolChoice(mode="none"), {"mode": "NONE"}),
    (ir.ToolChoice(mode="any"), {"mode": "ANY"}),
    (ir.ToolChoice(mode="any", allowed=("f", "g")),
     {"mode": "ANY", "allowedFunctionNames": ["f", "g"]}),
])
def test_tool_choice_modes(choice: ir.ToolChoice, wire: dict[str, Any]) -> None:
    req = ir.Request(model="m", messages=(),
                     tools=(ir.FunctionTool(name="f"), ir.FunctionTool(name="g")),
                     tool_choice=choice)
    assert gm.encode_request(req, ctx("openai_chat", FMT))["toolConfig"] == {
        "functionCallingConfig": wire}


def test_encode_rejects_what_gemini_cannot_carry() -> None:
    msgs = (ir.Message(ir.Role.USER, (ir.Text("x"),)),)
    with pytest.raises(UnsupportedFeature, match="at most 5"):
        gm.encode_request(ir.Request(model="m", messages=msgs, stop=tuple("abcdef")),
                          ctx("openai_chat", FMT))
    # A web search becomes Google Search grounding; a built-in without an equivalent
    # is dropped (named in the context), or refused when the policy says so.
    c = ctx("openai_responses", FMT)
    body = gm.encode_request(ir.Request(model="m", messages=msgs, tools=(
        ir.NativeTool("openai_responses", "web_search", {"type": "web_search"}),
        ir.NativeTool("openai_responses", "tool_search", {"type": "tool_search"}))), c)
    assert body["tools"] == [{"google_search": {}}] and c.dropped_tools == ["tool_search"]
    c = ctx("openai_responses", FMT)
    c.builtin_tools = "refuse"
    with pytest.raises(UnsupportedFeature):
        gm.encode_request(ir.Request(model="m", messages=msgs, tools=(
            ir.NativeTool("openai_responses", "tool_search", {"type": "tool_search"}),)), c)
    with pytest.raises(UnsupportedFeature, match="name"):
        gm.encode_request(ir.Request(model="m", messages=(ir.Message(ir.Role.USER, (
            ir.ToolResult(id="unknown", content=(ir.Text("x"),)),)),)), ctx("openai_chat", FMT))


# --------------------------------------------------------------------------------------
# Complete replies
# --------------------------------------------------------------------------------------

RESPONSE: dict[str, Any] = {
    "candidates": [{
        "content": {"role": "model", "parts": [
            {"text": "Pondering.", "thought": True},
            {"text": "Calling a tool."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
             "thoughtSignature": "CiQBsig=="},
        ]},
        "finishReason": "STOP", "index": 0,
        "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}],
    }],
    "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 150,
                      "cachedContentTokenCount": 40, "thoughtsTokenCount": 30,
                      "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 100}]},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "resp-abc",
}


def test_decode_response_usage_and_ids() -> None:
    resp = gm.decode_response(copy.deepcopy(RESPONSE))
    # candidates excludes thoughts; output = candidates + thoughts; cached = cachedContent.
    assert resp.usage == Usage(input_tokens=100, output_tokens=50, cached_tokens=40,
                               reasoning_tokens=30)
    assert resp.stop_reason is StopReason.TOOL_USE  # STOP with functionCall parts (§5.4)
    assert (resp.id, resp.model) == ("resp-abc", "gemini-2.5-flash")
    thought, text, sig, call = resp.content
    assert thought.text == "Pondering." and thought.provider == FMT
    assert text.text == "Calling a tool." and sig.signature == "CiQBsig=="
    assert call.id == gm_tables.synth_tool_id("resp-abc", 0, "get_weather")
    assert SYNTH_ID.fullmatch(call.id) and call.input == {"city": "Paris"}


def test_response_round_trip() -> None:
    assert gm.encode_response(gm.decode_response(copy.deepcopy(RESPONSE))) == RESPONSE


@pytest.mark.parametrize(("finish", "stop"), [
    ("STOP", StopReason.END_TURN), ("MAX_TOKENS", StopReason.MAX_TOKENS),
    ("SAFETY", StopReason.CONTENT_FILTER), ("RECITATION", StopReason.CONTENT_FILTER),
    ("BLOCKLIST", StopReason.CONTENT_FILTER), ("PROHIBITED_CONTENT", StopReason.CONTENT_FILTER),
    ("SPII", StopReason.CONTENT_FILTER), ("IMAGE_SAFETY", StopReason.CONTENT_FILTER),
    ("MALFORMED_FUNCTION_CALL", StopReason.ERROR), ("OTHER", StopReason.END_TURN),
    ("FINISH_REASON_UNSPECIFIED", StopReason.END_TURN),
])
def test_finish_reasons(finish: str, stop: StopReason) -> None:
    body = {"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]},
                            "finishReason": finish, "index": 0}],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1,
                              "totalTokenCount": 2},
            "modelVersion": "g", "responseId": "r"}
    resp = gm.decode_response(copy.deepcopy(body))
    assert resp.stop_reason is stop
    assert gm.encode_response(resp) == body


def test_blocked_prompt_is_content_filter() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
            "modelVersion": "g", "responseId": "r"}
    resp = gm.decode_response(copy.deepcopy(body))
    assert resp.stop_reason is StopReason.CONTENT_FILTER and resp.content == ()
    assert gm.encode_response(resp) == body


def test_encode_translated_response() -> None:
    resp = ir.Response(id="msg_1", model="claude", stop_reason=StopReason.MAX_TOKENS,
                       usage=Usage(input_tokens=10, output_tokens=7, cached_tokens=3,
                                   reasoning_tokens=2),
                       content=(ir.Reasoning(text="hm", signature="sig",
                                             provider="anthropic_messages"),
                                ir.Text("Hi"),
                                ir.ToolCall(id="toolu_1", name="f", arguments='{"a":1}')))
    out = gm.encode_response(resp, ctx("gemini", "anthropic_messages"))
    cand = out["candidates"][0]
    assert cand["finishReason"] == "MAX_TOKENS" and cand["index"] == 0
    thought, text, call = cand["content"]["parts"]
    assert thought["thought"] is True and thought["text"] == "hm"
    back = gm.decode_request({"contents": [{"role": "model", "parts": [thought]}]})
    r = back.messages[0].content[0]
    assert (r.text, r.signature, r.provider) == ("hm", "sig", "anthropic_messages")
    assert text == {"text": "Hi"}
    assert call == {"functionCall": {"name": "f", "args": {"a": 1}, "id": "toolu_1"}}
    assert out["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 5,
                                    "totalTokenCount": 17, "thoughtsTokenCount": 2,
                                    "cachedContentTokenCount": 3}
    assert out["responseId"] == f"resp_{REQUEST_ID}"


def test_custom_tool_calls_come_back_raw() -> None:
    creq = ir.Request(model="m", messages=(), tools=(ir.CustomTool(name="apply_patch"),))
    body = {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "apply_patch", "args": {"input": "*** Begin Patch"}}}]},
        "finishReason": "STOP"}]}
    call = gm.decode_response(body, ctx("openai_responses", FMT, creq)).content[0]
    assert call.kind is ToolKind.CUSTOM and call.arguments == "*** Begin Patch"


@pytest.mark.parametrize("body", [None, [], {"candidates": 3}, {"candidates": [3]},
                                  {"candidates": [{"content": {"parts": [{"functionCall": 3}]}}]},
                                  {"candidates": [{"content": {"parts": [{"text": 3}]}}]}])
def test_bad_upstream_response(body: Any) -> None:
    with pytest.raises(UpstreamProtocolError):
        gm.decode_response(body)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "name", "kind"), [
    (400, "INVALID_ARGUMENT", ErrorKind.INVALID_REQUEST),
    (400, "FAILED_PRECONDITION", ErrorKind.INVALID_REQUEST),
    (401, "UNAUTHENTICATED", ErrorKind.AUTHENTICATION),
    (403, "PERMISSION_DENIED", ErrorKind.PERMISSION),
    (404, "NOT_FOUND", ErrorKind.NOT_FOUND),
    (429, "RESOURCE_EXHAUSTED", ErrorKind.RATE_LIMIT),
    (500, "INTERNAL", ErrorKind.SERVER),
    (503, "UNAVAILABLE", ErrorKind.OVERLOADED),
    (504, "DEADLINE_EXCEEDED", ErrorKind.TIMEOUT),
])
def test_error_status_names_both_ways(status: int, name: str, kind: ErrorKind) -> None:
    raw = jsonio.dumps({"error": {"code": status, "message": "m", "status": name}})
    err = gm.decode_error(status, raw)
    assert (err.kind, err.status, err.type_, err.message) == (kind, status, name, "m")
    assert gm.encode_error(err, FMT) == (status, raw)  # a Gemini upstream's own body
    code, body = gm.encode_error(ir.ApiError(kind, "m", 599), "openai_chat")
    obj = jsonio.loads(body)["error"]
    assert code == obj["code"] and gm_tables._STATUS_HTTP[obj["status"]] in (code, 400)


def test_error_edge_cases() -> None:
    key = jsonio.dumps({"error": {"code": 400, "message": "API key not valid.", "status":
                                  "INVALID_ARGUMENT", "details": [{"reason": "API_KEY_INVALID"}]}})
    assert gm.decode_error(400, key).kind is ErrorKind.AUTHENTICATION
    arr = b'[{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}]'
    assert gm.decode_error(429, arr).kind is ErrorKind.RATE_LIMIT
    html = gm.decode_error(502, b"<html>bad gateway</html>")
    assert html.kind is ErrorKind.UPSTREAM_PROTOCOL and "bad gateway" in html.message
    busy = ir.ApiError(ErrorKind.OVERLOADED, "busy", 529)
    assert gm.encode_error(busy, "anthropic_messages") == (
        503, b'{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}')


# --------------------------------------------------------------------------------------
# Streams: wire -> IR
# --------------------------------------------------------------------------------------

TRANSCRIPT_EVENTS = [
    MessageStart("v8-I-VtSV4yzZu_xfjNC9l", "gemini-2.5-flash"),
    BlockStart(0, BlockKind.TEXT),
    TextDelta(0, "Hello (English)\n¡Hola! (Spanish)\n"),
    UsageUpdate(Usage(input_tokens=9, output_tokens=225, reasoning_tokens=214)),
    TextDelta(0, "Bonjour ! (French)\nHallo (German)\n"),
    UsageUpdate(Usage(input_tokens=9, output_tokens=236, reasoning_tokens=214)),
    TextDelta(0, "Ciao (Italian)"),
    UsageUpdate(Usage(input_tokens=9, output_tokens=241, reasoning_tokens=214)),
    BlockStop(0),
    MessageEnd(StopReason.END_TURN),
]


def test_stream_decoder_transcript() -> None:
    d = gm.StreamDecoder(ctx())
    events = d.feed(transcript(TRANSCRIPT)) + d.close()
    assert events == TRANSCRIPT_EVENTS
    # Cumulative usage: the last report, never a sum (§4).
    assert d.usage == Usage(input_tokens=9, output_tokens=241, reasoning_tokens=214)
    assert (d.model, d.id, d.stop_reason, d.done, d.failed) == (
        "gemini-2.5-flash", "v8-I-VtSV4yzZu_xfjNC9l", StopReason.END_TURN, True, False)


def test_stream_decoder_whole_bytewise_random_and_lf() -> None:
    raw = transcript(TRANSCRIPT)
    assert decode_stream(byte_at_a_time(raw)) == TRANSCRIPT_EVENTS
    for seed in range(5):
        assert decode_stream(random_chunks(raw, seed, 11)) == TRANSCRIPT_EVENTS
    assert decode_stream([raw.replace(b"\r\n", b"\n")]) == TRANSCRIPT_EVENTS
    # A chunk boundary between the CR and the LF of a CRLF (§6.4).
    cr = raw.index(b"\r\n\r\n")
    assert decode_stream([raw[: cr + 1], raw[cr + 1:]]) == TRANSCRIPT_EVENTS


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=1200), max_size=40))
def test_stream_decoder_hypothesis_splits(cuts: list[int]) -> None:
    raw = transcript(TRANSCRIPT)
    events = decode_stream(split_at(raw, cuts))
    assert events == TRANSCRIPT_EVENTS
    enc = gm.StreamEncoder(ctx(FMT, "openai_chat"))
    whole = gm.StreamEncoder(ctx(FMT, "openai_chat"))
    assert enc.encode(events) + enc.close() == whole.encode(TRANSCRIPT_EVENTS) + whole.close()


def _chunk(parts: list[dict[str, Any]], finish: str | None = None,
           usage: dict[str, Any] | None = None) -> bytes:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    obj: dict[str, Any] = {"candidates": [cand], "modelVersion": "g", "responseId": "r1"}
    if usage:
        obj["usageMetadata"] = usage
    return b"data: " + jsonio.dumps(obj) + b"\r\n\r\n"


def test_stream_decoder_thoughts_and_whole_function_calls() -> None:
    raw = (_chunk([{"text": "Let me ", "thought": True}])
           + _chunk([{"text": "think.", "thought": True, "thoughtSignature": "T1"}])
           + _chunk([{"text": "Sure."}])
           + _chunk([{"functionCall": {"name": "f", "args": {"a": [1, 2]}},
                      "thoughtSignature": "S1"},
                     {"functionCall": {"id": "given", "name": "g", "args": {}}}])
           + _chunk([], "STOP", {"promptTokenCount": 5, "candidatesTokenCount": 3,
                                 "totalTokenCount": 8}))
    d = gm.StreamDecoder(ctx())
    events = d.feed(raw) + d.close()
    fid = gm_tables.synth_tool_id("r1", 0, "f")
    assert events == [
        MessageStart("r1", "g"),
        BlockStart(0, BlockKind.REASONING, provider=FMT),
        ReasoningDelta(0, "Let me "), ReasoningDelta(0, "think."), SignatureDelta(0, "T1", FMT),
        BlockStop(0),
        BlockStart(1, BlockKind.TEXT), TextDelta(1, "Sure."), BlockStop(1),
        BlockStart(2, BlockKind.REASONING, provider=FMT), SignatureDelta(2, "S1", FMT),
        BlockStop(2),
        BlockStart(3, BlockKind.TOOL_CALL, tool_id=fid, tool_name="f"),
        ToolArgsDelta(3, '{"a":[1,2]}'), BlockStop(3),
        BlockStart(4, BlockKind.TOOL_CALL, tool_id="given", tool_name="g"),
        ToolArgsDelta(4, "{}"), BlockStop(4),
        UsageUpdate(Usage(input_tokens=5, output_tokens=3)),
        MessageEnd(StopReason.TOOL_USE),
    ]
    assert d.tool_calls == 2 and d.stop_reason is StopReason.TOOL_USE


def test_stream_decoder_ends_and_errors() -> None:
    # EOF without finishReason: a cut stream.
    events = decode_stream([_chunk([{"text": "Hel"}])])
    assert type(events[-1]) is StreamError and events[-1].kind is ErrorKind.UPSTREAM_PROTOCOL
    # A blocked prompt: 200 with promptFeedback.blockReason and no candidates.
    blocked = (b'data: {"promptFeedback":{"blockReason":"SAFETY"},'
               b'"usageMetadata":{"promptTokenCount":4}}\n\n')
    assert decode_stream([blocked])[-1] == MessageEnd(StopReason.CONTENT_FILTER)
    # A mid-stream error object.
    err = b'data: {"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}\n\n'
    d = gm.StreamDecoder(ctx())
    events = d.feed(_chunk([{"text": "a"}]) + err) + d.close()
    assert events[-1] == StreamError(ErrorKind.OVERLOADED, "overloaded", 503, "UNAVAILABLE")
    assert d.failed and d.done
    # MAX_TOKENS.
    assert decode_stream([_chunk([{"text": "a"}], "MAX_TOKENS")])[-1] == MessageEnd(
        StopReason.MAX_TOKENS)


def test_stream_decoder_observe_mode_facts() -> None:
    raw = transcript(TRANSCRIPT)
    full, obs = gm.StreamDecoder(ctx()), gm.StreamDecoder(ctx(), observe=True)
    full.feed(raw)
    full.close()
    for c in byte_at_a_time(raw):
        obs.feed(c)
    obs.close()
    assert (obs.usage, obs.model, obs.id, obs.stop_reason, obs.done) == (
        full.usage, full.model, full.id, full.stop_reason, full.done)


@pytest.mark.parametrize("raw", [
    b"data: {oops\n\n",
    b"data: 7\n\n",
    b'data: {"candidates":5}\n\n',
    b'data: {"candidates":[{"content":{"parts":[{"functionCall":[]}]}}]}\n\n',
    b'data: {"candidates":[{"content":{"parts":[{"text":1}]}}]}\n\n',
    b'data: {"candidates":[{"content":{"parts":[{"functionCall":{"args":{}}}]}}]}\n\n',
])
def test_stream_decoder_bad_upstream(raw: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        decode_stream([raw])


def test_stream_decoder_bad_frame_after_good_ones_is_split_invariant() -> None:
    """Found by fuzz/gemini.py: a bad frame in the same chunk as good ones used to discard
    their events. They are returned first; the error comes from the next call."""
    good = _chunk([{"text": "a"}])
    raw = good + b"data:\x01{broken\n\n"
    for chunks in ([raw], [good, raw[len(good):]], byte_at_a_time(raw)):
        d = gm.StreamDecoder(ctx())
        events: list[ir.StreamEvent] = []
        with pytest.raises(UpstreamProtocolError):
            for c in chunks:
                events += d.feed(c)
            d.close()
        assert events == [MessageStart("r1", "g"), BlockStart(0, BlockKind.TEXT), TextDelta(0, "a")]


# --------------------------------------------------------------------------------------
# Streams: IR -> wire
# --------------------------------------------------------------------------------------


def test_stream_encoder_frames() -> None:
    enc = gm.StreamEncoder(ctx(FMT, "anthropic_messages"))
    out = enc.encode(TRANSCRIPT_EVENTS) + enc.close()
    fs = frames(out)
    assert b"event:" not in out and b"[DONE]" not in out
    texts = [f["candidates"][0]["content"]["parts"] for f in fs]
    assert texts[:3] == [[{"text": "Hello (English)\n¡Hola! (Spanish)\n"}],
                         [{"text": "Bonjour ! (French)\nHallo (German)\n"}],
                         [{"text": "Ciao (Italian)"}]]  # only the new parts
    assert all("finishReason" not in f["candidates"][0] and "usageMetadata" not in f
               for f in fs[:-1])
    last = fs[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == {"promptTokenCount": 9, "candidatesTokenCount": 27,
                                     "totalTokenCount": 250, "thoughtsTokenCount": 214}
    assert {f["responseId"] for f in fs} == {f"resp_{REQUEST_ID}"}
    # Decoding the output gives the same content back.
    again = decode_stream([out])
    assert "".join(e.text for e in again if type(e) is TextDelta) == "".join(
        e.text for e in TRANSCRIPT_EVENTS if type(e) is TextDelta)
    assert again[-1] == MessageEnd(StopReason.END_TURN)


def test_stream_encoder_tools_reasoning_and_errors() -> None:
    creq = ir.Request(model="m", messages=(), tools=(ir.CustomTool(name="patch"),))
    events = [
        MessageStart("x", "claude"),
        BlockStart(0, BlockKind.REASONING, provider="anthropic_messages"),
        ReasoningDelta(0, "Hmm."), SignatureDelta(0, "ErSig", "anthropic_messages"), BlockStop(0),
        BlockStart(1, BlockKind.TOOL_CALL, tool_id="toolu_1", tool_name="f"),
        ToolArgsDelta(1, '{"a"'), ToolArgsDelta(1, ":1}"), BlockStop(1),
        BlockStart(2, BlockKind.TOOL_CALL, tool_id="toolu_2", tool_name="patch",
                   tool_kind=ToolKind.CUSTOM),
        ToolArgsDelta(2, "RAW"), BlockStop(2),
        MessageEnd(StopReason.TOOL_USE),
    ]
    enc = gm.StreamEncoder(ctx(FMT, "anthropic_messages", creq))
    out = enc.encode(events) + enc.close()
    final = gemini_final(out)
    assert final["thoughts"] == "Hmm."
    assert final["calls"] == [{"id": "toolu_1", "name": "f", "args": {"a": 1}},
                              {"id": "toolu_2", "name": "patch", "args": {"input": "RAW"}}]
    assert final["finish"] == "STOP"
    # The Anthropic signature rides in a base64 thoughtSignature and comes back intact.
    sig_part = next(p for f in frames(out) for p in f["candidates"][0]["content"]["parts"]
                    if "thoughtSignature" in p)
    back = gm.decode_request({"contents": [{"role": "model", "parts": [sig_part]}]})
    r = back.messages[0].content[0]
    assert (r.text, r.signature, r.provider) == ("Hmm.", "ErSig", "anthropic_messages")

    enc = gm.StreamEncoder(ctx(FMT, "anthropic_messages"))
    out = enc.encode([MessageStart("", ""), BlockStart(0, BlockKind.TEXT), TextDelta(0, "a"),
                      StreamError(ErrorKind.OVERLOADED, "Overloaded", 529)])
    assert frames(out)[-1] == {
        "error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}}
    with pytest.raises(RuntimeError, match="UNAVAILABLE"):
        gemini_final(out)
    assert enc.done and enc.close() == b""
    enc = gm.StreamEncoder(None)
    cut = enc.encode([MessageStart("", ""), BlockStart(0, BlockKind.TEXT), TextDelta(0, "a")])
    cut += enc.close()
    assert frames(cut)[-1]["error"]["status"] == "UNAVAILABLE"


@pytest.mark.parametrize("content", ["STOP", [], 3])
def test_reply_candidate_content_that_is_not_an_object_is_refused(content: Any) -> None:
    """Found by fuzz/replies.py: a string ``content`` was kept as the candidate's own
    content and made ``encode_response`` raise TypeError on the decoded reply."""
    body = {"candidates": [{"content": content, "finishReason": "STOP"}], "modelVersion": "m"}
    with pytest.raises(UpstreamProtocolError, match=r"candidates\[0\]\.content"):
        gm.decode_response(body)
