"""Translation between OpenAI Chat and Anthropic Messages, every direction.

Every Chat and Anthropic transcript goes through every (client, upstream) pair among the
two formats: whole, byte at a time and under random splits (Hypothesis) the output is
identical, matches the checked-in golden file, and the real SDK stream helpers read the
expected text, tool calls and usage from it. Requests, complete replies and errors are
translated both ways, and the Claude Code captures become valid Chat requests.

Golden files live in ``tests/protocols/golden``. After a deliberate output change,
regenerate them with ``TOKENWAY_REGEN_GOLDEN=1 python -m pytest
tests/protocols/test_translate_chat_anthropic.py`` and review the diff by eye.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import ir, jsonio
from protocols.anthropic_messages.tables import DEFAULT_MAX_TOKENS
from protocols.errors import ClientProtocolError, UnsupportedFeature
from protocols.translate import FORMAT_MODULES, Translation, format_module
from tests.protocols.conftest import (
    ANTHROPIC,
    CHAT,
    CLIENT_REQUESTS,
    CREATED,
    GOLDEN,
    REQUEST_ID,
    TRANSCRIPT_FORMATS,
    anthropic_final,
    anthropic_nonstream,
    byte_at_a_time,
    capture,
    openai_final,
    openai_nonstream,
    run_translation,
    split_at,
    transcript,
)

REGEN = os.environ.get("TOKENWAY_REGEN_GOLDEN") == "1"
CLIENTS = [CHAT, ANTHROPIC]
CASES = [(client, name) for name in TRANSCRIPT_FORMATS for client in CLIENTS]
CASE_IDS = [f"{client}<-{name[:-4]}" for client, name in CASES]

# What a client must read from each transcript: text, tool calls (id, name, parsed
# arguments), usage as (prompt incl. cache, cached, output), or the error it raises.
EXPECTED: dict[str, dict[str, Any]] = {
    "openai_chat_stream_text.sse": {
        "text": "Hello! (English)\n¡Hola! (Spanish)\nこんにちは! (Japanese)", "tools": [],
        "usage": None},
    "openai_chat_stream_parallel_tool_calls.sse": {
        "text": None, "usage": None,
        "tools": [("call_6PqAxJsYwnvZ8M84lU6OY1ec", "get_weather", {"location": "Paris, France"}),
                  ("call_neQ1kwyHvjdy7H7HtLZ63NsH", "get_local_time", {"timezone": "Asia/Tokyo"})]},
    "openai_chat_stream_include_usage.sse": {
        "text": "The capital of France is Paris.", "tools": [], "usage": (1536, 1024, 8)},
    "anthropic_stream_text.sse": {
        "text": "Hello! It's nice to meet you. How can I help you today?", "tools": [],
        "usage": (10, 0, 17)},
    "anthropic_stream_thinking_tool_use.sse": {
        "text": "I'll check the current weather in Paris for you.", "usage": (412, 0, 187),
        "reasoning": ("The user wants the current weather in Paris. I have a get_weather tool that "
                      "takes a location and an optional unit. Paris, France; Celsius is the local "
                      "convention."),
        "tools": [("toolu_01EnCNTFK7cCwUkuRwcqMB13", "get_weather",
                   {"location": "Paris, France", "unit": "celsius"})]},
    "anthropic_stream_error_midstream.sse": {"error": "Overloaded"},
}


def translate(client: str, name: str,
              chunks: list[bytes] | None = None) -> tuple[bytes, Translation]:
    if chunks is None:
        chunks = [transcript(name)]
    return run_translation(client, TRANSCRIPT_FORMATS[name], chunks)


# --------------------------------------------------------------------------------------
# Streams: split invariance, goldens, real SDKs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("client", "name"), CASES, ids=CASE_IDS)
def test_whole_equals_byte_at_a_time(client: str, name: str) -> None:
    whole, t = translate(client, name)
    bytewise, _ = translate(client, name, byte_at_a_time(transcript(name)))
    assert bytewise == whole
    if t.observe:
        assert whole == transcript(name)


@pytest.mark.parametrize(("client", "name"), CASES, ids=CASE_IDS)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=40))
def test_random_splits(client: str, name: str, cuts: list[int]) -> None:
    raw = transcript(name)
    whole, _ = translate(client, name)
    split, _ = translate(client, name, split_at(raw, cuts))
    assert split == whole


@pytest.mark.parametrize(("client", "name"), CASES, ids=CASE_IDS)
def test_golden(client: str, name: str) -> None:
    out, _ = translate(client, name)
    path = GOLDEN / f"{client}__{name}"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(out)
    assert path.exists(), f"missing golden {path.name}; run with TOKENWAY_REGEN_GOLDEN=1"
    assert out == path.read_bytes()


@pytest.mark.parametrize(("client", "name"), CASES, ids=CASE_IDS)
def test_real_sdk_reads_the_stream(client: str, name: str) -> None:
    import anthropic
    import openai

    out, t = translate(client, name)
    exp = EXPECTED[name]
    # Every complete transcript leaves the client's stream properly ended, so the proxy
    # must not add an error of its own (only one error event on the wire).
    assert t.ended
    if "error" in exp:
        err_cls = openai.APIError if client == CHAT else anthropic.APIStatusError
        with pytest.raises(err_cls, match=exp["error"]):
            openai_final(out) if client == CHAT else anthropic_final(out)
        assert t.failed and t.stop_reason is None
        return
    assert not t.failed
    if client == CHAT:
        final = openai_final(out)
        msg = final.choices[0].message
        assert msg.role == "assistant"
        assert (msg.content or None) == exp["text"]
        tools = [(c.id, c.function.name, jsonio.loads(c.function.arguments))
                 for c in msg.tool_calls or []]
        assert tools == exp["tools"]
        if "reasoning" in exp:
            assert msg.model_extra["reasoning_content"] == exp["reasoning"]
        assert final.choices[0].finish_reason == ("tool_calls" if exp["tools"] else "stop")
        if exp["usage"] is None:
            assert final.usage is None
        else:
            u = final.usage
            assert (u.prompt_tokens, u.prompt_tokens_details.cached_tokens,
                    u.completion_tokens) == exp["usage"]
            assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    else:
        final = anthropic_final(out)
        texts = "".join(b.text for b in final.content if b.type == "text")
        assert (texts or None) == exp["text"]
        tools = [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"]
        assert tools == exp["tools"]
        if "reasoning" in exp:
            thinking = [b for b in final.content if b.type == "thinking"]
            assert thinking[0].thinking == exp["reasoning"]
            assert thinking[0].signature.startswith("ErN6")  # Anthropic's own, kept
        assert final.stop_reason == ("tool_use" if exp["tools"] else "end_turn")
        u = final.usage
        prompt = (u.input_tokens + (u.cache_read_input_tokens or 0)
                  + (u.cache_creation_input_tokens or 0))
        if exp["usage"] is not None:
            assert (prompt, u.cache_read_input_tokens or 0, u.output_tokens) == exp["usage"]
    # The translation's own facts agree with what the client saw.
    if exp["usage"] is not None:
        assert (t.usage.input_tokens, t.usage.cached_tokens, t.usage.output_tokens) == exp["usage"]
    assert t.tool_calls_seen == len(exp["tools"])
    assert t.stop_reason is (ir.StopReason.TOOL_USE if exp["tools"] else ir.StopReason.END_TURN)
    assert t.model and t.model != "test-model"  # the served model, from the stream


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("name", [n for n in TRANSCRIPT_FORMATS
                                  if n != "anthropic_stream_error_midstream.sse"])
def test_cut_upstream_becomes_client_error(client: str, name: str) -> None:
    """An upstream EOF before its terminal marker is an error for the client, never a
    fabricated clean end (§6.3)."""
    import anthropic
    import openai

    raw = transcript(name)
    marker = b"data: [DONE]" if TRANSCRIPT_FORMATS[name] == CHAT else b"event: message_stop"
    cut = raw[: raw.index(marker)]
    if TRANSCRIPT_FORMATS[name] == CHAT:
        cut = cut[: cut.index(b'"finish_reason":"')]
        cut = cut[: cut.rindex(b"\n\n") + 2]
    out, t = run_translation(client, TRANSCRIPT_FORMATS[name], [cut])
    assert t.failed
    if t.observe:
        assert out == cut  # observe mode forwards exactly what came; the proxy ends it
        assert not t.ended
        return
    assert t.ended  # the translated stream already carries the client's error event
    with pytest.raises(openai.APIError if client == CHAT else anthropic.APIStatusError):
        openai_final(out) if client == CHAT else anthropic_final(out)


@pytest.mark.parametrize("client", CLIENTS)
def test_garbage_upstream_mid_stream(client: str) -> None:
    upstream = ANTHROPIC if client == CHAT else CHAT
    good = transcript("anthropic_stream_text.sse" if upstream == ANTHROPIC
                      else "openai_chat_stream_text.sse")
    first = good[: good.index(b"\n\n") + 2]
    t = Translation(client, upstream, request_id=REQUEST_ID, created=CREATED)
    t.request(dict(CLIENT_REQUESTS[client]))
    out = t.feed(first) + t.feed(b"data: {not json\n\n") + t.feed(good) + t.finish()
    assert t.failed
    if client == CHAT:
        assert out.rstrip().endswith(b"}}") and b'"error"' in out.split(b"\n\n")[-2]
        assert b"[DONE]" not in out
    else:
        assert b"event: error\n" in out and b"message_stop" not in out


def test_observe_mode_returns_the_same_objects() -> None:
    raw = transcript("openai_chat_stream_include_usage.sse")
    t = Translation(CHAT, CHAT, request_id=REQUEST_ID, created=CREATED)
    body = dict(CLIENT_REQUESTS[CHAT])
    assert t.request(body) is body
    chunk = raw[:100]
    assert t.feed(chunk) is chunk
    rest = raw[100:]
    assert t.feed(rest) is rest
    assert t.finish() == b""
    assert t.usage == ir.Usage(input_tokens=1536, output_tokens=8, cached_tokens=1024)
    assert t.model == "gpt-4o-mini-2024-07-18" and t.stop_reason is ir.StopReason.END_TURN
    reply = {"id": "x", "model": "m",
             "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}
    assert Translation(CHAT, CHAT, request_id="r", created=0).response(reply) is reply


def test_registry_and_unknown_formats() -> None:
    # The built-in formats are registered; a format added later needs only its line.
    assert set(ir.FORMATS) <= set(FORMAT_MODULES)
    for name in FORMAT_MODULES:
        mod = format_module(name)
        assert mod.FORMAT == name
        for attr in ("decode_request", "encode_request", "decode_response", "encode_response",
                     "decode_error", "encode_error", "is_error_body", "StreamDecoder",
                     "StreamEncoder", "REPLY_FACTS", "request_stream_usage", "stream_watch",
                     "stream_error_event", "HEARTBEAT", "cap_output_tokens", "strip_reasoning",
                     "tool_calls", "inject_warning"):
            assert hasattr(mod, attr), (name, attr)
    with pytest.raises(ValueError):
        Translation("smoke_signals", CHAT, request_id="r", created=0)


# --------------------------------------------------------------------------------------
# Requests across formats
# --------------------------------------------------------------------------------------

_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def assert_valid_chat_request(body: dict[str, Any]) -> None:
    """The Chat request rules of docs/protocols.md §1.2-§1.3 that an upstream checks."""
    assert type(body["model"]) is str
    assert not {"system", "max_tokens", "thinking", "stop_sequences", "top_k", "output_config",
                "context_management", "metadata"} & set(body)
    pending: set[str] = set()
    for m in body["messages"]:
        role = m["role"]
        assert role in ("system", "developer", "user", "assistant", "tool")
        if role != "tool":
            assert not pending, f"tool calls {pending} not answered before a {role} message"
        if role in ("system", "developer"):
            c = m["content"]
            assert type(c) is str or all(p["type"] == "text" for p in c)
        elif role == "user":
            c = m["content"]
            assert type(c) is str or all(p["type"] in ("text", "image_url", "file") for p in c)
        elif role == "assistant":
            assert "content" in m or "tool_calls" in m
            for tc in m.get("tool_calls", []):
                assert len(tc["id"]) <= 40 and tc["type"] == "function"
                assert _NAME.fullmatch(tc["function"]["name"])
                assert type(tc["function"]["arguments"]) is str
                pending.add(tc["id"])
        else:
            assert m["tool_call_id"] in pending
            pending.discard(m["tool_call_id"])
            c = m["content"]
            assert type(c) is str or all(p["type"] == "text" for p in c)
    assert not pending
    for t in body.get("tools", []):
        assert t["type"] == "function" and _NAME.fullmatch(t["function"]["name"])
        assert type(t["function"].get("parameters", {})) is dict
    if "max_completion_tokens" in body:
        assert type(body["max_completion_tokens"]) is int
    if body.get("stream"):
        assert body["stream_options"]["include_usage"] is True


def assert_valid_anthropic_request(body: dict[str, Any]) -> None:
    """The Messages request rules of docs/protocols.md §3.2-§3.5 that the API checks."""
    assert type(body["model"]) is str and type(body["max_tokens"]) is int
    assert 0 <= body.get("temperature", 0) <= 1
    ids: set[str] = set()
    prev_role = None
    for m in body["messages"]:
        assert m["role"] in ("user", "assistant") and m["role"] != prev_role
        prev_role = m["role"]
        content = m["content"]
        if type(content) is str:
            continue
        seen_other = False
        for b in content:
            if b["type"] == "text":
                assert b["text"].strip(), "empty text block"
            if b["type"] == "tool_use":
                assert re.fullmatch(r"[a-zA-Z0-9_-]+", b["id"]) and type(b["input"]) is dict
                ids.add(b["id"])
            if b["type"] == "tool_result":
                assert not seen_other, "tool_result blocks must come first"
                assert b["tool_use_id"] in ids
            else:
                seen_other = True
    if "thinking" in body and body["thinking"]["type"] == "enabled":
        assert body["thinking"]["budget_tokens"] < body["max_tokens"]
        assert body.get("tool_choice", {"type": "auto"})["type"] in ("auto", "none")
    for t in body.get("tools", []):
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", t["name"])
        assert t["input_schema"]["type"] == "object"


@pytest.mark.parametrize("name", ["claude-code-2.1.332-default-turn1.json",
                                  "claude-code-2.1.332-bare-turn2-tool_result.json"])
def test_claude_code_request_to_chat(name: str) -> None:
    body = capture(name)["body"]
    t = Translation(ANTHROPIC, CHAT, request_id=REQUEST_ID, created=CREATED)
    out = t.request(copy.deepcopy(body))
    assert_valid_chat_request(out)
    assert out["messages"][0]["role"] == "system"
    assert out["messages"][0]["content"].startswith("x-anthropic-billing-header")
    assert out["max_completion_tokens"] == 128000
    assert {t["function"]["name"] for t in out["tools"]} == {t["name"] for t in body["tools"]}


def test_python_sdk_requests_cross() -> None:
    entries = capture("python-sdks-anthropic-2.14.0-openai-3.57.0.json")
    for e in entries:
        if e["path"] == "/v1/chat/completions":
            t = Translation(CHAT, ANTHROPIC, request_id=REQUEST_ID, created=CREATED)
            out = t.request(copy.deepcopy(e["body"]))
            assert_valid_anthropic_request(out)
            assert out["max_tokens"] == DEFAULT_MAX_TOKENS
        elif e["path"] == "/v1/messages":
            t = Translation(ANTHROPIC, CHAT, request_id=REQUEST_ID, created=CREATED)
            assert_valid_chat_request(t.request(copy.deepcopy(e["body"])))


def test_chat_request_to_anthropic_hard_cases() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "weather and time?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
            {"role": "developer", "content": "Answer in French."},
        ],
        "temperature": 1.8,
        "tools": [{"type": "function",
                   "function": {"name": "get_weather", "parameters": {"type": "object"}}},
                  {"type": "function", "function": {"name": "get_time"}}],
        "parallel_tool_calls": False,
        "reasoning_effort": "high",
        "max_completion_tokens": 4000,
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 7,
    }
    t = Translation(CHAT, ANTHROPIC, request_id=REQUEST_ID, created=CREATED)
    out = t.request(body)
    assert_valid_anthropic_request(out)
    assert out["system"] == "You are terse.\nAnswer in French."
    assert out["messages"][1]["content"][0]["type"] == "tool_use"  # empty "" content dropped
    assert [b["type"] for b in out["messages"][2]["content"]] == ["tool_result", "tool_result"]
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "seed" not in out and "stream_options" not in out and out["stream"] is True
    # A tool loop whose assistant turn carries no signed thinking: thinking stays off.
    assert "thinking" not in out and out["temperature"] == 1.0


def test_unsupported_chat_features_to_anthropic() -> None:
    for extra in ({"n": 3}, {"logprobs": True}, {"modalities": ["audio"]}):
        t = Translation(CHAT, ANTHROPIC, request_id="r", created=0)
        with pytest.raises(UnsupportedFeature):
            t.request({"model": "m", "messages": [{"role": "user", "content": "x"}], **extra})
    with pytest.raises(ClientProtocolError):
        Translation(CHAT, ANTHROPIC, request_id="r", created=0).request({"model": "m"})


def test_tool_names_survive_the_round_trip() -> None:
    """An Anthropic client's long MCP tool name is shortened for Chat and restored on the
    way back, in streams and complete replies (§5.3)."""
    long_name = "mcp__filesystem__" + "read_multiple_files_with_metadata_" * 2
    body = {"model": "m", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "go"}],
            "tools": [{"name": long_name, "input_schema": {"type": "object"}}]}
    t = Translation(ANTHROPIC, CHAT, request_id=REQUEST_ID, created=CREATED)
    up = t.request(body)
    wire = up["tools"][0]["function"]["name"]
    assert len(wire) <= 64 and wire != long_name
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
             "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
                 {"index": 0, "id": "call_9", "type": "function",
                  "function": {"name": wire, "arguments": "{}"}}]}, "finish_reason": None}]}
    end = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
           "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    stream = (b"data: " + jsonio.dumps(chunk) + b"\n\ndata: " + jsonio.dumps(end)
              + b"\n\ndata: [DONE]\n\n")
    out = t.feed(stream) + t.finish()
    final = anthropic_final(out)
    assert final.content[0].name == long_name and final.stop_reason == "tool_use"
    t2 = Translation(ANTHROPIC, CHAT, request_id=REQUEST_ID, created=CREATED)
    t2.request(body)
    call = {"id": "call_9", "type": "function", "function": {"name": wire, "arguments": "{}"}}
    reply = t2.response({"id": "c", "model": "gpt", "choices": [
        {"index": 0, "finish_reason": "tool_calls",
         "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]})
    assert reply["content"][0]["name"] == long_name


# --------------------------------------------------------------------------------------
# Complete replies and errors across formats
# --------------------------------------------------------------------------------------

ANTHROPIC_REPLY = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [{"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                 "input": {"city": "Paris"}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100,
              "output_tokens": 20},
}
CHAT_REPLY = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
    "choices": [{"index": 0, "finish_reason": "length", "logprobs": None,
                 "message": {"role": "assistant", "content": "Partial answ", "refusal": None}}],
    "usage": {"prompt_tokens": 200, "completion_tokens": 50, "total_tokens": 250,
              "prompt_tokens_details": {"cached_tokens": 150, "cache_write_tokens": 20}},
}


def test_anthropic_reply_to_chat_client() -> None:
    t = Translation(CHAT, ANTHROPIC, request_id=REQUEST_ID, created=CREATED)
    t.request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    out = t.response(copy.deepcopy(ANTHROPIC_REPLY))
    parsed = openai_nonstream(jsonio.dumps(out))
    choice = parsed.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
    assert choice.message.tool_calls[0].id == "toolu_01"
    assert jsonio.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert (parsed.usage.prompt_tokens, parsed.usage.prompt_tokens_details.cached_tokens,
            parsed.usage.completion_tokens) == (115, 100, 20)
    assert parsed.id == f"chatcmpl-{REQUEST_ID}" and parsed.created == CREATED
    assert t.usage == ir.Usage(115, 20, 100, 5) and t.tool_calls_seen == 1


def test_chat_reply_to_anthropic_client() -> None:
    t = Translation(ANTHROPIC, CHAT, request_id=REQUEST_ID, created=CREATED)
    t.request({"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}]})
    out = t.response(copy.deepcopy(CHAT_REPLY))
    parsed = anthropic_nonstream(jsonio.dumps(out))
    assert parsed.stop_reason == "max_tokens" and parsed.content[0].text == "Partial answ"
    # No double counting: 200 prompt = 30 uncached + 150 read + 20 written.
    u = parsed.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens,
            u.output_tokens) == (30, 150, 20, 50)
    assert t.stop_reason is ir.StopReason.MAX_TOKENS


@pytest.mark.parametrize(
    ("client", "upstream", "status", "body", "want_status", "want_type"),
    [
        (CHAT, ANTHROPIC, 529,
         {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
         503, "server_error"),
        (CHAT, ANTHROPIC, 429,
         {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
         429, "rate_limit_exceeded"),
        (CHAT, ANTHROPIC, 401,
         {"type": "error", "error": {"type": "authentication_error", "message": "key"}},
         401, "invalid_request_error"),
        (ANTHROPIC, CHAT, 503,
         {"error": {"message": "busy", "type": "server_error", "param": None, "code": None}},
         529, "overloaded_error"),
        (ANTHROPIC, CHAT, 400, {"error": {"message": "too long", "type": "invalid_request_error",
                                          "param": None, "code": "context_length_exceeded"}},
         400, "invalid_request_error"),
        (ANTHROPIC, CHAT, 429, {"error": {"message": "quota", "type": "insufficient_quota",
                                          "param": None, "code": "insufficient_quota"}},
         402, "billing_error"),
    ],
)
def test_error_translation(client: str, upstream: str, status: int, body: dict[str, Any],
                           want_status: int, want_type: str) -> None:
    import anthropic
    import openai

    t = Translation(client, upstream, request_id="r", created=0)
    got_status, got_body = t.error(status, jsonio.dumps(body))
    assert got_status == want_status
    obj = jsonio.loads(got_body)
    assert obj["error"]["type"] == want_type and t.failed
    # The client SDK raises its own class for the status.
    if client == CHAT:
        with pytest.raises(openai.APIStatusError) as info:
            openai_nonstream(got_body, got_status)
    else:
        with pytest.raises(anthropic.APIStatusError) as info:
            anthropic_nonstream(got_body, got_status)
    assert info.value.status_code == want_status


def test_error_observe_mode_is_unchanged() -> None:
    t = Translation(ANTHROPIC, ANTHROPIC, request_id="r", created=0)
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert t.error(529, body) == (529, body)


# --------------------------------------------------------------------------------------
# Fuzz harness (tests/test_fuzz_corpus.py replays fuzz/corpus/translate/)
# --------------------------------------------------------------------------------------

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"


def _fuzz_module() -> Any:
    spec = importlib.util.spec_from_file_location("fuzz_translate", FUZZ_DIR / "translate.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    _fuzz_module().check(data)
