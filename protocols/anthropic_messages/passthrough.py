"""What observe mode needs from Anthropic Messages: the stream's fact reader (this
format's own decoder, shown only the events that carry facts), the complete reply's
facts, the mid-stream error event and the keep-alive."""

from __future__ import annotations

from .. import jsonio
from .. import usage as usage_mod
from ..observe import DecoderFacts
from .stream_decoder import StreamDecoder

#: Where a complete reply keeps its usage and served model, and the usage reader.
REPLY_FACTS = ("usage", "model", usage_mod.from_anthropic)

#: The events whose frames the decoder reads in observe mode; the content events in
#: between carry no fact (docs/protocols.md §3.8).
FACT_EVENTS = frozenset({b"message_start", b"message_delta", b"message_stop", b"error"})

#: Anthropic's own keep-alive event (docs/protocols.md §3.8); its SDK and Claude Code
#: expect it rather than an SSE comment.
HEARTBEAT = b'event: ping\ndata: {"type": "ping"}\n\n'


def stream_watch(*, strip_usage: bool = False) -> DecoderFacts:
    """The fact reader for an Anthropic stream (there is no usage to strip)."""
    return DecoderFacts(StreamDecoder(None, observe=True), FACT_EVENTS)


def stream_error_event(message: str, kind: str = "upstream_error", next_sequence: int = 0) -> bytes:
    """``event: error`` (docs/protocols.md §3.9): ``timeout_error`` for a timeout,
    ``api_error`` for anything else; shaped as the API's own (``details`` and
    ``request_id`` null: no request id reaches this)."""
    etype = "timeout_error" if kind == "timeout" else "api_error"
    return b"event: error\ndata: " + jsonio.dumps(
        {"type": "error", "error": {"details": None, "type": etype, "message": message},
         "request_id": None}) + b"\n\n"
