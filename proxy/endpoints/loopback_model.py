"""The built-in ``loopback`` model, answered in process for every client protocol.

``proxy.loopback`` answers in OpenAI Chat; a client of another protocol reaches
it through the same ``Translation`` a Chat provider would get, so the loopback
model exercises the translation path without a network.  A stream is written as
the client reads it (``LoopbackStream``), like a provider's stream would be.
"""

from __future__ import annotations

import time
from typing import Any

from protocols.ir import FORMAT_OPENAI_CHAT
from protocols.registry import format_module
from protocols.translate import Translation
from protocols.usage import from_openai_chat

from .. import loopback
from ..call import Call
from ..exchange import SSE_HEADERS
from .attempts import translate_request


def serve_loopback(call: Call, body: dict[str, Any], client_format: str, stream: bool) -> None:
    rec = call.rec
    rec.provider = "loopback"
    rec.served_model = loopback.LOOPBACK_MODEL
    rid = rec.request_id
    created = int(time.time())
    cid = "chatcmpl-" + rid[4:]
    tr = None
    chat_body = body
    if client_format != FORMAT_OPENAI_CHAT:
        tr = Translation(client_format, FORMAT_OPENAI_CHAT, request_id=rid, created=created)
        chat_body = translate_request(tr, body)
        chat_body["model"] = body.get("model") or loopback.LOOPBACK_MODEL
    usage = from_openai_chat(loopback.chat_usage(chat_body))
    if stream:
        frames = loopback.chat_stream(chat_body, request_id=cid, created=created)
        LoopbackStream(call, frames, tr, usage).start()
        return
    reply = loopback.chat_completion(chat_body, request_id=cid, created=created)
    if tr is not None:
        reply = tr.response(reply)
        usage = tr.usage or usage
    rec.set_usage(usage)
    call.send_json(reply)


class LoopbackStream:
    """Writes the loopback model's frames while the client keeps reading: the
    connection's write high-water mark pauses it, ``resume_writing`` goes on.
    It is the connection's ``flow`` for the stream's life."""

    __slots__ = ("call", "frames", "tr", "usage", "i", "bytes_out", "done")

    def __init__(self, call: Call, frames: list[bytes], tr: Translation | None,
                 usage: Any) -> None:
        self.call = call
        self.frames = frames
        self.tr = tr
        self.usage = usage
        self.i = 0
        self.bytes_out = 0
        self.done = False

    def start(self) -> None:
        call = self.call
        call.rec.first_byte()
        call.conn.start_stream(200, SSE_HEADERS + [(b"x-request-id",
                                                    call.rec.request_id.encode())])
        call.conn.flow = self
        self._pump()

    def _pump(self) -> None:
        conn = self.call.conn
        frames, tr = self.frames, self.tr
        while self.i < len(frames):
            if conn.write_paused or self.done:
                return
            frame = frames[self.i]
            self.i += 1
            out = frame if tr is None else tr.feed(frame)
            if out:
                conn.write(out)
                self.bytes_out += len(out)
        tail = b""
        if tr is not None:
            tail = tr.finish()
            self.usage = tr.usage or self.usage
        self.bytes_out += len(tail)
        self._end(tail, status=200, error_kind=None)

    def _end(self, tail: bytes, *, status: int, error_kind: str | None) -> None:
        if self.done:
            return
        self.done = True
        conn = self.call.conn
        if conn.flow is self:
            conn.flow = None
        rec = self.call.rec
        rec.status = status
        rec.error_kind = error_kind
        rec.bytes_out = self.bytes_out
        rec.set_usage(self.usage)
        if status == 200:
            conn.end_stream(tail)
        self.call.finish()

    # -- the connection's flow callbacks ------------------------------------------
    def pause_writing(self) -> None:
        """Nothing to do: ``_pump`` looks at ``write_paused`` before each frame."""

    def resume_writing(self) -> None:
        if not self.done:
            self._pump()

    def client_gone(self) -> None:
        self._end(b"", status=499, error_kind="cancelled")

    def shutdown(self) -> None:
        """The server stops mid-stream: the client protocol's error event ends it."""
        if self.done:
            return
        tr = self.tr
        if tr is not None:
            tail = tr.finish()  # no terminal event yet: the client format's error event
        else:
            tail = format_module(FORMAT_OPENAI_CHAT).stream_error_event(
                "the gateway is shutting down", "shutdown")
        self.bytes_out += len(tail)
        self._end(tail, status=200, error_kind="shutdown")
