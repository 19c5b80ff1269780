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
