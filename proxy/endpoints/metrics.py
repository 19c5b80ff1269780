"""``GET /metrics``: the gateway's Prometheus metrics (proxy/metrics.py,
docs/metrics.md).  Not recorded in the ledger, like ``/health``; with keys
configured it needs one (the dispatcher's table says so)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..call import Call
from ..exposition import CONTENT_TYPE
from ..state import GatewayState


def serve_metrics(state: GatewayState, call: Call,
                  server_stats: Callable[[], dict[str, Any]]) -> None:
    body = state.metrics.render(server_stats(), state.pool.stats(),
                                state.health.snapshot(state.loop.time()), state.started,
                                state.accounts.limits_stats())
    call.send(200, body, content_type=CONTENT_TYPE)
