"""Calls to a client's custom (freeform) tool through an Anthropic upstream.

A Responses or Chat client may declare a ``custom`` tool (Codex's ``apply_patch``) whose
input is a raw string. Anthropic has only JSON tools, so the tool reaches it as one taking
``{"input": "<raw>"}`` (``ir.CUSTOM_INPUT_KEY``), and the model's call comes back
wrapped. The Anthropic decoder reads ``ctx.client_request`` and reports such a call as a
``ToolKind.CUSTOM`` block whose input is the raw string, so every client encoder sees the
same thing: a Responses client gets a ``custom_tool_call`` and a Chat client a
``type: "custom"`` tool call, each with the raw input, streamed or complete.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from protocols import anthropic_messages as am
from protocols import ir, jsonio
from protocols.ir import BlockKind, BlockStart, BlockStop, ToolArgsDelta, ToolKind
from protocols.translate import Translation
from tests.protocols.conftest import CREATED, REQUEST_ID, byte_at_a_time, openai_chunks

CHAT, ANTHROPIC, RESPONSES = "openai_chat", "anthropic_messages", "openai_responses"

# Quotes, newlines, a backslash and non-ASCII: JSON escapes that the wrapper's partial
# JSON splits across deltas.
PATCH = ('*** Begin Patch\n*** Add File: hello.txt\n+He said "¡hola!" \\o/\n'
         "*** Update File: b.py\n@@\n-x = 1\n+x = 2\n*** End Patch\n")
SHELL_ARGS = {"command": ["ls", "-la"]}

SHELL_SCHEMA = {"type": "object", "properties": {"command": {"type": "array",
                                                             "items": {"type": "string"}}}}
REQUESTS: dict[str, dict[str, Any]] = {
    RESPONSES: {
        "model": "m", "input": "patch it", "stream": True,
        "tools": [
            {"type": "custom", "name": "apply_patch", "description": "Edit files.",
             "format": {"type": "text"}},
            {"type": "function", "name": "shell", "parameters": SHELL_SCHEMA},
        ],
    },
    CHAT: {
        "model": "m", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "patch it"}],
        "tools": [
            {"type": "custom", "custom": {"name": "apply_patch", "description": "Edit files.",
                                          "format": {"type": "text"}}},
            {"type": "function", "function": {"name": "shell", "parameters": SHELL_SCHEMA}},
        ],
    },
}


def _event(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + jsonio.dumps(obj) + b"\n\n"


def anthropic_stream(patch: str = PATCH, wrapped: Any = None) -> bytes:
    """An Anthropic stream: text, a call to apply_patch (its wrapped input in 7-character
    partial JSON pieces), then a call to the function tool shell."""
    patch_json = jsonio.dumps({"input": patch} if wrapped is None else wrapped).decode()
    shell_json = jsonio.dumps(SHELL_ARGS).decode()
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 30, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Patching."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_patch", "name": "apply_patch", "input": {}}},
        *({"type": "content_block_delta", "index": 1,
           "delta": {"type": "input_json_delta", "partial_json": patch_json[i : i + 7]}}
          for i in range(0, len(patch_json), 7)),
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_shell", "name": "shell", "input": {}}},
        {"type": "content_block_delta", "index": 2,
         "delta": {"type": "input_json_delta", "partial_json": shell_json}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 80}},
        {"type": "message_stop"},
    ]
    return b"".join(_event(e) for e in events)


ANTHROPIC_REPLY = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
    "content": [
        {"type": "text", "text": "Patching."},
        {"type": "tool_use", "id": "toolu_patch", "name": "apply_patch", "input": {"input": PATCH}},
        {"type": "tool_use", "id": "toolu_shell", "name": "shell", "input": SHELL_ARGS},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 30, "output_tokens": 80},
}


def translation(client: str) -> tuple[Translation, dict[str, Any]]:
    t = Translation(client, ANTHROPIC, request_id=REQUEST_ID, created=CREATED)
    upstream = t.request(copy.deepcopy(REQUESTS[client]))
    return t, upstream


def stream(client: str, chunks: list[bytes]) -> tuple[bytes, Translation]:
    t, _ = translation(client)
    out = b"".join(t.feed(c) for c in chunks) + t.finish()
    return out, t


def sse_objects(out: bytes) -> list[dict[str, Any]]:
    objs = []
    for frame in out.split(b"\n\n"):
        for line in frame.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                objs.append(jsonio.loads(line[6:]))
    return objs


# --------------------------------------------------------------------------------------
# The decoder
# --------------------------------------------------------------------------------------


def test_the_tool_reaches_anthropic_wrapped() -> None:
    for client in (RESPONSES, CHAT):
        _, upstream = translation(client)
        patch_tool = next(t for t in upstream["tools"] if t["name"] == "apply_patch")
        assert patch_tool["input_schema"]["properties"] == {ir.CUSTOM_INPUT_KEY: {"type": "string"}}


def test_decoder_reports_custom_calls_with_the_raw_input() -> None:
    t, _ = translation(RESPONSES)
    d = am.StreamDecoder(t.context)
    events = [e for c in byte_at_a_time(anthropic_stream()) for e in d.feed(c)] + d.close()
    patch_events = [e for e in events if getattr(e, "index", None) == 1]
    assert patch_events == [
        BlockStart(1, BlockKind.TOOL_CALL, tool_id="toolu_patch", tool_name="apply_patch",
                   tool_kind=ToolKind.CUSTOM),
        ToolArgsDelta(1, PATCH),
        BlockStop(1),
    ]
    # A function tool in the same stream stays a function call, its JSON streamed as is.
    shell = [e for e in events if getattr(e, "index", None) == 2]
    assert shell[0].tool_kind is ToolKind.FUNCTION
    assert shell[1] == ToolArgsDelta(2, jsonio.dumps(SHELL_ARGS).decode())
    assert d.tool_calls == 2


def test_decoder_without_a_client_request_keeps_function_calls() -> None:
    """Same-format (observe) streams and a missing ctx: nothing is reinterpreted."""
    events = am.StreamDecoder(None).feed(anthropic_stream())
    starts = [e for e in events if type(e) is BlockStart and e.kind is BlockKind.TOOL_CALL]
    assert [s.tool_kind for s in starts] == [ToolKind.FUNCTION, ToolKind.FUNCTION]


def test_input_in_another_shape_is_passed_on_as_its_text() -> None:
    """A model that ignored the one-string schema: the client gets the text it wrote."""
    t, _ = translation(RESPONSES)
    d = am.StreamDecoder(t.context)
    events = d.feed(anthropic_stream(wrapped={"patch": "x"}))
    assert ToolArgsDelta(1, '{"patch":"x"}') in events


def test_decoded_reply_holds_a_custom_call() -> None:
    t, _ = translation(CHAT)
    resp = am.decode_response(ANTHROPIC_REPLY, t.context)
    calls = [b for b in resp.content if type(b) is ir.ToolCall]
    assert calls[0] == ir.ToolCall(id="toolu_patch", name="apply_patch", arguments=PATCH,
                                   kind=ToolKind.CUSTOM)
    assert calls[1].kind is ToolKind.FUNCTION and calls[1].input == SHELL_ARGS


# --------------------------------------------------------------------------------------
# Responses client (Codex)
# --------------------------------------------------------------------------------------


def test_responses_client_gets_a_custom_tool_call_streamed() -> None:
    raw = anthropic_stream()
    out, t = stream(RESPONSES, [raw])
    assert stream(RESPONSES, byte_at_a_time(raw))[0] == out
    events = sse_objects(out)
    # The input streams as custom_tool_call_input deltas that add up to the raw patch.
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert "".join(deltas) == PATCH
    assert not any(e["type"] == "response.function_call_arguments.delta"
                   and PATCH[:10] in e["delta"] for e in events)
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done] == ["message", "custom_tool_call", "function_call"]
    patch, shell = done[1], done[2]
    assert (patch["call_id"], patch["name"], patch["input"]) == \
        ("toolu_patch", "apply_patch", PATCH)
    assert (shell["call_id"], shell["name"], jsonio.loads(shell["arguments"])) == \
        ("toolu_shell", "shell", SHELL_ARGS)
    final = events[-1]
    assert final["type"] == "response.completed"
    assert [i["type"] for i in final["response"]["output"]] == \
        ["message", "custom_tool_call", "function_call"]
    assert t.tool_calls_seen == 2 and t.stop_reason is ir.StopReason.TOOL_USE


def test_responses_client_gets_a_custom_tool_call_complete() -> None:
    t, _ = translation(RESPONSES)
    reply = t.response(copy.deepcopy(ANTHROPIC_REPLY))
    items = reply["output"]
    assert [i["type"] for i in items] == ["message", "custom_tool_call", "function_call"]
    assert items[1]["input"] == PATCH and items[1]["call_id"] == "toolu_patch"


# --------------------------------------------------------------------------------------
# Chat client
# --------------------------------------------------------------------------------------


def test_chat_client_gets_a_custom_tool_call_streamed() -> None:
    from openai.lib.streaming.chat import ChatCompletionStreamState

    raw = anthropic_stream()
    out, t = stream(CHAT, [raw])
    assert stream(CHAT, byte_at_a_time(raw))[0] == out
    # Every fragment of the custom call is typed custom and carries custom.input.
    fragments = [tc for e in sse_objects(out) for c in e["choices"]
                 for tc in c["delta"].get("tool_calls", ()) if tc["index"] == 0]
    assert fragments and all(f["type"] == "custom" and "function" not in f for f in fragments)
    # The real SDK's stream accumulator reads the raw patch (its get_final_completion()
    # does not parse custom calls yet, so the accumulated snapshot is read).
    state = ChatCompletionStreamState()
    for chunk in openai_chunks(out):
        state.handle_chunk(chunk)
    calls = state.current_completion_snapshot.choices[0].message.tool_calls
    patch, shell = calls
    assert patch.type == "custom" and patch.id == "toolu_patch"
    assert patch.custom == {"name": "apply_patch", "input": PATCH}
    assert shell.type == "function" and shell.function.name == "shell"
    assert jsonio.loads(shell.function.arguments) == SHELL_ARGS
    assert t.tool_calls_seen == 2


def test_chat_client_gets_a_custom_tool_call_complete() -> None:
    import openai

    t, _ = translation(CHAT)
    reply = t.response(copy.deepcopy(ANTHROPIC_REPLY))
    calls = reply["choices"][0]["message"]["tool_calls"]
    assert calls[0] == {"id": "toolu_patch", "type": "custom",
                        "custom": {"name": "apply_patch", "input": PATCH}}
    assert calls[1]["type"] == "function"
    # The SDK's non-streaming model reads it as a custom tool call.
    msg = openai.types.chat.ChatCompletion.model_validate(reply).choices[0].message
    assert msg.tool_calls[0].type == "custom" and msg.tool_calls[0].custom.input == PATCH


@pytest.mark.parametrize("client", [RESPONSES, CHAT])
def test_the_raw_input_round_trips_to_anthropic(client: str) -> None:
    """The client sends the custom call back in its history; Anthropic gets it wrapped
    again, byte for byte the input the model wrote."""
    t, _ = translation(client)
    history = copy.deepcopy(REQUESTS[client])
    if client == RESPONSES:
        history["input"] = [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
            {"type": "custom_tool_call", "call_id": "toolu_patch", "name": "apply_patch",
             "input": PATCH},
            {"type": "custom_tool_call_output", "call_id": "toolu_patch", "output": "Done."},
        ]
    else:
        history["messages"] += [
            {"role": "assistant", "tool_calls": [
                {"id": "toolu_patch", "type": "custom",
                 "custom": {"name": "apply_patch", "input": PATCH}}]},
            {"role": "tool", "tool_call_id": "toolu_patch", "content": "Done."},
        ]
    body = Translation(client, ANTHROPIC, request_id=REQUEST_ID, created=CREATED).request(history)
    use = next(b for m in body["messages"] for b in m["content"]
               if type(b) is dict and b.get("type") == "tool_use")
    assert use["input"] == {ir.CUSTOM_INPUT_KEY: PATCH}
