"""Translation to and from OpenAI Responses and Gemini, against Chat and Anthropic.

Every transcript goes through every (client, upstream) pair that involves Responses or
Gemini: whole, byte at a time and under random splits (Hypothesis) the output is
identical, and each client's reader gets the expected text, tool calls, reasoning and
usage: the real ``openai`` SDK for Chat (``chat.completions.stream``) and Responses
(``ResponseStreamState`` plus ``client.responses.stream``, with every event checked
against the canonical grammar of §2.5), the real ``anthropic`` SDK for Messages, and a
Gemini stream reader. Each output also matches its checked-in golden file
(``tests/protocols/golden/<client>__<transcript>``; with test_translate_chat_anthropic.py
every client format over every transcript has one). Requests (including the Codex
captures), complete replies and errors are translated too, and reasoning survives a client
round trip: Anthropic thinking through a Responses or Gemini client comes back byte for
byte.

After a deliberate output change, regenerate the goldens with ``TOKENWAY_REGEN_GOLDEN=1
python -m pytest tests/protocols/test_translate_responses_gemini.py -k golden`` and review
the diff by eye.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import gemini as gm
from protocols import ir, jsonio
from protocols import openai_responses as orr
from protocols.errors import UnsupportedFeature
from protocols.gemini import tables as gm_tables
from protocols.translate import Translation
from tests.protocols.conftest import (
    CLIENT_REQUESTS,
    CREATED,
    GOLDEN,
    REQUEST_ID,
    anthropic_final,
    anthropic_nonstream,
    byte_at_a_time,
    capture,
    openai_final,
    openai_nonstream,
    split_at,
    transcript,
)
from tests.protocols.test_gemini import frames, gemini_final
from tests.protocols.test_openai_responses import (
    CODEX_CAPTURES,
    assert_canonical,
    sdk_final,
    sdk_stream_final,
    sse_events,
)

REGEN = os.environ.get("TOKENWAY_REGEN_GOLDEN") == "1"
CHAT, ANTHROPIC = "openai_chat", "anthropic_messages"
RESPONSES, GEMINI = orr.FORMAT, gm.FORMAT
FORMATS = [CHAT, ANTHROPIC, RESPONSES, GEMINI]

TRANSCRIPTS = {
    "openai_chat_stream_text.sse": CHAT,
    "openai_chat_stream_parallel_tool_calls.sse": CHAT,
    "openai_chat_stream_include_usage.sse": CHAT,
    "anthropic_stream_text.sse": ANTHROPIC,
    "anthropic_stream_thinking_tool_use.sse": ANTHROPIC,
    "anthropic_stream_error_midstream.sse": ANTHROPIC,
    "responses_stream_text.sse": RESPONSES,
    "responses_stream_function_call.sse": RESPONSES,
    "gemini_stream_text_crlf.sse": GEMINI,
}

REQUESTS: dict[str, dict[str, Any]] = {
    **CLIENT_REQUESTS,
    RESPONSES: {"model": "test-model", "input": "hi", "stream": True},
    GEMINI: {"model": "test-model", "stream": True,
             "contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
}

THINKING = ("The user wants the current weather in Paris. I have a get_weather tool that takes a "
            "location and an optional unit. Paris, France; Celsius is the local convention.")
SUMMARY = ("**Looking up the weather**\n\nThe user wants today's weather in Paris. I'll call "
           "get_weather with Paris, France in celsius.")

# What every client must read: text, tool calls (id, name, parsed arguments), usage as
# (prompt incl. cache, cached, output), reasoning text, or the upstream error message.
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
        "reasoning": THINKING,
        "tools": [("toolu_01EnCNTFK7cCwUkuRwcqMB13", "get_weather",
                   {"location": "Paris, France", "unit": "celsius"})]},
    "anthropic_stream_error_midstream.sse": {"error": "Overloaded"},
    "responses_stream_text.sse": {
        "text": "Hi there! How can I assist you today?", "tools": [], "usage": (37, 0, 11)},
    "responses_stream_function_call.sse": {
        "text": None, "usage": (68, 0, 149), "reasoning": SUMMARY,
        "tools": [("call_m2lviOGI5XmZ7yE5PJG48PXx", "get_weather",
                   {"location": "Paris, France", "unit": "celsius"})]},
    "gemini_stream_text_crlf.sse": {
        "text": ("Hello (English)\n¡Hola! (Spanish)\nBonjour ! (French)\nHallo (German)\n"
                 "Ciao (Italian)"),
        "tools": [], "usage": (9, 0, 241)},
}

CASES = [(client, name) for name, up in TRANSCRIPTS.items() for client in FORMATS
         if {client, up} & {RESPONSES, GEMINI}]
CASE_IDS = [f"{client}<-{name[:-4]}" for client, name in CASES]


def run(client: str, upstream: str, chunks: list[bytes],
        request: dict[str, Any] | None = None) -> tuple[bytes, Translation]:
    t = Translation(client, upstream, request_id=REQUEST_ID, created=CREATED)
    t.request(copy.deepcopy(request or REQUESTS[client]))
    out = [t.feed(c) for c in chunks]
    out.append(t.finish())
    return b"".join(out), t


def translate(client: str, name: str,
              chunks: list[bytes] | None = None) -> tuple[bytes, Translation]:
    return run(client, TRANSCRIPTS[name], chunks if chunks is not None else [transcript(name)])


def read(client: str, out: bytes, validate: bool = True) -> dict[str, Any]:
    """What ``client``'s reader gets from ``out``: text, tools, usage, reasoning, stop.
    (``validate=False`` for a provider's own bytes passed through in observe mode.)"""
    if client == CHAT:
        final = openai_final(out)
        msg = final.choices[0].message
        u = final.usage
        return {
            "text": msg.content or None,
            "tools": [(c.id, c.function.name, jsonio.loads(c.function.arguments))
                      for c in msg.tool_calls or []],
            "usage": None if u is None else (u.prompt_tokens, u.prompt_tokens_details.cached_tokens,
                                             u.completion_tokens),
            "reasoning": (msg.model_extra or {}).get("reasoning_content"),
            "stop": final.choices[0].finish_reason,
        }
    if client == ANTHROPIC:
        final = anthropic_final(out)
        u = final.usage
        prompt = (u.input_tokens + (u.cache_read_input_tokens or 0)
                  + (u.cache_creation_input_tokens or 0))
        thinking = [b.thinking for b in final.content if b.type == "thinking"]
        return {
            "text": "".join(b.text for b in final.content if b.type == "text") or None,
            "tools": [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"],
            "usage": (prompt, u.cache_read_input_tokens or 0, u.output_tokens),
            "reasoning": thinking[0] if thinking else None,
            "stop": final.stop_reason,
        }
    if client == RESPONSES:
        resp = assert_canonical(sse_events(out, validate))
        final = sdk_final(out, validate)
        assert sdk_stream_final(out).output_text == final.output_text
        summaries = [s.text for o in final.output if o.type == "reasoning" for s in o.summary]
        u = final.usage
        calls = [o for o in final.output if o.type == "function_call"]
        return {
            "text": final.output_text or None,
            "tools": [(o.call_id, o.name, jsonio.loads(o.arguments)) for o in calls],
            "usage": (u.input_tokens, u.input_tokens_details.cached_tokens, u.output_tokens),
            "reasoning": "\n\n".join(summaries) or None,
            "stop": resp["status"],
            "fc_ids": [o.id for o in calls],
        }
    final = gemini_final(out)
    u = final["usage"]
    return {
        "text": final["text"] or None,
        "tools": [(c["id"], c["name"], c["args"]) for c in final["calls"]],
        "usage": (u["promptTokenCount"], u.get("cachedContentTokenCount", 0),
                  u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0)),
        "reasoning": final["thoughts"] or None,
        "stop": final["finish"],
    }


# --------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("client", "name"), CASES, ids=CASE_IDS)
def test_whole_equals_byte_at_a_time(client: str, name: str) -> None:
    whole, t = translate(client, name)
    bytewise, _ = translate(client, name, byte_at_a_time(transcript(name)))
    assert bytewise == whole
    if t.observe:
        assert whole == transcript(name)


@pytest.mark.parametrize(("client", "name"), CASES, ids=CASE_IDS)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=11000), max_size=50))
def test_random_splits(client: str, name: str, cuts: list[int]) -> None:
    whole, _ = translate(client, name)
    split, _ = translate(client, name, split_at(transcript(name), cuts))
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


