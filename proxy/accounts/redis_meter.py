"""Requests and tokens per minute and USD budgets shared by several gateways, in Redis.

With ``[limits] redis_url`` set, the counters of every key and user with a limit live
in Redis (docs/fleet.md, "Shared limits with Redis"), with the per-process meter's
contract (docs/accounts.md, section 2): a request is admitted while what is used plus
what is reserved is under each limit, and charged an estimate that its real usage
replaces when it ends.

- Admission is one Lua script (``ADMIT``) run atomically by Redis on the key's and
  its user's counters: it checks every limit and charges all of them, or none. Two
  gateways can therefore overshoot a limit by at most the last admitted estimate each,
  as two requests on one gateway could. The script reads the time from Redis
  (``TIME``), so every gateway counts in the same seconds.
- The windows are hashes of one-second buckets (second -> count), 61 of them, as in
  ``meter.py``; the script drops older fields, and each hash expires 62 s after its
  last write. An estimate is charged into its admission second; ``SETTLE`` takes it
  back out and adds the real count in the current second. A gateway that dies
  mid-request leaves its estimate counted for at most 61 s.
- Budgets: the spend stored in the ledger (the database every gateway shares, read
  each second by the sync thread: ``Quota.stored_usd``) plus the holds in Redis: the
  estimates of requests in flight and the costs of finished requests the ledger has
  not shown yet. A hold is dropped ``RELEASE_S`` after this gateway's spend read
  includes its row (by then every gateway's read does), and in any case at its
  deadline in Redis (``hold_s`` from admission, ``KEEP_S`` from its end).

The event loop never blocks on Redis: a request for a limited key awaits its
admission in its own task (``admit``); the admissions and settlements queued within
one loop turn, and while a round trip is out, go together in one pipelined round
trip (``_flush``), so a burst of 100 requests costs a few round trips, not 100.
Settlements are not waited for. Every round trip has ``[limits] timeout`` (100 ms by
default); past it, or on a connection error, Redis counts as down: requests are
admitted unmetered (``on_redis_down = "open"``) or refused with 503 (``"closed"``)
without waiting, and a background task pings Redis every ``RECONNECT_S`` until it
answers; counting then resumes where Redis left it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from proxy import aio
from proxy.config.model import LimitsConfig

from .directory import Identity
from .meter import (
    NO_LIMIT,
    Charge,
    Denied,
    Quota,
    estimate,
    limit_headers,
    period_text,
    until_reset,
)

log = logging.getLogger("tokenway.limits")

# KEYS: four per quota (requests window, tokens window, holds, hold deadlines).
# ARGV: quotas, tokens, usd, hold id, hold seconds; then per quota rpm, tpm, budget
# (-1: no such limit) and the ledger's spend in the budget's period.
# Returns {0, second, then per quota: requests, tokens, held USD after the charge}, or
# {quota number, 1 rpm | 2 tpm | 3 budget, retry-after, figures before it}.
ADMIT = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec + tonumber(t[2]) / 1000000
local nq = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local usd = tonumber(ARGV[3])
local id = ARGV[4]
local hold = tonumber(ARGV[5])
local function window(key)
  local all = redis.call('HGETALL', key)
  local total, oldest = 0, sec
  for i = 1, #all, 2 do
    local s = tonumber(all[i])
    if s < sec - 60 then
      redis.call('HDEL', key, all[i])
    else
      local n = tonumber(all[i + 1])
      total = total + n
      if n > 0 and s < oldest then oldest = s end
    end
  end
  return total, oldest
end
local function held(h, d)
  local gone = redis.call('ZRANGEBYSCORE', d, '-inf', now)
  for _, m in ipairs(gone) do redis.call('HDEL', h, m) end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', d, '-inf', now) end
  local sum = 0
  for _, v in ipairs(redis.call('HVALS', h)) do sum = sum + tonumber(v) end
  return sum
end
local fig = {}
local deny = nil
for i = 1, nq do
  local b = (i - 1) * 4
  local a = 5 + (i - 1) * 4
  local rpm, tpm, budget = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local req, rold, tok, told, hsum = 0, sec, 0, sec, 0
  if rpm >= 0 then req, rold = window(KEYS[b + 1]) end
  if tpm >= 0 then tok, told = window(KEYS[b + 2]) end
  if budget >= 0 then hsum = held(KEYS[b + 3], KEYS[b + 4]) end
  fig[i] = {req, tok, hsum}
  if deny == nil then
    if rpm >= 0 and req >= rpm then
      deny = {i, 1, tostring(math.max(1, rold + 61 - now))}
    elseif tpm >= 0 and tok >= tpm then
      deny = {i, 2, tostring(math.max(1, told + 61 - now))}
    elseif budget >= 0 and tonumber(ARGV[a + 4]) + hsum >= budget then
      deny = {i, 3, '0'}
    end
  end
end
local out
if deny ~= nil then
  out = deny
else
  out = {0, 0, tostring(sec)}
  for i = 1, nq do
    local b = (i - 1) * 4
    local a = 5 + (i - 1) * 4
    if tonumber(ARGV[a + 1]) >= 0 then
      redis.call('HINCRBY', KEYS[b + 1], sec, 1)
      redis.call('EXPIRE', KEYS[b + 1], 62)
      fig[i][1] = fig[i][1] + 1
    end
    if tonumber(ARGV[a + 2]) >= 0 then
      redis.call('HINCRBY', KEYS[b + 2], sec, tokens)
      redis.call('EXPIRE', KEYS[b + 2], 62)
      fig[i][2] = fig[i][2] + tokens
    end
    if tonumber(ARGV[a + 3]) >= 0 and usd > 0 then
      redis.call('HSET', KEYS[b + 3], id, ARGV[3])
      redis.call('ZADD', KEYS[b + 4], now + hold, id)
      redis.call('EXPIRE', KEYS[b + 3], hold + 1)
      redis.call('EXPIRE', KEYS[b + 4], hold + 1)
      fig[i][3] = fig[i][3] + usd
    end
  end
end
for i = 1, nq do
  out[#out + 1] = fig[i][1]
  out[#out + 1] = fig[i][2]
  out[#out + 1] = tostring(fig[i][3])
end
return out
"""

