"""Requests and tokens per minute and USD budgets, per key and per user.

At admission (``Meter.admit``) each limit of the key and of its user is checked
and the request is charged up front: one request, its token estimate (the
request's bytes / 4 for the prompt plus the output limit it asks for, else
``DEFAULT_OUTPUT_ESTIMATE``) and the estimate's cost. When it ends
(``Meter.settle``) the estimate is replaced by what the provider reported. A
request is admitted while what is used plus what is reserved is under the
limit, so concurrent requests overshoot a limit by at most the last admitted
request's estimate; refusing whenever an estimate does not fit would refuse an
agent that asks for 32k output tokens under a 30k-per-minute limit forever.

Windows slide over the last 60 seconds in one-second buckets (``Window``:
61 counts, whatever the limit, so a generous limit costs no memory). Budgets
count UTC days and months: the spend stored in the ledger (``key_spend``,
refreshed by the sync thread every second, which also brings other gateway
processes' spend) plus this process's spend not yet seen there.

Everything here runs on the event loop and never waits on the database.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .directory import Identity
from .model import Limits

WINDOW_S = 60
# The windows count in whole seconds: one more bucket than the window has seconds,
# so a request leaves the count between 60 and 61 s after it was made, never
# sooner (a limit is never exceeded in any 60 s span), and a quota's memory is
# two arrays of 61 counts however high its limits.
BUCKETS = WINDOW_S + 1
# Output tokens assumed for a request that names no limit: what a chat turn
# rarely exceeds; the estimate is replaced by the real count when it ends.
DEFAULT_OUTPUT_ESTIMATE = 4096
# Prompt tokens per request byte: JSON-wrapped English runs about 4 bytes a
# token, so bytes / 4 over-estimates the prompt, the safe side for a limit.
BYTES_PER_TOKEN = 4

PriceFn = Callable[[str, int, int], float | None]


class Denied(Exception):
    """A limit refuses the request: ``kind`` is ``rate_limited`` or
    ``budget_exceeded``; ``retry_after_s`` when a window will free room."""

    def __init__(self, kind: str, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        # What is left, when the refusal knows it (the shared meter's).
        self.headers: list[tuple[bytes, bytes]] | None = None


class LimitsUnavailable(Exception):
    """Redis is down and ``on_redis_down = "closed"`` (raised by redis_meter; here so
    that the endpoints catch it without importing the Redis client)."""


class Window:
    """A count over the last 60 seconds, kept in one bucket per second."""

    __slots__ = ("counts", "total", "second")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.total = 0
        self.second = 0  # the second the newest bucket counts

    def advance(self, second: int) -> None:
        """Move to ``second``, emptying the buckets that fell out of the window."""
        gone = second - self.second
        if gone <= 0:
            return
        counts = self.counts
        if gone >= BUCKETS:
            for i in range(BUCKETS):
                counts[i] = 0
            self.total = 0
        else:
            for s in range(self.second + 1, second + 1):
                i = s % BUCKETS
                self.total -= counts[i]
                counts[i] = 0
        self.second = second

    def add(self, n: int) -> None:
        self.counts[self.second % BUCKETS] += n
        self.total += n

    def frees_in(self, now: float) -> float:
        """Seconds until the oldest count leaves the window."""
        counts, newest = self.counts, self.second
        for s in range(newest - BUCKETS + 1, newest + 1):
            if counts[s % BUCKETS]:
                return max(1.0, s + BUCKETS - now)
        return 1.0


# An absent limit compares as never reached (the hot path tests no None).
NO_LIMIT = float("inf")


class Quota:
    """The live counters of one key's or one user's limits.

    ``rpm``, ``tpm`` and ``budget`` copy the limits (``NO_LIMIT`` when absent)
    so that admission is a few comparisons; ``second`` is the second both
    windows were last moved to."""

    __slots__ = ("name", "ref", "limits", "rpm", "tpm", "budget", "requests", "tokens",
                 "second", "reserved_tokens", "reserved_usd", "stored_usd", "stored_tag",
                 "unseen", "unseen_usd")

    def __init__(self, name: str, limits: Limits, ref: str = "") -> None:
        self.name = name
        self.ref = ref  # "key:ID" or "user:ID": the shared counters' name (redis_meter)
        self.limits = limits
        self.rpm = NO_LIMIT if limits.rpm is None else limits.rpm
        self.tpm = NO_LIMIT if limits.tpm is None else limits.tpm
        self.budget = NO_LIMIT if limits.budget_usd is None else limits.budget_usd
        self.requests = Window()
        self.tokens = Window()
        self.second = 0
        self.reserved_tokens = 0
        self.reserved_usd = 0.0
        self.stored_usd = 0.0  # the budget period's spend in the ledger
        self.stored_tag = ""  # which period that is (period_tag; "" before a read)
        self.unseen: deque[tuple[int, float]] = deque()  # (ledger sequence, USD)
        self.unseen_usd = 0.0

    def spent(self) -> float:
        return self.stored_usd + self.unseen_usd

    def move(self, second: int) -> None:
        """Move both windows to ``second``."""
        self.requests.advance(second)
        self.tokens.advance(second)
        self.second = second

    def full(self) -> bool:
        """Whether any limit is reached (windows moved to now)."""
        return (self.requests.total >= self.rpm
                or self.tokens.total + self.reserved_tokens >= self.tpm
                or self.stored_usd + self.unseen_usd + self.reserved_usd >= self.budget)

    def check(self, now: float) -> Denied | None:
        """Whether the quota has room at ``now`` (its windows moved there)."""
        second = int(now)
        if second != self.second:
            self.move(second)
        if not self.full():
            return None
        lim = self.limits
        if self.requests.total >= self.rpm:
            return Denied("rate_limited", f"{self.name} reached its limit of {lim.rpm} "
                                          "requests per minute", self.requests.frees_in(now))
        if self.tokens.total + self.reserved_tokens >= self.tpm:
            return Denied("rate_limited", f"{self.name} reached its limit of {lim.tpm} "
                                          "tokens per minute", self.tokens.frees_in(now))
        return Denied("budget_exceeded",
                      f"{self.name} has used its budget of {lim.budget_usd:g} USD "
                      f"({period_text(lim.budget_period)})",
                      until_reset(lim.budget_period, now))

    def stored(self, usd: float, settled: int, tag: str = "") -> None:
        """The ledger's figure for the period ``tag``, read after ``settled`` rows had
        been stored: this process's spend up to that row is in it."""
        self.stored_usd = usd
        self.stored_tag = tag
        unseen = self.unseen
        while unseen and unseen[0][0] <= settled:
            self.unseen_usd -= unseen.popleft()[1]
        if not unseen:
            self.unseen_usd = 0.0  # no float drift left behind