def test_every_pair_has_a_golden() -> None:
    """With test_translate_chat_anthropic.py's goldens, every client format has one over
    every transcript."""
    expected = {f"{client}__{name}" for name in TRANSCRIPTS for client in FORMATS}
    assert expected <= {p.name for p in GOLDEN.iterdir()}


@pytest.mark.parametrize(("client", "name"), CASES, ids=CASE_IDS)
def test_client_reads_the_stream(client: str, name: str) -> None:
    import anthropic
    import openai

    out, t = translate(client, name)
    exp = EXPECTED[name]
    if "error" in exp:
        raises = {CHAT: openai.APIError, ANTHROPIC: anthropic.APIStatusError,
                  RESPONSES: RuntimeError, GEMINI: RuntimeError}[client]
        with pytest.raises(raises):
            sdk_final(out) if client == RESPONSES else read(client, out)
        if client == RESPONSES:
            failed = sse_events(out)[-1]
            assert failed["type"] == "response.failed"
            # Anthropic's overloaded_error is a code Codex retries (§2.7, §5.6).
            assert failed["response"]["error"] == {"code": "server_is_overloaded",
                                                   "message": "Overloaded"}
        if client == GEMINI:
            assert frames(out)[-1]["error"]["status"] == "UNAVAILABLE"
        assert t.failed and t.stop_reason is None
        return
    assert not t.failed
    got = read(client, out, validate=not t.observe)
    assert got["text"] == exp["text"]
    assert got["tools"] == exp["tools"], "tool ids, names and arguments survive (§5.3)"
    if exp["usage"] is not None:
        assert got["usage"] == exp["usage"]
        assert (t.usage.input_tokens, t.usage.cached_tokens, t.usage.output_tokens) == exp["usage"]
    if "reasoning" in exp and client != GEMINI or (client == GEMINI and "reasoning" in exp
                                                    and TRANSCRIPTS[name] != GEMINI):
        assert got["reasoning"] == exp["reasoning"]
    stops = {CHAT: ("stop", "tool_calls"), ANTHROPIC: ("end_turn", "tool_use"),
             RESPONSES: ("completed", "completed"), GEMINI: ("STOP", "STOP")}[client]
    assert got["stop"] == stops[bool(exp["tools"])]
    if client == RESPONSES:
        # Fresh fc_ item ids; the upstream tool id is the call_id (§5.3).
        assert all(i.startswith("fc_") for i in got["fc_ids"])
    assert t.tool_calls_seen == len(exp["tools"])
    assert t.stop_reason is (ir.StopReason.TOOL_USE if exp["tools"] else ir.StopReason.END_TURN)
    assert t.model and t.model != "test-model"


