"""Stored Responses conversations, for ``previous_response_id`` on any provider.

The Responses API lets a client continue a conversation by naming the previous
response (https://platform.openai.com/docs/api-reference/responses/create,
``previous_response_id``) instead of sending the history again.  OpenAI keeps
that history itself; a Chat, Anthropic or Gemini provider keeps nothing.  For
the responses the gateway translates, it keeps the conversation so far (the
request's input items followed by the response's output items) under the
response's id, and a later request naming it gets those items in front of its
own input before it is translated.

Bounded: at most ``MAX_ENTRIES`` conversations and ``MAX_BYTES`` of them (the
oldest go first), each at most ``MAX_AGE_S`` old; in memory, per process, lost
on restart.  Scoped by API key: a request reads only what was stored under the
key it presents (``anonymous`` while authentication is off), so no one reads
another's history.  A request with ``store: false`` is not kept, as the
Responses API does.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import orjson

MAX_ENTRIES = 10_000
MAX_BYTES = 64 * 1024 * 1024
MAX_AGE_S = 3600.0
# One conversation larger than this is not kept (a client sends it again instead).
MAX_ENTRY_BYTES = 8 * 1024 * 1024
ANONYMOUS = "anonymous"


class ResponseStore:
    __slots__ = ("_entries", "_bytes", "clock")

    def __init__(self) -> None:
        # (scope, response id) -> (stored at, items as JSON bytes); oldest first.
        self._entries: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self.clock = time.monotonic

    def put(self, scope: str, response_id: str, items: list[Any]) -> bool:
        """Keep ``items`` (the whole conversation up to this response) under
        ``response_id``; False when it is too large to keep."""
        data = orjson.dumps(items)
        if len(data) > MAX_ENTRY_BYTES or not response_id:
            return False
        key = (scope, response_id)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        self._entries[key] = (self.clock(), data)
        self._bytes += len(data)
        while len(self._entries) > MAX_ENTRIES or self._bytes > MAX_BYTES:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= len(dropped)
        return True

    def get(self, scope: str, response_id: str) -> list[Any] | None:
        """The conversation stored under ``response_id`` for ``scope``, or None
        (never stored, another key's, expired or pushed out)."""
        key = (scope, response_id)
        hit = self._entries.get(key)
        if hit is None:
            return None
        stored_at, data = hit
        if self.clock() - stored_at > MAX_AGE_S:
            del self._entries[key]
            self._bytes -= len(data)
            return None
        items: list[Any] = orjson.loads(data)
        return items

    def stats(self) -> dict[str, int]:
        return {"conversations": len(self._entries), "bytes": self._bytes}


def input_items(value: Any) -> list[Any]:
    """A request's ``input`` as a list of items (a string is one user message)."""
    if type(value) is str:
        return [{"type": "message", "role": "user", "content": value}]
    return list(value) if type(value) is list else []


class CompletedCatcher:
    """Finds the ``response.completed`` event in a translated Responses stream
    (the client's bytes, https://platform.openai.com/docs/api-reference/responses-streaming)
    and hands its ``response`` object over.  Holds bytes only from that event's
    start, at most ``MAX_ENTRY_BYTES``."""

    __slots__ = ("_held", "_on_response", "_size")
    MARK = b"event: response.completed\n"

    def __init__(self, on_response: Any) -> None:
        self._held: list[bytes] | None = None
        self._on_response = on_response
        self._size = 0

    def feed(self, out: bytes) -> None:
        held = self._held
        if held is None:
            at = out.find(self.MARK)
            if at < 0:
                return
            out = out[at:]
            held = self._held = []
        self._size += len(out)
        if self._size > MAX_ENTRY_BYTES:
            self._held = None
            self._on_response = None
            return
        held.append(out)
        data = b"".join(held)
        end = data.find(b"\n\n")
        if end < 0:
            return
        self._held = None
        callback, self._on_response = self._on_response, None
        if callback is None:
            return
        for line in data[:end].split(b"\n"):
            if line.startswith(b"data:"):
                try:
                    event = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    return
                response = event.get("response") if type(event) is dict else None
                if type(response) is dict:
                    callback(response)
                return
