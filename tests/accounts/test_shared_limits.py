"""Limits shared through a real Redis (docs/fleet.md, "Shared limits with Redis"): two
gateways on one accounts database and one Redis hold a key's rpm, tpm and budget
together; Redis going down is decided by on_redis_down and counting resumes when it
answers again. Each test uses its own key prefix, deleted after it."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import redis

from proxy.accounts.meter import BYTES_PER_TOKEN
from proxy.accounts.model import Limits
from proxy.accounts.store import AccountStore
from proxy.config import ConfigError, load_config
from tests.accounts.test_budgets import PRICED_CONFIG, usd
from tests.accounts.test_keys_and_limits import MSG, synced
from tests.integration import rawhttp

REDIS = ("127.0.0.1", 6379)


def _redis_answers() -> bool:
    try:
        return bool(redis.Redis(*REDIS, socket_timeout=1, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


pytestmark = pytest.mark.skipif(not _redis_answers(),
                                reason="no Redis answers at 127.0.0.1:6379")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted after."""
    p = f"tokenway-test:{uuid.uuid4().hex[:12]}:"
    yield p
    r = redis.Redis(*REDIS, socket_timeout=5)
    keys = list(r.scan_iter(match=p + "*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


def limits_section(url: str, prefix: str, on_down: str = "open",
                   timeout: str | None = None) -> str:
    return (f'\n[limits]\nredis_url = "{url}"\nkey_prefix = "{prefix}"\n'
            f'on_redis_down = "{on_down}"\n' + (f'timeout = "{timeout}"\n' if timeout else ""))


# The sharing tests count on every admission reaching Redis: on a loaded machine a
# round trip can pass the 100 ms default, which counts as an outage (admitted
# unmetered in open mode) and would let a burst past the limit.
SHARING = "5s"


def fleet(make_gateway: Any, config: str) -> list[Any]:
    """Two gateways in this process on one SQLite file (the test's ledger.db)."""
    return [make_gateway(config_text=config) for _ in range(2)]


def limits_state(gw: Any) -> dict[str, Any]:
    return gw.call(gw.server.state.accounts.limits_stats)


async def _split_burst(gws: list[Any], secret: str, n: int, **kw: Any) -> list[Any]:
    """``n`` requests at once, every other one to the other gateway."""
    clients = [openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
               for gw in gws]

    async def one(i: int) -> Any:
        try:
            return await clients[i % len(clients)].chat.completions.with_raw_response.create(
                model="gpt-4o", messages=MSG, **kw)
        except openai.APIStatusError as exc:
            return exc
    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for c in clients:
            await c.close()


def all_rows(gws: list[Any], n: int) -> list[dict]:
    for gw in gws:
        gw.ledger_flush()
    return gws[0].wait_rows(n)


def test_two_gateways_share_a_keys_requests_per_minute(make_gateway, upstream, tmp_path,
                                                       prefix):
    store = AccountStore(str(tmp_path / "ledger.db"))
    config = PRICED_CONFIG.format(url=upstream.base_url) + limits_section(
        "redis://127.0.0.1:6379/0", prefix, timeout=SHARING)
    gws = fleet(make_gateway, config)
    free_key, free = store.create_key()
    _, secret = store.create_key(limits=Limits(rpm=10))
    for gw in gws:
        synced(gw, store)
    # A key without limits never touches Redis.
    c = openai.OpenAI(base_url=gws[0].url + "/v1", api_key=free, max_retries=0)
    c.chat.completions.create(model="gpt-4o", messages=MSG)
    assert limits_state(gws[0])["round_trips"] == 0
    results = asyncio.run(_split_burst(gws, secret, 100))
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    # Admission is one atomic script: the limit holds exactly across both gateways.
    assert len(ok) == 10 and len(refused) == 90
    assert refused[0].body["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused[0].response.headers["retry-after"]) <= 61
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in ok) == \
        list(range(10))
    stats = [limits_state(gw) for gw in gws]
    assert sum(s["admitted"] for s in stats) == 10 and sum(s["refused"] for s in stats) == 90
    assert all(s["admitted"] + s["refused"] == 50 for s in stats)
    # Concurrent admissions share round trips.
    assert all(s["round_trips"] < 50 for s in stats)
    rows = all_rows(gws, 101)
    assert sum(r["error_kind"] == "rate_limited" and r["status"] == 429 for r in rows) == 90
    assert {r["api_key_id"] for r in rows if r["status"] == 200} >= {free_key.id}
    store.close()


def test_two_gateways_share_a_keys_tokens_per_minute(make_gateway, upstream, tmp_path,
                                                     prefix):
    store = AccountStore(str(tmp_path / "ledger.db"))
    config = PRICED_CONFIG.format(url=upstream.base_url) + limits_section(
        "redis://127.0.0.1:6379/0", prefix, timeout=SHARING)
    gws = fleet(make_gateway, config)
    tpm = 1000
    _, secret = store.create_key(limits=Limits(tpm=tpm))
    for gw in gws:
        synced(gw, store)
    results = asyncio.run(_split_burst(gws, secret, 100, max_tokens=50))
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert ok and refused and len(ok) + len(refused) == 100
    rows = [r for r in all_rows(gws, 100) if r["status"] == 200]
    used = sum(r["input_tokens"] + r["output_tokens"] for r in rows)
    estimate = max(r["bytes_in"] for r in rows) // BYTES_PER_TOKEN + 1 + 50
    assert used <= tpm + 2 * estimate  # at most one estimate per gateway
    assert len(ok) >= tpm // estimate
    store.close()


def test_two_gateways_share_a_keys_budget(make_gateway, upstream, tmp_path, prefix):
    store = AccountStore(str(tmp_path / "ledger.db"))
    config = PRICED_CONFIG.format(url=upstream.base_url) + limits_section(
        "redis://127.0.0.1:6379/0", prefix, timeout=SHARING)
    gws = fleet(make_gateway, config)
    budget = 0.2  # about seven requests of 29 tokens at 1000 USD per million
    key, secret = store.create_key(limits=Limits(budget_usd=budget, budget_period="total"))
    for gw in gws:
        synced(gw, store)
    max_tokens = 50
    results = asyncio.run(_split_burst(gws, secret, 100, max_tokens=max_tokens))
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert ok and refused and len(ok) + len(refused) == 100
    assert {r.body["code"] for r in refused} == {"insufficient_quota"}
    rows = all_rows(gws, 100)
    served = [r for r in rows if r["status"] == 200]
    assert len(served) == len(ok)
    spent = sum(r["cost_usd"] for r in served)
    estimate = usd(max(r["bytes_in"] for r in served) // BYTES_PER_TOKEN + 1 + max_tokens)
    assert spent <= budget + 2 * estimate  # at most one estimate per gateway
    # Both gateways decided their half in Redis: the budget was shared, not split.
    stats = [limits_state(gw) for gw in gws]
    assert all(s["admitted"] + s["refused"] == 50 for s in stats)
    assert sum(s["admitted"] for s in stats) == len(ok)
    # Once the ledger shows every cost, the budget is still closed on both gateways,
    # now by the stored spend alone (the holds in Redis are released).
    deadline = time.monotonic() + 30  # the next spend reads, and a margin
    while any(limits_state(gw)["held"] for gw in gws):
        assert time.monotonic() < deadline, "the holds were never released"
        time.sleep(0.05)
    r = redis.Redis(*REDIS, socket_timeout=5)
    assert r.zcard(f"{prefix}key:{key.id}:h") == 0  # every estimate and cost given back
    assert abs(float(r.hget(f"{prefix}key:{key.id}", "u"))) < 1e-9
    r.close()
    for gw in gws:
        again = asyncio.run(_split_burst([gw], secret, 1, max_tokens=max_tokens))[0]
        if spent >= budget:
            assert isinstance(again, openai.RateLimitError)
    store.close()


# -- Redis going down and coming back ------------------------------------------------

REDIS_SERVER = shutil.which("redis-server")


class OwnRedis:
    """A redis-server of the test's own on a free port, stopped and started at will."""

    def __init__(self, tmp: Any) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = str(tmp)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis("127.0.0.1", self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except (redis.RedisError, OSError):
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    r = OwnRedis(tmp_path)
    r.start()
    yield r
    r.stop()


def wait_state(gw: Any, state: str) -> None:
    deadline = time.monotonic() + 10
    while limits_state(gw)["state"] != state:
        assert time.monotonic() < deadline, f"the limits never went {state}"
        time.sleep(0.02)


def chat(gw: Any, secret: str) -> Any:
    try:
        return openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0) \
            .chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    except openai.APIStatusError as exc:
        return exc


def scrape(gw: Any, secret: str) -> str:
    status, _, body = rawhttp.request(gw.url + "/metrics",
                                      headers={"authorization": f"Bearer {secret}"})
    assert status == 200
    return body.decode()


def metric(gw: Any, secret: str, line_start: str) -> float:
    for line in scrape(gw, secret).splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line_start} in /metrics")


def health(gw: Any) -> dict:
    status, _, body = rawhttp.request(gw.url + "/health")
    assert status == 200
    import json

    return json.loads(body)


def test_redis_down_closed_refuses_limited_keys_and_counting_resumes(
        make_gateway, upstream, tmp_path, own_redis):
    store = AccountStore(str(tmp_path / "ledger.db"))
    config = PRICED_CONFIG.format(url=upstream.base_url) + limits_section(
        own_redis.url, "tw:", "closed")
    gw = make_gateway(config_text=config)
    _, secret = store.create_key(limits=Limits(rpm=3))
    _, free = store.create_key()
    synced(gw, store)
    assert chat(gw, secret).http_response.status_code == 200
    own_redis.stop()
    refused = chat(gw, secret)
    assert isinstance(refused, openai.APIStatusError) and refused.status_code == 503
    assert refused.body["code"] == "limits_unavailable"
    assert refused.response.headers["retry-after"] == "1"
    wait_state(gw, "down")
    # Decided without waiting now, and a key without limits is not concerned.
    assert chat(gw, secret).status_code == 503
    assert chat(gw, free).http_response.status_code == 200
    h = health(gw)
    assert h["status"] == "degraded" and h["limits_state"] == "down"
    assert h["on_redis_down"] == "closed"
    assert metric(gw, free, "tokenway_limits_redis_up") == 0
    assert metric(gw, free, 'tokenway_limits_redis_down_decisions_total{decision="closed"}') \
        == 2
    promtool = shutil.which("promtool")
    if promtool is not None:  # the Redis families pass the format's check and its lint
        done = subprocess.run([promtool, "check", "metrics"], input=scrape(gw, free).encode(),
                              capture_output=True, timeout=30)
        assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), \
            done.stdout + done.stderr
    own_redis.start()  # an empty Redis: the scripts are loaded again
    wait_state(gw, "up")
    assert health(gw)["status"] == "ok"
    got = [chat(gw, secret) for _ in range(4)]
    assert [getattr(r, "status_code", None) or r.http_response.status_code for r in got] \
        == [200, 200, 200, 429]
    assert metric(gw, free, "tokenway_limits_redis_up") == 1
    assert metric(gw, free, "tokenway_limits_redis_outages_total") == 1
    rows = gw.wait_rows(8)
    assert sum(r["error_kind"] == "limits_unavailable" and r["status"] == 503
               for r in rows) == 2
    store.close()


def test_redis_down_open_admits_unmetered_and_counting_resumes(
        make_gateway, upstream, tmp_path, own_redis):
    store = AccountStore(str(tmp_path / "ledger.db"))
    config = PRICED_CONFIG.format(url=upstream.base_url) + limits_section(
        own_redis.url, "tw:", "open")
    gw = make_gateway(config_text=config)
    _, secret = store.create_key(limits=Limits(rpm=1))
    synced(gw, store)
    assert chat(gw, secret).http_response.status_code == 200
    assert isinstance(chat(gw, secret), openai.RateLimitError)
    own_redis.stop()
    # Over the limit, but nothing can count it: admitted (no limit headers).
    for _ in range(3):
        r = chat(gw, secret)
        assert r.http_response.status_code == 200
        assert "x-ratelimit-remaining-requests" not in r.headers
    assert limits_state(gw)["state"] == "down"
    h = health(gw)
    assert h["status"] == "degraded" and h["on_redis_down"] == "open"
    assert metric(gw, secret, 'tokenway_limits_redis_down_decisions_total{decision="open"}') \
        == 3
    own_redis.start()
    wait_state(gw, "up")
    first = chat(gw, secret)
    assert first.http_response.status_code == 200
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    assert isinstance(chat(gw, secret), openai.RateLimitError)
    store.close()


def test_a_request_that_leaves_during_its_admission_gives_its_charge_back(prefix):
    """The client's task is cancelled while the admission is out: the estimate and the
    hold come back out of Redis (the request itself still counts, as in one process)."""
    from proxy.accounts.directory import Identity
    from proxy.accounts.meter import Quota
    from proxy.accounts.redis_meter import SharedMeter
    from proxy.config.model import LimitsConfig

    cfg = LimitsConfig(redis_url="redis://127.0.0.1:6379/0", shown="redis://127.0.0.1:6379/0",
                       key_prefix=prefix, timeout_s=5.0)
    q = Quota("API key key_test", Limits(rpm=100, tpm=10_000, budget_usd=5.0,
                                         budget_period="day"), "key:key_test")
    ident = Identity.__new__(Identity)
    ident.quotas, ident.budgeted = (q,), True

    async def main() -> dict[str, Any]:
        meter = SharedMeter(cfg)
        try:
            adm = meter.submit(ident, 400, 100, lambda p, o: (p + o) / 1e6)
            assert adm is not None

            async def request() -> None:
                await adm.reply

            task = asyncio.get_running_loop().create_task(request())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            meter.cancelled(adm)
            while meter.counts["commands"] < 2 or meter._flusher is not None:  # refund sent
                await asyncio.sleep(0.01)
            return meter.stats()
        finally:
            await meter.close()

    stats = asyncio.run(main())
    assert stats["state"] == "up"
    r = redis.Redis(*REDIS, socket_timeout=5)
    fields = {k.decode(): v.decode() for k, v in r.hgetall(prefix + "key:key_test").items()}
    assert fields["r"] == "1" and fields["t"] == "0" and float(fields["u"]) == 0.0
    assert r.zcard(prefix + "key:key_test:h") == 0
    r.close()


async def _drained(meter: Any) -> None:
    """Until everything the meter queued has been through Redis."""
    for _ in range(1000):
        if not meter._queue and meter._flusher is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the meter's queue never drained")


def test_a_cost_released_by_one_gateway_counts_where_the_ledger_read_lags(prefix):
    """Gateway A serves a request whose cost passes the budget, reads the ledger with
    its row in it and drops the request's hold in Redis; gateway B has not read the
    ledger since. B still refuses: A recorded its read in Redis before dropping the
    hold. A read of another period is not taken for this one's, and a lower read
    never lowers the shared figure."""
    from proxy.accounts.directory import Identity
    from proxy.accounts.meter import Denied, Quota, period_tag, utc_days
    from proxy.accounts.redis_meter import SharedMeter
    from proxy.config.model import LimitsConfig

    cfg = LimitsConfig(redis_url="redis://127.0.0.1:6379/0", shown="redis://127.0.0.1:6379/0",
                       key_prefix=prefix, timeout_s=5.0)
    limits = Limits(budget_usd=1.0, budget_period="day")
    today = period_tag("day", utc_days(time.time()))
    assert today.startswith("d") and period_tag("total", ("x", "y")) == "t"

    def gateway() -> tuple[Quota, Identity]:
        q = Quota("API key key_race", limits, "key:key_race")
        ident = Identity.__new__(Identity)
        ident.quotas, ident.budgeted = (q,), True
        return q, ident

    qa, ident_a = gateway()
    qb, ident_b = gateway()
    price = lambda p, o: 0.01  # noqa: E731  the estimate: a cent

    async def admit(meter: Any, ident: Identity) -> Any:
        adm = meter.submit(ident, 400, 100, price)
        assert adm is not None
        await adm.reply
        return meter.outcome(adm)

    async def main() -> tuple[str, Any, list[Any]]:
        a, b = SharedMeter(cfg), SharedMeter(cfg)
        try:
            qa.stored(0.0, 0, today)  # both have read the ledger: nothing spent today
            qb.stored(0.0, 0, today)
            charge = await admit(a, ident_a)
            a.settle(charge, 500, 1.5, 1)  # row 1 of A cost 1.5 USD
            await _drained(a)
            qa.stored(1.5, 1, today)  # A's next read includes row 1
            a.release(1, {"key:key_race": qa}.get)
            await _drained(a)
            r = redis.Redis(*REDIS, socket_timeout=5)
            held = r.zcard(prefix + "key:key_race:h")
            r.close()
            assert held == 0 and a.stats()["held"] == 0  # the hold is gone
            outcomes: list[Any] = []
            for tag in (today, "d1999-01-01"):  # B's stale read of today, then of an old day
                qb.stored(0.0, 0, tag)
                try:
                    outcomes.append(await admit(b, ident_b))
                except Denied as exc:
                    outcomes.append(exc)
            # B's own lower read of today, released with a cost of its own, keeps 1.5.
            b.settle(outcomes[-1], 10, 0.001, 1)
            qb.stored(0.2, 1, today)
            b.release(1, {"key:key_race": qb}.get)
            await _drained(b)
            r = redis.Redis(*REDIS, socket_timeout=5)
            shared = r.hget(prefix + "key:key_race", "l").decode()
            r.close()
            return shared, b.stats(), outcomes
        finally:
            await a.close()
            await b.close()

    shared, stats, (stale, other_day) = asyncio.run(main())
    assert isinstance(stale, Denied) and stale.kind == "budget_exceeded"
    assert stale.headers == [(b"x-tokenway-budget-remaining-usd", b"0.000000")]
    assert not isinstance(other_day, Denied)  # yesterday's spend is not today's
    assert float(shared) == 1.5
    assert stats["state"] == "up" and stats["errors"] == 0


def test_the_limits_section_is_validated():
    env = {"TOKENWAY_REDIS_URL": "redis://:hunter2@cache.internal:6379/1"}
    cfg = load_config(env=env).limits
    assert cfg.redis_url == env["TOKENWAY_REDIS_URL"] and "hunter2" not in repr(cfg)
    assert cfg.shown == "redis://:***@cache.internal:6379/1"
    assert (cfg.on_redis_down, cfg.timeout_s, cfg.key_prefix) == ("open", 0.1, "tokenway:")
    assert load_config().limits.redis_url is None
    with pytest.raises(ConfigError, match="limits.redis_url"):
        load_config(env={"TOKENWAY_REDIS_URL": "http://cache:6379"})


@pytest.mark.parametrize("body, where", [
    ('on_redis_down = "maybe"', "limits.on_redis_down"),
    ('timeout = "30s"', "limits.timeout"),
    ('key_prefix = "has space"', "limits.key_prefix"),
    ('colour = "red"', "limits.colour"),
])
def test_bad_limits_settings_name_their_key(tmp_path, body, where):
    path = tmp_path / "t.toml"
    path.write_text(f"[limits]\n{body}\n")
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_config(str(path), env={})


def test_redis_is_not_loaded_without_redis_url():
    code = ("import sys; from proxy.config import load_config; "
            "from proxy.accounts.service import Accounts; a = Accounts(); "
            "a.configure_limits(load_config(env={}).limits, 600); "
            "print('redis' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "False", out.stderr