@pytest.mark.parametrize("client", FORMATS)
@pytest.mark.parametrize("name", ["responses_stream_text.sse", "responses_stream_function_call.sse",
                                  "gemini_stream_text_crlf.sse"])
def test_cut_upstream_becomes_client_error(client: str, name: str) -> None:
    import anthropic
    import openai

    raw = transcript(name)
    if TRANSCRIPTS[name] == RESPONSES:
        cut = raw[: raw.index(b"event: response.completed")]
    else:
        cut = raw[: raw.index(b'"finishReason"')]
        cut = cut[: cut.rindex(b"\r\n\r\n") + 4]
    out, t = run(client, TRANSCRIPTS[name], [cut])
    assert t.failed
    if t.observe:
        assert out == cut
        return
    raises = {CHAT: openai.APIError, ANTHROPIC: anthropic.APIStatusError,
              RESPONSES: RuntimeError, GEMINI: RuntimeError}[client]
    with pytest.raises(raises):
        sdk_final(out) if client == RESPONSES else read(client, out)
    if client == RESPONSES:
        assert_canonical(sse_events(out))  # a cut item is left unfinished, then failed


def test_responses_client_tool_calls_are_read_from_item_done() -> None:
    """Codex takes tool calls only from ``output_item.done`` (§2.7): each one must hold
    the full arguments string and status completed, whatever the upstream."""
    for name in ("openai_chat_stream_parallel_tool_calls.sse",
                 "anthropic_stream_thinking_tool_use.sse"):
        out, _ = translate(RESPONSES, name)
        done = [e["item"] for e in sse_events(out) if e["type"] == "response.output_item.done"
                and e["item"]["type"] == "function_call"]
        assert [(d["call_id"], d["name"], jsonio.loads(d["arguments"])) for d in done] == \
            EXPECTED[name]["tools"]
        assert all(d["status"] == "completed" and type(d["arguments"]) is str for d in done)


