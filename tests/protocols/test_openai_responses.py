"""OpenAI Responses codec: requests, replies, streams and errors (docs/protocols.md §2).

The stream encoder's output is read back three ways: by a checker of the canonical event
grammar of §2.5 (order, gap-free ``sequence_number``, ``event:`` = ``type``, ``*.done``
text equal to the deltas, terminal ``output`` repeating the done items), by the SDK's own
pydantic model for every event type, and by the state machine behind
``client.responses.stream`` (``ResponseStreamState`` fed by ``openai._streaming.SSEDecoder``
in 1–5 byte chunks).
"""

from __future__ import annotations

import copy
import json
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import ir, jsonio
from protocols import openai_responses as orr
from protocols._streams import MAX_HELD_CHARS
from protocols.errors import (
    ClientProtocolError,
    UnsupportedFeature,
    UpstreamProtocolError,
)
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
from protocols.openai_responses import payload as orr_payload
from protocols.openai_responses import tables as orr_tables
from tests.protocols.conftest import (
    CREATED,
    REQUEST_ID,
    byte_at_a_time,
    capture,
    random_chunks,
    split_at,
    transcript,
)

FMT = orr.FORMAT
RESPONSES_TRANSCRIPTS = ["responses_stream_text.sse", "responses_stream_function_call.sse"]
CODEX_CAPTURES = [
    "codex-0.171.0-lean-turn2-function_call_output.json",
    "codex-0.171.0-gpt-5.5-turn2-custom_tool_call_output.json",
]


def ctx(client: str = FMT, upstream: str = FMT, request: ir.Request | None = None) -> ir.Context:
    c = ir.Context(request_id=REQUEST_ID, created=CREATED, client_format=client,
                   upstream_format=upstream)
    c.client_request = request
    return c


def decode_stream(chunks: list[bytes], **kw: Any) -> list[ir.StreamEvent]:
    d = orr.StreamDecoder(ctx(), **kw)
    events: list[ir.StreamEvent] = []
    for c in chunks:
        events += d.feed(c)
    return events + d.close()


def encode_stream(events: list[ir.StreamEvent], request: ir.Request | None = None,
                  client: str = "anthropic_messages") -> bytes:
    """Encode for a Responses client (the upstream named ``client`` is the other side)."""
    c = ctx(FMT, client, request)
    enc = orr.StreamEncoder(c)
    return enc.encode(events) + enc.close()


# --------------------------------------------------------------------------------------
# Reading an encoded stream back: grammar, SDK models, SDK accumulator
# --------------------------------------------------------------------------------------


def _event_models() -> dict[str, Any]:
    from openai.types.responses import ResponseStreamEvent

    union = typing.get_args(typing.get_args(ResponseStreamEvent)[0])
    return {typing.get_args(cls.model_fields["type"].annotation)[0]: cls for cls in union}


EVENT_MODELS = _event_models()


