"""What observe mode needs from Gemini: the stream's fact reader (this format's own
decoder: every chunk is self-contained and may carry usage and the finish reason), the
complete reply's facts, the mid-stream error event and the keep-alive."""

from __future__ import annotations

from .. import jsonio
from .. import usage as usage_mod
from ..observe import COMMENT_PING, DecoderFacts
from .stream_decoder import StreamDecoder

#: Where a complete reply keeps its usage and served model, and the usage reader.
REPLY_FACTS = ("usageMetadata", "modelVersion", usage_mod.from_gemini)

#: An SSE comment (WHATWG HTML §9.2): Google's SDKs skip it.
HEARTBEAT = COMMENT_PING


def stream_watch(*, strip_usage: bool = False) -> DecoderFacts:
    """The fact reader for a Gemini stream: every event goes to the decoder."""
    return DecoderFacts(StreamDecoder(None, observe=True), None)


def stream_error_event(message: str, kind: str = "upstream_error", next_sequence: int = 0) -> bytes:
    """An error object as the last chunk (docs/protocols.md §4), CRLF-framed like the
    rest of a Gemini stream: 504 ``DEADLINE_EXCEEDED`` for a timeout, else 502
    ``UNAVAILABLE``."""
    timeout = kind == "timeout"
    return b"data: " + jsonio.dumps({"error": {
        "code": 504 if timeout else 502, "message": message,
        "status": "DEADLINE_EXCEEDED" if timeout else "UNAVAILABLE"}}) + b"\r\n\r\n"
