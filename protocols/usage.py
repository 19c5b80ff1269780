"""Token usage: every wire format's usage object to and from ``ir.Usage``.

``ir.Usage`` uses OpenAI semantics (docs/protocols.md §5.5): ``input_tokens`` is the whole
prompt including cache reads and writes, ``output_tokens`` includes reasoning. The two
conversions that matter most for cost accounting:

* Anthropic → IR: ``input = input_tokens + cache_creation_input_tokens +
  cache_read_input_tokens``; ``cached = cache_read_input_tokens``. Reporting Anthropic's
  ``input_tokens`` alone as the prompt under-counts by the cached amount (§5.8 case 14).
* IR → Anthropic: ``input_tokens = max(input - cached - cache_write, 0)`` (LiteLLM's rule),
  so cached tokens are not counted twice.

Streams report usage cumulatively (Anthropic ``message_delta.usage``, Gemini
``usageMetadata`` on every chunk): a later report *replaces* an earlier one. Anthropic's
later reports may omit fields given earlier (older streams send only ``output_tokens``), so
``merge_anthropic`` overlays the raw fields before converting; nothing is ever summed.

Bad values from an upstream (a string where a count belongs) raise
``UpstreamProtocolError``; ``None`` counts as 0.
"""

from __future__ import annotations

from typing import Any

from .errors import UpstreamProtocolError
from .ir import Usage

__all__ = [
    "ZERO",
    "from_openai_chat",
    "to_openai_chat",
    "from_openai_responses",
    "to_openai_responses",
    "from_anthropic",
    "to_anthropic",
    "to_anthropic_message",
    "merge_anthropic",
    "from_gemini",
    "to_gemini",
    "as_record",
]

ZERO = Usage()
#: The largest token count read (2^53, the largest integer a JSON reader in doubles
#: holds exactly). A count past it is no count: the sums made from three of them stay
#: within SQLite's 64-bit integers, and every reply the gateway writes can hold them.
MAX_TOKEN_COUNT = 2**53


def _n(obj: Any, key: str) -> int:
    """A token count from ``obj[key]``: missing or ``None`` is 0."""
    if type(obj) is not dict:
        return 0
    v = obj.get(key)
    if type(v) is int and v <= MAX_TOKEN_COUNT:
        return v if v >= 0 else 0
    if v is None:
        return 0
    if type(v) is float and v.is_integer() and v <= MAX_TOKEN_COUNT:
        return int(v) if v >= 0 else 0
    raise UpstreamProtocolError(f"usage field {key!r} is not a token count: {v!r}", param=key)


def _check(obj: Any) -> dict[str, Any]:
    if type(obj) is not dict:
        raise UpstreamProtocolError("usage is not an object", param="usage")
    return obj


# --- OpenAI Chat Completions (§1.4) ----------------------------------------------------


def from_openai_chat(u: Any) -> Usage:
    """``{"prompt_tokens", "completion_tokens", "prompt_tokens_details": {"cached_tokens",
    "cache_write_tokens"}, "completion_tokens_details": {"reasoning_tokens"}}``."""
    if type(u) is not dict:
        raise UpstreamProtocolError("usage is not an object", param="usage")
    get = u.get
    p, c = get("prompt_tokens"), get("completion_tokens")
    pd, cd = get("prompt_tokens_details"), get("completion_tokens_details")
    # Plain counts and absent details read inline: this runs for every reply and every
    # passthrough request; anything else goes through ``_n``'s checks.
    return Usage(
        p if type(p) is int and 0 <= p <= MAX_TOKEN_COUNT else _n(u, "prompt_tokens"),
        c if type(c) is int and 0 <= c <= MAX_TOKEN_COUNT else _n(u, "completion_tokens"),
        _n(pd, "cached_tokens") if pd is not None else 0,
        _n(pd, "cache_write_tokens") if pd is not None else 0,
        _n(cd, "reasoning_tokens") if cd is not None else 0,
    )


def to_openai_chat(u: Usage) -> dict[str, Any]:
    """Chat usage with every detail count the API writes (§1.4): audio and predicted
    output never pass through a translation, so those are 0."""
    prompt_details: dict[str, int] = {"cached_tokens": u.cached_tokens, "audio_tokens": 0}
    if u.cache_write_tokens:
        prompt_details["cache_write_tokens"] = u.cache_write_tokens
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens,
                                      "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


# --- OpenAI Responses (§2.4) ------------------------------------------------------------