# --------------------------------------------------------------------------------------
# Reasoning continuity through the client (§2.7, §5.8 case 11)
# --------------------------------------------------------------------------------------


def _completed_output(out: bytes) -> list[dict[str, Any]]:
    return sse_events(out)[-1]["response"]["output"]


def test_anthropic_thinking_survives_a_codex_turn() -> None:
    out, _ = translate(RESPONSES, "anthropic_stream_thinking_tool_use.sse")
    items = _completed_output(out)
    call = items[2]
    turn2 = {"model": "claude", "stream": True, "store": False,
             "include": ["reasoning.encrypted_content"],
             "input": [{"role": "user", "content": "weather?"}, *items,
                       {"type": "function_call_output", "call_id": call["call_id"],
                        "output": "18C"}]}
    t = Translation(RESPONSES, ANTHROPIC, request_id=REQUEST_ID, created=CREATED)
    body = t.request(turn2)
    assistant = body["messages"][1]
    raw = transcript("anthropic_stream_thinking_tool_use.sse").decode()
    sig = raw.split('"signature":"')[-1].split('"')[0]
    assert assistant["content"][0] == {"type": "thinking", "thinking": THINKING, "signature": sig}
    assert assistant["content"][2]["id"] == "toolu_01EnCNTFK7cCwUkuRwcqMB13"
    assert body["messages"][2]["content"][0]["tool_use_id"] == "toolu_01EnCNTFK7cCwUkuRwcqMB13"
    # The same history to an OpenAI-family or Gemini upstream: the payload is dropped.
    for upstream in (CHAT, GEMINI):
        t = Translation(RESPONSES, upstream, request_id=REQUEST_ID, created=CREATED)
        assert "tw1:" not in jsonio.dumps(t.request(copy.deepcopy(turn2))).decode()


def test_anthropic_thinking_survives_a_gemini_client_turn() -> None:
    out, _ = translate(GEMINI, "anthropic_stream_thinking_tool_use.sse")
    parts = [p for f in frames(out) for c in f.get("candidates", [])
             for p in c["content"]["parts"]]
    model_parts = [p for p in parts
                   if p.get("text") or p.get("thoughtSignature") or "functionCall" in p]
    call = next(p["functionCall"] for p in parts if "functionCall" in p)
    turn2 = {"model": "claude", "stream": True, "contents": [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": model_parts},
        {"role": "user", "parts": [{"functionResponse": {"id": call["id"], "name": call["name"],
                                                        "response": {"result": "18C"}}}]}]}
    t = Translation(GEMINI, ANTHROPIC, request_id=REQUEST_ID, created=CREATED)
    body = t.request(turn2)
    content = body["messages"][1]["content"]
    thinking = [b for b in content if b["type"] == "thinking"]
    assert len(thinking) == 1 and thinking[0]["thinking"] == THINKING
    assert thinking[0]["signature"].startswith("ErN6")
    assert body["messages"][2]["content"][0]["tool_use_id"] == "toolu_01EnCNTFK7cCwUkuRwcqMB13"


