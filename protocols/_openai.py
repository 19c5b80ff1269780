"""What OpenAI Chat Completions and OpenAI Responses share: tool-call id and function
name wiring, data URLs, the effort/budget ladder, and the error body
(``{"error": {message, type, param, code}}``, docs/protocols.md §1.6, §2.6)."""

from __future__ import annotations

import re
from typing import Any

from . import ir, jsonio
from ._fields import sha256_hex
from .ir import (
    ApiError,
    ErrorKind,
)

#: OpenAI rejects longer tool-call ids with 400 ``string_above_max_length`` (§1.3).
MAX_TOOL_ID_CHARS = 40
#: Function names: ``[a-zA-Z0-9_-]``, at most 64 characters (§1.2, §5.3).
MAX_TOOL_NAME_CHARS = 64
#: Hash characters appended when an id or name has to be shortened; 8 hex digits keep
#: accidental collisions below 1 in 4 billion per pair.
_HASH_CHARS = 8

_NAME_OK = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NAME_BAD_CHAR = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL = re.compile(r"data:([^;,]+)?(?:;[^,]*)?;base64,(.*)", re.S)

# Error kinds ⇄ OpenAI error bodies (§1.6, §5.7): kind -> (status, type, code).
_KIND_TO_ERROR: dict[ErrorKind, tuple[int, str, str | None]] = {
    ErrorKind.INVALID_REQUEST: (400, "invalid_request_error", None),
    ErrorKind.AUTHENTICATION: (401, "invalid_request_error", "invalid_api_key"),
    ErrorKind.PERMISSION: (403, "permission_error", None),
    ErrorKind.NOT_FOUND: (404, "invalid_request_error", "not_found"),
    ErrorKind.REQUEST_TOO_LARGE: (413, "invalid_request_error", "request_too_large"),
    ErrorKind.RATE_LIMIT: (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    ErrorKind.QUOTA: (429, "insufficient_quota", "insufficient_quota"),
    # An Anthropic 529 reaches an OpenAI client as 503 (§5.7 notes).
    ErrorKind.OVERLOADED: (503, "server_error", "server_is_overloaded"),
    ErrorKind.SERVER: (500, "server_error", None),
    ErrorKind.TIMEOUT: (504, "server_error", "timeout"),
    ErrorKind.UPSTREAM_PROTOCOL: (502, "server_error", "bad_gateway"),
}

_STATUS_TO_KIND = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.AUTHENTICATION,
    402: ErrorKind.QUOTA,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.REQUEST_TOO_LARGE,
    429: ErrorKind.RATE_LIMIT,
    500: ErrorKind.SERVER,
    502: ErrorKind.SERVER,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.OVERLOADED,
}


def _digest(text: str) -> str:
    return sha256_hex(text)[:_HASH_CHARS]


# ---------------------------------------------------------------------------------------
# Ids and names (§5.3): deterministic, so the same input maps the same way in every request
# ---------------------------------------------------------------------------------------


def wire_tool_id(tool_id: str) -> str:
    """A tool-call id OpenAI accepts (≤ 40 characters, §1.3).

    Shortening keeps a prefix and appends a hash of the whole id, so the mapping is
    deterministic: a ``tool_use`` id and its ``tool_result`` id always agree, in this
    request and the next.
    """
    if len(tool_id) <= MAX_TOOL_ID_CHARS:
        return tool_id
    keep = MAX_TOOL_ID_CHARS - _HASH_CHARS - 1
    return f"{tool_id[:keep]}_{_digest(tool_id)}"


def wire_tool_name(name: str, names: dict[str, str] | None = None) -> str:
    """A function name OpenAI accepts (``[a-zA-Z0-9_-]{1,64}``, §5.3).

    Invalid characters become ``_``; a name that had to change gets a hash suffix (so two
    names cannot collide) and is cut to 64 characters. ``names`` (the translation's
    ``Context.tool_names``) receives ``wire name -> original name`` for the way back.
    """
    if _NAME_OK.fullmatch(name):
        return name
    cleaned = _NAME_BAD_CHAR.sub("_", name)
    keep = MAX_TOOL_NAME_CHARS - _HASH_CHARS - 1
    wire = f"{cleaned[:keep]}_{_digest(name)}"
    if names is not None:
        names[wire] = name
    return wire


