"""Gemini ``generateContent`` / ``streamGenerateContent?alt=sse`` wire format ⇄ IR
(docs/protocols.md §4, mapping §5).

This facade is the format module interface ``protocols/registry.py`` documents; the
parts live in their own modules:

* ``request_decode``: ``decode_request`` (client body → ``ir.Request``: ``contents`` with
  ``user``/``model`` turns and ``text``/``inlineData``/``fileData``/``functionCall``/
  ``functionResponse``/thought parts with ``thoughtSignature``, ``systemInstruction``,
  ``tools[].functionDeclarations``, ``toolConfig``, ``generationConfig`` with
  ``thinkingConfig``);
* ``request_encode``: ``encode_request`` (``ir.Request`` → body for a Gemini upstream:
  system text hoisted, turns merged to alternate, tool schemas cut down by ``schema`` to
  the subset the ``parameters`` field accepts, at most five stop sequences);
* ``reply``: complete replies, ``decode_response`` / ``encode_response``
  (``usageMetadata`` per §5.5, ``finishReason`` per §5.4, ``promptFeedback.blockReason``
  → content filter), and errors, ``decode_error`` / ``encode_error`` (Google RPC status
  bodies ⇄ HTTP codes);
* ``stream_decoder``: ``StreamDecoder`` (data-only SSE, CRLF or LF; cumulative
  ``usageMetadata``: the last one wins, never summed; each whole ``functionCall`` part →
  block start, one argument delta, block stop);
* ``stream_encoder``: ``StreamEncoder`` (data-only frames, each a
  ``GenerateContentResponse`` holding only the new parts; ``finishReason`` and usage on
  the last one);
* ``schema``: JSON Schema ⇄ Gemini ``Schema``; ``payload``: reasoning of other
  providers in a ``thoughtSignature``; ``tables``: constants, maps and small helpers.

The model and the streaming flag live in the URL on this API (``/v1beta/models/{model}
:streamGenerateContent?alt=sse``), not in the body. ``decode_request`` therefore reads
two keys the gateway adds to the client's body from the path it routed: ``"model"`` and
``"stream"`` (both optional). ``encode_request`` returns the body only; the gateway builds
the upstream URL from its route (``request_encode.request_path`` gives the same path).

Tool-call ids: ``functionCall.id`` is often absent (§4). Missing ids are synthesised as
``call_`` + 24 hex characters of a SHA-256 over where the call sits (the conversation
position in a request; the response id and the call's ordinal in a reply), so the same
history always yields the same ids, and ``functionResponse`` parts without an id are
matched back by name and order to the calls of the preceding model turn. Requests sent
to Gemini leave out ids Gemini did not issue and rely on the same name-and-order rule.

Thought signatures: a ``thoughtSignature`` on a ``thought`` part is that reasoning
block's signature; one on any other part (Gemini puts it on the first ``functionCall``
of a turn) becomes a reasoning block with an empty text just before that part, and the
encoder puts it back on the part that follows. Reasoning issued by another provider
(Anthropic thinking) travels to a Gemini client as a thought part whose
``thoughtSignature`` is a base64 payload (``tw1:`` + JSON, the scheme of
``openai_responses``), so it comes back intact on the next turn.

The same-format (observe) parts and the request-body upkeep live here too:
``passthrough`` (the stream's fact reader, the reply's facts, the mid-stream error
event and the keep-alive) and ``body`` (model limits, loop-guard tool calls and
warnings, and the usage report a stream must ask for).
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
