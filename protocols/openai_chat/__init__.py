"""OpenAI Chat Completions wire format ⇄ IR (docs/protocols.md §1).

Four directions, all pure. This facade is the format module interface
``protocols/registry.py`` documents; the parts live in their own modules:

* ``request``: ``decode_request`` (client body → ``ir.Request``) and ``encode_request``
  (``ir.Request`` → body for a Chat upstream, applying the §5.8 hard cases that concern
  Chat: tool-call ids ≤ 40 characters and function names ≤ 64 characters from
  ``[a-zA-Z0-9_-]`` with a reverse map, ``max_completion_tokens``, forced
  ``include_usage``, tool results split into ``tool`` messages with images moved to a
  following user message);
* ``reply``: complete replies, ``decode_response`` / ``encode_response``;
* ``stream_decoder``: ``StreamDecoder`` (``data:`` chunks → IR events);
* ``stream_encoder``: ``StreamEncoder`` (IR events → ``data:`` chunks obeying every MUST
  of §1.5: role once, tool id and name once per index, integer indexes, the usage chunk
  with ``choices: []``, bare ``data: [DONE]``, no ``event:``/``id:``/``retry:`` lines,
  mid-stream errors as ``data: {"error": …}`` without ``[DONE]``);
* ``tables``: constants and maps.

Errors (``decode_error`` / ``encode_error``, ``{"error": {message, type, param, code}}``,
§1.6 and §5.7) and the tool id and name wiring are shared with Responses in
``protocols._openai``.

The same-format (observe) parts and the request-body upkeep live here too:
``passthrough`` (the stream's fact reader, the reply's facts, the mid-stream error
event and the keep-alive) and ``body`` (model limits, loop-guard tool calls and
warnings, and the usage report a stream must ask for).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._openai import decode_error, encode_error, is_error_body
    from .body import (
        cap_output_tokens,
        end_user,
        inject_warning,
        output_tokens_asked,
        request_stream_usage,
        strip_reasoning,
        tool_calls,
    )
    from .passthrough import HEARTBEAT, REPLY_FACTS, stream_error_event, stream_watch
    from .reply import decode_response, encode_response
    from .request import decode_request, encode_request
    from .stream_decoder import StreamDecoder
    from .stream_encoder import StreamEncoder
    from .tables import FORMAT

# Each name's module, imported with the first use of one of its names: a gateway
# loads this facade with its first Chat request, and the parts that request does
# not use stay out (a non-stream passthrough never needs the stream codecs or the
# IR request codec; 0.6 MiB of the 1 MiB the nine modules cost at once).
_PARTS = {
    "decode_error": ".._openai", "encode_error": ".._openai", "is_error_body": ".._openai",
    "cap_output_tokens": ".body", "end_user": ".body", "inject_warning": ".body",
    "output_tokens_asked": ".body", "request_stream_usage": ".body",
    "strip_reasoning": ".body", "tool_calls": ".body",
    "HEARTBEAT": ".passthrough", "REPLY_FACTS": ".passthrough",
    "stream_error_event": ".passthrough", "stream_watch": ".passthrough",
    "decode_response": ".reply", "encode_response": ".reply",
    "decode_request": ".request", "encode_request": ".request",
    "StreamDecoder": ".stream_decoder", "StreamEncoder": ".stream_encoder",
    "FORMAT": ".tables",
}


def __getattr__(name: str) -> Any:
    part = _PARTS.get(name)
    if part is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(part, __name__), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


__all__ = [
    "FORMAT",
    "HEARTBEAT",
    "REPLY_FACTS",
    "StreamDecoder",
    "StreamEncoder",
    "cap_output_tokens",
    "decode_error",
    "decode_request",
    "decode_response",
    "encode_error",
    "encode_request",
    "encode_response",
    "end_user",
    "inject_warning",
    "is_error_body",
    "output_tokens_asked",
    "request_stream_usage",
    "stream_error_event",
    "stream_watch",
    "strip_reasoning",
    "tool_calls",
]
