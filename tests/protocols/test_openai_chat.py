"""OpenAI Chat Completions codec: requests, replies, streams and errors (docs/protocols.md §1)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from protocols import _openai, ir, jsonio
from protocols import openai_chat as oc
from protocols.errors import (
    ClientProtocolError,
    UnsupportedFeature,
    UpstreamProtocolError,
)
from tests.protocols.conftest import (
    CREATED,
    REQUEST_ID,
    byte_at_a_time,
    capture,
    openai_chunks,
    openai_final,
    openai_nonstream,
    random_chunks,
    transcript,
)

CHAT_TRANSCRIPTS = [
    "openai_chat_stream_text.sse",
    "openai_chat_stream_parallel_tool_calls.sse",
    "openai_chat_stream_include_usage.sse",
]


def ctx(client: str = oc.FORMAT, upstream: str = oc.FORMAT, **req: Any) -> ir.Context:
    c = ir.Context(request_id=REQUEST_ID, created=CREATED, client_format=client,
                   upstream_format=upstream)
    if req:
        c.client_request = ir.Request(model="test-model", messages=(), **req)
    return c


def decode_stream(chunks: list[bytes], **kw: Any) -> list[ir.StreamEvent]:
    d = oc.StreamDecoder(ctx(), **kw)
    events: list[ir.StreamEvent] = []
    for c in chunks:
        events += d.feed(c)
    return events + d.close()


def tool_args(events: list[ir.StreamEvent], blocks: tuple[int, ...] = (0, 1)) -> dict[int, str]:
    """The arguments text streamed for each of the tool-call ``blocks``."""
    return {i: "".join(e.arguments for e in events
                       if isinstance(e, ir.ToolArgsDelta) and e.index == i)
            for i in blocks}


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------

FULL_REQUEST: dict[str, Any] = {
    "model": "gpt-4.1",
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url",
             "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}},
            {"id": "call_2", "type": "function",
             "function": {"name": "lookup", "arguments": "{\"q\":\"dog\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "a dog"}]},
        {"role": "system", "content": "Mid-conversation note."},
        {"role": "user", "content": "Thanks", "name": "bob"},
    ],
    "max_completion_tokens": 500,
    "temperature": 1.5,
    "top_p": 0.9,
    "stop": ["END", "STOP"],
    "tools": [
        {"type": "function", "function": {
            "name": "lookup", "description": "Look up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            "strict": True}},
        {"type": "custom", "custom": {"name": "apply_patch", "description": "Patch",
                                      "format": {"type": "text"}}},
    ],
    "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    "parallel_tool_calls": False,
    "response_format": {"type": "json_schema",
                        "json_schema": {"name": "out", "schema": {"type": "object"},
                                        "strict": True}},
    "reasoning_effort": "low",
    "user": "user-1",
    "seed": 42,
    "presence_penalty": 0.5,
}


def test_decode_full_request() -> None:
    req = oc.decode_request(copy.deepcopy(FULL_REQUEST))
    assert req.model == "gpt-4.1"
    assert req.system == ()  # Chat system messages stay in place
    roles = [m.role for m in req.messages]
    assert roles == [ir.Role.DEVELOPER, ir.Role.USER, ir.Role.ASSISTANT, ir.Role.USER,
                     ir.Role.USER, ir.Role.SYSTEM, ir.Role.USER]
    user = req.messages[1]
    assert user.content[1] == ir.Image(media_type="image/png", data="iVBORw0KGgo=", detail="low")
    assert user.content[2] == ir.Image(url="https://example.com/cat.jpg")
    calls = req.messages[2].content
    assert [type(c) for c in calls] == [ir.ToolCall, ir.ToolCall]
    assert calls[0].arguments == '{"q":"cat"}' and calls[0].input is None
    result = req.messages[3].content[0]
    assert isinstance(result, ir.ToolResult)
    assert (result.id, result.name, result.content) == ("call_1", "lookup", (ir.Text("a cat"),))
    assert req.max_output_tokens == 500
    assert req.stop == ("END", "STOP")
    assert req.tools[1] == ir.CustomTool("apply_patch", "Patch", {"type": "text"})
    assert req.tool_choice == ir.ToolChoice(mode="tool", name="lookup", disable_parallel=True)
    assert req.response_format == ir.ResponseFormat("json_schema", name="out",
                                                    schema={"type": "object"}, strict=True)
    assert req.reasoning == ir.ReasoningConfig(effort="low")
    assert ir.extras_for(req, oc.FORMAT) == {"seed": 42, "presence_penalty": 0.5}


def roundtrip(body: dict[str, Any]) -> dict[str, Any]:
    c = ctx()
    return oc.encode_request(oc.decode_request(copy.deepcopy(body), c), c)


def test_request_round_trip_full() -> None:
    assert roundtrip(FULL_REQUEST) == FULL_REQUEST


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10,
         "stop": ["x"]},
        {"model": "m", "messages": [{"role": "system", "content": [{"type": "text", "text": "a"}]},
                                    {"role": "user", "content": [{"type": "text", "text": "b"}]},
                                    {"role": "assistant", "content": "c"}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "required",
         "tools": [{"type": "function", "function": {"name": "f"}}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
         "stream_options": {"include_usage": True}},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}],
         "tools": [{"type": "function", "function": {"name": "f"}}],
         "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
             {"type": "function", "function": {"name": "f"}}]}}},
        {"model": "m", "messages": [{"role": "assistant", "content": "",
                                     "reasoning_content": "thought",
                                     "tool_calls": [{"id": "c", "type": "custom",
                                                     "custom": {"name": "p", "input": "raw"}}]}]},
        {"model": "m", "messages": [{"role": "user", "content": [
            {"type": "file",
             "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]},
    ],
)
def test_request_round_trip(body: dict[str, Any]) -> None:
    assert roundtrip(body) == body


@pytest.mark.parametrize("stream", [False, True])
def test_python_sdk_captures_round_trip(stream: bool) -> None:
    entries = capture("python-sdks-anthropic-2.14.0-openai-3.57.0.json")
    (body,) = [e["body"] for e in entries
               if e["path"] == "/v1/chat/completions" and bool(e["body"].get("stream")) is stream]
    out = roundtrip(body)
    expected = copy.deepcopy(body)
    if body.get("stream"):
        # Streams always ask the upstream for usage (§5.5).
        expected["stream_options"] = {"include_usage": True}
    assert out == expected


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": {}}, "messages"),
        ({"model": 5, "messages": []}, "model"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": ["x"]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]},
         "messages[0].tool_call_id"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
         "messages[0].content[0].text"),
        ({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "f"}}]}]},
         "messages[0].tool_calls[0].id"),
        ({"model": "m", "messages": [], "temperature": 3}, "temperature"),
        ({"model": "m", "messages": [], "temperature": "hot"}, "temperature"),
        ({"model": "m", "messages": [], "max_completion_tokens": -1}, "max_completion_tokens"),
        ({"model": "m", "messages": [], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "m", "messages": [], "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "m", "messages": [], "tools": [{"type": "function", "function": {}}]},
         "tools[0].function.name"),
        ({"model": "m", "messages": [], "response_format": {"type": "yaml"}},
         "response_format.type"),
        ({"model": "m", "messages": [], "stream_options": {"include_usage": "yes"}},
         "stream_options.include_usage"),
    ],
)
def test_invalid_requests_name_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ClientProtocolError) as info:
        oc.decode_request(body)
    assert info.value.param == param
    assert info.value.status_hint == 400


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"functions": [{"name": "f"}]}, "functions"),
    ],
)
def test_unsupported_features_for_foreign_upstream(extra: dict[str, Any], param: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(UnsupportedFeature) as info:
        oc.decode_request(body, ctx(upstream="anthropic_messages"))
    assert info.value.param == param
    # The same body is fine for a Chat upstream: the fields stay in extras.
    req = oc.decode_request(body, ctx())
    assert oc.encode_request(req, ctx()) == body


def test_function_role_is_unsupported() -> None:
    with pytest.raises(UnsupportedFeature) as info:
        oc.decode_request({"model": "m",
                           "messages": [{"role": "function", "name": "f", "content": "x"}]})
    assert info.value.param == "messages[0].role"


def test_encode_hard_cases() -> None:
    long_id = "toolu_" + "x" * 60
    long_name = "mcp__server__" + "very_long_tool_name_" * 4
    c = ctx(client="anthropic_messages")
    req = ir.Request(
        model="m",
        system=(ir.Text("one"), ir.Text("two")),
        messages=(
            ir.Message(ir.Role.USER, (ir.Text("hi"),), as_string=True),
            ir.Message(ir.Role.ASSISTANT, (
                ir.Reasoning(text="secret", signature="sig", provider="anthropic_messages"),
                ir.Text(""),
                ir.ToolCall(id=long_id, name=long_name, arguments='{"a":1}'),
            )),
            ir.Message(ir.Role.USER, (
                ir.ToolResult(id=long_id, content=(ir.Text("boom"),), is_error=True),
                ir.ToolResult(id="t2", content=(ir.Text("pic"),
                                                ir.Image(media_type="image/png", data="AAA"))),
                ir.Text("next"),
            )),
        ),
        tools=(ir.FunctionTool(long_name, parameters={"type": "object"}),),
        stream=True,
        reasoning=ir.ReasoningConfig(mode="enabled", budget_tokens=16000),
    )
    body = oc.encode_request(req, c)
    msgs = body["messages"]
    assert msgs[0] == {"role": "system", "content": "one\ntwo"}
    assistant = msgs[2]
    assert "reasoning_content" not in assistant  # Anthropic thinking is not Chat's
    call = assistant["tool_calls"][0]
    assert len(call["id"]) <= _openai.MAX_TOOL_ID_CHARS
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", call["function"]["name"])
    assert c.tool_names[call["function"]["name"]] == long_name
    assert body["tools"][0]["function"]["name"] == call["function"]["name"]
    assert msgs[3] == {"role": "tool", "tool_call_id": call["id"], "content": "Error: boom"}
    assert msgs[4] == {"role": "tool", "tool_call_id": "t2", "content": "pic"}
    assert msgs[5]["role"] == "user"
    assert msgs[5]["content"][1]["image_url"]["url"] == "data:image/png;base64,AAA"
    assert msgs[6] == {"role": "user", "content": [{"type": "text", "text": "next"}]}
    assert body["stream_options"] == {"include_usage": True}
    assert body["reasoning_effort"] == "high"
    # The shortened id is deterministic: the next request maps it the same way.
    assert _openai.wire_tool_id(long_id) == call["id"]


def test_encode_rejects_what_chat_cannot_carry() -> None:
    base = {"model": "m", "messages": (ir.Message(ir.Role.USER, (ir.Text("x"),)),)}
    with pytest.raises(UnsupportedFeature):
        oc.encode_request(ir.Request(**base, stop=("a", "b", "c", "d", "e")))
    # Chat has no web search tool: the built-in is dropped and named, or refused.
    c = ir.Context(request_id="r", created=0, client_format="anthropic_messages",
                   upstream_format="openai_chat")
    body = oc.encode_request(ir.Request(**base, tools=(
        ir.NativeTool("anthropic_messages", "web_search_20250305",
                      {"type": "web_search_20250305"}),)), c)
    assert "tools" not in body and c.dropped_tools == ["web_search_20250305"]
    c.builtin_tools = "refuse"
    with pytest.raises(UnsupportedFeature):
        oc.encode_request(ir.Request(**base, tools=(
            ir.NativeTool("anthropic_messages", "web_search_20250305",
                          {"type": "web_search_20250305"}),)), c)
    with pytest.raises(UnsupportedFeature):
        block = ir.NativeBlock("anthropic_messages", "search_result", {})
        oc.encode_request(ir.Request(model="m",
                                     messages=(ir.Message(ir.Role.USER, (block,)),)))


# --------------------------------------------------------------------------------------
# Complete replies
# --------------------------------------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1741569952, "model": "gpt-4.1",
    "choices": [{"index": 0, "message": {
        "role": "assistant", "content": None, "refusal": None,
        "tool_calls": [{"id": "call_abc", "type": "function",
                        "function": {"name": "get_weather",
                                     "arguments": "{\"location\": \"Boston\"}"}}]},
        "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
              "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0,
                                            "rejected_prediction_tokens": 0}},
    "service_tier": "default",
}


def test_decode_response_forced_tool_choice_is_tool_use() -> None:
    resp = oc.decode_response(COMPLETION)
    assert resp.stop_reason is ir.StopReason.TOOL_USE  # §1.4 gotcha
    assert resp.content == (ir.ToolCall("call_abc", "get_weather", '{"location": "Boston"}'),)
    assert resp.usage == ir.Usage(19, 10, 4, 0, 3)


def test_response_round_trip_and_sdk_parse() -> None:
    out = oc.encode_response(oc.decode_response(COMPLETION))
    assert (out["choices"][0]["message"]["tool_calls"]
            == COMPLETION["choices"][0]["message"]["tool_calls"])
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"] == COMPLETION["usage"]
    assert out["id"] == "chatcmpl-1"
    text_reply = copy.deepcopy(COMPLETION)
    text_reply["choices"][0]["message"] = {"role": "assistant", "content": "Hello!",
                                           "refusal": None}
    text_reply.update(service_tier="default", system_fingerprint="fp_1")
    assert oc.encode_response(oc.decode_response(copy.deepcopy(text_reply))) == text_reply
    parsed = openai_nonstream(jsonio.dumps(out))
    assert parsed.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert parsed.usage.prompt_tokens_details.cached_tokens == 4


def test_encode_response_ids_and_time_from_context() -> None:
    resp = ir.Response(id="msg_x", model="claude", content=(ir.Text("hi"),),
                       stop_reason=ir.StopReason.MAX_TOKENS, usage=ir.Usage(5, 2))
    out = oc.encode_response(resp, ctx())
    assert out["id"] == f"chatcmpl-{REQUEST_ID}" and out["created"] == CREATED
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["choices"][0]["message"]["content"] == "hi"


@pytest.mark.parametrize("body", [[], {"choices": []}, {"choices": [{"message": 3}]}])
def test_bad_upstream_response(body: Any) -> None:
    with pytest.raises(UpstreamProtocolError):
        oc.decode_response(body)


# --------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAT_TRANSCRIPTS)
def test_stream_decoder_split_invariance(name: str) -> None:
    raw = transcript(name)
    expected = decode_stream([raw])
    assert decode_stream(byte_at_a_time(raw)) == expected
    for seed in range(5):
        assert decode_stream(random_chunks(raw, seed)) == expected
    assert isinstance(expected[0], ir.MessageStart)
    assert isinstance(expected[-1], ir.MessageEnd)


def test_stream_decoder_text() -> None:
    events = decode_stream([transcript("openai_chat_stream_text.sse")])
    text = "".join(e.text for e in events if isinstance(e, ir.TextDelta))
    assert text == "Hello! (English)\n¡Hola! (Spanish)\nこんにちは! (Japanese)"
    assert events[-1] == ir.MessageEnd(ir.StopReason.END_TURN)
    assert events[0] == ir.MessageStart("chatcmpl-3nw4QRRZYqML8cJ7WZ96vN5bX8kRR",
                                        "gpt-4.1-2025-04-14")


def test_stream_decoder_parallel_tools() -> None:
    events = decode_stream([transcript("openai_chat_stream_parallel_tool_calls.sse")])
    starts = [e for e in events if isinstance(e, ir.BlockStart)]
    assert [(s.index, s.tool_id, s.tool_name) for s in starts] == [
        (0, "call_6PqAxJsYwnvZ8M84lU6OY1ec", "get_weather"),
        (1, "call_neQ1kwyHvjdy7H7HtLZ63NsH", "get_local_time"),
    ]
    args = tool_args(events)
    assert jsonio.loads(args[0]) == {"location": "Paris, France"}
    assert jsonio.loads(args[1]) == {"timezone": "Asia/Tokyo"}
    assert events[-1] == ir.MessageEnd(ir.StopReason.TOOL_USE)


def test_stream_decoder_holds_end_until_usage() -> None:
    events = decode_stream([transcript("openai_chat_stream_include_usage.sse")])
    kinds = [type(e).__name__ for e in events[-3:]]
    assert kinds == ["BlockStop", "UsageUpdate", "MessageEnd"]
    assert events[-2].usage == ir.Usage(input_tokens=1536, output_tokens=8, cached_tokens=1024)


def test_stream_decoder_interleaved_tool_fragments() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return b"data: " + jsonio.dumps({"id": "c", "model": "m", "choices": [
            {"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"

    raw = b"".join([
        chunk({"role": "assistant", "tool_calls": [
            {"index": 0, "id": "a", "type": "function",
             "function": {"name": "f", "arguments": "{\"x\""}}]}),
        chunk({"tool_calls": [
            {"index": 1, "id": "b", "type": "function",
             "function": {"name": "g", "arguments": "{\"y\""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": ":2}"}}]}),
        chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ])
    events = decode_stream([raw])
    assert tool_args(events) == {0: '{"x":1}', 1: '{"y":2}'}
    # Through an Anthropic client the blocks come out one after another, complete.
    from protocols import anthropic_messages as am
    out = am.StreamEncoder(ctx(client="anthropic_messages")).encode(events)
    starts = re.findall(rb'"content_block_start","index":(\d)', out)
    assert starts == [b"0", b"1"]


def test_stream_decoder_cut_streams_become_errors() -> None:
    raw = transcript("openai_chat_stream_text.sse")
    before_finish = raw[: raw.index(b'"finish_reason":"stop"')]
    before_finish = before_finish[: before_finish.rindex(b"\n\n") + 2]
    events = decode_stream([before_finish])
    assert isinstance(events[-1], ir.StreamError)
    assert events[-1].kind is ir.ErrorKind.UPSTREAM_PROTOCOL
    # A finish reason without [DONE] is a clean close-delimited end.
    no_done = raw[: raw.index(b"data: [DONE]")]
    assert decode_stream([no_done])[-1] == ir.MessageEnd(ir.StopReason.END_TURN)


def test_stream_decoder_error_chunk() -> None:
    raw = (b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},'
           b'"finish_reason":null}]}\n\n'
           b'data: {"error": {"message": "The server had an error", "type": "server_error"}}\n\n')
    events = decode_stream([raw])
    assert events[-1] == ir.StreamError(ir.ErrorKind.SERVER, "The server had an error", 500,
                                        "server_error")


@pytest.mark.parametrize("raw", [
    b"data: {nope\n\n", b"data: [1]\n\n",
    b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":"0"}]}}]}\n\n'])
def test_stream_decoder_bad_upstream(raw: bytes) -> None:
    d = oc.StreamDecoder()
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


@pytest.mark.parametrize("name", CHAT_TRANSCRIPTS)
def test_observe_mode_facts_match(name: str) -> None:
    raw = transcript(name)
    full = oc.StreamDecoder(ctx())
    full.feed(raw)
    full.close()
    obs = oc.StreamDecoder(ctx(), observe=True)
    for c in random_chunks(raw, 3):
        obs.feed(c)
    obs.close()
    for fact in ("model", "id", "usage", "stop_reason", "tool_calls", "failed", "done"):
        assert getattr(obs, fact) == getattr(full, fact), fact


def _frames(out: bytes) -> list[bytes]:
    assert out.endswith(b"\n\n")
    return out[:-2].split(b"\n\n")


def _payloads(out: bytes) -> list[Any]:
    res = []
    for f in _frames(out):
        if f.startswith(b":"):
            continue
        assert f.startswith(b"data: ") and b"\n" not in f, f  # data only: no event/id/retry
        body = f[6:]
        res.append(body if body == b"[DONE]" else jsonio.loads(body))
    return res


IR_STREAM = [
    ir.MessageStart("msg_1", "claude-x", ir.Usage(input_tokens=30, cached_tokens=10)),
    ir.BlockStart(0, ir.BlockKind.REASONING, provider="anthropic_messages"),
    ir.ReasoningDelta(0, "hmm"),
    ir.SignatureDelta(0, "sig", "anthropic_messages"),
    ir.BlockStop(0),
    ir.BlockStart(1, ir.BlockKind.TEXT),
    ir.TextDelta(1, ""),
    ir.TextDelta(1, "Hello"),
    ir.BlockStop(1),
    ir.BlockStart(2, ir.BlockKind.TOOL_CALL, "toolu_1", "f"),
    ir.ToolArgsDelta(2, '{"a":'),
    ir.ToolArgsDelta(2, "1}"),
    ir.BlockStop(2),
    ir.BlockStart(3, ir.BlockKind.TOOL_CALL, "toolu_2", "g"),
    ir.ToolArgsDelta(3, "{}"),
    ir.BlockStop(3),
    ir.Ping(),
    ir.UsageUpdate(ir.Usage(input_tokens=30, output_tokens=12, cached_tokens=10)),
    ir.MessageEnd(ir.StopReason.TOOL_USE),
]


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_encoder_musts(include_usage: bool) -> None:
    enc = oc.StreamEncoder(ctx(include_usage=include_usage))
    out = enc.encode(IR_STREAM)
    assert enc.done and enc.close() == b""
    payloads = _payloads(out)
    assert payloads[-1] == b"[DONE]"
    chunks = payloads[:-1]
    roles = [c for c in chunks if c.get("choices") and "role" in c["choices"][0]["delta"]]
    assert len(roles) == 1 and chunks[0] is roles[0]
    seen: dict[int, int] = {}
    for c in chunks:
        for ch in c["choices"]:
            for tc in ch["delta"].get("tool_calls", []):
                assert type(tc["index"]) is int
                if "id" in tc:
                    seen[tc["index"]] = seen.get(tc["index"], 0) + 1
                    assert tc["function"]["name"]
                else:
                    assert "name" not in tc.get("function", {})
    assert seen == {0: 1, 1: 1}
    assert all(c["id"] == f"chatcmpl-{REQUEST_ID}" and c["created"] == CREATED for c in chunks)
    assert all("error" not in c for c in chunks)
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 30
        assert chunks[-1]["usage"]["completion_tokens"] == 12
        assert all(c["usage"] is None for c in chunks[:-1])
        assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        assert all("usage" not in c for c in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    final = openai_final(out)
    msg = final.choices[0].message
    assert msg.role == "assistant"
    assert msg.content == "Hello"
    assert [(t.id, t.function.name, t.function.arguments) for t in msg.tool_calls] == [
        ("toolu_1", "f", '{"a":1}'), ("toolu_2", "g", "{}")]


def test_stream_encoder_error_and_cut() -> None:
    enc = oc.StreamEncoder(ctx())
    error = ir.StreamError(ir.ErrorKind.OVERLOADED, "Overloaded", 529, "overloaded_error")
    out = enc.encode([IR_STREAM[0], ir.BlockStart(0, ir.BlockKind.TEXT), ir.TextDelta(0, "Hi"),
                      error])
    assert b"[DONE]" not in out
    last = _payloads(out)[-1]
    assert last == {"error": {"message": "Overloaded", "type": "server_error", "param": None,
                              "code": "server_is_overloaded"}}
    import openai
    with pytest.raises(openai.APIError, match="Overloaded"):
        openai_chunks(out)
    cut = oc.StreamEncoder(ctx())
    out = cut.encode(IR_STREAM[:3]) + cut.close()
    assert b"[DONE]" not in out and b'"error"' in _frames(out)[-1]


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, {"error": {"message": "Rate limit reached. Please try again in 1.898s",
                         "type": "tokens", "param": None, "code": "rate_limit_exceeded"}},
         ir.ErrorKind.RATE_LIMIT),
        (429, {"error": {"message": "quota", "type": "insufficient_quota", "param": None,
                         "code": "insufficient_quota"}}, ir.ErrorKind.QUOTA),
        (401, {"error": {"message": "Incorrect API key", "type": "invalid_request_error",
                         "param": None, "code": "invalid_api_key"}}, ir.ErrorKind.AUTHENTICATION),
        (404, {"error": {"message": "no model", "type": "invalid_request_error", "param": None,
                         "code": "model_not_found"}}, ir.ErrorKind.NOT_FOUND),
        (503, {"error": {"message": "overloaded", "type": "server_error", "param": None,
                         "code": "slow_down"}}, ir.ErrorKind.OVERLOADED),
        (500, {"error": {"message": "Sorry about that!", "type": "server_error", "param": None,
                         "code": None}}, ir.ErrorKind.SERVER),
    ],
)
def test_error_decode_and_same_format_encode(status: int, body: dict[str, Any],
                                             kind: ir.ErrorKind) -> None:
    err = oc.decode_error(status, jsonio.dumps(body))
    assert err.kind is kind and err.message == body["error"]["message"] and err.status == status
    s, out = oc.encode_error(err, oc.FORMAT)
    assert s == status
    assert jsonio.loads(out) == body


def test_error_non_json_body() -> None:
    err = oc.decode_error(502, b"<html>Bad Gateway</html>")
    assert err.kind is ir.ErrorKind.SERVER and "Bad Gateway" in err.message
    status, body = oc.encode_error(err)
    assert status == 502
    assert set(jsonio.loads(body)["error"]) == {"message", "type", "param", "code"}


def test_error_overloaded_is_503() -> None:
    err = ir.ApiError(ir.ErrorKind.OVERLOADED, "Overloaded", 529, "overloaded_error")
    status, body = oc.encode_error(err, "anthropic_messages")
    assert status == 503
    assert jsonio.loads(body)["error"]["type"] == "server_error"
