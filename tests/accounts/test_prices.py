"""Prices: the bundled table, config and database overrides, and the cost of a record."""

from __future__ import annotations

import fnmatch
import pathlib

import pytest

from proxy.accounts import prices as prices_mod
from proxy.accounts.bundled_prices import BUNDLED_PRICES, BUNDLED_PRICES_DATE
from proxy.accounts.prices import Price, PriceBook, specificity
from proxy.accounts.store import AccountStore
from proxy.request import RequestRecord


def record(model: str | None, served: str | None = None, *, provider: str | None = "openai",
           tokens: tuple[int, int, int, int] | None = (0, 0, 0, 0),
           protocol: str = "openai_chat") -> RequestRecord:
    rec = RequestRecord("/v1/chat/completions", protocol, "127.0.0.1", 10)
    rec.model, rec.served_model, rec.provider = model, served, provider
    if tokens is not None:
        (rec.input_tokens, rec.output_tokens, rec.cached_tokens,
         rec.cache_write_tokens) = tokens
    return rec


def test_cache_prices_default_to_the_input_price() -> None:
    p = Price(2, 8)
    assert (p.input, p.output, p.cache_read, p.cache_write) == (2.0, 8.0, 2.0, 2.0)
    assert Price(2, 8, 0.5).cache_write == 2.0


def test_each_part_of_the_prompt_is_priced_once() -> None:
    # Anthropic: 1000 prompt tokens = 100 fresh + 600 read from cache + 300 written.
    p = Price(3, 15, 0.3, 3.75)
    usd = p.cost(1000, 200, 600, 300)
    assert usd == pytest.approx((100 * 3 + 600 * 0.3 + 300 * 3.75 + 200 * 15) / 1e6)
    # A provider counting more cached than prompt tokens never makes a negative part.
    assert p.cost(10, 0, 20, 0) == pytest.approx(20 * 0.3 / 1e6)


def test_bundled_table_is_well_formed() -> None:
    assert BUNDLED_PRICES_DATE.count("-") == 2
    patterns = [row[0] for row in BUNDLED_PRICES]
    assert len(patterns) == len(set(patterns))
    for _, *values in BUNDLED_PRICES:
        assert all(v is None or 0 <= v <= 1000 for v in values)


@pytest.mark.parametrize(("model", "expected"), [
    ("gpt-4o", (2.50, 10.00, 1.25)),
    ("gpt-4o-2024-08-06", (2.50, 10.00, 1.25)),
    ("gpt-4o-2024-05-13", (5.00, 15.00, 5.00)),  # exact name beats gpt-4o-20*
    ("gpt-4o-mini-2024-07-18", (0.15, 0.60, 0.075)),
    ("gpt-4.1-mini-2025-04-14", (0.40, 1.60, 0.10)),
    ("o4-mini-2025-04-16", (1.10, 4.40, 0.275)),
    ("gpt-5-nano", (0.05, 0.40, 0.005)),
    ("claude-sonnet-4-5-20250929", (3.00, 15.00, 0.30)),
    ("claude-opus-4-1-20250805", (15.00, 75.00, 1.50)),
    ("claude-opus-4-5-20251101", (5.00, 25.00, 0.50)),
    ("claude-opus-4-20250514", (15.00, 75.00, 1.50)),
    ("claude-3-5-haiku-20241022", (0.80, 4.00, 0.08)),
    ("gemini-2.5-flash", (0.30, 2.50, 0.03)),
    ("gemini-2.0-flash-001", (0.10, 0.40, 0.025)),
])
def test_bundled_prices_of_dated_variants(model: str, expected: tuple[float, ...]) -> None:
    price, source = PriceBook().lookup(model)
    assert source == "bundled" and price is not None
    assert (price.input, price.output, price.cache_read) == pytest.approx(expected)


def test_anthropic_cache_writes_cost_a_quarter_more_and_reads_a_tenth() -> None:
    for pattern, inp, _, read, write in BUNDLED_PRICES:
        # Claude 3 Haiku's list prices are rounded up (0.30 and 0.03 for 0.25 input).
        if pattern.startswith("claude") and pattern != "claude-3-haiku*":
            assert (read, write) == (pytest.approx(inp * 0.1), pytest.approx(inp * 1.25))


@pytest.mark.parametrize("model", ["gpt-4o-realtime-preview", "claude-opus-4-9", "llama3",
                                   "", "gpt-4o-audio-preview-2024-12-17"])
def test_names_the_table_does_not_know_are_unknown(model: str) -> None:
    assert PriceBook().lookup(model) == (None, "unknown")


def test_most_specific_pattern_wins_whatever_the_order() -> None:
    entries = {"gpt-4o*": Price(1, 1), "gpt-4o-mini*": Price(2, 2), "gpt-*": Price(3, 3),
               "gpt-4o-mini-2024-07-18": Price(4, 4), "gpt-4o-m?ni*": Price(5, 5)}
    for order in (list(entries), list(reversed(entries))):
        book = PriceBook({k: entries[k] for k in order})
        assert book.lookup("gpt-4o-mini-2024-07-18")[0] == Price(4, 4)
        assert book.lookup("gpt-4o-mini-2025")[0] == Price(2, 2)
        assert book.lookup("gpt-4o-2024-08-06")[0] == Price(1, 1)
        assert book.lookup("gpt-3.5")[0] == Price(3, 3)
    # Same literal prefix: the one with more literal characters.
    assert specificity("a*bc") < specificity("a*b")


