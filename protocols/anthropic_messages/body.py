"""Edits and reads on a raw Anthropic Messages request body (no IR): the model limits
and the loop guard of ``protocols.model_limits`` and ``protocols.loopguard``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..model_limits import over
from .tables import MIN_THINKING_BUDGET_TOKENS


def cap_output_tokens(body: dict[str, Any], cap: int) -> dict[str, Any]:
    """``max_tokens`` lowered to ``cap``; an enabled thinking budget must stay below it,
    so it becomes half of it, and thinking is left out when that half is under the
    1,024-token minimum (the rule the encoder applies)."""
    if not over(body.get("max_tokens"), cap):
        return body
    body = dict(body, max_tokens=cap)
    thinking = body.get("thinking")
    if type(thinking) is dict and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if type(budget) is int and budget >= cap:
            budget = cap // 2
            if budget < MIN_THINKING_BUDGET_TOKENS:
                del body["thinking"]
            else:
                body["thinking"] = dict(thinking, budget_tokens=budget)
    return body


def strip_reasoning(body: dict[str, Any]) -> dict[str, Any]:
    """Without ``thinking``, and without ``effort`` in ``output_config``."""
    oc = body.get("output_config")
    effort = type(oc) is dict and "effort" in oc
    if "thinking" not in body and not effort:
        return body
    body = {k: v for k, v in body.items() if k != "thinking"}
    if type(oc) is dict and effort:
        rest = {k: v for k, v in oc.items() if k != "effort"}
        if rest:
            body["output_config"] = rest
        else:
            del body["output_config"]
    return body


def tool_calls(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The assistant turns' ``tool_use`` blocks, newest first."""
    for msg in reversed(body.get("messages") or ()):
        if (type(msg) is dict and msg.get("role") == "assistant"
                and type(msg.get("content")) is list):
            for block in reversed(msg["content"]):
                if type(block) is dict and block.get("type") == "tool_use":
                    yield str(block.get("name")), block.get("input", {})


def inject_warning(body: dict[str, Any], text: str) -> dict[str, Any]:
    """A text block appended to the last user turn (after its ``tool_result`` blocks,
    which must stay first, docs/protocols.md §3.3), or a new user turn."""
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
    return dict(body, messages=msgs)


def request_stream_usage(body: dict[str, Any]) -> dict[str, Any] | None:
    """Anthropic always reports usage in its stream: nothing to ask."""
    return None


def output_tokens_asked(body: dict[str, Any]) -> int | None:
    """``max_tokens`` (required by the API), or None."""
    v = body.get("max_tokens")
    return v if type(v) is int and v >= 0 else None


def end_user(body: dict[str, Any]) -> str | None:
    """``metadata.user_id`` (https://docs.anthropic.com/en/api/messages)."""
    meta = body.get("metadata")
    v = meta.get("user_id") if type(meta) is dict else None
    return v if type(v) is str and v else None
