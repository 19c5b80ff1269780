"""Another provider's reasoning carried through Gemini as a ``thoughtSignature``
(docs/protocols.md §2.7, §4)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .. import jsonio

# Marks a thoughtSignature written by this gateway for another provider's reasoning.
_PAYLOAD_PREFIX = b"tw1:"


def _payload_signature(provider: str, text: str, signature: str | None,
                       redacted: str | None) -> str:
    """Another provider's reasoning as a ``thoughtSignature`` (base64, as the field is
    bytes in Google's SDKs, so it survives their decode and re-encode)."""
    obj: dict[str, Any] = {"provider": provider}
    if redacted is not None:
        obj["redacted"] = redacted
    else:
        obj["thinking"] = text
        obj["signature"] = signature
    return base64.b64encode(_PAYLOAD_PREFIX + jsonio.dumps(obj)).decode("ascii")


def _read_payload(sig: str) -> dict[str, Any] | None:
    """The payload in a ``thoughtSignature`` this gateway wrote, else ``None``."""
    if not sig.startswith("dHcxO"):  # base64 of "tw1:"
        return None
    try:
        raw = base64.b64decode(sig, validate=True)
        if not raw.startswith(_PAYLOAD_PREFIX):
            return None
        obj = jsonio.loads(raw[len(_PAYLOAD_PREFIX):])
    except (ValueError, binascii.Error):
        return None
    if type(obj) is not dict or type(obj.get("provider")) is not str:
        return None
    return obj
