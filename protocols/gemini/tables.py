"""Gemini: constants and maps (finish reasons, RPC status names, thinking budgets,
request fields the IR models) and the small helpers every part uses (extras, synthesised
tool-call ids, function names).

Section marks (§) refer to docs/protocols.md.
"""

from __future__ import annotations

import re
from typing import Any

from .. import ir
from .._fields import GEMINI_FIELDS, sha256_hex
from ..ir import (
    ErrorKind,
    StopReason,
)

FORMAT = ir.FORMAT_GEMINI

#: ``generationConfig.stopSequences`` holds at most five entries (§5.8 case 13).
MAX_STOP_SEQUENCES = 5
#: Function names: a letter or ``_`` first, then letters, digits, ``_.:-``, at most 64
#: characters (``FunctionDeclaration.name`` in the Gemini API reference).
MAX_TOOL_NAME_CHARS = 64
#: Synthesised tool-call ids: ``call_`` + 24 hex characters = 29 characters, within the
#: 40 OpenAI accepts and matching Anthropic's ``^[a-zA-Z0-9_-]+$`` (§4, §5.3).
SYNTH_ID_PREFIX = "call_"
_SYNTH_ID_CHARS = 24
#: An OpenAI-style effort becomes this ``thinkingBudget``; the values follow
#: ``anthropic_messages.EFFORT_BUDGET_TOKENS`` so a round trip keeps the effort, capped at
#: 24576, the largest budget Gemini 2.5 Flash accepts. ``none``/``minimal`` turn it off.
EFFORT_THINKING_BUDGET = {
    "none": 0,
    "minimal": 0,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
    "max": 24576,
}

_NAME_OK = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}")
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.:-]")
_HASH_CHARS = 8

_MODELED = frozenset(
    {"model", "stream", "contents", "systemInstruction", "tools", "toolConfig",
     "generationConfig"})
_GEN_MODELED = frozenset(
    {"temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "responseMimeType",
     "responseSchema", "responseJsonSchema", "thinkingConfig"})

_FINISH_TO_STOP = {
    "STOP": StopReason.END_TURN,
    "MAX_TOKENS": StopReason.MAX_TOKENS,
    "SAFETY": StopReason.CONTENT_FILTER,
    "RECITATION": StopReason.CONTENT_FILTER,
    "LANGUAGE": StopReason.CONTENT_FILTER,
    "BLOCKLIST": StopReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": StopReason.CONTENT_FILTER,
    "SPII": StopReason.CONTENT_FILTER,
    "IMAGE_SAFETY": StopReason.CONTENT_FILTER,
    "MALFORMED_FUNCTION_CALL": StopReason.ERROR,
    "UNEXPECTED_TOOL_CALL": StopReason.ERROR,
    "TOO_MANY_TOOL_CALLS": StopReason.ERROR,
    "OTHER": StopReason.END_TURN,
    "FINISH_REASON_UNSPECIFIED": StopReason.END_TURN,
}
_STOP_TO_FINISH = {
    StopReason.END_TURN: "STOP",
    StopReason.STOP_SEQUENCE: "STOP",
    StopReason.TOOL_USE: "STOP",
    StopReason.PAUSE: "STOP",
    StopReason.MAX_TOKENS: "MAX_TOKENS",
    StopReason.CONTEXT_WINDOW: "MAX_TOKENS",
    StopReason.CONTENT_FILTER: "SAFETY",
    StopReason.ERROR: "OTHER",
}

