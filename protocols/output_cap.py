"""Cap a request's output-token limit at what the target model accepts.

Clients ask for what suits the model they think they talk to: Claude Code sends
``max_tokens`` 32000 or more, which an OpenAI model with a 16,384-token output limit
rejects with a 400.  The gateway, which knows the target, lowers the limit in the
body it sends upstream (``[providers.X] max_output_tokens``).  A request that asks for
less, or names no limit, is left alone: the provider's own default then applies.

Works on the upstream wire body (a dict in the upstream's format), after any
translation, so same-format and translated requests take the one path.  Sans-IO.
"""

from __future__ import annotations

from typing import Any

from .anthropic_messages import MIN_THINKING_BUDGET_TOKENS

__all__ = ["cap_output_tokens"]


def _over(value: Any, cap: int) -> bool:
    return type(value) is int and value > cap


def cap_output_tokens(fmt: str, body: dict[str, Any], cap: int) -> dict[str, Any]:
    """``body`` with its output limit lowered to ``cap`` (a shallow copy), or ``body``
    itself when nothing is over the cap.

    - Chat: ``max_completion_tokens`` and ``max_tokens``.
    - Anthropic: ``max_tokens``; an enabled thinking budget must stay below it, so it
      becomes half of it, and thinking is left out when that half is under the
      1,024-token minimum (the rule the Anthropic encoder applies).
    - Responses: ``max_output_tokens``.
    - Gemini: ``generationConfig.maxOutputTokens`` and a positive
      ``thinkingConfig.thinkingBudget``.
    """
    if fmt == "openai_chat":
        keys = [k for k in ("max_completion_tokens", "max_tokens") if _over(body.get(k), cap)]
        if not keys:
            return body
        body = dict(body)
        for k in keys:
            body[k] = cap
        return body
    if fmt == "anthropic_messages":
        if not _over(body.get("max_tokens"), cap):
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
    if fmt == "openai_responses":
        if not _over(body.get("max_output_tokens"), cap):
            return body
        return dict(body, max_output_tokens=cap)
    if fmt == "gemini":
        gc = body.get("generationConfig")
        if type(gc) is not dict:
            return body
        tc = gc.get("thinkingConfig")
        over_budget = type(tc) is dict and _over(tc.get("thinkingBudget"), cap)
        if not (_over(gc.get("maxOutputTokens"), cap) or over_budget):
            return body
        gc = dict(gc)
        if _over(gc.get("maxOutputTokens"), cap):
            gc["maxOutputTokens"] = cap
        if over_budget:
            gc["thinkingConfig"] = dict(tc, thinkingBudget=cap)
        return dict(body, generationConfig=gc)
    raise ValueError(f"unknown wire format {fmt!r}")
