"""Duplicate tool-call detection, from the request history alone.

An agent stuck in a loop sends the same tool call with the same arguments turn
after turn.  Every request carries the whole history (Codex and Claude Code are
stateless), so the run of identical trailing tool calls can be read off the
request itself, in any of the four wire formats, without keeping state.

``trailing_run(fmt, body)`` returns how many times in a row the most recent
tool call (same name, same arguments after JSON normalisation) was made.
``inject_warning(fmt, body, text)`` adds a note for the model, in the form each
format carries naturally (each format package's ``body`` module reads the calls and
places the note; this module keeps what does not depend on the format):

- OpenAI Chat: a final ``system`` message;
- OpenAI Responses: a final ``developer`` input message;
- Anthropic Messages: a text block appended to the last user turn (after its
  ``tool_result`` blocks, which must stay first, docs/protocols.md §3.3);
- Gemini: a text part appended to ``systemInstruction``.
"""

from __future__ import annotations

from typing import Any

from . import jsonio
from .registry import format_module

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
            return str(args).strip()
    try:
        return jsonio.dumps_sorted(args).decode()
    except (TypeError, ValueError):
        return repr(args)


def trailing_run(fmt: str, body: dict[str, Any]) -> tuple[int, str | None]:
    """(count, tool name) of the run of identical tool calls ending the history.

    The format's ``tool_calls`` yields the history's calls newest first, so the run at
    the end is found without walking a long agent history (hundreds of messages, tens
    of kilobytes) on every request."""
    last: tuple[str, str] | None = None
    n = 0
    for name, args in format_module(fmt).tool_calls(body):
        call = (name, _norm_args(args))
        if last is None:
            last = call
        elif call != last:
            break
        n += 1
    return n, (last[0] if last else None)


def inject_warning(fmt: str, body: dict[str, Any], text: str) -> dict[str, Any]:
    """A copy of ``body`` (shallow where untouched) carrying ``text`` for the model."""
    result: dict[str, Any] = format_module(fmt).inject_warning(body, text)
    return result
