"""Input-token estimate of an Anthropic Messages (or ``count_tokens``) body, with the
format-independent rule of ``protocols.tokens``: system, tools, messages and images
all counted."""

from __future__ import annotations

from typing import Any

from ..tokens import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    TOOL_OVERHEAD_TOKENS,
    json_tokens,
    text_tokens,
)

# A PDF page costs roughly 1,500-3,000 tokens; without parsing we charge by size.
DOCUMENT_BYTES_PER_TOKEN = 8


def _block_tokens(block: Any) -> int:
    if type(block) is str:
        return text_tokens(block)
    if type(block) is not dict:
        return json_tokens(block)
    kind = block.get("type")
    if kind == "text":
        return text_tokens(str(block.get("text", "")))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        src = block.get("source") or {}
        data = src.get("data") if type(src) is dict else None
        if type(data) is str:
            return max(1, len(data) * 3 // 4 // DOCUMENT_BYTES_PER_TOKEN)
        return IMAGE_TOKENS
    if kind == "tool_use":
        return text_tokens(str(block.get("name", ""))) + json_tokens(block.get("input", {}))
    if kind == "tool_result":
        content = block.get("content")
        if type(content) is list:
            return 2 + sum(_block_tokens(b) for b in content)
        return 2 + _block_tokens(content if content is not None else "")
    if kind == "thinking":
        return text_tokens(str(block.get("thinking", "")))
    if kind == "redacted_thinking":
        return text_tokens(str(block.get("data", ""))) // 4
    return json_tokens(block)


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """Estimated ``input_tokens`` for an Anthropic Messages / count_tokens body."""
    total = 0
    system = body.get("system")
    if type(system) is str:
        total += text_tokens(system)
    elif type(system) is list:
        total += sum(_block_tokens(b) for b in system)
    for tool in body.get("tools") or ():
        total += TOOL_OVERHEAD_TOKENS + json_tokens(tool)
    for msg in body.get("messages") or ():
        total += MESSAGE_OVERHEAD_TOKENS
        if type(msg) is not dict:
            continue
        content = msg.get("content")
        if type(content) is list:
            total += sum(_block_tokens(b) for b in content)
        elif content is not None:
            total += _block_tokens(content)
    return max(1, total)
