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

    def openai_body(self) -> bytes:
        return openai_error_body(self.status, self.message, param=self.param, code=self.code)

    def anthropic_body(self) -> bytes:
        return anthropic_error_body(self.status, self.message)


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


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, kind="bad_request", param=param, code=code)