def _sdk_typed(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with a ``response.error.code`` the SDK's type lists. That type names only a
    subset of the codes Codex classifies (``server_is_overloaded``,
    ``insufficient_quota``, ``context_length_exceeded``…, §2.7); the SDK itself builds
    events without validating, so such codes reach its users unchanged."""
    err = obj.get("response", {}).get("error") if type(obj.get("response")) is dict else None
    if type(err) is dict and err.get("code") in orr_tables.CODEX_ERROR_CODES:
        obj = copy.deepcopy(obj)
        obj["response"]["error"]["code"] = "server_error"
    return obj


def sse_events(body: bytes, validate: bool = True) -> list[dict[str, Any]]:
    """Events as the OpenAI SDK's SSE decoder reads them (1–5 byte chunks); each one is
    validated against the SDK's model for its type, and its ``event:`` line is checked.
    (``validate=False`` for provider transcripts: they predate fields the current SDK types
    require, such as ``input_tokens_details.cache_write_tokens``.)"""
    from openai._streaming import SSEDecoder

    out = []
    for sse in SSEDecoder().iter_bytes(iter(random_chunks(body, seed=len(body), max_len=5))):
        obj = json.loads(sse.data)
        assert sse.event == obj["type"], "event: line must equal data.type (§2.5)"
        if validate:
            EVENT_MODELS[obj["type"]].model_validate(_sdk_typed(obj))
        out.append(obj)
    return out


def sdk_final(body: bytes, validate: bool = True) -> Any:
    """The completed response as ``ResponseStreamState`` (behind ``responses.stream``)
    accumulates it; raises what the SDK raises."""
    from openai._models import construct_type
    from openai._types import omit
    from openai.lib.streaming.responses._responses import ResponseStreamState
    from openai.types.responses import ResponseStreamEvent

    state: Any = ResponseStreamState(input_tools=omit, text_format=omit)
    final = None
    for obj in sse_events(body, validate):
        for ev in state.handle_event(construct_type(type_=ResponseStreamEvent, value=obj)):
            if ev.type == "response.completed":
                final = ev.response
    if final is None:
        raise RuntimeError("Didn't receive a `response.completed` event.")
    return final


def sdk_stream_final(body: bytes) -> Any:
    """The same through the real ``client.responses.stream`` over a mock transport."""
    import httpx2
    import openai

    def handler(request: Any) -> Any:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                               content=body)

    client = openai.OpenAI(api_key="test", base_url="http://gateway.test/v1", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    with client.responses.stream(model="test-model", input="hi") as stream:
        for _ in stream:
            pass
        return stream.get_final_response()


_ITEM_GRAMMAR = {
    "message": ["response.content_part.added", "response.output_text.delta*",
                "response.output_text.done", "response.content_part.done"],
    "function_call": ["response.function_call_arguments.delta*",
                      "response.function_call_arguments.done"],
    "custom_tool_call": ["response.custom_tool_call_input.delta*",
                         "response.custom_tool_call_input.done"],
    "local_shell_call": [],
}
_SUMMARY_PART = ["response.reasoning_summary_part.added", "response.reasoning_summary_text.delta*",
                 "response.reasoning_summary_text.done", "response.reasoning_summary_part.done"]


def assert_canonical(events: list[dict[str, Any]], *, keepalives: bool = False) -> dict[str, Any]:
    """Check the canonical grammar of §2.5 and return the terminal response object.

    Before ``response.failed`` an item may be left unfinished: an upstream that failed
    mid-item must not produce an ``output_item.done`` (Codex would run a half-written
    tool call, §2.7), so the events of that last item are skipped."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    if events[-1]["type"] == "response.failed":
        ends = [i for i, e in enumerate(events[:-1])
                if e["type"] == "response.output_item.done" or i == 1]
        events = events[: ends[-1] + 1] + events[-1:]
    if keepalives:
        events = [e for i, e in enumerate(events) if i < 2 or e["type"] != "response.in_progress"]
    assert events[0]["type"] == "response.created"
    created = events[0]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    assert events[1]["type"] == "response.in_progress"
    i, done_items = 2, []
    while events[i]["type"] == "response.output_item.added":
        added = events[i]
        k = added["output_index"]
        assert k == len(done_items), "output_index runs 0, 1, 2… in order"
        item = added["item"]
        i += 1
        if item["type"] == "reasoning":
            assert item["summary"] == []
            parts = []
            while events[i]["type"] == "response.reasoning_summary_part.added":
                texts = []
                assert events[i]["summary_index"] == len(parts)
                i += 1
                while events[i]["type"] == "response.reasoning_summary_text.delta":
                    texts.append(events[i]["delta"])
                    i += 1
                assert events[i]["type"] == "response.reasoning_summary_text.done"
                assert events[i]["text"] == "".join(texts)
                assert events[i + 1]["type"] == "response.reasoning_summary_part.done"
                assert events[i + 1]["part"]["text"] == "".join(texts)
                parts.append("".join(texts))
                i += 2
        else:
            deltas = []
            for step in _ITEM_GRAMMAR[item["type"]]:
                if step.endswith("*"):
                    while events[i]["type"] == step[:-1]:
                        assert events[i]["output_index"] == k and events[i]["item_id"] == item["id"]
                        deltas.append(events[i]["delta"])
                        i += 1
                else:
                    assert events[i]["type"] == step, (i, events[i]["type"], step)
                    assert events[i]["output_index"] == k
                    if step.endswith(".done") and "text" in events[i]:
                        assert events[i]["text"] == "".join(deltas)
                    if step.endswith("arguments.done"):
                        assert events[i]["arguments"] == "".join(deltas)
                    if step.endswith("input.done"):
                        assert events[i]["input"] == "".join(deltas)
                    i += 1
        done = events[i]
        assert done["type"] == "response.output_item.done" and done["output_index"] == k
        assert done["item"]["id"] == item["id"] and done["item"]["type"] == item["type"]
        if item["type"] == "function_call":
            assert item["status"] == "in_progress" and item["arguments"] == ""
            assert done["item"]["status"] == "completed"
            assert isinstance(done["item"]["arguments"], str)
            assert item["id"].startswith("fc_") and done["item"]["call_id"] == item["call_id"]
        if item["type"] == "reasoning":
            assert [s["text"] for s in done["item"]["summary"]] == parts
        done_items.append(done["item"])
        i += 1
    terminal = events[i]
    assert i == len(events) - 1, "nothing follows the terminal event"
    assert terminal["type"] in ("response.completed", "response.incomplete", "response.failed")
    resp = terminal["response"]
    assert resp["status"] == terminal["type"].split(".")[1]
    assert resp["id"] == created["id"]
    assert resp["output"] == done_items, "the terminal output repeats every done item"
    u = resp["usage"]
    assert all(type(u[k]) is int for k in ("input_tokens", "output_tokens", "total_tokens"))
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    assert type(u["input_tokens_details"]["cached_tokens"]) is int
    assert type(u["output_tokens_details"]["reasoning_tokens"]) is int
    return resp


# --------------------------------------------------------------------------------------
# Requests: wire -> IR
# --------------------------------------------------------------------------------------

PNG = "iVBORw0KGgo="
TW1 = orr_payload.encode_reasoning_payload(ir.Reasoning(
    text="Let me think.", signature="EqQBCkYIBxgCKkC", provider="anthropic_messages"))

FULL_REQUEST: dict[str, Any] = {
    "model": "gpt-5",
    "instructions": "Be brief.",
    "input": [
        {"type": "message", "role": "developer",
         "content": [{"type": "input_text", "text": "Rules."}]},
        {"role": "user", "content": "Describe these."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Look:"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "low"},
            {"type": "input_image", "image_url": "https://example.com/cat.jpg"},
            {"type": "input_image", "file_id": "file-abc"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=",
             "filename": "a.pdf"},
        ]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Plan."}],
         "encrypted_content": "gAAAAABoOpenAIblob"},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Two animals.", "annotations": [],
                      "logprobs": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup",
         "arguments": "{\"q\":\"cat\"}", "status": "completed"},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_2", "name": "apply_patch",
         "input": "*** Begin Patch\n*** End Patch\n", "status": "completed"},
        {"type": "local_shell_call", "id": "lsh_1", "call_id": "call_3", "status": "completed",
         "action": {"type": "exec", "command": ["ls", "-l"], "timeout_ms": 1000}},
        {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done."},
        {"type": "local_shell_call_output", "id": "call_3", "output": "total 0"},
        {"type": "function_call_output", "call_id": "call_1", "output": [
            {"type": "input_text", "text": "screenshot:"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
        ]},
        {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": TW1},
        {"type": "message", "role": "assistant", "content": [
            {"type": "refusal", "refusal": "I can't."}]},
        {"role": "assistant", "content": "Plain assistant string."},
        {"type": "message", "role": "user", "content": []},
    ],
    "tools": [
        {"type": "function", "name": "lookup", "description": "Look up", "strict": True,
         "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                        "required": ["q"], "additionalProperties": False}},
        {"type": "custom", "name": "apply_patch", "description": "Patch files",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
        {"type": "local_shell"},
    ],
    "tool_choice": {"type": "function", "name": "lookup"},
    "parallel_tool_calls": False,
    "max_output_tokens": 512,
    "temperature": 0.5,
    "top_p": 0.9,
    "text": {"format": {"type": "json_schema", "name": "answer", "strict": True,
                        "schema": {"type": "object", "properties": {}}}, "verbosity": "low"},
    "reasoning": {"effort": "high", "summary": "detailed"},
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "thread-1",
    "stream": True,
    "user": "u-1",
    "metadata": {"k": "v"},
}


def test_decode_full_request() -> None:
    req = orr.decode_request(copy.deepcopy(FULL_REQUEST))
    assert req.model == "gpt-5" and req.system == (ir.Text("Be brief."),)
    assert req.max_output_tokens == 512 and req.temperature == 0.5 and req.stream
    assert req.tool_choice == ir.ToolChoice(mode="tool", name="lookup", disable_parallel=True)
    assert req.response_format == ir.ResponseFormat(
        type="json_schema", name="answer", schema={"type": "object", "properties": {}}, strict=True)
    assert req.reasoning == ir.ReasoningConfig(effort="high", summary="detailed")
    roles = [m.role for m in req.messages]
    assert roles == [ir.Role.DEVELOPER, ir.Role.USER, ir.Role.USER, ir.Role.ASSISTANT,
                     ir.Role.USER, ir.Role.ASSISTANT, ir.Role.USER]
    user = req.messages[2].content
    assert user[1] == ir.Image(media_type="image/png", data=PNG, detail="low")
    assert user[2].url == "https://example.com/cat.jpg" and user[3].file_id == "file-abc"
    assert type(user[4]) is ir.File and user[4].media_type == "application/pdf"
    assistant = req.messages[3].content
    kinds = [type(b).__name__ for b in assistant]
    assert kinds == ["Reasoning", "Text", "ToolCall", "ToolCall", "ToolCall"]
    assert assistant[0].provider == FMT and assistant[0].encrypted == "gAAAAABoOpenAIblob"
    assert assistant[2].id == "call_1" and assistant[2].kind is ToolKind.FUNCTION
    assert assistant[3].kind is ToolKind.CUSTOM and assistant[3].arguments.startswith("*** Begin")
    assert assistant[4].kind is ToolKind.LOCAL_SHELL and assistant[4].name == "local_shell"
    assert jsonio.loads(assistant[4].arguments)["command"] == ["ls", "-l"]
    results = req.messages[4].content
    assert [(r.id, r.kind) for r in results] == [
        ("call_1", ToolKind.FUNCTION), ("call_2", ToolKind.CUSTOM),
        ("call_3", ToolKind.LOCAL_SHELL), ("call_1", ToolKind.FUNCTION)]
    assert type(results[3].content[1]) is ir.Image  # function_call_output may hold images
    foreign = req.messages[5].content[0]
    assert foreign == ir.Reasoning(text="Let me think.", signature="EqQBCkYIBxgCKkC",
                                   id="rs_2", provider="anthropic_messages",
                                   extras=foreign.extras)
    tools = req.tools
    assert type(tools[0]) is ir.FunctionTool and tools[0].strict is True
    assert type(tools[1]) is ir.CustomTool and tools[1].format["syntax"] == "lark"
    assert type(tools[2]) is ir.FunctionTool and tools[2].name == "local_shell"
    assert tools[2].parameters == orr_tables.LOCAL_SHELL_PARAMETERS


def test_request_round_trip_full() -> None:
    body = copy.deepcopy(FULL_REQUEST)
    req = orr.decode_request(body)
    out = orr.encode_request(req)
    # Another provider's reasoning can only go back to that provider (§5.8 case 11).
    expected = copy.deepcopy(FULL_REQUEST)
    expected["input"] = [i for i in expected["input"] if i.get("id") != "rs_2"]
    assert out == expected
    assert body == FULL_REQUEST  # the input is not modified


@pytest.mark.parametrize("body", [
    {"model": "m", "input": "Hello!"},
    {"model": "m", "input": "", "instructions": ""},
    {"model": "m", "input": [], "tools": [], "stream": False},
    {"model": "m", "input": [{"role": "user", "content": "hi"}], "tool_choice": "required",
     "parallel_tool_calls": True},
    {"model": "m", "input": [{"role": "user", "content": "hi"}], "tool_choice": "none"},
    {"model": "m", "input": "x", "tool_choice": {"type": "allowed_tools", "mode": "required",
                                                 "tools": [{"type": "function", "name": "a"}]}},
    {"model": "m", "input": "x", "tool_choice": {"type": "custom", "name": "apply_patch"}},
    {"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}},
    {"model": "m", "input": "x", "text": {"verbosity": "low"}, "reasoning": {"summary": "auto"}},
    {"model": "m", "input": "x", "reasoning": {"effort": None, "summary": None}},
    {"model": "m", "input": "x", "tools": [{"type": "web_search", "external_web_access": True}],
     "tool_choice": {"type": "web_search"}},
    {"model": "m", "input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"},
                             {"type": "item_reference", "id": "msg_9"}]},
    {"model": "m", "input": [{"type": "message", "role": "assistant", "content": []}]},
])
def test_request_round_trip(body: dict[str, Any]) -> None:
    assert orr.encode_request(orr.decode_request(copy.deepcopy(body))) == body


@pytest.mark.parametrize("name", CODEX_CAPTURES)
def test_codex_captures_decode_and_round_trip(name: str) -> None:
    body = capture(name)["body"]
    req = orr.decode_request(copy.deepcopy(body))
    assert req.stream and req.model == body["model"]
    assert req.messages[0].role is ir.Role.DEVELOPER  # Codex's base prompt (no instructions)
    last_two = [type(b).__name__ for m in req.messages[-2:] for b in m.content]
    assert last_two == ["ToolCall", "ToolResult"]
    assert orr.encode_request(req) == body


def test_codex_custom_tool_call_is_custom_kind() -> None:
    body = capture(CODEX_CAPTURES[1])["body"]
    req = orr.decode_request(body)
    call, result = req.messages[-2].content[0], req.messages[-1].content[0]
    assert call.kind is ToolKind.CUSTOM and call.name == "apply_patch"
    assert call.arguments.startswith("*** Begin Patch\n") and result.kind is ToolKind.CUSTOM
    assert any(type(t) is ir.CustomTool and t.name == "apply_patch" for t in req.tools)
    assert {t.type for t in req.tools if type(t) is ir.NativeTool} == {"tool_search", "web_search"}


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "x"}, "model"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": 3}, "input"),
    ({"model": "m", "input": [{"type": "mystery_item"}]}, "input[0].type"),
    ({"model": "m", "input": [{"role": "user", "content": "a"}, {"type": 7}]}, "input[1].type"),
    ({"model": "m", "input": [{"role": "robot", "content": "a"}]}, "input[0].role"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "input[0].content[0].type"),
    ({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
     "input[0].call_id"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]},
     "input[0].output"),
    ({"model": "m", "input": [{"type": "reasoning", "summary": [],
                               "encrypted_content": "tw1:@@@"}]}, "input[0].encrypted_content"),
    ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
    ({"model": "m", "input": "x", "temperature": 3}, "temperature"),
    ({"model": "m", "input": "x", "tool_choice": 5}, "tool_choice"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"model": "m", "input": "x", "stream": "yes"}, "stream"),
])
def test_invalid_requests_name_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ClientProtocolError) as e:
        orr.decode_request(body)
    assert e.value.param == param and e.value.status_hint == 400
    assert param in e.value.message


