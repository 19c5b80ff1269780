"""Anthropic Messages: constants and maps (stop reasons, error types, thinking budgets,
request fields the IR models, field validators in Anthropic's wording).

Section marks (§) refer to docs/protocols.md.
"""

from __future__ import annotations

import re
from functools import partial

from .. import ir
from .._fields import (
    ANTHROPIC_FIELDS,
    extras_entry,
)
from ..ir import (
    ErrorKind,
    StopReason,
)

FORMAT = ir.FORMAT_ANTHROPIC_MESSAGES

#: The Message fields the API always writes that nothing here can fill (§3.7): no
#: container tool runs behind the gateway, and ``stop_details`` is only set for a
#: ``refusal`` stop the gateway never reports. Both are null in the API's own replies then
#: (https://docs.anthropic.com/en/api/messages, "Response"). ``message_delta.delta``
#: carries the same two.
MESSAGE_NULLS: dict[str, None] = {"container": None, "stop_details": None}


def direct_caller() -> dict[str, str]:
    """A ``tool_use`` block's ``caller``: the model called the tool itself (the
    alternative, a call from inside the code execution tool, never runs here)."""
    return {"type": "direct"}

#: ``max_tokens`` is required by Anthropic and optional in OpenAI (§5.8 case 2). Used when
#: a translated request gives no cap: 8192 is the output limit of the Claude 3.5
#: generation and long enough for ordinary replies; LiteLLM defaults to 4096. Clients that
#: need more send ``max_completion_tokens`` / ``max_output_tokens`` themselves.
DEFAULT_MAX_TOKENS = 8192
#: ``thinking.budget_tokens`` must be at least 1024 (§3.5).
MIN_THINKING_BUDGET_TOKENS = 1024
#: An OpenAI-style reasoning effort becomes this thinking budget (§5.1 "reasoning"). The
#: ``none``/``minimal`` efforts turn thinking off. ``openai_chat`` maps budgets back with
#: thresholds between these values, so a round trip keeps the effort.
EFFORT_BUDGET_TOKENS = {
    "none": 0,
    "minimal": 0,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 65536,
}
#: Anthropic accepts ``temperature`` in 0–1; higher values are clamped to 1, as
#: Anthropic's own OpenAI compatibility layer does (§5.8 case 3).
MAX_TEMPERATURE = 1.0
#: With thinking on, ``top_p`` may only be 0.95–1 (§3.5); other values are dropped.
THINKING_MIN_TOP_P = 0.95
#: Tool names: ``^[a-zA-Z0-9_-]{1,128}$`` in the Messages API tool schema.
MAX_TOOL_NAME_CHARS = 128
#: Image media types Anthropic accepts (§3.3, §5.8 case 10).
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
#: Appended as a system instruction for ``response_format: json_object``, which has no
#: exact Anthropic equivalent (§5.8 case 12).
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
_HASH_CHARS = 8

_ID_OK = re.compile(r"[a-zA-Z0-9_-]+")
_NAME_OK = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_BAD_CHAR = re.compile(r"[^a-zA-Z0-9_-]")

_MODELED = frozenset(
    {
        "model", "messages", "system", "max_tokens", "stop_sequences", "temperature",
        "top_p", "top_k", "stream", "tools", "tool_choice", "thinking", "metadata",
        "output_config",
    }
)

_STOP_FROM_WIRE = {
    "end_turn": StopReason.END_TURN,
    "max_tokens": StopReason.MAX_TOKENS,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "tool_use": StopReason.TOOL_USE,
    "pause_turn": StopReason.PAUSE,
    "refusal": StopReason.CONTENT_FILTER,
    "model_context_window_exceeded": StopReason.CONTEXT_WINDOW,
}
_STOP_TO_WIRE = {
    StopReason.END_TURN: "end_turn",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.STOP_SEQUENCE: "stop_sequence",
    StopReason.TOOL_USE: "tool_use",
    StopReason.PAUSE: "pause_turn",
    StopReason.CONTENT_FILTER: "refusal",
    StopReason.CONTEXT_WINDOW: "model_context_window_exceeded",
    StopReason.ERROR: "end_turn",
}

# §3.9 / §5.7: error kind -> (status, error.type).
_KIND_TO_ERROR: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_REQUEST: (400, "invalid_request_error"),
    ErrorKind.AUTHENTICATION: (401, "authentication_error"),
    ErrorKind.QUOTA: (402, "billing_error"),
    ErrorKind.PERMISSION: (403, "permission_error"),
    ErrorKind.NOT_FOUND: (404, "not_found_error"),
    ErrorKind.REQUEST_TOO_LARGE: (413, "request_too_large"),
    ErrorKind.RATE_LIMIT: (429, "rate_limit_error"),
    ErrorKind.SERVER: (500, "api_error"),
    ErrorKind.UPSTREAM_PROTOCOL: (502, "api_error"),
    ErrorKind.TIMEOUT: (504, "timeout_error"),
    # An OpenAI 503 reaches an Anthropic client as 529 overloaded_error (§5.7 notes).
    ErrorKind.OVERLOADED: (529, "overloaded_error"),
}
_TYPE_TO_KIND = {
    "invalid_request_error": ErrorKind.INVALID_REQUEST,
    "authentication_error": ErrorKind.AUTHENTICATION,
    "billing_error": ErrorKind.QUOTA,
    "permission_error": ErrorKind.PERMISSION,
    "not_found_error": ErrorKind.NOT_FOUND,
    "request_too_large": ErrorKind.REQUEST_TOO_LARGE,
    "rate_limit_error": ErrorKind.RATE_LIMIT,
    "api_error": ErrorKind.SERVER,
    "timeout_error": ErrorKind.TIMEOUT,
    "overloaded_error": ErrorKind.OVERLOADED,
}
_STATUS_TO_KIND = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.AUTHENTICATION,
    402: ErrorKind.QUOTA,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    413: ErrorKind.REQUEST_TOO_LARGE,
    429: ErrorKind.RATE_LIMIT,
    500: ErrorKind.SERVER,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.OVERLOADED,
}


# ---------------------------------------------------------------------------------------
# Validation helpers (client side: ClientProtocolError naming the param)
# ---------------------------------------------------------------------------------------


_bad, _missing = ANTHROPIC_FIELDS.bad, ANTHROPIC_FIELDS.missing
_str, _dict, _list = ANTHROPIC_FIELDS.string, ANTHROPIC_FIELDS.object, ANTHROPIC_FIELDS.array
_num, _int, _bool = ANTHROPIC_FIELDS.number, ANTHROPIC_FIELDS.integer, ANTHROPIC_FIELDS.boolean


#: ``_rest(obj, known, hints=None)``: the fields of ``obj`` outside ``known`` as this
#: format's extras (``_fields.extras_entry``).
_rest = partial(extras_entry, FORMAT)