# Google RPC status name ⇄ HTTP code (google.rpc.Code, §4 "Errors", §5.7).
_STATUS_HTTP = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500,
}
_STATUS_KIND = {
    "INVALID_ARGUMENT": ErrorKind.INVALID_REQUEST,
    "FAILED_PRECONDITION": ErrorKind.INVALID_REQUEST,
    "OUT_OF_RANGE": ErrorKind.INVALID_REQUEST,
    "ALREADY_EXISTS": ErrorKind.INVALID_REQUEST,
    "ABORTED": ErrorKind.SERVER,
    "UNAUTHENTICATED": ErrorKind.AUTHENTICATION,
    "PERMISSION_DENIED": ErrorKind.PERMISSION,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "RESOURCE_EXHAUSTED": ErrorKind.RATE_LIMIT,
    "INTERNAL": ErrorKind.SERVER,
    "UNKNOWN": ErrorKind.SERVER,
    "DATA_LOSS": ErrorKind.SERVER,
    "UNIMPLEMENTED": ErrorKind.INVALID_REQUEST,
    "CANCELLED": ErrorKind.SERVER,
    "UNAVAILABLE": ErrorKind.OVERLOADED,
    "DEADLINE_EXCEEDED": ErrorKind.TIMEOUT,
}
_HTTP_KIND = {
    400: ErrorKind.INVALID_REQUEST, 401: ErrorKind.AUTHENTICATION, 403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND, 413: ErrorKind.REQUEST_TOO_LARGE, 429: ErrorKind.RATE_LIMIT,
    500: ErrorKind.SERVER, 502: ErrorKind.UPSTREAM_PROTOCOL, 503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
}
_KIND_STATUS: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_REQUEST: (400, "INVALID_ARGUMENT"),
    ErrorKind.AUTHENTICATION: (401, "UNAUTHENTICATED"),
    ErrorKind.PERMISSION: (403, "PERMISSION_DENIED"),
    ErrorKind.NOT_FOUND: (404, "NOT_FOUND"),
    ErrorKind.REQUEST_TOO_LARGE: (400, "INVALID_ARGUMENT"),
    ErrorKind.RATE_LIMIT: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.QUOTA: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.OVERLOADED: (503, "UNAVAILABLE"),
    ErrorKind.SERVER: (500, "INTERNAL"),
    ErrorKind.TIMEOUT: (504, "DEADLINE_EXCEEDED"),
    # No RPC status means "bad gateway"; 502 keeps the gateway's meaning (the provider
    # broke its protocol) and UNAVAILABLE tells Google clients to retry.
    ErrorKind.UPSTREAM_PROTOCOL: (502, "UNAVAILABLE"),
}


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


_bad, _missing = GEMINI_FIELDS.bad, GEMINI_FIELDS.missing
_str, _dict, _list = GEMINI_FIELDS.string, GEMINI_FIELDS.object, GEMINI_FIELDS.array
_num, _int, _bool = GEMINI_FIELDS.number, GEMINI_FIELDS.integer, GEMINI_FIELDS.boolean


def _ex(fields: dict[str, Any]) -> ir.Extras:
    return {FORMAT: fields} if fields else None


def _own(obj: Any) -> dict[str, Any]:
    return ir.extras_for(obj, FORMAT)


def synth_tool_id(seed: str, ordinal: int, name: str) -> str:
    """A deterministic tool-call id for a ``functionCall`` without one (§4): ``call_`` +
    24 hex characters of SHA-256 over ``seed``, ``ordinal`` and ``name``."""
    return SYNTH_ID_PREFIX + sha256_hex(f"{seed}\x00{ordinal}\x00{name}")[:_SYNTH_ID_CHARS]


def wire_tool_name(name: str, names: dict[str, str] | None = None) -> str:
    """A function name Gemini accepts; ``names`` receives the reverse mapping (wire name
    → original) so replies carry the client's names again (§5.3)."""
    if _NAME_OK.fullmatch(name):
        return name
    clean = _NAME_BAD.sub("_", name)
    if not clean or not (clean[0].isalpha() or clean[0] == "_"):
        clean = "_" + clean
    wire = f"{clean[: MAX_TOOL_NAME_CHARS - _HASH_CHARS - 1]}_{sha256_hex(name)[:_HASH_CHARS]}"
    if names is not None:
        names[wire] = name
    return wire