# KEYS: three per quota (tokens window, holds, hold deadlines).
# ARGV: quotas, admission second, estimate, tokens used, hold id, USD used, keep
# seconds; then per quota whether it counts tokens and whether it holds USD (1/0).
SETTLE = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec + tonumber(t[2]) / 1000000
local nq = tonumber(ARGV[1])
local adm = tonumber(ARGV[2])
local est = tonumber(ARGV[3])
local used = tonumber(ARGV[4])
local id = ARGV[5]
local usd = tonumber(ARGV[6])
local keep = tonumber(ARGV[7])
for i = 1, nq do
  local b = (i - 1) * 3
  local a = 7 + (i - 1) * 2
  if ARGV[a + 1] == '1' then
    local w = KEYS[b + 1]
    if adm >= sec - 60 and redis.call('HEXISTS', w, ARGV[2]) == 1 then
      redis.call('HINCRBY', w, ARGV[2], -est)
    end
    if used > 0 then
      redis.call('HINCRBY', w, sec, used)
      redis.call('EXPIRE', w, 62)
    end
  end
  if ARGV[a + 2] == '1' then
    local h, d = KEYS[b + 2], KEYS[b + 3]
    if usd > 0 then
      redis.call('HSET', h, id, ARGV[6])
      redis.call('ZADD', d, now + keep, id)
      if redis.call('TTL', h) < keep + 1 then redis.call('EXPIRE', h, keep + 1) end
      if redis.call('TTL', d) < keep + 1 then redis.call('EXPIRE', d, keep + 1) end
    else
      redis.call('HDEL', h, id)
      redis.call('ZREM', d, id)
    end
  end