def test_gemini_thought_signature_survives_a_codex_turn() -> None:
    """Gemini puts a thoughtSignature on the first functionCall and needs it back on
    that part; a Responses client carries it in a reasoning item."""
    upstream = (b'data: {"candidates":[{"content":{"role":"model","parts":[{"functionCall":'
                b'{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"CiQBgemSig=="}]},'
                b'"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":5,'
                b'"candidatesTokenCount":7,"totalTokenCount":12},"modelVersion":"gemini-3-pro",'
                b'"responseId":"r-1"}\r\n\r\n')
    creq = {"model": "gemini-3-pro", "input": "weather?", "stream": True, "tools": [
        {"type": "function", "name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}]}
    out, _ = run(RESPONSES, GEMINI, [upstream], creq)
    items = _completed_output(out)
    assert [i["type"] for i in items] == ["reasoning", "function_call"]
    assert items[1]["call_id"] == gm_tables.synth_tool_id("r-1", 0, "get_weather")
    turn2 = {**creq, "input": [{"role": "user", "content": "weather?"}, *items,
                               {"type": "function_call_output", "call_id": items[1]["call_id"],
                                "output": "18C"}]}
    t = Translation(RESPONSES, GEMINI, request_id=REQUEST_ID, created=CREATED)
    body = t.request(turn2)
    assert body["contents"][1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
         "thoughtSignature": "CiQBgemSig=="}]}
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}}]}


def test_openai_reasoning_is_dropped_for_other_upstreams() -> None:
    items = sse_events(transcript("responses_stream_function_call.sse"), validate=False)[-1][
        "response"]["output"]
    assert items[0]["encrypted_content"].startswith("gAAAA")
    turn = {"model": "m", "input": [{"role": "user", "content": "hi"}, *items]}
    for upstream in (ANTHROPIC, CHAT, GEMINI):
        t = Translation(RESPONSES, upstream, request_id=REQUEST_ID, created=CREATED)
        assert "gAAAA" not in jsonio.dumps(t.request(copy.deepcopy(turn))).decode()


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", [CHAT, ANTHROPIC, GEMINI])
def test_codex_lean_capture_translates(upstream: str) -> None:
    body = capture(CODEX_CAPTURES[0])["body"]
    t = Translation(RESPONSES, upstream, request_id=REQUEST_ID, created=CREATED)
    out = t.request(copy.deepcopy(body))
    text = jsonio.dumps(out).decode()
    if upstream != GEMINI:  # Gemini pairs calls and results by name and order (§4)
        assert "call_9120e7313f0e43be9256524d" in text  # the call_id pairs call and output
    assert "fc_d3d9d5b7465647578b0a002b" not in text  # the item id stays behind (§5.3)
    if upstream == CHAT:
        roles = [m["role"] for m in out["messages"]]
        assert roles == ["developer", "developer", "user", "user", "assistant", "tool"]
        assert out["messages"][4]["tool_calls"][0]["function"]["name"] == "exec_command"
        assert out["stream"] and out["stream_options"]["include_usage"]
    elif upstream == ANTHROPIC:
        assert "You are a coding agent" in out["system"]
        assert out["messages"][-1]["content"][0]["type"] == "tool_result"
        assert out["max_tokens"] > 0 and out["stream"]
    else:
        assert "You are a coding agent" in out["systemInstruction"]["parts"][0]["text"]
        assert [c["role"] for c in out["contents"]] == ["user", "model", "user"]
        fr = out["contents"][2]["parts"][0]["functionResponse"]
        assert fr["name"] == "exec_command" and "hi" in fr["response"]["result"]
        decls = out["tools"][0]["functionDeclarations"]
        assert all("additionalProperties" not in jsonio.dumps(d).decode() for d in decls)