def test_previous_response_id_is_rejected_even_for_same_format() -> None:
    with pytest.raises(ClientProtocolError, match="previous_response_id") as e:
        orr.decode_request({"model": "m", "input": "x", "previous_response_id": "resp_1"}, ctx())
    assert not isinstance(e.value, UnsupportedFeature)


@pytest.mark.parametrize(("body", "param"), [
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
    ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
])
def test_builtins_need_a_responses_upstream(body: dict[str, Any], param: str) -> None:
    full = {"model": "m", "input": "x", **body}
    for upstream in ("anthropic_messages", "openai_chat", "gemini"):
        with pytest.raises(UnsupportedFeature) as e:
            orr.decode_request(copy.deepcopy(full), ctx(FMT, upstream))
        assert e.value.param == param
    orr.decode_request(copy.deepcopy(full), ctx(FMT, FMT))  # same format: fine


def test_codex_full_config_on_other_upstreams_maps_web_search_and_drops_the_rest() -> None:
    """Codex's default tools (gpt-5.5): web_search has an equivalent on Anthropic and
    Gemini, tool_search has none anywhere but OpenAI's Responses API."""
    import protocols.anthropic_messages as am
    import protocols.gemini as gm
    import protocols.openai_chat as oc

    body = capture(CODEX_CAPTURES[1])["body"]
    for upstream, codec, searched in (("anthropic_messages", am, True), ("gemini", gm, True),
                                      ("openai_chat", oc, False)):
        c = ctx(FMT, upstream)
        req = orr.decode_request(copy.deepcopy(body), c)
        out = codec.encode_request(req, c)
        wire = json.dumps(out["tools"])
        assert ("web_search_20250305" in wire or "google_search" in wire) == searched
        assert "tool_search" not in wire
        assert c.dropped_tools == (["tool_search"] if searched else ["tool_search", "web_search"])
        c = ctx(FMT, upstream)
        c.builtin_tools = "refuse"
        with pytest.raises(UnsupportedFeature):
            codec.encode_request(orr.decode_request(copy.deepcopy(body), c), c)


