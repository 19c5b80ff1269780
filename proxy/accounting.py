"""Turning reported usage into ledger columns."""

from __future__ import annotations

from typing import Any


def usage_to_row(usage: Any, row: dict[str, Any]) -> None:
    """Copy usage (an ``ir.Usage`` or an OpenAI-shaped dict) into ledger columns."""
    if usage is None:
        return
    if type(usage) is dict:
        row["input_tokens"] = usage.get("prompt_tokens")
        row["output_tokens"] = usage.get("completion_tokens")
        ptd = usage.get("prompt_tokens_details") or {}
        row["cached_tokens"] = ptd.get("cached_tokens")
        row["cache_write_tokens"] = ptd.get("cache_write_tokens")
        ctd = usage.get("completion_tokens_details") or {}
        row["reasoning_tokens"] = ctd.get("reasoning_tokens")
        return
    row["input_tokens"] = usage.input_tokens
    row["output_tokens"] = usage.output_tokens
    row["cached_tokens"] = usage.cached_tokens
    row["cache_write_tokens"] = usage.cache_write_tokens
    row["reasoning_tokens"] = usage.reasoning_tokens