@pytest.mark.parametrize("upstream", [CHAT, ANTHROPIC, GEMINI])
def test_codex_builtins_are_dropped_or_refused_for_other_upstreams(upstream: str) -> None:
    t = Translation(RESPONSES, upstream, request_id=REQUEST_ID, created=CREATED)
    t.request(capture(CODEX_CAPTURES[1])["body"])
    assert "tool_search" in t.context.dropped_tools
    t = Translation(RESPONSES, upstream, request_id=REQUEST_ID, created=CREATED)
    t.context.builtin_tools = "refuse"
    with pytest.raises(UnsupportedFeature) as e:
        t.request(capture(CODEX_CAPTURES[1])["body"])
    assert e.value.param == "tools"


def test_codex_apply_patch_to_anthropic_and_back() -> None:
    body = copy.deepcopy(capture(CODEX_CAPTURES[1])["body"])
    body["tools"] = [t for t in body["tools"] if t["type"] in ("function", "custom")]
    t = Translation(RESPONSES, ANTHROPIC, request_id=REQUEST_ID, created=CREATED)
    out = t.request(body)
    tool = next(x for x in out["tools"] if x["name"] == "apply_patch")
    assert tool["input_schema"]["required"] == ["input"]
    use = out["messages"][-2]["content"][-1]
    assert use["type"] == "tool_use" and use["input"]["input"].startswith("*** Begin Patch")
    # The model calls apply_patch; Codex gets a custom_tool_call with the raw patch.
    patch = "*** Begin Patch\n*** Add File: b.txt\n+hi\n*** End Patch\n"
    up = "".join([
        'event: message_start\ndata: {"type":"message_start",'
        '"message":{"id":"msg_1","type":"message","role":"assistant","model":"claude",'
        '"content":[],"stop_reason":null,"stop_sequence":null,'
        '"usage":{"input_tokens":5,"output_tokens":1}}}\n\n',
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
        '{"type":"tool_use","id":"toolu_9","name":"apply_patch","input":{}}}\n\n',
        'event: content_block_delta\ndata: ' + jsonio.dumps({
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta",
                      "partial_json": jsonio.dumps({"input": patch}).decode()}}).decode()
        + "\n\n",
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use",'
        '"stop_sequence":null},"usage":{"output_tokens":9}}\n\n',
        'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]).encode()
    stream = t.feed(up) + t.finish()
    item = _completed_output(stream)[0]
    assert item["type"] == "custom_tool_call" and item["input"] == patch
    assert item["call_id"] == "toolu_9"


def test_gemini_client_request_to_every_upstream() -> None:
    body = {"model": "gemini-2.5-flash", "stream": True,
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "weather?"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {"c": "P"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "w",
                                                                 "response": {"result": "18C"}}}]}],
            "tools": [{"functionDeclarations": [{"name": "w", "parameters": {
                "type": "OBJECT", "properties": {"c": {"type": "STRING"}}}}]}],
            "generationConfig": {"maxOutputTokens": 99, "stopSequences": ["X"]}}
    for upstream in (CHAT, ANTHROPIC, RESPONSES):
        t = Translation(GEMINI, upstream, request_id=REQUEST_ID, created=CREATED)
        if upstream == RESPONSES:
            with pytest.raises(UnsupportedFeature, match="stop"):
                t.request(copy.deepcopy(body))
            b = copy.deepcopy(body)
            del b["generationConfig"]["stopSequences"]
            out = t.request(b)
            call, result = out["input"][1], out["input"][2]
            assert call["call_id"] == result["call_id"] and call["name"] == "w"
            assert out["tools"][0]["parameters"]["properties"]["c"]["type"] == "string"
            continue
        out = t.request(copy.deepcopy(body))
        text = jsonio.dumps(out).decode()
        ids = {tid for tid in text.split('"') if tid.startswith("call_")}
        assert len(ids) == 1  # the synthesised call id pairs the call with its result
        if upstream == ANTHROPIC:
            assert out["system"] == "Be brief."
            assert out["tools"][0]["input_schema"]["type"] == "object"
            assert out["max_tokens"] == 99 and out["stop_sequences"] == ["X"]


