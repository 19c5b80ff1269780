"""The meter's windows and charges on a clock the test moves (no sockets, no sleeps)."""

from __future__ import annotations

import pytest

from proxy.accounts.directory import Identity
from proxy.accounts.meter import BUCKETS, Denied, Meter, Window
from proxy.accounts.model import ApiKey, Limits, User


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def identity(meter: Meter, key_limits: Limits, user_limits: Limits | None = None) -> Identity:
    user = None
    if user_limits is not None:
        user = User("usr_1", "alice", None, "member", False, 0.0, user_limits)
    key = ApiKey("key_1", "tw-...abcd", "k", user.id if user else None, 0.0, None, None,
                 key_limits)
    ident = Identity(key.id, key, user)
    meter.attach([ident])
    return ident


def test_a_window_forgets_counts_between_60_and_61_seconds_later() -> None:
    w = Window()
    w.advance(100)
    w.add(3)
    w.advance(160)
    assert w.total == 3  # 60 s later: still inside (the safe side)
    w.advance(161)
    assert w.total == 0
    w.add(2)
    w.advance(161 + 10 * BUCKETS)  # a long idle gap empties everything at once
    assert w.total == 0 and not any(w.counts)


def test_requests_per_minute_never_exceed_the_limit_in_any_60_seconds() -> None:
    clock = Clock(1000.5)
    m = Meter(clock)
    ident = identity(m, Limits(rpm=3))
    admitted: list[float] = []
    for _ in range(400):  # one attempt every 0.3 s for two minutes
        try:
            m.admit(ident, 100, 10, None)
            admitted.append(clock.t)
        except Denied as d:
            assert d.kind == "rate_limited" and 1 <= d.retry_after_s <= BUCKETS
        clock.t += 0.3
    for t in admitted:
        assert sum(t <= u < t + 60 for u in admitted) <= 3
    assert len(admitted) >= 3 * 2  # and the window does free room again


def test_tokens_are_reserved_then_settled_to_what_was_used() -> None:
    clock = Clock()
    m = Meter(clock)
    ident = identity(m, Limits(tpm=1000))
    c = m.admit(ident, 400, 100, None)  # estimate 400 / 4 + 1 + 100 = 201
    assert c is not None and c.tokens == 201
    assert dict(c.headers)[b"x-ratelimit-remaining-tokens"] == b"799"
    m.settle(c, 50, None, 1)
    assert dict(m.headers(ident))[b"x-ratelimit-remaining-tokens"] == b"950"
    clock.t += 61
    assert dict(m.headers(ident))[b"x-ratelimit-remaining-tokens"] == b"1000"


def test_a_settlement_waits_for_the_next_admission_and_counts_in_the_second_it_ended() -> None:
    clock = Clock()
    m = Meter(clock)
    ident = identity(m, Limits(tpm=1000))
    c = m.admit(ident, 400, 100, None)  # 201 reserved
    assert c is not None
    m.settle(c, 50, None, 1)  # ends at t=1000, applied by the next admission
    clock.t += 30
    c2 = m.admit(ident, 400, 100, None)
    assert c2 is not None  # sees the 50 used, not the 201 reserved: 1000 - 50 - 201
    assert dict(c2.headers)[b"x-ratelimit-remaining-tokens"] == b"749"
    clock.t += 31  # 61 s after the first ended: its 50 tokens have left the window
    m.settle(c2, 10, None, 2)
    assert dict(m.headers(ident))[b"x-ratelimit-remaining-tokens"] == b"990"


def test_the_tightest_of_key_and_user_is_reported_and_both_are_charged() -> None:
    clock = Clock()
    m = Meter(clock)
    ident = identity(m, Limits(rpm=10, budget_usd=5.0, budget_period="day"),
                     Limits(rpm=4))
    assert len(ident.quotas) == 2 and ident.budgeted
    c = m.admit(ident, 40, 10, lambda prompt, out: (prompt + out) / 100)
    assert c is not None
    h = dict(c.headers)
    assert h[b"x-ratelimit-remaining-requests"] == b"3"
    assert h[b"x-tokenway-budget-remaining-usd"] == b"4.790000"
    for _ in range(3):
        m.admit(ident, 40, 10, lambda prompt, out: 0.0)
    with pytest.raises(Denied, match="user alice reached its limit of 4"):
        m.admit(ident, 40, 10, None)


def test_new_limits_keep_the_traffic_so_far() -> None:
    clock = Clock()
    m = Meter(clock)
    ident = identity(m, Limits(rpm=5))
    for _ in range(3):
        m.admit(ident, 10, 1, None)
    ident2 = identity(m, Limits(rpm=3))
    with pytest.raises(Denied):
        m.admit(ident2, 10, 1, None)
