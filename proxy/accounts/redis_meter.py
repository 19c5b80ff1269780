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
- The windows count in one-second buckets, 61 of them, as in ``meter.py``, kept in one
  hash per quota with their running totals (the layout is below ``log``): a check
  moves them by the seconds that left, so it costs a few field reads whatever the
  traffic, and a quota without a budget expires 62 s after its last write. An
  estimate is charged into its admission second; ``SETTLE`` takes it back out and
  adds the real count in the current second. A gateway that dies mid-request leaves
  its estimate counted for at most 61 s.
- Budgets: the spend stored in the ledger (the database every gateway shares, read
  each second by each gateway's sync thread: ``Quota.stored_usd``) plus the holds in
  Redis: the estimates of requests in flight and the costs of finished requests the
  ledger has not shown yet. Gateways read the ledger at different moments, so a
  figure in Redis joins them: ``l``, the highest spend any gateway has read for the
  budget's period (``lt``). A gateway drops a hold only once its own read includes
  the hold's row, and in the same script first raises ``l`` to that read; admission
  counts the larger of the caller's read and ``l``. So a cost is always counted,
  by a hold or by ``l``, whichever gateway admits next and however late its own
  read is. A hold left by a gateway that died goes at its deadline (``hold_s``, the
  request deadline and a minute, from admission and again from its end).

The event loop never blocks on Redis: a request for a limited key queues its admission
(``submit``) and continues from a callback on its reply (proxy/endpoints/access.py);
the admissions and settlements queued within one loop turn, and while a round trip is
out, go together in the next round trip (``_flush``): one ADMIT call for all its
admissions, one SETTLE for all its settlements, so a burst of 100 requests costs a few
round trips, not 100.
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
    LimitsUnavailable,
    Quota,
    estimate,
    limit_headers,
    period_text,
    until_reset,
)

log = logging.getLogger("tokenway.limits")

# Per quota (a key's or a user's limits), one name in KEYS: PREFIX + "key:ID" or
# "user:ID". Two Redis keys carry it, so that a script makes a handful of Redis calls
# per quota (Redis runs every gateway's scripts on one core):
#
# - NAME, a hash: "s" the newest second counted, "r" and "t" the requests and tokens
#   of the last 61 seconds, "rSECOND" and "tSECOND" the counts of each of those
#   seconds, "u" the USD held, "l" the highest ledger spend a gateway has read for
#   the budget's period "lt" (a period tag: meter.period_tag);
# - NAME:h, a sorted set of the holds, "ID|USD" scored by their deadline.
#
# The key and its user are two names in one script: this needs one Redis (replicas
# allowed), not Redis Cluster.

