"""USD budgets through real sockets and the real SDKs: the cost of each request from
the price book, admission charged by an estimate, a stream that outlives its budget,
and the refusal in each client protocol."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import anthropic
import openai
import pytest

from proxy.accounts.meter import BYTES_PER_TOKEN
from proxy.accounts.model import Limits
from proxy.accounts.store import AccountStore
from tests.accounts.test_keys_and_limits import MSG, TEAM_CONFIG, _burst, _refusals, synced
from tests.integration.upstreams import default_script, sse_response, transcript

# One price for every model of the fake upstream (it serves gpt-4.1-2025-04-14),
# high enough that a handful of requests spend a budget of cents.
PER_MTOK = 1000.0
PRICED_CONFIG = TEAM_CONFIG + f"""
[prices."gpt-4*"]
input = {PER_MTOK}
output = {PER_MTOK}
"""


@pytest.fixture
def priced(make_gateway, upstream, tmp_path):
    store = AccountStore(str(tmp_path / "ledger.db"))
    gw = make_gateway(config_text=PRICED_CONFIG.format(url=upstream.base_url))
    yield gw, store
    store.close()


def usd(tokens: int) -> float:
    return tokens * PER_MTOK / 1e6


def test_every_row_carries_its_cost_from_the_served_model(priced):
    gw, store = priced
    _, secret = store.create_key(limits=Limits(budget_usd=10.0, budget_period="day"))
    synced(gw, store)
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    row = gw.wait_rows(1)[-1]
    # 19 prompt tokens (4 of them cached, priced as input here) and 10 output tokens.
    assert row["cost_usd"] == pytest.approx(usd(29)) and row["cost_source"] == "config"
    left = float(raw.headers["x-tokenway-budget-remaining-usd"])
    assert 0 < left < 10.0


def test_parallel_requests_overshoot_a_budget_by_at_most_one_estimate(priced):
    gw, store = priced
    budget = 0.2  # about seven requests of 29 tokens at 1000 USD per million
    _, secret = store.create_key(limits=Limits(budget_usd=budget, budget_period="total"))
    synced(gw, store)
    max_tokens = 50
    results = asyncio.run(_burst(gw, secret, 100, max_tokens=max_tokens))
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert ok and refused and len(ok) + len(refused) == 100
    assert {r.body["code"] for r in refused} == {"insufficient_quota"}
    assert {r.body["type"] for r in refused} == {"insufficient_quota"}
    # Keep going one at a time until the spend itself reaches the budget.
    extra = 0
    while True:
        again = asyncio.run(_burst(gw, secret, 1, max_tokens=max_tokens))[0]
        if isinstance(again, openai.RateLimitError):
            break
        extra += 1
        assert extra < 20, "the budget never closed"
    rows = gw.wait_rows(101 + extra)
    served = [r for r in rows if r["status"] == 200]
    assert len(served) == len(ok) + extra
    spent = sum(r["cost_usd"] for r in served)
    estimate = usd(max(r["bytes_in"] for r in served) // BYTES_PER_TOKEN + 1 + max_tokens)
    assert spent <= budget + estimate
    # The refusal came from spend, not from a lost count: near the budget. (Not
    # exactly past it: a spend read racing a ledger commit may count a few rows
    # twice for up to a second, which refuses early, never late.)
    assert spent >= budget - 2 * estimate
    assert sum(r["error_kind"] == "budget_exceeded" and r["status"] == 429
               for r in rows) == len(refused) + 1


def test_a_stream_outliving_its_budget_finishes_and_the_next_request_is_refused(
        priced, upstream):
    gw, store = priced
    # The stream costs 1544 tokens (about 1.5 USD here); the budget is smaller.
    key, secret = store.create_key(limits=Limits(budget_usd=1.0, budget_period="day"))
    synced(gw, store)
    streaming = threading.Event()
    release = threading.Event()

    def script(req: Any) -> list[tuple]:
        if req.json().get("stream"):
            acts = sse_response(transcript("openai_chat_stream_include_usage.sse"), 7)
            streaming.set()
            # Hold the stream open after its first frames until the test says so.
            return acts[:2] + [("wait", release)] + acts[2:]
        return default_script(req)

    upstream.script = script
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
    got: dict[str, Any] = {}

    def stream() -> None:
        s = c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                      stream_options={"include_usage": True})
        got["chunks"] = list(s)

    th = threading.Thread(target=stream)
    th.start()
    assert streaming.wait(10)
    # While the stream runs its estimate holds the budget: a second request is refused.
    with pytest.raises(openai.RateLimitError) as during:
        c.chat.completions.create(model="gpt-4o", messages=MSG)
    assert during.value.body["code"] == "insufficient_quota"
    release.set()
    th.join(10)
    assert not th.is_alive()
    chunks = got["chunks"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 1544
    # The stream ended complete; its cost went past the budget, so now the spend
    # itself refuses, in each client protocol.
    stream_row = [r for r in gw.wait_rows(2) if r["status"] == 200][-1]
    assert stream_row["stream"] and stream_row["cost_usd"] > 1.0
    assert stream_row["api_key_id"] == key.id
    got3 = _refusals(gw, secret, "gpt-4o")
    status, body = got3["openai"]
    assert status == 429 and body["error"]["code"] == "insufficient_quota"
    assert "budget of 1 USD (per UTC day)" in body["error"]["message"]
    status, body = got3["anthropic"]
    assert status == 429 and body["error"]["type"] == "rate_limit_error"
    status, body = got3["gemini"]
    assert status == 429 and body["error"]["status"] == "RESOURCE_EXHAUSTED"
    rows = gw.wait_rows(5)
    assert [r["error_kind"] for r in rows[-3:]] == ["budget_exceeded"] * 3


def test_the_budget_survives_a_restart_through_the_ledger(priced, make_gateway, upstream):
    gw, store = priced
    _, secret = store.create_key(limits=Limits(budget_usd=0.05, budget_period="month"))
    synced(gw, store)
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
    c.chat.completions.create(model="gpt-4o", messages=MSG)
    c.chat.completions.create(model="gpt-4o", messages=MSG)  # 0.058 USD now
    gw.wait_rows(2)
    gw.stop()
    # A new process knows nothing in memory: the spend comes from key_spend.
    gw2 = make_gateway(config_text=PRICED_CONFIG.format(url=upstream.base_url))
    synced(gw2, store)
    deadline = time.monotonic() + 10
    while not gw2.call(lambda: gw2.server.state.accounts.spend_reads):
        assert time.monotonic() < deadline, "the spend was never read"
        time.sleep(0.02)
    a = anthropic.Anthropic(base_url=gw2.url, api_key=secret, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as e:
        a.messages.create(model="gpt-4o", max_tokens=20, messages=MSG)
    assert "budget of 0.05 USD (per UTC month)" in json.dumps(e.value.body)


def test_a_budget_on_a_model_without_a_price_is_refused_not_free(priced):
    gw, store = priced
    _, secret = store.create_key(limits=Limits(budget_usd=5.0, budget_period="day"))
    synced(gw, store)
    with pytest.raises(openai.PermissionDeniedError) as e:
        openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0) \
            .chat.completions.create(model="llama3-local", messages=MSG)
    assert e.value.body["code"] == "model_price_unknown"


def test_an_unreachable_provider_costs_the_key_nothing(make_gateway, tmp_path):
    store = AccountStore(str(tmp_path / "ledger.db"))
    dead = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    gw = make_gateway(config_text=PRICED_CONFIG.format(url=dead))
    _, secret = store.create_key(limits=Limits(tpm=100_000, budget_usd=1.0,
                                               budget_period="day"))
    synced(gw, store)
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=50_000)
    assert e.value.status_code == 502
    row = gw.wait_rows(1)[-1]
    assert row["error_kind"] == "upstream_unreachable" and row["cost_usd"] == 0.0
    # Neither the estimate's 50k tokens nor its cost stay charged.
    left = gw.call(lambda: gw.server.state.accounts.meter.headers(
        gw.server.state.accounts.directory.authenticate([secret.encode()])))
    assert dict(left)[b"x-ratelimit-remaining-tokens"] == b"100000"
    assert dict(left)[b"x-tokenway-budget-remaining-usd"] == b"1.000000"
    store.close()