def _data_url(media_type: str | None, data: str) -> str:
    return f"data:{media_type or 'application/octet-stream'};base64,{data}"


# Budget → effort when only an Anthropic/Gemini token budget is known. The thresholds are
# the Anthropic budgets ``anthropic_messages`` uses for each effort, so a round trip
# through both keeps the effort.
_BUDGET_EFFORTS = ((2048, "low"), (12288, "medium"))


def _budget_to_effort(budget: int | None) -> str | None:
    if budget is None:
        return None
    for limit, effort in _BUDGET_EFFORTS:
        if budget <= limit:
            return effort
    return "high"


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def _kind_for(status: int, etype: Any, code: Any) -> ErrorKind:
    if code == "insufficient_quota" or etype == "insufficient_quota":
        return ErrorKind.QUOTA
    if code in ("server_is_overloaded", "slow_down"):
        return ErrorKind.OVERLOADED
    if code == "rate_limit_exceeded":
        return ErrorKind.RATE_LIMIT
    kind = _STATUS_TO_KIND.get(status)
    if kind is not None:
        return kind
    if etype == "server_error":
        return ErrorKind.SERVER
    if 400 <= status < 500:
        return ErrorKind.INVALID_REQUEST
    return ErrorKind.SERVER


def _error_fields(err: Any) -> tuple[str, Any, Any, Any]:
    if type(err) is not dict:
        return (str(err), None, None, None)
    msg = err.get("message")
    return (msg if type(msg) is str else str(msg or ""), err.get("type"), err.get("code"),
            err.get("param"))


def decode_error(status: int, body: bytes) -> ApiError:
    """An upstream error reply (status + body) as an ``ApiError``; tolerant of non-JSON
    bodies (an HTML page from a load balancer becomes the message)."""
    try:
        obj = jsonio.loads(body) if body else None
    except jsonio.JSONDecodeError:
        obj = None
    if type(obj) is dict and "error" in obj:
        message, etype, code, param = _error_fields(obj["error"])
    else:
        message = body[:500].decode("utf-8", "replace").strip() or f"HTTP {status}"
        etype = code = param = None
    return ApiError(
        kind=_kind_for(status, etype, code),
        message=message,
        status=status,
        type_=etype if type(etype) is str else None,
        code=code if type(code) is str else None,
        param=param if type(param) is str else None,
    )


def _error_object(kind: ErrorKind, message: str, type_: str | None, code: str | None,
                  param: str | None, own: bool) -> tuple[int, dict[str, Any]]:
    status, etype, ecode = _KIND_TO_ERROR[kind]
    if own:
        etype = type_ or etype
        ecode = code if code is not None else ecode
    return status, {"error": {"message": message, "type": etype, "param": param, "code": ecode}}


def encode_error(err: ApiError, source_format: str | None = None) -> tuple[int, bytes]:
    """Status and body for a Chat client. An error already in OpenAI's terms
    (``source_format`` an OpenAI format: an OpenAI upstream's, or the gateway's own for
    an OpenAI client) keeps its status and its type/code strings; otherwise the status
    is the source's when it is in the same class as the kind's canonical one."""
    own = source_format in (ir.FORMAT_OPENAI_CHAT, ir.FORMAT_OPENAI_RESPONSES)
    status, obj = _error_object(err.kind, err.message, err.type_, err.code, err.param, own)
    if own or (err.kind in (ErrorKind.INVALID_REQUEST, ErrorKind.SERVER)
               and err.status // 100 == status // 100):
        status = err.status
    return status, jsonio.dumps(obj)


def is_error_body(body: bytes) -> bool:
    """Whether ``body`` is OpenAI's own error shape: a JSON object whose ``error`` is an
    object."""
    try:
        obj = jsonio.loads(body) if body else None
    except jsonio.JSONDecodeError:
        return False
    return type(obj) is dict and type(obj.get("error")) is dict
