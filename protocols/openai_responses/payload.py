"""Reasoning continuity (docs/protocols.md §2.7): reasoning issued by another provider
travels through a Responses client as an opaque ``encrypted_content`` blob."""

from __future__ import annotations

import base64
from typing import Any

from .. import jsonio
from ..ir import (
    Reasoning,
)
from .tables import FORMAT, REASONING_PAYLOAD_PREFIX, _bad

# ---------------------------------------------------------------------------------------
# Reasoning payloads (§2.7, §5.8 case 11)
# ---------------------------------------------------------------------------------------


def encode_reasoning_payload(r: Reasoning, provider: str | None = None) -> str | None:
    """The ``encrypted_content`` for reasoning issued by another provider, or ``None``
    when there is nothing opaque to carry (reasoning text alone needs no payload).

    ``"tw1:" + base64url(JSON)`` without padding; the JSON is ``{"provider", "thinking",
    "signature"}`` or ``{"provider", "redacted"}``. Deterministic, so a decoded payload
    re-encodes to the same string.
    """
    provider = provider or r.provider
    if provider is None or provider == FORMAT:
        return None
    if r.redacted_data is not None:
        obj: dict[str, Any] = {"provider": provider, "redacted": r.redacted_data}
    elif r.signature:
        obj = {"provider": provider, "thinking": r.text, "signature": r.signature}
    else:
        return None
    raw = base64.urlsafe_b64encode(jsonio.dumps(obj)).rstrip(b"=")
    return REASONING_PAYLOAD_PREFIX + raw.decode("ascii")


def decode_reasoning_payload(value: str, param: str = "encrypted_content") -> dict[str, Any] | None:
    """The payload of a ``tw1:`` value (``None`` for any other string, i.e. OpenAI's own).

    Raises ``ClientProtocolError`` naming ``param`` when the prefix is there but the rest
    is not a payload this gateway wrote.
    """
    if not value.startswith(REASONING_PAYLOAD_PREFIX):
        return None
    body = value[len(REASONING_PAYLOAD_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        obj = jsonio.loads(raw)
    except (ValueError, TypeError):
        raise _bad(param, "not a reasoning payload issued by this gateway.") from None
    if (type(obj) is not dict or type(obj.get("provider")) is not str
            or not all(type(obj.get(k)) in (str, type(None))
                       for k in ("thinking", "signature", "redacted"))):
        raise _bad(param, "not a reasoning payload issued by this gateway.")
    return obj
