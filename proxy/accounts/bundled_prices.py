"""The bundled price table: list prices of common OpenAI, Anthropic and Gemini models.

USD per million tokens: ``(pattern, input, output, cache_read, cache_write)``.
``None`` for a cache price means "the input price" (no discount, no surcharge).
Reasoning tokens are billed as output by all three vendors, and ``output`` counts
them (docs/protocols.md §5.5).

Patterns are ``fnmatch`` globs on the served model name; the most specific one
wins (``proxy/accounts/prices.py``). They are kept tight on purpose: a name the
table does not know (an audio or realtime variant, a new model) costs NULL, shown
as unknown in reports, rather than a neighbour's price.

Not modelled: long-context tiers (Gemini 2.5 Pro and 3 Pro above 200k prompt
tokens, Claude Sonnet's 1M-context tier), 1-hour cache writes (2x input on
Anthropic), batch and priority tiers, Gemini cache storage per hour. Prompts
past those thresholds are priced at the base tier.

Sources:
- OpenAI: https://platform.openai.com/docs/pricing (standard tier; cache writes are
  not billed, so they cost the input price).
- Anthropic: https://platform.claude.com/docs/en/about-claude/pricing (5-minute
  cache writes are 1.25x input, cache hits 0.1x input).
- Gemini: https://ai.google.dev/gemini-api/docs/pricing (paid tier, text input,
  prompts up to 200k tokens).
"""

from __future__ import annotations

#: When the prices below were taken from the pages above (shown by `gateway price list`).
BUNDLED_PRICES_DATE = "2026-12-07"

_OPUS_4 = (15.00, 75.00, 1.50, 18.75)
_OPUS_45 = (5.00, 25.00, 0.50, 6.25)
_SONNET = (3.00, 15.00, 0.30, 3.75)

BUNDLED_PRICES: tuple[tuple[str, float, float, float | None, float | None], ...] = (
    # -- OpenAI: each model's alias and its dated snapshots (NAME-YYYY-MM-DD) --
    ("gpt-5.2", 1.75, 14.00, 0.175, None),
    ("gpt-5.2-20*", 1.75, 14.00, 0.175, None),
    ("gpt-5.1", 1.25, 10.00, 0.125, None),
    ("gpt-5.1-20*", 1.25, 10.00, 0.125, None),
    ("gpt-5", 1.25, 10.00, 0.125, None),
    ("gpt-5-20*", 1.25, 10.00, 0.125, None),
    ("gpt-5-chat-latest", 1.25, 10.00, 0.125, None),
    ("gpt-5-codex", 1.25, 10.00, 0.125, None),
    ("gpt-5-mini", 0.25, 2.00, 0.025, None),
    ("gpt-5-mini-20*", 0.25, 2.00, 0.025, None),
    ("gpt-5-nano", 0.05, 0.40, 0.005, None),
    ("gpt-5-nano-20*", 0.05, 0.40, 0.005, None),
    ("gpt-5-pro", 15.00, 120.00, None, None),
    ("gpt-5-pro-20*", 15.00, 120.00, None, None),
    ("gpt-4.1", 2.00, 8.00, 0.50, None),
    ("gpt-4.1-20*", 2.00, 8.00, 0.50, None),
    ("gpt-4.1-mini", 0.40, 1.60, 0.10, None),
    ("gpt-4.1-mini-20*", 0.40, 1.60, 0.10, None),
    ("gpt-4.1-nano", 0.10, 0.40, 0.025, None),
    ("gpt-4.1-nano-20*", 0.10, 0.40, 0.025, None),
    ("gpt-4o", 2.50, 10.00, 1.25, None),
    ("gpt-4o-20*", 2.50, 10.00, 1.25, None),
    ("gpt-4o-2024-05-13", 5.00, 15.00, None, None),  # the first snapshot, before the cut
    ("chatgpt-4o-latest", 5.00, 15.00, None, None),
    ("gpt-4o-mini", 0.15, 0.60, 0.075, None),
    ("gpt-4o-mini-20*", 0.15, 0.60, 0.075, None),
    ("o1", 15.00, 60.00, 7.50, None),
    ("o1-20*", 15.00, 60.00, 7.50, None),
    ("o1-mini", 1.10, 4.40, 0.55, None),
    ("o1-mini-20*", 1.10, 4.40, 0.55, None),
    ("o1-pro", 150.00, 600.00, None, None),
    ("o1-pro-20*", 150.00, 600.00, None, None),
    ("o3", 2.00, 8.00, 0.50, None),
    ("o3-20*", 2.00, 8.00, 0.50, None),
    ("o3-pro", 20.00, 80.00, None, None),
    ("o3-pro-20*", 20.00, 80.00, None, None),
    ("o3-mini", 1.10, 4.40, 0.55, None),
    ("o3-mini-20*", 1.10, 4.40, 0.55, None),
    ("o4-mini", 1.10, 4.40, 0.275, None),
    ("o4-mini-20*", 1.10, 4.40, 0.275, None),
    ("gpt-4-turbo", 10.00, 30.00, None, None),
    ("gpt-4-turbo-20*", 10.00, 30.00, None, None),
    ("gpt-4", 30.00, 60.00, None, None),
    ("gpt-4-0613", 30.00, 60.00, None, None),
    ("gpt-3.5-turbo", 0.50, 1.50, None, None),
    ("gpt-3.5-turbo-0125", 0.50, 1.50, None, None),
    ("text-embedding-3-small", 0.02, 0.0, None, None),
    ("text-embedding-3-large", 0.13, 0.0, None, None),
    ("text-embedding-ada-002", 0.10, 0.0, None, None),
    # -- Anthropic: aliases (claude-sonnet-4-5) and dated ids (claude-sonnet-4-5-20250929) --
    ("claude-opus-4-6*", *_OPUS_45),
    ("claude-opus-4-5*", *_OPUS_45),
    ("claude-opus-4-1*", *_OPUS_4),
    ("claude-opus-4-0*", *_OPUS_4),
    ("claude-opus-4-20*", *_OPUS_4),
    ("claude-opus-4", *_OPUS_4),
    ("claude-sonnet-4-6*", *_SONNET),
    ("claude-sonnet-4-5*", *_SONNET),
    ("claude-sonnet-4-0*", *_SONNET),
    ("claude-sonnet-4-20*", *_SONNET),
    ("claude-sonnet-4", *_SONNET),
    ("claude-3-7-sonnet*", *_SONNET),
    ("claude-3-5-sonnet*", *_SONNET),
    ("claude-haiku-4-5*", 1.00, 5.00, 0.10, 1.25),
    ("claude-3-5-haiku*", 0.80, 4.00, 0.08, 1.00),
    ("claude-3-haiku*", 0.25, 1.25, 0.03, 0.30),
    ("claude-3-opus*", *_OPUS_4),
    # -- Gemini: stable names and their numbered versions (gemini-2.0-flash-001) --
    ("gemini-3-pro-preview", 2.00, 12.00, 0.20, None),
    ("gemini-2.5-pro", 1.25, 10.00, 0.125, None),
    ("gemini-2.5-flash", 0.30, 2.50, 0.03, None),
    ("gemini-2.5-flash-lite", 0.10, 0.40, 0.01, None),
    ("gemini-2.0-flash", 0.10, 0.40, 0.025, None),
    ("gemini-2.0-flash-0*", 0.10, 0.40, 0.025, None),
    ("gemini-2.0-flash-lite", 0.075, 0.30, None, None),
    ("gemini-2.0-flash-lite-0*", 0.075, 0.30, None, None),
)
