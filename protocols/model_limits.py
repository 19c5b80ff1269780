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
"""

from __future__ import annotations

from typing import Any

from .anthropic_messages.tables import MIN_THINKING_BUDGET_TOKENS

__all__ = ["cap_output_tokens", "strip_reasoning"]


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


def strip_reasoning(fmt: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without its reasoning controls (a shallow copy), or ``body`` itself
    when it has none.

    - Chat: ``reasoning_effort`` (and ``reasoning``, which some OpenAI-compatible
      servers take).
    - Anthropic: ``thinking``, and ``effort`` in ``output_config``.
    - Responses: ``reasoning``, and ``reasoning.encrypted_content`` in ``include``.
    - Gemini: ``generationConfig.thinkingConfig``.
    """
    if fmt == "openai_chat":
        if "reasoning_effort" not in body and "reasoning" not in body:
            return body
        return {k: v for k, v in body.items() if k != "reasoning_effort" and k != "reasoning"}
    if fmt == "anthropic_messages":
        oc = body.get("output_config")
        effort = type(oc) is dict and "effort" in oc
        if "thinking" not in body and not effort:
            return body
        body = {k: v for k, v in body.items() if k != "thinking"}
        if effort:
            rest = {k: v for k, v in oc.items() if k != "effort"}
            if rest:
                body["output_config"] = rest
            else:
                del body["output_config"]
        return body
    if fmt == "openai_responses":
        include = body.get("include")
        enc = type(include) is list and "reasoning.encrypted_content" in include
        if "reasoning" not in body and not enc:
            return body
        body = {k: v for k, v in body.items() if k != "reasoning"}
        if enc:
            rest = [i for i in include if i != "reasoning.encrypted_content"]
            if rest:
                body["include"] = rest
            else:
                del body["include"]
        return body
    if fmt == "gemini":
        gc = body.get("generationConfig")
        if type(gc) is not dict or "thinkingConfig" not in gc:
            return body
        return dict(body, generationConfig={k: v for k, v in gc.items() if k != "thinkingConfig"})
    raise ValueError(f"unknown wire format {fmt!r}")
