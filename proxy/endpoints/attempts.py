"""The request as one target must receive it: wire format, body, headers, and
the protocols/ objects that map the answer back for the client.

``model_attempt`` serves every model endpoint (Chat, Responses, Anthropic
Messages, Gemini) over every provider kind, one path for all: a
``protocols.translate.Translation`` from the client's format to the one the
provider speaks (observe mode when they are the same), the body fitted to the
target model's limits, and the translation's body filter for a streamed answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from protocols.errors import ProtocolError
from protocols.ir import FORMAT_ANTHROPIC_MESSAGES, FORMAT_GEMINI
from protocols.model_limits import cap_output_tokens, strip_reasoning
from protocols.translate import Translation

from ..errors import GatewayError
from ..exchange import Attempt
from ..headers import CREDENTIAL_HEADERS, NOT_FORWARDED
from ..provider import ANTHROPIC_VERSION, Provider
from ..wire import Request


def translate_request(tr: Translation, body: dict[str, Any]) -> dict[str, Any]:
    """The upstream body, or a 400 in the client's terms naming the field."""
    try:
        return tr.request(body)
    except ProtocolError as exc:
        raise GatewayError(exc.status_hint or 400, exc.message, kind="bad_request",
                           param=exc.param) from None


def encode_body(body: dict[str, Any]) -> bytes:
    """JSON bytes for a provider; a body orjson cannot write (nested deeper than its
    255 levels, which parsing allows up to 1024) is the client's fault."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        raise GatewayError(400, f"request body cannot be forwarded: {exc}",
                           kind="bad_request") from None


def fit_to_model(provider: Provider, fmt: str, model: str,
                 body: dict[str, Any]) -> dict[str, Any]:
    """The upstream body within what ``model`` accepts (``protocols.model_limits``):
    ``body`` itself when the provider configures no limit for it."""
    cap = provider.output_cap(model)
    if cap is not None:
        body = cap_output_tokens(fmt, body, cap)
    if not provider.reasoning(model):
        body = strip_reasoning(fmt, body)
    return body


def upstream_headers(req: Request, provider: Provider, up_format: str, stream: bool,
                     is_gateway_key: Callable[[bytes], bool] = lambda _: False) -> bytes:
    """The header lines for the provider, serialised: the provider's own
    (pre-serialised once) plus the client's that may travel (``proxy.headers``).

    A ``passthrough`` provider gets the client's credentials, except a value
    that is one of the gateway's own keys: that key is for the gateway only."""
    parts = [provider.static_head]
    passthrough = provider.passthrough_auth
    foreign = provider.foreign_prefixes
    has_version = False
    for k, v in req.headers:
        if k in NOT_FORWARDED:
            if passthrough and k in CREDENTIAL_HEADERS and not _gateway_key(k, v, is_gateway_key):
                parts.append(k + b": " + v + b"\r\n")
            continue
        if k.startswith(foreign):
            continue  # another vendor's header: consumed here, never leaked across
        if k == b"anthropic-version":
            has_version = True
        parts.append(k + b": " + v + b"\r\n")
    if up_format == FORMAT_ANTHROPIC_MESSAGES and not has_version:
        parts.append(b"anthropic-version: " + ANTHROPIC_VERSION + b"\r\n")
    parts.append(b"accept: text/event-stream\r\n" if stream else b"accept: application/json\r\n")
    return b"".join(parts)


def _gateway_key(name: bytes, value: bytes, is_gateway_key: Callable[[bytes], bool]) -> bool:
    if name == b"authorization" and value[:7].lower() == b"bearer ":
        value = value[7:].strip()
    return is_gateway_key(value)


def model_attempt(req: Request, raw_body: Callable[[], bytes], body: dict[str, Any],
                  modified: bool, client_format: str, provider: Provider, upstream_model: str,
                  stream: bool, request_id: str, created: int,
                  is_gateway_key: Callable[[bytes], bool],
                  builtin_tools: str = "drop") -> Attempt:
    """The request as ``provider`` must receive it (raises GatewayError when the
    client's request cannot be expressed for this target).  Same format on both
    sides is observe mode: the client's bytes go out unchanged unless something
    (the model name, a limit, a usage report for a stream) had to change."""
    up_format = provider.upstream_format(client_format)
    tr = Translation(client_format, up_format, request_id=request_id, created=created)
    if builtin_tools != "drop" and client_format != up_format:
        tr.context.builtin_tools = builtin_tools
    up_body = translate_request(tr, body)
    if up_format != FORMAT_GEMINI and up_body.get("model") != upstream_model:
        if up_body is body:
            up_body = dict(body)
        up_body["model"] = upstream_model
    elif up_format == FORMAT_GEMINI and ("model" in up_body or "stream" in up_body):
        up_body = {k: v for k, v in up_body.items() if k != "model" and k != "stream"}
    up_body = fit_to_model(provider, up_format, upstream_model, up_body)
    unchanged = up_body is body and not modified and client_format != FORMAT_GEMINI
    payload = raw_body() if unchanged else encode_body(up_body)
    return Attempt(provider, upstream_model, provider.path(up_format, upstream_model, stream),
                   upstream_headers(req, provider, up_format, stream, is_gateway_key), payload,
                   tr.stream_filter() if stream else None, tr)
