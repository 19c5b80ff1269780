"""The built-in ``loopback`` model, answered in process for every client protocol.

``proxy.loopback`` answers in OpenAI Chat; a client of another protocol reaches
it through the same ``Translation`` a Chat provider would get, so the loopback
model exercises the translation path without a network.
"""

from __future__ import annotations

import time
from typing import Any

from protocols.ir import FORMAT_OPENAI_CHAT
from protocols.translate import Translation

from .. import loopback
from ..call import Call
from ..exchange import SSE_HEADERS
from .attempts import translate_request


def serve_loopback(call: Call, body: dict[str, Any], client_format: str, stream: bool) -> None:
    rec = call.rec
    conn = call.conn
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
    usage: Any = loopback.chat_usage(chat_body)
    if stream:
        frames = loopback.chat_stream(chat_body, request_id=cid, created=created)
        rec.first_byte()
        conn.start_stream(200, SSE_HEADERS + [(b"x-request-id", rid.encode())])
        n = 0
        for frame in frames:
            out = frame if tr is None else tr.feed(frame)
            if out:
                conn.write(out)
                n += len(out)
        if tr is not None:
            out = tr.finish()
            if out:
                conn.write(out)
                n += len(out)
            usage = tr.usage or usage
        conn.end_stream()
        rec.bytes_out = n
        rec.status = 200
        _set_usage(call, usage)
        call.finish()
        return
    reply = loopback.chat_completion(chat_body, request_id=cid, created=created)
    if tr is not None:
        reply = tr.response(reply)
        usage = tr.usage or usage
    _set_usage(call, usage)
    call.send_json(reply)


def _set_usage(call: Call, usage: Any) -> None:
    """The loopback model reports OpenAI's usage dict; translated, an ``ir.Usage``."""
    if type(usage) is dict:
        from protocols.usage import from_openai_chat

        usage = from_openai_chat(usage)
    call.rec.set_usage(usage)
