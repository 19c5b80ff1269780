"""OpenAI Responses API wire format ⇄ IR (docs/protocols.md §2).

Four directions, all pure. This facade is the format module interface
``protocols/registry.py`` documents; the parts live in their own modules:

* ``request_decode``: ``decode_request`` (client body → ``ir.Request``: ``input`` as a
  string or an item list, ``instructions``, message items with ``input_text``/
  ``output_text``/``input_image``/``input_file`` parts, ``function_call``/
  ``function_call_output``, ``custom_tool_call``/``custom_tool_call_output`` (Codex
  ``apply_patch``), ``local_shell_call``/``local_shell_call_output``, ``reasoning``
  items, tools, flat ``tool_choice``, ``text.format``, ``reasoning``);
* ``request_encode``: ``encode_request`` (``ir.Request`` → body for a Responses upstream);
* ``reply``: complete replies, ``decode_response`` / ``encode_response`` (the
  ``response`` object, §2.4);
* ``stream_decoder``: ``StreamDecoder`` (typed ``response.*`` events → IR events);
* ``stream_encoder``: ``StreamEncoder`` (IR events → exactly the canonical grammar of
  §2.5, with the obligations of §2.7 for Codex);
* ``payload``: the reasoning payload below; ``tables``: constants and maps.

Errors (``decode_error`` / ``encode_error``) are the Chat error body (§2.6), shared in
``protocols._openai``.

Reasoning continuity across providers (§2.7, §5.8 case 11). Codex replays every
``reasoning`` item with its ``encrypted_content`` verbatim. When the reasoning came from
another provider (Anthropic thinking and its signature, redacted thinking, a Gemini
``thoughtSignature``), the encoders put a reversible payload there instead of OpenAI's
opaque blob: ``"tw1:" + base64url(JSON {"provider", "thinking", "signature"} or
{"provider", "redacted"})`` (``payload.encode_reasoning_payload``). ``decode_request`` turns
it back into an ``ir.Reasoning`` of that provider, so Anthropic gets its thinking block
back byte for byte on the next turn. OpenAI-issued ``encrypted_content`` stays an
``ir.Reasoning`` with ``provider="openai_responses"``: only an OpenAI Responses upstream
gets it, every other encoder drops it. ``encode_request`` likewise drops reasoning
issued by anyone else, since OpenAI cannot read it.

The ``local_shell`` tool (§2.3) travels to other providers as a function tool named
``local_shell`` whose parameters are the ``exec`` action; calls to it come back to the
client as ``local_shell_call`` items. Built-in tools (``web_search``, ``tool_search``,
``namespace``…) and the items they produce only make sense to an OpenAI upstream: when
``ctx`` names another upstream, ``decode_request`` raises ``UnsupportedFeature`` naming
them. An item type this module does not know at all is a ``ClientProtocolError`` naming
``input[i].type``, never a silent drop (§2.2).

Keep-alive for Responses clients: Codex resets its idle timer only on a real event, not
on SSE comments (§2.7), and ignores ``response.in_progress``. ``StreamEncoder.keepalive``
writes a repeated ``response.in_progress`` with the next ``sequence_number``; an IR
``Ping`` from the upstream produces the same event.

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
from .request_decode import decode_request
from .request_encode import encode_request
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
