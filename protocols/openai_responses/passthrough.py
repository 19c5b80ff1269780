"""What observe mode needs from OpenAI Responses: the stream's fact reader (this
format's own decoder, shown only the lifecycle events), the complete reply's facts,
the mid-stream error event and the keep-alive."""

from __future__ import annotations

from .. import jsonio
from .. import usage as usage_mod
from ..observe import COMMENT_PING, DecoderFacts
from .stream_decoder import StreamDecoder

#: Where a complete reply keeps its usage and served model, and the usage reader.
REPLY_FACTS = ("usage", "model", usage_mod.from_openai_responses)

#: The events whose frames the decoder reads in observe mode (docs/protocols.md §2.5).
FACT_EVENTS = frozenset({b"response.created", b"response.queued", b"response.in_progress",
                         b"response.completed", b"response.incomplete", b"response.failed",
                         b"error"})

#: An SSE comment. A translated stream sends a repeated ``response.in_progress``
#: instead (the encoder's ``keepalive``); a forwarded stream cannot, its sequence
#: numbers are the provider's.
HEARTBEAT = COMMENT_PING


def stream_watch(*, strip_usage: bool = False) -> DecoderFacts:
    """The fact reader for a Responses stream (there is no usage to strip)."""
    return DecoderFacts(StreamDecoder(None, observe=True), FACT_EVENTS)


def stream_error_event(message: str, kind: str = "upstream_error", next_sequence: int = 0) -> bytes:
    """``event: error`` carrying the next ``sequence_number`` (docs/protocols.md §2.5,
    §2.6)."""
    return b"event: error\ndata: " + jsonio.dumps({
        "type": "error", "code": "server_error", "message": message, "param": None,
        "sequence_number": next_sequence}) + b"\n\n"
