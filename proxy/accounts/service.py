"""``Accounts``: the key directory, the meter and the sync thread, as one part of
the gateway's state.

``GatewayState`` holds one; ``Server`` starts its sync thread with the ledger's
database (``Ledger.database``) once the ledger is open. Without a ledger file (unit tests), only the
static keys of the configuration exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from proxy.ledger.url import StorageURL

from .directory import Identity, KeyDirectory, Refused
from .meter import Meter
from .store import Snapshot
from .sync import AccountSync
from .worker import StoreWorker

__all__ = ["Accounts", "Identity", "Refused"]


class Accounts:
    def __init__(self, static_keys: tuple[bytes, ...] = ()) -> None:
        self.directory = KeyDirectory(static_keys)
        self.meter = Meter()
        # Called with the price rows of each new snapshot (GatewayState's price book).
        self.on_prices: Callable[[list[dict[str, Any]]], None] | None = None
        # Called when the first key appears in the database while running:
        # authentication turns on, with the defaults that depend on it.
        self.on_required: Callable[[], None] | None = None
        self._key_users: dict[str, str] = {}
        self._sync: AccountSync | None = None
        self._identities: list[Identity] = []
        self.spend_reads = 0  # spend figures taken from the ledger (for /health and tests)
        # The admin API's database thread (None without a ledger file).
        self.worker: StoreWorker | None = None

    def start(self, where: str | StorageURL, loop: asyncio.AbstractEventLoop,
              ledger: Any) -> None:
        """Read the accounts tables now, then keep them current from a thread.
        ``where``: the SQLite file's path, or the ledger's ``StorageURL``.
        ``ledger`` tells how many of this process's rows are stored
        (``recorded - queued``)."""
        sync = AccountSync(where, loop, self.install, self.spend,
                           lambda: ledger.recorded - ledger.queued)
        self.install(sync.load())
        sync.start()
        self._sync = sync
        self.worker = StoreWorker(where)

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        if self._sync is not None:
            self._sync.stop()
            self._sync = None

    def set_static(self, keys: tuple[bytes, ...]) -> None:
        self.directory.set_static(keys)

    def install(self, snap: Snapshot) -> None:
        had_stored = self.directory.has_stored
        idents = self.directory.install(snap.version, snap.users, snap.keys)
        self.meter.attach(idents)
        self._identities = idents
        self._key_users = {row.key.id: row.key.user_id for row in snap.keys
                           if row.key.user_id is not None}
        if self.on_prices is not None:
            self.on_prices(snap.prices)
        if not had_stored and self.directory.has_stored and self.on_required is not None:
            self.on_required()

    def spend(self, by_key: dict[str, tuple[float, float, float]], settled: int) -> None:
        self.meter.spend(by_key, self._key_users, settled)
        self.spend_reads += 1

    @property
    def required(self) -> bool:
        """Whether requests need a key (a configured one or a stored one)."""
        return self.directory.required

    @property
    def has_stored(self) -> bool:
        return self.directory.has_stored

    def stats(self) -> dict[str, Any]:
        d = self.directory
        return {"version": d.version, "keys": len(self._identities),
                "synced": self._sync is not None, "spend_reads": self.spend_reads,
                **self.meter.stats()}
