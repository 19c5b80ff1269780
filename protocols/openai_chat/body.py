"""Edits and reads on a raw Chat Completions request body (no IR): the model limits and
the loop guard of ``protocols.model_limits`` and ``protocols.loopguard``, and the usage
report observe mode asks for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..model_limits import over


def cap_output_tokens(body: dict[str, Any], cap: int) -> dict[str, Any]:
    """``max_completion_tokens`` and ``max_tokens`` lowered to ``cap``."""
    keys = [k for k in ("max_completion_tokens", "max_tokens") if over(body.get(k), cap)]
    if not keys:
        return body
    body = dict(body)
    for k in keys:
        body[k] = cap
    return body


def strip_reasoning(body: dict[str, Any]) -> dict[str, Any]:
    """Without ``reasoning_effort`` (and ``reasoning``, which some OpenAI-compatible
    servers take)."""
    if "reasoning_effort" not in body and "reasoning" not in body:
        return body
    return {k: v for k, v in body.items() if k != "reasoning_effort" and k != "reasoning"}


def tool_calls(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The assistant messages' ``tool_calls``, newest first."""
    for msg in reversed(body.get("messages") or ()):
        if type(msg) is dict and msg.get("role") == "assistant":
            for tc in reversed(msg.get("tool_calls") or ()):
                fn = tc.get("function") if type(tc) is dict else None
                if type(fn) is dict:
                    yield str(fn.get("name")), fn.get("arguments", "")


def inject_warning(body: dict[str, Any], text: str) -> dict[str, Any]:
    """A final ``system`` message."""
    return dict(body, messages=[*body.get("messages", ()), {"role": "system", "content": text}])


def request_stream_usage(body: dict[str, Any]) -> dict[str, Any] | None:
    """A streaming request without ``stream_options.include_usage: true`` as a copy that
    asks for it, so usage is reported rather than estimated (docs/protocols.md §1.5);
    ``None`` for a request that already asks or does not stream."""
    if body.get("stream") is not True:
        return None
    opts = body.get("stream_options")
    if type(opts) is dict and opts.get("include_usage") is True:
        return None
    opts = dict(opts) if type(opts) is dict else {}
    opts["include_usage"] = True
    return dict(body, stream_options=opts)


def output_tokens_asked(body: dict[str, Any]) -> int | None:
    """The output limit the request names (``max_completion_tokens``, else the older
    ``max_tokens``), or None."""
    for k in ("max_completion_tokens", "max_tokens"):
        v = body.get(k)
        if type(v) is int and v >= 0:
            return v
    return None


def end_user(body: dict[str, Any]) -> str | None:
    """Who the client says the end user is: ``safety_identifier``, else the older
    ``user`` (https://platform.openai.com/docs/api-reference/chat/create)."""
    for k in ("safety_identifier", "user"):
        v = body.get(k)
        if type(v) is str and v:
            return v
    return None