def from_openai_responses(u: Any) -> Usage:
    u = _check(u)
    idt = u.get("input_tokens_details")
    odt = u.get("output_tokens_details")
    return Usage(
        _n(u, "input_tokens"),
        _n(u, "output_tokens"),
        _n(idt, "cached_tokens") if idt is not None else 0,
        _n(idt, "cache_write_tokens") if idt is not None else 0,
        _n(odt, "reasoning_tokens") if odt is not None else 0,
    )


def to_openai_responses(u: Usage) -> dict[str, Any]:
    """Responses shape; Codex requires integer ``input_tokens``, ``output_tokens``,
    ``total_tokens`` and, inside the details, ``cached_tokens``/``reasoning_tokens`` (§2.7)."""
    input_details: dict[str, int] = {"cached_tokens": u.cached_tokens}
    if u.cache_write_tokens:
        input_details["cache_write_tokens"] = u.cache_write_tokens
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": input_details,
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


# --- Anthropic Messages (§3.6, §3.7) ----------------------------------------------------


def from_anthropic(u: Any) -> Usage:
    """``input_tokens`` excludes both cache fields (§3.6), so they are added back."""
    u = _check(u)
    cache_read = _n(u, "cache_read_input_tokens")
    cache_write = _n(u, "cache_creation_input_tokens")
    details = u.get("output_tokens_details")
    return Usage(
        _n(u, "input_tokens") + cache_read + cache_write,
        _n(u, "output_tokens"),
        cache_read,
        cache_write,
        _n(details, "thinking_tokens") if details is not None else 0,
    )


def to_anthropic(u: Usage) -> dict[str, Any]:
    """``message_delta.usage`` (§3.8): the counts, the thinking tokens among the output
    (``output_tokens_details``, null when none were reported) and ``server_tool_use``
    (null: no server tool runs here)."""
    return {
        "input_tokens": max(u.input_tokens - u.cached_tokens - u.cache_write_tokens, 0),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": u.output_tokens,
        "output_tokens_details": ({"thinking_tokens": u.reasoning_tokens}
                                  if u.reasoning_tokens else None),
        "server_tool_use": None,
    }


def to_anthropic_message(u: Usage) -> dict[str, Any]:
    """A Message's whole ``usage`` (§3.7): ``message_delta.usage`` and every other field
    the published ``Usage`` schema requires, with what the API writes when nothing else
    applies. Cache writes are reported under the default 5-minute TTL (the IR keeps no
    TTL); the tier is ``standard``."""
    out = to_anthropic(u)
    out["cache_creation"] = {"ephemeral_5m_input_tokens": u.cache_write_tokens,
                             "ephemeral_1h_input_tokens": 0}
    out["service_tier"] = "standard"
    out["inference_geo"] = None
    return out


def merge_anthropic(raw: dict[str, Any], update: Any) -> dict[str, Any]:
    """Overlay a later cumulative Anthropic usage report on the raw fields seen so far.

    ``message_delta.usage`` is cumulative but may omit fields ``message_start`` gave
    (older streams send only ``output_tokens``); present fields replace, absent ones are
    kept. ``None`` values are treated as absent. Returns a new dict.
    """
    update = _check(update)
    merged = dict(raw)
    for k, v in update.items():
        if v is not None:
            merged[k] = v
    return merged


# --- Gemini (§4) -----------------------------------------------------------------------


def from_gemini(u: Any) -> Usage:
    """``candidatesTokenCount`` excludes thoughts; OpenAI-style output = candidates +
    thoughts. ``toolUsePromptTokenCount`` is prompt-side and counted as input."""
    u = _check(u)
    thoughts = _n(u, "thoughtsTokenCount")
    return Usage(
        input_tokens=_n(u, "promptTokenCount") + _n(u, "toolUsePromptTokenCount"),
        output_tokens=_n(u, "candidatesTokenCount") + thoughts,
        cached_tokens=_n(u, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def to_gemini(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": max(u.output_tokens - u.reasoning_tokens, 0),
        "totalTokenCount": u.input_tokens + u.output_tokens,
    }
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    if u.cached_tokens:
        out["cachedContentTokenCount"] = u.cached_tokens
    return out


def as_record(u: Usage) -> dict[str, int]:
    """Flat record for the ledger (one shape whatever the provider)."""
    return {
        "input_tokens": u.input_tokens,
        "cached_tokens": u.cached_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "output_tokens": u.output_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    }
