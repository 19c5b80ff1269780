"""tokenway wire formats and translators: pure, sans-IO (bytes and dicts in, bytes and events out).

Public surface: ``Translation`` (one request's translation between a client format and an
upstream format), the intermediate representation in ``protocols.ir``, the SSE codec in
``protocols.sse`` and the errors in ``protocols.errors``.  Nothing here does I/O; time and
ids are inputs.
"""

from . import ir
from .errors import (
    BufferLimitExceeded,
    ClientProtocolError,
    ProtocolError,
    UnsupportedFeature,
    UpstreamProtocolError,
)
from .ir import (
    FORMAT_ANTHROPIC_MESSAGES,
    FORMAT_GEMINI,
    FORMAT_OPENAI_CHAT,
    FORMAT_OPENAI_RESPONSES,
    ApiError,
    Context,
    ErrorKind,
    Request,
    Response,
    StopReason,
    Usage,
)
from .translate import FORMAT_MODULES, Translation, format_module

__all__ = [
    "FORMAT_ANTHROPIC_MESSAGES",
    "FORMAT_GEMINI",
    "FORMAT_MODULES",
    "FORMAT_OPENAI_CHAT",
    "FORMAT_OPENAI_RESPONSES",
    "ApiError",
    "BufferLimitExceeded",
    "ClientProtocolError",
    "Context",
    "ErrorKind",
    "ProtocolError",
    "Request",
    "Response",
    "StopReason",
    "UnsupportedFeature",
    "UpstreamProtocolError",
    "Usage",
    "Translation",
    "format_module",
    "ir",
]
