"""One client call: its HTTP request, its connection, its record, its protocol.

A ``Call`` is what every endpoint works with.  It owns the request record's
life (created here, finished here, once, into the ledger), reads the JSON body,
and sends answers that end the call: a JSON reply or an error, always in the
client's own protocol (``error_format``, a wire-format name of
``protocols.ir``).  Streaming responses are written by the exchange straight
to the connection; it then ends the call with ``finish``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import orjson

from . import aio
from .errors import UPSTREAM, GatewayError, bad_request, error_reply, internal_error
from .request import RequestRecord
from .wire import Request

log = logging.getLogger("tokenway.call")

# Longest `model` name accepted from a client.  Real names are under 100
# characters (Hugging Face repo ids, Fireworks' account paths); every stored
# string from a client is bounded so keyless requests cannot fill the ledger.
MAX_MODEL_CHARS = 256
# The request path is stored in the ledger up to this many characters.
MAX_STORED_PATH_CHARS = 256
# A client's own x-request-id is kept as the request's id when it looks like an
# id: 1-128 characters of letters, digits and ._:+/=- (the ledger column's bound;
# nothing a log line or a header could be bent by). Otherwise the gateway's own.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}")


class ClientConnection(Protocol):
    """The response side of a client connection (``proxy.h1.HTTPConnection``)."""

    client_addr: str
    closed: bool
    streaming: bool
    write_paused: bool
    flow: Any
    task: asyncio.Task[Any] | None

    def respond(self, status: int, body: bytes,
                headers: list[tuple[bytes, bytes]] | None = None,
                content_type: bytes = b"application/json") -> None: ...

    def start_stream(self, status: int, headers: list[tuple[bytes, bytes]],
                     *, hold: bool = False) -> None: ...

    def flush_head(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    def end_stream(self, last: bytes = b"") -> None: ...

    def abort(self) -> None: ...


class Call:
    """One request being answered.  ``rec`` goes to ``sink`` exactly once."""

    __slots__ = ("req", "conn", "rec", "error_format", "_sink", "finished", "_raw_checked",
                 "headers")

    def __init__(self, req: Request | None, conn: ClientConnection, client_protocol: str,
                 error_format: str, sink: Callable[[RequestRecord], None]) -> None:
        self.req = req
        self.conn = conn
        if req is not None:
            path = req.path
            if len(path) > MAX_STORED_PATH_CHARS:
                path = path[:MAX_STORED_PATH_CHARS]
            self.rec = RequestRecord(path, client_protocol, conn.client_addr, len(req.body))
            theirs = req.client_request_id
            if theirs is not None and _SANE_REQUEST_ID.fullmatch(theirs):
                self.rec.request_id = theirs.decode("ascii")
            identity = req.identity
            if identity is not None:
                self.rec.api_key_id = identity.key_id
        else:
            self.rec = RequestRecord(None, client_protocol, conn.client_addr, 0)
        self.error_format = error_format
        self._sink = sink
        self.finished = False
        self._raw_checked = False
        # Response headers every answer to this call carries (what is left of
        # the key's limits); None when there are none.
        self.headers: list[tuple[bytes, bytes]] | None = None

    # -- reading the request -----------------------------------------------------

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object, or a 4xx naming what is wrong with it."""
        req = self.req
        assert req is not None
        ctype = req.content_type
        if ctype is not None and b"json" not in ctype.lower():
            raise GatewayError(415, "request body must be JSON (content-type: application/json)",
                               kind="bad_request")
        if not req.body:
            raise bad_request("request body is empty: expected a JSON object")
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"request body is not valid JSON: {exc}") from None
        if type(body) is not dict:
            raise bad_request("request body must be a JSON object")
        return body

    def forwardable_body(self) -> bytes:
        """The client's body, to be sent to a provider as it is.  orjson keeps the
        last of two ``model`` keys and routing used it; a provider reading these
        bytes may take the first, so such a body is refused.  Checked only when the
        bytes are forwarded unchanged (a re-encoded body carries one ``model``):
        the scan costs about 0.5 us per KiB."""
        req = self.req
        assert req is not None
        if not self._raw_checked:
            body = req.body
            first = body.find(b'"model"')
            if first >= 0 and body.find(b'"model"', first + 7) >= 0 and _duplicate_model(body):
                raise bad_request("request body has the key 'model' more than once",
                                  param="model")
            self._raw_checked = True
        return req.body

    def model_of(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if model is None:
            raise bad_request("you must provide a model parameter", param="model")
        if type(model) is not str or not model:
            raise bad_request("'model' must be a non-empty string", param="model")
        if len(model) > MAX_MODEL_CHARS:
            raise bad_request(f"'model' is longer than {MAX_MODEL_CHARS} characters",
                              param="model")
        self.rec.model = model
        return model

    # -- answering -----------------------------------------------------------------

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.send(status, orjson.dumps(obj))

    def send(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
             content_type: bytes = b"application/json") -> None:
        """A whole response, then the end of the call."""
        rec = self.rec
        rec.status = status
        rec.first_byte()
        hs = [(b"x-request-id", rec.request_id.encode())]
        if headers:
            hs.extend(headers)
        if self.headers:
            hs.extend(self.headers)
        self.conn.respond(status, body, hs, content_type)
        rec.bytes_out = len(body)
        self.finish()

    def send_error(self, err: GatewayError) -> None:
        """Answer ``err`` in the client's protocol and end the call."""
        rec = self.rec
        status, body = error_reply(self.error_format, err)
        rec.error_kind = err.kind
        headers = []
        if err.retry_after_s is not None:
            headers.append((b"retry-after", b"%d" % max(1, round(err.retry_after_s))))
        if err.source == UPSTREAM:
            req = self.req
            log.warning("%s %s -> %d %s", req.method if req else "-", rec.endpoint, status,
                        err.message, extra={"request_id": rec.request_id})
        self.send(status, body, headers)

    def finish(self) -> None:
        """The call is over: its record goes to the ledger (once)."""
        if self.finished:
            return
        self.finished = True
        self.rec.close()
        self._sink(self.rec)

    # -- running work for this call ------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` for this call: the connection cancels it if the client
        leaves, and a crash is answered in the client's protocol."""
        task = aio.spawn(self._guarded(coro), name="request")
        self.conn.task = task
        return task

    async def _guarded(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request failed", extra={"request_id": self.rec.request_id})
            self.fail_internal()

    def fail_internal(self) -> None:
        """A gateway bug while answering: the client gets a 500 in its protocol (or a
        cut, if a stream already started) and the ledger a row."""
        if self.finished:
            return
        conn = self.conn
        if conn.streaming:
            self.rec.status = self.rec.status or 200
            self.rec.error_kind = "internal"
            conn.abort()
            self.finish()
        elif conn.closed:
            self.rec.error_kind = "internal"
            self.finish()
        else:
            self.send_error(internal_error())


def _duplicate_model(body: bytes) -> bool:
    """Whether the top-level object repeats ``model``.  Only asked when the bytes
    hold ``"model"`` twice, which a string value can also explain (Gemini's
    ``"role":"model"``), so the slow, exact parse is rare."""
    last = 0

    def hook(items: list[tuple[str, Any]]) -> dict[str, Any]:
        # Objects close innermost first: the top level is the last call.
        nonlocal last
        last = sum(1 for k, _ in items if k == "model")
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return False
    return last > 1