# --------------------------------------------------------------------------------------
# Reasoning payloads
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [
    ir.Reasoning(text="thinking…", signature="sig+/=", provider="anthropic_messages"),
    ir.Reasoning(text="", signature="CiQB", provider="gemini"),
    ir.Reasoning(redacted_data="EmwKAhgB", provider="anthropic_messages"),
])
def test_reasoning_payload_round_trip(r: ir.Reasoning) -> None:
    value = orr_payload.encode_reasoning_payload(r)
    assert value is not None and value.startswith("tw1:") and "=" not in value
    payload = orr_payload.decode_reasoning_payload(value)
    assert payload["provider"] == r.provider
    assert payload.get("thinking", "") == r.text or r.redacted_data is not None
    assert payload.get("signature") == r.signature and payload.get("redacted") == r.redacted_data
    item = {"type": "reasoning", "id": "rs_x", "summary": [], "encrypted_content": value}
    back = orr.decode_request({"model": "m", "input": [item]}).messages[0].content[0]
    assert (back.text, back.signature, back.redacted_data, back.provider) == (
        r.text, r.signature, r.redacted_data, r.provider)


def test_reasoning_payload_is_none_for_own_or_plain_reasoning() -> None:
    encode = orr_payload.encode_reasoning_payload
    assert encode(ir.Reasoning(encrypted="gAAAA", provider=FMT)) is None
    assert encode(ir.Reasoning(text="plain", provider=None)) is None
    assert orr_payload.decode_reasoning_payload("gAAAAABo") is None


# --------------------------------------------------------------------------------------
# Requests: IR -> wire (for a Responses upstream)
# --------------------------------------------------------------------------------------


def test_encode_translated_request() -> None:
    req = ir.Request(
        model="gpt-5",
        system=(ir.Text("Sys."),),
        messages=(
            ir.Message(ir.Role.USER, (ir.Text("hi"), ir.Image(media_type="image/png", data=PNG))),
            ir.Message(ir.Role.ASSISTANT, (
                ir.Reasoning(text="t", signature="s", provider="anthropic_messages"),
                ir.Reasoning(text="x", encrypted="gAAAA", id="rs_9", provider=FMT),
                ir.Text("Let me look."),
                ir.ToolCall(id="toolu_01", name="mcp__srv__look.up", arguments="{\"q\":1}"),
                ir.ToolCall(id="toolu_02", name="patch", arguments="RAW", kind=ToolKind.CUSTOM),
            )),
            ir.Message(ir.Role.USER, (
                ir.ToolResult(id="toolu_01", content=(ir.Text("boom"),), is_error=True),
                ir.ToolResult(id="toolu_02", content=(ir.Text("ok"),)),
                ir.Text("continue"),
            )),
        ),
        tools=(ir.FunctionTool(name="mcp__srv__look.up", parameters={"type": "object"}),
               ir.CustomTool(name="patch")),
        tool_choice=ir.ToolChoice(mode="any", disable_parallel=True),
        max_output_tokens=100,
        reasoning=ir.ReasoningConfig(mode="enabled", budget_tokens=10000),
        stream=True,
    )
    c = ctx("anthropic_messages", FMT, req)
    body = orr.encode_request(req, c)
    wire_name = body["tools"][0]["name"]
    assert wire_name != "mcp__srv__look.up" and c.tool_names[wire_name] == "mcp__srv__look.up"
    assert body["tools"][0]["strict"] is False  # Responses defaults strict to true (§2.3)
    assert body["instructions"] == "Sys." and body["store"] is False and body["stream"] is True
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["reasoning"] == {"effort": "medium", "summary": "auto"}
    assert body["max_output_tokens"] == 100
    types = [i.get("type") for i in body["input"]]
    assert types == ["message", "reasoning", "message", "function_call", "custom_tool_call",
                     "function_call_output", "custom_tool_call_output", "message"]
    assert body["input"][1]["encrypted_content"] == "gAAAA"  # OpenAI's own only (§5.8 case 11)
    assert body["input"][2] == {"type": "message", "role": "assistant", "content": "Let me look."}
    assert body["input"][0]["content"][1] == {"type": "input_image",
                                              "image_url": f"data:image/png;base64,{PNG}"}
    assert body["input"][3]["call_id"] == "toolu_01" and body["input"][3]["name"] == wire_name
    assert body["input"][5] == {"type": "function_call_output", "call_id": "toolu_01",
                                "output": "Error: boom"}
    assert body["input"][6]["type"] == "custom_tool_call_output"


def test_encode_rejects_stop_and_foreign_builtins() -> None:
    req = ir.Request(model="m", messages=(ir.Message(ir.Role.USER, (ir.Text("x"),)),),
                     stop=("END",))
    with pytest.raises(UnsupportedFeature, match="stop"):
        orr.encode_request(req, ctx("openai_chat", FMT))
    # Anthropic's web search becomes Responses' own; other built-ins are dropped.
    req = ir.Request(model="m", messages=(), tools=(
        ir.NativeTool("anthropic_messages", "web_search_20250305",
                      {"allowed_domains": ["example.com"]}),
        ir.NativeTool("anthropic_messages", "code_execution_20250522", {})))
    c = ctx("anthropic_messages", FMT)
    body = orr.encode_request(req, c)
    assert body["tools"] == [{"type": "web_search",
                              "filters": {"allowed_domains": ["example.com"]}}]
    assert c.dropped_tools == ["code_execution_20250522"]


# --------------------------------------------------------------------------------------
# Complete replies
# --------------------------------------------------------------------------------------

RESPONSE: dict[str, Any] = {
    "id": "resp_1", "object": "response", "created_at": 1761565462, "status": "completed",
    "background": False, "completed_at": 1761565470, "error": None, "frequency_penalty": 0.0,
    "incomplete_details": None, "instructions": None, "max_output_tokens": None,
    "max_tool_calls": None, "model": "gpt-5-2025-08-07",
    "output": [
        {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Plan"}],
         "encrypted_content": "gAAAAABblob"},
        {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "Hi!"}]},
        {"id": "fc_1", "type": "function_call", "status": "completed", "arguments": "{\"a\":1}",
         "call_id": "call_1", "name": "f"},
    ],
    "parallel_tool_calls": True, "presence_penalty": 0.0, "previous_response_id": None,
    "prompt_cache_key": None, "prompt_cache_retention": None,
    "reasoning": {"effort": "medium", "summary": None}, "safety_identifier": None,
    "service_tier": "default", "store": False,
    "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled",
    "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 60,
                                                            "cache_write_tokens": 0},
              "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 20},
              "total_tokens": 150},
    "user": None, "metadata": {},
}