# --------------------------------------------------------------------------------------
# Complete replies
# --------------------------------------------------------------------------------------

REPLIES: dict[str, dict[str, Any]] = {
    RESPONSES: {
        "id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
        "model": "gpt-5", "output": [
            {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "Hi!", "annotations": []}]},
            {"id": "fc_1", "type": "function_call", "status": "completed", "arguments": '{"a":1}',
             "call_id": "call_1", "name": "f"}],
        "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4},
                  "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 15}},
    GEMINI: {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Hi!"}, {"functionCall": {"name": "f", "args": {"a": 1}}}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15,
                          "cachedContentTokenCount": 4},
        "modelVersion": "gemini-2.5-flash", "responseId": "r-1"},
}


@pytest.mark.parametrize("upstream", [RESPONSES, GEMINI])
@pytest.mark.parametrize("client", FORMATS)
def test_complete_replies(client: str, upstream: str) -> None:
    t = Translation(client, upstream, request_id=REQUEST_ID, created=CREATED)
    t.request({**copy.deepcopy(REQUESTS[client]), "stream": False})
    out = t.response(copy.deepcopy(REPLIES[upstream]))
    call_id = "call_1" if upstream == RESPONSES else gm_tables.synth_tool_id("r-1", 0, "f")
    assert (t.usage.input_tokens, t.usage.cached_tokens, t.usage.output_tokens) == (10, 4, 5)
    assert t.stop_reason is ir.StopReason.TOOL_USE and t.tool_calls_seen == 1
    if t.observe:
        assert out == REPLIES[upstream]
        return
    raw = jsonio.dumps(out)
    if client == CHAT:
        msg = openai_nonstream(raw).choices[0]
        assert msg.message.content == "Hi!" and msg.finish_reason == "tool_calls"
        assert msg.message.tool_calls[0].id == call_id
    elif client == ANTHROPIC:
        msg = anthropic_nonstream(raw)
        assert msg.content[0].text == "Hi!" and msg.content[1].id == call_id
        assert msg.stop_reason == "tool_use" and msg.usage.cache_read_input_tokens == 4
    elif client == RESPONSES:
        from openai.types.responses import Response as SDKResponse

        sdk = SDKResponse.model_validate(out)
        assert sdk.output_text == "Hi!" and sdk.output[1].call_id == call_id
        assert sdk.usage.total_tokens == 15 and sdk.status == "completed"
    else:
        parts = out["candidates"][0]["content"]["parts"]
        assert parts == [{"text": "Hi!"}, {"functionCall": {"name": "f", "args": {"a": 1},
                                                            "id": call_id}}]
        assert out["usageMetadata"]["cachedContentTokenCount"] == 4


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", FORMATS)
def test_gemini_upstream_errors(client: str) -> None:
    t = Translation(client, GEMINI, request_id=REQUEST_ID, created=CREATED)
    t.request(copy.deepcopy(REQUESTS[client]))
    body = b'{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}'
    status, out = t.error(503, body)
    obj = jsonio.loads(out)
    expected_status = {CHAT: 503, ANTHROPIC: 529, RESPONSES: 503, GEMINI: 503}[client]
    assert status == expected_status and t.failed
    if client == ANTHROPIC:
        assert obj["error"]["type"] == "overloaded_error"
    elif client == GEMINI:
        assert obj == jsonio.loads(body)
    else:
        assert obj["error"]["message"] == "The model is overloaded."


@pytest.mark.parametrize("client", FORMATS)
def test_responses_upstream_errors(client: str) -> None:
    t = Translation(client, RESPONSES, request_id=REQUEST_ID, created=CREATED)
    t.request(copy.deepcopy(REQUESTS[client]))
    body = (b'{"error":{"message":"Rate limit reached. Please try again in 1.898s",'
            b'"type":"requests","param":null,"code":"rate_limit_exceeded"}}')
    status, out = t.error(429, body)
    assert status == 429
    if client == GEMINI:
        assert jsonio.loads(out)["error"]["status"] == "RESOURCE_EXHAUSTED"
