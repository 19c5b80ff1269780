"""Per-provider concurrency limit with a bounded FIFO wait queue.

``try_acquire`` is the fast path (no await).  When the provider is full a
request may wait, in arrival order, up to ``queue_timeout_s``; when the queue
is full too, the caller answers 503 with Retry-After instead of piling up
memory (a bounded queue is a named limit like every other buffer).
"""

from __future__ import annotations

import asyncio
from collections import deque


class ConcurrencyLimit:
    __slots__ = ("max", "queue_size", "queue_timeout_s", "inflight", "_waiters", "rejected")

    def __init__(self, max_concurrency: int, queue_size: int, queue_timeout_s: float) -> None:
        self.max = max_concurrency  # 0: unlimited
        self.queue_size = queue_size
        self.queue_timeout_s = queue_timeout_s
        self.inflight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.rejected = 0

    def try_acquire(self) -> bool:
        if self.max == 0 or (self.inflight < self.max and not self._waiters):
            self.inflight += 1
            return True
        return False

    def can_queue(self) -> bool:
        return len(self._waiters) < self.queue_size

    async def acquire(self) -> bool:
        """Wait for a slot; False after ``queue_timeout_s`` (no slot is held then)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await fut
            return True
        except TimeoutError:
            # The slot may have been handed over just as the timer fired.
            return fut.done() and not fut.cancelled()
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot, then cancelled: pass it on
            raise
        finally:
            if not fut.done():
                fut.cancel()
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to the waiter: inflight unchanged
                return
        if self.inflight > 0:
            self.inflight -= 1

    def stats(self) -> dict[str, int]:
        return {"inflight": self.inflight, "waiting": len(self._waiters), "max": self.max,
                "rejected": self.rejected}