def test_config_then_database_then_bundled() -> None:
    db_rows = [{"pattern": "gpt-4o*", "input": 9.0, "output": 9.0, "cache_read": None,
                "cache_write": None, "updated": 0.0},
               {"pattern": "house-model", "input": 1.0, "output": 2.0, "cache_read": 0.5,
                "cache_write": None, "updated": 0.0}]
    book = PriceBook({"gpt-4o-mini*": {"input": 7, "output": 7}}, db_rows)
    assert book.lookup("gpt-4o-mini") == (Price(7, 7), "config")
    # The database's glob beats the bundled exact name: tiers first, then specificity.
    assert book.lookup("gpt-4o") == (Price(9, 9), "config")
    assert book.lookup("house-model") == (Price(1, 2, 0.5), "config")
    assert book.lookup("gpt-4.1")[1] == "bundled"
    assert [e.origin for e in book.entries()][:3] == ["config", "database", "database"]


def test_cost_uses_the_served_model() -> None:
    book = PriceBook()
    rec = record("gpt-4o", "gpt-4o-mini-2024-07-18", tokens=(1_000_000, 1_000_000, 0, 0))
    book.cost_of(rec)
    assert (rec.cost_usd, rec.cost_source) == (pytest.approx(0.75), "bundled")
    rec = record("gpt-4o-mini", None, tokens=(1_000_000, 0, 0, 0))
    book.cost_of(rec)
    assert rec.cost_usd == pytest.approx(0.15)


def test_reasoning_is_inside_output_and_not_billed_twice() -> None:
    rec = record("o3", tokens=(0, 1000, 0, 0))
    rec.reasoning_tokens = 800
    PriceBook().cost_of(rec)
    assert rec.cost_usd == pytest.approx(1000 * 8.0 / 1e6)


def test_unknown_price_is_null_never_zero() -> None:
    rec = record("my-local-llama", tokens=(100, 100, 0, 0))
    PriceBook().cost_of(rec)
    assert (rec.cost_usd, rec.cost_source) == (None, "unknown")


def test_no_usage_costs_zero_only_when_nothing_was_billed() -> None:
    book = PriceBook()
    never_sent = record("gpt-4o", provider=None, tokens=None)  # refused before routing
    book.cost_of(never_sent)
    assert (never_sent.cost_usd, never_sent.cost_source) == (0.0, "bundled")
    no_model = record(None, provider=None, tokens=None)  # a request the gateway could not read
    book.cost_of(no_model)
    assert (no_model.cost_usd, no_model.cost_source) == (0.0, "unknown")
    cut = record("gpt-4o", provider="openai", tokens=None)  # reached the provider, no usage
    book.cost_of(cut)
    assert (cut.cost_usd, cut.cost_source) == (None, "bundled")
    for kind in ("upstream_unreachable", "upstream_unavailable", "overloaded"):
        refused = record("gpt-4o", provider="openai", tokens=None)  # connect refused etc.
        refused.error_kind = kind
        book.cost_of(refused)
        assert refused.cost_usd == 0.0, kind
    timed_out = record("gpt-4o", provider="openai", tokens=None)  # may still have run
    timed_out.error_kind = "upstream_timeout"
    book.cost_of(timed_out)
    assert timed_out.cost_usd is None
    for free in (record("loopback", "loopback", provider="loopback", tokens=(5, 5, 0, 0)),
                 record("claude-sonnet-4", provider="local", tokens=None),
                 record("claude-sonnet-4", provider="anthropic", tokens=None,
                        protocol="anthropic_count_tokens")):
        book.cost_of(free)
        assert free.cost_usd == 0.0


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prices_mod, "PRICE_CACHE_MAX_MODELS", 8)
    book = PriceBook()
    for i in range(50):
        book.lookup(f"junk-{i}")
        assert len(book._cache) <= 8
    assert book.lookup("gpt-4o")[1] == "bundled"


def test_database_rows_from_the_store(tmp_path: pathlib.Path) -> None:
    with AccountStore(str(tmp_path / "ledger.db")) as store:
        store.set_price("house-*", input=1.0, output=2.0, cache_read=0.1)
        rows = store.prices()
    price, source = PriceBook({}, rows).lookup("house-7b")
    assert (price, source) == (Price(1.0, 2.0, 0.1, 1.0), "config")


def test_every_bundled_pattern_matches_some_name() -> None:
    # A typo in a glob would silently match nothing.
    for pattern, *_ in BUNDLED_PRICES:
        name = pattern.replace("[0-9]", "1").replace("*", "-2025-01-01").replace("?", "x")
        assert fnmatch.fnmatchcase(name, pattern), pattern
