"""The small endpoints that answer from the gateway's own state: the models list,
``/health`` and the root probe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from .. import __version__
from ..call import Call
from ..state import GatewayState


def serve_models(state: GatewayState, call: Call) -> None:
    """``GET /v1/models``: Anthropic's list shape when the request carries
    ``anthropic-version`` or comes under ``/anthropic``, else OpenAI's."""
    req = call.req
    assert req is not None
    anthropic = req.header(b"anthropic-version") is not None or req.path.startswith("/anthropic/")
    ident = req.identity
    if ident is not None and ident.models_limited:
        # Only what this key may use (built per request: restricted keys are few).
        call.send(200, state.model_list([m for m in state.model_names if ident.may_use(m)],
                                        anthropic))
        return
    call.send(200, state.models_anthropic if anthropic else state.models_openai)


def serve_root(call: Call) -> None:
    # Claude Code probes the base URL with HEAD before its first request.
    call.send(200, b'{"service":"tokenway"}')


def serve_health(state: GatewayState, call: Call, server_stats: Callable[[], dict[str, Any]],
                 *, details: bool) -> None:
    """``/health``: liveness for anyone; connections, pool, ledger and provider
    state (addresses, last errors) and the count of live asyncio tasks (a leak
    shows as growth) only for a caller with a gateway key, or when
    authentication is off."""
    body: dict[str, Any] = {"status": "ok", "version": __version__}
    stats = server_stats()
    ledger = stats.get("ledger") or {}
    if stats.get("admission") != "open" or ledger.get("state", "ok") != "ok":
        # Still serving, but holding new requests or keeping rows on disk
        # until the database takes them again.
        body["status"] = "degraded"
        body["ledger_state"] = ledger.get("state")
    limits = state.accounts.limits_stats()
    if limits.get("state", "up") != "up":
        # Redis is down: limited keys are admitted unmetered or refused (on_redis_down).
        body["status"] = "degraded"
        body["limits_state"] = limits["state"]
        body["on_redis_down"] = limits.get("on_redis_down")
    if details:
        body["uptime_s"] = round(time.time() - state.started, 3)
        body.update(stats)
        body.update(state.stats())
        # Counted only when asked for: one pass over the loop's task set.
        body["tasks"] = len(asyncio.all_tasks(state.loop))
    call.send(200, orjson.dumps(body))
