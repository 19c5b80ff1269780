"""Event-loop hygiene: one place that creates loops and keeps tasks alive.

asyncio keeps only weak references to tasks, so a bare ``create_task`` whose
result nobody holds can be garbage-collected mid-flight (CPython docs,
``asyncio.create_task``).  Every background task in the gateway goes through
``spawn`` which holds a strong reference until the task finishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("tokenway")

_TASKS: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
    """Start ``coro`` as a task and keep a strong reference until it is done."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _TASKS.add(task)
    task.add_done_callback(_task_done)
    return task


def _task_done(task: asyncio.Task[Any]) -> None:
    _TASKS.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("background task %s failed", task.get_name(), exc_info=exc)


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """Return a new loop: uvloop when available (``auto``/``uvloop``), else asyncio."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()