class Charge:
    """What one admitted request reserved, released by ``Meter.settle``, and the
    response headers that say what was left after it."""

    __slots__ = ("quotas", "tokens", "usd", "headers")
    # Counted in Redis (redis_meter.SharedCharge) rather than by this process's Meter.
    shared = False

    def __init__(self, quotas: tuple[Quota, ...], tokens: int, usd: float,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.quotas = quotas
        self.tokens = tokens
        self.usd = usd
        self.headers = headers


class Meter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._keys: dict[str, Quota] = {}
        self._users: dict[str, Quota] = {}
        # Settlements not applied yet: (charge, tokens, usd, seq, second) (see settle).
        self._unsettled: list[tuple[Charge, int | None, float | None, int, int]] = []

    def attach(self, identities: list[Identity]) -> None:
        """Give each limited identity its quotas, keeping the live counters of a
        key or user whose limits did not change."""
        self._apply()  # onto the quotas they were charged on, before any is copied
        keys: dict[str, Quota] = {}
        users: dict[str, Quota] = {}
        for ident in identities:
            key, user = ident.key, ident.user
            quotas = []
            if key is not None and _metered(key.limits):
                keys[key.id] = q = _keep(self._keys.get(key.id), f"API key {key.id}",
                                         key.limits, f"key:{key.id}")
                quotas.append(q)
            if user is not None and _metered(user.limits):
                q = users.get(user.id) or _keep(self._users.get(user.id),
                                                f"user {user.name}", user.limits,
                                                f"user:{user.id}")
                users[user.id] = q
                quotas.append(q)
            ident.quotas = tuple(quotas)
            ident.budgeted = any(q.limits.budget_usd is not None for q in quotas)
        self._keys, self._users = keys, users

    def admit(self, ident: Identity, request_bytes: int, output_asked: int | None,
              usd_per: Callable[[int, int], float | None] | None) -> Charge | None:
        """Check and charge the identity's quotas; ``Denied`` when one is full.
        ``usd_per(prompt, output)`` prices the estimate (None: price unknown).
        The charge carries the headers that say what is left after it."""
        quotas = ident.quotas
        if not quotas:
            return None
        if self._unsettled:
            self._apply()
        now = self.clock()
        second = int(now)
        for q in quotas:
            if q.second != second:
                q.move(second)
            if q.full():
                denied = q.check(now)
                assert denied is not None
                raise denied
        tokens, usd = estimate(ident, request_bytes, output_asked, usd_per)
        i = second % BUCKETS
        for q in quotas:
            w = q.requests
            w.counts[i] += 1
            w.total += 1
            q.reserved_tokens += tokens
            q.reserved_usd += usd
        return Charge(quotas, tokens, usd, _headers(quotas))

    def settle(self, charge: Charge, tokens: int | None, usd: float | None, seq: int) -> None:
        """The request ended: its real tokens and cost replace the estimate. Unknown
        tokens or cost keep the estimate (the safe side). ``seq`` is the request's
        row number in this process's ledger (see ``spend``).

        Noted with the second it ended in, and applied by the next admission (or
        header read, spend read-out, snapshot) together with every other one
        waiting (``_apply``): nothing reads the counters in between, so each
        admission sees exactly what settling at once would show, and the
        settlements of a busy loop turn run as one warm loop instead of each cold."""
        self._unsettled.append((charge, tokens, usd, seq, int(self.clock())))

    def _apply(self) -> None:
        """Apply the waiting settlements, oldest first (the quotas' windows only
        move forward: each was noted after the last move)."""
        todo, self._unsettled = self._unsettled, []
        for charge, tokens, usd, seq, second in todo:
            est_tokens, est_usd = charge.tokens, charge.usd
            t = est_tokens if tokens is None else tokens
            u = est_usd if usd is None else usd
            entry = (seq, u)  # the key's and the user's quota share it
            for q in charge.quotas:
                q.reserved_tokens -= est_tokens
                q.reserved_usd -= est_usd
                if t:
                    if second != q.second:
                        q.move(second)
                    w = q.tokens
                    w.counts[second % BUCKETS] += t
                    w.total += t
                if u:
                    q.unseen.append(entry)
                    q.unseen_usd += u

    def spend(self, by_key: dict[str, tuple[float, float, float]], key_users: dict[str, str],
              settled: int, days: tuple[str, str] | None = None) -> None:
        """The ledger's spend per key (today, this month, all time), read when the
        first ``settled`` rows this process recorded were stored; ``days``: the UTC
        day and month (``utc_days``) the read counted."""
        self._apply()
        per_user: dict[str, list[float]] = {}
        for key_id, figures in by_key.items():
            user_id = key_users.get(key_id)
            if user_id is not None:
                acc = per_user.setdefault(user_id, [0.0, 0.0, 0.0])
                for i in range(3):
                    acc[i] += figures[i]
        for key_id, q in self._keys.items():
            period = q.limits.budget_period
            q.stored(_in_period(by_key.get(key_id), period), settled, period_tag(period, days))
        for user_id, q in self._users.items():
            total = per_user.get(user_id)
            period = q.limits.budget_period
            q.stored(_in_period(tuple(total) if total else None, period), settled,
                     period_tag(period, days))

    def quota(self, ref: str) -> Quota | None:
        """The live quota named ``ref`` (``Quota.ref``: "key:ID" or "user:ID")."""
        kind, _, ident = ref.partition(":")
        return (self._keys if kind == "key" else self._users).get(ident)

    def headers(self, ident: Identity) -> list[tuple[bytes, bytes]]:
        """What is left to the identity now: the tightest of its key's and user's."""
        self._apply()
        now = self.clock()
        for q in ident.quotas:
            q.check(now)  # moves the windows to now
        return _headers(ident.quotas)

    def stats(self) -> dict[str, Any]:
        return {"keys": len(self._keys), "users": len(self._users)}


def estimate(ident: Identity, request_bytes: int, output_asked: int | None,
             usd_per: Callable[[int, int], float | None] | None) -> tuple[int, float]:
    """The tokens and USD a request is charged at admission (see the module's doc)."""
    prompt = request_bytes // BYTES_PER_TOKEN + 1
    tokens = prompt + (output_asked if output_asked is not None else DEFAULT_OUTPUT_ESTIMATE)
    usd = 0.0
    if usd_per is not None and ident.budgeted:
        usd = usd_per(prompt, tokens - prompt) or 0.0
    return tokens, usd


def _metered(limits: Limits) -> bool:
    return limits.rpm is not None or limits.tpm is not None or limits.budget_usd is not None


def _keep(old: Quota | None, name: str, limits: Limits, ref: str) -> Quota:
    if old is not None and old.limits == limits and old.name == name:
        return old
    q = Quota(name, limits, ref)
    if old is not None:  # new limits, same traffic so far
        q.requests, q.tokens, q.second = old.requests, old.tokens, old.second
        q.reserved_tokens, q.reserved_usd = old.reserved_tokens, old.reserved_usd
        q.unseen, q.unseen_usd = old.unseen, old.unseen_usd
    return q


def _headers(quotas: tuple[Quota, ...]) -> list[tuple[bytes, bytes]]:
    """``x-ratelimit-remaining-requests``, ``-tokens`` and the budget header: the
    tightest figure of the quotas (each as of its windows' last move)."""
    rpm = tpm = usd = NO_LIMIT
    for q in quotas:
        left = q.rpm - q.requests.total
        if left < rpm:
            rpm = left
        left = q.tpm - q.tokens.total - q.reserved_tokens
        if left < tpm:
            tpm = left
        left_usd = q.budget - q.stored_usd - q.unseen_usd - q.reserved_usd
        if left_usd < usd:
            usd = left_usd
    return limit_headers(rpm, tpm, usd)


REMAINING_REQUESTS = b"x-ratelimit-remaining-requests"
REMAINING_TOKENS = b"x-ratelimit-remaining-tokens"
REMAINING_USD = b"x-tokenway-budget-remaining-usd"
# Every header the meters set: they replace a provider's of the same names.
LIMIT_HEADER_NAMES = frozenset((REMAINING_REQUESTS, REMAINING_TOKENS, REMAINING_USD))


# The last budget figure formatted and its header: ``%.6f`` of a float costs more
# than the other two headers together, and the figure repeats while no spend settles
# (a free model, requests still in flight).
_last_usd: list[Any] = [NO_LIMIT, (REMAINING_USD, b"")]


def limit_headers(rpm: float, tpm: float, usd: float) -> list[tuple[bytes, bytes]]:
    """The headers for what is left (``NO_LIMIT``: no such limit)."""
    out = []
    if rpm != NO_LIMIT:
        out.append((REMAINING_REQUESTS, b"%d" % (rpm if rpm > 0 else 0)))
    if tpm != NO_LIMIT:
        out.append((REMAINING_TOKENS, b"%d" % (tpm if tpm > 0 else 0)))
    if usd != NO_LIMIT:
        last = _last_usd
        if usd != last[0]:
            last[1] = (REMAINING_USD, b"%.6f" % (usd if usd > 0.0 else 0.0))
            last[0] = usd
        out.append(last[1])
    return out


def _in_period(figures: tuple[float, ...] | None, period: str | None) -> float:
    if figures is None or period is None:
        return 0.0
    return figures[("day", "month", "total").index(period)]


def period_tag(period: str | None, days: tuple[str, str] | None) -> str:
    """Which budget period a spend figure counts: ``dYYYY-MM-DD``, ``mYYYY-MM-01`` or
    ``t``; tags of one kind order as their periods do. "" when unknown."""
    if days is None or period is None:
        return ""
    if period == "day":
        return "d" + days[0]
    if period == "month":
        return "m" + days[1]
    return "t"


def period_text(period: str | None) -> str:
    return {"day": "per UTC day", "month": "per UTC month"}.get(period or "", "in total")


def until_reset(period: str | None, mono_now: float) -> float | None:
    """Seconds until the budget's period starts again (None for a total budget)."""
    if period not in ("day", "month"):
        return None
    import calendar  # only for a refusal: 0.2 MiB of every gateway otherwise

    now = time.time()
    t = time.gmtime(now)
    if period == "day":
        start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86_400
    else:
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        start = calendar.timegm((year, month, 1, 0, 0, 0))
    return max(1.0, start - now)


def utc_days(now: float) -> tuple[str, str]:
    """Today and the first day of this month, UTC, as the ledger stores days."""
    t = time.gmtime(now)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}",
            f"{t.tm_year:04d}-{t.tm_mon:02d}-01")
