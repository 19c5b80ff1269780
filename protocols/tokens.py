"""Cheap, deterministic prompt-token estimates for ``count_tokens``.

Claude Code calls ``POST /v1/messages/count_tokens`` around every turn
(protocols.md §3.10).  When the route's provider cannot count for us, the
gateway answers from this estimate: no tokenizer, no I/O, linear in the body.

The rule: about 4 UTF-8 bytes per token for text and JSON (the usual figure for
English prose and code with BPE vocabularies), a fixed overhead per message and
per tool, and images at Anthropic's documented cost of width*height/750 tokens,
taken at the 1.15 megapixel size a large image is scaled to (about 1,600
tokens) because the estimate does not decode images.
"""

from __future__ import annotations

from typing import Any

from . import jsonio

BYTES_PER_TOKEN = 4
# Role markers and separators per message (OpenAI's cookbook counts 3-4).
MESSAGE_OVERHEAD_TOKENS = 4
# Tool definitions are wrapped in a system preamble by providers.
TOOL_OVERHEAD_TOKENS = 8
# ~1.15 MP / 750 (Anthropic vision docs: tokens = width * height / 750).
IMAGE_TOKENS = 1600
# A PDF page costs roughly 1,500-3,000 tokens; without parsing we charge by size.
DOCUMENT_BYTES_PER_TOKEN = 8


def _text_tokens(text: str) -> int:
    n = len(text.encode("utf-8", "surrogatepass"))
    return -(-n // BYTES_PER_TOKEN)


def _json_tokens(value: Any) -> int:
    try:
        return -(-len(jsonio.dumps(value)) // BYTES_PER_TOKEN)
    except (TypeError, ValueError):
        return _text_tokens(str(value))


def _block_tokens(block: Any) -> int:
    if type(block) is str:
        return _text_tokens(block)
    if type(block) is not dict:
        return _json_tokens(block)
    kind = block.get("type")
    if kind == "text":
        return _text_tokens(str(block.get("text", "")))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        src = block.get("source") or {}
        data = src.get("data") if type(src) is dict else None
        if type(data) is str:
            return max(1, len(data) * 3 // 4 // DOCUMENT_BYTES_PER_TOKEN)
        return IMAGE_TOKENS
    if kind == "tool_use":
        return _text_tokens(str(block.get("name", ""))) + _json_tokens(block.get("input", {}))
    if kind == "tool_result":
        content = block.get("content")
        if type(content) is list:
            return 2 + sum(_block_tokens(b) for b in content)
        return 2 + _block_tokens(content if content is not None else "")
    if kind == "thinking":
        return _text_tokens(str(block.get("thinking", "")))
    if kind == "redacted_thinking":
        return _text_tokens(str(block.get("data", ""))) // 4
    return _json_tokens(block)


def estimate_anthropic_input_tokens(body: dict[str, Any]) -> int:
    """Estimated ``input_tokens`` for an Anthropic Messages / count_tokens body:
    system, tools, messages and images all counted."""
    total = 0
    system = body.get("system")
    if type(system) is str:
        total += _text_tokens(system)
    elif type(system) is list:
        total += sum(_block_tokens(b) for b in system)
    for tool in body.get("tools") or ():
        total += TOOL_OVERHEAD_TOKENS + _json_tokens(tool)
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
