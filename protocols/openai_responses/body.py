"""Edits and reads on a raw Responses request body (no IR): the model limits and the
loop guard of ``protocols.model_limits`` and ``protocols.loopguard``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..model_limits import over
from .tables import LOCAL_SHELL_TOOL_NAME


def cap_output_tokens(body: dict[str, Any], cap: int) -> dict[str, Any]:
    """``max_output_tokens`` lowered to ``cap``."""
    if not over(body.get("max_output_tokens"), cap):
        return body
    return dict(body, max_output_tokens=cap)


def strip_reasoning(body: dict[str, Any]) -> dict[str, Any]:
    """Without ``reasoning``, and without ``reasoning.encrypted_content`` in ``include``."""
    include = body.get("include")
    enc = type(include) is list and "reasoning.encrypted_content" in include
    if "reasoning" not in body and not enc:
        return body
    body = {k: v for k, v in body.items() if k != "reasoning"}
    if type(include) is list and enc:
        rest = [i for i in include if i != "reasoning.encrypted_content"]
        if rest:
            body["include"] = rest
        else:
            del body["include"]
    return body


def tool_calls(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """``function_call``, ``custom_tool_call`` and ``local_shell_call`` items, newest
    first (a custom tool's raw input is marked so it never equals JSON arguments)."""
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
            yield LOCAL_SHELL_TOOL_NAME, item.get("action", {})


def inject_warning(body: dict[str, Any], text: str) -> dict[str, Any]:
    """A final ``developer`` input message."""
    items = body.get("input")
    if type(items) is str:
        items = [{"role": "user", "content": items}]
    return dict(body, input=[*(items or ()), {"role": "developer", "content": text}])


def request_stream_usage(body: dict[str, Any]) -> dict[str, Any] | None:
    """Responses always reports usage in ``response.completed``: nothing to ask."""
    return None


def output_tokens_asked(body: dict[str, Any]) -> int | None:
    """``max_output_tokens``, or None."""
    v = body.get("max_output_tokens")
    return v if type(v) is int and v >= 0 else None


def end_user(body: dict[str, Any]) -> str | None:
    """``safety_identifier``, else the older ``user``
    (https://platform.openai.com/docs/api-reference/responses/create)."""
    for k in ("safety_identifier", "user"):
        v = body.get(k)
        if type(v) is str and v:
            return v
    return None
