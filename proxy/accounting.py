"""Turning reported usage into ledger columns."""

from __future__ import annotations

from typing import Any

from protocols.ir import Usage


def usage_to_row(usage: Usage | None, row: dict[str, Any]) -> None:
    """Copy usage (``ir.Usage``, as ``protocols/`` reports it for every format) into
    ledger columns."""
    if usage is None:
        return
    row["input_tokens"] = usage.input_tokens
    row["output_tokens"] = usage.output_tokens
    row["cached_tokens"] = usage.cached_tokens
    row["cache_write_tokens"] = usage.cache_write_tokens
    row["reasoning_tokens"] = usage.reasoning_tokens
