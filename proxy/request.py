"""The request record: one request's facts, from its head to its ledger row.

A ``RequestRecord`` is created when a request reaches the gateway (``new_record``,
called only by ``proxy.call.Call``), filled in as the request moves through its
phases (route, attempts, first byte, usage, status), and handed to the ledger as
is by ``Call.finish``.  The ledger's writer thread calls ``as_row()``, so turning
the record into a tuple costs the event loop nothing.

Attribute names are the ledger's column names (``proxy/ledger/schema.py``), in
the same order, so ``as_row`` is one attribute read per column.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from proxy.ledger.schema import LEDGER_COLUMNS

_ID_PREFIX = "req_" + os.urandom(6).hex()
_id_counter = itertools.count(1)
_wall = time.time
_mono = time.monotonic


def new_request_id() -> str:
    """Unique per process run: a random prefix plus a counter (no syscall per request)."""
    return f"{_ID_PREFIX}{next(_id_counter):012x}"


class RequestRecord:
    """Everything the ledger keeps about one request (see ``LEDGER_COLUMNS``).

    ``t0`` is the monotonic start, for latency and time to first byte; ``charge``
    what the request reserved of its key's limits (``proxy.accounts.meter``),
    settled when it ends. Neither is stored.  Token counts stay None (unknown)
    until a provider reports them.
    """

    __slots__ = (*LEDGER_COLUMNS, "t0", "charge")

    def __init__(self, endpoint: str | None, client_protocol: str, client_addr: str,
                 bytes_in: int) -> None:
        self.ts = _wall()
        self.t0 = _mono()
        self.charge: Any = None
        self.request_id = f"{_ID_PREFIX}{next(_id_counter):012x}"
        self.endpoint = endpoint
        self.client_protocol = client_protocol
        self.model: str | None = None
        self.served_model: str | None = None
        self.provider: str | None = None
        self.status = 0
        self.error_kind: str | None = None
        self.stream = False
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cached_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.latency_ms: float | None = None
        self.ttfb_ms: float | None = None
        self.bytes_in = bytes_in
        self.bytes_out = 0
        self.attempts = 1
        self.api_key_id: str | None = None
        self.client_addr = client_addr
        self.tool_repeats: int | None = None
        self.cost_usd: float | None = None
        self.cost_source: str | None = None
        self.end_user: str | None = None
        self.dropped_tools: int | None = None

    def first_byte(self) -> None:
        """The first response byte is about to leave: time to first byte, once."""
        if self.ttfb_ms is None:
            self.ttfb_ms = (_mono() - self.t0) * 1000.0

    def set_usage(self, usage: Any) -> None:
        """Copy an ``ir.Usage`` (None: nothing reported) into the token columns."""
        if usage is None:
            return
        self.input_tokens = usage.input_tokens
        self.output_tokens = usage.output_tokens
        self.cached_tokens = usage.cached_tokens
        self.cache_write_tokens = usage.cache_write_tokens
        self.reasoning_tokens = usage.reasoning_tokens

    def close(self) -> None:
        """The last byte left (or the request ended without one): its latency."""
        self.latency_ms = (_mono() - self.t0) * 1000.0

    def as_row(self) -> tuple[Any, ...]:
        """The values in ``LEDGER_COLUMNS`` order (called on the ledger's thread)."""
        return (
            self.ts, self.request_id, self.endpoint, self.client_protocol, self.model,
            self.served_model, self.provider, self.status, self.error_kind, self.stream,
            self.input_tokens, self.output_tokens, self.cached_tokens,
            self.cache_write_tokens, self.reasoning_tokens, self.latency_ms, self.ttfb_ms,
            self.bytes_in, self.bytes_out, self.attempts, self.api_key_id, self.client_addr,
            self.tool_repeats, self.cost_usd, self.cost_source, self.end_user,
            self.dropped_tools,
        )

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(LEDGER_COLUMNS, self.as_row(), strict=True))