end
return 0
"""

# A finished request's cost stays held this long after this gateway's spend read
# includes its row: every other gateway reads the spend each second (sync.py
# SPEND_PERIOD_S), so by then its figure has the row too.
RELEASE_S = 2.0
# A finished request's cost is held at most this long when the ledger is slow to
# show it (a database outage: the spill journal replays later).
KEEP_S = 600
# Seconds between pings while Redis is down.
RECONNECT_S = 0.5
# Commands sent in one pipelined round trip at most, and queued at most (beyond it a
# settlement is dropped, an admission decided by on_redis_down).
MAX_BATCH = 256
MAX_QUEUED = 10_000

UP, DOWN = "up", "down"


class LimitsUnavailable(Exception):
    """Redis is down and ``on_redis_down = "closed"``."""


class SharedCharge(Charge):
    """A charge in Redis: also the second it was made in (by Redis's clock) and the
    id of its budget hold."""

    __slots__ = ("second", "hold")

    def __init__(self, quotas: tuple[Quota, ...], tokens: int, usd: float,
                 headers: list[tuple[bytes, bytes]], second: int, hold: str) -> None:
        super().__init__(quotas, tokens, usd, headers)
        self.second = second
        self.hold = hold


# A queued command: the script's sha (None: a plain command), its arguments, and the
# admission waiting for it (None for a settlement or a release).
_Job = tuple[str | None, tuple[Any, ...], "asyncio.Future[Any] | None", Any]


class SharedMeter:
    def __init__(self, cfg: LimitsConfig, hold_s: float = 660.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import redis.asyncio as aioredis  # only a gateway with [limits] redis_url loads it
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import NoScriptError, RedisError

        assert cfg.redis_url is not None
        self.cfg = cfg
        self.prefix = cfg.key_prefix
        # How long an admission's hold may last: the request deadline and a minute.
        self.hold_s = int(hold_s)
        self.clock = clock
        self.closed_mode = cfg.on_redis_down == "closed"
        # No retries inside redis-py: the timeout is the whole wait, and the
        # reconnect loop below does the retrying.
        self._client = aioredis.Redis.from_url(
            cfg.redis_url, socket_timeout=cfg.timeout_s, socket_connect_timeout=cfg.timeout_s,
            retry=Retry(NoBackoff(), 0), max_connections=4)
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self._noscript = NoScriptError
        self._sha_admit = _sha1(ADMIT)
        self._sha_settle = _sha1(SETTLE)
        self._queue: deque[_Job] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self.state = UP  # until a round trip says otherwise
        self._tag = os.urandom(6).hex() + ":"  # hold ids: unique across gateways
        self._n = 0
        # (ledger row number, hold keys, hold id) of finished requests still held, and
        # (when to release, hold keys, hold id) once the ledger shows them.
        self._unstored: deque[tuple[int, tuple[str, ...], str]] = deque()
        self._releasing: deque[tuple[float, tuple[str, ...], str]] = deque()
        self.counts = {"admitted": 0, "refused": 0, "round_trips": 0, "commands": 0,
                       "open": 0, "closed": 0, "dropped": 0, "outages": 0}

    # -- admission -----------------------------------------------------------------

    async def admit(self, ident: Identity, request_bytes: int, output_asked: int | None,
                    usd_per: Callable[[int, int], float | None] | None) -> Charge | None:
        """Check and charge the identity's quotas in Redis; ``Denied`` when one is
        full, ``LimitsUnavailable`` when Redis is down in closed mode; None when it
        is down in open mode (admitted, not counted)."""
        quotas = ident.quotas
        tokens, usd = estimate(ident, request_bytes, output_asked, usd_per)
        if self.state is not UP or len(self._queue) >= MAX_QUEUED:
            self._down()
            return None
        self._n += 1
        hold = f"{self._tag}{self._n}"
        keys: list[str] = []
        args: list[Any] = [len(quotas), tokens, repr(usd), hold, self.hold_s]
        p = self.prefix
        for q in quotas:
            r = q.ref
            keys += (f"{p}{r}:rpm", f"{p}{r}:tpm", f"{p}{r}:held", f"{p}{r}:until")
            lim = q.limits
            args += (-1 if lim.rpm is None else lim.rpm, -1 if lim.tpm is None else lim.tpm,
                     -1 if lim.budget_usd is None else repr(lim.budget_usd),
                     repr(q.stored_usd))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        job: _Job = (self._sha_admit, (len(keys), *keys, *args), fut,
                     (quotas, tokens, usd, hold))
        self._push(job)
        try:
            out = await fut
        except _Down:
            self._down()
            return None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and isinstance(fut.result(), list) \
                    and fut.result()[0] == 0:
                self._refund(quotas, tokens, usd, hold, int(fut.result()[2]))
            raise
        return self._decide(out, quotas, tokens, usd, hold)

    def _decide(self, out: list[Any], quotas: tuple[Quota, ...], tokens: int, usd: float,
                hold: str) -> Charge:
        figures = out[3:]
        rpm = tpm = left_usd = NO_LIMIT
        for i, q in enumerate(quotas):
            req, tok, held = int(figures[3 * i]), int(figures[3 * i + 1]), \
                float(figures[3 * i + 2])
            rpm = min(rpm, q.rpm - req)
            tpm = min(tpm, q.tpm - tok)
            left_usd = min(left_usd, q.budget - q.stored_usd - held)
        headers = limit_headers(rpm, tpm, left_usd)
        which = int(out[0])
        if which == 0:
            self.counts["admitted"] += 1
            return SharedCharge(quotas, tokens, usd, headers, int(out[2]), hold)
        self.counts["refused"] += 1
        q = quotas[which - 1]
        lim = q.limits
        kind = int(out[1])
        if kind == 1:
            d = Denied("rate_limited", f"{q.name} reached its limit of {lim.rpm} requests "
                                       "per minute", float(out[2]))
        elif kind == 2:
            d = Denied("rate_limited", f"{q.name} reached its limit of {lim.tpm} tokens "
                                       "per minute", float(out[2]))
        else:
            d = Denied("budget_exceeded",
                       f"{q.name} has used its budget of {lim.budget_usd:g} USD "
                       f"({period_text(lim.budget_period)})",
                       until_reset(lim.budget_period, self.clock()))
        d.headers = headers
        raise d

    def _down(self) -> None:
        """Redis cannot decide: admit unmetered (open) or raise (closed)."""
        if self.closed_mode:
            self.counts["closed"] += 1
            raise LimitsUnavailable()
        self.counts["open"] += 1

    # -- the end of a request --------------------------------------------------------

    def settle(self, charge: SharedCharge, tokens: int | None, usd: float | None,
               seq: int) -> None:
        """The request ended: its real tokens and cost replace the estimate (unknown
        ones keep it). Sent with the next round trip, not waited for."""
        t = charge.tokens if tokens is None else tokens
        u = charge.usd if usd is None else usd
        held = self._send_settle(charge.quotas, charge.second, charge.tokens, t, charge.hold,
                                 u)
        if held:
            self._unstored.append((seq, held, charge.hold))

    def _refund(self, quotas: tuple[Quota, ...], tokens: int, usd: float, hold: str,
                second: int) -> None:
        """An admission whose request was cancelled before it could start."""
        self._send_settle(quotas, second, tokens, 0, hold, 0.0)

    def _send_settle(self, quotas: tuple[Quota, ...], second: int, est: int, used: int,
                     hold: str, usd: float) -> tuple[str, ...]:
        if self.state is not UP or len(self._queue) >= MAX_QUEUED:
            self.counts["dropped"] += 1  # the estimate leaves the window within 61 s
            return ()
        keys: list[str] = []
        flags: list[int] = []
        held: list[str] = []
        p = self.prefix
        for q in quotas:
            r = q.ref
            keys += (f"{p}{r}:tpm", f"{p}{r}:held", f"{p}{r}:until")
            budgeted = q.limits.budget_usd is not None
            flags += (int(q.limits.tpm is not None), int(budgeted))
            if budgeted and usd > 0:
                held += (f"{p}{r}:held", f"{p}{r}:until")
        self._push((self._sha_settle, (len(keys), *keys, len(quotas), second, est, used, hold,
                                       repr(usd), KEEP_S, *flags), None, None))
        return tuple(held)

    def release(self, settled: int) -> None:
        """The ledger's spend, read after this gateway's first ``settled`` rows were
        stored, was handed to the meter: their holds go ``RELEASE_S`` later."""
        now = self.clock()
        unstored, releasing = self._unstored, self._releasing
        while unstored and unstored[0][0] <= settled:
            _, keys, hold = unstored.popleft()
            releasing.append((now + RELEASE_S, keys, hold))
        while releasing and releasing[0][0] <= now:
            _, keys, hold = releasing.popleft()
            if self.state is UP:
                for i in range(0, len(keys), 2):
                    self._push((None, ("HDEL", keys[i], hold), None, None))
                    self._push((None, ("ZREM", keys[i + 1], hold), None, None))

    # -- the round trips -------------------------------------------------------------

    def _push(self, job: _Job) -> None:
        self._queue.append(job)
        if self._flusher is None:
            self._flusher = aio.spawn(self._flush(), name="tokenway-limits")

    async def _flush(self) -> None:
        """Send what is queued, one pipelined round trip at a time, until nothing is."""
        try:
            while self._queue and self.state is UP:
                batch = [self._queue.popleft()
                         for _ in range(min(MAX_BATCH, len(self._queue)))]
                try:
                    async with asyncio.timeout(self.cfg.timeout_s):
                        results = await self._round_trip(batch)
                        missing = [i for i, r in enumerate(results)
                                   if isinstance(r, self._noscript)]
                        if missing:  # Redis restarted or was flushed: load, send again
                            await self._load_scripts()
                            again = await self._round_trip([batch[i] for i in missing])
                            for i, r in zip(missing, again, strict=True):
                                results[i] = r
                except self._errors as exc:
                    self._went_down(batch, exc)
                    break
                for job, res in zip(batch, results, strict=True):
                    fut = job[2]
                    if fut is None:
                        continue
                    if fut.done():  # its request was cancelled meanwhile
                        if isinstance(res, list) and res and res[0] == 0:
                            quotas, tokens, usd, hold = job[3]
                            self._refund(quotas, tokens, usd, hold, int(res[2]))
                    elif isinstance(res, BaseException):
                        fut.set_exception(_Down() if isinstance(res, self._errors) else res)
                    else:
                        fut.set_result(res)
        finally:
            self._flusher = None
        if self._queue and self.state is UP:  # queued after the loop's last check
            self._flusher = aio.spawn(self._flush(), name="tokenway-limits")

    async def _round_trip(self, batch: list[_Job]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for sha, args, _, _ in batch:
            if sha is None:
                pipe.execute_command(*args)
            else:
                pipe.evalsha(sha, *args)
        self.counts["round_trips"] += 1
        self.counts["commands"] += len(batch)
        return list(await pipe.execute(raise_on_error=False))

    async def _load_scripts(self) -> None:
        await self._client.script_load(ADMIT)
        await self._client.script_load(SETTLE)

    def _went_down(self, batch: list[_Job], exc: BaseException) -> None:
        self.state = DOWN
        self.counts["outages"] += 1
        log.warning("limits: Redis at %s does not answer (%s); requests of limited keys "
                    "are %s until it does", self.cfg.shown, _reason(exc),
                    "refused" if self.closed_mode else "admitted without counting")
        waiting = list(batch) + list(self._queue)
        self._queue.clear()
        for _, _, fut, _ in waiting:
            if fut is not None and not fut.done():
                fut.set_exception(_Down())
        if self._reconnect is None:
            self._reconnect = aio.spawn(self._reconnect_loop(), name="tokenway-limits-reconnect")

    async def _reconnect_loop(self) -> None:
        try:
            await self._client.connection_pool.disconnect()
            while True:
                await asyncio.sleep(RECONNECT_S)
                try:
                    async with asyncio.timeout(self.cfg.timeout_s * 2):
                        await self._client.ping()
                        await self._load_scripts()
                except self._errors:
                    continue
                self.state = UP
                log.info("limits: Redis at %s answers again; counting resumes", self.cfg.shown)
                return
        finally:
            self._reconnect = None

    async def close(self) -> None:
        for task in (self._flusher, self._reconnect):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        try:
            async with asyncio.timeout(1.0):
                await self._client.aclose()
        except self._errors:
            pass

    def stats(self) -> dict[str, Any]:
        return {"store": "redis", "url": self.cfg.shown, "state": self.state,
                "on_redis_down": self.cfg.on_redis_down, "queued": len(self._queue),
                "held": len(self._unstored) + len(self._releasing), **self.counts}


class _Down(Exception):
    """A round trip failed: the on_redis_down policy decides."""


def _sha1(script: str) -> str:
    import hashlib

    return hashlib.sha1(script.encode()).hexdigest()


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
