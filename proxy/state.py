"""The gateway's shared state: the running configuration and the long-lived parts.

``GatewayState`` holds what outlives a request: the upstream pool, the health
board, ``finish_record`` (where every finished request record goes: priced,
then handed to the ledger's ``record``), the price book, and a snapshot of what
the configuration decides (router, providers, concurrency limits, gateway keys,
the models list).  ``apply`` installs a new configuration: requests already
running keep the objects they hold, so a reload never drops a stream.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import orjson

from . import loopback
from .accounts.prices import PRICE_CACHE_MAX_MODELS, PriceBook
from .accounts.service import Accounts
from .config import Config
from .errors import GatewayError
from .exchange import Upstreams
from .health import HealthBoard
from .limits import ConcurrencyLimit
from .metrics import GatewayMetrics
from .model_catalog import ListedModel, ModelCatalog, listing_targets
from .provider import Provider
from .request import RequestRecord
from .response_store import ResponseStore
from .routing import Router, is_glob
from .upstream import UpstreamPool

Estimator = Callable[[int, int], float]
# A model not looked up yet (None: looked up, no price known).
_UNPRICED: Estimator = lambda prompt, output: 0.0  # noqa: E731


def _iso(created: int) -> str:
    """Anthropic's ``created_at`` (RFC 3339) for unix seconds; models whose date
    nobody knows keep the fixed date the list always gave them."""
    if not created:
        return "2025-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))


def _estimate_at(inp: float, out: float) -> Callable[[int, int], float]:
    """USD of (prompt, output) tokens at ``inp`` and ``out`` USD per million."""
    return lambda prompt, output: (prompt * inp + output * out) / 1e6

class GatewayState:
    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop,
                 record: Callable[[RequestRecord], None],
                 recorded: Callable[[], int] = lambda: 0) -> None:
        """``record`` takes finished records (the ledger's); ``recorded`` says how
        many rows the ledger has taken so far (the meter's spend bookkeeping). The
        prices stored in the database arrive with the accounts (``set_db_prices``),
        before the first request when the server starts."""
        self.loop = loop
        self._record = record
        self.recorded = recorded
        self._db_prices: list[Mapping[str, Any]] = []
        # set_db_prices may come from another thread while a reload runs here.
        self._prices_lock = threading.Lock()
        self.started = time.time()
        self.pool = UpstreamPool(loop)
        r = config.routing
        self.health = HealthBoard(failure_threshold=r.failure_threshold,
                                  cooldown_s=r.cooldown_s, cooldown_max_s=r.cooldown_max_s)
        self.limits: dict[str, ConcurrencyLimit] = {}
        self.accounts = Accounts()
        self.accounts.on_required = self._keys_appeared
        self.accounts.on_prices = self.set_db_prices
        self.metrics = GatewayMetrics()
        self._estimators: tuple[Any, Any, dict[str, Estimator | None]] = (None, None, {})
        # What glob routes can serve, from the providers' own lists (fetched once
        # the server listens: ``catalog.start``).
        self.catalog = ModelCatalog(self.pool, self._catalog_changed)
        # Translated Responses conversations, for previous_response_id.
        self.responses = ResponseStore()
        # The access log's ``record`` (proxy/access_log.py), None while it is off.
        self.access_log: Callable[[RequestRecord], None] | None = None
        self.apply(config)

    def apply(self, config: Config) -> None:
        """Install a (new) configuration."""
        if self.accounts.has_stored and not config.auth.stored_keys:
            # Keys in the database turn authentication on as configured keys do
            # (and with it the defaults that depend on it, the loopback model's).
            config = replace(config, auth=replace(config.auth, stored_keys=True))
        self.config = config
        self.router = Router(config)
        self.providers = {name: Provider(p) for name, p in config.providers.items()}
        r = config.routing
        self.health.configure(failure_threshold=r.failure_threshold,
                              cooldown_s=r.cooldown_s, cooldown_max_s=r.cooldown_max_s)
        limits = {}
        for name, p in config.providers.items():
            if p.max_concurrency:
                old = self.limits.get(name)
                if old is not None and old.max == p.max_concurrency:
                    # Same limit: keep its in-flight count and waiters.
                    old.queue_size, old.queue_timeout_s = p.queue_size, p.queue_timeout_s
                    limits[name] = old
                else:
                    limits[name] = ConcurrencyLimit(p.max_concurrency, p.queue_size,
                                                    p.queue_timeout_s)
        self.limits = limits
        self.upstreams = Upstreams(self.loop, self.pool, self.health, limits, r)
        self.accounts.set_static(tuple(k.encode() for k in config.auth.keys))
        self.accounts.configure_limits(config.limits, r.deadline_s)
        self.is_gateway_key = self.accounts.directory.is_gateway_key
        self.catalog.configure(listing_targets(config.routes, self.providers, is_glob))
        self._build_model_lists(config)
        with self._prices_lock:
            self.prices = PriceBook(config.prices, self._db_prices)

    def set_db_prices(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """New database prices (``AccountStore.prices()`` rows) for the requests that
        finish from now on. Safe from any thread: the book is replaced whole."""
        with self._prices_lock:
            self._db_prices = list(rows)
            self.prices = PriceBook(self.config.prices, self._db_prices)

    def _keys_appeared(self) -> None:
        """The first key was created while running: authentication is on now."""
        self.apply(self.config)

    def finish_record(self, rec: RequestRecord) -> None:
        """Where every finished request goes, once: priced, its charge on the key's
        limits settled, counted in the metrics, then to the ledger and the access log."""
        self.prices.cost_of(rec)
        charge = rec.charge
        if charge is not None:
            tokens = rec.input_tokens
            if tokens is not None and rec.output_tokens is not None:
                tokens += rec.output_tokens
            elif tokens is None and rec.cost_usd == 0.0:
                tokens = 0  # nothing reached a provider: nothing used
            self.accounts.settle(charge, tokens, rec.cost_usd, self.recorded() + 1)
            rec.charge = None  # the ledger's queue need not keep it alive
        self.metrics.observe(rec)
        self._record(rec)
        if self.access_log is not None:
            self.access_log(rec)

    def _catalog_changed(self) -> None:
        if hasattr(self, "router"):  # not during the first apply
            self._build_model_lists(self.config)

    def _build_model_lists(self, config: Config) -> None:
        """The models list: exact route names, renamed targets and ``loopback``,
        then what the providers behind glob routes list (``model_catalog``)."""
        owners: dict[str, str] = {}
        for route in config.routes:
            for t in route.targets:
                owners.setdefault(t.model or route.match, t.provider)
        listed: dict[str, ListedModel] = {}
        for name in self.router.models():
            listed[name] = ListedModel(name, "tokenway" if name == loopback.LOOPBACK_MODEL
                                       else owners.get(name, "tokenway"), 0, name)
        for m in self.catalog.models():
            if m.id not in listed and self.router.resolve(m.id) is not None:
                listed[m.id] = m
        self.listed_models = listed
        self.model_names = list(listed)
        self.models_openai = self.model_list(self.model_names, anthropic=False)
        self.models_anthropic = self.model_list(self.model_names, anthropic=True)
        # What glob routes list gets its own series too (bounded per provider).
        self.metrics.set_names(self.model_names, config.providers)

    def model_list(self, names: list[str], anthropic: bool) -> bytes:
        """``GET /v1/models``'s body for ``names`` (of ``model_names``), in OpenAI's
        or Anthropic's shape."""
        listed = self.listed_models
        models = [listed[m] for m in names if m in listed]
        if not anthropic:
            return orjson.dumps({"object": "list", "data": [
                {"id": m.id, "object": "model", "created": m.created, "owned_by": m.provider}
                for m in models]})
        data = [{"type": "model", "id": m.id, "display_name": m.display_name,
                 "created_at": _iso(m.created)} for m in models]
        return orjson.dumps({
            "data": data, "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None})

    def estimator(self, model: str) -> Callable[[int, int], float] | None:
        """Prices a token estimate (prompt, output) for a request for ``model``: at
        the price of its route's first target (or of ``model`` itself); None when
        no price is known. Remembered per model until the routes or prices change."""
        router, book, memo = self._estimators
        if router is not self.router or book is not self.prices:
            router, book, memo = self._estimators = (self.router, self.prices, {})
        hit = memo.get(model, _UNPRICED)
        if hit is not _UNPRICED:
            return hit
        names = [model]
        resolved = router.resolve(model)
        if resolved is not None:
            names = [m for _, m in resolved.targets] + names
        fn: Estimator | None = None
        for name in names:
            price, _ = book.lookup(name)
            if price is not None:
                fn = _estimate_at(price.input, price.output)
                break
        if len(memo) >= PRICE_CACHE_MAX_MODELS:  # model names come from clients
            memo.clear()
        memo[model] = fn
        return fn

    def price_of(self, model: str) -> tuple[float, float] | None:
        """USD per million input and output tokens of ``model``, if known."""
        price, _ = self.prices.lookup(model)
        return None if price is None else (price.input, price.output)

    def targets_for(self, model: str) -> list[tuple[Provider, str]]:
        """The targets a request for ``model`` tries, in failover order: the first
        matching route's targets, the first one drawn by weight when it has weights."""
        resolved = self.router.resolve(model)
        if resolved is None:
            hint = " or use model 'loopback'" if self.router.loopback else ""
            raise GatewayError(404, f"no route for model '{model[:100]}': add a [[routes]] "
                                    f"entry{hint}", kind="not_found",
                               param="model", code="model_not_found")
        providers = self.providers
        targets = [(providers[p.name], m) for p, m in resolved.targets]
        weights = resolved.route.weights
        if weights and len(targets) > 1:
            # Imported by the first weighted route's request (0.14 MiB spared without
            # one; once loaded the import statement is a dictionary lookup).
            import random

            i = random.choices(range(len(targets)), weights=weights)[0]
            if i:
                targets.insert(0, targets.pop(i))
        return targets

    def stats(self) -> dict[str, Any]:
        """The upstream side of ``/health``."""
        return {
            "upstream": self.pool.stats(),
            "targets": self.health.snapshot(self.loop.time()),
            "limits": {name: lim.stats() for name, lim in self.limits.items()},
            "model_lists": dict(self.catalog.status),
            "rate_limits": self.accounts.limits_stats(),
        }
