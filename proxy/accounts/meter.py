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

Windows slide over the last 60 seconds (a deque of timestamps per quota,
bounded by the limit for requests and by the requests of one minute for
tokens). Budgets count UTC days and months: the spend stored in the ledger
(``key_spend``, refreshed by the sync thread every second, which also brings
other gateway processes' spend) plus this process's spend not yet seen there.

Everything here runs on the event loop and never waits on the database.
"""

from __future__ import annotations

import calendar
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .directory import Identity
from .model import Limits

WINDOW_S = 60.0
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


class Quota:
    """The live counters of one key's or one user's limits."""

    __slots__ = ("name", "limits", "requests", "token_events", "tokens", "reserved_tokens",
                 "reserved_usd", "stored_usd", "unseen", "unseen_usd")

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.requests: deque[float] = deque()
        self.token_events: deque[tuple[float, int]] = deque()
        self.tokens = 0
        self.reserved_tokens = 0
        self.reserved_usd = 0.0
        self.stored_usd = 0.0  # the budget period's spend in the ledger
        self.unseen: deque[tuple[int, float]] = deque()  # (ledger sequence, USD)
        self.unseen_usd = 0.0

    def _slide(self, now: float) -> None:
        edge = now - WINDOW_S
        requests = self.requests
        while requests and requests[0] <= edge:
            requests.popleft()
        events = self.token_events
        while events and events[0][0] <= edge:
            self.tokens -= events.popleft()[1]

    def spent(self) -> float:
        return self.stored_usd + self.unseen_usd

    def check(self, now: float) -> Denied | None:
        lim = self.limits
        self._slide(now)
        if lim.rpm is not None and len(self.requests) >= lim.rpm:
            wait = self.requests[0] + WINDOW_S - now
            return Denied("rate_limited", f"{self.name} reached its limit of {lim.rpm} "
                                          "requests per minute", wait)
        if lim.tpm is not None and self.tokens + self.reserved_tokens >= lim.tpm:
            events = self.token_events
            wait = events[0][0] + WINDOW_S - now if events else 1.0
            return Denied("rate_limited", f"{self.name} reached its limit of {lim.tpm} "
                                          "tokens per minute", wait)
        budget = lim.budget_usd
        if budget is not None and self.spent() + self.reserved_usd >= budget:
            return Denied("budget_exceeded",
                          f"{self.name} has used its budget of {budget:g} USD "
                          f"({_period_text(lim.budget_period)})",
                          _until_reset(lim.budget_period, now))
        return None

    def charge(self, now: float, tokens: int, usd: float) -> None:
        self.requests.append(now)
        self.reserved_tokens += tokens
        self.reserved_usd += usd

    def settle(self, now: float, est_tokens: int, est_usd: float, tokens: int, usd: float,
               seq: int) -> None:
        self.reserved_tokens -= est_tokens
        self.reserved_usd -= est_usd
        if tokens:
            self.token_events.append((now, tokens))
            self.tokens += tokens
        if usd:
            self.unseen.append((seq, usd))
            self.unseen_usd += usd

    def stored(self, usd: float, settled: int) -> None:
        """The ledger's figure for the period, read after ``settled`` rows had been
        stored: this process's spend up to that row is in it."""
        self.stored_usd = usd
        unseen = self.unseen
        while unseen and unseen[0][0] <= settled:
            self.unseen_usd -= unseen.popleft()[1]
        if not unseen:
            self.unseen_usd = 0.0  # no float drift left behind

    def remaining(self, now: float) -> tuple[int | None, int | None, float | None]:
        lim = self.limits
        self._slide(now)
        rpm = lim.rpm - len(self.requests) if lim.rpm is not None else None
        tpm = (lim.tpm - self.tokens - self.reserved_tokens) if lim.tpm is not None else None
        usd = (lim.budget_usd - self.spent() - self.reserved_usd
               if lim.budget_usd is not None else None)
        return (None if rpm is None else max(0, rpm), None if tpm is None else max(0, tpm),
                None if usd is None else max(0.0, usd))


class Charge:
    """What one admitted request reserved, released by ``Meter.settle``."""

    __slots__ = ("quotas", "tokens", "usd")

    def __init__(self, quotas: tuple[Quota, ...], tokens: int, usd: float) -> None:
        self.quotas = quotas
        self.tokens = tokens
        self.usd = usd


class Meter:
    def __init__(self) -> None:
        self._keys: dict[str, Quota] = {}
        self._users: dict[str, Quota] = {}

    def attach(self, identities: list[Identity]) -> None:
        """Give each limited identity its quotas, keeping the live counters of a
        key or user whose limits did not change."""
        keys: dict[str, Quota] = {}
        users: dict[str, Quota] = {}
        for ident in identities:
            key, user = ident.key, ident.user
            if key is not None and _metered(key.limits):
                keys[key.id] = ident.meter_key = _keep(self._keys.get(key.id),
                                                       f"API key {key.id}", key.limits)
            if user is not None and _metered(user.limits):
                q = users.get(user.id) or _keep(self._users.get(user.id),
                                                f"user {user.name}", user.limits)
                users[user.id] = ident.meter_user = q
        self._keys, self._users = keys, users

    def admit(self, ident: Identity, request_bytes: int, output_asked: int | None,
              usd_per: Callable[[int, int], float | None] | None) -> Charge | None:
        """Check and charge the identity's quotas; ``Denied`` when one is full.
        ``usd_per(prompt, output)`` prices the estimate (None: price unknown)."""
        quotas = tuple(q for q in (ident.meter_key, ident.meter_user) if q is not None)
        if not quotas:
            return None
        now = time.monotonic()
        for q in quotas:
            denied = q.check(now)
            if denied is not None:
                raise denied
        prompt = request_bytes // BYTES_PER_TOKEN + 1
        output = output_asked if output_asked is not None else DEFAULT_OUTPUT_ESTIMATE
        usd = 0.0
        if usd_per is not None and any(q.limits.budget_usd is not None for q in quotas):
            usd = usd_per(prompt, output) or 0.0
        for q in quotas:
            q.charge(now, prompt + output, usd)
        return Charge(quotas, prompt + output, usd)

    def settle(self, charge: Charge, tokens: int | None, usd: float | None, seq: int) -> None:
        """The request ended: its real tokens and cost replace the estimate. Unknown
        tokens or cost keep the estimate (the safe side). ``seq`` is the request's
        row number in this process's ledger (see ``spend``)."""
        now = time.monotonic()
        t = charge.tokens if tokens is None else tokens
        u = charge.usd if usd is None else usd
        for q in charge.quotas:
            q.settle(now, charge.tokens, charge.usd, t, u, seq)

    def spend(self, by_key: dict[str, tuple[float, float, float]], key_users: dict[str, str],
              settled: int) -> None:
        """The ledger's spend per key (today, this month, all time), read when the
        first ``settled`` rows this process recorded were stored."""
        per_user: dict[str, list[float]] = {}
        for key_id, figures in by_key.items():
            user_id = key_users.get(key_id)
            if user_id is not None:
                acc = per_user.setdefault(user_id, [0.0, 0.0, 0.0])
                for i in range(3):
                    acc[i] += figures[i]
        for key_id, q in self._keys.items():
            q.stored(_in_period(by_key.get(key_id), q.limits.budget_period), settled)
        for user_id, q in self._users.items():
            total = per_user.get(user_id)
            q.stored(_in_period(tuple(total) if total else None, q.limits.budget_period),
                     settled)

    def headers(self, ident: Identity) -> list[tuple[bytes, bytes]]:
        """What is left to the identity: the tightest of its key's and user's."""
        now = time.monotonic()
        rpm = tpm = usd = None
        for q in (ident.meter_key, ident.meter_user):
            if q is None:
                continue
            r, t, u = q.remaining(now)
            rpm = _least(rpm, r)
            tpm = _least(tpm, t)
            usd = _least(usd, u)
        out = []
        if rpm is not None:
            out.append((b"x-ratelimit-remaining-requests", b"%d" % rpm))
        if tpm is not None:
            out.append((b"x-ratelimit-remaining-tokens", b"%d" % tpm))
        if usd is not None:
            out.append((b"x-tokenway-budget-remaining-usd", b"%.6f" % usd))
        return out

    def stats(self) -> dict[str, Any]:
        return {"keys": len(self._keys), "users": len(self._users)}


def _metered(limits: Limits) -> bool:
    return limits.rpm is not None or limits.tpm is not None or limits.budget_usd is not None


def _keep(old: Quota | None, name: str, limits: Limits) -> Quota:
    if old is not None and old.limits == limits:
        return old
    q = Quota(name, limits)
    if old is not None:  # new limits, same traffic so far
        q.requests, q.token_events, q.tokens = old.requests, old.token_events, old.tokens
        q.reserved_tokens, q.reserved_usd = old.reserved_tokens, old.reserved_usd
        q.unseen, q.unseen_usd = old.unseen, old.unseen_usd
    return q


def _least(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _in_period(figures: tuple[float, ...] | None, period: str | None) -> float:
    if figures is None or period is None:
        return 0.0
    return figures[("day", "month", "total").index(period)]


def _period_text(period: str | None) -> str:
    return {"day": "per UTC day", "month": "per UTC month"}.get(period or "", "in total")


def _until_reset(period: str | None, mono_now: float) -> float | None:
    """Seconds until the budget's period starts again (None for a total budget)."""
    if period not in ("day", "month"):
        return None
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
