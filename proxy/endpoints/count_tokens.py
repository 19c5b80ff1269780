"""``POST /v1/messages/count_tokens``: answered locally and cheaply, never billed.

When the model routes to an Anthropic provider whose ``count_tokens`` setting
is ``upstream`` (the default for that kind), the provider's own endpoint gives
the exact figure; otherwise the gateway estimates (``protocols.tokens``).  The
ledger row carries no token counts: counting is not inference.
"""

from __future__ import annotations

from protocols.ir import FORMAT_ANTHROPIC_MESSAGES
from protocols.tokens import estimate_input_tokens
from protocols.translate import Translation

from .. import loopback
from ..call import Call
from ..errors import GatewayError, bad_request
from ..exchange import Attempt, ProxyExchange
from ..state import GatewayState
from .access import require_model
from .attempts import encode_body, upstream_headers

CLIENT_PROTOCOL = "anthropic_count_tokens"


def serve_count_tokens(state: GatewayState, call: Call) -> None:
    rec = call.rec
    req = call.req
    assert req is not None
    try:
        body = call.json_body()
        model = call.model_of(body)
        require_model(call, model)
        if type(body.get("messages")) is not list:
            raise bad_request("messages: field required (a list of messages)",
                              param="messages")
        provider = upstream_model = None
        if model != loopback.LOOPBACK_MODEL or not state.router.loopback:
            provider, upstream_model = state.targets_for(model)[0]
        if not (provider is not None and upstream_model is not None
                and provider.kind == "anthropic" and provider.config.count_tokens == "upstream"):
            rec.provider = "local"
            call.send_json({"input_tokens": estimate_input_tokens(FORMAT_ANTHROPIC_MESSAGES, body)})
            return
        rec.provider = provider.name
        rec.served_model = upstream_model
        payload = call.forwardable_body()
        if upstream_model != model:
            body["model"] = upstream_model
            payload = encode_body(body)
    except GatewayError as err:
        call.send_error(err)
        return
    headers = upstream_headers(req, provider, FORMAT_ANTHROPIC_MESSAGES, False,
                               state.is_gateway_key)
    # The provider's answer passes through as it is (observe mode): only its
    # errors need the client's shape, and there is no usage to record.
    reply = Translation(FORMAT_ANTHROPIC_MESSAGES, FORMAT_ANTHROPIC_MESSAGES,
                        request_id=rec.request_id, created=0)
    att = Attempt(provider, upstream_model, provider.count_tokens_path(), headers,
                  payload, None, reply, metered=False)
    ProxyExchange(call, state.upstreams, [(provider, upstream_model)],
                  lambda p, m: att, stream=False).start()
