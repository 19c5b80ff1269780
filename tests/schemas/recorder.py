"""An HTTP transport for the real SDKs that validates every exchange it carries.

``Recorder.client()`` is an ``httpx2.Client`` (what the ``openai`` and ``anthropic``
SDKs are built on) whose transport copies each response body as the SDK reads it; when
the body is closed, the copy is validated against the published schema of the format
the request path names (tests/schemas/). A client without an SDK (the raw Gemini one)
passes what it received to ``check``. A reply, an error body and every stream event
are checked, whatever the SDK itself tolerates. Problems are collected, with the path
and status, for the test to assert on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2

from tests.schemas import ANTHROPIC, CHAT, GEMINI, RESPONSES, check_body, check_stream

#: Request path suffix -> client wire format.
PATHS = (("/chat/completions", CHAT), ("/responses", RESPONSES), ("/messages", ANTHROPIC),
         (":generateContent", GEMINI), (":streamGenerateContent", GEMINI))


def format_of(path: str) -> str | None:
    path = path.split("?", 1)[0]
    for suffix, fmt in PATHS:
        if path.endswith(suffix):
            return fmt
    return None


class _Tee(httpx2.SyncByteStream):
    def __init__(self, inner: Any, done: Any) -> None:
        self._inner = inner
        self._done = done
        self._parts: list[bytes] = []
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._parts.append(chunk)
            yield chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._inner.close()
        finally:
            self._done(b"".join(self._parts))


class Recorder:
    """Validates what the SDK clients made by ``client()`` receive.

    ``relayed`` holds the bodies the providers sent: a reply equal to one of them, or a
    stream event found verbatim in one, is the provider's own (observe mode relays it
    unchanged) and is not the gateway's to validate; whatever the gateway wrote itself,
    a translation or an error event it appended, is."""

    def __init__(self, relayed: list[bytes]) -> None:
        self.problems: list[str] = []
        self.checked = 0
        self.relayed = relayed

    def _provider_json(self, body: bytes) -> bool:
        try:
            obj = json.loads(body)
        except ValueError:
            return False
        for sent in self.relayed:
            try:
                if json.loads(sent) == obj:
                    return True
            except ValueError:
                continue
        return False

    def _provider_event(self, data: str) -> bool:
        raw = data.encode()
        return any(raw in sent for sent in self.relayed)

    def client(self, **kwargs: Any) -> httpx2.Client:
        return httpx2.Client(transport=_Transport(self), **kwargs)

    def check(self, path: str, status: int, content_type: str, body: bytes) -> None:
        fmt = format_of(path)
        if fmt is None or path.endswith("/count_tokens") or not body:
            return
        where = f"{path} {status}"
        if "text/event-stream" in content_type:
            found = check_stream(fmt, body, skip=self._provider_event)
        elif "json" in content_type:
            if self._provider_json(body):
                return
            found = check_body(fmt, body, error=status >= 400)
        else:
            return
        self.checked += 1
        self.problems += [f"{where}: {p}" for p in found]


class _Transport(httpx2.BaseTransport):
    def __init__(self, recorder: Recorder) -> None:
        self._inner = httpx2.HTTPTransport()
        self._recorder = recorder

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        resp = self._inner.handle_request(request)
        path = request.url.path
        status = resp.status_code
        ctype = resp.headers.get("content-type", "")

        def done(body: bytes) -> None:
            self._recorder.check(path, status, ctype, body)

        return httpx2.Response(status, headers=resp.headers,
                               stream=_Tee(resp.stream, done), extensions=resp.extensions)

    def close(self) -> None:
        self._inner.close()
