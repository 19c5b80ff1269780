"""Per-target health: a circuit breaker with half-open probes, and Retry-After cooldowns.

A target (a provider) that keeps failing is taken out of rotation so traffic
goes to the next target of each route, and comes back on its own: after
``cooldown_s`` one request is let through as a probe (half-open); success
closes the circuit, failure reopens it for twice as long, up to
``cooldown_max_s`` (envoy's outlier detection works the same way).

A provider's ``Retry-After`` (seconds or an HTTP date, RFC 9110 §10.2.3)
puts the target in cooldown for that long whatever the circuit says.

Pure logic with an injected clock (``now`` arguments), so tests can drive it
with a fake one.
"""

from __future__ import annotations

import time
from typing import Any

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

# A Retry-After longer than this is capped: a provider asking for an hour must
# not take a target out for an hour without the circuit's own probes.
MAX_RETRY_AFTER_S = 600.0


def parse_retry_after(value: bytes | str | None, now_wall: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After (or retry-after-ms) header value, or None."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text:
        return None
    try:
        secs = float(text)
    except ValueError:
        import email.utils  # HTTP-date form only: rare

        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - (time.time() if now_wall is None else now_wall)
    if secs != secs or secs < 0:  # NaN or in the past
        return 0.0
    return min(secs, MAX_RETRY_AFTER_S)


class TargetHealth:
    __slots__ = ("name", "state", "failures", "open_until", "cooldown_s", "retry_until",
                 "probing", "last_error", "served", "failed")

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = CLOSED
        self.failures = 0  # consecutive
        self.open_until = 0.0
        self.cooldown_s = 0.0
        self.retry_until = 0.0
        self.probing = False
        self.last_error: str | None = None
        self.served = 0
        self.failed = 0

    def available(self, now: float) -> bool:
        if now < self.retry_until:
            return False
        if self.state == OPEN:
            if now < self.open_until:
                return False
            self.state = HALF_OPEN
            self.probing = False
        if self.state == HALF_OPEN:
            return not self.probing
        return True

    def ready_at(self, now: float) -> float:
        """When the target can be tried again (``now`` if it can be now)."""
        t = max(now, self.retry_until)
        if self.state == OPEN:
            t = max(t, self.open_until)
        return t


class HealthBoard:
    """Health of every target, shared by all requests of one gateway process."""

    def __init__(self, *, failure_threshold: int, cooldown_s: float, cooldown_max_s: float) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.cooldown_max_s = cooldown_max_s
        self.targets: dict[str, TargetHealth] = {}

    def configure(self, *, failure_threshold: int, cooldown_s: float,
                  cooldown_max_s: float) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.cooldown_max_s = cooldown_max_s

    def get(self, name: str) -> TargetHealth:
        h = self.targets.get(name)
        if h is None:
            h = self.targets[name] = TargetHealth(name)
        return h

    def available(self, name: str, now: float) -> bool:
        return self.get(name).available(now)

    def on_attempt(self, name: str) -> None:
        h = self.get(name)
        if h.state == HALF_OPEN:
            h.probing = True  # only this request probes; others keep failing over

    def on_success(self, name: str) -> None:
        h = self.get(name)
        h.served += 1
        h.failures = 0
        h.state = CLOSED
        h.probing = False
        h.cooldown_s = 0.0

    def on_failure(self, name: str, now: float, reason: str,
                   retry_after_s: float | None = None) -> None:
        h = self.get(name)
        h.failed += 1
        h.failures += 1
        h.last_error = reason
        if retry_after_s:
            h.retry_until = max(h.retry_until, now + retry_after_s)
        if h.state == HALF_OPEN:
            h.cooldown_s = min(max(h.cooldown_s, self.cooldown_s) * 2, self.cooldown_max_s)
            h.state = OPEN
            h.open_until = now + h.cooldown_s
            h.probing = False
        elif h.failures >= self.failure_threshold:
            h.cooldown_s = self.cooldown_s
            h.state = OPEN
            h.open_until = now + h.cooldown_s

    def on_released(self, name: str) -> None:
        """A probe ended without a verdict (the client left): let another probe in."""
        self.get(name).probing = False

    def snapshot(self, now: float) -> dict[str, Any]:
        out = {}
        for name, h in self.targets.items():
            h.available(now)  # moves OPEN -> HALF_OPEN when the cooldown is over
            out[name] = {
                "state": h.state,
                "consecutive_failures": h.failures,
                "retry_in_s": round(max(0.0, h.ready_at(now) - now), 3),
                "served": h.served,
                "failed": h.failed,
                "last_error": h.last_error,
            }
        return out
