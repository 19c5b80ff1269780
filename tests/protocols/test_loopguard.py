"""Duplicate tool-call detection over every wire format."""

from __future__ import annotations

import pytest

from protocols.loopguard import inject_warning, trailing_run


def chat(n, args='{"cmd": "ls"}', other_last=False):
    msgs = [{"role": "user", "content": "go"}]
    for i in range(n):
        call = {"id": f"call_{i}", "type": "function",
                "function": {"name": "shell", "arguments": args}}
        msgs.append({"role": "assistant", "content": None, "tool_calls": [call]})
        msgs.append({"role": "tool", "tool_call_id": f"call_{i}", "content": "same"})
    if other_last:
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_x", "type": "function", "function": {"name": "read", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": "call_x", "content": "x"})
    return {"model": "m", "messages": msgs}


def anthropic(n, inp=None):
    msgs = [{"role": "user", "content": "go"}]
    for i in range(n):
        msgs.append({"role": "assistant", "content": [
            {"type": "text", "text": "again"},
            {"type": "tool_use", "id": f"toolu_{i}", "name": "Bash",
             "input": inp or {"command": "ls", "x": 1}}]})
        msgs.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": "same"}]})
    return {"model": "m", "max_tokens": 10, "messages": msgs}


def responses(n):
    items = [{"role": "user", "content": "go"}]
    spellings = ('{"yield_time_ms": 100, "cmd": "ls"}', '{"cmd":"ls","yield_time_ms":100}')
    for i in range(n):
        args = spellings[i % 2]  # the same arguments, spelled two ways
        items.append({"type": "function_call", "call_id": f"call_{i}", "name": "exec_command",
                      "arguments": args})
        items.append({"type": "function_call_output", "call_id": f"call_{i}", "output": "same"})
    return {"model": "m", "input": items}


def gemini(n):
    contents = [{"role": "user", "parts": [{"text": "go"}]}]
    for _ in range(n):
        call = {"functionCall": {"name": "f", "args": {"a": 1}}}
        result = {"functionResponse": {"name": "f", "response": {"r": 1}}}
        contents.append({"role": "model", "parts": [call]})
        contents.append({"role": "user", "parts": [result]})
    return {"contents": contents}


@pytest.mark.parametrize("fmt,body,expected", [
    ("openai_chat", chat(4), (4, "shell")),
    ("openai_chat", chat(4, other_last=True), (1, "read")),
    ("openai_chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, (0, None)),
    ("anthropic_messages", anthropic(3), (3, "Bash")),
    ("openai_responses", responses(5), (5, "exec_command")),  # key order does not matter
    ("gemini", gemini(2), (2, "f")),
])
def test_trailing_run(fmt, body, expected):
    assert trailing_run(fmt, body) == expected


def test_different_arguments_break_the_run():
    body = chat(3)
    body["messages"][3]["tool_calls"][0]["function"]["arguments"] = '{"cmd": "pwd"}'
    assert trailing_run("openai_chat", body) == (1, "shell")


@pytest.mark.parametrize("fmt,body", [("openai_chat", chat(3)),
                                      ("anthropic_messages", anthropic(3)),
                                      ("openai_responses", responses(3)), ("gemini", gemini(3))])
def test_inject_warning_keeps_history_valid(fmt, body):
    before = repr(body)
    out = inject_warning(fmt, body, "WARN")
    assert repr(body) == before  # the client's dict is not mutated
    assert "WARN" in repr(out)
    assert trailing_run(fmt, out) == trailing_run(fmt, body)
    if fmt == "anthropic_messages":
        last = out["messages"][-1]["content"]
        assert last[0]["type"] == "tool_result" and last[-1] == {"type": "text", "text": "WARN"}
