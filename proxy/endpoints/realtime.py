"""``GET /v1/realtime?model=...``: the Realtime API, relayed as a WebSocket.

The upgrade request is checked (RFC 6455 §4.2.1), the key's access decided as
for any model request, and the model routed; the first target of the OpenAI
kind (the Realtime API is OpenAI's, also served by compatible servers) that
accepts the WebSocket gets the session, the others are tried in order when
one cannot be reached or answers 429/5xx.  The provider gets its own key and
never the client's credentials.  ``proxy.realtime`` relays the session.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from urllib.parse import parse_qs, quote

from protocols.ir import FORMAT_OPENAI_CHAT

from ..call import Call
from ..errors import GatewayError
from ..provider import Provider
from ..state import GatewayState
from . import REALTIME
from .access import check_access, when_admitted

log = logging.getLogger("tokenway.realtime")

CLIENT_PROTOCOL = REALTIME
# Browsers cannot set headers on a WebSocket: OpenAI's clients put the key in a
# subprotocol instead.  Such subprotocols are credentials: never forwarded.
KEY_SUBPROTOCOL = "openai-insecure-api-key."
_CREDENTIAL_SUBPROTOCOLS = (KEY_SUBPROTOCOL, "openai-organization.", "openai-project.")
# Client headers passed to the provider (the rest are the client's own, or
# credentials): the Realtime API's beta switch.
_FORWARDED = (b"openai-beta",)
MAX_SUBPROTOCOLS = 16


def subprotocols_of(value: bytes | None) -> list[str]:
    """The ``Sec-WebSocket-Protocol`` tokens, in order (RFC 6455 §11.3.4)."""
    if not value:
        return []
    out = [t.strip() for t in value.decode("latin-1").split(",")]
    return [t for t in out if t][:MAX_SUBPROTOCOLS]


def serve_realtime(state: GatewayState, call: Call) -> None:
    req = call.req
    assert req is not None
    rec = call.rec
    rec.stream = True
    try:
        if not req.upgrade or getattr(call.conn, "take_over", None) is None:
            raise GatewayError(426, "the Realtime API is a WebSocket: send 'Upgrade: websocket' "
                                    "and 'Connection: Upgrade' over HTTP/1.1",
                               kind="bad_request", code="upgrade_required")
        if b"upgrade" not in (req.header(b"connection") or b"").lower():
            raise GatewayError(400, "a WebSocket upgrade needs 'Connection: Upgrade'",
                               kind="bad_request")
        if req.header(b"sec-websocket-version") != b"13":
            raise GatewayError(426, "only WebSocket version 13 is supported "
                                    "(Sec-WebSocket-Version: 13)", kind="bad_request",
                               code="upgrade_required")
        key = (req.header(b"sec-websocket-key") or b"").strip()
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError
        except (ValueError, binascii.Error):
            raise GatewayError(400, "Sec-WebSocket-Key must be 16 bytes in base64",
                               kind="bad_request") from None
        model = call.model_of({"model": parse_qs(req.query).get("model", [None])[0]})
        admission = check_access(state, call, FORMAT_OPENAI_CHAT, model, {})
    except GatewayError as err:
        call.send_error(err)
        return
    if admission is not None:  # the key's limits are in Redis: continue once admitted
        when_admitted(call, admission, lambda: _start(state, call, model, key))
        return
    _start(state, call, model, key)


def _start(state: GatewayState, call: Call, model: str, key: bytes) -> None:
    try:
        targets = [(p, m) for p, m in state.targets_for(model) if p.kind == "openai"]
        if not targets:
            raise GatewayError(400, f"model '{model[:100]}' is routed to providers without a "
                                    "Realtime API (it needs an OpenAI-kind provider)",
                               kind="bad_request", param="model")
    except GatewayError as err:
        call.send_error(err)
        return
    call.spawn(_relay(state, call, targets, key))


async def _relay(state: GatewayState, call: Call, targets: list[tuple[Provider, str]],
                 client_key: bytes) -> None:
    try:
        await _open_session(state, call, targets, client_key)
    except asyncio.CancelledError:
        # The client left while the provider was being reached.
        if not call.finished:
            call.rec.status = 499
            call.rec.error_kind = "cancelled"
            call.finish()
        raise


async def _open_session(state: GatewayState, call: Call, targets: list[tuple[Provider, str]],
                        client_key: bytes) -> None:
    # wsproto (about 1.3 MiB) is loaded with the first Realtime session, not at start.
    from ..realtime import RealtimeRelay, RelayRefused, accept_key

    req = call.req
    assert req is not None
    rec = call.rec
    offered = subprotocols_of(req.header(b"sec-websocket-protocol"))
    forwarded = [p for p in offered if not p.startswith(_CREDENTIAL_SUBPROTOCOLS)]
    failure = "no target"
    status = 502
    for n, (provider, upstream_model) in enumerate(targets, start=1):
        rec.provider = provider.name
        rec.attempts = n
        relay = RealtimeRelay(call, state.pool, provider)
        path = (provider.base_path.decode("latin-1") + "/realtime?model="
                + quote(upstream_model, safe=""))
        try:
            accepted = await relay.open(path, _headers(state, req, provider), forwarded)
        except RelayRefused as exc:
            failure = exc.message
            log.warning("realtime via %s: %s", provider.name, exc.message,
                        extra={"request_id": rec.request_id})
            if exc.status in (0, 429) or exc.status >= 500:
                status = 503 if exc.status in (0, 429) else 502
                continue  # the next target may take it
            status = 502
            break
        chosen = accepted.subprotocol
        headers = [(b"sec-websocket-accept", accept_key(client_key)),
                   (b"x-request-id", rec.request_id.encode())]
        if chosen is not None and chosen in forwarded:
            headers.append((b"sec-websocket-protocol", chosen.encode()))
        rec.status = 101
        rec.first_byte()
        if not call.conn.take_over(relay, headers):  # type: ignore[attr-defined]
            relay.client_gone()  # the client left while the provider accepted
            return
        relay.start()
        return
    call.send_error(GatewayError(status, f"the Realtime API could not be reached: {failure}",
                                 kind="upstream_error"))


def _headers(state: GatewayState, req: object, provider: Provider) -> list[tuple[bytes, bytes]]:
    """The provider's own headers (its key), plus the client's Realtime switches;
    with ``auth = "passthrough"`` the client's own key, never a gateway key."""
    hs = [(k, v) for k, v in provider.static_headers if k != b"accept-encoding"]
    header = req.header  # type: ignore[attr-defined]
    for name in _FORWARDED:
        value = header(name)
        if value is not None:
            hs.append((name, value))
    if provider.passthrough_auth:
        auth = header(b"authorization")
        if auth is not None and auth[:7].lower() == b"bearer " \
                and not state.is_gateway_key(auth[7:].strip()):
            hs.append((b"authorization", auth))
    return hs
