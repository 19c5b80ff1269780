"""Anthropic Messages codec: requests, replies, streams and errors (docs/protocols.md §3)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from protocols import anthropic_messages as am
from protocols import ir, jsonio
from protocols.anthropic_messages import request_decode as am_ids
from protocols.anthropic_messages import tables as am_tables
from protocols.errors import (
    ClientProtocolError,
    UnsupportedFeature,
    UpstreamProtocolError,
)
from tests.protocols.conftest import (
    CREATED,
    REQUEST_ID,
    anthropic_final,
    anthropic_nonstream,
    byte_at_a_time,
    capture,
    random_chunks,
    transcript,
)

ANTHROPIC_TRANSCRIPTS = [
    "anthropic_stream_text.sse",
    "anthropic_stream_thinking_tool_use.sse",
    "anthropic_stream_error_midstream.sse",
]
CLAUDE_CODE_CAPTURES = [
    "claude-code-2.1.332-default-turn1.json",
    "claude-code-2.1.332-bare-turn2-tool_result.json",
]


def ctx(client: str = am.FORMAT, upstream: str = am.FORMAT) -> ir.Context:
    return ir.Context(request_id=REQUEST_ID, created=CREATED, client_format=client,
                      upstream_format=upstream)


def roundtrip(body: dict[str, Any]) -> dict[str, Any]:
    c = ctx()
    return am.encode_request(am.decode_request(copy.deepcopy(body), c), c)


def decode_stream(chunks: list[bytes], **kw: Any) -> list[ir.StreamEvent]:
    d = am.StreamDecoder(ctx(), **kw)
    events: list[ir.StreamEvent] = []
    for c in chunks:
        events += d.feed(c)
    return events + d.close()


def sdk_bodies() -> list[dict[str, Any]]:
    return [e["body"] for e in capture("python-sdks-anthropic-2.14.0-openai-3.57.0.json")
            if e["path"] == "/v1/messages"]


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLAUDE_CODE_CAPTURES)
def test_claude_code_capture_decodes(name: str) -> None:
    body = capture(name)["body"]
    req = am.decode_request(copy.deepcopy(body), ctx(upstream="openai_chat"))
    assert req.model == "claude-opus-5-5"
    assert req.max_output_tokens == 128000
    assert req.reasoning == ir.ReasoningConfig(mode="adaptive", effort="medium", display="omitted")
    assert any(m.role is ir.Role.SYSTEM for m in req.messages)  # role:"system" inside messages
    assert len(req.system) == 3 and req.system[1].cache_control == {"type": "ephemeral"}
    assert "context_management" in ir.extras_for(req, am.FORMAT)
    inline = next(m for m in req.messages if m.role is ir.Role.SYSTEM)
    assert ir.extras_for(inline, am.FORMAT)["output_config"] == {"effort": "medium"}
    if "default" in name:
        deferred = [t for t in req.tools if ir.extras_for(t, am.FORMAT).get("defer_loading")]
        assert [t.name for t in deferred] == ["DeferredToolPlaceholder"]


@pytest.mark.parametrize("name", CLAUDE_CODE_CAPTURES)
def test_claude_code_capture_round_trip(name: str) -> None:
    body = capture(name)["body"]
    assert roundtrip(body) == body


@pytest.mark.parametrize("index", [0, 1])
def test_python_sdk_capture_round_trip(index: int) -> None:
    body = sdk_bodies()[index]
    assert roundtrip(body) == body


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
         "system": "Be brief.", "temperature": 0.2, "top_p": 0.9, "top_k": 5,
         "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "service_tier": "auto"},
        {"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look",
                 "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                {"type": "image",
                 "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                {"type": "document",
                 "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                 "title": "doc.pdf"},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, 2]}},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                 "input": {"query": "q"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                 "content": [{"type": "text", "text": "bad"},
                             {"type": "image", "source": {"type": "base64",
                                                          "media_type": "image/gif",
                                                          "data": "R0"}}]},
                {"type": "text", "text": "go on"},
            ]},
        ],
         "tools": [{"name": "f", "description": "F", "input_schema": {"type": "object"},
                    "cache_control": {"type": "ephemeral"}},
                   {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
         "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
         "thinking": {"type": "enabled", "budget_tokens": 2048}},
        {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
         "system": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
         "output_config": {"effort": "high",
                           "format": {"type": "json_schema", "schema": {"type": "object"}}},
         "tool_choice": {"type": "tool", "name": "f"},
         "tools": [{"name": "f", "input_schema": {"type": "object"}, "strict": True}]},
        {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t",
             "content": [{"type": "text", "text": "x"}]}]}],
         "cache_control": {"type": "ephemeral"}, "context_management": {"edits": []}},
    ],
)
def test_request_round_trip(body: dict[str, Any]) -> None:
    assert roundtrip(body) == body


def _minimal(**fields: Any) -> dict[str, Any]:
    """A one-token request without messages, with ``fields`` set."""
    return {"model": "m", "max_tokens": 1, "messages": [], **fields}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 1, "messages": []}, "model"),
        ({"model": "m", "messages": []}, "max_tokens"),
        ({"model": "m", "max_tokens": -1, "messages": []}, "max_tokens"),
        ({"model": "m", "max_tokens": 1}, "messages"),
        (_minimal(messages=[{"role": "bot", "content": "x"}]), "messages[0].role"),
        (_minimal(messages=[{"role": "user"}]), "messages[0].content"),
        (_minimal(messages=[{"role": "user", "content": [{"type": "text"}]}]),
         "messages[0].content[0].text"),
        (_minimal(messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "data": "x"}}]}]),
         "messages[0].content[0].source.media_type"),
        (_minimal(messages=[{"role": "assistant", "content": [
            {"type": "tool_use", "name": "f", "input": {}}]}]), "messages[0].content[0].id"),
        (_minimal(temperature=1.5), "temperature"),
        (_minimal(thinking={"type": "enabled"}), "thinking.budget_tokens"),
        (_minimal(thinking={"type": "enabled", "budget_tokens": 10}), "thinking.budget_tokens"),
        (_minimal(tool_choice={"type": "maybe"}), "tool_choice.type"),
        (_minimal(tools=[{"name": "f"}]), "tools[0].input_schema"),
        (_minimal(system=[{"type": "image"}]), "system[0].type"),
        (_minimal(stop_sequences="x"), "stop_sequences"),
    ],
)
def test_invalid_requests_name_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ClientProtocolError) as info:
        am.decode_request(body)
    assert info.value.param == param


def test_mcp_servers_unsupported_for_foreign_upstream() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [],
            "mcp_servers": [{"type": "url", "url": "u"}]}
    with pytest.raises(UnsupportedFeature):
        am.decode_request(body, ctx(upstream="openai_chat"))
    assert roundtrip(body) == body


def chat_ctx() -> ir.Context:
    return ctx(client="openai_chat")


def _req(*messages: ir.Message, **kw: Any) -> ir.Request:
    return ir.Request(model="m", messages=messages, **kw)


def U(*blocks: ir.Block, as_string: bool = False) -> ir.Message:
    return ir.Message(ir.Role.USER, blocks, as_string=as_string)


def A(*blocks: ir.Block) -> ir.Message:
    return ir.Message(ir.Role.ASSISTANT, blocks)


def test_system_hoisting_and_defaults() -> None:
    req = _req(
        ir.Message(ir.Role.SYSTEM, (ir.Text("sys one"),)),
        U(ir.Text("hi"), as_string=True),
        ir.Message(ir.Role.DEVELOPER, (ir.Text("dev two"),)),
        A(ir.Text("hello  "),),
        temperature=1.7,
    )
    body = am.encode_request(req, chat_ctx())
    assert body["system"] == "sys one\ndev two"  # joined with \n, as Anthropic's compat layer
    assert body["max_tokens"] == am_tables.DEFAULT_MAX_TOKENS
    assert body["temperature"] == am_tables.MAX_TEMPERATURE
    # The final assistant turn is a prefill: no trailing whitespace (§3.2).
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]


def test_system_keeps_cache_control_as_blocks() -> None:
    req = _req(U(ir.Text("hi")),
               system=(ir.Text("a"), ir.Text("b", cache_control={"type": "ephemeral"})))
    body = am.encode_request(req, chat_ctx())
    assert body["system"] == [{"type": "text", "text": "a"},
                              {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]


def test_tool_results_grouped_first_and_empty_text_dropped() -> None:
    long_id = "call.with:bad/chars"
    req = _req(
        U(ir.Text("weather?"), as_string=True),
        A(ir.Text(""), ir.ToolCall(long_id, "get_weather", '{"city":"Paris"}'),
          ir.ToolCall("call_2", "get_time", "not json")),
        U(ir.ToolResult(long_id, (ir.Text("sunny"),)), as_string=True),
        U(ir.ToolResult("call_2", (ir.Text("noon"),)), as_string=True),
        U(ir.Text("  "), ir.Text("thanks"), as_string=False),
    )
    body = am.encode_request(req, chat_ctx())
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assistant = msgs[1]["content"]
    assert [b["type"] for b in assistant] == ["tool_use", "tool_use"]  # empty text dropped
    tid = assistant[0]["id"]
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", tid) and tid == am_ids.wire_tool_id(long_id)
    assert assistant[0]["input"] == {"city": "Paris"}
    assert assistant[1]["input"] == {ir.RAW_ARGUMENTS_KEY: "not json"}
    user = msgs[2]["content"]
    assert [b["type"] for b in user] == ["tool_result", "tool_result", "text"]
    assert user[0]["tool_use_id"] == tid  # one map for both sides
    assert user[2] == {"type": "text", "text": "thanks"}


def test_tool_result_out_of_order_is_moved_first() -> None:
    req = _req(A(ir.ToolCall("t1", "f", "{}")), U(ir.Text("note")),
               U(ir.ToolResult("t1", (ir.Text("r"),))))
    body = am.encode_request(req, chat_ctx())
    assert [b["type"] for b in body["messages"][1]["content"]] == ["tool_result", "text"]


def test_long_tool_names_map_back() -> None:
    name = "server." + "x" * 200
    c = chat_ctx()
    req = _req(U(ir.Text("hi")), tools=(ir.FunctionTool(name, parameters={"properties": {}}),),
               tool_choice=ir.ToolChoice(mode="tool", name=name))
    body = am.encode_request(req, c)
    wire = body["tools"][0]["name"]
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", wire)
    assert body["tool_choice"] == {"type": "tool", "name": wire}
    assert body["tools"][0]["input_schema"] == {"type": "object", "properties": {}}
    assert c.tool_names[wire] == name
    resp = am.decode_response({"id": "msg", "model": "m", "stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": wire, "input": {}}]}, c)
    assert resp.content[0].name == name
    d = am.StreamDecoder(c)
    events = d.feed(
        b'event: message_start\ndata: {"type":"message_start",'
        b'"message":{"id":"m","model":"x","usage":{}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"tool_use","id":"toolu_1","name":"' + wire.encode()
        + b'","input":{}}}\n\n')
    assert events[-1].tool_name == name


@pytest.mark.parametrize(
    ("max_out", "budget_in", "expected_max", "expected_budget"),
    [
        # No client cap: raise max_tokens.
        (None, 16000, 16000 + am_tables.DEFAULT_MAX_TOKENS, 16000),
        (10000, 16000, 10000, 5000),  # client cap: shrink the budget to half
        (1500, 4000, 1500, None),  # half the cap is below the 1024 minimum: thinking off
        (20000, 4000, 20000, 4000),
    ],
)
def test_thinking_budget_below_max_tokens(max_out: int | None, budget_in: int, expected_max: int,
                                          expected_budget: int | None) -> None:
    req = _req(U(ir.Text("hi")), max_output_tokens=max_out, temperature=0.5, top_k=3, top_p=0.5,
               reasoning=ir.ReasoningConfig(mode="enabled", budget_tokens=budget_in))
    body = am.encode_request(req, chat_ctx())
    assert body["max_tokens"] == expected_max
    if expected_budget is None:
        assert "thinking" not in body and body["temperature"] == 0.5
    else:
        assert body["thinking"] == {"type": "enabled", "budget_tokens": expected_budget}
        assert "temperature" not in body and "top_k" not in body and "top_p" not in body


def test_reasoning_effort_becomes_thinking_budget() -> None:
    medium = _req(U(ir.Text("hi")), reasoning=ir.ReasoningConfig(effort="medium"))
    body = am.encode_request(medium, chat_ctx())
    assert body["thinking"] == {"type": "enabled",
                                "budget_tokens": am_tables.EFFORT_BUDGET_TOKENS["medium"]}
    assert "output_config" not in body
    minimal = _req(U(ir.Text("hi")), reasoning=ir.ReasoningConfig(effort="minimal"))
    body = am.encode_request(minimal, chat_ctx())
    assert "thinking" not in body


def test_forced_tool_choice_turns_thinking_off() -> None:
    req = _req(U(ir.Text("hi")), tools=(ir.FunctionTool("f"),),
               tool_choice=ir.ToolChoice(mode="any"), reasoning=ir.ReasoningConfig(effort="high"))
    body = am.encode_request(req, chat_ctx())
    assert body["tool_choice"] == {"type": "any"}
    assert "thinking" not in body


def test_tool_loop_without_thinking_turns_thinking_off() -> None:
    result = U(ir.ToolResult("t", (ir.Text("r"),)))
    req = _req(U(ir.Text("hi")), A(ir.ToolCall("t", "f", "{}")), result,
               tools=(ir.FunctionTool("f"),), reasoning=ir.ReasoningConfig(effort="high"))
    assert "thinking" not in am.encode_request(req, chat_ctx())
    signed = ir.Reasoning(text="t", signature="s", provider=am.FORMAT)
    req2 = _req(U(ir.Text("hi")), A(signed, ir.ToolCall("t", "f", "{}")), result,
                tools=(ir.FunctionTool("f"),), reasoning=ir.ReasoningConfig(effort="high"))
    body = am.encode_request(req2, chat_ctx())
    assert body["thinking"]["type"] == "enabled"
    assert body["messages"][1]["content"][0] == {"type": "thinking", "thinking": "t",
                                                 "signature": "s"}


def test_foreign_reasoning_is_dropped() -> None:
    foreign = ir.Reasoning(text="r", encrypted="gAAA", provider="openai_responses")
    req = _req(U(ir.Text("hi")), A(foreign, ir.Reasoning(text="plain"), ir.Text("answer")))
    body = am.encode_request(req, chat_ctx())
    assert body["messages"][1]["content"] == [{"type": "text", "text": "answer"}]


def test_parallel_and_response_format() -> None:
    req = _req(U(ir.Text("hi")), tools=(ir.FunctionTool("f"),),
               tool_choice=ir.ToolChoice(disable_parallel=True),
               response_format=ir.ResponseFormat("json_object"), stop=(" ", "END"), user="u-1")
    body = am.encode_request(req, chat_ctx())
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["system"] == am_tables.JSON_OBJECT_INSTRUCTION
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}
    req = _req(U(ir.Text("hi")),
               response_format=ir.ResponseFormat("json_schema", schema={"type": "object"}))
    assert am.encode_request(req, chat_ctx())["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}}


def test_unsupported_content() -> None:
    with pytest.raises(UnsupportedFeature):
        am.encode_request(_req(U(ir.Image(media_type="image/tiff", data="AA"))), chat_ctx())
    with pytest.raises(UnsupportedFeature):
        am.encode_request(_req(U(ir.NativeBlock("openai_chat", "input_audio", {}))), chat_ctx())
    # Another provider's built-in without an equivalent: dropped and named, or refused.
    native = ir.NativeTool("openai_chat", "code_interpreter", {})
    ctx = chat_ctx()
    body = am.encode_request(_req(U(ir.Text("x")), tools=(native,)), ctx)
    assert "tools" not in body and ctx.dropped_tools == ["code_interpreter"]
    ctx = chat_ctx()
    ctx.builtin_tools = "refuse"
    with pytest.raises(UnsupportedFeature):
        am.encode_request(_req(U(ir.Text("x")), tools=(native,)), ctx)


def test_custom_tool_as_function() -> None:
    call = ir.ToolCall("c1", "apply_patch", "*** Begin Patch", kind=ir.ToolKind.CUSTOM)
    grammar = {"type": "grammar", "syntax": "lark", "definition": "start: x"}
    req = _req(U(ir.Text("hi")), A(call),
               tools=(ir.CustomTool("apply_patch", "Patch files", grammar),))
    body = am.encode_request(req, chat_ctx())
    assert body["tools"][0]["input_schema"]["required"] == [ir.CUSTOM_INPUT_KEY]
    assert "start: x" in body["tools"][0]["description"]
    assert body["messages"][1]["content"][0]["input"] == {ir.CUSTOM_INPUT_KEY: "*** Begin Patch"}


# --------------------------------------------------------------------------------------
# Complete replies
# --------------------------------------------------------------------------------------

MESSAGE = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "let me see", "signature": "c2ln"},
        {"type": "text", "text": "Checking.", "citations": None},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"},
         "caller": {"type": "direct"}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 12, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 100,
              "output_tokens": 6, "output_tokens_details": {"thinking_tokens": 4},
              "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 0},
              "server_tool_use": None, "service_tier": "standard", "inference_geo": None},
    "container": None, "stop_details": None,
}


def test_response_decode_and_round_trip() -> None:
    resp = am.decode_response(MESSAGE)
    assert resp.stop_reason is ir.StopReason.TOOL_USE
    assert resp.usage == ir.Usage(input_tokens=115, output_tokens=6, cached_tokens=100,
                                  cache_write_tokens=3, reasoning_tokens=4)
    assert resp.content[0] == ir.Reasoning(text="let me see", signature="c2ln", provider=am.FORMAT)
    assert resp.content[2].input == {"city": "Paris"}
    assert am.encode_response(resp) == MESSAGE
    parsed = anthropic_nonstream(jsonio.dumps(am.encode_response(resp, ctx())))
    assert parsed.content[2].input == {"city": "Paris"} and parsed.id == f"msg_{REQUEST_ID}"


@pytest.mark.parametrize(
    ("wire", "stop"),
    [("end_turn", ir.StopReason.END_TURN), ("max_tokens", ir.StopReason.MAX_TOKENS),
     ("stop_sequence", ir.StopReason.STOP_SEQUENCE), ("pause_turn", ir.StopReason.PAUSE),
     ("refusal", ir.StopReason.CONTENT_FILTER),
     ("model_context_window_exceeded", ir.StopReason.CONTEXT_WINDOW)],
)
def test_stop_reasons(wire: str, stop: ir.StopReason) -> None:
    body = {"id": "m", "model": "x", "content": [], "stop_reason": wire,
            "stop_sequence": "END" if wire == "stop_sequence" else None, "usage": {}}
    resp = am.decode_response(body)
    assert resp.stop_reason is stop
    assert am.encode_response(resp)["stop_reason"] == wire


def test_stop_sequence_only_when_known() -> None:
    resp = ir.Response("x", "m", (ir.Text("a"),), ir.StopReason.STOP_SEQUENCE)
    out = am.encode_response(resp)
    assert (out["stop_reason"], out["stop_sequence"]) == ("end_turn", None)


@pytest.mark.parametrize("body", [[], {"content": "x"}, {"content": [{"type": 3}]}])
def test_bad_upstream_response(body: Any) -> None:
    with pytest.raises(UpstreamProtocolError):
        am.decode_response(body)


# --------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ANTHROPIC_TRANSCRIPTS)
def test_stream_decoder_split_invariance(name: str) -> None:
    raw = transcript(name)
    expected = decode_stream([raw])
    assert decode_stream(byte_at_a_time(raw)) == expected
    for seed in range(5):
        assert decode_stream(random_chunks(raw, seed)) == expected


def test_stream_decoder_thinking_tool_use() -> None:
    events = decode_stream([transcript("anthropic_stream_thinking_tool_use.sse")])
    assert events[0] == ir.MessageStart("msg_01bgXWrbqYnWZBbXTWeTexmc",
                                        "claude-sonnet-4-5-20250929",
                                        ir.Usage(input_tokens=412, output_tokens=8))
    starts = [e for e in events if isinstance(e, ir.BlockStart)]
    assert [s.kind for s in starts] == [ir.BlockKind.REASONING, ir.BlockKind.TEXT,
                                        ir.BlockKind.TOOL_CALL]
    sig = [e for e in events if isinstance(e, ir.SignatureDelta)]
    assert len(sig) == 1 and sig[0].provider == am.FORMAT
    args = "".join(e.arguments for e in events if isinstance(e, ir.ToolArgsDelta))
    assert jsonio.loads(args) == {"location": "Paris, France", "unit": "celsius"}
    assert events[-2] == ir.UsageUpdate(ir.Usage(input_tokens=412, output_tokens=187))
    assert events[-1] == ir.MessageEnd(ir.StopReason.TOOL_USE)


def test_stream_decoder_merges_legacy_usage() -> None:
    events = decode_stream([transcript("anthropic_stream_text.sse")])
    # message_delta carries only output_tokens: the input from message_start survives.
    assert events[-2] == ir.UsageUpdate(ir.Usage(input_tokens=10, output_tokens=17))


def test_stream_decoder_midstream_error() -> None:
    events = decode_stream([transcript("anthropic_stream_error_midstream.sse")])
    assert events[-1] == ir.StreamError(ir.ErrorKind.OVERLOADED, "Overloaded", 529,
                                        "overloaded_error")
    assert sum(isinstance(e, ir.StreamError) for e in events) == 1


def test_stream_decoder_cut_stream() -> None:
    raw = transcript("anthropic_stream_text.sse")
    cut = raw[: raw.index(b"event: message_stop")]
    events = decode_stream([cut])
    assert events[-1].kind is ir.ErrorKind.UPSTREAM_PROTOCOL


@pytest.mark.parametrize("name", ANTHROPIC_TRANSCRIPTS)
def test_observe_mode_facts_match(name: str) -> None:
    raw = transcript(name)
    full = am.StreamDecoder(ctx())
    full.feed(raw)
    full.close()
    obs = am.StreamDecoder(ctx(), observe=True)
    for c in random_chunks(raw, 9):
        obs.feed(c)
    obs.close()
    for fact in ("model", "id", "usage", "stop_reason", "tool_calls", "failed", "done"):
        assert getattr(obs, fact) == getattr(full, fact), fact


@pytest.mark.parametrize(
    "raw",
    [b"event: message_start\ndata: {oops\n\n",
     b'event: content_block_delta\ndata: {"type":"content_block_delta","index":7,"delta":{}}\n\n',
     b'event: message_start\ndata: {"type":"message_start",'
     b'"message":{"usage":{"input_tokens":"many"}}}\n\n'],
)
def test_stream_decoder_bad_upstream(raw: bytes) -> None:
    d = am.StreamDecoder()
    # A broken upstream raises (Translation ends the client's stream with an error
    # event); the decoder stays broken. Events decoded before the bad frame in the same
    # call are returned first: see test_stream_errors.py.
    events: list[ir.StreamEvent] = []
    with pytest.raises(UpstreamProtocolError) as info:
        events += d.feed(raw)  # what came before the bad part of the frame, if any
        d.feed(b"")
    assert info.value.status_hint == 502
    assert not any(isinstance(e, (ir.StreamError, ir.MessageEnd)) for e in events)
    for again in (lambda: d.feed(raw), d.close):
        with pytest.raises(UpstreamProtocolError):
            again()


def _events(out: bytes) -> list[tuple[str, Any]]:
    """(event name, JSON) per frame; asserts the event: line matches the JSON type."""
    res = []
    for frame in out[:-2].split(b"\n\n"):
        lines = frame.split(b"\n")
        assert len(lines) == 2, frame
        assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), frame
        name = lines[0][7:].decode()
        obj = jsonio.loads(lines[1][6:])
        assert obj["type"] == name
        res.append((name, obj))
    return res


def _check_anthropic_stream(out: bytes) -> list[tuple[str, Any]]:
    evs = _events(out)
    assert evs[0][0] == "message_start"
    names = [n for n, _ in evs]
    if names[-1] == "error":
        assert "message_stop" not in names
        return evs
    assert names.count("message_stop") == 1 and names[-1] == "message_stop"
    assert names[-2] == "message_delta"
    expected, open_idx = 0, None
    for n, obj in evs:
        if n == "content_block_start":
            assert open_idx is None and obj["index"] == expected  # one block at a time, in order
            open_idx = expected
            expected += 1
        elif n == "content_block_delta":
            assert obj["index"] == open_idx
        elif n == "content_block_stop":
            assert obj["index"] == open_idx
            open_idx = None
    assert open_idx is None
    return evs


IR_STREAM = [
    ir.MessageStart("chatcmpl-1", "gpt-x"),
    ir.BlockStart(0, ir.BlockKind.TEXT),
    ir.TextDelta(0, ""),
    ir.BlockStop(0),  # an empty text block is never written
    ir.BlockStart(1, ir.BlockKind.TEXT),
    ir.TextDelta(1, "Hi"),
    ir.BlockStop(1),
    ir.BlockStart(2, ir.BlockKind.TOOL_CALL, "call_a", "f"),
    ir.ToolArgsDelta(2, '{"x":'),
    ir.BlockStart(3, ir.BlockKind.TOOL_CALL, "call.b", "g"),  # overlaps block 2
    ir.ToolArgsDelta(3, "{}"),
    ir.ToolArgsDelta(2, "1}"),
    ir.BlockStop(2),
    ir.BlockStop(3),
    ir.UsageUpdate(ir.Usage(input_tokens=100, output_tokens=7, cached_tokens=60)),
    ir.MessageEnd(ir.StopReason.TOOL_USE),
]


def test_stream_encoder_musts_and_sdk() -> None:
    enc = am.StreamEncoder(ctx(client=am.FORMAT, upstream="openai_chat"))
    out = enc.encode(IR_STREAM)
    assert enc.done and enc.close() == b""
    evs = _check_anthropic_stream(out)
    delta = evs[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None,
                              "container": None, "stop_details": None}
    assert delta["usage"] == {"input_tokens": 40, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 60, "output_tokens": 7,
                              "output_tokens_details": None, "server_tool_use": None}
    final = anthropic_final(out)
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[1].input == {"x": 1} and final.content[2].input == {}
    assert final.content[2].id == am_ids.wire_tool_id("call.b")
    assert final.usage.input_tokens == 40 and final.usage.cache_read_input_tokens == 60
    assert final.stop_reason == "tool_use"


def test_stream_encoder_split_events_give_same_bytes() -> None:
    whole = am.StreamEncoder(ctx()).encode(IR_STREAM)
    enc = am.StreamEncoder(ctx())
    assert b"".join(enc.encode([e]) for e in IR_STREAM) == whole


def test_stream_encoder_error_and_cut() -> None:
    import anthropic

    enc = am.StreamEncoder(ctx())
    out = enc.encode(IR_STREAM[:6] + [ir.StreamError(ir.ErrorKind.RATE_LIMIT, "slow down", 429)])
    evs = _check_anthropic_stream(out)
    assert evs[-1][1] == {"type": "error", "request_id": REQUEST_ID,
                          "error": {"details": None, "type": "rate_limit_error",
                                    "message": "slow down"}}
    with pytest.raises(anthropic.APIStatusError):
        anthropic_final(out)
    cut = am.StreamEncoder(ctx())
    out = cut.encode(IR_STREAM[:6]) + cut.close()
    assert _events(out)[-1][0] == "error"


def test_stream_encoder_foreign_reasoning_and_signatures() -> None:
    enc = am.StreamEncoder(ctx())
    out = enc.encode([
        ir.MessageStart("r", "m"),
        ir.BlockStart(0, ir.BlockKind.REASONING, provider="openai_responses"),
        ir.ReasoningDelta(0, "thinking aloud"),
        ir.SignatureDelta(0, "gAAAA", "openai_responses"),
        ir.BlockStop(0),
        ir.BlockStart(1, ir.BlockKind.REASONING, redacted_data="zzz", provider="openai_responses"),
        ir.BlockStop(1),
        ir.MessageEnd(ir.StopReason.END_TURN),
    ])
    evs = _check_anthropic_stream(out)
    assert b"gAAAA" not in out and b"zzz" not in out
    final = anthropic_final(out)
    assert final.content[0].type == "thinking" and final.content[0].signature == ""
    assert len(evs) == 6


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "etype", "kind"),
    [(400, "invalid_request_error", ir.ErrorKind.INVALID_REQUEST),
     (401, "authentication_error", ir.ErrorKind.AUTHENTICATION),
     (402, "billing_error", ir.ErrorKind.QUOTA),
     (403, "permission_error", ir.ErrorKind.PERMISSION),
     (404, "not_found_error", ir.ErrorKind.NOT_FOUND),
     (413, "request_too_large", ir.ErrorKind.REQUEST_TOO_LARGE),
     (429, "rate_limit_error", ir.ErrorKind.RATE_LIMIT),
     (500, "api_error", ir.ErrorKind.SERVER),
     (504, "timeout_error", ir.ErrorKind.TIMEOUT),
     (529, "overloaded_error", ir.ErrorKind.OVERLOADED)],
)
def test_error_round_trip(status: int, etype: str, kind: ir.ErrorKind) -> None:
    body = {"type": "error", "error": {"type": etype, "message": "m"}, "request_id": None}
    err = am.decode_error(status, jsonio.dumps(body))
    assert err.kind is kind
    assert am.encode_error(err, am.FORMAT) == (status, jsonio.dumps(body))


def test_openai_503_becomes_529() -> None:
    err = ir.ApiError(ir.ErrorKind.OVERLOADED, "slow down", 503, "server_error", "slow_down")
    status, body = am.encode_error(err, "openai_chat")
    assert status == 529
    assert jsonio.loads(body) == {"type": "error",
                                  "error": {"type": "overloaded_error", "message": "slow down"},
                                  "request_id": None}


def test_error_body_not_json() -> None:
    err = am.decode_error(529, b"")
    assert err.kind is ir.ErrorKind.OVERLOADED and err.message == "HTTP 529"
