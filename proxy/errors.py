"""Errors the gateway itself raises, and their wire bodies in each client protocol.

Every failure answers in the client's own error format with the right status
(OpenAI: ``{"error":{"message","type","param","code"}}``, protocols.md §1.6;
Anthropic: ``{"type":"error","error":{"type","message"}}``, §3.9).  An error
also says who is at fault (``source``) so the ledger and logs can tell a bad
request from a failing provider.
"""

from __future__ import annotations

import orjson

# Source of a failure (pingora's ErrorSource): who should fix it.
CLIENT = "client"
UPSTREAM = "upstream"
INTERNAL = "internal"

# Error body formats: the client protocol family decides the shape.
OPENAI = "openai"
ANTHROPIC = "anthropic"
GEMINI = "gemini"

# OpenAI error ``type`` for each status we produce ourselves.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "timeout_error",
    411: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    499: "cancelled",
    500: "server_error",
    501: "invalid_request_error",
    502: "upstream_error",
    503: "server_error",
    504: "timeout_error",
}

# Anthropic error ``type`` per status (protocols.md §3.9).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class GatewayError(Exception):
    """A failure with everything needed to answer the client and fill the ledger.

    ``kind`` is the ledger's ``error_kind`` (``bad_request``, ``auth``,
    ``not_found``, ``upstream_unreachable``, ``upstream_timeout``, ...).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str,
        source: str = CLIENT,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.source = source
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def body(self, fmt: str) -> bytes:
        return error_body(fmt, self.status, self.message, param=self.param, code=self.code)


def openai_error_object(
    status: int, message: str, *, param: str | None = None, code: str | None = None,
    type_: str | None = None,
) -> dict:
    return {
        "message": message,
        "type": type_ or _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": param,
        "code": code,
    }


def openai_error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None,
    type_: str | None = None,
) -> bytes:
    return orjson.dumps(
        {"error": openai_error_object(status, message, param=param, code=code, type_=type_)}
    )


def anthropic_error_body(status: int, message: str, *, type_: str | None = None) -> bytes:
    kind = type_ or _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


# Google RPC status names (protocols.md §4, "Errors").
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}


def gemini_error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"error": {
        "code": status, "message": message,
        "status": _GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"),
    }})


def error_body(fmt: str, status: int, message: str, *, param: str | None = None,
               code: str | None = None) -> bytes:
    """The error body for ``status`` in the client's own format."""
    if fmt == ANTHROPIC:
        return anthropic_error_body(status, message)
    if fmt == GEMINI:
        return gemini_error_body(status, message)
    return openai_error_body(status, message, param=param, code=code)


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, kind="bad_request", param=param, code=code)
