"""``POST /v1/messages/count_tokens``: answered locally and cheaply, never billed.

When the model's route has Anthropic targets whose ``count_tokens`` setting is
``upstream`` (the default for that kind), their own endpoint gives the exact
figure, tried in the route's order with the retries and circuit breaker of
every model request; a route without such a target is estimated by the
gateway (``protocols.tokens``).  The
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
from ..provider import Provider
from ..state import GatewayState
from . import COUNT_TOKENS
from .access import require_model
from .attempts import encode_body, upstream_headers

CLIENT_PROTOCOL = COUNT_TOKENS


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
        # The route's targets that can count exactly, in failover order.
        targets: list[tuple[Provider, str]] = []
        if model != loopback.LOOPBACK_MODEL or not state.router.loopback:
            targets = [(p, m) for p, m in state.targets_for(model)
                       if p.kind == "anthropic" and p.config.count_tokens == "upstream"]
        if not targets:
            rec.provider = "local"
            call.send_json({"input_tokens": estimate_input_tokens(FORMAT_ANTHROPIC_MESSAGES, body)})
            return
    except GatewayError as err:
        call.send_error(err)
        return
    headers: dict[str, bytes] = {}

    def build(provider: Provider, upstream_model: str) -> Attempt:
        payload = call.forwardable_body() if upstream_model == model \
            else encode_body({**body, "model": upstream_model})
        hs = headers.get(provider.name)
        if hs is None:
            hs = headers[provider.name] = upstream_headers(
                req, provider, FORMAT_ANTHROPIC_MESSAGES, False, state.is_gateway_key)
        # The provider's answer passes through as it is (observe mode): only its
        # errors need the client's shape, and there is no usage to record.
        reply = Translation(FORMAT_ANTHROPIC_MESSAGES, FORMAT_ANTHROPIC_MESSAGES,
                            request_id=rec.request_id, created=0)
        return Attempt(provider, upstream_model, provider.count_tokens_path(), hs,
                       payload, None, reply, metered=False)

    ProxyExchange(call, state.upstreams, targets, build, stream=False).start()
