"""``Accounts``: the key directory, the meter and the sync thread, as one part of
the gateway's state. With ``[limits] redis_url`` the counters of limited keys are
kept in Redis instead (``shared``, proxy/accounts/redis_meter.py); the per-process
meter still holds each quota's limits and the ledger's spend.

``GatewayState`` holds one; ``Server`` starts its sync thread with the ledger's
database (``Ledger.database``) once the ledger is open. Without a ledger file (unit tests), only the
static keys of the configuration exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from proxy.aio import spawn
from proxy.config.model import LimitsConfig
from proxy.ledger.url import StorageURL

from .directory import Identity, KeyDirectory, Refused
from .meter import Charge, Meter
from .store import Snapshot
from .sync import AccountSync
from .worker import StoreWorker

if TYPE_CHECKING:
    from .redis_meter import SharedCharge, SharedMeter

__all__ = ["Accounts", "Identity", "Refused"]


class Accounts:
    def __init__(self, static_keys: tuple[bytes, ...] = ()) -> None:
        self.directory = KeyDirectory(static_keys)
        self.meter = Meter()
        # The Redis counters shared with other gateways (None: this process counts).
        self.shared: SharedMeter | None = None
        self._limits_cfg = LimitsConfig()
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

    def configure_limits(self, cfg: LimitsConfig, hold_s: float) -> None:
        """Keep the counters in Redis (``cfg.redis_url``) or in this process.
        ``hold_s``: how long a request may run (its budget hold lasts that long)."""
        if cfg == self._limits_cfg:
            return
        old = self.shared
        self._limits_cfg = cfg
        if cfg.redis_url is None:
            self.shared = None
        else:
            # Imported only with a redis_url: the Redis client code is about 0.3 MiB
            # of a gateway that counts in its own process (the default).
            from .redis_meter import SharedMeter

            self.shared = SharedMeter(cfg, hold_s + 60, self.meter.clock)
        if old is not None:  # a reload moved the counters: close the old client
            spawn(old.close(), name="tokenway-limits-close")

    def settle(self, charge: Charge, tokens: int | None, usd: float | None, seq: int) -> None:
        """A request ended: its real tokens and cost replace its charge's estimate."""
        if charge.shared:  # made by a SharedMeter (perhaps one a reload has replaced)
            if self.shared is not None:
                self.shared.settle(cast("SharedCharge", charge), tokens, usd, seq)
        else:
            self.meter.settle(charge, tokens, usd, seq)

    async def close(self) -> None:
        """Close the Redis client (at shutdown, on the loop)."""
        if self.shared is not None:
            await self.shared.close()

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

    def spend(self, by_key: dict[str, tuple[float, float, float]], settled: int,
              days: tuple[str, str] | None = None) -> None:
        self.meter.spend(by_key, self._key_users, settled, days)
        if self.shared is not None:
            self.shared.release(settled, self.meter.quota)
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

    def limits_stats(self) -> dict[str, Any]:
        """Where the counters are and, with Redis, its state (``/health``, metrics)."""
        if self.shared is None:
            return {"store": "process"}
        return self.shared.stats()
