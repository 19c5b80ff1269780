"""Anthropic Messages wire format ⇄ IR (docs/protocols.md §3).

Four directions, all pure. This facade is the format module interface
``protocols/registry.py`` documents; the parts live in their own modules:

* ``request_decode``: ``decode_request`` (client body → ``ir.Request``, including what
  Claude Code sends: ``role:"system"`` entries inside ``messages`` with their own
  ``output_config``, adaptive thinking, ``context_management``, ``defer_loading`` tools);
* ``request_encode``: ``encode_request`` (``ir.Request`` → body for an Anthropic upstream,
  applying the §5.8 hard cases: system hoisting, a ``max_tokens`` default, temperature
  clamp, empty text dropped, tool results grouped first in one user turn, tool ids and
  names made valid through deterministic maps, thinking budget below ``max_tokens``,
  forced tool choice versus thinking);
* ``reply``: complete replies, ``decode_response`` / ``encode_response``, and errors,
  ``decode_error`` / ``encode_error`` (§3.9, §5.7);
* ``stream_decoder``: ``StreamDecoder`` (``event:``/``data:`` SSE → IR events);
* ``stream_encoder``: ``StreamEncoder`` (IR events → SSE obeying §3.8: ``event:`` lines
  matching ``type``, sequential block indexes, one block at a time, ``message_delta``
  only once usage is final, exactly one ``message_stop``, mid-stream failures as
  ``event: error``);
* ``tables``: constants and maps.

The same-format (observe) parts and the request-body upkeep live here too:
``passthrough`` (the stream's fact reader, the reply's facts, the mid-stream error
event and the keep-alive) and ``body`` (model limits, loop-guard tool calls and
warnings, and the usage report a stream must ask for), and ``tokens`` (the input-token
estimate behind ``count_tokens``).
"""

from __future__ import annotations

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
from .reply import (
    decode_error,
    decode_response,
    encode_error,
    encode_response,
    is_error_body,
)
from .request_decode import decode_request
from .request_encode import encode_request
from .stream_decoder import StreamDecoder
from .stream_encoder import StreamEncoder
from .tables import FORMAT
from .tokens import estimate_input_tokens

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
    "estimate_input_tokens",
    "inject_warning",
    "is_error_body",
    "output_tokens_asked",
    "request_stream_usage",
    "stream_error_event",
    "stream_watch",
    "strip_reasoning",
    "tool_calls",
]
