"""tokenway wire formats and translators: pure, sans-IO (bytes and dicts in, bytes and events out).

Public surface: ``Translation`` (one request's translation between a client format and an
upstream format: request, reply, error and ``stream_filter()``, the same interface in
observe and translated mode), the format registry in ``protocols.registry``
(``format_module``, ``encode_error``), the intermediate representation in
``protocols.ir`` and the errors in ``protocols.errors``.  Each wire format is a package
(``protocols/<format>/``).  Nothing here does I/O; time and ids are inputs.
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
from .registry import FORMAT_MODULES, encode_error, format_module
from .translate import Translation

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
    "encode_error",
    "format_module",
    "ir",
]
