"""Fit a request to what the target model accepts.

Clients ask for what suits the model they think they talk to.  Claude Code sends
``max_tokens`` 128000 with adaptive thinking and an effort; an OpenAI model with a
16,384-token output limit refuses the first with a 400, and one without reasoning
refuses ``reasoning_effort``.  The gateway, which knows the target, fits the body it
sends upstream:

- ``cap_output_tokens``: the output-token limit lowered to the model's
  (``[providers.X] max_output_tokens``); a request asking for less, or naming no
  limit, is left alone and the provider's own default applies;
- ``strip_reasoning``: the reasoning controls removed for a model without reasoning
  (``[providers.X] no_reasoning``).

Both work on the upstream wire body (a dict in the upstream's format), after any
translation, so same-format and translated requests take the one path.  Sans-IO.
Which keys hold the limits is the format's own business: each format package's
``body`` module implements both, reached through the registry.
"""

from __future__ import annotations

from typing import Any

from .registry import format_module

__all__ = ["cap_output_tokens", "over", "strip_reasoning"]


def over(value: Any, cap: int) -> bool:
    """True when ``value`` is a token count above ``cap``."""
    return type(value) is int and value > cap


def cap_output_tokens(fmt: str, body: dict[str, Any], cap: int) -> dict[str, Any]:
    """``body`` with its output limit lowered to ``cap`` (a shallow copy), or ``body``
    itself when nothing is over the cap: Chat ``max_completion_tokens`` and
    ``max_tokens``, Anthropic ``max_tokens`` (and the thinking budget below it),
    Responses ``max_output_tokens``, Gemini ``generationConfig.maxOutputTokens`` and
    the thinking budget. ``ValueError`` for an unknown format."""
    result: dict[str, Any] = format_module(fmt).cap_output_tokens(body, cap)
    return result


def strip_reasoning(fmt: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without its reasoning controls (a shallow copy), or ``body`` itself when
    it has none: Chat ``reasoning_effort``, Anthropic ``thinking`` and
    ``output_config.effort``, Responses ``reasoning`` and its ``include`` entry, Gemini
    ``generationConfig.thinkingConfig``. ``ValueError`` for an unknown format."""
    result: dict[str, Any] = format_module(fmt).strip_reasoning(body)
    return result