def test_decode_response() -> None:
    resp = orr.decode_response(copy.deepcopy(RESPONSE))
    assert resp.id == "resp_1" and resp.model == "gpt-5-2025-08-07"
    assert resp.stop_reason is StopReason.TOOL_USE
    assert resp.usage == Usage(input_tokens=100, output_tokens=50, cached_tokens=60,
                               reasoning_tokens=20)
    r, t, c = resp.content
    assert r.encrypted == "gAAAAABblob" and r.provider == FMT and r.summary == ("Plan",)
    assert t.text == "Hi!" and (c.id, c.name, c.arguments) == ("call_1", "f", "{\"a\":1}")


def test_response_round_trip_and_sdk_model() -> None:
    from openai.types.responses import Response as SDKResponse

    out = orr.encode_response(orr.decode_response(copy.deepcopy(RESPONSE)))
    assert out == RESPONSE
    SDKResponse.model_validate(out)


@pytest.mark.parametrize(("status", "extra", "stop"), [
    ("incomplete", {"incomplete_details": {"reason": "max_output_tokens"}}, StopReason.MAX_TOKENS),
    ("incomplete", {"incomplete_details": {"reason": "content_filter"}}, StopReason.CONTENT_FILTER),
    ("failed", {"error": {"code": "server_error", "message": "x"}}, StopReason.ERROR),
    ("failed", {"error": {"code": "context_length_exceeded", "message": "x"}},
     StopReason.CONTEXT_WINDOW),
])
def test_non_completed_responses(status: str, extra: dict[str, Any], stop: StopReason) -> None:
    body = {**copy.deepcopy(RESPONSE), "status": status, **extra}
    body["output"] = body["output"][:2]
    resp = orr.decode_response(body)
    assert resp.stop_reason is stop
    assert orr.encode_response(resp) == body


def test_encode_response_for_translated_client() -> None:
    creq = orr.decode_request({"model": "claude", "input": "hi", "tools": [
        {"type": "custom", "name": "apply_patch"}, {"type": "local_shell"},
        {"type": "function", "name": "f", "parameters": {"type": "object"}}]})
    resp = ir.Response(
        id="msg_x", model="claude-sonnet", stop_reason=StopReason.MAX_TOKENS,
        usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=2),
        content=(
            ir.Reasoning(text="hmm", signature="sig", provider="anthropic_messages"),
            ir.Text("Hello"),
            ir.ToolCall(id="toolu_1", name="apply_patch", arguments="{\"input\":\"PATCH\"}",
                        input={"input": "PATCH"}),
            ir.ToolCall(id="toolu_2", name="local_shell", arguments="{\"command\":[\"ls\"]}"),
            ir.ToolCall(id="toolu_3", name="f", arguments=""),
        ))
    c = ctx(FMT, "anthropic_messages", creq)
    out = orr.encode_response(resp, c)
    from openai.types.responses import Response as SDKResponse

    sdk = SDKResponse.model_validate(out)
    assert out["id"] == f"resp_{REQUEST_ID}" and out["created_at"] == CREATED
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}
    rs, msg, custom, shell, fc = out["output"]
    assert rs["summary"] == [{"type": "summary_text", "text": "hmm"}]
    payload = orr_payload.decode_reasoning_payload(rs["encrypted_content"])
    assert payload == {"provider": "anthropic_messages", "thinking": "hmm", "signature": "sig"}
    assert msg["content"][0]["text"] == "Hello" and sdk.output_text == "Hello"
    assert custom["type"] == "custom_tool_call" and custom["input"] == "PATCH"
    assert shell["type"] == "local_shell_call"
    assert shell["action"] == {"type": "exec", "command": ["ls"], "env": {}}
    assert fc["type"] == "function_call" and fc["arguments"] == "{}" and fc["id"].startswith("fc_")
    assert out["usage"]["total_tokens"] == 15
    assert out["usage"]["input_tokens_details"]["cached_tokens"] == 2


@pytest.mark.parametrize("body", [None, [], {"output": "x"}, {"output": [3]},
                                  {"output": [{"type": "function_call", "name": "f"}]}])
def test_bad_upstream_response(body: Any) -> None:
    with pytest.raises(UpstreamProtocolError):
        orr.decode_response(body)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_errors_use_the_openai_body() -> None:
    err = orr.decode_error(429, b'{"error":{"message":"slow","type":"requests","param":null,'
                                b'"code":"rate_limit_exceeded"}}')
    assert err.kind is ErrorKind.RATE_LIMIT and err.code == "rate_limit_exceeded"
    status, body = orr.encode_error(err, FMT)
    assert status == 429
    assert jsonio.loads(body) == {"error": {"message": "slow", "type": "requests", "param": None,
                                            "code": "rate_limit_exceeded"}}
    status, body = orr.encode_error(ir.ApiError(ErrorKind.OVERLOADED, "busy", 529),
                                    "anthropic_messages")
    assert status == 503 and jsonio.loads(body)["error"]["message"] == "busy"


# --------------------------------------------------------------------------------------
# Streams: wire -> IR
# --------------------------------------------------------------------------------------

SIG = ("gAAAAABo092D8tWTFnxf2CZudDCuFQtL15Ji3Ea6G6zWFo6cf6DFRfeDKXBs-eXamaskVX3ysKdIFFSI-U0EwKBI"
       "ntiOzzktR8HdrvB2Ljgdapj2MuU120mRSRFCfyUl8621rA-ynJBaVAQV3rxix6P6nacHkJ1Hw9_HLjj1sH6wBJzCk"
       "_oHD0Gz6Dgayqp8gCPHLa7YVaB2255M0sOq9Cr8n7Zyh6IEAfza_8DUsE0hG-ZvqaHlTnozSEV3i4KSdsIAbqlaF_"
       "1l54XuYPANVnDZxpcYk7enyv80ObctdwVCPyMsW7LgYValif7CULfOGS2OKzqyENrylnW4GQjWr0y_E4ZjWw-bsw8"
       "JqvB6DgbPlS2i66kuCpKLXkFb9X-oL0UabNnvooUMnsHGxiMGijzO")


def test_stream_decoder_function_call_transcript() -> None:
    events = decode_stream([transcript("responses_stream_function_call.sse")])
    args = ['{"', "location", '":"', "Paris", ", France", '","', "unit", '":"', "celsius", '"}']
    assert events == [
        MessageStart("resp_65d0f47b8b2bc515f756e945849ca606f5e770ed3b2910c6d1", "gpt-5-2025-08-07"),
        BlockStart(0, BlockKind.REASONING, provider=FMT),
        ReasoningDelta(0, "**Looking up the weather**\n\n", 0),
        ReasoningDelta(0, "The user wants today's weather in Paris.", 0),
        ReasoningDelta(0, " I'll call get_weather with Paris, France in celsius.", 0),
        SignatureDelta(0, SIG, FMT),
        BlockStop(0),
        BlockStart(1, BlockKind.TOOL_CALL, tool_id="call_m2lviOGI5XmZ7yE5PJG48PXx",
                   tool_name="get_weather", tool_kind=ToolKind.FUNCTION),
        *[ToolArgsDelta(1, a) for a in args],
        BlockStop(1),
        UsageUpdate(Usage(input_tokens=68, output_tokens=149, reasoning_tokens=128)),
        MessageEnd(StopReason.TOOL_USE),
    ]