# What every script starts with: the time, and moving a quota's windows to it.
_COMMON = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec + tonumber(t[2]) / 1000000
-- The quota's requests, tokens, held USD, next hold deadline ('x') and the counts
-- of the seconds fa and fb (fields of this window, or nil), in one read; the window
-- is first moved to now, dropping the seconds that left it (usually none or one).
local function load(k, fa, fb)
  local v = redis.call('HMGET', k, 's', 'r', 't', 'u', 'x', fa or 's', fb or 's')
  local last = tonumber(v[1])
  local r, tk, u, x = tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0,
    tonumber(v[5])
  local va, vb = 0, 0
  if fa then va = tonumber(v[6]) or 0 end
  if fb then vb = tonumber(v[7]) or 0 end
  if last == nil or last >= sec then return r, tk, u, x, va, vb end
  if sec - last >= 61 then
    local drop = {}
    for _, f in ipairs(redis.call('HKEYS', k)) do
      if #f > 1 then drop[#drop + 1] = f end
    end
    if #drop > 0 then redis.call('HDEL', k, unpack(drop)) end
    r, tk, va, vb = 0, 0, 0, 0
  else
    local gone = {}
    for s = last - 60, sec - 61 do
      gone[#gone + 1] = 'r' .. s
      gone[#gone + 1] = 't' .. s
    end
    if #gone > 0 then
      local vals = redis.call('HMGET', k, unpack(gone))
      for i = 1, #vals, 2 do
        if vals[i] then r = r - tonumber(vals[i]) end
        if vals[i + 1] then tk = tk - tonumber(vals[i + 1]) end
      end
      redis.call('HDEL', k, unpack(gone))
    end
  end
  redis.call('HSET', k, 's', sec, 'r', r, 't', tk)
  return r, tk, u, x, va, vb
end
-- The amount of a hold ("ID|USD").
local function amount(m) return tonumber(string.match(m, '|([^|]*)$')) or 0 end
-- Drop the quota's holds past their deadline (looked for only once the earliest
-- deadline 'x' has passed); the USD still held and the next deadline.
local function expire_holds(k, u, x)
  if x == nil or now < x then return u, x end
  local h = k .. ':h'
  local gone = redis.call('ZRANGEBYSCORE', h, '-inf', now, 'LIMIT', 0, 500)
  for _, m in ipairs(gone) do u = u - amount(m) end
  if #gone > 0 then redis.call('ZREM', h, unpack(gone)) end
  local first = redis.call('ZRANGE', h, 0, 0, 'WITHSCORES')
  if #first == 0 then
    u = 0
    x = nil
    redis.call('HSET', k, 'u', 0)
    redis.call('HDEL', k, 'x')
  else
    x = tonumber(first[2])
    redis.call('HSET', k, 'u', u, 'x', x)
  end
  return u, x
end
-- The ledger's spend for the budget's period: the caller's read, or the highest read
-- any gateway reported for the same period when it released holds, if larger.
local function shared_spend(k, stored, tag)
  local v = redis.call('HMGET', k, 'l', 'lt')
  if v[2] == tag then return math.max(stored, tonumber(v[1]) or 0) end
  return stored
end
-- Seconds until the oldest count of a window ('r' or 't') leaves it.
local function frees_in(k, w)
  local all = redis.call('HGETALL', k)
  local oldest = sec
  for i = 1, #all, 2 do
    local f = all[i]
    if #f > 1 and string.sub(f, 1, 1) == w and tonumber(all[i + 1]) > 0 then
      local s = tonumber(string.sub(f, 2))
      if s and s < oldest then oldest = s end
    end
  end
  return math.max(1, oldest + 61 - now)
end
"""

# A round trip carries all its admissions in one ADMIT and all its settlements in one
# SETTLE (one script call and one reply each, rather than one per request: the
# reply reads were most of a round trip's CPU in the gateway). KEYS: the quotas the
# batch names, each once; ARGV: how many requests, then each one's fields, its
# quotas naming their KEYS by number.
#
# ADMIT, per admission: quotas, tokens, USD (as text), hold id, hold seconds; then per
# quota its KEYS number, rpm, tpm, budget (-1: no such limit), the ledger's spend in
# the budget's period as the caller read it and that period's tag. Each admission is
# decided on the counters as the ones before it left them. One reply per admission:
# {0, 0, second, then per quota: requests, tokens, held USD after the charge, the
# spend counted}, or {quota number, 1 rpm | 2 tpm | 3 budget, retry-after, the
# figures before it}.
ADMIT = _COMMON + """
local replies = {}
local p = 2
for j = 1, tonumber(ARGV[1]) do
  local nq, tokens, usd_text = tonumber(ARGV[p]), tonumber(ARGV[p + 1]), ARGV[p + 2]
  local usd, id, hold = tonumber(usd_text), ARGV[p + 3], tonumber(ARGV[p + 4])
  p = p + 5
  local q, fig, deny = {}, {}, nil
  for i = 1, nq do
    local k = KEYS[tonumber(ARGV[p])]
    local rpm, tpm, budget = tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3])
    local stored, tag = tonumber(ARGV[p + 4]), ARGV[p + 5]
    p = p + 6
    local r, tk, u, x, rs, ts = load(k, 'r' .. sec, 't' .. sec)
    if budget >= 0 then
      u, x = expire_holds(k, u, x)
      stored = shared_spend(k, stored, tag)
    end
    q[i] = {k, rpm, tpm, budget, x, rs, ts}
    fig[i] = {r, tk, u, stored}
    if deny == nil then
      if rpm >= 0 and r >= rpm then
        deny = {i, 1, tostring(frees_in(k, 'r'))}
      elseif tpm >= 0 and tk >= tpm then
        deny = {i, 2, tostring(frees_in(k, 't'))}
      elseif budget >= 0 and stored + u >= budget then
        deny = {i, 3, '0'}
      end
    end
  end
  local out = deny
  if out == nil then
    out = {0, 0, tostring(sec)}
    for i = 1, nq do
      local qi, f = q[i], fig[i]
      local k = qi[1]
      local sets = {'s', sec}
      if qi[2] >= 0 then
        f[1] = f[1] + 1
        for _, v in ipairs({'r', f[1], 'r' .. sec, qi[6] + 1}) do sets[#sets + 1] = v end
      end
      if qi[3] >= 0 then
        f[2] = f[2] + tokens
        for _, v in ipairs({'t', f[2], 't' .. sec, qi[7] + tokens}) do sets[#sets + 1] = v end
      end
      local ttl = 62
      if qi[4] >= 0 then
        ttl = hold + 1
        if usd > 0 then
          local deadline = now + hold
          redis.call('ZADD', k .. ':h', deadline, id .. '|' .. usd_text)
          redis.call('EXPIRE', k .. ':h', ttl)
          f[3] = f[3] + usd
          sets[#sets + 1] = 'u'
          sets[#sets + 1] = f[3]
          if qi[5] == nil or deadline < qi[5] then
            sets[#sets + 1] = 'x'
            sets[#sets + 1] = deadline
          end
        end
      end
      redis.call('HSET', k, unpack(sets))
      redis.call('EXPIRE', k, ttl)
    end
  end
  for i = 1, nq do
    out[#out + 1] = fig[i][1]
    out[#out + 1] = fig[i][2]
    out[#out + 1] = tostring(fig[i][3])
    out[#out + 1] = tostring(fig[i][4])
  end
  replies[j] = out
end
return replies
"""

# SETTLE, per settlement: quotas, admission second, estimate, tokens used, hold id,
# estimated USD and USD used (as text), hold seconds; then per quota its KEYS number,
# whether it counts tokens and whether it holds USD (1/0).
SETTLE = _COMMON + """
local p = 2
for j = 1, tonumber(ARGV[1]) do
  local nq, adm, est, used = tonumber(ARGV[p]), tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2]),
    tonumber(ARGV[p + 3])
  local id, est_text, usd_text, hold = ARGV[p + 4], ARGV[p + 5], ARGV[p + 6], tonumber(ARGV[p + 7])
  local usd = tonumber(usd_text)
  p = p + 8
  for i = 1, nq do
    local k = KEYS[tonumber(ARGV[p])]
    local counts_tokens, holds = ARGV[p + 1] == '1', ARGV[p + 2] == '1'
    p = p + 3
    local in_window = adm >= sec - 60 and adm < sec
    local fa = nil
    if in_window then fa = 't' .. adm end
    local r, tk, u, x, ta, ts = load(k, fa, 't' .. sec)
    local sets = {'s', sec}
    local ttl = 62
    if counts_tokens then
      -- The estimate leaves its admission second (if still counted there: the
      -- bucket holds it unless the window was emptied), the real count joins now.
      if adm == sec then
        ts = ts - math.min(est, ts)
        tk = tk - math.min(est, tk)
      elseif in_window and ta >= est then
        sets[#sets + 1] = fa
        sets[#sets + 1] = ta - est
        tk = tk - est
      end
      for _, v in ipairs({'t', tk + used, 't' .. sec, ts + used}) do sets[#sets + 1] = v end
    end
    if holds then
      local h = k .. ':h'
      ttl = hold + 1
      if redis.call('ZREM', h, id .. '|' .. est_text) == 1 then u = u - tonumber(est_text) end
      if usd > 0 then
        local deadline = now + hold
        redis.call('ZADD', h, deadline, id .. '|' .. usd_text)
        redis.call('EXPIRE', h, ttl)
        u = u + usd
        if x == nil or deadline < x then
          sets[#sets + 1] = 'x'
          sets[#sets + 1] = deadline
        end
      elseif redis.call('ZCARD', h) == 0 then
        u = 0
      end
      sets[#sets + 1] = 'u'
      sets[#sets + 1] = u
    end
    redis.call('HSET', k, unpack(sets))
    redis.call('EXPIRE', k, ttl)
  end
end
return 0
"""

# KEYS: one quota's name. ARGV: the period tag and the ledger's spend in it as the
# caller read it (a read that includes the holds' rows), then the holds ("ID|USD") to
# drop. The spend is recorded first, so a cost leaves the holds only once ``l``
# counts it. A tag of another kind (the budget's period changed) replaces the
# figure; a later period of the same kind too; an earlier one (a gateway whose read
# is from before midnight) is left out.
RELEASE = _COMMON + """
local k = KEYS[1]
local h = k .. ':h'
if redis.call('EXISTS', k) == 0 then
  redis.call('DEL', h)  -- expired with its hash: nothing is held
  return 0
end
local tag, spend = ARGV[1], tonumber(ARGV[2])
if tag ~= '' then
  local v = redis.call('HMGET', k, 'l', 'lt')
  local lt = v[2]
  if lt == tag then
    if spend > (tonumber(v[1]) or 0) then redis.call('HSET', k, 'l', spend) end
  elseif not lt or string.sub(lt, 1, 1) ~= string.sub(tag, 1, 1) or tag > lt then
    redis.call('HSET', k, 'l', spend, 'lt', tag)
  end
end
local u = tonumber(redis.call('HGET', k, 'u')) or 0
for i = 3, #ARGV do
  local m = ARGV[i]
  if redis.call('ZREM', h, m) == 1 then u = u - amount(m) end
end
if redis.call('ZCARD', h) == 0 then u = 0 end
redis.call('HSET', k, 'u', u)
return 0
"""

# Seconds between pings while Redis is down.
RECONNECT_S = 0.5
# Commands sent in one pipelined round trip at most, and queued at most (beyond it a
# settlement is dropped, an admission decided by on_redis_down).
MAX_BATCH = 256
MAX_QUEUED = 10_000
# Holds dropped by one RELEASE script (a second of a busy gateway's requests).
RELEASE_BATCH = 500
# Quotas whose fixed ADMIT fields are kept (a snapshot of the accounts replaces them).
MAX_QUOTAS_KEPT = 10_000

UP, DOWN = "up", "down"


class Admission:
    """An admission queued for Redis: ``reply`` gets its answer (None: Redis failed),
    ``fields`` its ADMIT fields (each quota by name), and what it charges."""

    __slots__ = ("reply", "fields", "quotas", "tokens", "usd", "hold")

    def __init__(self, reply: asyncio.Future[Any], fields: list[Any],
                 quotas: tuple[Quota, ...], tokens: int, usd: float, hold: str) -> None:
        self.reply = reply
        self.fields = fields
        self.quotas = quotas
        self.tokens = tokens
        self.usd = usd
        self.hold = hold


class SharedCharge(Charge):
    """A charge in Redis: also the second it was made in (by Redis's clock) and the
    id of its budget hold."""

    __slots__ = ("second", "hold")
    shared = True

    def __init__(self, quotas: tuple[Quota, ...], tokens: int, usd: float,
                 headers: list[tuple[bytes, bytes]], second: int, hold: str) -> None:
        super().__init__(quotas, tokens, usd, headers)
        self.second = second
        self.hold = hold


# What is queued for the next round trip: an admission (its Admission), a settlement
# (its SETTLE fields, each quota by name, and how many quotas it has) or a release
# (the quota's name, its period tag and spend as this gateway read them, the holds).
ADMIT_JOB, SETTLE_JOB, RELEASE_JOB = 0, 1, 2
_Job = tuple[int, Any]


class SharedMeter:
    def __init__(self, cfg: LimitsConfig, hold_s: float = 660.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import redis.asyncio as aioredis  # only a gateway with [limits] redis_url loads it
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import NoScriptError, RedisError, ResponseError

        try:  # hiredis packs a command in C; redis-py's own packer is Python
            from hiredis import pack_command
        except ImportError:
            pack_command = None  # type: ignore[assignment]

        assert cfg.redis_url is not None
        self.cfg = cfg
        self.prefix = cfg.key_prefix
        # How long an admission's hold may last: the request deadline and a minute.
        self.hold_s = int(hold_s)
        self.clock = clock
        self.closed_mode = cfg.on_redis_down == "closed"
        # No retries inside redis-py: the timeout is the whole wait, and the
        # reconnect loop below does the retrying. No socket timeout either: every
        # round trip runs under one asyncio.timeout of its own (``_flush``), where
        # redis-py would start a timeout per reply read (9 of 50 us of CPU per
        # request in bench.micro.shared_limits).
        self._client = aioredis.Redis.from_url(
            cfg.redis_url, socket_timeout=None, socket_connect_timeout=cfg.timeout_s,
            retry=Retry(NoBackoff(), 0), max_connections=4)
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self._noscript = NoScriptError
        self._reply_error = ResponseError
        self._pack = pack_command
        # The one connection the round trips go over (taken from the client's pool).
        self._conn: Any = None
        self._sha_admit = _sha1(ADMIT)
        self._sha_settle = _sha1(SETTLE)
        self._sha_release = _sha1(RELEASE)
        self._queue: deque[_Job] = deque()
        # A quota's fixed ADMIT fields: its name and limits.
        self._wire: dict[Quota, tuple[Any, ...]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self.state = UP  # until a round trip says otherwise
        self._tag = os.urandom(6).hex() + ":"  # hold ids: unique across gateways
        self._n = 0
        # (ledger row number, quota names, hold) of finished requests still held.
        self._unstored: deque[tuple[int, tuple[str, ...], str]] = deque()
        self.counts = {"admitted": 0, "refused": 0, "round_trips": 0, "commands": 0,
                       "open": 0, "closed": 0, "dropped": 0, "outages": 0, "errors": 0}

    # -- admission -----------------------------------------------------------------

    def submit(self, ident: Identity, request_bytes: int, output_asked: int | None,
               usd_per: Callable[[int, int], float | None] | None) -> Admission | None:
        """Queue the check and charge of the identity's quotas; await the returned
        admission's ``reply``, then take its ``outcome``. None when Redis is down in
        open mode (admitted, not counted); ``LimitsUnavailable`` in closed mode."""
        quotas = ident.quotas
        tokens, usd = estimate(ident, request_bytes, output_asked, usd_per)
        if self.state is not UP or len(self._queue) >= MAX_QUEUED:
            self._down()
            return None
        self._n += 1
        hold = f"{self._tag}{self._n}"
        usd_text = repr(usd)
        fields: list[Any] = [len(quotas), tokens, usd_text, hold, self.hold_s]
        wire = self._wire
        for q in quotas:
            static = wire.get(q)
            if static is None:
                if len(wire) >= MAX_QUOTAS_KEPT:
                    wire.clear()
                lim = q.limits
                static = wire[q] = (
                    self.prefix + q.ref, -1 if lim.rpm is None else lim.rpm,
                    -1 if lim.tpm is None else lim.tpm,
                    -1 if lim.budget_usd is None else repr(lim.budget_usd))
            fields += static
            fields += (repr(q.stored_usd), q.stored_tag)
        adm = Admission(asyncio.get_running_loop().create_future(), fields, quotas, tokens,
                        usd, hold)
        self._push((ADMIT_JOB, adm))
        return adm

    def outcome(self, adm: Admission) -> Charge | None:
        """The admission's answer (its reply has come): the charge; ``Denied``; or,
        Redis having failed meanwhile, what ``on_redis_down`` says."""
        out = adm.reply.result()
        if out is None:
            self._down()
            return None
        return self._decide(out, adm.quotas, adm.tokens, adm.usd, adm.hold)

    def cancelled(self, adm: Admission) -> None:
        """The request left while its admission was out: give back what it charged
        (the flusher does it when the reply comes later)."""
        reply = adm.reply
        if reply.done() and not reply.cancelled():
            self._refund_if_admitted(adm, reply.result())

    def _refund_if_admitted(self, adm: Admission, out: Any) -> None:
        if isinstance(out, list) and out and out[0] == 0:
            self._send_settle(adm.quotas, int(out[2]), adm.tokens, 0, adm.hold, adm.usd, 0.0)

    def _decide(self, out: list[Any], quotas: tuple[Quota, ...], tokens: int, usd: float,
                hold: str) -> Charge:
        figures = out[3:]
        rpm = tpm = left_usd = NO_LIMIT
        for i, q in enumerate(quotas):
            req, tok = int(figures[4 * i]), int(figures[4 * i + 1])
            held, stored = float(figures[4 * i + 2]), float(figures[4 * i + 3])
            rpm = min(rpm, q.rpm - req)
            tpm = min(tpm, q.tpm - tok)
            left_usd = min(left_usd, q.budget - stored - held)
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
                                 charge.usd, u)
        if held:
            self._unstored.append((seq, held, f"{charge.hold}|{u!r}"))

    def _send_settle(self, quotas: tuple[Quota, ...], second: int, est: int, used: int,
                     hold: str, est_usd: float, usd: float) -> tuple[str, ...]:
        """Queue the settlement; returns the names of the quotas left holding USD
        (the hold ``HOLD|USD``, USD as ``repr`` writes it, as at admission)."""
        if self.state is not UP or len(self._queue) >= MAX_QUEUED:
            self.counts["dropped"] += 1  # the estimate leaves the window within 61 s
            return ()
        fields: list[Any] = [0, second, est, used, hold, repr(est_usd), repr(usd), self.hold_s]
        held: list[str] = []
        for q in quotas:
            lim = q.limits
            counted, budgeted = lim.tpm is not None, lim.budget_usd is not None
            if not (counted or budgeted):
                continue  # requests per minute only: nothing to correct
            name = self.prefix + q.ref
            fields += (name, int(counted), int(budgeted))
            fields[0] += 1
            if budgeted and usd > 0:
                held.append(name)
        if fields[0]:
            self._push((SETTLE_JOB, fields))
        return tuple(held)

    def release(self, settled: int, quota: Callable[[str], Quota | None]) -> None:
        """The ledger's spend, read after this gateway's first ``settled`` rows were
        stored, was handed to the meter: the holds of those rows go now, in one script
        per quota that first records the read (``quota(ref)``: the quota's live
        figures) as the shared spend. A quota gone meanwhile (its limits removed)
        records nothing and lets its holds go."""
        unstored = self._unstored
        due: dict[str, list[str]] = {}
        while unstored and unstored[0][0] <= settled:
            _, held, hold = unstored.popleft()
            for name in held:
                due.setdefault(name, []).append(hold)
        if self.state is not UP:
            return  # the holds expire at their deadlines
        cut = len(self.prefix)
        for name, holds in due.items():
            q = quota(name[cut:])
            tag, spend = ("", "0") if q is None else (q.stored_tag, repr(q.stored_usd))
            for i in range(0, len(holds), RELEASE_BATCH):
                self._push((RELEASE_JOB, (name, tag, spend, holds[i:i + RELEASE_BATCH])))

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
                cmds, admissions = self._commands(batch)
                try:
                    async with asyncio.timeout(self.cfg.timeout_s):
                        replies = await self._round_trip(cmds)
                        missing = [i for i, r in enumerate(replies)
                                   if isinstance(r, self._noscript)]
                        if missing:  # Redis restarted or was flushed: load, send again
                            await self._load_scripts()
                            again = await self._round_trip([cmds[i] for i in missing])
                            for i, r in zip(missing, again, strict=True):
                                replies[i] = r
                except self._errors as exc:
                    self._went_down(admissions, exc)
                    break
                for r in replies:
                    if isinstance(r, BaseException):
                        # An error reply (out of memory, a script error): its
                        # admissions are decided by on_redis_down; logged 1 in 1000.
                        self.counts["errors"] += 1
                        if self.counts["errors"] % 1000 == 1:
                            log.error("limits: Redis answered a script with an error "
                                      "(%d so far): %s", self.counts["errors"], r)
                if admissions:
                    answers = replies[-1]
                    if not isinstance(answers, list) or len(answers) != len(admissions):
                        answers = [None] * len(admissions)
                    for adm, res in zip(admissions, answers, strict=True):
                        if adm.reply.done():  # its request was cancelled meanwhile
                            self._refund_if_admitted(adm, res)
                        else:
                            adm.reply.set_result(res)
        finally:
            self._flusher = None
        if self._queue and self.state is UP:  # queued after the loop's last check
            self._flusher = aio.spawn(self._flush(), name="tokenway-limits")

    def _commands(self, batch: list[_Job]) -> tuple[list[tuple[Any, ...]], list[Admission]]:
        """The round trip's commands: the releases, one SETTLE of every settlement,
        then one ADMIT of every admission (last: its reply is the last one)."""
        cmds: list[tuple[Any, ...]] = []
        settles: list[list[Any]] = []
        admissions: list[Admission] = []
        for kind, payload in batch:
            if kind == ADMIT_JOB:
                admissions.append(payload)
            elif kind == SETTLE_JOB:
                settles.append(payload)
            else:
                name, tag, spend, holds = payload
                cmds.append(("EVALSHA", self._sha_release, 1, name, tag, spend, *holds))
        if settles:
            cmds.append(self._script(self._sha_settle, settles, 8, 3))
        if admissions:
            cmds.append(self._script(self._sha_admit, [a.fields for a in admissions], 5, 6))
        return cmds, admissions

    @staticmethod
    def _script(sha: str, items: list[list[Any]], head: int, per_quota: int
                ) -> tuple[Any, ...]:
        """One EVALSHA of ``items`` (fields: ``head`` of them, the first the number
        of quotas, then ``per_quota`` per quota, the first its name), each quota
        name in KEYS once and named by its number."""
        numbers: dict[str, int] = {}
        argv: list[Any] = [len(items)]
        for fields in items:
            argv += fields[:head]
            for i in range(head, len(fields), per_quota):
                name = fields[i]
                n = numbers.get(name)
                if n is None:
                    n = numbers[name] = len(numbers) + 1
                argv.append(n)
                argv += fields[i + 1:i + per_quota]
        return ("EVALSHA", sha, len(numbers), *numbers, *argv)

    async def _round_trip(self, cmds: list[tuple[Any, ...]]) -> list[Any]:
        """Write the commands at once and read their replies, in order (an error
        reply in its command's place). The commands are packed here rather than
        through redis-py's pipeline, which encodes every argument in Python."""
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        pack = self._pack
        await conn.send_packed_command(b"".join(map(pack, cmds)) if pack is not None
                                       else conn.pack_commands(cmds), check_health=False)
        self.counts["round_trips"] += 1
        self.counts["commands"] += len(cmds)
        out: list[Any] = []
        for _ in cmds:
            try:
                out.append(await conn.read_response())
            except self._reply_error as exc:
                out.append(exc)
        return out

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()
            await self._client.connection_pool.release(conn)

    async def _load_scripts(self) -> None:
        await self._client.script_load(ADMIT)
        await self._client.script_load(SETTLE)
        await self._client.script_load(RELEASE)

    def _went_down(self, admissions: list[Admission], exc: BaseException) -> None:
        self.state = DOWN
        self.counts["outages"] += 1
        log.warning("limits: Redis at %s does not answer (%s); requests of limited keys "
                    "are %s until it does", self.cfg.shown, _reason(exc),
                    "refused" if self.closed_mode else "admitted without counting")
        waiting = admissions + [adm for kind, adm in self._queue if kind == ADMIT_JOB]
        self._queue.clear()
        for adm in waiting:
            if not adm.reply.done():
                adm.reply.set_result(None)  # on_redis_down decides
        if self._reconnect is None:
            self._reconnect = aio.spawn(self._reconnect_loop(), name="tokenway-limits-reconnect")

    async def _reconnect_loop(self) -> None:
        try:
            await self._drop_connection()
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
        # Requests still waiting are decided by on_redis_down rather than left waiting.
        for kind, adm in self._queue:
            if kind == ADMIT_JOB and not adm.reply.done():
                adm.reply.set_result(None)
        self._queue.clear()
        for task in (self._flusher, self._reconnect):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        try:
            async with asyncio.timeout(1.0):
                await self._drop_connection()
                await self._client.aclose()
        except self._errors:
            pass

    def stats(self) -> dict[str, Any]:
        return {"store": "redis", "url": self.cfg.shown, "state": self.state,
                "on_redis_down": self.cfg.on_redis_down, "queued": len(self._queue),
                "held": len(self._unstored), **self.counts}


def _sha1(script: str) -> str:
    import hashlib

    return hashlib.sha1(script.encode()).hexdigest()


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
