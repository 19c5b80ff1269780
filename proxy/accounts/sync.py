"""The thread that keeps a running gateway's accounts current.

Every ``SYNC_PERIOD_S`` it reads ``accounts_version`` (one row); when the number
moved (``gateway key revoke``, the admin API, another gateway process) it reads
the users, keys and prices again and hands the snapshot to the event loop. Every
``SPEND_PERIOD_S`` it reads each key's spend from ``key_spend`` and hands that
over too, with how many of this process's rows the ledger had stored before the
read, so the meter knows which of its own recent costs the figures include, and the
UTC day and month the figures count.

The event loop never waits for any of it: results arrive through
``call_soon_threadsafe``. A failing database keeps the last snapshot and is
logged once per failure streak.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from proxy.ledger.backend import LedgerError
from proxy.ledger.url import StorageURL
from proxy.threads import name_os_thread

from .meter import utc_days
from .store import AccountStore, Snapshot

log = logging.getLogger("tokenway.accounts")

# A revoked key is refused within this period plus one loop turn.
SYNC_PERIOD_S = 0.25
SPEND_PERIOD_S = 1.0


class AccountSync:
    def __init__(self, where: str | StorageURL, loop: asyncio.AbstractEventLoop,
                 on_snapshot: Callable[[Snapshot], None],
                 on_spend: Callable[[dict[str, tuple[float, float, float]], int,
                                     tuple[str, str]], None],
                 settled_rows: Callable[[], int], *, period_s: float = SYNC_PERIOD_S,
                 spend_period_s: float = SPEND_PERIOD_S) -> None:
        self.where = where
        self.path = where if isinstance(where, str) else where.shown  # for the log
        self.loop = loop
        self.on_snapshot = on_snapshot
        self.on_spend = on_spend
        self.settled_rows = settled_rows
        self.period_s = period_s
        self.spend_period_s = spend_period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._version = -1
        self._failing = False
        self.snapshots = 0  # snapshots handed to the loop (for /health and tests)

    def load(self) -> Snapshot:
        """Read the accounts once, now (at start, before serving)."""
        with AccountStore(self.where) as store:
            snap = store.snapshot()
        self._version = snap.version
        return snap

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tokenway-accounts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        name_os_thread("tokenway-accts")
        store: AccountStore | None = None
        next_spend = 0.0
        try:
            while not self._stop.is_set():
                try:
                    if store is None:
                        store = AccountStore(self.where)
                    self._poll(store)
                    now = time.monotonic()
                    if now >= next_spend:
                        next_spend = now + self.spend_period_s
                        self._spend(store)
                    if self._failing:
                        log.info("accounts: reading %s again", self.path)
                        self._failing = False
                except (LedgerError, OSError) as exc:
                    if not self._failing:
                        log.warning("accounts: cannot read %s (keeping the last keys and "
                                    "limits): %s", self.path, exc)
                        self._failing = True
                    if store is not None:
                        _close_quietly(store)
                        store = None
                self._stop.wait(self.period_s)
        finally:
            if store is not None:
                _close_quietly(store)

    def _poll(self, store: AccountStore) -> None:
        version = store.version()
        if version == self._version:
            return
        snap = store.snapshot()
        self._version = snap.version
        self._hand_over(self.on_snapshot, snap)
        self.snapshots += 1

    def _spend(self, store: AccountStore) -> None:
        settled = self.settled_rows()  # before the read: those rows are in it
        today, month = utc_days(time.time())
        self._hand_over(self.on_spend, store.spend(today, month), settled, (today, month))

    def _hand_over(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            self._stop.set()  # the loop is closed: the gateway is gone


def _close_quietly(store: AccountStore) -> None:
    try:
        store.close()
    except LedgerError:
        pass