def test_stream_decoder_text_transcript() -> None:
    d = orr.StreamDecoder(ctx())
    events = d.feed(transcript("responses_stream_text.sse")) + d.close()
    text = "".join(e.text for e in events if type(e) is TextDelta)
    assert text == "Hi there! How can I assist you today?"
    assert events[-1] == MessageEnd(StopReason.END_TURN)
    assert d.usage == Usage(input_tokens=37, output_tokens=11)
    assert (d.model, d.done, d.failed, d.tool_calls) == ("gpt-4.1-2025-04-14", True, False, 0)
    assert d.stop_reason is StopReason.END_TURN


def reencoded(events: list[ir.StreamEvent]) -> bytes:
    return encode_stream(events, client=FMT)


@pytest.mark.parametrize("name", RESPONSES_TRANSCRIPTS)
def test_stream_decoder_whole_bytewise_random(name: str) -> None:
    raw = transcript(name)
    whole = decode_stream([raw])
    assert decode_stream(byte_at_a_time(raw)) == whole
    for seed in range(5):
        assert decode_stream(random_chunks(raw, seed, 13)) == whole
    assert reencoded(decode_stream(byte_at_a_time(raw))) == reencoded(whole)


@pytest.mark.parametrize("name", RESPONSES_TRANSCRIPTS)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=12000), max_size=60))
def test_stream_decoder_hypothesis_splits(name: str, cuts: list[int]) -> None:
    raw = transcript(name)
    whole = decode_stream([raw])
    split = decode_stream(split_at(raw, cuts))
    assert split == whole
    assert reencoded(split) == reencoded(whole)


@pytest.mark.parametrize("name", RESPONSES_TRANSCRIPTS)
def test_transcript_reencoded_reads_the_same_in_the_sdk(name: str) -> None:
    raw = transcript(name)
    original = sdk_final(raw, validate=False)
    out = reencoded(decode_stream([raw]))
    assert_canonical(sse_events(out))
    again = sdk_final(out)
    assert again.output_text == original.output_text
    assert again.usage.model_dump(exclude={"input_tokens_details"}) == original.usage.model_dump(
        exclude={"input_tokens_details"})
    assert (again.usage.input_tokens_details.cached_tokens
            == original.usage.input_tokens_details.cached_tokens)
    calls = [(o.call_id, o.name, o.arguments) for o in again.output if o.type == "function_call"]
    assert calls == [(o.call_id, o.name, o.arguments) for o in original.output
                     if o.type == "function_call"]
    reasoning = [o for o in again.output if o.type == "reasoning"]
    if name == "responses_stream_function_call.sse":
        # OpenAI's own encrypted_content comes back unchanged for the OpenAI client.
        assert reasoning[0].encrypted_content == SIG
        assert reasoning[0].summary[0].text.startswith("**Looking up the weather**")


@pytest.mark.parametrize("name", RESPONSES_TRANSCRIPTS)
def test_observe_mode_facts_match(name: str) -> None:
    raw = transcript(name)
    full = orr.StreamDecoder(ctx())
    full.feed(raw)
    full.close()
    for chunks in ([raw], byte_at_a_time(raw)):
        obs = orr.StreamDecoder(ctx(), observe=True)
        for c in chunks:
            obs.feed(c)
        obs.close()
        facts = ("usage", "model", "id", "stop_reason", "tool_calls", "done", "failed")
        assert [getattr(obs, f) for f in facts] == [getattr(full, f) for f in facts]


