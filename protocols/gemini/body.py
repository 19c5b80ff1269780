"""Edits and reads on a raw Gemini request body (no IR): the model limits and the loop
guard of ``protocols.model_limits`` and ``protocols.loopguard``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..model_limits import over


def cap_output_tokens(body: dict[str, Any], cap: int) -> dict[str, Any]:
    """``generationConfig.maxOutputTokens`` and a positive
    ``thinkingConfig.thinkingBudget`` lowered to ``cap``."""
    gc = body.get("generationConfig")
    if type(gc) is not dict:
        return body
    tc = gc.get("thinkingConfig")
    over_budget = type(tc) is dict and over(tc.get("thinkingBudget"), cap)
    if not (over(gc.get("maxOutputTokens"), cap) or over_budget):
        return body
    gc = dict(gc)
    if over(gc.get("maxOutputTokens"), cap):
        gc["maxOutputTokens"] = cap
    if type(tc) is dict and over_budget:
        gc["thinkingConfig"] = dict(tc, thinkingBudget=cap)
    return dict(body, generationConfig=gc)


def strip_reasoning(body: dict[str, Any]) -> dict[str, Any]:
    """Without ``generationConfig.thinkingConfig``."""
    gc = body.get("generationConfig")
    if type(gc) is not dict or "thinkingConfig" not in gc:
        return body
    return dict(body, generationConfig={k: v for k, v in gc.items() if k != "thinkingConfig"})


def tool_calls(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The model turns' ``functionCall`` parts, newest first."""
    for content in reversed(body.get("contents") or ()):
        if type(content) is dict and content.get("role") == "model":
            for part in reversed(content.get("parts") or ()):
                fc = part.get("functionCall") if type(part) is dict else None
                if type(fc) is dict:
                    yield str(fc.get("name")), fc.get("args", {})


def inject_warning(body: dict[str, Any], text: str) -> dict[str, Any]:
    """A text part appended to ``systemInstruction``."""
    si = body.get("systemInstruction")
    parts = list(si.get("parts", ())) if type(si) is dict else []
    parts.append({"text": text})
    return dict(body, systemInstruction={**(si if type(si) is dict else {}), "parts": parts})


def request_stream_usage(body: dict[str, Any]) -> dict[str, Any] | None:
    """Gemini reports ``usageMetadata`` on its stream's chunks: nothing to ask."""
    return None


def output_tokens_asked(body: dict[str, Any]) -> int | None:
    """``generationConfig.maxOutputTokens``, or None."""
    config = body.get("generationConfig")
    v = config.get("maxOutputTokens") if type(config) is dict else None
    return v if type(v) is int and v >= 0 else None


def end_user(body: dict[str, Any]) -> str | None:
    """Gemini's generateContent has no end-user field."""
    return None
