"""Every ledger row gets its cost: a real gateway, a fake OpenAI provider and the
real openai SDK. The provider's `model` (the served one) decides the price."""

from __future__ import annotations

import openai
import pytest

from tests.integration.upstreams import CHAT_COMPLETION, json_response

# CHAT_COMPLETION reports 19 prompt tokens (4 of them cached) and 10 completion tokens
# (2 of them reasoning), served as gpt-4.1-2025-04-14.
PRICES = """
[prices."gpt-4.1"]
input = 100
output = 100
[prices."gpt-4.1-2025*"]
input = 1
output = 2
cache_read = 0.5
"""


@pytest.fixture
def pgw(make_gateway, upstream):
    return make_gateway(config_text=PRICES,
                        env={"TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
                             "TOKENWAY_OPENAI_API_KEY": "sk-upstream-secret"})


def chat(gw, model: str):
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=10)
    with c:
        return c.chat.completions.create(model=model,
                                         messages=[{"role": "user", "content": "hi"}])


def answer_as(upstream, served: str) -> None:
    upstream.script = lambda req: json_response({**CHAT_COMPLETION, "model": served})


def test_served_model_is_priced_from_config(pgw):
    chat(pgw, "gpt-4.1")
    [row] = pgw.wait_rows(1)
    assert row["served_model"] == "gpt-4.1-2025-04-14"
    # 15 uncached at 1, 4 cached at 0.5, 10 out at 2 (reasoning inside), per Mtok.
    assert row["cost_usd"] == pytest.approx((15 * 1 + 4 * 0.5 + 10 * 2) / 1e6)
    assert row["cost_source"] == "config"


def test_bundled_price_of_the_served_snapshot(pgw, upstream):
    answer_as(upstream, "gpt-4o-mini-2024-07-18")
    chat(pgw, "gpt-4o")  # asked for gpt-4o, served (and billed as) gpt-4o-mini
    [row] = pgw.wait_rows(1)
    assert row["cost_source"] == "bundled"
    assert row["cost_usd"] == pytest.approx((15 * 0.15 + 4 * 0.075 + 10 * 0.60) / 1e6)


def test_unpriced_model_is_null_and_unknown(pgw, upstream):
    answer_as(upstream, "gpt-house-experiment")
    chat(pgw, "gpt-house-experiment")
    [row] = pgw.wait_rows(1)
    assert row["input_tokens"] == 19
    assert row["cost_usd"] is None and row["cost_source"] == "unknown"


def test_database_prices_apply_to_the_next_request(pgw, upstream):
    answer_as(upstream, "gpt-house-experiment")
    pgw.call(pgw.server.state.set_db_prices, [
        {"pattern": "gpt-house-*", "input": 10.0, "output": 20.0, "cache_read": None,
         "cache_write": None, "updated": 0.0}])
    chat(pgw, "gpt-house-experiment")
    [row] = pgw.wait_rows(1)
    assert row["cost_source"] == "config"
    assert row["cost_usd"] == pytest.approx((19 * 10 + 10 * 20) / 1e6)


def test_reload_keeps_database_prices_and_takes_new_config_prices(pgw, upstream):
    # From this thread, as the accounts sync thread calls it.
    pgw.server.state.set_db_prices([
        {"pattern": "gpt-house-*", "input": 10.0, "output": 20.0, "cache_read": None,
         "cache_write": None, "updated": 0.0}])
    assert pgw.reload(PRICES.replace("input = 1\n", "input = 3\n"))
    chat(pgw, "gpt-4.1")
    answer_as(upstream, "gpt-house-experiment")
    chat(pgw, "gpt-house-experiment")
    first, second = pgw.wait_rows(2)
    assert first["cost_usd"] == pytest.approx((15 * 3 + 4 * 0.5 + 10 * 2) / 1e6)
    assert second["cost_usd"] == pytest.approx((19 * 10 + 10 * 20) / 1e6)


def test_refused_before_any_provider_costs_nothing(pgw):
    with pytest.raises(openai.NotFoundError):
        chat(pgw, "no-route-for-this")
    [row] = pgw.wait_rows(1)
    assert row["status"] == 404 and row["provider"] is None
    assert row["cost_usd"] == 0.0
