"""Rows, records and backends shared by the ledger tests (not a test module)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from proxy.ledger import DictRecord, LedgerUnavailable, SQLiteBackend
from proxy.ledger.backend import JournalMark, WriteResult

WAIT_S = 10.0  # upper bound for a thread hand-off; never reached when passing


def make_row(i: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "ts": 1_700_000_000.0 + i,
        "request_id": f"req-{i}",
        "endpoint": "/v1/chat/completions",
        "client_protocol": "openai_chat",
        "model": "gpt-4o-mini",
        "served_model": "gpt-4o-mini-2024-07-18",
        "provider": "openai",
        "status": 200,
        "error_kind": None,
        "stream": i % 2 == 0,
        "input_tokens": 100 + i,
        "output_tokens": 10 + i,
        "cached_tokens": 64,
        "cache_write_tokens": None,
        "reasoning_tokens": 0,
        "latency_ms": 812.5,
        "ttfb_ms": 301.25,
        "bytes_in": 2048,
        "bytes_out": 4096,
        "attempts": 1,
        "api_key_id": None,
        "client_addr": "127.0.0.1:50000",
        "tool_repeats": None,
        "cost_usd": 0.00012 * (i + 1),
        "cost_source": "bundled",
        "end_user": f"user-{i}",
        "dropped_tools": i or None,
    }
    row.update(overrides)
    return row


def make_rec(i: int, **overrides: Any) -> DictRecord:
    return DictRecord(make_row(i, **overrides))


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll a condition another thread will make true; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class CountingBackend(SQLiteBackend):
    """Real SQLite, plus a record of each committed transaction's size."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.batch_sizes: list[int] = []
        self.wrote = threading.Event()

    def write_rows(
        self, payload: bytes, *, taken_at: float, mark: JournalMark | None = None,
        rows: Any = None,
    ) -> WriteResult:
        result = super().write_rows(payload, taken_at=taken_at, mark=mark, rows=rows)
        self.batch_sizes.append(len(orjson.loads(payload)))
        self.wrote.set()
        return result


class BlockingBackend(CountingBackend):
    """write_rows waits until the test releases it."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.entered = threading.Event()
        self.release = threading.Event()

    def write_rows(
        self, payload: bytes, *, taken_at: float, mark: JournalMark | None = None,
        rows: Any = None,
    ) -> WriteResult:
        self.entered.set()
        assert self.release.wait(WAIT_S)
        return super().write_rows(payload, taken_at=taken_at, mark=mark, rows=rows)


class SwitchBackend(CountingBackend):
    """Real SQLite that reports itself unavailable while ``down`` is set."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.down = threading.Event()
        self.refused = 0

    def write_rows(
        self, payload: bytes, *, taken_at: float, mark: JournalMark | None = None,
        rows: Any = None,
    ) -> WriteResult:
        if self.down.is_set():
            self.refused += 1
            raise LedgerUnavailable("disk I/O error (injected)")
        return super().write_rows(payload, taken_at=taken_at, mark=mark, rows=rows)