def _frame(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + jsonio.dumps(obj) + b"\n\n"


CREATED_EV = {"type": "response.created", "sequence_number": 0,
              "response": {"id": "resp_9", "model": "gpt-5", "status": "in_progress", "output": []}}


def test_stream_decoder_cut_stream_is_an_error() -> None:
    raw = transcript("responses_stream_text.sse")
    cut = raw[: raw.index(b"event: response.completed")]
    d = orr.StreamDecoder(ctx())
    events = d.feed(cut) + d.close()
    assert events[-1] == StreamError(ErrorKind.UPSTREAM_PROTOCOL,
                                     "stream closed before response.completed")
    assert d.failed and d.done and d.stop_reason is None


@pytest.mark.parametrize(("event", "kind", "code"), [
    ({"type": "response.failed", "sequence_number": 1, "response": {
        "id": "resp_9", "status": "failed", "output": [],
        "error": {"code": "rate_limit_exceeded", "message": "try again in 2s"}}},
     ErrorKind.RATE_LIMIT, "rate_limit_exceeded"),
    ({"type": "response.failed", "sequence_number": 1, "response": {
        "id": "resp_9", "status": "failed", "error": {"code": "server_is_overloaded",
                                                      "message": "busy"}}},
     ErrorKind.OVERLOADED, "server_is_overloaded"),
    ({"type": "error", "sequence_number": 1, "code": "server_error", "message": "oops",
      "param": None}, ErrorKind.SERVER, "server_error"),
])
def test_stream_decoder_failures(event: dict[str, Any], kind: ErrorKind, code: str) -> None:
    d = orr.StreamDecoder(ctx())
    events = d.feed(_frame(CREATED_EV) + _frame(event)) + d.close()
    err = events[-1]
    assert type(err) is StreamError and err.kind is kind and err.code == code
    assert d.failed and d.done


def test_stream_decoder_incomplete_and_items_without_deltas() -> None:
    """``output_item.done`` alone carries the whole item (deltas are
    optional, docs/protocols.md §7); ``response.incomplete`` ends with max_tokens."""
    item = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "partial", "annotations": []}]}
    call = {"id": "ctc_1", "type": "custom_tool_call", "call_id": "call_7", "name": "apply_patch",
            "input": ""}
    shell = {"id": "lsh_1", "type": "local_shell_call", "call_id": "call_8", "status": "completed",
             "action": {"type": "exec", "command": ["pwd"]}}
    evs = [CREATED_EV,
           {"type": "response.output_item.added", "output_index": 0,
            "item": {**item, "content": []}},
           {"type": "response.output_item.done", "output_index": 0, "item": item},
           {"type": "response.output_item.added", "output_index": 1, "item": call},
           {"type": "response.output_item.done", "output_index": 1,
            "item": {**call, "input": "PATCH"}},
           {"type": "response.output_item.added", "output_index": 2, "item": shell},
           {"type": "response.output_item.done", "output_index": 2, "item": shell},
           {"type": "response.incomplete", "response": {
               "id": "resp_9", "status": "incomplete",
               "incomplete_details": {"reason": "max_output_tokens"},
               "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}}}]
    events = decode_stream([b"".join(_frame(e) for e in evs)])
    assert TextDelta(0, "partial") in events
    assert BlockStart(1, BlockKind.TOOL_CALL, tool_id="call_7", tool_name="apply_patch",
                      tool_kind=ToolKind.CUSTOM) in events
    assert ToolArgsDelta(1, "PATCH") in events
    assert ToolArgsDelta(2, '{"type":"exec","command":["pwd"]}') in events
    assert events[-2:] == [UsageUpdate(Usage(input_tokens=3, output_tokens=4)),
                           MessageEnd(StopReason.MAX_TOKENS)]


@pytest.mark.parametrize("raw", [
    b"data: {not json}\n\n",
    b"data: [1,2]\n\n",
    b'data: {"type":"response.output_item.added","output_index":0}\n\n',
    b'data: {"type":"response.function_call_arguments.delta","output_index":5,"delta":"x"}\n\n',
    b'data: {"type":"response.output_text.delta","output_index":"a","delta":"x"}\n\n',
    b'data: {"type":"response.completed","response":3}\n\n',
])
def test_stream_decoder_bad_upstream(raw: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        decode_stream([_frame(CREATED_EV) + raw])


def test_stream_decoder_bad_frame_after_good_ones_is_split_invariant() -> None:
    """Events decoded before a bad frame are returned whatever the chunking; the error
    comes from the next call."""
    good = _frame(CREATED_EV)
    raw = good + b"data: {broken\n\n"
    for chunks in ([raw], [good, raw[len(good):]], byte_at_a_time(raw)):
        d = orr.StreamDecoder(ctx())
        events: list[ir.StreamEvent] = []
        with pytest.raises(UpstreamProtocolError):
            for c in chunks:
                events += d.feed(c)
            d.close()
        assert events == [MessageStart("resp_9", "gpt-5")]
        with pytest.raises(UpstreamProtocolError):
            d.feed(b"")  # stays broken


# --------------------------------------------------------------------------------------
# Streams: IR -> wire
# --------------------------------------------------------------------------------------

TEXT_EVENTS: list[ir.StreamEvent] = [
    MessageStart("msg_up", "claude-x", Usage(input_tokens=12)),
    ir.PING,
    BlockStart(0, BlockKind.TEXT), TextDelta(0, ""), TextDelta(0, "Hel"),
    TextDelta(0, "lo ¡こんにちは!"), BlockStop(0),
    UsageUpdate(Usage(input_tokens=12, output_tokens=5, cached_tokens=4)),
    MessageEnd(StopReason.END_TURN),
]


def test_encoder_text_canonical_and_sdk() -> None:
    out = encode_stream(TEXT_EVENTS)
    events = sse_events(out)
    resp = assert_canonical(events)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert resp["usage"]["input_tokens"] == 12 and resp["usage"]["total_tokens"] == 17
    final = sdk_final(out)
    assert final.output_text == "Hello ¡こんにちは!"
    assert final.usage.input_tokens_details.cached_tokens == 4
    assert sdk_stream_final(out).output_text == "Hello ¡こんにちは!"
    assert out.count(b"event: ") == len(events)  # one event: line per event, no extras
    assert b"[DONE]" not in out and b"\nid:" not in out and b"retry:" not in out


def tool_events(kind: ToolKind = ToolKind.FUNCTION, name: str = "get_weather",
                args: list[str] | None = None) -> list[ir.StreamEvent]:
    args = ['{"location": "Par', 'is"}'] if args is None else args
    return [
        MessageStart("m", "claude-x"),
        BlockStart(0, BlockKind.REASONING, provider="anthropic_messages"),
        ReasoningDelta(0, "Think"), ReasoningDelta(0, "ing."),
        SignatureDelta(0, "ErN6sig", "anthropic_messages"),
        BlockStop(0),
        BlockStart(1, BlockKind.TEXT), TextDelta(1, "Checking."), BlockStop(1),
        BlockStart(2, BlockKind.TOOL_CALL, tool_id="toolu_01", tool_name=name, tool_kind=kind),
        *[ToolArgsDelta(2, a) for a in args],
        BlockStop(2),
        UsageUpdate(Usage(input_tokens=400, output_tokens=180, reasoning_tokens=100)),
        MessageEnd(StopReason.TOOL_USE),
    ]


def test_encoder_reasoning_and_function_call() -> None:
    out = encode_stream(tool_events())
    events = sse_events(out)
    resp = assert_canonical(events)
    rs, msg, fc = resp["output"]
    assert rs["summary"] == [{"type": "summary_text", "text": "Thinking."}]
    assert orr_payload.decode_reasoning_payload(rs["encrypted_content"]) == {
        "provider": "anthropic_messages", "thinking": "Thinking.", "signature": "ErN6sig"}
    assert msg["content"][0]["text"] == "Checking."
    assert fc == {"id": fc["id"], "type": "function_call", "status": "completed",
                  "arguments": '{"location": "Paris"}', "call_id": "toolu_01",
                  "name": "get_weather"}
    assert fc["id"].startswith("fc_") and len({rs["id"], msg["id"], fc["id"]}) == 3
    final = sdk_final(out)
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    assert final.output[2].arguments == '{"location": "Paris"}'
    assert final.usage.output_tokens_details.reasoning_tokens == 100


def test_encoder_custom_tool_raw_and_wrapped() -> None:
    creq = orr.decode_request({"model": "m", "input": "x",
                               "tools": [{"type": "custom", "name": "apply_patch"}]})
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"
    # From an upstream that knows custom tools (raw input streamed as it comes).
    raw = encode_stream(tool_events(ToolKind.CUSTOM, "apply_patch", [patch[:10], patch[10:]]), creq)
    # From Anthropic/Gemini: the input arrives wrapped in {"input": …} (ir.CUSTOM_INPUT_KEY).
    wrapped_args = jsonio.dumps({"input": patch}).decode()
    wrapped = encode_stream(tool_events(ToolKind.FUNCTION, "apply_patch",
                                        [wrapped_args[:7], wrapped_args[7:]]), creq)
    for out in (raw, wrapped):
        resp = assert_canonical(sse_events(out))
        item = resp["output"][2]
        assert item["type"] == "custom_tool_call" and item["input"] == patch
        assert item["call_id"] == "toolu_01" and item["name"] == "apply_patch"
        final = sdk_final(out)
        assert final.output[2].input == patch


def test_encoder_local_shell_call() -> None:
    creq = orr.decode_request({"model": "m", "input": "x", "tools": [{"type": "local_shell"}]})
    out = encode_stream(tool_events(ToolKind.FUNCTION, "local_shell",
                                    ['{"command": ["ls", "-la"]', "}"]), creq)
    resp = assert_canonical(sse_events(out))
    item = resp["output"][2]
    assert item["type"] == "local_shell_call" and item["call_id"] == "toolu_01"
    assert item["action"] == {"type": "exec", "command": ["ls", "-la"], "env": {}}


def test_encoder_empty_arguments_become_an_object() -> None:
    out = encode_stream(tool_events(args=[]))
    resp = assert_canonical(sse_events(out))
    assert resp["output"][2]["arguments"] == "{}"  # Codex parses arguments as JSON


def test_encoder_holds_overlapping_tool_blocks() -> None:
    """A Chat upstream keeps every tool call open until its finish chunk and may
    interleave fragments (IR rule 3); items still come out one after another."""
    events = [
        MessageStart("c", "gpt"),
        BlockStart(0, BlockKind.TOOL_CALL, tool_id="call_a", tool_name="f"),
        ToolArgsDelta(0, '{"x":'),
        BlockStart(1, BlockKind.TOOL_CALL, tool_id="call_b", tool_name="g"),
        ToolArgsDelta(1, '{"y":'), ToolArgsDelta(0, "1}"), ToolArgsDelta(1, "2}"),
        BlockStop(0), BlockStop(1),
        MessageEnd(StopReason.TOOL_USE),
    ]
    out = encode_stream(events, client="openai_chat")
    resp = assert_canonical(sse_events(out))
    assert [(i["call_id"], i["arguments"]) for i in resp["output"]] == [
        ("call_a", '{"x":1}'), ("call_b", '{"y":2}')]
    # One event at a time gives the same bytes.
    enc = orr.StreamEncoder(ctx(FMT, "openai_chat"))
    assert b"".join(enc.encode([e]) for e in events) + enc.close() == out


@pytest.mark.parametrize(("stop", "terminal", "detail"), [
    (StopReason.MAX_TOKENS, "response.incomplete", {"reason": "max_output_tokens"}),
    (StopReason.CONTENT_FILTER, "response.incomplete", {"reason": "content_filter"}),
    (StopReason.CONTEXT_WINDOW, "response.failed", "context_length_exceeded"),
    (StopReason.ERROR, "response.failed", "server_error"),
    (StopReason.STOP_SEQUENCE, "response.completed", None),
    (StopReason.PAUSE, "response.completed", None),
])
def test_encoder_terminal_events(stop: StopReason, terminal: str, detail: Any) -> None:
    out = encode_stream([*TEXT_EVENTS[:-1], MessageEnd(stop)])
    events = sse_events(out)
    resp = assert_canonical(events)
    assert events[-1]["type"] == terminal
    if terminal == "response.incomplete":
        assert resp["incomplete_details"] == detail
    elif terminal == "response.failed":
        assert resp["error"]["code"] == detail
    if terminal != "response.completed":
        with pytest.raises(RuntimeError, match="response.completed"):
            sdk_final(out)


@pytest.mark.parametrize(("kind", "code"), [
    (ErrorKind.OVERLOADED, "server_is_overloaded"),
    (ErrorKind.RATE_LIMIT, "rate_limit_exceeded"),
    (ErrorKind.QUOTA, "insufficient_quota"),
    (ErrorKind.REQUEST_TOO_LARGE, "context_length_exceeded"),
    (ErrorKind.INVALID_REQUEST, "invalid_prompt"),
    (ErrorKind.SERVER, "server_error"),
    (ErrorKind.UPSTREAM_PROTOCOL, "server_error"),
    (ErrorKind.TIMEOUT, "server_error"),
])
def test_encoder_stream_error_codes_codex_classifies(kind: ErrorKind, code: str) -> None:
    out = encode_stream([*TEXT_EVENTS[:7], StreamError(kind, "boom", 500)])
    events = sse_events(out)
    resp = assert_canonical(events)
    assert events[-1]["type"] == "response.failed" and resp["error"] == {"code": code,
                                                                          "message": "boom"}
    assert code in orr_tables.CODEX_ERROR_CODES
    assert [i["type"] for i in resp["output"]] == ["message"]  # the item finished before


def test_encoder_keeps_a_codex_code_from_upstream() -> None:
    out = encode_stream([MessageStart("", ""), StreamError(ErrorKind.RATE_LIMIT, "x", 429,
                                                           code="slow_down")])
    assert sse_events(out)[-1]["response"]["error"]["code"] == "slow_down"


def test_encoder_close_without_terminal_is_failed() -> None:
    enc = orr.StreamEncoder(ctx(FMT, "anthropic_messages"))
    out = enc.encode(TEXT_EVENTS[:5])
    out += enc.close()
    events = sse_events(out)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"
    assert enc.done and enc.close() == b"" and enc.encode(TEXT_EVENTS) == b""
    # Nothing at all from upstream: the stream still opens before failing (the SDK needs
    # response.created first).
    enc = orr.StreamEncoder(None)
    events = sse_events(enc.close())
    assert [e["type"] for e in events] == ["response.created", "response.in_progress",
                                           "response.failed"]


def test_keepalive_is_a_repeated_in_progress() -> None:
    enc = orr.StreamEncoder(ctx(FMT, "anthropic_messages"))
    assert enc.keepalive() == b""  # nothing before the start
    out = enc.encode(TEXT_EVENTS[:5]) + enc.keepalive()
    out += enc.encode([ir.PING]) + enc.encode(TEXT_EVENTS[5:])
    events = sse_events(out)
    assert [e["type"] for e in events].count("response.in_progress") == 3
    assert_canonical(events, keepalives=True)
    assert sdk_final(out).output_text == "Hello ¡こんにちは!"
    assert enc.keepalive() == b""  # nothing after the end


def test_encoder_response_echo_uses_the_client_request() -> None:
    creq = orr.decode_request(copy.deepcopy(FULL_REQUEST))
    out = encode_stream(TEXT_EVENTS, creq)
    created = sse_events(out)[0]["response"]
    assert created["id"] == f"resp_{REQUEST_ID}" and created["created_at"] == CREATED
    assert created["model"] == "claude-x" and created["instructions"] == "Be brief."
    assert created["tool_choice"] == {"type": "function", "name": "lookup"}
    assert created["parallel_tool_calls"] is False and created["store"] is False
    assert created["reasoning"] == {"effort": "high", "summary": "detailed"}
    assert created["text"]["format"]["type"] == "json_schema"
    assert [t["type"] for t in created["tools"]] == ["function", "custom", "local_shell"]


def test_encoder_limits() -> None:
    enc = orr.StreamEncoder(ctx(FMT, "openai_chat"))
    enc.encode([MessageStart("", ""),
                BlockStart(0, BlockKind.TOOL_CALL, tool_id="a", tool_name="f"),
                BlockStart(1, BlockKind.TOOL_CALL, tool_id="b", tool_name="g")])
    with pytest.raises(UpstreamProtocolError):
        enc.encode([ToolArgsDelta(1, "x" * (MAX_HELD_CHARS + 1))])


def test_encoder_survives_a_repeated_block_start() -> None:
    """Found by fuzz/responses.py: a second BlockStart for an open index used to make
    MessageEnd loop forever. A repeated start is ignored."""
    events = [MessageStart("", ""), BlockStart(0, BlockKind.TEXT), TextDelta(0, "a"),
              BlockStart(0, BlockKind.TOOL_CALL, tool_id="t", tool_name="f"), TextDelta(0, "b"),
              MessageEnd(StopReason.END_TURN)]
    resp = assert_canonical(sse_events(encode_stream(events)))
    assert resp["output"][0]["content"][0]["text"] == "ab"
