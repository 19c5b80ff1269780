"""Errors the gateway raises itself, and the one way an error body is written.

Every failure answers in the client's own protocol with the right status.  The
body is never built here: ``error_reply`` turns a ``GatewayError`` into the
neutral ``ir.ApiError`` and the client format's codec encodes it
(``protocols.translate.encode_error``), so each wire format's error shape lives
in one place, its codec (docs/protocols.md §1.6, §2.6, §3.9, §4, §5.7).

An error also says who is at fault (``source``) so the ledger and the logs can
tell a bad request from a failing provider or a gateway bug.
"""

from __future__ import annotations

from protocols.ir import ApiError, ErrorKind
from protocols.registry import encode_error

# Source of a failure: who should fix it.
CLIENT = "client"
UPSTREAM = "upstream"
INTERNAL = "internal"

# The neutral class of each status the gateway answers by itself.  Other 4xx
# statuses (405, 408, 411, 415, 417, 431) are invalid requests and other 5xx
# (500, 501) server errors; the codecs keep the status of those two classes.
_KIND_OF_STATUS = {
    401: ErrorKind.AUTHENTICATION,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    413: ErrorKind.REQUEST_TOO_LARGE,
    429: ErrorKind.RATE_LIMIT,
    502: ErrorKind.UPSTREAM_PROTOCOL,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
}


class GatewayError(Exception):
    """A failure with everything needed to answer the client and fill the ledger.

    ``kind`` is the ledger's ``error_kind`` (``bad_request``, ``auth``,
    ``not_found``, ``upstream_unreachable``, ``upstream_timeout``, ...);
    ``retry_after_s`` becomes a ``Retry-After`` header.
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
        type_: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.source = source
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s
        self.type_ = type_  # the OpenAI error type, when not the status's usual one


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, kind="bad_request", param=param, code=code)


def internal_error() -> GatewayError:
    """A gateway bug: the client learns nothing about it but that it happened."""
    return GatewayError(500, "internal error in the gateway", kind="internal", source=INTERNAL)


def api_error(err: GatewayError) -> ApiError:
    """``err`` as the neutral error the codecs encode."""
    kind = _KIND_OF_STATUS.get(err.status)
    if kind is None:
        kind = ErrorKind.SERVER if err.status >= 500 else ErrorKind.INVALID_REQUEST
    return ApiError(kind=kind, message=err.message, status=err.status, type_=err.type_,
                    code=err.code, param=err.param)


def error_reply(client_format: str, err: GatewayError) -> tuple[int, bytes]:
    """Status and body for ``err``, in the client's own format.  The codec keeps
    the gateway's status: the error is in the client's own terms, not a provider's
    status crossing formats (like Anthropic's 529 for OpenAI's 503)."""
    return encode_error(client_format, api_error(err))
