"""What a client request says about its own cost and its end user, per format.

Used by the gateway's accounting: the output limit a request names bounds its
token estimate before the provider answers, and the end user it names is stored
beside the API key. Sans-IO; the keys each format uses live in its ``body`` module.
"""

from __future__ import annotations

from typing import Any

from .registry import format_module

__all__ = ["end_user", "output_tokens_asked"]


def output_tokens_asked(fmt: str, body: dict[str, Any]) -> int | None:
    """Chat ``max_completion_tokens``/``max_tokens``, Anthropic ``max_tokens``,
    Responses ``max_output_tokens``, Gemini ``generationConfig.maxOutputTokens``."""
    result: int | None = format_module(fmt).output_tokens_asked(body)
    return result


def end_user(fmt: str, body: dict[str, Any]) -> str | None:
    """Chat and Responses ``safety_identifier`` or ``user``, Anthropic
    ``metadata.user_id``; Gemini has none."""
    result: str | None = format_module(fmt).end_user(body)
    return result
