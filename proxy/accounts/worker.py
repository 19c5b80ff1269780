"""The admin API's database work, off the event loop.

``AccountStore`` is synchronous (apsw), so the admin endpoints hand each
operation to ``StoreWorker``: one thread with its own connection, used by
nothing else. One thread is enough for an API an operator calls by hand, and it
runs changes one at a time, so a read-modify-write (a PATCH merging limits) is
not interleaved with another admin request of this process.

Every job has a deadline. The caller stops waiting at ``timeout_s`` (and answers
503); a job still queued when its deadline passes is dropped, never run late;
the connection's busy timeout (``WORKER_BUSY_TIMEOUT_MS``) is below the default
deadline, so a job stuck behind another writer's lock fails by itself, with
nothing changed, before the caller gives up on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from proxy.ledger.backend import LedgerError
from proxy.ledger.url import StorageURL
from proxy.threads import name_os_thread

from .store import AccountStore

log = logging.getLogger("tokenway.accounts")

T = TypeVar("T")

# How long an admin request waits for its database work: a change waits for the
# ledger writer's transaction (milliseconds) and at worst for the busy timeout.
ADMIN_DB_TIMEOUT_S = 5.0
# Below ADMIN_DB_TIMEOUT_S, so a locked database fails the job (nothing changed)
# before the request gives up on it; the ledger writer's own is 2 s.
WORKER_BUSY_TIMEOUT_MS = 3_000


class WorkerTimeout(Exception):
    """The job did not finish (or start) within its deadline."""


class StoreWorker:
    def __init__(self, where: str | StorageURL, *,
                 busy_timeout_ms: int = WORKER_BUSY_TIMEOUT_MS) -> None:
        self.where = where
        self.busy_timeout_ms = busy_timeout_ms
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenway-admin",
                                        initializer=name_os_thread,
                                        initargs=("tokenway-admin",))
        self._store: AccountStore | None = None
        self._closed = False

    async def run(self, fn: Callable[[AccountStore], T], timeout_s: float | None = None) -> T:
        """``fn(store)`` on the worker thread; ``WorkerTimeout`` after ``timeout_s``
        (default ``ADMIN_DB_TIMEOUT_S``)."""
        if timeout_s is None:
            timeout_s = ADMIN_DB_TIMEOUT_S
        if self._closed:
            raise LedgerError("the gateway is shutting down")
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout_s
        fut = loop.run_in_executor(self._pool, self._job, fn, deadline)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise WorkerTimeout(f"the database did not answer within {timeout_s:g} s") from None

    def _job(self, fn: Callable[[AccountStore], T], deadline: float) -> T:
        if time.monotonic() > deadline:
            raise WorkerTimeout("dropped: its request stopped waiting")
        store = self._store
        if store is None:
            store = self._store = AccountStore(self.where, busy_timeout_ms=self.busy_timeout_ms)
        try:
            return fn(store)
        except LedgerError:
            # A failing connection is opened anew for the next job.
            self._drop_store()
            raise

    def _drop_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except LedgerError as exc:
                log.warning("admin database connection: %s", exc)

    def close(self) -> None:
        """Close the connection on its own thread once the queued jobs ran; does not
        wait for them."""
        if self._closed:
            return
        self._closed = True
        self._pool.submit(self._drop_store)
        self._pool.shutdown(wait=False)
