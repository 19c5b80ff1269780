"""Cheap, deterministic prompt-token estimates for ``count_tokens``.

Claude Code calls ``POST /v1/messages/count_tokens`` around every turn
(docs/protocols.md §3.10).  When the route's provider cannot count for us, the
gateway answers from this estimate: no tokenizer, no I/O, linear in the body.

The rule: about 4 UTF-8 bytes per token for text and JSON (the usual figure for
English prose and code with BPE vocabularies), a fixed overhead per message and
per tool, and images at a fixed cost (each format's package says which; Anthropic
charges width*height/750 tokens, taken at the 1.15 megapixel size a large image is
scaled to, about 1,600 tokens, because the estimate does not decode images).
This module holds the format-independent rule; a format that can be counted has an
``estimate_input_tokens(body)`` in its package (Anthropic Messages today), reached
through the registry.
"""

from __future__ import annotations

from typing import Any

from . import jsonio
from .registry import format_module

__all__ = [
    "BYTES_PER_TOKEN",
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD_TOKENS",
    "TOOL_OVERHEAD_TOKENS",
    "estimate_input_tokens",
    "json_tokens",
    "text_tokens",
]

BYTES_PER_TOKEN = 4
# Role markers and separators per message (OpenAI's cookbook counts 3-4).
MESSAGE_OVERHEAD_TOKENS = 4
# Tool definitions are wrapped in a system preamble by providers.
TOOL_OVERHEAD_TOKENS = 8
# ~1.15 MP / 750 (Anthropic vision docs: tokens = width * height / 750).
IMAGE_TOKENS = 1600


def text_tokens(text: str) -> int:
    """Tokens of ``text``: its UTF-8 bytes over ``BYTES_PER_TOKEN``, rounded up."""
    n = len(text.encode("utf-8", "surrogatepass"))
    return -(-n // BYTES_PER_TOKEN)


def json_tokens(value: Any) -> int:
    """Tokens of ``value`` as compact JSON (its ``str`` when it is not JSON)."""
    try:
        return -(-len(jsonio.dumps(value)) // BYTES_PER_TOKEN)
    except (TypeError, ValueError):
        return text_tokens(str(value))


def estimate_input_tokens(fmt: str, body: dict[str, Any]) -> int:
    """Estimated input tokens of a ``fmt`` request body; ``ValueError`` for a format
    that has no estimate."""
    estimate = getattr(format_module(fmt), "estimate_input_tokens", None)
    if estimate is None:
        raise ValueError(f"wire format {fmt!r} has no input token estimate")
    result: int = estimate(body)
    return result
