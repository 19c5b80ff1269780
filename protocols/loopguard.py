"""Duplicate tool-call detection, from the request history alone.

An agent stuck in a loop sends the same tool call with the same arguments turn
after turn.  Every request carries the whole history (Codex and Claude Code are
stateless), so the run of identical trailing tool calls can be read off the
request itself, in any of the four wire formats, without keeping state.

``trailing_run(fmt, body)`` returns how many times in a row the most recent
tool call (same name, same arguments after JSON normalisation) was made.
``inject_warning(fmt, body, text)`` adds a note for the model, in the form each
format carries naturally:

- OpenAI Chat: a final ``system`` message;
- OpenAI Responses: a final ``developer`` input message;
- Anthropic Messages: a text block appended to the last user turn (after its
  ``tool_result`` blocks, which must stay first, protocols.md §3.3);
- Gemini: a text part appended to ``systemInstruction``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import jsonio

WARNING_TEMPLATE = (
    "[tokenway] Loop warning: the tool '{name}' has been called {count} times in a row "
    "with exactly the same arguments. Repeating it will not give a different result. "
    "Do not call it again with these arguments: change the arguments, use another "
    "approach, or answer with what you have."
)


def _norm_args(args: Any) -> str:
    """Arguments as a canonical string, so key order and spacing do not matter."""
    if type(args) is str:
        try:
            args = jsonio.loads(args)
        except jsonio.JSONDecodeError:
            return args.strip()
    try:
        return jsonio.dumps_sorted(args).decode()
    except (TypeError, ValueError):
        return repr(args)


# Each extractor yields the history's tool calls newest first, so the run
# at the end is found without walking a long agent history (hundreds of
# messages, tens of kilobytes) on every request.


def _calls_openai_chat(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for msg in reversed(body.get("messages") or ()):
        if type(msg) is dict and msg.get("role") == "assistant":
            for tc in reversed(msg.get("tool_calls") or ()):
                fn = tc.get("function") if type(tc) is dict else None
                if type(fn) is dict:
                    yield str(fn.get("name")), fn.get("arguments", "")


def _calls_anthropic(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for msg in reversed(body.get("messages") or ()):
        if type(msg) is dict and msg.get("role") == "assistant" and type(msg.get("content")) is list:
            for block in reversed(msg["content"]):
                if type(block) is dict and block.get("type") == "tool_use":
                    yield str(block.get("name")), block.get("input", {})


def _calls_responses(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    items = body.get("input")
    if type(items) is not list:
        return
    for item in reversed(items):
        if type(item) is not dict:
            continue
        kind = item.get("type")
        if kind == "function_call":
            yield str(item.get("name")), item.get("arguments", "")
        elif kind == "custom_tool_call":
            yield str(item.get("name")), "\0raw:" + str(item.get("input", ""))
        elif kind == "local_shell_call":
            yield "local_shell", item.get("action", {})


def _calls_gemini(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for content in reversed(body.get("contents") or ()):
        if type(content) is dict and content.get("role") == "model":
            for part in reversed(content.get("parts") or ()):
                fc = part.get("functionCall") if type(part) is dict else None
                if type(fc) is dict:
                    yield str(fc.get("name")), fc.get("args", {})


_EXTRACTORS = {
    "openai_chat": _calls_openai_chat,
    "anthropic_messages": _calls_anthropic,
    "openai_responses": _calls_responses,
    "gemini": _calls_gemini,
}


def trailing_run(fmt: str, body: dict[str, Any]) -> tuple[int, str | None]:
    """(count, tool name) of the run of identical tool calls ending the history."""
    last: tuple[str, str] | None = None
    n = 0
    for name, args in _EXTRACTORS[fmt](body):
        call = (name, _norm_args(args))
        if last is None:
            last = call
        elif call != last:
            break
        n += 1
    return n, (last[0] if last else None)


def inject_warning(fmt: str, body: dict[str, Any], text: str) -> dict[str, Any]:
    """A copy of ``body`` (shallow where untouched) carrying ``text`` for the model."""
    body = dict(body)
    if fmt == "openai_chat":
        body["messages"] = [*body.get("messages", ()), {"role": "system", "content": text}]
    elif fmt == "openai_responses":
        items = body.get("input")
        if type(items) is str:
            items = [{"role": "user", "content": items}]
        body["input"] = [*(items or ()), {"role": "developer", "content": text}]
    elif fmt == "anthropic_messages":
        msgs = list(body.get("messages", ()))
        if msgs and type(msgs[-1]) is dict and msgs[-1].get("role") == "user":
            last = dict(msgs[-1])
            content = last.get("content")
            blocks = ([{"type": "text", "text": content}] if type(content) is str
                      else list(content or ()))
            blocks.append({"type": "text", "text": text})
            last["content"] = blocks
            msgs[-1] = last
        else:
            msgs.append({"role": "user", "content": [{"type": "text", "text": text}]})
        body["messages"] = msgs
    elif fmt == "gemini":
        si = body.get("systemInstruction")
        parts = list(si.get("parts", ())) if type(si) is dict else []
        parts.append({"text": text})
        body["systemInstruction"] = {**(si if type(si) is dict else {}), "parts": parts}
    return body
